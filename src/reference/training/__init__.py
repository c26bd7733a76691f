"""Training loop and feature extraction (not yet implemented)."""
