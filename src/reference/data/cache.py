"""Decoded-image cache: every image of a set of records decoded once, resized, kept as uint8.

Spec: ``spec/data/cache.md``. ``load_decoded(records, size=(H, W))`` returns a ``(N, 3, H, W)``
uint8 tensor whose row i is ``records.paths[i]`` decoded with PIL, converted to RGB (an infrared
image stays 3-channel: a 1-channel file is replicated), and resized to ``W x H`` with
``resample`` (LANCZOS by default, as the predecessor's ``Image.ANTIALIAS``). With ``cache_dir``
the tensor is stored in one file ``vireid-decoded-<key>.bin`` and reused while the fingerprint
(format version, size, resampling, fingerprint mode, and per image in row order: the path relative
to ``records.root``, the byte size and mtime -- or a content hash) is unchanged; otherwise it is
rebuilt and replaced atomically. File format: magic ``VIREIDC1``, a little-endian uint64 header
length, a UTF-8 JSON header, then the raw C-contiguous payload; the header holds the payload's
CRC-32, checked on every load.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import warnings
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from reference.checks import check_choice, check_integer, is_integer
from reference.data.records import ImageRecords
from reference.errors import VireidError
from reference.fileio import atomic_open

FORMAT_VERSION = 1
MAGIC = b"VIREIDC1"
RESAMPLING = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}
Resample = Literal["lanczos", "bilinear", "bicubic", "nearest"]
FingerprintMode = Literal["stat", "content"]
_CHUNK_ROWS = 256
#: A progress callback: receives the lines ``decoded i/N images`` (every twentieth image and the
#: last) and ``loaded N decoded images from PATH``; the caller decides where they go.
Progress = Callable[[str], None]


def decode_image(
    path: Path, size: tuple[int, int] | None, resample: Resample = "lanczos"
) -> np.ndarray:
    """One image as an (H, W, 3) uint8 array; an unreadable or truncated file raises, naming it.

    ``size=None`` keeps the image's own size (used by ``vireid data check``).
    """
    try:
        with Image.open(path) as img:
            img.load()  # decode fully now: truncation and corrupt data surface here
            rgb = img.convert("RGB")
    except FileNotFoundError as exc:
        raise VireidError(f"{path}: image file not found; expected a readable image") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise VireidError(
            f"{path}: cannot decode image ({exc}); expected a readable image"
        ) from exc
    if size is not None and rgb.size != (size[1], size[0]):
        rgb = rgb.resize((size[1], size[0]), RESAMPLING[resample])
    return np.asarray(rgb, dtype=np.uint8)


def check_size(size: object, field: str = "size") -> tuple[int, int]:
    """``(height, width)`` from two positive integers, else an error naming ``field``."""
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(is_integer(v, numpy=False) and v > 0 for v in size)
    ):
        raise VireidError(f"{field}: expected (height, width) positive integers, got {size!r}")
    return int(size[0]), int(size[1])


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.resolve().as_posix()


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(
    records: ImageRecords,
    size: tuple[int, int],
    *,
    resample: Resample = "lanczos",
    mode: FingerprintMode = "stat",
) -> tuple[str, str]:
    """``(key, fingerprint)``: the key names the cache file, the fingerprint validates it.

    key: format version, folder, size, resampling, mode and the relative paths in row order.
    fingerprint: the key's inputs plus, per image, byte size and mtime (``stat``) or SHA-256
    (``content``).
    """
    root = records.root.resolve().as_posix() if records.root is not None else None
    rels = [_relative(p, records.root) for p in records.paths]
    head = {
        "version": FORMAT_VERSION,
        "root": root,
        "size": list(size),
        "resample": resample,
        "mode": mode,
        "paths": rels,
    }
    key = hashlib.sha256(json.dumps(head).encode()).hexdigest()[:24]
    stamps: list[object] = []
    for path in records.paths:
        try:
            if mode == "content":
                stamps.append(_file_hash(path))
            else:
                st = path.stat()
                stamps.append([st.st_size, st.st_mtime_ns])
        except FileNotFoundError as exc:
            raise VireidError(f"{path}: image file not found; expected a readable image") from exc
        except OSError as exc:
            raise VireidError(f"{path}: cannot read image file ({exc})") from exc
    full = hashlib.sha256(json.dumps([head, stamps]).encode()).hexdigest()
    return key, full


def decode_all(
    records: ImageRecords,
    size: tuple[int, int],
    *,
    resample: Resample = "lanczos",
    workers: int = 0,
    progress: bool | Progress = False,
) -> torch.Tensor:
    """Decode every image of ``records`` into a new (N, 3, H, W) uint8 tensor.

    ``progress``: ``False`` silent, ``True`` a tqdm bar on stderr, a callable gets the lines.
    """
    height, width = size
    out = torch.empty((len(records), 3, height, width), dtype=torch.uint8)
    view = out.numpy()

    def one(i: int) -> None:
        view[i] = decode_image(records.paths[i], size, resample).transpose(2, 0, 1)

    indices: Iterable[int] = range(len(records))
    total, step = len(records), max(1, len(records) // 20)
    bar = tqdm(total=total, bar_format="decoded {n}/{total} images") if progress is True else None
    try:
        if workers > 0:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for done, _ in enumerate(pool.map(one, indices), start=1):
                    _advance(progress, bar, done, total, step)
        else:
            for done, i in enumerate(indices, start=1):
                one(i)
                _advance(progress, bar, done, total, step)
    finally:
        if bar is not None:
            bar.close()
    return out


def _advance(progress: bool | Progress, bar: tqdm | None, done: int, total: int, step: int) -> None:
    if bar is not None:
        bar.update(1)
    elif callable(progress) and (done % step == 0 or done == total):
        progress(f"decoded {done}/{total} images")


def _write(path: Path, images: torch.Tensor, header: dict) -> None:
    array = images.numpy()
    crc = 0
    for start in range(0, len(array), _CHUNK_ROWS):
        crc = zlib.crc32(array[start : start + _CHUNK_ROWS].data, crc)
    header = {**header, "shape": list(array.shape), "dtype": "uint8", "crc32": crc}
    blob = json.dumps(header).encode()
    with atomic_open(path, "wb", overwrite=True) as handle:
        handle.write(MAGIC + struct.pack("<Q", len(blob)) + blob)
        for start in range(0, len(array), _CHUNK_ROWS):
            handle.write(array[start : start + _CHUNK_ROWS].data)


class CorruptCache(Exception):
    """A cache file that cannot be trusted (internal: the caller rebuilds it)."""


def read_cache(path: Path, expected_fingerprint: str | None = None) -> torch.Tensor | None:
    """The tensor stored at ``path``; ``None`` if its fingerprint differs from the expected one.

    Raises :class:`CorruptCache` for a file that is not a complete, intact cache file.
    """
    with open(path, "rb") as handle:
        start = handle.read(len(MAGIC) + 8)
        if len(start) < len(MAGIC) + 8 or start[: len(MAGIC)] != MAGIC:
            raise CorruptCache("bad magic bytes")
        (length,) = struct.unpack("<Q", start[len(MAGIC) :])
        if length > 1 << 30:
            raise CorruptCache(f"header length {length} is implausible")
        try:
            header = json.loads(handle.read(length).decode("utf-8"))
            shape = tuple(int(v) for v in header["shape"])
            crc_expected = int(header["crc32"])
            stored = header["fingerprint"]
            version = header["version"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise CorruptCache(f"unreadable header ({exc})") from exc
        if version != FORMAT_VERSION or len(shape) != 4 or shape[1] != 3 or min(shape) < 0:
            raise CorruptCache(f"unsupported header (version {version}, shape {shape})")
        if expected_fingerprint is not None and stored != expected_fingerprint:
            return None
        payload = int(np.prod(shape))
        if os.fstat(handle.fileno()).st_size != len(MAGIC) + 8 + length + payload:
            raise CorruptCache(f"file size does not match shape {shape} (truncated?)")
        buffer = np.empty(payload, dtype=np.uint8)
        flat = memoryview(buffer)
        crc, pos = 0, 0
        while pos < payload:
            got = handle.readinto(flat[pos : pos + (64 << 20)])
            if not got:
                raise CorruptCache("payload ends early (truncated?)")
            crc = zlib.crc32(flat[pos : pos + got], crc)
            pos += got
        if crc != crc_expected:
            raise CorruptCache("payload checksum mismatch")
    return torch.from_numpy(buffer).reshape(shape)


def cache_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"vireid-decoded-{key}.bin"


def load_decoded(
    records: ImageRecords,
    *,
    size: tuple[int, int] = (288, 144),
    cache_dir: Path | None = None,
    workers: int = 0,
    progress: bool | Progress = False,
    resample: Resample = "lanczos",
    fingerprint_mode: FingerprintMode = "stat",
) -> torch.Tensor:
    """Every image of ``records`` as a uint8 (N, 3, H, W) tensor, via the cache when given.

    ``cache_dir=None`` decodes without writing anything. ``workers > 0`` decodes in a thread
    pool of that size (PIL releases the GIL while decoding and resizing). ``progress``: ``False``
    silent, ``True`` a tqdm bar on stderr, a callable (:data:`Progress`) gets the lines.
    """
    size = check_size(size)
    check_choice(resample, "resample", RESAMPLING, expected=f"one of {sorted(RESAMPLING)}")
    check_choice(
        fingerprint_mode, "fingerprint_mode", ("stat", "content"), expected="'stat' or 'content'"
    )
    check_integer(workers, "workers", low=0, numpy=False)
    if not isinstance(records, ImageRecords):
        raise VireidError(f"records: expected ImageRecords, got {type(records)!r}")
    if cache_dir is None:
        return decode_all(records, size, resample=resample, workers=workers, progress=progress)
    cache_dir = Path(cache_dir)
    if cache_dir.exists() and not cache_dir.is_dir():
        raise VireidError(f"cache_dir: {cache_dir} exists and is not a directory")
    key, full = fingerprint(records, size, resample=resample, mode=fingerprint_mode)
    path = cache_path(cache_dir, key)
    if path.is_file():
        try:
            cached = read_cache(path, full)
        except CorruptCache as exc:
            warnings.warn(f"{path}: corrupt cache file ({exc}); rebuilding it", stacklevel=2)
            cached = None
        if cached is not None:
            message = f"loaded {len(records)} decoded images from {path}"
            if callable(progress):
                progress(message)
            elif progress:
                tqdm.write(message, file=sys.stderr)
            return cached
    images = decode_all(records, size, resample=resample, workers=workers, progress=progress)
    header = {"version": FORMAT_VERSION, "fingerprint": full, "key": key}
    _write(path, images, header)
    return images
