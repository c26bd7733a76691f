"""Batched train and test transforms for uint8 image batches, on whatever device the batch is on.

Spec: ``spec/data/transforms.md``. Train, per sample ``b`` of a uint8 batch ``x`` (B, 3, H, W):

    x_b <- resize(x_b, size)                                    (bilinear, antialiased)
    x_b <- crop(pad(x_b, pad, 0), top=t_b, left=l_b, size)      t_b, l_b ~ U{0, ..., 2 pad}
    x_b <- hflip(x_b) if u_b < flip_p                           u_b ~ U[0, 1)
    x_b <- channel augmentation if x_b is a visible row         (option)
    y_b <- (x_b / 255 - mean) / std                             (one affine map per channel)
    y_b <- random erasing                                       (option)

Test: resize, /255, normalise; nothing random. Every random parameter is drawn per sample from an
explicit CPU ``torch.Generator`` and then moved to the batch's device, so a batch gives the same
output on CPU and GPU for the same generator state. torchvision v2 functionals do the test
transform and the resize; the per-sample crop, flip, erasing and channel choice are vectorised
here, because a v2 transform called on a batch draws one set of parameters for the whole batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from reference.checks import check_bool, check_integer, check_probability, is_real
from reference.data.modality import Modality, check_modality_tags
from reference.errors import VireidError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# channel augmentation's grayscale weights, as the common code writes them
_CA_GRAY = (0.2989, 0.5870, 0.1140)
_ERASE_ATTEMPTS = 10


@dataclass(frozen=True)
class TransformConfig:
    """Settings of the train and test transforms; defaults are the predecessor's recipe."""

    size: tuple[int, int] = (288, 144)
    pad: int = 10
    flip_p: float = 0.5
    erase_p: float = 0.0
    erase_area: tuple[float, float] = (0.02, 0.4)
    erase_aspect: float = 0.3
    erase_value: tuple[float, float, float] = (0.0, 0.0, 0.0)
    channel_aug: bool = False
    channel_gray_p: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        # tuples of numbers, whatever sequence a preset file gave (JSON has only lists)
        for name, n in (
            ("size", 2),
            ("erase_area", 2),
            ("mean", 3),
            ("std", 3),
            ("erase_value", 3),
        ):
            value = getattr(self, name)
            what = "(H, W)" if name == "size" else "(min, max)" if n == 2 else "(R, G, B)"
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != n:
                raise VireidError(f"{name}: expected {n} values {what}, got {value!r}")
            if not all(is_real(v) for v in value):
                raise VireidError(f"{name}: expected {n} numbers {what}, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if not all(isinstance(v, int) and v > 0 for v in self.size):
            raise VireidError(f"size: expected two positive integers (H, W), got {self.size!r}")
        check_integer(self.pad, "pad", low=0, expected="a non-negative integer", numpy=False)
        for name in ("flip_p", "erase_p", "channel_gray_p"):
            check_probability(getattr(self, name), name)
        lo, hi = self.erase_area
        if not 0.0 < lo <= hi < 1.0:
            raise VireidError(
                f"erase_area: expected 0 < min <= max < 1 (fractions of the image), "
                f"got {self.erase_area!r}"
            )
        if not is_real(self.erase_aspect) or not 0.0 < self.erase_aspect <= 1.0:
            raise VireidError(
                f"erase_aspect: expected a ratio in (0, 1], got {self.erase_aspect!r}"
            )
        check_bool(self.channel_aug, "channel_aug")
        if not all(math.isfinite(v) for v in (*self.mean, *self.std, *self.erase_value)):
            raise VireidError("mean, std, erase_value: expected finite numbers")
        if not all(s > 0 for s in self.std):
            raise VireidError(f"std: expected positive values, got {self.std!r}")


def check_uint8_images(images: object, field: str = "images") -> torch.Tensor:
    """Return ``images`` if it is a uint8 (B, 3, H, W) tensor, else raise naming ``field``."""
    if not isinstance(images, torch.Tensor):
        raise VireidError(f"{field}: expected a torch.Tensor, got {type(images)!r}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise VireidError(
            f"{field}: expected a (B, 3, H, W) tensor, got shape {tuple(images.shape)}"
        )
    if images.dtype != torch.uint8:
        raise VireidError(f"{field}: expected dtype torch.uint8, got {images.dtype}")
    return images


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear antialiased resize of a uint8 batch to ``size``; a no-op at that size already."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return TF.resize(images, list(size), antialias=True)


def normalise(images: torch.Tensor, config: TransformConfig) -> torch.Tensor:
    """uint8 -> float32 in [0, 1] -> ``(x - mean) / std`` per channel (torchvision v2)."""
    return TF.normalize(TF.to_dtype(images, torch.float32, scale=True), config.mean, config.std)


def fused_normalise(images: torch.Tensor, config: TransformConfig) -> torch.Tensor:
    """:func:`normalise` as one affine map ``x * (1 / (255 std)) - mean / std``.

    Equal to :func:`normalise` up to float32 rounding (a few ulp) and about twice as fast on a
    CPU (two passes over the batch instead of four); the train path uses it.
    """
    scale, shift = _affine(config, images.device)
    return images.to(torch.float32).mul_(scale).add_(shift)


def _affine(config: TransformConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(config.mean, dtype=torch.float64)
    std = torch.tensor(config.std, dtype=torch.float64)
    scale = (1.0 / (255.0 * std)).to(torch.float32).view(1, 3, 1, 1).to(device)
    shift = (-mean / std).to(torch.float32).view(1, 3, 1, 1).to(device)
    return scale, shift


@dataclass(frozen=True)
class Geometry:
    """Per-sample crop offsets (into the padded image) and flip flags, on the CPU."""

    top: torch.Tensor  # (B,) int64 in 0..2*pad
    left: torch.Tensor  # (B,) int64 in 0..2*pad
    flip: torch.Tensor  # (B,) bool


def draw_geometry(n: int, config: TransformConfig, generator: torch.Generator) -> Geometry:
    """Draw the crop offsets then the flip flags of ``n`` samples, in that order."""
    top = torch.randint(0, 2 * config.pad + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * config.pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < config.flip_p
    return Geometry(top, left, flip)


def apply_geometry(images: torch.Tensor, geometry: Geometry, pad: int) -> torch.Tensor:
    """Zero-pad by ``pad``, crop each sample back at its offsets, flip the flagged ones."""
    if images.shape[0] == 0:
        return images
    if images.device.type == "cpu":
        return _geometry_loop(images, geometry, pad)
    return _geometry_gather(images, geometry, pad)


def _geometry_gather(images: torch.Tensor, geometry: Geometry, pad: int) -> torch.Tensor:
    # one vectorised gather: the fast path on a GPU
    b, _, h, w = images.shape
    dev = images.device
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    rows = geometry.top.to(dev)[:, None] + torch.arange(h, device=dev)  # (B, H)
    cols = geometry.left.to(dev)[:, None] + torch.arange(w, device=dev)  # (B, W)
    # flipping the crop = reading its columns right to left
    cols = torch.where(geometry.flip.to(dev)[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=dev)[:, None, None]
    # advanced indices around a slice put the broadcast dims first: (B, H, W, C)
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def _geometry_loop(images: torch.Tensor, geometry: Geometry, pad: int) -> torch.Tensor:
    # per-sample slice copies in NumPy: on a CPU this is several times cheaper than the gather
    # and avoids a thread-pool round trip per small copy; same result as _geometry_gather
    h, w = images.shape[-2:]
    src = images.contiguous().numpy()
    out = np.zeros_like(src)
    shifts = zip(
        (geometry.top - pad).tolist(),
        (geometry.left - pad).tolist(),
        geometry.flip.tolist(),
        strict=True,
    )
    for i, (dy, dx, flip) in enumerate(shifts):
        # output pixel (r, c) of the unflipped crop is source pixel (r + dy, c + dx), or 0
        r0, r1 = max(0, -dy), min(h, h - dy)
        c0, c1 = max(0, -dx), min(w, w - dx)
        if r0 < r1 and c0 < c1:
            out[i, :, r0:r1, c0:c1] = src[i, :, r0 + dy : r1 + dy, c0 + dx : c1 + dx]
        if flip:
            out[i] = out[i, :, :, ::-1]
    return torch.from_numpy(out)


def channel_augment(
    images: torch.Tensor, rows: torch.Tensor, config: TransformConfig, generator: torch.Generator
) -> torch.Tensor:
    """Channel augmentation of the float ``images`` rows selected by the bool ``rows``.

    Applied before normalisation (to 0..1 or 0..255 values alike: every case is linear).

    Per selected sample, ``c ~ U{0, 1, 2, 3}``: ``c < 3`` replicates channel ``c`` to all three;
    ``c = 3`` replaces the image by its gray (weights 0.2989, 0.5870, 0.1140) with probability
    ``channel_gray_p`` and keeps it otherwise. Draws ``c`` then the gray coin for every sample.
    """
    n = images.shape[0]
    choice = torch.randint(0, 4, (n,), generator=generator)
    gray_coin = torch.rand(n, generator=generator) < config.channel_gray_p
    dev = images.device
    choice, gray_coin = choice.to(dev), gray_coin.to(dev)
    weights = torch.tensor(_CA_GRAY, dtype=images.dtype, device=dev)
    gray = torch.einsum("bchw,c->bhw", images, weights)
    single = images.gather(
        1, choice.clamp(max=2)[:, None, None, None].expand(-1, 1, *images.shape[2:])
    )
    out = images
    rows = rows.to(dev)
    out = torch.where((rows & (choice < 3))[:, None, None, None], single.expand_as(images), out)
    use_gray = rows & (choice == 3) & gray_coin
    return torch.where(use_gray[:, None, None, None], gray[:, None].expand_as(images), out)


def random_erase(
    images: torch.Tensor, config: TransformConfig, generator: torch.Generator
) -> torch.Tensor:
    """Random erasing of a normalised float batch, independently per sample.

    With probability ``erase_p`` a sample gets one rectangle set to ``erase_value``: up to 10
    attempts, each with area ``U(erase_area) * H * W`` and aspect ``r ~ U(erase_aspect,
    1/erase_aspect)``, ``h = round(sqrt(area * r))``, ``w = round(sqrt(area / r))``; the first
    attempt with ``h < H`` and ``w < W`` is placed at ``top ~ U{0..H-h}``, ``left ~ U{0..W-w}``.
    """
    n, _, h, w = images.shape
    coin = torch.rand(n, generator=generator) < config.erase_p
    lo, hi = config.erase_area
    r = config.erase_aspect
    area = (
        lo + (hi - lo) * torch.rand(n, _ERASE_ATTEMPTS, generator=generator, dtype=torch.float64)
    ) * (h * w)
    aspect = r + (1 / r - r) * torch.rand(
        n, _ERASE_ATTEMPTS, generator=generator, dtype=torch.float64
    )
    eh = torch.round(torch.sqrt(area * aspect)).long()
    ew = torch.round(torch.sqrt(area / aspect)).long()
    fits = (eh < h) & (ew < w)
    first = fits.to(torch.int8).argmax(dim=1)  # first fitting attempt (0 when none fits)
    eh = eh.gather(1, first[:, None])[:, 0]
    ew = ew.gather(1, first[:, None])[:, 0]
    active = coin & fits.any(dim=1)
    u_top = torch.rand(n, generator=generator, dtype=torch.float64)
    u_left = torch.rand(n, generator=generator, dtype=torch.float64)
    top = torch.floor(u_top * (h - eh + 1)).long().clamp(max=h - 1)
    left = torch.floor(u_left * (w - ew + 1)).long().clamp(max=w - 1)
    dev = images.device
    ys = torch.arange(h, device=dev)[None, :, None]
    xs = torch.arange(w, device=dev)[None, None, :]
    top, left, eh, ew, active = (t.to(dev) for t in (top, left, eh, ew, active))
    inside = (
        (ys >= top[:, None, None])
        & (ys < (top + eh)[:, None, None])
        & (xs >= left[:, None, None])
        & (xs < (left + ew)[:, None, None])
        & active[:, None, None]
    )
    value = torch.tensor(config.erase_value, dtype=images.dtype, device=dev)[None, :, None, None]
    return torch.where(inside[:, None], value, images)


class TrainTransform:
    """The training transform: ``geometric`` (uint8 -> uint8) then ``photometric`` (-> float)."""

    def __init__(self, config: TransformConfig | None = None) -> None:
        self.config = config or TransformConfig()

    def geometric(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Resize, per-sample pad-and-crop and flip; uint8 in, uint8 out, same device."""
        images = resize(check_uint8_images(images), self.config.size)
        geometry = draw_geometry(images.shape[0], self.config, generator)
        return apply_geometry(images, geometry, self.config.pad)

    def photometric(
        self,
        images: torch.Tensor,
        generator: torch.Generator,
        modality: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """uint8 -> float32: channel augmentation of visible rows (option), normalisation,
        random erasing (option)."""
        images = check_uint8_images(images)
        cfg = self.config
        # 0..255 floats: channel augmentation is linear, so it commutes with the 1/255 scale
        x = images.to(torch.float32)
        if cfg.channel_aug:
            if modality is None:
                raise VireidError(
                    "modality: required when channel_aug is on (it applies to visible rows only)"
                )
            check_modality_tags(modality, images.shape[0])
            x = channel_augment(x, modality == int(Modality.VISIBLE), cfg, generator)
        scale, shift = _affine(cfg, x.device)
        x = x.mul_(scale).add_(shift)
        if cfg.erase_p > 0:
            x = random_erase(x, cfg, generator)
        return x

    def __call__(
        self,
        images: torch.Tensor,
        generator: torch.Generator,
        modality: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.photometric(self.geometric(images, generator), generator, modality)


class TestTransform:
    """The deterministic test transform: resize then normalise."""

    __test__ = False  # not a pytest class

    def __init__(self, config: TransformConfig | None = None) -> None:
        self.config = config or TransformConfig()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = resize(check_uint8_images(images), self.config.size)
        return normalise(images, self.config)
