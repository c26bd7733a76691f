"""Models: the two-stream backbone, Method A's and Method B's networks and the baseline.

Spec: ``spec/models/``.
"""
