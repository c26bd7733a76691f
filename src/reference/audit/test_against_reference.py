"""One test per case of the audit battery; collected by ``pytest --pyargs reference.audit``.

Needs the plugin :mod:`reference.audit.plugin` (registered by the installed package, or named
with ``-p reference.audit.plugin``) and ``--audit-target``. Not part of this project's own test
suite (``tests/audit/test_plugin.py`` runs it on deliberately wrong targets).
"""

from __future__ import annotations

import pytest

from reference.audit.plugin import audit_session, check_case


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "audit_case" in metafunc.fixturenames:
        if not metafunc.config.pluginmanager.hasplugin("reference.audit.plugin"):
            raise pytest.UsageError(
                "reference.audit: the audit plugin is not loaded; add -p reference.audit.plugin "
                "(or install the package, which registers it)"
            )
        names = [c.name for c in audit_session(metafunc.config).cases]
        metafunc.parametrize("audit_case", names, ids=names)


def test_case(audit_case: str, request: pytest.FixtureRequest) -> None:
    check_case(request.config, audit_case)
