"""Auditing other implementations against this one: evaluation functions, losses, features.

Spec: ``spec/audit/``. ``vireid audit eval|loss|features`` and the pytest plugin
(``pytest --pyargs reference.audit --audit-target ...``).
"""
