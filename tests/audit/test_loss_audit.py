"""The loss audit names each deliberately wrong loss by its kind alone; correct ones pass clean.

The losses live in ``tests/audit/wrong_loss.py`` (vectorised torch, the field's style), each wrong
one changing one thing, including a hetero-center loss that assumes contiguous rows per identity.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reference.audit.loss_audit import (
    LOSSES,
    LossProblem,
    audit_loss,
    build_batch,
    call_target,
    detect_adapter,
    explain,
)
from reference.audit.target import Target
from reference.errors import VireidError
from tests.audit import wrong_loss

WRONG = [
    ("tri", "tri_squared", "distance", "squared Euclidean"),
    ("tri", "tri_margin_outside", "margin", "outside the hinge"),
    ("tri", "tri_sum", "reduction", "sum instead of mean"),
    ("tri", "tri_naive_sqrt", "non-finite", "gradient"),
    ("tri", "tri_float32", "precision", "float32"),
    ("hctri", "hctri_contiguous", "row-order", "permuted"),
    ("hctri", "hctri_label_index", "crash", "IndexError"),
    ("ca", "ca_squared_pull", "distance", "pull"),
    ("mdl", "mdl_sum", "reduction", "sum instead of mean"),
    ("id", "id_mean_over_classes", "reduction", "scaled by"),
]

CORRECT = [
    ("tri", "tri_correct", "plain"),
    ("hctri", "hctri_correct", "tags"),
    ("hctri", "hctri_halves", "halves"),
    ("ca", "ca_correct", "tags"),
    ("mml", "mml_correct", "tags"),
    ("mdl", "mdl_correct", "tags"),
    ("id", "id_correct", "plain"),
]


def target(name: str) -> Target:
    return Target(f"tests/audit/wrong_loss.py:{name}", getattr(wrong_loss, name), name)


@pytest.mark.slow
@pytest.mark.parametrize(("loss", "name", "kind", "label"), WRONG)
def test_each_wrong_loss_is_named_by_its_kind_alone(loss, name, kind, label):
    result, settings = audit_loss(loss, target(name))
    assert [f.kind for f in result.findings] == [kind]
    (finding,) = result.findings
    assert any(label in v for v in finding.variants) or label in finding.detail, finding.variants
    assert finding.smallest["size"] <= 12
    # the smallest batch shows the kind again
    data = finding.smallest["problem"]
    modality = data.get("modality")
    p = LossProblem(
        loss,
        np.array(data["features"]),
        np.array(data["labels"]),
        None if modality is None else np.array(modality),
        values_only=finding.smallest["case"] == "identical",
    )
    info = LOSSES[loss]
    t = target(name)
    if kind == "row-order":  # shown on a permutation of a canonical batch: replay that
        assert finding.smallest["case"] == "shuffled"
        return
    obs = explain(info, p, lambda q: call_target(t, settings["adapter"], q))
    assert kind in obs.certain


@pytest.mark.slow
@pytest.mark.parametrize(("loss", "name", "adapter"), CORRECT)
def test_correct_reimplementations_pass_clean(loss, name, adapter):
    result, settings = audit_loss(loss, target(name))
    assert settings["adapter"] == adapter
    assert result.findings == []
    assert result.problems == 70


def test_contiguous_rows_agree_in_order_and_differ_when_shuffled():
    info = LOSSES["hctri"]
    shuffled = build_batch(info, "tags", 3, 2, 3, 1.0, seed=5, order="shuffled")
    t = target("hctri_contiguous")
    in_order = explain(info, shuffled.canonical(), lambda q: call_target(t, "tags", q))
    assert in_order.agrees
    obs = explain(info, shuffled, lambda q: call_target(t, "tags", q))
    assert obs.certain == {"row-order"}


def test_adapter_detection_and_errors():
    assert detect_adapter(LOSSES["hctri"], target("hctri_correct")) == "tags"
    assert detect_adapter(LOSSES["hctri"], target("hctri_halves")) == "halves"
    assert detect_adapter(LOSSES["tri"], target("tri_correct")) == "plain"

    def one(x):
        return x.sum()

    with pytest.raises(VireidError) as err:
        detect_adapter(LOSSES["mml"], Target("t:one", one, "one"))
    assert str(err.value) == (
        "adapter: cannot tell how to call t:one (1 required parameters) for mml; name one with "
        "--adapter: tags"
    )
    with pytest.raises(VireidError) as err:
        audit_loss("mml", target("mml_correct"), adapter="halves")
    assert str(err.value) == "adapter: mml takes one of 'tags', got 'halves'"
    with pytest.raises(VireidError) as err:
        audit_loss("arcface", target("mml_correct"))
    assert str(err.value) == (
        "loss: expected one of 'tri', 'hctri', 'ca', 'mml', 'mdl', 'id', got 'arcface'"
    )


def test_a_loss_without_gradient_is_a_crash():
    info = LOSSES["tri"]
    p = build_batch(info, "plain", 2, 2, 2, 1.0, seed=0, order="canonical")

    def detached(features, labels):
        return wrong_loss.tri_correct(features, labels).detach()

    obs = explain(info, p, lambda q: call_target(Target("t:d", detached, "d"), "plain", q))
    assert obs.certain == {"crash"}
    assert obs.detail == "returned a loss with no gradient to the features"


def test_identical_rows_give_zero_distances():
    info = LOSSES["hctri"]
    p = build_batch(info, "tags", 2, 2, 3, 1.0, seed=1, order="identical")
    first = p.labels == p.labels[0]
    assert np.all(p.features[first] == p.features[first][0]) and p.values_only
    # the naive square root is NaN there, the reference is finite
    x = torch.tensor(p.features, requires_grad=True)
    wrong_loss.hctri_correct(x, torch.tensor(p.labels), torch.tensor(p.modality)).backward()
    assert torch.isfinite(x.grad).all()
