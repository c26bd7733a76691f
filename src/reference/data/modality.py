"""Modality tags carried by every row of a batch and of a model output.

Spec: ``spec/data/modality.md``. The two base modalities are visible (V) and infrared (I) [seed];
Method B adds one derivative of each, D_V and D_I [seed]. The integer values are this project's
convention and are what a ``modality`` tensor holds.
"""

from __future__ import annotations

import enum

import torch

from reference.errors import VireidError


class Modality(enum.IntEnum):
    VISIBLE = 0
    INFRARED = 1
    VISIBLE_DERIVED = 2
    INFRARED_DERIVED = 3

    @property
    def short(self) -> str:
        """``V``, ``I``, ``DV`` or ``DI``."""
        return _SHORT[self]

    @property
    def base(self) -> Modality:
        """The base modality this one is (or is derived from)."""
        return Modality(int(self) % 2)

    @property
    def is_derived(self) -> bool:
        return int(self) >= 2


_SHORT = {
    Modality.VISIBLE: "V",
    Modality.INFRARED: "I",
    Modality.VISIBLE_DERIVED: "DV",
    Modality.INFRARED_DERIVED: "DI",
}


def check_modality_tags(tags: torch.Tensor, n: int, *, field: str = "modality") -> None:
    """Raise :class:`VireidError` unless ``tags`` is an integer (n,) tensor of Modality values."""
    if not isinstance(tags, torch.Tensor):
        raise VireidError(f"{field}: expected a torch.Tensor of modality tags, got {type(tags)!r}")
    if tags.dtype.is_floating_point or tags.dtype.is_complex or tags.dtype == torch.bool:
        raise VireidError(f"{field}: expected an integer tensor, got dtype {tags.dtype}")
    if tags.shape != (n,):
        raise VireidError(f"{field}: expected shape ({n},), got {tuple(tags.shape)}")
    # the values are not read while torch.compile traces (that would break or fail the capture)
    if (
        n
        and not torch.compiler.is_compiling()
        and (int(tags.min()) < 0 or int(tags.max()) > max(Modality))
    ):
        bad = sorted({int(t) for t in tags.unique().tolist()} - {int(m) for m in Modality})
        raise VireidError(
            f"{field}: unknown modality tag(s) {bad}; expected values in "
            + ", ".join(f"{int(m)} ({m.short})" for m in Modality)
        )
