"""The training-data pipeline against spec/data/pipeline.md.

The oracle recomposes each batch from the parts the spec names (sampler indices, gathered rows,
geometric step, derivatives, photometric step) with a generator seeded as the spec says, and
checks the delivered ``Batch`` row by row.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reference.data import pipeline as P
from reference.data.derivatives import DerivativeConfig, derive_infrared, grayscale
from reference.data.pipeline import PipelineConfig, TrainPipeline
from reference.data.sampler import CrossModalitySampler
from reference.data.transforms import TrainTransform, TransformConfig
from reference.errors import VireidError
from tests.strategies import vi_labels

SMALL = TransformConfig(size=(8, 4), pad=2)


def _images(n, seed=0, size=(8, 4)):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, *size), generator=g, dtype=torch.uint8)


def _expected_epoch(images, labels, modality, camids, config, epoch=0, rank=0, world_size=1):
    """Recompose every batch of an epoch from the spec's steps (CPU)."""
    sampler = CrossModalitySampler(
        labels, modality, p=config.p, k=config.k, seed=config.seed, rank=rank,
        world_size=world_size, replacement=config.replacement, identities=config.identities,
        num_batches=config.num_batches,
    )  # fmt: skip
    sampler.set_epoch(epoch)
    g = torch.Generator().manual_seed(P._transform_seed(config.seed, epoch, rank))
    transform = TrainTransform(config.transform)
    out = []
    for idx in sampler:
        x = transform.geometric(images[idx], g)
        tags = torch.as_tensor(modality[idx])
        rows_labels = torch.as_tensor(labels[idx])
        rows_cams = torch.as_tensor(camids[idx])
        if config.four_modality:
            v, i = tags == 0, tags == 1
            x = torch.cat([x, grayscale(x[v]), derive_infrared(x[i], config.derivatives.infrared)])
            rows_labels = torch.cat([rows_labels, rows_labels[v], rows_labels[i]])
            rows_cams = torch.cat([rows_cams, rows_cams[v], rows_cams[i]])
            tags = torch.cat([tags, torch.full_like(tags[v], 2), torch.full_like(tags[i], 3)])
        y = transform.photometric(x, g, tags)
        out.append((y, rows_labels, tags, rows_cams))
    return out


@st.composite
def pipeline_cases(draw):
    data = draw(vi_labels(max_ids=5, max_images=4))
    p = draw(st.integers(1, data.ids.size))
    k = draw(st.integers(1, 3))
    four = draw(st.booleans())
    infrared = draw(st.sampled_from(["equalize", "invert", "gray"]))
    transform = TransformConfig(
        size=(8, 4),
        pad=draw(st.integers(0, 3)),
        erase_p=draw(st.sampled_from([0.0, 0.5])),
        channel_aug=draw(st.booleans()),
    )
    config = PipelineConfig(
        p=p,
        k=k,
        seed=draw(st.integers(0, 2**20)),
        four_modality=four,
        derivatives=DerivativeConfig(infrared=infrared),
        transform=transform,
        num_batches=draw(st.integers(1, 4)),
    )
    camids = np.where(data.modality == 0, 1, 3) + draw(st.integers(0, 1))
    return data, camids, config


@given(pipeline_cases(), st.integers(0, 3))
def test_batches_match_the_recomposed_oracle(device, case, epoch):
    data, camids, config = case
    images = _images(data.labels.size)
    pipeline = TrainPipeline(images, data.labels, data.modality, camids, config, device=device)
    pipeline.set_epoch(epoch)
    got = list(pipeline)
    want = _expected_epoch(images, data.labels, data.modality, camids, config, epoch)
    assert len(got) == len(want) == len(pipeline)
    rows = 2 * config.p * config.k * (2 if config.four_modality else 1)
    assert pipeline.batch_size == rows
    for batch, (y, labels, tags, cams) in zip(got, want, strict=True):
        assert batch.images.shape == (rows, 3, 8, 4) and batch.images.dtype == torch.float32
        assert batch.images.device.type == torch.device(device).type
        assert batch.labels.device.type == torch.device(device).type
        torch.testing.assert_close(batch.images.cpu(), y, atol=1e-5, rtol=0)
        assert batch.labels.tolist() == labels.tolist()
        assert batch.modality.tolist() == tags.tolist()
        assert batch.camids.tolist() == cams.tolist()


def test_row_layout_and_replay(device):
    labels = np.repeat(np.arange(4), 6)
    modality = np.tile([0, 0, 0, 1, 1, 1], 4)
    camids = np.tile([1, 2, 4, 3, 6, 6], 4)
    config = PipelineConfig(p=3, k=2, transform=SMALL, four_modality=True, seed=4)
    pipeline = TrainPipeline(_images(24), labels, modality, camids, config, device=device)
    first = list(pipeline)
    assert [torch.equal(a.images, b.images) for a, b in zip(first, pipeline, strict=True)] == [
        True
    ] * len(first)
    for batch in first:
        assert batch.modality.tolist() == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 6
        assert batch.labels[:6].tolist() == batch.labels[6:12].tolist()
        assert torch.equal(batch.labels[12:], batch.labels[:12])
        assert set(batch.camids[:6].tolist()) <= {1, 2, 4}
    pipeline.set_epoch(1)
    other = list(pipeline)
    assert not all(torch.equal(a.images, b.images) for a, b in zip(first, other, strict=True))
    pipeline.set_epoch(0)
    assert all(torch.equal(a.images, b.images) for a, b in zip(first, pipeline, strict=True))


def test_ranks_get_disjoint_shares_of_one_draw(device):
    labels = np.repeat(np.arange(5), 4)
    modality = np.tile([0, 0, 1, 1], 5)
    camids = np.tile([1, 2, 3, 6], 5)
    config = PipelineConfig(p=2, k=2, transform=SMALL, num_batches=6)
    images = _images(20)
    ranks = [
        list(TrainPipeline(images, labels, modality, camids, config, rank=r, world_size=2))
        for r in range(2)
    ]
    assert [len(r) for r in ranks] == [3, 3]
    sampler = CrossModalitySampler(labels, modality, p=2, k=2, num_batches=6)
    one = list(sampler)
    for j, index in enumerate(one):
        batch = ranks[j % 2][j // 2]
        assert batch.labels.tolist() == labels[index].tolist()


@pytest.fixture(scope="module")
def synth_records(tmp_path_factory):
    from reference.data.synthvi import write_sysu
    from reference.data.sysu import read_sysu_train

    root = write_sysu(tmp_path_factory.mktemp("synth") / "sysu", ids=6, seed=1)
    return read_sysu_train(root)


def test_from_records_decodes_once_and_never_reads_files_again(
    device, synth_records, tmp_path, monkeypatch
):
    from reference.data.cache import load_decoded

    config = PipelineConfig(p=2, k=2, transform=TransformConfig(size=(32, 16)))
    pipeline = TrainPipeline.from_records(
        synth_records, config, device=device, cache_dir=tmp_path / "cache"
    )
    decoded = load_decoded(synth_records, size=(32, 16))
    assert torch.equal(pipeline.images, decoded)
    resident = TrainPipeline.from_records(
        synth_records, config, device=device, cache_dir=tmp_path / "cache", images_on_device=True
    )
    assert resident.images.device.type == torch.device(device).type
    assert torch.equal(resident.images.cpu(), decoded)

    import PIL.Image

    def no_reads(*args, **kwargs):
        raise AssertionError("the pipeline opened an image file")

    monkeypatch.setattr(PIL.Image, "open", no_reads)
    batches = list(pipeline)
    assert len(batches) == len(pipeline) > 0
    for batch in batches:
        assert batch.images.shape == (8, 3, 32, 16)
        assert int(batch.labels.max()) < synth_records.num_classes
        for label, tag, cam in zip(
            batch.labels.tolist(), batch.modality.tolist(), batch.camids.tolist(), strict=True
        ):
            rows = (synth_records.labels == label) & (synth_records.modality == tag)
            assert cam in set(synth_records.camids[rows].tolist())


def test_bad_input_names_the_field():
    labels = np.array([0, 0, 1, 1])
    modality = np.array([0, 1, 0, 1])
    camids = np.array([1, 3, 1, 3])
    config = PipelineConfig(p=1, k=1, transform=SMALL)
    cases = [
        ((_images(3), labels, modality, camids), "images: expected 4 rows (one per label), got 3"),
        ((_images(4).float(), labels, modality, camids), "images: expected dtype torch.uint8"),
        (
            (_images(4), labels, modality, camids[:3]),
            "camids: expected 4 integers (one per label), got dtype int64 shape (3,)",
        ),
        (
            (_images(4), labels, modality, camids.astype(float)),
            "camids: expected 4 integers (one per label), got dtype float64 shape (4,)",
        ),
        (
            (_images(4), labels, np.array([0, 0, 1, 1]), camids),
            "labels: identity 1 has no visible (V) image",
        ),
    ]
    for args, message in cases:
        with pytest.raises(VireidError) as info:
            TrainPipeline(*args, config)
        assert str(info.value).startswith(message)


def test_images_already_on_the_device_give_the_same_batches(device):
    labels = np.repeat(np.arange(3), 4)
    modality = np.tile([0, 1], 6)
    camids = np.tile([1, 3], 6)
    config = PipelineConfig(p=2, k=2, transform=SMALL, four_modality=True, seed=2)
    images = _images(12)
    host = list(TrainPipeline(images, labels, modality, camids, config, device=device))
    resident = TrainPipeline(images.to(device), labels, modality, camids, config, device=device)
    assert resident.images.device.type == torch.device(device).type
    for a, b in zip(host, resident, strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"transform": {"size": (8, 4)}}, "transform: expected a TransformConfig, got {'size'"),
        ({"derivatives": "gray"}, "derivatives: expected a DerivativeConfig, got 'gray'"),
        ({"four_modality": "yes"}, "four_modality: expected True or False, got 'yes'"),
    ],
)
def test_bad_config_names_the_field(kwargs, message):
    with pytest.raises(VireidError) as info:
        PipelineConfig(**kwargs)
    assert str(info.value).startswith(message)


def test_configs_load_and_dump_through_the_generic_config_loader():
    from reference.config import from_mapping, to_dict

    config = PipelineConfig(
        p=4,
        identities="cycle",
        transform=TransformConfig(size=(96, 48), erase_p=0.5, channel_aug=True),
        four_modality=True,
        derivatives=DerivativeConfig(infrared="invert"),
    )
    data = to_dict(config)
    assert data["transform"]["size"] == [96, 48] and data["derivatives"]["infrared"] == "invert"
    assert from_mapping(PipelineConfig, data) == config
    with pytest.raises(VireidError) as info:
        from_mapping(PipelineConfig, {"transform": {"flip_p": 2}}, "pipeline")
    assert str(info.value) == "pipeline.transform.flip_p: expected a probability in [0, 1], got 2.0"
    with pytest.raises(VireidError) as info:
        from_mapping(PipelineConfig, {"derivatives": {"visible": "sepia"}}, "pipeline")
    assert str(info.value).startswith("pipeline.derivatives.visible: expected one of ")
