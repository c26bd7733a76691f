"""Method B's derivative modalities D_V and D_I, and the four-modality batch built from them.

Spec: ``spec/data/derivatives.md``. The seed says only that two derivative modalities are derived
from V and I [seed]; how they are derived is this project's [reconstruction], parameter-free and
switchable. On uint8 (B, 3, H, W) images, with the BT.601 luma

    Y = round((299 R + 587 G + 114 B) / 1000)          (integer arithmetic, exact)

- visible ``"gray"`` (default): D_V = (Y, Y, Y).
- infrared ``"equalize"`` (default): D_I = (E, E, E), E the per-image histogram equalisation of Y:
  ``E(v) = round(255 (cdf(v) - cdf_min) / (n - cdf_min))``, a constant image unchanged.
- infrared ``"invert"``: D_I = (255 - Y, ...). infrared ``"gray"``: D_I = (Y, Y, Y).

``four_modality`` appends D_V of the V rows then D_I of the I rows to a uint8 batch, with tags 2
and 3 and the labels and cameras of their source rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from reference.checks import check_choice
from reference.data.batch import Batch
from reference.data.modality import Modality
from reference.data.transforms import check_uint8_images
from reference.errors import VireidError

VisibleDerivative = Literal["gray"]
InfraredDerivative = Literal["equalize", "invert", "gray"]
VISIBLE_DERIVATIVES: tuple[str, ...] = ("gray",)
INFRARED_DERIVATIVES: tuple[str, ...] = ("equalize", "invert", "gray")


def luma(images: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of a uint8 (B, 3, H, W) batch as uint8 (B, H, W), rounded half up."""
    images = check_uint8_images(images)
    x = images.to(torch.int32)
    y = (299 * x[:, 0] + 587 * x[:, 1] + 114 * x[:, 2] + 500) // 1000
    return y.to(torch.uint8)


def _replicate(y: torch.Tensor) -> torch.Tensor:
    return y[:, None].expand(-1, 3, -1, -1).contiguous()


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """(Y, Y, Y): the luma replicated to three channels."""
    return _replicate(luma(images))


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Per-image histogram equalisation of the luma, replicated to three channels."""
    y = luma(images)
    b = y.shape[0]
    if y.numel() == 0:
        return _replicate(y)
    flat = y.reshape(b, -1).to(torch.int64)
    n = flat.shape[1]
    hist = torch.zeros(b, 256, dtype=torch.int64, device=y.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    cdf = hist.cumsum(1)
    cdf_min = cdf.gather(1, flat.min(dim=1, keepdim=True).values)  # count of the darkest value
    span = n - cdf_min  # 0 only for a constant image
    safe = span.clamp(min=1)
    # round half up in exact integer arithmetic
    lut = (2 * 255 * (cdf - cdf_min) + safe) // (2 * safe)
    lut = torch.where(span > 0, lut.clamp(0, 255), torch.arange(256, device=y.device)[None])
    return _replicate(lut.gather(1, flat).reshape(y.shape).to(torch.uint8))


def invert(images: torch.Tensor) -> torch.Tensor:
    """(255 - Y) replicated to three channels."""
    return _replicate(255 - luma(images))


_VISIBLE = {"gray": grayscale}
_INFRARED = {"equalize": equalize, "invert": invert, "gray": grayscale}


@dataclass(frozen=True)
class DerivativeConfig:
    """Which derivative makes D_V from V rows and D_I from I rows."""

    visible: VisibleDerivative = "gray"
    infrared: InfraredDerivative = "equalize"

    def __post_init__(self) -> None:
        check_choice(
            self.visible, "visible", _VISIBLE, expected=f"one of {list(VISIBLE_DERIVATIVES)}"
        )
        check_choice(
            self.infrared, "infrared", _INFRARED, expected=f"one of {list(INFRARED_DERIVATIVES)}"
        )


def derive_visible(images: torch.Tensor, kind: str = "gray") -> torch.Tensor:
    """D_V of visible uint8 images."""
    return _VISIBLE[DerivativeConfig(visible=kind).visible](images)  # type: ignore[arg-type]


def derive_infrared(images: torch.Tensor, kind: str = "equalize") -> torch.Tensor:
    """D_I of infrared uint8 images."""
    return _INFRARED[DerivativeConfig(infrared=kind).infrared](images)  # type: ignore[arg-type]


def four_modality(batch: Batch, config: DerivativeConfig | None = None) -> Batch:
    """Append D_V (tag 2) of the V rows, then D_I (tag 3) of the I rows, to a uint8 V/I batch.

    Row order of the result: the input rows, then one D_V row per V row in the V rows' order,
    then one D_I row per I row in the I rows' order. Labels and cameras are the source rows'.
    """
    config = config or DerivativeConfig()
    check_uint8_images(batch.images, "images")
    tags = batch.modality
    derived = tags[(tags != int(Modality.VISIBLE)) & (tags != int(Modality.INFRARED))]
    if derived.numel():
        raise VireidError(
            "modality: four_modality expects only V (0) and I (1) rows, got tag(s) "
            f"{sorted(int(t) for t in derived.unique().tolist())}"
        )
    v = (tags == int(Modality.VISIBLE)).nonzero().flatten()
    i = (tags == int(Modality.INFRARED)).nonzero().flatten()
    images = torch.cat(
        [
            batch.images,
            _VISIBLE[config.visible](batch.images[v]),
            _INFRARED[config.infrared](batch.images[i]),
        ]
    )
    modality = torch.cat(
        [
            tags,
            torch.full_like(tags[v], int(Modality.VISIBLE_DERIVED)),
            torch.full_like(tags[i], int(Modality.INFRARED_DERIVED)),
        ]
    )
    return Batch(
        images=images,
        labels=torch.cat([batch.labels, batch.labels[v], batch.labels[i]]),
        modality=modality,
        camids=torch.cat([batch.camids, batch.camids[v], batch.camids[i]]),
    )
