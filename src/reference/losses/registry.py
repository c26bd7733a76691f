"""The losses a :class:`~reference.losses.loss_spec.LossSpec` may name, and what each returns.

Spec: ``spec/losses/loss_spec.md``. A :class:`LossKind` is what the schema and the dispatch need
to know about one loss, so that neither names a loss: the function, what it reads from the model
output (``features`` or ``logits``), whether it takes the modality tags, its option names and
how their values are checked, the parts one call returns (the center alignment loss returns
``pull`` and ``push``; the others one term), and, for DID, MML and MDL, their own terms (per
modality, per direction) for ``split=True``.

Term names: ``"<prefix>/<branch>"`` for one term, ``"<prefix>.<part>/<branch>"`` for each part,
``"<prefix>/<branch>/<own term>"`` for a split entry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch

from reference.data.modality import Modality
from reference.losses.center_alignment import CenterAlignmentConfig, center_alignment_terms
from reference.losses.checks import (
    check_directions,
    check_epsilon,
    check_modalities,
    check_reduction,
    check_triplet_options,
)
from reference.losses.did import did_loss, did_terms
from reference.losses.hetero_center import hetero_center_triplet
from reference.losses.identity import identity_loss
from reference.losses.mdl import mdl_loss, mdl_terms
from reference.losses.mml import mml_loss, mml_terms
from reference.losses.triplet import batch_hard_triplet

__all__ = ["LOSSES", "SPLITTABLE", "LossKind"]

#: keyword arguments that are per-batch data (row masks), not configuration
_NOT_OPTIONS = {"anchors", "candidates"}

Term = tuple[str, torch.Tensor, float]  # (name, unweighted value, weight)


def _keywords(fn: Callable[..., Any]) -> frozenset[str]:
    params = inspect.signature(fn).parameters.values()
    return (
        frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY) - _NOT_OPTIONS
    )


def _check_keyword_values(kind: LossKind, options: Mapping[str, Any]) -> None:
    """The values a loss would reject at its first call, rejected when the spec is made."""
    if "margin" in options or "metric" in options:
        check_triplet_options(options.get("margin", 0.3), options.get("metric", "euclidean"))
    if "reduction" in options:
        check_reduction(options["reduction"], kind.reductions)
    if "directions" in options:
        check_directions(options["directions"])
    if kind.selects_modalities and options.get("modalities") is not None:
        check_modalities(options["modalities"])
    if "epsilon" in options:
        check_epsilon(options["epsilon"])


@dataclass(frozen=True)
class LossKind:
    """One loss as the spec sees it (see the module docstring)."""

    fn: Callable[..., Any]
    source: str  # "features" or "logits"
    needs_modality: bool
    #: a config class the options build and the function takes (center alignment); else the
    #: options are the function's keyword arguments
    config: type | None = None
    #: the parts every call returns (an object with ``as_dict()`` and ``part_weights()``)
    parts: tuple[str, ...] = ()
    #: the loss's own terms by name, for ``split=True``: ``terms_fn(x, labels, modality, **kw)``
    terms_fn: Callable[..., dict[str, torch.Tensor]] | None = None
    reductions: tuple[str, str] = ("mean", "sum")
    #: the ``modalities`` option is a selection of modalities (checked), not a pair
    selects_modalities: bool = False

    @property
    def option_names(self) -> frozenset[str]:
        if self.config is not None:
            return frozenset(f.name for f in fields(self.config))
        return _keywords(self.fn)

    @property
    def splittable(self) -> bool:
        return self.terms_fn is not None

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise :class:`VireidError` for a value the loss would reject (names checked before)."""
        if self.config is not None:
            self.config(**options)
        else:
            _check_keyword_values(self, options)

    def term_names(self, prefix: str, branch: str) -> list[str]:
        """The names one call on ``branch`` reports (a split entry's own terms come later)."""
        if self.parts:
            return [f"{prefix}.{part}/{branch}" for part in self.parts]
        return [f"{prefix}/{branch}"]

    def terms(
        self,
        prefix: str,
        branch: str,
        weight: float,
        options: Mapping[str, Any],
        split: bool,
        x: torch.Tensor,
        labels: torch.Tensor,
        modality: torch.Tensor,
    ) -> list[Term]:
        """Every (name, unweighted term, weight) of one entry on one branch."""
        if split:
            return [
                (f"{prefix}/{branch}/{k}", v, w)
                for k, v, w in _split_terms(self, weight, options, x, labels, modality)
            ]
        args = (x, labels, modality) if self.needs_modality else (x, labels)
        if self.config is not None:
            result = self.fn(*args, self.config(**options))
        else:
            result = self.fn(*args, **options)
        if not self.parts:
            return [(f"{prefix}/{branch}", result, weight)]
        values, weights = result.as_dict(), result.part_weights()
        return [
            (name, values[part], weight * weights[part])
            for name, part in zip(self.term_names(prefix, branch), self.parts, strict=True)
        ]


def _split_terms(
    kind: LossKind,
    weight: float,
    options: Mapping[str, Any],
    x: torch.Tensor,
    labels: torch.Tensor,
    modality: torch.Tensor,
) -> list[Term]:
    """(own term name, unweighted term, weight) of a DID/MML/MDL entry; the weights make
    ``sum weight * term`` equal ``weight`` times the unsplit loss."""
    kwargs = dict(options)
    # the value was checked when the entry was made; the default is the loss's own
    reduction = kwargs.pop("reduction", inspect.signature(kind.fn).parameters["reduction"].default)
    terms = kind.terms_fn(x, labels, modality, **kwargs)  # type: ignore[misc]
    if reduction == "rows":  # DID: each modality's mean weighs by its share of the rows
        counts = {
            Modality(int(m)).short: int(c)
            for m, c in zip(*torch.unique(modality, return_counts=True), strict=True)
        }
        rows = sum(counts[k] for k in terms)
        share = {k: counts[k] / rows for k in terms}
    elif reduction == "sum":
        share = {k: 1.0 for k in terms}
    else:  # "mean" of MML/MDL, "modality" of DID: the mean of the terms
        share = {k: 1.0 / len(terms) for k in terms}
    return [(k, v, weight * share[k]) for k, v in terms.items()]


#: The losses a spec may name.
LOSSES: dict[str, LossKind] = {
    "id": LossKind(identity_loss, "logits", False),
    "tri": LossKind(batch_hard_triplet, "features", False),
    "hctri": LossKind(hetero_center_triplet, "features", True),
    "ca": LossKind(
        center_alignment_terms,
        "features",
        True,
        config=CenterAlignmentConfig,
        parts=("pull", "push"),
    ),
    "did": LossKind(
        did_loss,
        "logits",
        True,
        terms_fn=did_terms,
        reductions=("rows", "modality"),
        selects_modalities=True,
    ),
    "mml": LossKind(mml_loss, "features", True, terms_fn=mml_terms, selects_modalities=True),
    "mdl": LossKind(mdl_loss, "features", True, terms_fn=mdl_terms),
}

#: losses whose own terms (per modality, per direction) an entry can report one by one
SPLITTABLE: tuple[str, ...] = tuple(name for name, kind in LOSSES.items() if kind.splittable)
