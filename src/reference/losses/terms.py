"""``LossTerms``: every loss term by name, its weight, and the weighted total.

Spec: ``spec/losses/terms.md``. Terms are kept unweighted so that the audit can compare them one
by one with another implementation; ``total`` is ``sum(weights[k] * terms[k])``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from reference.errors import VireidError
from reference.losses.checks import check_reduction


@dataclass(frozen=True)
class LossTerms:
    terms: dict[str, torch.Tensor]
    weights: dict[str, float]

    def __post_init__(self) -> None:
        if set(self.terms) != set(self.weights):
            raise VireidError(
                "LossTerms: terms and weights must name the same losses; "
                f"terms {sorted(self.terms)}, weights {sorted(self.weights)}"
            )
        if not self.terms:
            raise VireidError("LossTerms: at least one term is required")
        for name, value in self.terms.items():
            if value.dim() != 0:
                raise VireidError(
                    f"terms[{name!r}]: expected a scalar tensor, got {tuple(value.shape)}"
                )

    @property
    def total(self) -> torch.Tensor:
        items = iter(self.terms.items())
        name, value = next(items)
        total = self.weights[name] * value
        for name, value in items:
            total = total + self.weights[name] * value
        return total

    def as_floats(self) -> dict[str, float]:
        """Unweighted terms and the total as Python floats (for logging and the audit)."""
        out = {name: float(value.detach()) for name, value in self.terms.items()}
        out["total"] = float(self.total.detach())
        return out


def reduce_terms(terms: dict[str, torch.Tensor], reduction: str) -> torch.Tensor:
    """The mean or the sum of the per-direction (or per-modality) terms of a loss."""
    total = torch.stack(list(terms.values())).sum()
    return total / len(terms) if reduction == "mean" else total


def loss_of_terms(
    terms_fn: Callable[..., dict[str, torch.Tensor]],
    name: str,
    doc: str,
    reductions: Mapping[str, Callable[..., torch.Tensor]] | None = None,
) -> Callable[..., torch.Tensor]:
    """The loss ``reduce_terms(terms_fn(*args, **options), reduction)`` of a many-term loss.

    It takes ``terms_fn``'s arguments plus a keyword ``reduction`` (``'mean'`` by default, or
    ``'sum'``; checked before anything else), and its signature says so: the loss registry reads
    a loss's options and the default ``reduction`` off ``inspect.signature``. One piece of code
    for MDL, MML and DID, whose losses differ only in their terms and reductions.

    ``reductions`` gives a loss its own (the first is the default): each is called with the
    loss's arguments by name, defaults filled in (DID: the mean over the selected rows, which is
    not computed from the terms, and the mean of the terms).
    """
    options = inspect.signature(terms_fn)
    allowed = ("mean", "sum") if reductions is None else tuple(reductions)
    default = allowed[0]
    reduction = inspect.Parameter(
        "reduction", inspect.Parameter.KEYWORD_ONLY, default=default, annotation="str"
    )

    def loss(*args: object, reduction: str = default, **kwargs: object) -> torch.Tensor:
        check_reduction(reduction, allowed)  # type: ignore[arg-type]
        if reductions is None:
            return reduce_terms(terms_fn(*args, **kwargs), reduction)
        bound = options.bind(*args, **kwargs)
        bound.apply_defaults()
        return reductions[reduction](**bound.arguments)

    loss.__signature__ = options.replace(  # type: ignore[attr-defined]
        parameters=[*options.parameters.values(), reduction], return_annotation="torch.Tensor"
    )
    loss.__name__ = loss.__qualname__ = name
    loss.__module__ = terms_fn.__module__
    loss.__doc__ = doc
    return loss
