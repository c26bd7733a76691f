"""The losses' input checks (losses/checks.py): what each accepts, and the message naming the
field for what it rejects (the messages the loss tests pin, here at their one source)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from reference.errors import VireidError
from reference.losses.checks import (
    check_class_indices,
    check_directions,
    check_epsilon,
    check_labels,
    check_metric_inputs,
    check_modalities,
    check_modality_pair,
    check_reduction,
    check_triplet_options,
    check_two_identities,
    modality_label,
)


def _raises(message: str):
    return pytest.raises(VireidError, match="^" + re.escape(message) + "$")


def test_labels_and_identities():
    check_labels(torch.tensor([1, 2]), 2)
    with _raises("labels: expected shape (3,) to match logits, got (2,)"):
        check_labels(torch.tensor([1, 2]), 3, against="logits")
    with _raises("labels: expected an integer tensor, got dtype torch.float32"):
        check_labels(torch.tensor([1.0]), 1)
    with _raises("y: expected a torch.Tensor of identity labels, got <class 'list'>"):
        check_labels([1], 1, "y")
    check_two_identities(torch.tensor([3, 4]))
    with _raises("labels: expected at least 2 identities in the batch, got 1 (label 3)"):
        check_two_identities(torch.tensor([3, 3]))
    with _raises("labels: expected at least 2 identities in the batch, got 0"):
        check_two_identities(torch.tensor([], dtype=torch.int64))


def test_class_indices_and_epsilon():
    check_class_indices(torch.tensor([0, 4]), 5)
    with _raises("labels: expected class indices in 0..4 (logits have 5 columns), got [-1, 5]"):
        check_class_indices(torch.tensor([5, -1, 5, 2]), 5)
    assert check_epsilon(0) == 0.0
    for bad in (1.0, -0.1, True, float("nan")):
        with _raises(f"epsilon: expected a label-smoothing weight in [0, 1), got {bad!r}"):
            check_epsilon(bad)


def test_options():
    check_triplet_options(0, "cosine")
    with _raises("margin: expected a finite number >= 0, got -1"):
        check_triplet_options(-1, "cosine")
    with _raises("metric: expected 'euclidean' or 'cosine', got 'l2'"):
        check_triplet_options(0.3, "l2")
    assert check_reduction("sum") == "sum"
    with _raises("reduction: expected 'rows' or 'modality', got 'mean'"):
        check_reduction("mean", ("rows", "modality"))


def test_modality_selections():
    assert modality_label(3) == "DI (3)"
    assert check_modality_pair([np.int64(1), 0]) == (1, 0)
    with _raises(
        "modalities: expected two distinct modality tags out of V (0), I (1), DV (2), DI (3), "
        "got (1, 1)"
    ):
        check_modality_pair((1, 1))
    assert check_modalities(None, [0, 2]) == (0, 2)
    assert check_modalities([np.int64(3), 1]) == (3, 1)
    with _raises("modalities: expected modality tags 0..3, got True"):
        check_modalities([True])
    with _raises("modalities: each modality may appear once, got [1, 1]"):
        check_modalities([1, 1])
    assert check_directions([[0, 1], (1, 0)]) == ((0, 1), (1, 0))
    with _raises("directions: expected (from, to) pairs of modality tags 0..3, got (0, 4)"):
        check_directions([(0, 4)])
    with _raises("directions: expected a sequence of (from, to) pairs, got 'VI'"):
        check_directions("VI")


def test_metric_inputs_agree():
    x = torch.zeros(4, 2)
    y = torch.tensor([0, 0, 1, 1])
    m = torch.tensor([0, 1, 0, 1])
    check_metric_inputs(x, y, m)
    with _raises("labels: expected at least 2 identities in the batch, got 1 (label 0)"):
        check_metric_inputs(x, torch.zeros(4, dtype=torch.int64), m)
