"""The features audit re-scores features and names the choice that reproduces a claim."""

from __future__ import annotations

import numpy as np
import pytest

from reference.audit.features_audit import audit_features, parse_claimed
from reference.errors import VireidError
from reference.evaluation.example import llcm_example, sysu_example
from reference.evaluation.features import save_features
from reference.evaluation.llcm import evaluate_llcm


@pytest.fixture(scope="module")
def sysu_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("features") / "f.npz"
    save_features(path, sysu_example())
    return path


def figures_of(report, variant):
    (row,) = [r for r in report.extra["claims"] if r["variant"] == variant]
    return row["figures"]


@pytest.mark.slow
def test_claims_are_explained_by_the_choice_that_reproduces_them(sysu_file):
    # first: a claim nothing reproduces; the table holds every variant's figures
    report = audit_features(sysu_file, protocol="sysu", claimed={"R1": 1.0}, trials=1)
    assert [f.kind for f in report.findings] == ["claim"] and report.exit_status == 1
    reference = figures_of(report, "reference")
    standard = figures_of(report, "standard CMC")
    trapezoid = figures_of(report, "trapezoidal AP (Market-1501 code)")
    assert standard["R1"] == reference["R1"] and standard["R10"] < reference["R10"]
    assert trapezoid["mAP"] < reference["mAP"]

    claim = {k: round(reference[k], 2) for k in ("R1", "R10", "mAP")}
    same = audit_features(sysu_file, protocol="sysu", trials=1, claimed=claim)
    assert same.findings == [] and same.exit_status == 0

    ap = audit_features(sysu_file, protocol="sysu", trials=1,
                        claimed={"R1": trapezoid["R1"], "mAP": trapezoid["mAP"]})  # fmt: skip
    assert [f.kind for f in ap.findings] == ["ap-formula"]
    assert ap.findings[0].difference == pytest.approx(reference["mAP"] - trapezoid["mAP"])

    cmc = audit_features(
        sysu_file,
        protocol="sysu",
        trials=1,
        claimed={k: standard[k] for k in ("R1", "R5", "R10", "R20", "mAP")},
    )
    assert [f.kind for f in cmc.findings] == ["cmc-kind"]


def test_market_features_file(tmp_path):
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(6), 4)
    camids = np.tile([1, 2, 1, 2], 6)
    feats = rng.normal(size=(24, 8)) + pids[:, None] * 0.5
    query = np.tile([True, False, False, False], 6)
    np.savez(tmp_path / "m.npz", features=feats, pids=pids, camids=camids, query=query)
    first = audit_features(tmp_path / "m.npz", protocol="market", claimed={"R1": 0.0})
    ref = figures_of(first, "reference")
    again = audit_features(tmp_path / "m.npz", protocol="market", claimed={"mAP": ref["mAP"]})
    assert again.findings == []
    np.savez(tmp_path / "bad.npz", features=feats, pids=pids, camids=camids)
    with pytest.raises(VireidError, match="missing key 'query'"):
        audit_features(tmp_path / "bad.npz", protocol="market", claimed={"R1": 1.0})


@pytest.mark.parametrize("direction", ["i2v", "v2i"])
def test_llcm_features_file(tmp_path, direction):
    """The reference is the LLCM protocol's own scoring; a claim made with the cosine distance
    is named as such."""
    fs = llcm_example(0, n_ids=30, noise=3.0)
    path = save_features(tmp_path / "llcm.npz", fs)
    first = audit_features(
        path, protocol="llcm", claimed={"R1": 0.0}, trials=3, direction=direction
    )
    reference = figures_of(first, "reference")
    scores = evaluate_llcm(fs, direction=direction, trials=3)
    for name in ("R1", "R10", "mAP", "mINP"):  # Scores in fractions, the audit in percent
        assert reference[name] == pytest.approx(100 * scores.mean(name), abs=1e-9)
    assert first.settings["direction"] == direction
    assert [r["variant"] for r in first.extra["claims"]] == [
        "reference", "standard CMC", "trapezoidal AP (Market-1501 code)", "cosine distance",
        "rule 'none'",
    ]  # fmt: skip
    cosine = figures_of(first, "cosine distance")
    assert abs(cosine["mAP"] - reference["mAP"]) > 0.5  # the variants tell apart here
    named = audit_features(path, protocol="llcm", trials=3, direction=direction,
                           claimed={k: cosine[k] for k in ("R1", "mAP", "mINP")})  # fmt: skip
    assert [f.kind for f in named.findings] == ["distance"]


def test_a_direction_is_llcms_alone(tmp_path):
    with pytest.raises(VireidError) as err:
        audit_features(tmp_path / "absent.npz", protocol="sysu", claimed={"R1": 1.0},
                       direction="i2v")  # fmt: skip
    assert str(err.value) == "direction: only used with protocol 'llcm', got 'i2v'"
    with pytest.raises(VireidError) as err:
        audit_features(tmp_path / "absent.npz", protocol="llcm", claimed={"R1": 1.0},
                       direction="v2t")  # fmt: skip
    assert str(err.value) == "direction: expected 'i2v' or 'v2i', got 'v2t'"


@pytest.mark.parametrize("protocol", ["cuhk", ["sysu"]])
def test_unknown_protocol_is_named_before_the_file_is_read(tmp_path, protocol):
    with pytest.raises(VireidError) as err:
        audit_features(tmp_path / "absent.npz", protocol=protocol, claimed={"R1": 1.0})
    assert str(err.value) == (
        f"protocol: expected one of 'sysu', 'regdb', 'market', 'llcm', got {protocol!r}"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("R1=47.5,mAP=45", None),
        ("R2=4", "--claimed: expected NAME=PERCENT pairs with NAME in R1, R5, R10, R20, mAP, "
         "mINP, got 'R2=4'"),
        ("mAP=x", "--claimed: mAP: expected a number in percent, got 'x'"),
        ("mAP=120", "--claimed: mAP: expected a percentage in [0, 100], got 120.0"),
    ],
)  # fmt: skip
def test_parse_claimed(text, message):
    if message is None:
        assert parse_claimed(text) == {"R1": 47.5, "mAP": 45.0}
        return
    with pytest.raises(VireidError) as err:
        parse_claimed(text)
    assert str(err.value) == message
