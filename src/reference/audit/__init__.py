"""Auditing other implementations against this one (not yet implemented)."""
