"""The cross-modality identity sampler against spec/data/sampler.md.

The sampler draws indices, not numbers, so the checks are structural: an independent decoding of
every batch (plain loops over its rows) against the spec's row layout, epoch length, coverage
and no-repeat guarantees, and exact replay / partition across ranks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.data.sampler import CrossModalitySampler
from reference.errors import VireidError
from tests.strategies import vi_labels


def _sampler(data, **kwargs):
    return CrossModalitySampler(data.labels, data.modality, **kwargs)


def _decode(batch, labels, modality, p, k):
    """The identity of each of the p groups, checking the spec's row layout with plain loops."""
    assert len(batch) == 2 * p * k
    ids = []
    for half, m in enumerate((0, 1)):
        for j in range(p):
            rows = batch[half * p * k + j * k : half * p * k + (j + 1) * k]
            group = {int(labels[i]) for i in rows}
            assert len(group) == 1, "a group of k rows mixes identities"
            assert all(int(modality[i]) == m for i in rows)
            if half == 0:
                ids.append(group.pop())
            else:
                assert group.pop() == ids[j], "infrared half not in the visible half's order"
    return ids


@st.composite
def sampler_cases(draw, *, max_ids=8, max_images=6):
    data = draw(vi_labels(max_ids=max_ids, max_images=max_images))
    p = draw(st.integers(1, data.ids.size))
    k = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    return data, p, k, seed


@given(sampler_cases(), st.booleans(), st.sampled_from(["random", "cycle"]))
def test_batch_composition_and_epoch_length(case, replacement, identities):
    data, p, k, seed = case
    sampler = _sampler(data, p=p, k=k, seed=seed, replacement=replacement, identities=identities)
    n_max = max(int((data.modality == 0).sum()), int((data.modality == 1).sum()))
    assert len(sampler) == n_max // (p * k) + 1
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert all(isinstance(i, int) for i in batch)
        ids = _decode(batch, data.labels, data.modality, p, k)
        assert len(set(ids)) == p, "an identity appears twice in one batch"


@given(sampler_cases(), st.integers(0, 50))
def test_same_seed_and_epoch_replay_and_epochs_differ(case, epoch):
    data, p, k, seed = case
    a = _sampler(data, p=p, k=k, seed=seed)
    b = _sampler(data, p=p, k=k, seed=seed)
    a.set_epoch(epoch)
    b.set_epoch(epoch)
    first = list(a)
    assert first == list(a) == list(b)
    assert np.array_equal(np.array(first), a.epoch_batches(epoch))


def test_epochs_and_seeds_give_different_draws():
    labels = np.repeat(np.arange(10), 10)
    modality = np.tile(np.repeat([0, 1], 5), 10)
    sampler = CrossModalitySampler(labels, modality, p=4, k=3, seed=7)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    assert list(CrossModalitySampler(labels, modality, p=4, k=3, seed=8)) != epoch0


@given(sampler_cases(), st.integers(1, 4), st.integers(1, 9), st.booleans())
def test_ranks_partition_the_one_process_draw(case, world_size, num_batches, replacement):
    data, p, k, seed = case
    kwargs = dict(p=p, k=k, seed=seed, replacement=replacement, num_batches=num_batches)
    ranks = [
        list(_sampler(data, rank=r, world_size=world_size, **kwargs)) for r in range(world_size)
    ]
    per_rank = -(-num_batches // world_size)
    assert all(len(r) == per_rank for r in ranks)
    total = per_rank * world_size
    one = list(_sampler(data, **{**kwargs, "num_batches": total}))
    interleaved = [ranks[j % world_size][j // world_size] for j in range(total)]
    assert interleaved == one
    if num_batches % world_size == 0:
        assert one == list(_sampler(data, **kwargs))


@given(sampler_cases(max_ids=5, max_images=5), st.integers(1, 12))
def test_without_replacement_never_repeats_before_exhaustion(case, num_batches):
    data, p, k, seed = case
    sampler = _sampler(data, p=p, k=k, seed=seed, replacement=False, num_batches=num_batches)
    for ident in data.ids:
        for m in (0, 1):
            mine = {int(i) for i in np.flatnonzero((data.labels == ident) & (data.modality == m))}
            stream = []  # this identity's draws in this modality, in batch order
            for batch in sampler:
                stream += [i for i in batch if int(data.labels[i]) == ident]
            stream = [i for i in stream if int(data.modality[i]) == m]
            n = len(mine)
            assert set(stream) <= mine
            for start in range(0, len(stream), n):
                window = stream[start : start + n]
                assert len(set(window)) == len(window), "an image repeated before exhaustion"
                if len(window) == n:
                    assert set(window) == mine


@given(sampler_cases(max_ids=6), st.integers(1, 15))
def test_cycle_order_covers_every_identity(case, num_batches):
    data, p, k, seed = case
    sampler = _sampler(data, p=p, k=k, seed=seed, identities="cycle", num_batches=num_batches)
    slots = []
    for batch in sampler:
        slots += _decode(batch, data.labels, data.modality, p, k)
    c = data.ids.size
    for start in range(0, len(slots) - c + 1, c):
        assert sorted(slots[start : start + c]) == data.ids.tolist()
    counts = {int(i): slots.count(int(i)) for i in data.ids}
    assert min(counts.values()) >= (num_batches * p) // c


@given(sampler_cases())
def test_random_order_draws_from_the_right_pools(case):
    data, p, k, seed = case
    for batch in _sampler(data, p=p, k=k, seed=seed):
        for i in batch:
            assert 0 <= i < data.labels.size


def test_with_replacement_draws_images_uniformly():
    # one identity, 3 visible and 2 infrared images: each draw is uniform over the pool
    labels = np.zeros(5, dtype=np.int64)
    modality = np.array([0, 0, 0, 1, 1])
    sampler = CrossModalitySampler(labels, modality, p=1, k=8, seed=3, num_batches=1500)
    draws = np.concatenate([np.array(b) for b in sampler])
    counts = np.bincount(draws, minlength=5)
    n_v, n_i = 1500 * 8, 1500 * 8
    for image, (n, pool) in enumerate([(n_v, 3)] * 3 + [(n_i, 2)] * 2):
        expected, sd = n / pool, np.sqrt(n * (1 / pool) * (1 - 1 / pool))
        assert abs(counts[image] - expected) < 5 * sd
    # with replacement, a pool smaller than k still fills its k slots (repeats are expected)
    assert len(set(next(iter(sampler))[:8])) <= 3


def test_random_identities_are_uniform_over_batches():
    labels = np.repeat(np.arange(6), 2)
    modality = np.tile([0, 1], 6)
    sampler = CrossModalitySampler(labels, modality, p=2, k=1, seed=5, num_batches=3000)
    firsts = np.array([[labels[b[0]], labels[b[1]]] for b in sampler])
    counts = np.bincount(firsts.ravel(), minlength=6)
    expected, sd = 6000 / 6, np.sqrt(6000 * (1 / 6) * (5 / 6))
    assert np.all(np.abs(counts - expected) < 5 * sd)


def test_tensor_inputs_on_device_match_numpy(device):
    labels = np.repeat(np.arange(4), 4)
    modality = np.tile([0, 0, 1, 1], 4)
    from_numpy = list(CrossModalitySampler(labels, modality, p=2, k=2, seed=1))
    from_tensor = list(
        CrossModalitySampler(
            torch.as_tensor(labels, device=device),
            torch.as_tensor(modality, device=device),
            p=2,
            k=2,
            seed=1,
        )
    )
    assert from_numpy == from_tensor


def test_works_as_a_dataloader_batch_sampler():
    labels = np.repeat(np.arange(3), 4)
    modality = np.tile([0, 1], 6)
    sampler = CrossModalitySampler(labels, modality, p=2, k=2, seed=0)
    dataset = torch.utils.data.TensorDataset(torch.as_tensor(labels), torch.as_tensor(modality))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)
    got = [batch for batch in loader]
    assert len(got) == len(sampler)
    for (lab, mod), index in zip(got, sampler, strict=True):
        assert lab.tolist() == labels[index].tolist() and mod.tolist() == modality[index].tolist()


LABELS = np.array([0, 0, 1, 1, 2, 2])
MODALITY = np.array([0, 1, 0, 1, 0, 1])


@pytest.mark.parametrize(
    ("labels", "modality", "kwargs", "message"),
    [
        (LABELS, MODALITY, {"p": 4}, "p: expected at most 3 identities per batch"),
        (LABELS, MODALITY, {"p": 0}, "p: expected at least 1 identity per batch, got 0"),
        (LABELS, MODALITY, {"k": 0}, "k: expected at least 1 image per identity and modality"),
        (LABELS, MODALITY, {"k": 1.5}, "k: expected an integer, got 1.5"),
        (
            LABELS,
            np.array([0, 1, 0, 0, 0, 1]),
            {},
            "labels: identity 1 has no infrared (I) image; every identity needs at least one "
            "visible and one infrared image",
        ),
        (
            LABELS,
            np.array([1, 1, 0, 1, 0, 1]),
            {},
            "labels: identity 0 has no visible (V) image",
        ),
        (LABELS, np.array([0, 1, 0, 3, 0, 1]), {}, "modality: expected 0 (V) or 1 (I)"),
        (LABELS, MODALITY[:5], {}, "modality: expected shape (6,) like labels, got (5,)"),
        (
            LABELS.astype(float),
            MODALITY,
            {},
            "labels: expected an integer array, got dtype float64",
        ),
        (LABELS.reshape(2, 3), MODALITY, {}, "labels: expected a 1-D array, got shape (2, 3)"),
        (LABELS[:0], MODALITY[:0], {}, "labels: expected at least one image"),
        (LABELS, MODALITY.astype(bool), {}, "modality: expected an integer array, got dtype bool"),
        (LABELS, MODALITY, {"seed": -1}, "seed: expected a non-negative integer, got -1"),
        (LABELS, MODALITY, {"identities": "balanced"}, "identities: expected 'random' or 'cycle'"),
        (LABELS, MODALITY, {"num_batches": 0}, "num_batches: expected at least 1 batch"),
        (LABELS, MODALITY, {"world_size": 0}, "world_size: expected at least 1 process, got 0"),
        (LABELS, MODALITY, {"rank": 2, "world_size": 2}, "rank: expected 0 <= rank < world_size=2"),
    ],
)
def test_bad_input_names_the_field(labels, modality, kwargs, message):
    args = {"p": 2, "k": 2, **kwargs}
    with pytest.raises(VireidError) as info:
        CrossModalitySampler(labels, modality, **args)
    assert str(info.value).startswith(message)


def test_bad_epoch():
    sampler = CrossModalitySampler(LABELS, MODALITY, p=2, k=2)
    with pytest.raises(VireidError, match=r"^epoch: expected a non-negative integer, got -1$"):
        sampler.set_epoch(-1)


def _distributed_rank(rank, world_size, store, out):
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world_size
    )
    try:
        labels = np.repeat(np.arange(6), 4)
        modality = np.tile([0, 1], 12)
        # rank and world_size come from the process group
        sampler = CrossModalitySampler(labels, modality, p=2, k=2, seed=3, num_batches=6)
        sampler.set_epoch(2)
        np.save(out / f"rank{rank}.npy", np.array(list(sampler)))
        assert (sampler.rank, sampler.world_size) == (rank, world_size)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ranks_of_a_real_process_group_partition_the_draw(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    # forked, not spawned: a spawned child imports torch and this module again (about 3 s of
    # CPU each); the children touch no torch thread pool, only gloo and NumPy
    torch.multiprocessing.start_processes(
        _distributed_rank, args=(2, tmp_path / "store", tmp_path), nprocs=2, join=True,
        start_method="fork",
    )  # fmt: skip
    ranks = [np.load(tmp_path / f"rank{r}.npy") for r in range(2)]
    labels = np.repeat(np.arange(6), 4)
    modality = np.tile([0, 1], 12)
    one = CrossModalitySampler(labels, modality, p=2, k=2, seed=3, num_batches=6)
    one.set_epoch(2)
    expected = np.array(list(one))
    assert np.array_equal(ranks[0], expected[0::2]) and np.array_equal(ranks[1], expected[1::2])
