"""Feature extraction against spec/training/extract.md.

The oracle is written from the spec alone: each test image decoded with PIL (RGB, LANCZOS to the
transform size), normalised in float64, and embedded one image at a time by a float64 copy of the
model in eval mode; flip averaging is the mean of the two passes' float64 embeddings.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from reference.cli import main
from reference.data.regdb import read_regdb
from reference.data.synthvi import write_regdb, write_sysu
from reference.data.sysu import read_sysu_test
from reference.data.transforms import TransformConfig
from reference.errors import VireidError
from reference.evaluation.features import load_features, save_features
from reference.models.build import ModelConfig, build_model
from reference.training.checkpoint import save_checkpoint
from reference.training.config import config_to_dict, load_preset
from reference.training.extract import (
    ExtractConfig,
    embed_all,
    extract_checkpoint,
    extract_features,
    test_records,
)
from tests.training.conftest import TINY_DEPTH

SIZE = (32, 16)  # a 2 x 1 map at last stride 1: the baseline's global branch
SMALL = ExtractConfig(transform=TransformConfig(size=SIZE), batch_size=8)
#: extraction does not depend on the backbone's depth: the training tests' ResNet-18 (512-d)
DEPTH = TINY_DEPTH


@pytest.fixture(autouse=True)
def exact_fp32_convolutions():
    # no TF32 and fixed cuDNN algorithms on a GPU, so float32 is compared with float64 fairly
    with torch.backends.cudnn.flags(enabled=True, deterministic=True, allow_tf32=False):
        yield


@pytest.fixture(scope="module")
def sysu_root(tmp_path_factory) -> Path:
    return write_sysu(tmp_path_factory.mktemp("synth") / "sysu", ids=10, image_size=SIZE)


@pytest.fixture(scope="module")
def regdb_root(tmp_path_factory) -> Path:
    return write_regdb(tmp_path_factory.mktemp("synth") / "regdb", ids=4, image_size=SIZE)


@pytest.fixture(scope="module")
def baseline():
    return build_model(ModelConfig(kind="baseline", num_classes=6, init_seed=3, depth=DEPTH))


def _oracle(model, paths, modality, size, *, flip=False) -> np.ndarray:
    """Float64 embeddings, one image at a time, from the spec's steps."""
    ref = copy.deepcopy(model).double().eval()
    mean = np.array(TransformConfig().mean).reshape(3, 1, 1)
    std = np.array(TransformConfig().std).reshape(3, 1, 1)
    rows = []
    with torch.no_grad():
        for path, tag in zip(paths, modality, strict=True):
            with Image.open(path) as img:
                rgb = img.convert("RGB")
                if rgb.size != (size[1], size[0]):
                    rgb = rgb.resize((size[1], size[0]), Image.Resampling.LANCZOS)
            x = (np.asarray(rgb, dtype=np.float64).transpose(2, 0, 1) / 255.0 - mean) / std
            x = torch.from_numpy(x)[None]
            t = torch.tensor([int(tag)])
            e = ref(x, t).embedding
            if flip:
                e = (e + ref(x.flip(-1), t).embedding) / 2
            rows.append(e[0].numpy())
    return np.stack(rows)


def test_sysu_pool_rows_fields_and_float64_oracle(sysu_root, baseline, device):
    model = baseline.to(device)
    fs = extract_features(model, sysu_root, config=SMALL, progress=False)
    records = read_sysu_test(sysu_root)
    assert fs.dataset == "sysu" and len(fs) == len(records)
    # every test-identity image of the six cameras, with its frame position
    test_ids = [int(i) for i in (sysu_root / "exp" / "test_id.txt").read_text().split(",")]
    on_disk = [p for pid in test_ids for p in sysu_root.glob(f"cam[1-6]/{pid:04d}/*.jpg")]
    assert len(fs) == len(on_disk) and set(fs.pids.tolist()) == set(test_ids)
    np.testing.assert_array_equal(fs.pids, records.pids)
    np.testing.assert_array_equal(fs.camids, records.camids)
    np.testing.assert_array_equal(fs.frames, records.frames)
    assert fs.features.dtype == np.float32 and fs.dim == 512  # ResNet-18
    # the float64 oracle on a few rows of both modalities (it runs one image at a time)
    rows = np.concatenate([np.flatnonzero(records.modality == m)[:3] for m in (0, 1)])
    sub = records.subset(rows)
    expected = _oracle(baseline.cpu(), sub.paths, sub.modality, SIZE)
    np.testing.assert_allclose(fs.features[rows], expected, rtol=0, atol=2e-5)


def test_flip_is_the_mean_of_the_two_passes(sysu_root, baseline, device):
    records = read_sysu_test(sysu_root).subset(np.arange(4))
    flipped = ExtractConfig(transform=SMALL.transform, batch_size=4, flip=True)
    got = embed_all(baseline.to(device), records, flipped, progress=False)
    expected = _oracle(baseline.cpu(), records.paths, records.modality, SIZE, flip=True)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)
    # and the flip changes something: SynthVI people are not mirror-symmetric
    plain = embed_all(baseline.to(device), records, SMALL, progress=False)
    assert np.abs(got - plain).max() > 1e-3


def test_decoding_resizes_to_the_transform_size(sysu_root, baseline, device):
    records = read_sysu_test(sysu_root).subset(np.arange(3))
    config = ExtractConfig(transform=TransformConfig(size=(48, 24)))
    got = embed_all(baseline.to(device), records, config, progress=False)
    expected = _oracle(baseline.cpu(), records.paths, records.modality, (48, 24))
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)


@settings(max_examples=3, deadline=None)
@given(batch_size=st.integers(1, 9), flip=st.booleans())
def test_batch_size_does_not_change_features(sysu_root, baseline, device, batch_size, flip):
    records = read_sysu_test(sysu_root).subset(np.arange(7))
    reference = embed_all(
        baseline.to(device),
        records,
        ExtractConfig(transform=SMALL.transform, batch_size=7, flip=flip),
        progress=False,
    )
    got = embed_all(
        baseline.to(device),
        records,
        ExtractConfig(transform=SMALL.transform, batch_size=batch_size, flip=flip),
        progress=False,
    )
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-6)


def test_eval_mode_restored_and_nothing_learned(sysu_root, baseline, device):
    model = copy.deepcopy(baseline).to(device).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    embed_all(model, read_sysu_test(sysu_root).subset(np.arange(5)), SMALL, progress=False)
    assert model.training  # the caller's mode is back
    after = model.state_dict()
    # eval mode: BatchNorm running statistics untouched; no gradient step
    assert all(torch.equal(before[k], after[k]) for k in before)
    model.eval()
    embed_all(model, read_sysu_test(sysu_root).subset(np.arange(2)), SMALL, progress=False)
    assert not model.training


def test_method_b_gets_base_modalities_only(sysu_root, device):
    model = build_model(ModelConfig(kind="method_b", num_classes=6, depth=DEPTH)).to(device)
    seen: list[int] = []
    model.register_forward_pre_hook(lambda m, args: seen.extend(args[1].tolist()))
    fs = extract_features(model, sysu_root, config=SMALL, progress=False)
    assert set(seen) == {0, 1} and len(seen) == len(fs)
    # infrared cameras are embedded as infrared rows, visible cameras as visible rows
    records = read_sysu_test(sysu_root)
    np.testing.assert_array_equal(np.isin(records.camids, (3, 6)), records.modality == 1)


def test_method_a_embedding_switch(sysu_root, device):
    # stripes 1 and 2 divide the 2-row map of a 32 x 16 input
    def method_a(embedding):
        config = ModelConfig(
            kind="method_a", num_classes=6, coarse_stripes=1, fine_stripes=2,
            embedding=embedding, depth=DEPTH,
        )  # fmt: skip
        return build_model(config).to(device)

    records = read_sysu_test(sysu_root).subset(np.arange(4))
    whole = embed_all(method_a("all"), records, SMALL, progress=False)
    fine = embed_all(method_a("fine"), records, SMALL, progress=False)
    assert whole.shape == (4, 256 * 4) and fine.shape == (4, 256 * 2)
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, atol=1e-5)


def test_regdb_trial_test_split_both_modalities(regdb_root, baseline, device):
    fs = extract_features(baseline.to(device), regdb_root, trial=3, config=SMALL, progress=False)
    records = read_regdb(regdb_root, trial=3, split="test")
    assert fs.dataset == "regdb" and len(fs) == len(records)
    np.testing.assert_array_equal(fs.camids, records.camids)
    np.testing.assert_array_equal(fs.pids, records.pids)
    assert set(fs.camids.tolist()) == {1, 2}
    train_pids = set(read_regdb(regdb_root, trial=3, split="train").pids.tolist())
    assert not train_pids & set(fs.pids.tolist())  # the test split, not the training identities


def test_written_file_scores_under_vireid_evaluate_sysu(sysu_root, baseline, tmp_path, capsys):
    fs = extract_features(baseline, sysu_root, config=SMALL, progress=False)
    path = save_features(tmp_path / "f.npz", fs)
    back = load_features(path, "sysu")
    np.testing.assert_array_equal(back.features, fs.features)
    assert main(["evaluate", "sysu", "--features", str(path), "--trials", "2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("SYSU-MM01 all-search, single-shot, agw draw, 2 trials")
    assert out.splitlines()[-1].startswith("mean ± std")


def test_bad_data_roots_and_trials(sysu_root, regdb_root, baseline, tmp_path):
    with pytest.raises(VireidError) as exc:
        test_records(sysu_root, "sysu", trial=1)
    assert "SYSU-MM01 has one test pool" in str(exc.value)
    with pytest.raises(VireidError) as exc:
        test_records(regdb_root, "regdb")
    assert str(exc.value) == "trial: RegDB needs the trial (1..10) whose test split to extract"
    with pytest.raises(VireidError) as exc:
        test_records(regdb_root, "regdb", trial=11)
    assert str(exc.value) == "trial: expected an integer 1..10, got 11"
    # a SYSU-MM01 folder without its split files: the reader names the file
    broken = tmp_path / "broken"
    write_sysu(broken, ids=5, image_size=SIZE)
    (broken / "exp" / "test_id.txt").unlink()
    with pytest.raises(VireidError) as exc:
        extract_features(baseline, broken, config=SMALL, progress=False)
    assert str(exc.value).startswith(f"{broken / 'exp' / 'test_id.txt'}: missing split file")
    # a truncated image: the decoder names the file
    cut = tmp_path / "cut"
    write_sysu(cut, ids=5, image_size=SIZE)
    victim = read_sysu_test(cut).paths[0]
    victim.write_bytes(victim.read_bytes()[:40])
    with pytest.raises(VireidError) as exc:
        extract_features(baseline, cut, config=SMALL, progress=False)
    assert str(exc.value).startswith(f"{victim}: cannot decode image")


def test_bad_config_values():
    with pytest.raises(VireidError) as exc:
        ExtractConfig(batch_size=0)
    assert str(exc.value) == "batch_size: expected an integer >= 1, got 0"
    with pytest.raises(VireidError) as exc:
        ExtractConfig(flip=1)
    assert str(exc.value) == "flip: expected True or False, got 1"


def test_non_finite_model_is_an_error(sysu_root, baseline):
    model = copy.deepcopy(baseline)
    with torch.no_grad():
        model.backbone.parameters().__next__().fill_(float("nan"))
    with pytest.raises(VireidError) as exc:
        extract_features(model, sysu_root, config=SMALL, progress=False)
    assert "produced NaN or inf embeddings" in str(exc.value)


# --- from a checkpoint: extract_checkpoint and vireid extract ---------------------------------


def _checkpoint(path: Path, preset: str, model, overrides=()) -> Path:
    """A checkpoint file holding ``model`` (the 6-class baseline) and a run config, written by
    the training code's writer."""
    sets = [
        "pipeline.transform.size=[32, 16]",
        "model.num_classes=6",
        "model.init_seed=3",
        f"model.depth={DEPTH}",
    ]
    config = load_preset(preset, [*sets, *overrides])
    state = {
        "model": model.state_dict(),
        "optimizer": {},
        "scheduler": {},
        "scaler": {},
        "epoch": 1,
        "epoch_step": 0,
        "step": 1,
        "world_size": 1,
        "rng": [],
        "config": config_to_dict(config),
        "extra": {},
    }
    return save_checkpoint(path, state)


@pytest.fixture(scope="module")
def sysu_checkpoint(tmp_path_factory, baseline) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    return _checkpoint(folder / "last.pt", "baseline-sysu", baseline)


def test_vireid_extract_writes_the_checkpoints_features(
    sysu_root, sysu_checkpoint, baseline, tmp_path, capsys
):
    out = tmp_path / "f.npz"
    argv = ["extract", "--checkpoint", str(sysu_checkpoint), "--data-root", str(sysu_root)]
    assert main([*argv, "--out", str(out), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    fs = load_features(out, "sysu")
    assert lines[0] == (
        f"wrote {out}: {len(fs)} images of 2 identities (SYSU-MM01 test pool), d=512"
    )
    assert lines[1] == f"score it: vireid evaluate sysu --features {out}"
    # the checkpoint's weights, the run's transform: the same as extracting the model itself
    direct = extract_features(baseline.cpu(), sysu_root, config=SMALL, progress=False)
    np.testing.assert_allclose(fs.features, direct.features, rtol=0, atol=1e-6)
    # never overwrites without --force; the flip variant differs
    assert main([*argv, "--out", str(out), "--device", "cpu"]) == 2
    assert "file exists; pass overwrite=True (CLI: --force)" in capsys.readouterr().err
    assert main([*argv, "--out", str(out), "--device", "cpu", "--flip", "--force"]) == 0
    assert "flip-averaged" in capsys.readouterr().out
    assert not np.allclose(load_features(out, "sysu").features, fs.features)


def test_regdb_checkpoint_trial(regdb_root, baseline, tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "r.pt", "baseline-regdb", baseline, ["data.trial=2"])
    out = tmp_path / "r.npz"
    done = extract_checkpoint(ckpt, regdb_root, out, device="cpu", progress=False)
    assert done.trial == 2  # the run's trial by default
    expected = read_regdb(regdb_root, trial=2, split="test")
    np.testing.assert_array_equal(done.features.pids, expected.pids)
    with pytest.raises(VireidError) as exc:
        extract_checkpoint(ckpt, regdb_root, tmp_path / "x.npz", trial=3, device="cpu")
    assert str(exc.value) == (
        f"trial: {ckpt} was trained on RegDB trial 2, whose test identities are the only ones "
        "it has not seen; got trial 3"
    )


def test_bad_checkpoints_are_named(sysu_root, sysu_checkpoint, regdb_root, tmp_path, capsys):
    def run(ckpt, root=sysu_root):
        code = main(["extract", "--checkpoint", str(ckpt), "--data-root", str(root),
                     "--out", str(tmp_path / "o.npz"), "--device", "cpu"])  # fmt: skip
        return code, capsys.readouterr().err

    missing = tmp_path / "nope.pt"
    assert run(missing) == (2, f"error: {missing}: no such checkpoint file\n")
    assert run(tmp_path) == (  # the run folder given for its checkpoint
        2,
        f"error: {tmp_path}: is a folder; expected a checkpoint file (last.pt, best-val.pt)\n",
    )
    cut = tmp_path / "cut.pt"
    cut.write_bytes(sysu_checkpoint.read_bytes()[:1000])
    code, err = run(cut)
    assert code == 2 and err.startswith(f"error: {cut}: not a readable checkpoint (truncated")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    code, err = run(foreign)
    assert code == 2 and err.startswith(f"error: {foreign}: not a vireid training checkpoint")
    code, err = run(sysu_checkpoint, regdb_root)
    assert code == 2 and err == (
        f"error: {regdb_root}: a RegDB folder, but {sysu_checkpoint} was trained on SYSU-MM01; "
        "expected a SYSU-MM01 folder\n"
    )
    code, err = run(sysu_checkpoint, tmp_path / "absent")
    assert code == 2 and err.startswith(f"error: {tmp_path / 'absent'}: not a directory")
    assert not (tmp_path / "o.npz").exists()  # nothing written on an error
