"""``LossTerms``: every loss term by name, its weight, and the weighted total.

Spec: ``spec/losses/terms.md``. Terms are kept unweighted so that the audit can compare them one
by one with another implementation; ``total`` is ``sum(weights[k] * terms[k])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from reference.errors import VireidError


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
