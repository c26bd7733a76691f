"""Generalised-mean (GeM) pooling over a feature map and over its horizontal stripes.

Spec: ``spec/models/pooling.md``. For a map ``x`` of shape ``(B, C, h, w)`` and ``p >= 1``::

    gem(x)[b, c] = ( mean_{i, j} max(x[b, c, i, j], 0) ** p  +  eps ) ** (1 / p),  eps = 1e-12

``p = 1`` is average pooling (up to ``eps``), ``p -> inf`` approaches max pooling. The stripe
version splits the ``h`` rows into ``n`` equal consecutive bands (top to bottom) and pools each.
Several stripe counts are pooled together from one power of the map (``gem_stripes_many``): the
map is cut into ``L = lcm(n_1, n_2, ...)`` equal bands once, and the mean of a stripe of
granularity ``n`` is the mean of its ``L / n`` consecutive band means (the bands are of equal size).

Computed max-scaled, so that no power overflows: with ``s = max(eps ** (1/p), max of x over the
band)`` (a constant, :func:`band_scale`), ``gem = s * (mean (max(x, 0) / s) ** p + eps / s ** p)
** (1 / p)``, the same number for any ``s > 0``; every ratio is ``<= 1``. A stripe made of several
bands takes the largest of their ``s`` and reweights each band mean by ``(s_band / s) ** p``.

Plain formula: :func:`band_power_mean_plain` (clamp, scale, power, band means). Fast path: the
same numbers as one autograd node with a written-out backward (``_BandPowerMeanFastBackward``).
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


def band_scale(x: torch.Tensor, bands: int, p: float) -> torch.Tensor:
    """The scale of each of ``L = bands`` equal row bands: ``max(eps ** (1/p), max of x over the
    band)``, ``(B, C, h, w) -> (B, C, L)``, detached (GeM does not depend on it), in the wider of
    ``x``'s precision and float32 (the precision the pooling is computed in).

    Positive, so ``eps / s ** p <= 1`` and ``max(x, 0) / s <= 1``: no power overflows.
    """
    b, c, h, w = x.shape
    wide = torch.promote_types(x.dtype, torch.float32)
    top = x.detach().reshape(b, c, bands, (h // bands) * w).amax(dim=-1)
    return top.to(wide).clamp(min=GEM_EPS ** (1.0 / p))


def band_power_mean_plain(
    x: torch.Tensor, bands: int, p: float, scale: torch.Tensor
) -> torch.Tensor:
    """The plain formula: ``mean over each of L equal row bands of (max(x, 0) / s) ** p`` with
    ``s = scale`` (``(B, C, L)``, positive, from :func:`band_scale`), ``(B, C, h, w) -> (B, C, L)``,
    as the chain clamp -> divide -> pow -> mean that autograd differentiates.
    """
    b, c, h, w = x.shape
    clamped = x.clamp(min=0).reshape(b, c, bands, (h // bands) * w) / scale.unsqueeze(-1)
    powered = clamped if p == 1.0 else clamped.pow(p)
    return powered.mean(dim=-1)


class _BandPowerMeanFastBackward(torch.autograd.Function):
    """Fast path of :func:`band_power_mean_plain`: equal to it in value and gradient (proved by
    ``tests/models/test_pooling.py::test_band_power_mean_fast_path_equals_the_plain_formula``;
    GeM's gradient by ``::test_gradient_matches_the_clamp_pow_mean_chain`` and its second
    derivatives by ``::test_second_derivatives``).

    Written as one autograd node so that neither ``max(x, 0) / s`` nor its power is kept for the
    backward pass (only ``x``, which the backbone keeps anyway, and the small ``s``), and the
    gradient is one fused expression instead of the chain clamp -> divide -> pow -> mean. The
    gradient is the one of that chain: ``p * (max(x, 0) / s) ** (p - 1) / (s * rows * w)`` times
    the band's incoming gradient, and for ``p = 1`` the indicator of ``x > 0`` over
    ``s * rows * w`` (torch's clamp passes no gradient at 0, for any ``p``). ``s`` is a constant.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, bands: int, p: float, scale: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ctx.save_for_backward(x, scale)
        ctx.bands, ctx.p = bands, p
        # one new map in the scale's precision (>= float32), clamped and raised in place
        scaled = torch.div(x.reshape(b, c, bands, (h // bands) * w), scale.unsqueeze(-1))
        scaled = scaled.clamp_(min=0)
        powered = scaled if p == 1.0 else scaled.pow_(p)
        return powered.mean(dim=-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        x, scale = ctx.saved_tensors
        b, c, h, w = x.shape
        bands, p = ctx.bands, ctx.p
        size = (h // bands) * w
        # in the wider of the precisions (the forward ran in the scale's, >= float32)
        dtype = torch.promote_types(torch.promote_types(x.dtype, grad.dtype), scale.dtype)
        x = x.reshape(b, c, bands, size)
        scale = scale.to(dtype).unsqueeze(-1)
        if p == 1.0:
            local = (x > 0).to(dtype)
        else:
            local = torch.div(x.to(dtype), scale).clamp_(min=0)
            local = local if p == 2.0 else local.pow_(p - 1.0)
        # one incoming value per band, times p, spread over the band, divided by its size and s
        coef = (grad.to(dtype).unsqueeze(-1) * p / size) / scale
        local = local.mul_(coef)
        return local.reshape(b, c, h, w).to(x.dtype), None, None, None


def _check_map(x: torch.Tensor, counts: Sequence[int]) -> None:
    if x.dim() != 4:
        raise VireidError(f"feature map: expected a (B, C, h, w) tensor, got {tuple(x.shape)}")
    h, w = x.shape[2:]
    if h == 0 or w == 0:
        raise VireidError(f"feature map: expected h, w >= 1, got {tuple(x.shape)}")
    for stripes in counts:
        check_integer(stripes, "stripes", low=1, numpy=False)
        if h % stripes:
            raise VireidError(
                f"feature map: height {h} is not divisible into {stripes} equal stripes"
            )


def _root(means: torch.Tensor, top: torch.Tensor, p: float) -> torch.Tensor:
    """``top * (means + eps / top ** p) ** (1 / p)``: ``(top ** p * means + eps) ** (1 / p)``
    without forming ``top ** p * means``; ``eps / top ** p <= 1`` as ``top >= eps ** (1 / p)``
    (an overflowing ``top ** p`` makes it 0, which it is to working precision)."""
    inner = means + GEM_EPS / top.pow(p)
    return top * (inner if p == 1.0 else inner.pow(1.0 / p))


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
    scale = band_scale(x, bands, p)  # (B, C, L), constant
    # clamp inside: no-op on ResNet's post-ReLU maps, keeps x ** p real for any input
    band_means = _BandPowerMeanFastBackward.apply(x, bands, p, scale)  # (B, C, L), scaled
    # under autocast the pooled values stay in the pooling's precision (float32), else x's
    out_dtype = scale.dtype if torch.is_autocast_enabled(x.device.type) else x.dtype
    out = []
    for n in counts:
        if n == bands:
            top, means = scale, band_means
        else:
            group = scale.reshape(b, c, n, bands // n)
            top = group.amax(dim=-1)
            weights = (group / top.unsqueeze(-1)).pow(p)  # a band's mean rescaled to the stripe's
            means = (band_means.reshape(b, c, n, bands // n) * weights).mean(dim=-1)
        out.append(_root(means, top, p).to(out_dtype))
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
