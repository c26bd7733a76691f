"""Decoded-image cache (spec/data/cache.md)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from reference.data import cache
from reference.data.cache import FORMAT_VERSION, MAGIC, decode_image, load_decoded, read_cache
from reference.data.records import ImageRecords
from reference.data.sysu import read_sysu_train
from reference.errors import VireidError
from tests.data.test_sysu import tiny_sysu


@pytest.fixture
def folder(tmp_path) -> Path:
    return tiny_sysu(tmp_path / "SYSU-MM01")


@pytest.fixture
def records(folder) -> ImageRecords:
    return read_sysu_train(folder)


@pytest.fixture
def count_decodes(monkeypatch) -> list[Path]:
    """Record every decode_image call (the cache must not re-decode on a hit)."""
    calls: list[Path] = []
    real = cache.decode_image

    def counting(path, size, resample="lanczos"):
        calls.append(Path(path))
        return real(path, size, resample)

    monkeypatch.setattr(cache, "decode_image", counting)
    return calls


def oracle(path: Path, size: tuple[int, int], method=Image.Resampling.LANCZOS) -> np.ndarray:
    """The spec's definition: PIL decode, RGB, resize to W x H unless already that size; CHW."""
    img = Image.open(path).convert("RGB")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), method)
    return np.array(img).transpose(2, 0, 1)


def cache_files(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("vireid-decoded-*.bin"))


@pytest.mark.parametrize("size", [(8, 4), (12, 6), (6, 3)])
def test_rows_match_the_pil_definition(records, size, device):
    images = load_decoded(records, size=size).to(device)
    assert images.dtype == torch.uint8 and images.shape == (len(records), 3, *size)
    expected = np.stack([oracle(p, size) for p in records.paths])
    assert torch.equal(images, torch.from_numpy(expected).to(device))


def test_bilinear_switch(records, device):
    images = load_decoded(records, size=(12, 6), resample="bilinear").to(device)
    expected = np.stack([oracle(p, (12, 6), Image.Resampling.BILINEAR) for p in records.paths])
    assert torch.equal(images, torch.from_numpy(expected).to(device))


def test_infrared_single_channel_file_is_replicated(tmp_path, device):
    path = tmp_path / "ir.bmp"
    grey = np.arange(32, dtype=np.uint8).reshape(8, 4) * 7
    Image.fromarray(grey, "L").save(path)
    rec = ImageRecords(paths=(path,), labels=[0], pids=[1], camids=[3], modality=[1], frames=[0])
    images = load_decoded(rec, size=(8, 4)).to(device)
    for c in range(3):
        assert torch.equal(images[0, c], torch.from_numpy(grey).to(device))


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.tuples(st.integers(1, 20), st.integers(1, 20)),
    st.sampled_from(["lanczos", "bilinear", "bicubic", "nearest"]),
)
def test_constant_image_stays_constant(r, g, b, size, resample):
    # Every resampling filter's weights sum to one: a flat image stays flat at any size.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flat.png"
        Image.new("RGB", (5, 9), (r, g, b)).save(path)
        got = decode_image(path, size, resample)
    assert got.shape == (*size, 3) and got.dtype == np.uint8
    assert (got == np.array([r, g, b], dtype=np.uint8)).all()


def test_no_cache_dir_writes_nothing(records, tmp_path, count_decodes):
    before = sorted(p for p in tmp_path.rglob("*"))
    load_decoded(records, size=(8, 4))
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert len(count_decodes) == len(records)


def test_hit_does_not_decode_again(records, tmp_path, count_decodes, device):
    first = load_decoded(records, size=(8, 4), cache_dir=tmp_path / "c")
    assert len(count_decodes) == len(records) and len(cache_files(tmp_path / "c")) == 1
    second = load_decoded(records, size=(8, 4), cache_dir=tmp_path / "c")
    assert len(count_decodes) == len(records)  # no new decode
    assert torch.equal(first.to(device), second.to(device))


def test_miss_on_changed_file_rebuilds_in_place(records, tmp_path, count_decodes, device):
    cdir = tmp_path / "c"
    load_decoded(records, size=(8, 4), cache_dir=cdir)
    [path] = cache_files(cdir)
    changed = records.paths[3]
    Image.new("RGB", (4, 8), (10, 200, 30)).save(changed, "JPEG")
    st_ = changed.stat()
    os.utime(changed, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10**9))
    images = load_decoded(records, size=(8, 4), cache_dir=cdir)
    assert len(count_decodes) == 2 * len(records)
    assert cache_files(cdir) == [path]  # same key, replaced
    assert torch.equal(images[3].to(device), torch.from_numpy(oracle(changed, (8, 4))).to(device))
    again = load_decoded(records, size=(8, 4), cache_dir=cdir)
    assert len(count_decodes) == 2 * len(records) and torch.equal(again, images)


def test_miss_on_other_size_resampling_or_records(records, tmp_path, count_decodes):
    cdir = tmp_path / "c"
    load_decoded(records, size=(8, 4), cache_dir=cdir)
    load_decoded(records, size=(16, 8), cache_dir=cdir)
    load_decoded(records, size=(16, 8), cache_dir=cdir, resample="bilinear")
    sub = records.subset(np.arange(5))
    load_decoded(sub, size=(8, 4), cache_dir=cdir)
    assert len(count_decodes) == 3 * len(records) + 5
    assert len(cache_files(cdir)) == 4
    # reversed row order is other records: rows must follow the records' order
    rev = records.subset(np.arange(len(records))[::-1])
    images = load_decoded(rev, size=(8, 4), cache_dir=cdir)
    assert torch.equal(images, load_decoded(records, size=(8, 4), cache_dir=cdir).flip(0))


def test_content_fingerprint_ignores_touch(records, tmp_path, count_decodes):
    path = records.paths[0]
    load_decoded(records, size=(8, 4), cache_dir=tmp_path / "s")
    load_decoded(records, size=(8, 4), cache_dir=tmp_path / "h", fingerprint_mode="content")
    n = len(records)
    assert len(count_decodes) == 2 * n
    st_ = path.stat()
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 5 * 10**9))
    load_decoded(records, size=(8, 4), cache_dir=tmp_path / "h", fingerprint_mode="content")
    assert len(count_decodes) == 2 * n  # same bytes: content mode hits
    load_decoded(records, size=(8, 4), cache_dir=tmp_path / "s")
    assert len(count_decodes) == 3 * n  # stat mode sees a new mtime


def test_moved_folder_is_a_miss(folder, tmp_path, count_decodes):
    load_decoded(read_sysu_train(folder), size=(8, 4), cache_dir=tmp_path / "c")
    moved = Path(shutil.copytree(folder, tmp_path / "moved", copy_function=shutil.copy2))
    load_decoded(read_sysu_train(moved), size=(8, 4), cache_dir=tmp_path / "c")
    assert len(cache_files(tmp_path / "c")) == 2


def test_workers_give_the_same_tensor(records, device):
    serial = load_decoded(records, size=(12, 6))
    parallel = load_decoded(records, size=(12, 6), workers=3)
    assert torch.equal(serial.to(device), parallel.to(device))


def test_file_format_header(records, tmp_path):
    load_decoded(records, size=(8, 4), cache_dir=tmp_path)
    [path] = cache_files(tmp_path)
    raw = path.read_bytes()
    assert raw[:8] == MAGIC
    (length,) = struct.unpack("<Q", raw[8:16])
    header = json.loads(raw[16 : 16 + length])
    assert header["version"] == FORMAT_VERSION and header["shape"] == [len(records), 3, 8, 4]
    assert len(raw) == 16 + length + len(records) * 3 * 8 * 4


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda raw: raw[:-7], "file size does not match shape"),
        (lambda raw: b"XXXXXXXX" + raw[8:], "bad magic bytes"),
        (lambda raw: raw[:-1] + bytes([raw[-1] ^ 0xFF]), "payload checksum mismatch"),
        (lambda raw: raw[:16] + b"!" + raw[17:], "unreadable header"),
        (lambda raw: raw[:5], "bad magic bytes"),
    ],
)
def test_corrupt_cache_is_detected_and_rebuilt(records, tmp_path, count_decodes, damage, reason):
    cdir = tmp_path / "c"
    good = load_decoded(records, size=(8, 4), cache_dir=cdir)
    [path] = cache_files(cdir)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(UserWarning, match=f"corrupt cache file \\({reason}") as rec:
        images = load_decoded(records, size=(8, 4), cache_dir=cdir)
    assert str(path) in str(rec[0].message) and str(rec[0].message).endswith("; rebuilding it")
    assert torch.equal(images, good) and len(count_decodes) == 2 * len(records)
    assert torch.equal(read_cache(path), good)  # the rebuilt file is intact


def test_failed_build_leaves_no_file_and_keeps_old_cache(records, tmp_path, monkeypatch):
    cdir = tmp_path / "c"
    good = load_decoded(records, size=(8, 4), cache_dir=cdir)
    [path] = cache_files(cdir)
    old = path.read_bytes()

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    changed = records.paths[0]
    st_ = changed.stat()
    os.utime(changed, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10**9))
    with pytest.raises(VireidError) as info:  # the system's refusal, naming the file
        load_decoded(records, size=(8, 4), cache_dir=cdir)
    assert str(info.value) == f"{path}: could not be written (disk full)"
    assert path.read_bytes() == old and os.listdir(cdir) == [path.name]
    assert good.shape[0] == len(records)


def test_corrupt_image_named_and_no_cache_written(records, tmp_path):
    bad = records.paths[2]
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(VireidError) as info:
        load_decoded(records, size=(8, 4), cache_dir=tmp_path / "c")
    message = str(info.value)
    assert message.startswith(f"{bad}: cannot decode image (")
    assert message.endswith("); expected a readable image")
    assert not (tmp_path / "c").exists() or cache_files(tmp_path / "c") == []


def test_truncated_image_named(records, tmp_path):
    bad = records.paths[1]
    big = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8)).save(
        big, "JPEG"
    )
    raw = big.read_bytes()
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(VireidError) as info:
        load_decoded(records, size=(8, 4), workers=2)
    assert str(info.value).startswith(f"{bad}: cannot decode image (")
    assert "truncated" in str(info.value).lower()


def test_missing_image_named(records, tmp_path):
    gone = records.paths[0]
    gone.unlink()
    with pytest.raises(VireidError) as info:
        load_decoded(records, size=(8, 4), cache_dir=tmp_path / "c")
    assert str(info.value) == f"{gone}: image file not found; expected a readable image"
    with pytest.raises(VireidError) as info:
        load_decoded(records, size=(8, 4))
    assert str(info.value) == f"{gone}: image file not found; expected a readable image"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": (0, 4)}, "size: expected (height, width) positive integers, got (0, 4)"),
        ({"size": (8,)}, "size: expected (height, width) positive integers, got (8,)"),
        ({"size": (8.0, 4)}, "size: expected (height, width) positive integers, got (8.0, 4)"),
        ({"workers": -1}, "workers: expected an integer >= 0, got -1"),
        ({"resample": "area"}, "resample: expected one of ['bicubic', 'bilinear', 'lanczos',"),
        ({"resample": ["bilinear"]}, "resample: expected one of ['bicubic', 'bilinear', "),
        ({"fingerprint_mode": "mtime"}, "fingerprint_mode: expected 'stat' or 'content', got"),
    ],
)
def test_bad_arguments(records, kwargs, message):
    with pytest.raises(VireidError) as info:
        load_decoded(records, **kwargs)
    assert str(info.value).startswith(message)


def test_cache_dir_that_is_a_file(records, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(VireidError) as info:
        load_decoded(records, cache_dir=f)
    assert str(info.value) == f"cache_dir: {f} exists and is not a directory"


def test_records_type_checked():
    with pytest.raises(VireidError, match=r"^records: expected ImageRecords"):
        load_decoded([Path("a.jpg")])


def test_progress_on_stderr(records, tmp_path, capsys):
    load_decoded(records, size=(8, 4), cache_dir=tmp_path, progress=True)
    err = capsys.readouterr().err
    assert f"decoded {len(records)}/{len(records)} images" in err
    load_decoded(records, size=(8, 4), cache_dir=tmp_path, progress=True)
    assert f"loaded {len(records)} decoded images from " in capsys.readouterr().err


def test_progress_callback_gets_the_lines_and_default_is_silent(records, tmp_path, capsys):
    lines: list[str] = []
    n = len(records)
    load_decoded(records, size=(8, 4), cache_dir=tmp_path, progress=lines.append, workers=2)
    assert lines[-1] == f"decoded {n}/{n} images"
    assert all(line.startswith("decoded ") for line in lines)
    lines.clear()
    load_decoded(records, size=(8, 4), cache_dir=tmp_path, progress=lines.append)
    assert len(lines) == 1
    assert lines[0].startswith(f"loaded {n} decoded images from {tmp_path}")
    load_decoded(records, size=(8, 4), cache_dir=tmp_path)
    load_decoded(records, size=(8, 4))
    assert capsys.readouterr() == ("", "")


def test_synthvi_images_decode(tmp_path, device):
    from reference.data.synthvi import write_sysu

    root = write_sysu(tmp_path / "synth", ids=6, seed=0)
    rec = read_sysu_train(root)
    images = load_decoded(rec, size=(64, 32), cache_dir=tmp_path / "c").to(device)
    assert images.shape == (len(rec), 3, 64, 32)
    expected = torch.from_numpy(np.stack([oracle(p, (64, 32)) for p in rec.paths]))
    assert torch.equal(images, expected.to(device))


def test_empty_records_round_trip(tmp_path):
    empty = ImageRecords(paths=(), labels=[], pids=[], camids=[], modality=[], frames=[])
    first = load_decoded(empty, size=(8, 4), cache_dir=tmp_path)
    again = load_decoded(empty, size=(8, 4), cache_dir=tmp_path)
    assert first.shape == again.shape == (0, 3, 8, 4) and len(cache_files(tmp_path)) == 1
