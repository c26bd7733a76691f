"""Reports and the known-deviations file."""

from __future__ import annotations

import json

import pytest

from reference.audit.kinds import Finding
from reference.audit.report import AuditReport, Expectation, load_expectations
from reference.errors import VireidError


def report(*kinds: str) -> AuditReport:
    findings = [Finding(k, [f"{k}: how"], 0.25, 2, ["ranking"]) for k in kinds]
    return AuditReport("eval", "their:fn", {"protocol": "sysu"}, findings, [], 10, 1.0)


def test_expected_kinds_pass_and_others_still_fail():
    r = report("ap-formula", "tie-order").expect((Expectation("ap-formula", "Market AP"),))
    assert [f.kind for f in r.unexpected] == ["tie-order"] and r.exit_status == 1
    ok = report("ap-formula").expect(
        (Expectation("ap-formula", "Market AP"), Expectation("crash", "old numpy"))
    )
    assert ok.exit_status == 0 and ok.findings[0].note == "Market AP"
    assert [e.kind for e in ok.unused_expectations] == ["crash"]
    assert report().exit_status == 0


def test_json_and_markdown():
    r = report("cmc-kind").expect(())
    data = json.loads(r.to_json())
    assert data["schema"] == "vireid.audit/1" and data["status"] == "fail"
    assert data["unexpected"] == ["cmc-kind"] and data["findings"][0]["problems"] == 2
    md = r.to_markdown()
    assert md.startswith("# vireid audit eval: `their:fn` — FAIL")
    assert "| cmc-kind | **no** | 0.25 | 2 | — |" in md and "## cmc-kind" in md


def test_write_never_overwrites_without_force(tmp_path):
    r = report()
    r.write(markdown=tmp_path / "a.md", json_out=tmp_path / "a.json")
    with pytest.raises(VireidError, match="exists"):
        r.write(json_out=tmp_path / "a.json")
    r.write(json_out=tmp_path / "a.json", force=True)
    assert "No difference found" in (tmp_path / "a.md").read_text()


def test_load_expectations(tmp_path):
    good = tmp_path / "known.toml"
    good.write_text('[[deviation]]\nkind = "tie-order"\nnote = "numpy quicksort"\n')
    assert load_expectations(good) == (Expectation("tie-order", "numpy quicksort"),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[deviation]]\nkind = "ap"\nnote = "x"\n', "deviation[0].kind: unknown kind 'ap'"),
        ('[[deviation]]\nkind = ["ap"]\nnote = "x"\n', "deviation[0].kind: unknown kind ['ap']"),
        ('[[deviation]]\nkind = "crash"\n', "deviation[0].note: expected a non-empty string"),
        ('[[deviation]]\nkind = "crash"\nnote = "x"\nwhy = 1\n',
         "deviation[0].why: unknown field; expected kind, note"),
        ('[known]\nkind = "crash"\n', "unknown key 'known'; expected [[deviation]] tables"),
    ],
)  # fmt: skip
def test_bad_expectation_files_are_named(tmp_path, text, message):
    path = tmp_path / "known.toml"
    path.write_text(text)
    with pytest.raises(VireidError) as err:
        load_expectations(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
