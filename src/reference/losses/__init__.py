"""Losses: identity, triplet, hetero-center triplet, center alignment, DID, MML, MDL.

Spec: ``spec/losses/``.
"""
