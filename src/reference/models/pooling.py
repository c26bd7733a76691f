"""Generalised-mean (GeM) pooling over a feature map and over its horizontal stripes.

Spec: ``spec/models/pooling.md``. For a map ``x`` of shape ``(B, C, h, w)`` and ``p >= 1``::

    gem(x)[b, c] = ( mean_{i, j} max(x[b, c, i, j], 0) ** p  +  eps ) ** (1 / p),  eps = 1e-12

``p = 1`` is average pooling (up to ``eps``), ``p -> inf`` approaches max pooling. The stripe
version splits the ``h`` rows into ``n`` equal consecutive bands (top to bottom) and pools each.
Several stripe counts are pooled together from one power of the map (``gem_stripes_many``): the
map is cut into ``L = lcm(n_1, n_2, ...)`` equal bands once, and the mean of a stripe of
granularity ``n`` is the mean of its ``L / n`` consecutive band means (the bands are of equal size).

Plain formula: :func:`band_power_mean_plain` (clamp, power, band means). Fast path: the same
numbers as one autograd node with a written-out backward (``_BandPowerMeanFastBackward``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from reference.checks import check_integer, check_number
from reference.errors import VireidError

GEM_EPS = 1e-12


def check_gem_p(p: float, *, field: str = "gem_p") -> float:
    """Return ``p`` as a float; raise unless it is a finite number >= 1."""
    return check_number(p, field, low=1.0, expected="a finite number >= 1")


def band_power_mean_plain(x: torch.Tensor, bands: int, p: float) -> torch.Tensor:
    """The plain formula: ``mean over each of L equal row bands of max(x, 0) ** p``,
    ``(B, C, h, w) -> (B, C, L)``, as the chain clamp -> pow -> mean that autograd differentiates.
    """
    b, c, h, w = x.shape
    clamped = x.clamp(min=0)
    powered = clamped if p == 1.0 else clamped.pow(p)
    return powered.reshape(b, c, bands, (h // bands) * w).mean(dim=-1)


class _BandPowerMeanFastBackward(torch.autograd.Function):
    """Fast path of :func:`band_power_mean_plain`: equal to it in value and gradient (proved by
    ``tests/models/test_pooling.py::test_gradient_matches_the_clamp_pow_mean_chain``, and its
    second derivatives by ``::test_second_derivatives``).

    Written as one autograd node so that neither ``max(x, 0)`` nor its power is kept for the
    backward pass (only ``x``, which the backbone keeps anyway), and the gradient is one fused
    expression instead of the chain clamp -> pow -> mean (three passes over the map and a mask).
    The gradient is the one of that chain: ``p * max(x, 0) ** (p - 1) / (rows * w)`` times the
    band's incoming gradient, and for ``p = 1`` the indicator of ``x > 0`` (torch's clamp passes
    no gradient at 0, for any ``p``).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, bands: int, p: float) -> torch.Tensor:
        b, c, h, w = x.shape
        ctx.save_for_backward(x)
        ctx.bands, ctx.p = bands, p
        clamped = x.clamp(min=0)
        powered = clamped if p == 1.0 else clamped.pow(p)
        return powered.reshape(b, c, bands, (h // bands) * w).mean(dim=-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (x,) = ctx.saved_tensors
        b, c, h, w = x.shape
        bands, p = ctx.bands, ctx.p
        size = (h // bands) * w
        # in the wider of the two precisions (under autocast the forward's power ran in float32)
        dtype = torch.promote_types(x.dtype, grad.dtype)
        if p == 1.0:
            local = (x > 0).to(dtype)
        else:
            local = x.to(dtype).clamp(min=0)
            local = local.mul_(2.0) if p == 2.0 else local.pow_(p - 1.0).mul_(p)
        # one incoming value per band, spread over the band's rows, divided by its size
        scale = (grad / size).to(dtype).reshape(b, c, bands, 1)
        local = local.reshape(b, c, bands, size).mul_(scale)
        return local.reshape(b, c, h, w).to(x.dtype), None, None


def _check_map(x: torch.Tensor, counts: Sequence[int]) -> None:
    if x.dim() != 4:
        raise VireidError(f"feature map: expected a (B, C, h, w) tensor, got {tuple(x.shape)}")
    h = x.shape[2]
    for stripes in counts:
        check_integer(stripes, "stripes", low=1, numpy=False)
        if h % stripes:
            raise VireidError(
                f"feature map: height {h} is not divisible into {stripes} equal stripes"
            )


def gem_stripes_many(x: torch.Tensor, counts: Sequence[int], p: float) -> list[torch.Tensor]:
    """``[gem_stripes(x, n, p) for n in counts]``, from one power of the map and one pooling.

    The counts are checked in order; the first that does not divide ``h`` is the error.
    """
    p = check_gem_p(p)
    counts = list(counts)
    if not counts:
        raise VireidError("stripes: expected at least one stripe count, got none")
    _check_map(x, counts)
    b, c = x.shape[:2]
    bands = math.lcm(*counts)  # divides h, as every count does
    # clamp inside: no-op on ResNet's post-ReLU maps, keeps x ** p real for any input
    band_means = _BandPowerMeanFastBackward.apply(x, bands, p)  # (B, C, L)
    out = []
    for n in counts:
        means = band_means.reshape(b, c, n, bands // n).mean(dim=-1) if n != bands else band_means
        if p == 1.0:
            out.append(means + GEM_EPS)
        else:
            out.append((means + GEM_EPS).pow(1.0 / p))
    return out


def gem_stripes(x: torch.Tensor, stripes: int, p: float) -> torch.Tensor:
    """GeM of each of ``stripes`` equal horizontal bands of ``x``: ``(B, C, h, w) -> (B, C, n)``.

    ``h`` must be a multiple of ``stripes`` (the predecessor asserts the same); band ``i`` holds
    rows ``i * h / n`` to ``(i + 1) * h / n - 1``.
    """
    return gem_stripes_many(x, [stripes], p)[0]


def gem(x: torch.Tensor, p: float) -> torch.Tensor:
    """GeM over the whole map: ``(B, C, h, w) -> (B, C)``."""
    return gem_stripes(x, 1, p).squeeze(-1)
