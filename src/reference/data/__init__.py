"""Data: dataset readers, the cross-modality identity sampler, transforms and SynthVI.

Spec: ``spec/data/``.
"""
