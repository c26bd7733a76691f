"""The loss audit's batches."""

from __future__ import annotations

import numpy as np
import pytest

from reference.audit.loss_problems import LOSSES, build_batch, check_loss
from reference.errors import VireidError


def test_canonical_batches_are_p_by_k_per_modality_in_order():
    b = build_batch(LOSSES["mdl"], "tags", 3, 2, 4, 1.0, seed=0, order="canonical")
    assert b.size == 3 * 2 * 4 and b.perm is None and b.features.shape == (24, 4)
    keys = list(zip(b.modality.tolist(), b.labels.tolist(), strict=True))
    assert keys == sorted(keys)
    for m in range(4):
        _, counts = np.unique(b.labels[b.modality == m], return_counts=True)
        assert counts.tolist() == [2, 2, 2]


def test_shuffled_halves_keep_visible_rows_first():
    b = build_batch(LOSSES["hctri"], "halves", 3, 2, 2, 1.0, seed=3, order="shuffled")
    _, _, m = b.shown()
    assert m.tolist() == [0] * 6 + [1] * 6 and sorted(b.perm.tolist()) == list(range(12))
    c = build_batch(LOSSES["hctri"], "tags", 3, 2, 2, 1.0, seed=3, order="shuffled")
    assert c.shown()[2].tolist() != [0] * 6 + [1] * 6


def test_identity_batches_hold_class_indices():
    b = build_batch(LOSSES["id"], "plain", 4, 2, 2, 1.0, seed=1, order="canonical")
    assert b.labels.max() < b.features.shape[1] and b.modality is None


def test_snippet_rebuilds_the_batch_the_target_saw():
    b = build_batch(LOSSES["ca"], "tags", 2, 1, 2, 1.0, seed=2, order="shuffled")
    space: dict = {}
    exec(b.snippet(), space)
    f, y, m = b.shown()
    assert np.array_equal(space["features"].detach().numpy(), f)
    assert space["labels"].tolist() == y.tolist() and space["modality"].tolist() == m.tolist()


def test_unknown_loss():
    with pytest.raises(VireidError) as err:
        check_loss("circle")
    assert str(err.value) == (
        "loss: expected one of 'tri', 'hctri', 'ca', 'mml', 'mdl', 'id', got 'circle'"
    )
    with pytest.raises(VireidError) as err:
        check_loss(["tri"])  # not a dictionary key: the same error, not a TypeError
    assert str(err.value).endswith("'id', got ['tri']")
