"""Grouping rows by identity and modality, and the centers (spec/losses/hetero_center.md,
spec/losses/center_alignment.md): checked against loops over the rows, in float64."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from hypothesis import given

from reference.errors import VireidError
from reference.losses.groups import (
    group_counts,
    group_means,
    group_means_plain,
    group_rows,
    identity_modality_centers,
    modality_counts,
)
from tests.strategies import feature_batches


def _raises(message: str):
    return pytest.raises(VireidError, match="^" + re.escape(message) + "$")


@given(feature_batches(modalities=(0, 1, 2, 3)))
def test_modality_counts_is_a_count_per_modality_and_identity(device, batch):
    y, m = batch.labels.to(device), batch.modality.to(device)
    ids, table = modality_counts(y, m)
    assert ids == sorted(set(y.tolist()))
    for mod in range(4):
        for j, pid in enumerate(ids):
            want = sum(
                1 for a, b in zip(y.tolist(), m.tolist(), strict=True) if (a, b) == (pid, mod)
            )
            assert int(table[mod, j]) == want


@given(feature_batches(modalities=(0, 1)))
def test_centers_are_the_means_of_each_identity_and_modality(device, batch):
    x = batch.features.to(device, torch.float64)
    y, m = batch.labels.to(device), batch.modality.to(device)
    centers, ids = identity_modality_centers(x, y, m, (1, 0))
    rows = x.tolist()
    for p, pid in enumerate(ids.tolist()):
        for slot, mod in enumerate((1, 0)):
            members = [r for r, a, b in zip(rows, y.tolist(), m.tolist(), strict=True)
                       if (a, b) == (pid, mod)]  # fmt: skip
            want = [sum(col) / len(members) for col in zip(*members, strict=True)]
            assert centers[p, slot].tolist() == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_group_means_backward_is_the_mean_gradient(device):
    x = torch.randn(5, 3, dtype=torch.float64, device=device, requires_grad=True)
    group = torch.tensor([0, 1, 0, 2, 0], device=device)
    counts = group_counts(group, 3)
    assert counts.tolist() == [3, 1, 1]
    torch.autograd.gradcheck(lambda t: group_means(t, group, counts), (x,))


def test_rows_of_other_modalities_are_left_out_and_two_identities_are_needed(device):
    y = torch.tensor([4, 4, 7, 7, 9], device=device)
    m = torch.tensor([0, 1, 0, 1, 2], device=device)
    groups = group_rows(y, m, (0, 1))
    assert groups.keep.tolist() == [True, True, True, True, False]
    assert groups.ids.tolist() == [4, 7] and groups.slot.tolist() == [0, 1, 0, 1]
    with _raises("labels: expected at least 2 identities in the batch, got 1 (label 9)"):
        group_rows(y, m, (2, 3))


def test_an_identity_without_a_modality_is_named(device):
    x = torch.zeros(3, 2, device=device)
    y = torch.tensor([1, 1, 2], device=device)
    m = torch.tensor([0, 1, 0], device=device)
    with _raises(
        "modality: identity labels [2] have no I (1) rows; every identity needs rows in each of "
        "V (0), I (1)"
    ):
        identity_modality_centers(x, y, m, (0, 1))


def test_group_means_fast_path_equals_the_plain_formula(device):
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(7, 3, generator=gen, dtype=torch.float64).to(device)
    group = torch.tensor([2, 0, 0, 1, 2, 2, 0], device=device)
    counts = group_counts(group, 3)
    weights = torch.randn(3, 3, generator=gen, dtype=torch.float64).to(device)
    fast, plain = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    got, want = group_means(fast, group, counts), group_means_plain(plain, group, counts)
    torch.testing.assert_close(got, want, rtol=1e-15, atol=0)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    torch.testing.assert_close(fast.grad, plain.grad, rtol=1e-15, atol=1e-15)


def test_row_groups_are_frozen(device):
    labels = torch.tensor([0, 0, 1, 1], device=device)
    modality = torch.tensor([0, 1, 0, 1], device=device)
    groups = group_rows(labels, modality, (0, 1))
    field = dataclasses.fields(groups)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(groups, field, None)


def test_centers_default_to_the_visible_and_infrared_modalities(device):
    labels = torch.tensor([0, 0, 1, 1, 0, 1], device=device)
    modality = torch.tensor([0, 1, 0, 1, 2, 3], device=device)  # derivatives left out
    x = torch.arange(12.0, device=device).reshape(6, 2)
    default, ids = identity_modality_centers(x, labels, modality)
    explicit, _ = identity_modality_centers(x, labels, modality, (0, 1))
    assert torch.equal(default, explicit) and ids.tolist() == [0, 1]
    assert default[0, 0].tolist() == [0.0, 1.0] and default[1, 1].tolist() == [6.0, 7.0]
