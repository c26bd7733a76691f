"""The deviation kinds: each is documented, belongs to an audit and has a worked example."""

from __future__ import annotations

import json
import math
from pathlib import Path

from reference.audit.kinds import KINDS, Finding

SPEC = Path(__file__).resolve().parents[2] / "spec" / "audit" / "kinds.md"


def test_every_kind_has_a_meaning_and_an_audit():
    for kind in KINDS.values():
        assert kind.meaning and set(kind.audits) <= {"eval", "loss", "features"} and kind.audits


def test_every_kind_has_a_section_in_the_spec():
    text = SPEC.read_text(encoding="utf-8")
    for name in KINDS:
        assert f"## `{name}`" in text, name


def test_a_finding_is_json_even_with_an_infinite_difference():
    f = Finding("crash", ["crash: ValueError"], math.inf, 3, ["ranking"], detail="ValueError: x")
    data = json.loads(json.dumps(f.to_dict(), allow_nan=False))
    assert data["difference"] == "inf" and data["meaning"] == KINDS["crash"].meaning
