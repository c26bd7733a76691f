"""Evaluation: rank metrics (CMC, mAP, mINP) and the SYSU-MM01 and RegDB protocols.

Spec: ``spec/evaluation/``.
"""
