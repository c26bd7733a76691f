"""SynthVI's generative model: identities, cameras, poses, and the rendering of images.

Spec: ``spec/data/synthvi.md``. A person is a vertical stack of body parts (head, torso, legs,
shoes), each with a per-identity width, base colour, second colour and texture (plain, horizontal
stripes, vertical stripes or checks, with a per-identity frequency and phase). An image places the
body with a random shift and scale over a smooth random background and adds pixel noise. A visible
(RGB) camera renders

    rgb = alpha * clip(gain * wb_cam * colour) + (1 - alpha) * background

and an infrared camera keeps the shape and texture but maps colour to one intensity through a
camera-specific non-linear response

    s = clip(w_cam . colour),   R = (1 - cos(pi * kappa_cam * s ** gamma_cam)) / 2
    ir = box3x3(alpha * (l0 + l1 * R + heat + emissivity * (t - 1/2))
                + (1 - alpha) * background_ir) + noise

(t: the texture's 0..1 mix of the two colours), stored with three equal channels. Every random
draw comes from a ``numpy.random.Generator`` seeded from ``(seed, stream, key)`` (:func:`rng`),
so the same arguments give byte-identical images. The layout writers (``synthvi.py``, and any
other dataset layout) render with :func:`write_images`: identity rows, a camera and poses in,
encoded files out.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "S_CAMERA",
    "S_IDENTITY",
    "S_IMAGES",
    "S_REGDB_SPLIT",
    "S_SPLIT",
    "Camera",
    "Identities",
    "IdentityLook",
    "Poses",
    "camera",
    "encode",
    "identities",
    "identity_look",
    "poses",
    "render",
    "rng",
    "subset",
    "write_images",
]

_JPEG_QUALITY = 90
# Pixels rendered at once: bounds the working memory (about 50 MB per float64 RGB array).
CHUNK_PIXELS = 1 << 21

# Stream tags mixed into every seed, so that no two kinds of draw share a generator.
S_IDENTITY = 1
S_CAMERA = 2
S_IMAGES = 3
S_SPLIT = 4
S_REGDB_SPLIT = 5

# Body parts, top to bottom.
_HEAD, _TORSO, _LEGS, _SHOES = range(4)
_PARTS = 4


def rng(seed: int, stream: int, *key: int) -> np.random.Generator:
    """The generator of draw ``key`` of kind ``stream`` (one of the ``S_*`` tags) for ``seed``."""
    # The seed is the entropy and (stream, *key) the spawn key: distinct keys never share a
    # generator, whatever their lengths (a plain entropy tuple would confuse (s, 3) and (s, 3, 0)).
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, *key)))


@dataclass(frozen=True)
class Identities:
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


@dataclass(frozen=True)
class IdentityLook:
    """The appearance of one identity (one row of :class:`Identities`)."""

    bounds: np.ndarray  # (P + 1,) part boundaries in body height units, 0 .. 1
    halfwidth: np.ndarray  # (P,) half width of each part in body width units
    gap: float  # half gap between the legs
    aspect: float  # body width / body height
    base: np.ndarray  # (P, 3) colour in [0, 1]
    second: np.ndarray  # (P, 3) second texture colour
    kind: np.ndarray  # (P,) texture kind
    freq: np.ndarray  # (P,) texture frequency
    phase: np.ndarray  # (P, 2) texture phases
    heat: np.ndarray  # (P,) infrared emission
    emissivity: np.ndarray  # (P,) infrared contrast of the second texture colour
    female: bool  # only used for RegDB file names


def identity_look(pid: int, seed: int) -> IdentityLook:
    """The appearance of identity ``pid``: a function of ``(seed, pid)`` alone."""
    g = rng(seed, S_IDENTITY, int(pid))
    head_end = g.uniform(0.12, 0.17)
    torso_end = g.uniform(0.44, 0.56)
    legs_end = g.uniform(0.90, 0.95)
    bounds = np.array([0.0, head_end, torso_end, legs_end, 1.0])
    halfwidth = np.array([g.uniform(0.16, 0.22), g.uniform(0.40, 0.50), g.uniform(0.32, 0.44), 0.0])
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
    # drawn last, in this order: the gap, the aspect, the sex
    gap = g.uniform(0.02, 0.06)
    aspect = g.uniform(0.36, 0.44)
    female = bool(g.random() < 0.5)
    return IdentityLook(
        bounds, halfwidth, gap, aspect, base, second, kind, freq, phase, heat, emissivity, female
    )


_DTYPES = {"kind": np.int64, "female": bool}


def identities(pids: Iterable[int], seed: int) -> Identities:
    """The appearance of each of ``pids`` (row i describes ``pids[i]``)."""
    pids = [int(p) for p in pids]
    looks = [identity_look(pid, seed) for pid in pids]
    columns = {
        f.name: np.asarray(
            [getattr(look, f.name) for look in looks], dtype=_DTYPES.get(f.name, np.float64)
        )
        for f in fields(IdentityLook)
    }
    return Identities(np.asarray(pids, dtype=np.int64), **columns)


@dataclass(frozen=True)
class Camera:
    infrared: bool
    white_balance: np.ndarray  # (3,) RGB channel gains
    background: np.ndarray  # (3,) mean background colour (infrared: equal entries)
    weights: np.ndarray  # (3,) infrared: colour -> response input
    gamma: float  # infrared response exponent
    fold: float  # infrared response: cycles of the cosine over s in [0, 1], x 2
    level: tuple[float, float]  # infrared: offset and scale of the response


def camera(seed: int, cam: int, *, infrared: bool) -> Camera:
    """Camera ``cam``'s white balance, background and (infrared) response, from ``seed``."""
    g = rng(seed, S_CAMERA, cam)
    wb = g.uniform(0.93, 1.07, size=3)
    # Grey-ish scenes: a small tint around a camera grey level.
    bg = g.uniform(0.3, 0.6) + g.uniform(-0.05, 0.05, size=3)
    weights = g.dirichlet(np.ones(3))
    gamma = float(g.uniform(0.6, 1.8))
    fold = float(g.uniform(1.3, 2.0))
    level = (float(g.uniform(0.15, 0.25)), float(g.uniform(0.35, 0.5)))
    if infrared:
        bg = np.full(3, g.uniform(0.05, 0.25))
    return Camera(infrared, wb, bg, weights, gamma, fold, level)


@dataclass(frozen=True)
class Poses:
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


def poses(g: np.random.Generator, b: int) -> Poses:
    """``b`` poses drawn from ``g``."""
    return Poses(
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


def subset(p: Poses, sl: slice) -> Poses:
    """The poses of rows ``sl``."""
    return Poses(**{k: getattr(p, k)[sl] for k in p.__dataclass_fields__})


def render(
    ident: Identities, rows: np.ndarray, cam: Camera, poses: Poses, size: tuple[int, int]
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


def write_images(
    tmp: Path,
    rels: list[str],
    ident: Identities,
    rows: np.ndarray,
    cam: Camera,
    poses: Poses,
    size: tuple[int, int],
    fmt: str,
) -> None:
    """Render image ``i`` (identity row ``rows[i]``, ``poses`` row i) and write it to ``rels[i]``.

    Rendered a chunk at a time, so the memory is bounded whatever the dataset size. Each pose
    carries its own noise seed, so the chunk size does not change a single byte.
    """
    chunk = max(1, CHUNK_PIXELS // (size[0] * size[1]))
    made: set[Path] = set()
    for start in range(0, rows.shape[0], chunk):
        sl = slice(start, start + chunk)
        imgs = render(ident, rows[sl], cam, subset(poses, sl), size)
        for rel, img in zip(rels[sl], imgs, strict=True):
            path = tmp / rel
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            path.write_bytes(encode(img, fmt))


def encode(img: np.ndarray, fmt: str) -> bytes:
    """``img`` (H, W, 3) uint8 as a JPEG (quality 90) or BMP file's bytes."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(img, "RGB").save(buf, "JPEG", quality=_JPEG_QUALITY)
    else:
        Image.fromarray(img, "RGB").save(buf, "BMP")
    return buf.getvalue()
