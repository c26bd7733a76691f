"""Which loss applies to which features with which weight: ``LossSpec`` and ``compute_losses``.

Spec: ``spec/losses/loss_spec.md``. A :class:`LossSpec` is data (frozen dataclasses, no
callables): a tuple of :class:`LossEntry`, each naming a loss (``id``, ``tri``, ``hctri``,
``ca``, ``did``, ``mml``, ``mdl``), a branch *selector* of the
:class:`~reference.models.output.ModelOutput`, a weight and the loss's keyword options. Selectors:

- ``"global"``, ``"coarse.<i>"``, ``"fine.<i>"``: that branch;
- ``"coarse.*"``, ``"fine.*"``: one term per branch of the granularity, in stripe order;
- ``"coarse"``, ``"fine"``: the features of all branches of the granularity concatenated along
  the feature dimension, in stripe order (metric losses only).

:func:`compute_losses` returns a :class:`~reference.losses.terms.LossTerms` with one unweighted
term per (entry, branch), named ``"<loss>/<branch or granularity>"`` (e.g. ``"id/fine.0"``,
``"hctri/fine"``), and its weight; the center alignment loss gives two, ``"ca.pull/<b>"`` and
``"ca.push/<b>"``, weighted by the entry weight times the config's pull and push weights. So
``LossTerms.total = sum_k weight_k * term_k`` is the training loss and every term is logged.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from reference.data.modality import Modality
from reference.errors import VireidError
from reference.losses.center_alignment import CenterAlignmentConfig, center_alignment_terms
from reference.losses.did import did_loss, did_terms
from reference.losses.hetero_center import hetero_center_triplet
from reference.losses.identity import identity_loss
from reference.losses.mdl import _check_directions, check_triplet_options, mdl_loss, mdl_terms
from reference.losses.mml import _resolve_modalities, mml_loss, mml_terms
from reference.losses.terms import LossTerms
from reference.losses.triplet import batch_hard_triplet, check_labels
from reference.models.output import ModelOutput


@dataclass(frozen=True)
class _Kind:
    fn: Callable[..., Any]
    source: str  # "features" or "logits"
    needs_modality: bool


#: The losses a spec may name: function, what it reads from the output, whether it takes tags.
LOSSES: dict[str, _Kind] = {
    "id": _Kind(identity_loss, "logits", False),
    "tri": _Kind(batch_hard_triplet, "features", False),
    "hctri": _Kind(hetero_center_triplet, "features", True),
    "ca": _Kind(center_alignment_terms, "features", True),
    "did": _Kind(did_loss, "logits", True),
    "mml": _Kind(mml_loss, "features", True),
    "mdl": _Kind(mdl_loss, "features", True),
}

_BRANCH = re.compile(r"^(global|(coarse|fine)\.\d+)$")
_EACH = re.compile(r"^(coarse|fine)\.\*$")
_CONCAT = re.compile(r"^(coarse|fine)$")
_NAME = re.compile(r"^[a-z][a-z0-9_.]*$")
_DATASETS = ("sysu", "regdb")
#: losses whose own terms (per modality, per direction) an entry can report one by one
_SPLIT = ("did", "mml", "mdl")


def _frozen(value: Any) -> Any:
    """Lists (e.g. MDL directions read from a file) become tuples, so a spec stays hashable."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


#: keyword arguments that are per-batch data (row masks), not configuration
_NOT_OPTIONS = {"anchors", "candidates"}


def _option_names(loss: str) -> set[str]:
    if loss == "ca":
        return {f.name for f in fields(CenterAlignmentConfig)}
    params = inspect.signature(LOSSES[loss].fn).parameters.values()
    return {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY} - _NOT_OPTIONS


def _check_option_values(loss: str, options: dict[str, Any]) -> None:
    """The values a loss would reject at its first call, rejected when the spec is made."""
    if loss == "ca":
        CenterAlignmentConfig(**options)
        return
    if "margin" in options or "metric" in options:
        check_triplet_options(options.get("margin", 0.3), options.get("metric", "euclidean"))
    if "reduction" in options:
        allowed = ("rows", "modality") if loss == "did" else ("mean", "sum")
        if options["reduction"] not in allowed:
            raise VireidError(
                f"reduction: expected {allowed[0]!r} or {allowed[1]!r}, "
                f"got {options['reduction']!r}"
            )
    if "directions" in options:
        _check_directions(options["directions"])
    if "modalities" in options and loss in ("did", "mml") and options["modalities"] is not None:
        _resolve_modalities(options["modalities"], [])
    if "epsilon" in options:
        eps = options["epsilon"]
        if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 <= eps < 1:
            raise VireidError(f"epsilon: expected a label-smoothing weight in [0, 1), got {eps!r}")


@dataclass(frozen=True)
class LossEntry:
    """One loss on one branch selector with one weight; ``options`` are the loss's keywords.

    ``name`` replaces ``loss`` in the term names (needed only when two entries of the same loss
    select the same branch, e.g. two triplet margins). ``provenance`` is the label and reason of
    the entry ([seed], [predecessor], [protocol] or [reconstruction]), kept with the data.
    ``split`` (DID, MML, MDL only) reports the loss's own terms instead of their reduction:
    ``"mdl/global/V->I"``, ``"mml/global/DV"``, ``"did/global/I"``, weighted so that the total
    is unchanged.
    """

    loss: str
    on: str
    weight: float = 1.0
    options: Mapping[str, Any] | tuple[tuple[str, Any], ...] = ()
    name: str | None = None
    provenance: str = ""
    split: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise VireidError(
                f"loss: expected one of {', '.join(map(repr, LOSSES))}, got {self.loss!r}"
            )
        kind = LOSSES[self.loss]
        on = self.on
        if not isinstance(on, str) or not (
            _BRANCH.match(on) or _EACH.match(on) or _CONCAT.match(on)
        ):
            raise VireidError(
                f"on: expected 'global', 'coarse.<i>', 'fine.<i>', 'coarse.*', 'fine.*', "
                f"'coarse' or 'fine', got {on!r}"
            )
        if _CONCAT.match(on) and kind.source == "logits":
            raise VireidError(
                f"on: {self.loss!r} reads logits, which cannot be concatenated; "
                f"use {on + '.*'!r} for one term per branch, got {on!r}"
            )
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not (0 <= w < math.inf):
            raise VireidError(f"weight: expected a finite number >= 0, got {w!r}")
        object.__setattr__(self, "weight", float(w))
        items = self.options.items() if isinstance(self.options, Mapping) else self.options
        try:
            options = tuple(sorted((str(k), _frozen(v)) for k, v in items))
        except (TypeError, ValueError):
            raise VireidError(
                f"options: expected a mapping of option names to values, got {self.options!r}"
            ) from None
        allowed = _option_names(self.loss)
        for key, _ in options:
            if key not in allowed:
                raise VireidError(
                    f"options: {self.loss!r} has no option {key!r}; "
                    f"it takes {', '.join(sorted(allowed))}"
                )
        if len({k for k, _ in options}) != len(options):
            raise VireidError(f"options: each option may appear once, got {options}")
        object.__setattr__(self, "options", options)
        _check_option_values(self.loss, dict(options))
        if not isinstance(self.split, bool) or (self.split and self.loss not in _SPLIT):
            raise VireidError(
                f"split: only {', '.join(map(repr, _SPLIT))} can be split into their per-modality "
                f"or per-direction terms, got split={self.split!r} for {self.loss!r}"
            )
        if self.name is not None and not (isinstance(self.name, str) and _NAME.match(self.name)):
            raise VireidError(
                f"name: expected lower-case letters, digits, '_' or '.', got {self.name!r}"
            )

    @property
    def prefix(self) -> str:
        return self.name or self.loss

    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LossSpec:
    """The losses of one method: a name and its entries, in the order their terms are reported."""

    method: str
    entries: tuple[LossEntry, ...]
    dataset: str | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or not self.method:
            raise VireidError(f"method: expected a non-empty name, got {self.method!r}")
        if self.dataset is not None and self.dataset not in _DATASETS:
            raise VireidError(f"dataset: expected 'sysu', 'regdb' or None, got {self.dataset!r}")
        entries = tuple(self.entries)
        if not entries:
            raise VireidError("entries: a loss spec needs at least one entry")
        for i, entry in enumerate(entries):
            if not isinstance(entry, LossEntry):
                raise VireidError(f"entries[{i}]: expected a LossEntry, got {type(entry)!r}")
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "notes", tuple(self.notes))
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries):
            for term in _static_names(entry):
                if term in seen:
                    raise VireidError(
                        f"entries[{i}]: term {term!r} is already produced by "
                        f"entries[{seen[term]}]; give one of them a name"
                    )
                seen[term] = i

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a preset file or a run record); :meth:`from_dict` reads it back."""
        return {
            "method": self.method,
            "dataset": self.dataset,
            "notes": list(self.notes),
            "entries": [
                {
                    "loss": e.loss,
                    "on": e.on,
                    "weight": e.weight,
                    "options": {k: _listed(v) for k, v in e.options},
                    "name": e.name,
                    "provenance": e.provenance,
                    "split": e.split,
                }
                for e in self.entries
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossSpec:
        if not isinstance(data, Mapping) or "entries" not in data or "method" not in data:
            raise VireidError("loss spec: expected a mapping with 'method' and 'entries'")
        entries = []
        for i, item in enumerate(data["entries"]):
            if not isinstance(item, Mapping) or not {"loss", "on"} <= set(item):
                raise VireidError(f"entries[{i}]: expected a mapping with 'loss' and 'on'")
            unknown = set(item) - {"loss", "on", "weight", "options", "name", "provenance", "split"}
            if unknown:
                raise VireidError(f"entries[{i}]: unknown field(s) {sorted(unknown)}")
            entries.append(LossEntry(**item))
        return cls(
            method=data["method"],
            entries=tuple(entries),
            dataset=data.get("dataset"),
            notes=tuple(data.get("notes", ())),
        )


def _listed(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_listed(v) for v in value]
    return value


def _static_names(entry: LossEntry) -> list[str]:
    """Term names known without an output (``*`` selectors expand later)."""
    on = entry.on
    if entry.loss == "ca":
        return [f"{entry.prefix}.pull/{on}", f"{entry.prefix}.push/{on}"]
    return [f"{entry.prefix}/{on}"]


def _available(output: ModelOutput, source: str) -> str:
    names = list(getattr(output, source))
    return ", ".join(repr(n) for n in names) if names else "nothing"


def _select(entry: LossEntry, index: int, output: ModelOutput) -> list[tuple[str, torch.Tensor]]:
    """(branch or granularity name, tensor) pairs the entry applies to, in order."""
    source = LOSSES[entry.loss].source
    mapping: Mapping[str, torch.Tensor] = getattr(output, source)
    where = f"entries[{index}] ({entry.loss} on {entry.on!r})"
    on = entry.on
    if _BRANCH.match(on):
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
    if _EACH.match(on):
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
    origin: dict[str, int] = {}

    def put(name: str, value: torch.Tensor, weight: float, index: int) -> None:
        if name in terms:
            raise VireidError(
                f"entries[{index}]: term {name!r} is already produced by "
                f"entries[{origin[name]}]; give one of them a name"
            )
        terms[name], weights[name], origin[name] = value, weight, index

    for index, entry in enumerate(spec.entries):
        kind = LOSSES[entry.loss]
        for branch, tensor in _select(entry, index, output):
            if entry.loss == "ca":
                config = CenterAlignmentConfig(**entry.kwargs())
                ca = center_alignment_terms(tensor, labels, output.modality, config)
                put(f"{entry.prefix}.pull/{branch}", ca.pull, entry.weight * ca.pull_weight, index)
                put(f"{entry.prefix}.push/{branch}", ca.push, entry.weight * ca.push_weight, index)
                continue
            if entry.split:
                for sub, value, weight in _split_terms(entry, tensor, labels, output.modality):
                    put(f"{entry.prefix}/{branch}/{sub}", value, weight, index)
                continue
            args = (tensor, labels, output.modality) if kind.needs_modality else (tensor, labels)
            put(f"{entry.prefix}/{branch}", kind.fn(*args, **entry.kwargs()), entry.weight, index)
    return LossTerms(terms=terms, weights=weights)


def _split_terms(
    entry: LossEntry, x: torch.Tensor, labels: torch.Tensor, modality: torch.Tensor
) -> list[tuple[str, torch.Tensor, float]]:
    """(name, unweighted term, weight) of a DID/MML/MDL entry's own terms; the weights make
    ``sum weight * term`` equal ``entry.weight`` times the unsplit loss."""
    kwargs = entry.kwargs()
    # the value was checked when the entry was made
    reduction = kwargs.pop("reduction", "rows" if entry.loss == "did" else "mean")
    if entry.loss == "did":
        terms = did_terms(x, labels, modality, **kwargs)
        if reduction == "modality":
            share = {k: 1.0 / len(terms) for k in terms}
        else:  # "rows" (default): each modality's mean weighs by its share of the rows
            counts = {
                Modality(int(m)).short: int(c)
                for m, c in zip(*torch.unique(modality, return_counts=True), strict=True)
            }
            rows = sum(counts[k] for k in terms)
            share = {k: counts[k] / rows for k in terms}
    else:
        fn = mml_terms if entry.loss == "mml" else mdl_terms
        terms = fn(x, labels, modality, **kwargs)
        share = {k: (1.0 if reduction == "sum" else 1.0 / len(terms)) for k in terms}
    return [(k, v, entry.weight * share[k]) for k, v in terms.items()]


# --- presets -------------------------------------------------------------------------------------

#: lambda of the predecessor's stripe hetero-center terms per dataset [predecessor].
PREDECESSOR_STRIPE_WEIGHT = {"sysu": 1.0, "regdb": 2.0}
#: margin of the predecessor's hetero-center triplet [predecessor].
PREDECESSOR_MARGIN = 0.3


def _check_dataset(dataset: str) -> str:
    if dataset not in _DATASETS:
        raise VireidError(f"dataset: expected 'sysu' or 'regdb', got {dataset!r}")
    return dataset


def _predecessor_entries(dataset: str, granularity: str, tag: str) -> list[LossEntry]:
    """Stripe cross-entropies + HcTri(concatenation) + lambda * HcTri per stripe [predecessor]."""
    lam = PREDECESSOR_STRIPE_WEIGHT[dataset]
    margin = {"margin": PREDECESSOR_MARGIN}
    return [
        LossEntry("id", f"{granularity}.*", 1.0, provenance=f"{tag}: a cross-entropy per stripe"),
        LossEntry(
            "hctri",
            granularity,
            1.0,
            margin,
            provenance=f"{tag}: HcTri on the concatenated stripes, margin {PREDECESSOR_MARGIN}",
        ),
        LossEntry(
            "hctri",
            f"{granularity}.*",
            lam,
            margin,
            provenance=f"{tag}: lambda * HcTri per stripe, lambda {lam} for {dataset}",
        ),
    ]


def predecessor_losses(dataset: str = "sysu") -> LossSpec:
    """The hetero-center triplet method's loss on six stripes [predecessor]."""
    dataset = _check_dataset(dataset)
    return LossSpec(
        "predecessor",
        tuple(_predecessor_entries(dataset, "fine", "[predecessor]")),
        dataset=dataset,
        notes=(
            "[predecessor] sum of stripe cross-entropies + HcTri(concatenated stripes) "
            "+ lambda * sum of HcTri(stripe); lambda 1.0 SYSU-MM01, 2.0 RegDB; margin 0.3",
        ),
    )


#: weight of Method A's center alignment loss [reconstruction].
METHOD_A_CENTER_ALIGNMENT_WEIGHT = 1.0


def method_a_losses(dataset: str = "sysu") -> LossSpec:
    """Method A: the predecessor's terms on the fine and coarse stripes, identity loss on the
    global branch, and center alignment on the global feature (see the spec for provenance)."""
    dataset = _check_dataset(dataset)
    entries = [
        LossEntry(
            "id", "global", 1.0, provenance="[reconstruction] identity loss on the global branch"
        ),
        *_predecessor_entries(dataset, "fine", "[predecessor]"),
        *_predecessor_entries(
            dataset, "coarse", "[reconstruction] the predecessor's terms on the coarse stripes"
        ),
        LossEntry(
            "ca",
            "global",
            METHOD_A_CENTER_ALIGNMENT_WEIGHT,
            provenance="[seed] center alignment loss; [reconstruction] its formula (spec/losses/"
            "center_alignment.md), its weight 1.0 and its branch (global)",
        ),
    ]
    return LossSpec(
        "method_a",
        tuple(entries),
        dataset=dataset,
        notes=(
            "[seed] HcTri on the part-level features and a center alignment loss",
            "[predecessor] the stripe losses on the six fine stripes",
            "[reconstruction] the global and coarse branches' terms, the center alignment "
            "formula, weight and branch",
        ),
    )


def method_b_losses(dataset: str = "sysu") -> LossSpec:
    """Method B: DID, MML and MDL on the global branch, weights 1, margins 0.3 [reconstruction]."""
    dataset = _check_dataset(dataset)
    margin = {"margin": 0.3}
    return LossSpec(
        "method_b",
        (
            LossEntry("did", "global", 1.0, provenance="[seed] DID loss; [reconstruction] all"),
            LossEntry(
                "mml", "global", 1.0, margin, provenance="[seed] MML; [reconstruction] formula"
            ),
            LossEntry(
                "mdl",
                "global",
                1.0,
                margin,
                provenance="[seed] MDL; [reconstruction] formula and directions",
            ),
        ),
        dataset=dataset,
        notes=(
            "[reconstruction] weights 1.0; margins 0.3, the predecessor's hetero-center margin",
        ),
    )


def baseline_losses(dataset: str = "sysu") -> LossSpec:
    """The baseline: identity loss + batch-hard triplet (margin 0.3) on the global branch."""
    dataset = _check_dataset(dataset)
    return LossSpec(
        "baseline",
        (
            LossEntry("id", "global", 1.0, provenance="[reconstruction] the field's identity loss"),
            LossEntry(
                "tri",
                "global",
                1.0,
                {"margin": 0.3},
                provenance="[reconstruction] the field's batch-hard triplet, margin 0.3",
            ),
        ),
        dataset=dataset,
    )


PRESETS: dict[str, Callable[[str], LossSpec]] = {
    "baseline": baseline_losses,
    "predecessor": predecessor_losses,
    "method_a": method_a_losses,
    "method_b": method_b_losses,
}


def preset(method: str, dataset: str = "sysu") -> LossSpec:
    """The preset ``LossSpec`` of ``method`` (a key of :data:`PRESETS`) for ``dataset``."""
    if method not in PRESETS:
        raise VireidError(
            f"method: expected one of {', '.join(map(repr, PRESETS))}, got {method!r}"
        )
    return PRESETS[method](dataset)
