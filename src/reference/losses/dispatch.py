"""``compute_losses(spec, output, labels)``: every term of a :class:`LossSpec` on a model output.

Spec: ``spec/losses/loss_spec.md``. Each entry's selector picks branches of the output (one, each
branch of a granularity, or their concatenation); the registry (``losses/registry.py``) calls the
loss and names its terms; the spec's one collision check (``claim_term``) rejects a name two
entries produce.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from reference.errors import VireidError
from reference.losses.checks import check_labels
from reference.losses.loss_spec import BRANCH, EACH, LossEntry, LossSpec, claim_term
from reference.losses.terms import LossTerms
from reference.models.output import ModelOutput


def _available(output: ModelOutput, source: str) -> str:
    names = list(getattr(output, source))
    return ", ".join(repr(n) for n in names) if names else "nothing"


def _select(entry: LossEntry, index: int, output: ModelOutput) -> list[tuple[str, torch.Tensor]]:
    """(branch or granularity name, tensor) pairs the entry applies to, in order."""
    source = entry.kind.source
    mapping: Mapping[str, torch.Tensor] = getattr(output, source)
    where = f"entries[{index}] ({entry.loss} on {entry.on!r})"
    on = entry.on
    if BRANCH.match(on):
        if on not in mapping:
            raise VireidError(
                f"{where}: the model output has no {source} branch {on!r}; "
                f"its {source} are {_available(output, source)}"
            )
        return [(on, mapping[on])]
    granularity = on.split(".")[0]
    names = sorted(
        (k for k in mapping if k.startswith(granularity + ".")), key=lambda k: int(k.split(".")[1])
    )
    if not names:
        raise VireidError(
            f"{where}: the model output has no {source} branch of granularity {granularity!r}; "
            f"its {source} are {_available(output, source)}"
        )
    if EACH.match(on):
        return [(k, mapping[k]) for k in names]
    return [(granularity, torch.cat([mapping[k] for k in names], dim=1))]


def compute_losses(spec: LossSpec, output: ModelOutput, labels: torch.Tensor) -> LossTerms:
    """Every term of ``spec`` on ``output`` by name, unweighted, with its weight."""
    if not isinstance(spec, LossSpec):
        raise VireidError(f"spec: expected a LossSpec, got {type(spec)!r}")
    if not isinstance(output, ModelOutput):
        raise VireidError(f"output: expected a ModelOutput, got {type(output)!r}")
    n = output.modality.shape[0]
    check_labels(labels, n, against="the model output")
    labels = labels.to(output.modality.device)
    terms: dict[str, torch.Tensor] = {}
    weights: dict[str, float] = {}
    seen: dict[str, int] = {}
    for index, entry in enumerate(spec.entries):
        for branch, tensor in _select(entry, index, output):
            for name, value, weight in entry.kind.terms(
                entry.prefix,
                branch,
                entry.weight,
                entry.kwargs(),
                entry.split,
                tensor,
                labels,
                output.modality,
            ):
                claim_term(seen, name, index)
                terms[name], weights[name] = value, weight
    return LossTerms(terms=terms, weights=weights)
