"""Where the shared project documents are: ``../shared`` beside the repository root.

``VIREID_SHARED`` overrides it (a git worktree sits one folder deeper than the checkout CI uses).
Tests that need it skip with the path they looked at when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("VIREID_SHARED", ROOT.parent / "shared"))
PAPERS = SHARED / "papers.md"

needs_papers = pytest.mark.skipif(
    not PAPERS.is_file(), reason=f"../shared/papers.md not found at {PAPERS} (set VIREID_SHARED)"
)
