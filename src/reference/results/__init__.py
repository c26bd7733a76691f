"""Run records and the GPU results harness (not yet implemented)."""
