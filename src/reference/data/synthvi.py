"""SynthVI: a generated visible-infrared person re-identification dataset.

Spec: ``spec/data/synthvi.md``.

A person is a vertical stack of body parts (head, torso, legs, shoes), each with a per-identity
width, base colour, second colour and texture (plain, horizontal stripes, vertical stripes or
checks, with a per-identity frequency and phase). An image places the body with a random shift and
scale over a smooth random background and adds pixel noise. A visible (RGB) camera renders

    rgb = alpha * clip(gain * wb_cam * colour) + (1 - alpha) * background

and an infrared camera keeps the shape and texture but maps colour to one intensity through a
camera-specific non-linear response

    s = clip(w_cam . colour),   R = (1 - cos(pi * kappa_cam * s ** gamma_cam)) / 2
    ir = box3x3(alpha * (l0 + l1 * R + heat + emissivity * (t - 1/2))
                + (1 - alpha) * background_ir) + noise

(t: the texture's 0..1 mix of the two colours), stored with three equal channels. Every random
draw comes from a ``numpy.random.Generator`` seeded from ``(seed, stream, key)``, so the same
arguments give byte-identical files.

Folders are written in the SYSU-MM01 layout (``cam1..cam6/<pid:04d>/<frame:04d>.jpg`` and
``exp/{train,val,test,available}_id.txt``) or the RegDB layout (``Visible/<pid>/*.bmp``,
``Thermal/<pid>/*.bmp``, ``idx/{train,test}_{visible,thermal}_{t}.txt``). The whole folder is
built in a temporary sibling folder and moved into place, so a reader never sees half a dataset.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from reference.errors import VireidError

__all__ = [
    "DEFAULT_IDS",
    "MAX_IDS",
    "MAX_SEED",
    "MIN_IDS_REGDB",
    "MIN_IDS_SYSU",
    "REGDB_IMAGES_PER_ID",
    "REGDB_TRIALS",
    "SYSU_IR_CAMERAS",
    "SYSU_RGB_CAMERAS",
    "SynthVIInfo",
    "regdb_split",
    "synth_command",
    "sysu_split_sizes",
    "write_regdb",
    "write_sysu",
]

SYSU_RGB_CAMERAS = (1, 2, 4, 5)
SYSU_IR_CAMERAS = (3, 6)
SYSU_CAMERAS = (1, 2, 3, 4, 5, 6)
# Real SYSU-MM01: 296 train, 99 val, 96 test of 491 identities.
_SYSU_PROPORTIONS = (296 / 491, 99 / 491, 96 / 491)
MIN_IDS_SYSU = 5
MIN_IDS_REGDB = 4
# Four-digit SYSU-MM01 identity folders; five-digit RegDB frame numbers (10 images per id).
MAX_IDS = 9999
DEFAULT_IDS = 40
REGDB_IMAGES_PER_ID = 10
REGDB_TRIALS = 10
# Images per identity per SYSU camera, inclusive range; camera presence probability.
_SYSU_IMAGES = (2, 6)
_SYSU_PRESENCE = 0.75
_JPEG_QUALITY = 90
_MIN_SIZE = (16, 8)
_MAX_SIZE = 1024
# Pixels rendered at once: bounds the working memory (about 50 MB per float64 RGB array).
_CHUNK_PIXELS = 1 << 21
MAX_SEED = 2**32 - 1

# Stream tags mixed into every seed, so that no two kinds of draw share a generator.
_S_IDENTITY = 1
_S_CAMERA = 2
_S_IMAGES = 3
_S_SPLIT = 4
_S_REGDB_SPLIT = 5

# Body parts, top to bottom.
_HEAD, _TORSO, _LEGS, _SHOES = range(4)
_PARTS = 4


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------


def _check_int(name: str, value: object, low: int, high: int | None, why: str = "") -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise VireidError(f"{name}: expected an integer {bound}{why}, got {value!r}")
    return int(value)


def _check_ids(ids: object, layout: str) -> int:
    if layout == "sysu":
        why = " (train, val and test need at least 2, 1 and 2 identities)"
        return _check_int("ids", ids, MIN_IDS_SYSU, MAX_IDS, why)
    why = " (each half, train and test, needs at least 2 identities)"
    return _check_int("ids", ids, MIN_IDS_REGDB, MAX_IDS, why)


def _check_size(image_size: object) -> tuple[int, int]:
    ok = (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in image_size)
    )
    if ok:
        h, w = (int(v) for v in image_size)
        ok = _MIN_SIZE[0] <= h <= _MAX_SIZE and _MIN_SIZE[1] <= w <= _MAX_SIZE
    if not ok:
        raise VireidError(
            f"image_size: expected (height, width) integers with {_MIN_SIZE[0]} <= height <= "
            f"{_MAX_SIZE} and {_MIN_SIZE[1]} <= width <= {_MAX_SIZE}, got {image_size!r}"
        )
    return h, w


def _rng(seed: int, stream: int, *key: int) -> np.random.Generator:
    # The seed is the entropy and (stream, *key) the spawn key: distinct keys never share a
    # generator, whatever their lengths (a plain entropy tuple would confuse (s, 3) and (s, 3, 0)).
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, *key)))


# ---------------------------------------------------------------------------------------------
# the generative model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Identities:
    """Appearance of N identities; row i describes ``pids[i]``."""

    pids: np.ndarray  # (N,) int
    bounds: np.ndarray  # (N, P + 1) part boundaries in body height units, 0 .. 1
    halfwidth: np.ndarray  # (N, P) half width of each part in body width units
    gap: np.ndarray  # (N,) half gap between the legs
    aspect: np.ndarray  # (N,) body width / body height
    base: np.ndarray  # (N, P, 3) colour in [0, 1]
    second: np.ndarray  # (N, P, 3) second texture colour
    kind: np.ndarray  # (N, P) 0 plain, 1 horizontal stripes, 2 vertical stripes, 3 checks
    freq: np.ndarray  # (N, P) cycles per part height (horizontal) / body width (vertical)
    phase: np.ndarray  # (N, P, 2) texture phases
    heat: np.ndarray  # (N, P) infrared emission added to the response
    emissivity: np.ndarray  # (N, P) infrared contrast of the second texture colour
    female: np.ndarray  # (N,) bool, only used for RegDB file names


def _identities(pids: Iterable[int], seed: int) -> _Identities:
    rows = []
    for pid in pids:
        g = _rng(seed, _S_IDENTITY, int(pid))
        head_end = g.uniform(0.12, 0.17)
        torso_end = g.uniform(0.44, 0.56)
        legs_end = g.uniform(0.90, 0.95)
        bounds = np.array([0.0, head_end, torso_end, legs_end, 1.0])
        halfwidth = np.array(
            [g.uniform(0.16, 0.22), g.uniform(0.40, 0.50), g.uniform(0.32, 0.44), 0.0]
        )
        halfwidth[_SHOES] = halfwidth[_LEGS] + g.uniform(0.0, 0.04)
        base = g.uniform(0.05, 0.95, size=(_PARTS, 3))
        second = g.uniform(0.05, 0.95, size=(_PARTS, 3))
        skin = g.uniform(0.3, 1.0)
        base[_HEAD] = np.array([0.95, 0.75, 0.62]) * skin
        kind = g.integers(0, 4, size=_PARTS)
        kind[_HEAD] = 0
        kind[_SHOES] = g.integers(0, 2)
        freq = g.uniform(1.5, 5.0, size=_PARTS)
        phase = g.uniform(0.0, 2 * np.pi, size=(_PARTS, 2))
        heat = g.uniform(0.0, 0.08, size=_PARTS)
        heat[_HEAD] += 0.12
        # Fabric emissivity differs between the two texture colours, with a random sign: the
        # texture survives in infrared even where the response maps both colours alike.
        emissivity = g.choice([-1.0, 1.0], size=_PARTS) * g.uniform(0.06, 0.15, size=_PARTS)
        rows.append(
            (
                bounds,
                halfwidth,
                g.uniform(0.02, 0.06),
                g.uniform(0.36, 0.44),
                base,
                second,
                kind,
                freq,
                phase,
                heat,
                emissivity,
                bool(g.random() < 0.5),
            )
        )
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in range(12)]
    return _Identities(
        np.asarray(list(pids), dtype=np.int64),
        *(np.asarray(c, dtype=np.float64) for c in cols[:6]),
        np.asarray(cols[6], dtype=np.int64),
        *(np.asarray(c, dtype=np.float64) for c in cols[7:11]),
        np.asarray(cols[11], dtype=bool),
    )


@dataclass(frozen=True)
class _Camera:
    infrared: bool
    white_balance: np.ndarray  # (3,) RGB channel gains
    background: np.ndarray  # (3,) mean background colour (infrared: equal entries)
    weights: np.ndarray  # (3,) infrared: colour -> response input
    gamma: float  # infrared response exponent
    fold: float  # infrared response: cycles of the cosine over s in [0, 1], x 2
    level: tuple[float, float]  # infrared: offset and scale of the response


def _camera(seed: int, cam: int, *, infrared: bool) -> _Camera:
    g = _rng(seed, _S_CAMERA, cam)
    wb = g.uniform(0.93, 1.07, size=3)
    # Grey-ish scenes: a small tint around a camera grey level.
    bg = g.uniform(0.3, 0.6) + g.uniform(-0.05, 0.05, size=3)
    weights = g.dirichlet(np.ones(3))
    gamma = float(g.uniform(0.6, 1.8))
    fold = float(g.uniform(1.3, 2.0))
    level = (float(g.uniform(0.15, 0.25)), float(g.uniform(0.35, 0.5)))
    if infrared:
        bg = np.full(3, g.uniform(0.05, 0.25))
    return _Camera(infrared, wb, bg, weights, gamma, fold, level)


@dataclass(frozen=True)
class _Poses:
    """Per-image variation: placement, lighting, background, noise seeds."""

    dx: np.ndarray  # (B,) horizontal shift, fraction of width
    dy: np.ndarray  # (B,) vertical shift, fraction of height
    scale: np.ndarray  # (B,) body height / image height
    gain: np.ndarray  # (B,) RGB illumination gain
    bg_colour: np.ndarray  # (B, 3) background colour offset
    bg_freq: np.ndarray  # (B, 3, 2) background sinusoid frequencies (cycles per image)
    bg_phase: np.ndarray  # (B, 3)
    bg_amp: np.ndarray  # (B, 3)
    noise_seed: np.ndarray  # (B,) uint64 per-image noise seeds
    noise: np.ndarray  # (B,) noise standard deviation


def _poses(g: np.random.Generator, b: int) -> _Poses:
    return _Poses(
        dx=g.uniform(-0.1, 0.1, b),
        dy=g.uniform(-0.03, 0.03, b),
        scale=g.uniform(0.82, 0.95, b),
        gain=g.uniform(0.9, 1.1, b),
        bg_colour=g.normal(0.0, 0.04, (b, 3)),
        bg_freq=g.uniform(0.3, 2.0, (b, 3, 2)),
        bg_phase=g.uniform(0, 2 * np.pi, (b, 3)),
        bg_amp=g.uniform(0.0, 0.05, (b, 3)),
        noise_seed=g.integers(0, 2**63, b, dtype=np.uint64),
        noise=g.uniform(0.01, 0.03, b),
    )


def _subset(p: _Poses, sl: slice) -> _Poses:
    return _Poses(**{k: getattr(p, k)[sl] for k in p.__dataclass_fields__})


def _render(
    ident: _Identities, rows: np.ndarray, cam: _Camera, poses: _Poses, size: tuple[int, int]
) -> np.ndarray:
    """Images (B, H, W, 3) uint8 of identity rows ``rows`` seen by ``cam`` with ``poses``."""
    h, w = size
    b = rows.shape[0]
    y = (np.arange(h) + 0.5)[None, :, None]
    x = (np.arange(w) + 0.5)[None, None, :]
    bh = (poses.scale * h)[:, None, None]
    bw = bh * ident.aspect[rows][:, None, None]
    top = ((0.5 + poses.dy) * h)[:, None, None] - bh / 2
    cx = ((0.5 + poses.dx) * w)[:, None, None]
    u = np.broadcast_to((y - top) / bh, (b, h, w))  # body height coordinate, 0 .. 1 on the body
    v = np.broadcast_to((x - cx) / bw, (b, h, w))  # body width coordinate, 0 at the centre

    bounds = ident.bounds[rows]  # (B, P + 1)
    part = (u[..., None] >= bounds[:, None, None, 1:_PARTS]).sum(-1)  # (B, H, W)
    r3 = np.arange(b)[:, None, None]
    lo, hi = bounds[r3, part], bounds[r3, part + 1]
    ul = np.clip((u - lo) / (hi - lo), 0.0, 1.0)  # coordinate within the part

    # Silhouette: per-part half width, an elliptic head, two legs; soft edge of one pixel.
    hw = ident.halfwidth[rows][r3, part]
    hw = np.where(part == _HEAD, hw * np.sqrt(np.clip(1 - (2 * ul - 1) ** 2, 0, 1)) + 0.02, hw)
    edge = np.clip((hw - np.abs(v)) * bw + 0.5, 0.0, 1.0)
    legs = (part == _LEGS) & (ul > 0.12)
    split = np.clip((np.abs(v) - ident.gap[rows][:, None, None]) * bw + 0.5, 0.0, 1.0)
    edge = np.where(legs, edge * split, edge)
    inside = np.clip((u * bh + 0.5), 0, 1) * np.clip(((1 - u) * bh + 0.5), 0, 1)
    alpha = (edge * inside)[..., None]  # (B, H, W, 1)

    # Texture: smooth square waves of the per-part frequency and phase.
    kind = ident.kind[rows][r3, part]
    freq = ident.freq[rows][r3, part]
    phase = ident.phase[rows][r3, part]  # (B, H, W, 2)
    hor = np.tanh(4 * np.sin(2 * np.pi * freq * ul + phase[..., 0]))
    ver = np.tanh(4 * np.sin(2 * np.pi * freq * v + phase[..., 1]))
    t = np.select([kind == 1, kind == 2, kind == 3], [hor, ver, hor * ver], 0.0)
    t = (0.5 + 0.5 * t)[..., None]
    colour = ident.base[rows][r3, part] * (1 - t) + ident.second[rows][r3, part] * t

    # Smooth background: camera colour + per-image offset + a sum of three sinusoids.
    yy, xx = y / h, x / w
    arg = (
        2
        * np.pi
        * (
            poses.bg_freq[:, :, 0, None, None] * yy[:, None]
            + poses.bg_freq[:, :, 1, None, None] * xx[:, None]
        )
        + poses.bg_phase[:, :, None, None]
    )  # (B, 3, H, W)
    wave = (poses.bg_amp[:, :, None, None] * np.sin(arg)).sum(1)[..., None]  # (B, H, W, 1)
    noise = (
        np.stack([np.random.default_rng(int(s)).standard_normal((h, w)) for s in poses.noise_seed])[
            ..., None
        ]
        * poses.noise[:, None, None, None]
    )

    if cam.infrared:
        s = np.clip(colour @ cam.weights, 0.0, 1.0)[..., None]
        resp = 0.5 - 0.5 * np.cos(np.pi * cam.fold * s**cam.gamma)
        emis = ident.emissivity[rows][r3, part][..., None] * (t - 0.5)
        fg = cam.level[0] + cam.level[1] * resp + ident.heat[rows][r3, part][..., None] + emis
        bg = cam.background[0] + poses.bg_colour[:, None, None, :1] * 0.5 + wave
        img = alpha * fg + (1 - alpha) * bg
        # Thermal optics blur: a 3x3 box filter (texture survives at the generated frequencies).
        pad = np.pad(img, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        img = sum(pad[:, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0
        img = np.repeat(img + noise, 3, axis=-1)
    else:
        fg = np.clip(colour * poses.gain[:, None, None, None] * cam.white_balance, 0.0, 1.0)
        bg = cam.background + poses.bg_colour[:, None, None, :] + wave
        img = alpha * fg + (1 - alpha) * bg + noise
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _write_images(
    tmp: Path,
    rels: list[str],
    ident: _Identities,
    rows: np.ndarray,
    cam: _Camera,
    poses: _Poses,
    size: tuple[int, int],
    fmt: str,
) -> None:
    """Render image ``i`` (identity row ``rows[i]``, ``poses`` row i) and write it to ``rels[i]``.

    Rendered a chunk at a time, so the memory is bounded whatever the dataset size. Each pose
    carries its own noise seed, so the chunk size does not change a single byte.
    """
    chunk = max(1, _CHUNK_PIXELS // (size[0] * size[1]))
    made: set[Path] = set()
    for start in range(0, rows.shape[0], chunk):
        sl = slice(start, start + chunk)
        imgs = _render(ident, rows[sl], cam, _subset(poses, sl), size)
        for rel, img in zip(rels[sl], imgs, strict=True):
            path = tmp / rel
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            path.write_bytes(_encode(img, fmt))


def _encode(img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(img, "RGB").save(buf, "JPEG", quality=_JPEG_QUALITY)
    else:
        Image.fromarray(img, "RGB").save(buf, "BMP")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# writing a folder
# ---------------------------------------------------------------------------------------------


def _prepare(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise VireidError(f"{out}: is a file, expected a folder to write the dataset into")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise VireidError(
            f"{out}: folder is not empty; pass force=True (CLI: --force) to write into it"
        )


def _commit(tmp: Path, out: Path, layout_dirs: tuple[str, ...]) -> None:
    """Move the finished ``tmp`` folder to ``out``.

    An absent or empty ``out`` is replaced by one rename. Otherwise (force) each of the layout's
    top-level folders is swapped in whole, so no stale file of an earlier dataset survives in
    them; other files in ``out`` are left alone.
    """
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.replace(tmp, out)
        return
    for name in layout_dirs:
        old = out / name
        trash = None
        if old.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=out))
            os.replace(old, trash / name)
        os.replace(tmp / name, old)
        if trash is not None:
            shutil.rmtree(trash)
    shutil.rmtree(tmp)


def _write(out: Path, force: bool, layout_dirs: tuple[str, ...], fill) -> None:
    _prepare(out, force)
    blocker = next((p for p in out.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise VireidError(f"{out}: cannot create the dataset folder there: {blocker} is a file")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.synthvi.", dir=out.parent))
    except OSError as exc:
        raise VireidError(
            f"{out}: cannot create the dataset folder there ({exc.strerror or exc})"
        ) from exc
    try:
        fill(tmp)
        _commit(tmp, out, layout_dirs)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@dataclass(frozen=True)
class SynthVIInfo:
    """What a writer produced (for the command's report and for tests)."""

    root: Path
    ids: int
    images: dict[str, int]  # per camera ("cam1".."cam6") or modality ("Visible", "Thermal")
    split: dict[str, int]  # identities per split


def sysu_split_sizes(ids: int) -> tuple[int, int, int]:
    """(train, val, test) identity counts: the real 296/99/96 proportions, at least 2/1/2."""
    ids = _check_ids(ids, "sysu")
    test = max(2, round(ids * _SYSU_PROPORTIONS[2]))
    val = max(1, round(ids * _SYSU_PROPORTIONS[1]))
    return ids - val - test, val, test


def _sysu_plan(ids: int, seed: int) -> tuple[dict[str, list[int]], dict[int, np.ndarray]]:
    """Split and per-camera image counts: counts[pid][cam - 1] (0 = absent)."""
    n_train, n_val, _ = sysu_split_sizes(ids)
    pids = np.arange(1, ids + 1)
    perm = _rng(seed, _S_SPLIT).permutation(pids)
    split = {
        "train": sorted(int(p) for p in perm[:n_train]),
        "val": sorted(int(p) for p in perm[n_train : n_train + n_val]),
        "test": sorted(int(p) for p in perm[n_train + n_val :]),
    }
    counts = {}
    rgb = np.array(SYSU_RGB_CAMERAS) - 1
    ir = np.array(SYSU_IR_CAMERAS) - 1
    for pid in pids:
        g = _rng(seed, _S_IDENTITY, int(pid), 1)
        present = g.random(6) < _SYSU_PRESENCE
        # Every identity has both modalities (the readers reject one-modality identities).
        if not present[rgb].any():
            present[g.choice(rgb)] = True
        if not present[ir].any():
            present[g.choice(ir)] = True
        n = g.integers(_SYSU_IMAGES[0], _SYSU_IMAGES[1] + 1, size=6)
        counts[int(pid)] = np.where(present, n, 0)
    return split, counts


def write_sysu(
    out: Path,
    *,
    ids: int = DEFAULT_IDS,
    seed: int = 0,
    image_size: tuple[int, int] = (64, 32),
    force: bool = False,
) -> Path:
    """Write a SynthVI dataset in the SYSU-MM01 layout to ``out``; return ``out``."""
    return _write_sysu(Path(out), ids=ids, seed=seed, image_size=image_size, force=force).root


def _write_sysu(
    out: Path, *, ids: int, seed: int, image_size: tuple[int, int], force: bool
) -> SynthVIInfo:
    ids = _check_ids(ids, "sysu")
    seed = _check_int("seed", seed, 0, MAX_SEED)
    size = _check_size(image_size)
    split, counts = _sysu_plan(ids, seed)
    ident = _identities(range(1, ids + 1), seed)
    images: dict[str, int] = {}

    def fill(tmp: Path) -> None:
        for cam in SYSU_CAMERAS:
            camera = _camera(seed, cam, infrared=cam in SYSU_IR_CAMERAS)
            pids = np.array([p for p in counts if counts[p][cam - 1] > 0], dtype=np.int64)
            n = np.array([counts[int(p)][cam - 1] for p in pids], dtype=np.int64)
            rows = np.repeat(pids - 1, n)
            poses = _poses(_rng(seed, _S_IMAGES, cam), rows.shape[0])
            rels = [
                f"cam{cam}/{pid:04d}/{f:04d}.jpg"
                for pid, k in zip(pids, n, strict=True)
                for f in range(1, k + 1)
            ]
            _write_images(tmp, rels, ident, rows, camera, poses, size, "JPEG")
            (tmp / f"cam{cam}").mkdir(exist_ok=True)
            images[f"cam{cam}"] = int(rows.shape[0])
        exp = tmp / "exp"
        exp.mkdir()
        lists = {**split, "available": list(range(1, ids + 1))}
        for name, pid_list in lists.items():
            (exp / f"{name}_id.txt").write_text(",".join(map(str, pid_list)) + "\n")

    _write(out, force, (*(f"cam{c}" for c in SYSU_CAMERAS), "exp"), fill)
    return SynthVIInfo(out, ids, images, {k: len(v) for k, v in split.items()})


def regdb_split(ids: int, seed: int, trial: int) -> tuple[list[int], list[int]]:
    """(train pids, test pids) of RegDB trial ``trial`` (1..10); an odd id count favours test."""
    ids = _check_ids(ids, "regdb")
    seed = _check_int("seed", seed, 0, MAX_SEED)
    trial = _check_int("trial", trial, 1, REGDB_TRIALS)
    perm = _rng(seed, _S_REGDB_SPLIT, trial).permutation(np.arange(1, ids + 1))
    n_train = ids // 2
    return sorted(int(p) for p in perm[:n_train]), sorted(int(p) for p in perm[n_train:])


def _regdb_name(female: bool, front: bool, modality: str, frame: int, pid: int) -> str:
    return (
        f"{'female' if female else 'male'}_{'front' if front else 'back'}_{modality}_"
        f"{frame:05d}_{pid}.bmp"
    )


def write_regdb(
    out: Path,
    *,
    ids: int = DEFAULT_IDS,
    seed: int = 0,
    image_size: tuple[int, int] = (64, 32),
    force: bool = False,
) -> Path:
    """Write a SynthVI dataset in the RegDB layout to ``out``; return ``out``."""
    return _write_regdb(Path(out), ids=ids, seed=seed, image_size=image_size, force=force).root


def _write_regdb(
    out: Path, *, ids: int, seed: int, image_size: tuple[int, int], force: bool
) -> SynthVIInfo:
    ids = _check_ids(ids, "regdb")
    seed = _check_int("seed", seed, 0, MAX_SEED)
    size = _check_size(image_size)
    ident = _identities(range(1, ids + 1), seed)
    k = REGDB_IMAGES_PER_ID
    rows = np.repeat(np.arange(ids), k)
    # The real pairs come from one dual-camera rig: image j of both modalities shares its pose.
    poses = _poses(_rng(seed, _S_IMAGES, 0), rows.shape[0])
    front = _rng(seed, _S_IMAGES, 1).random(rows.shape[0]) < 0.5
    names: dict[str, list[str]] = {"Visible": [], "Thermal": []}

    def fill(tmp: Path) -> None:
        for cam, (folder, letter) in enumerate((("Visible", "v"), ("Thermal", "t")), start=1):
            camera = _camera(seed, 100 + cam, infrared=folder == "Thermal")
            rels = [
                f"{folder}/{row + 1}/"
                + _regdb_name(bool(ident.female[row]), bool(front[i]), letter, i + 1, int(row) + 1)
                for i, row in enumerate(rows)
            ]
            _write_images(tmp, rels, ident, rows, camera, poses, size, "BMP")
            names[folder] = rels
        idx = tmp / "idx"
        idx.mkdir()
        for trial in range(1, REGDB_TRIALS + 1):
            train, test = regdb_split(ids, seed, trial)
            for split_name, pid_list in (("train", train), ("test", test)):
                label = {p: i for i, p in enumerate(pid_list)}
                for folder in ("Visible", "Thermal"):
                    lines = [
                        f"{rel} {label[int(rel.split('/')[1])]}"
                        for rel in names[folder]
                        if int(rel.split("/")[1]) in label
                    ]
                    fname = f"{split_name}_{folder.lower()}_{trial}.txt"
                    (idx / fname).write_text("\n".join(lines) + "\n")

    _write(out, force, ("Visible", "Thermal", "idx"), fill)
    return SynthVIInfo(
        out,
        ids,
        {"Visible": ids * k, "Thermal": ids * k},
        {"train": ids // 2, "test": ids - ids // 2},
    )


def synth_command(*, layout: str, out: Path, ids: int | None, seed: int, force: bool) -> int:
    """``vireid synth``: write a SynthVI folder, print what was written, return 0."""
    n = DEFAULT_IDS if ids is None else ids
    if layout == "sysu":
        info = _write_sysu(Path(out), ids=n, seed=seed, image_size=(64, 32), force=force)
        rgb = sum(info.images[f"cam{c}"] for c in SYSU_RGB_CAMERAS)
        ir = sum(info.images[f"cam{c}"] for c in SYSU_IR_CAMERAS)
        per_cam = ", ".join(f"{c} {info.images[c]}" for c in sorted(info.images))
        print(
            f"wrote SynthVI (SYSU-MM01 layout) to {info.root}: {info.ids} identities "
            f"(train {info.split['train']}, val {info.split['val']}, test {info.split['test']}), "
            f"{rgb} RGB and {ir} IR images ({per_cam})"
        )
    elif layout == "regdb":
        info = _write_regdb(Path(out), ids=n, seed=seed, image_size=(64, 32), force=force)
        print(
            f"wrote SynthVI (RegDB layout) to {info.root}: {info.ids} identities, "
            f"{info.images['Visible']} visible and {info.images['Thermal']} thermal images, "
            f"{REGDB_TRIALS} trials of {info.split['train']} train / {info.split['test']} test "
            f"identities"
        )
    else:
        raise VireidError(f"layout: expected 'sysu' or 'regdb', got {layout!r}")
    return 0
