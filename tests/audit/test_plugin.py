"""The pytest plugin, run as another project would: a pytest process in another directory.

``pytest --pyargs reference.audit --audit-target ...`` with the package on PYTHONPATH and the plugin
named with ``-p``, and (as an installed package would) registered through the ``pytest11`` entry
point that ``pyproject.toml`` declares.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reference.config import load_toml

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
WRONG = Path(__file__).with_name("wrong_eval.py")

pytestmark = pytest.mark.slow


def run_pytest(cwd: Path, *args: str, pythonpath: list[Path] | None = None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (pythonpath or [SRC]))
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Another project's folder holding its evaluation code."""
    shutil.copy(WRONG, tmp_path / "their_eval.py")
    return tmp_path


def test_known_deviations_are_accepted_explicitly(project):
    (project / "known.toml").write_text(
        '[[deviation]]\nkind = "ap-formula"\nnote = "their code uses the Market-1501 AP"\n'
    )
    out = run_pytest(project, "-p", "reference.audit.plugin", "--pyargs", "reference.audit",
                     "--audit-target", "their_eval.py:trapezoid_ap", "--audit-expect",
                     "known.toml", "-k", "spec", "-rx")  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed, 8 deselected, 5 xfailed" in out.stdout
    assert "their code uses the Market-1501 AP" in out.stdout


def test_registered_by_the_entry_point_of_the_installed_package(project, tmp_path_factory):
    # what installing the package writes: a dist-info with pyproject's pytest11 entry point
    site = tmp_path_factory.mktemp("site")
    info = site / "vireid_reference-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: vireid-reference\nVersion: 0.1.0\n"
    )
    points = load_toml(ROOT / "pyproject.toml")["project"]["entry-points"]["pytest11"]
    lines = ["[pytest11]", *(f"{name} = {value}" for name, value in points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    out = run_pytest(project, "--pyargs", "reference.audit", "--audit-target",
                     "their_eval.py:correct_market", "--audit-protocol", "market",
                     "--audit-scale", "0.2", pythonpath=[SRC, site])  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "15 passed" in out.stdout  # 7 spec examples + 8 probes
