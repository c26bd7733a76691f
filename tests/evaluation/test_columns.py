"""The columns of distance matrices (``spec/evaluation/columns.md``): ``take_columns`` is the
column index, and ``take_columns_each`` equals it gallery by gallery."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.errors import VireidError
from reference.evaluation.columns import take_columns, take_columns_each


def test_take_columns_is_the_column_index(device):
    dist = torch.randn(5, 9, dtype=torch.float64).to(device)
    cols = torch.tensor([8, 0, 3, 3]).to(device)
    got = take_columns(dist, cols)
    assert torch.equal(got, dist[:, cols]) and got.device == dist.device
    got[0, 0] = 1e9  # a copy, not a view
    assert float(dist[0, 8]) != 1e9


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_rows=st.integers(1, 30),
    n_pool=st.integers(1, 25),
    n_galleries=st.integers(1, 5),
    block_bytes=st.sampled_from([1, 8, 100, 1 << 20]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_take_columns_each_equals_take_columns(
    device, seed, n_rows, n_pool, n_galleries, block_bytes, dtype
):
    # blocks of one row, of a few rows, and of the whole matrix; columns repeated, in any order
    gen = torch.Generator().manual_seed(seed)
    dist = torch.randn(n_rows, n_pool, generator=gen, dtype=dtype).to(device)
    galleries = [
        torch.randint(0, n_pool, (int(torch.randint(1, 2 * n_pool + 1, (1,), generator=gen)),),
                      generator=gen).to(device)
        for _ in range(n_galleries)
    ]  # fmt: skip
    got = take_columns_each(dist, galleries, block_bytes)
    assert len(got) == n_galleries
    for g, cols in zip(got, galleries, strict=True):
        want = dist[:, cols]
        assert g.dtype == dtype and g.device == dist.device and g.shape == want.shape
        assert torch.equal(g, want)
    if got:  # copies, not views of the distances
        got[0][0, 0] = 1e9
        assert float(dist[0, int(galleries[0][0])]) != 1e9


def test_take_columns_each_refuses_columns_outside_the_pool(device):
    # the same check and message as rank_metrics_pooled's (check_galleries)
    dist = torch.rand(3, 4).to(device)
    bads = (torch.tensor([0, 4]), torch.tensor([-1, 2]), torch.tensor([], dtype=torch.int64))
    for bad in bads:
        with pytest.raises(
            VireidError,
            match=r"^galleries\[1\]: expected a non-empty 1-D array of columns in \[0, 4\)$",
        ):
            take_columns_each(dist, [torch.tensor([1]).to(device), bad.to(device)])
