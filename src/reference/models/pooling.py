"""Generalised-mean (GeM) pooling over a feature map and over its horizontal stripes.

Spec: ``spec/models/pooling.md``. For a map ``x`` of shape ``(B, C, h, w)`` and ``p >= 1``::

    gem(x)[b, c] = ( mean_{i, j} max(x[b, c, i, j], 0) ** p  +  eps ) ** (1 / p),  eps = 1e-12

``p = 1`` is average pooling (up to ``eps``), ``p -> inf`` approaches max pooling. The stripe
version splits the ``h`` rows into ``n`` equal consecutive bands (top to bottom) and pools each.
"""

from __future__ import annotations

import math

import torch

from reference.errors import VireidError

GEM_EPS = 1e-12


def check_gem_p(p: float, *, field: str = "gem_p") -> float:
    """Return ``p`` as a float; raise unless it is a finite number >= 1."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p < 1:
        raise VireidError(f"{field}: expected a finite number >= 1, got {p!r}")
    return float(p)


def gem_stripes(x: torch.Tensor, stripes: int, p: float) -> torch.Tensor:
    """GeM of each of ``stripes`` equal horizontal bands of ``x``: ``(B, C, h, w) -> (B, C, n)``.

    ``h`` must be a multiple of ``stripes`` (the predecessor asserts the same); band ``i`` holds
    rows ``i * h / n`` to ``(i + 1) * h / n - 1``.
    """
    p = check_gem_p(p)
    if x.dim() != 4:
        raise VireidError(f"feature map: expected a (B, C, h, w) tensor, got {tuple(x.shape)}")
    if isinstance(stripes, bool) or not isinstance(stripes, int) or stripes < 1:
        raise VireidError(f"stripes: expected an integer >= 1, got {stripes!r}")
    b, c, h, w = x.shape
    if h % stripes:
        raise VireidError(f"feature map: height {h} is not divisible into {stripes} equal stripes")
    # clamp: no-op on ResNet's post-ReLU maps, keeps x ** p real for any input
    bands = x.clamp(min=0).reshape(b, c, stripes, (h // stripes) * w)
    if p == 1.0:
        return bands.mean(dim=-1) + GEM_EPS
    return (bands.pow(p).mean(dim=-1) + GEM_EPS).pow(1.0 / p)


def gem(x: torch.Tensor, p: float) -> torch.Tensor:
    """GeM over the whole map: ``(B, C, h, w) -> (B, C)``."""
    return gem_stripes(x, 1, p).squeeze(-1)
