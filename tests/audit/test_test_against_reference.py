"""The test module the plugin collects (``pytest --pyargs reference.audit``): one test per case.

Run as another project would, in a pytest process started in another directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from reference.audit import test_against_reference as module
from tests.audit.test_plugin import WRONG, run_pytest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(WRONG, tmp_path / "their_eval.py")
    return tmp_path


def test_without_the_plugin_the_module_says_how_to_load_it():
    metafunc = SimpleNamespace(
        fixturenames=["audit_case"],
        config=SimpleNamespace(pluginmanager=SimpleNamespace(hasplugin=lambda name: False)),
    )
    with pytest.raises(pytest.UsageError) as err:
        module.pytest_generate_tests(metafunc)
    assert "add -p reference.audit.plugin" in str(err.value)


@pytest.mark.slow
def test_one_test_per_case_and_the_failure_names_the_kind(project):
    out = run_pytest(project, "-p", "reference.audit.plugin", "--pyargs", "reference.audit",
                     "--audit-target", "their_eval.py:trapezoid_ap", "--audit-protocol", "sysu",
                     "-k", "spec")  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "test_case[spec: differences 1: AP formula] FAILED" in out.stdout or (
        "FAILED test_against_reference.py::test_case[spec: differences 1: AP formula]" in out.stdout
    )
    assert "| ap-formula | **no** |" in out.stdout
    assert "# target: " in out.stdout and "# reference: " in out.stdout
    # the examples on which the trapezoidal rule changes nothing pass
    assert "5 failed, 2 passed, 8 deselected" in out.stdout


@pytest.mark.slow
def test_without_a_target_collection_stops_with_the_usage(project):
    out = run_pytest(project, "-p", "reference.audit.plugin", "--pyargs", "reference.audit")
    assert out.returncode == 2  # an error while collecting
    assert "reference.audit: --audit-target is required: pytest --pyargs" in out.stdout
