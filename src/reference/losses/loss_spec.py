"""Which loss applies to which features with which weight: the ``LossSpec`` schema.

Spec: ``spec/losses/loss_spec.md``. A :class:`LossSpec` is data (frozen dataclasses, no
callables): a tuple of :class:`LossEntry`, each naming a loss (``id``, ``tri``, ``hctri``,
``ca``, ``did``, ``mml``, ``mdl``; what each takes and returns is in ``losses/registry.py``), a
branch *selector* of the :class:`~reference.models.output.ModelOutput`, a weight and the loss's
keyword options. Selectors:

- ``"global"``, ``"coarse.<i>"``, ``"fine.<i>"``: that branch;
- ``"coarse.*"``, ``"fine.*"``: one term per branch of the granularity, in stripe order;
- ``"coarse"``, ``"fine"``: the features of all branches of the granularity concatenated along
  the feature dimension, in stripe order (metric losses only).

Every value is checked when the spec is made. ``compute_losses`` (``losses/dispatch.py``) returns
a :class:`~reference.losses.terms.LossTerms` with one unweighted term per (entry, branch), named
``"<loss>/<branch or granularity>"`` (e.g. ``"id/fine.0"``, ``"hctri/fine"``), and its weight;
the center alignment loss gives two, ``"ca.pull/<b>"`` and ``"ca.push/<b>"``, weighted by the
entry weight times the config's pull and push weights. So ``LossTerms.total = sum_k weight_k *
term_k`` is the training loss and every term is logged. The method presets are in
``losses/presets.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reference import config
from reference.checks import check_choice, check_number
from reference.errors import VireidError
from reference.losses.registry import LOSSES, SPLITTABLE, LossKind

BRANCH = re.compile(r"^(global|(coarse|fine)\.\d+)$")
EACH = re.compile(r"^(coarse|fine)\.\*$")
_CONCAT = re.compile(r"^(coarse|fine)$")
_NAME = re.compile(r"^[a-z][a-z0-9_.]*$")
DATASETS: tuple[str, ...] = ("sysu", "regdb", "llcm")


def _frozen(value: Any) -> Any:
    """Lists (e.g. MDL directions read from a file) become tuples, so a spec stays hashable."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


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
        check_choice(self.loss, "loss", LOSSES)
        kind = LOSSES[self.loss]
        on = self.on
        if not isinstance(on, str) or not (BRANCH.match(on) or EACH.match(on) or _CONCAT.match(on)):
            raise VireidError(
                f"on: expected 'global', 'coarse.<i>', 'fine.<i>', 'coarse.*', 'fine.*', "
                f"'coarse' or 'fine', got {on!r}"
            )
        if _CONCAT.match(on) and kind.source == "logits":
            raise VireidError(
                f"on: {self.loss!r} reads logits, which cannot be concatenated; "
                f"use {on + '.*'!r} for one term per branch, got {on!r}"
            )
        w = check_number(self.weight, "weight", low=0.0, expected="a finite number >= 0")
        object.__setattr__(self, "weight", w)
        items = self.options.items() if isinstance(self.options, Mapping) else self.options
        try:
            options = tuple(sorted((str(k), _frozen(v)) for k, v in items))
        except (TypeError, ValueError):
            raise VireidError(
                f"options: expected a mapping of option names to values, got {self.options!r}"
            ) from None
        allowed = kind.option_names
        for key, _ in options:
            if key not in allowed:
                raise VireidError(
                    f"options: {self.loss!r} has no option {key!r}; "
                    f"it takes {', '.join(sorted(allowed))}"
                )
        if len({k for k, _ in options}) != len(options):
            raise VireidError(f"options: each option may appear once, got {options}")
        object.__setattr__(self, "options", options)
        kind.check_options(dict(options))
        if not isinstance(self.split, bool) or (self.split and not kind.splittable):
            raise VireidError(
                f"split: only {', '.join(map(repr, SPLITTABLE))} can be split into their "
                f"per-modality or per-direction terms, got split={self.split!r} for {self.loss!r}"
            )
        if self.name is not None and not (isinstance(self.name, str) and _NAME.match(self.name)):
            raise VireidError(
                f"name: expected lower-case letters, digits, '_' or '.', got {self.name!r}"
            )

    @property
    def prefix(self) -> str:
        return self.name or self.loss

    @property
    def kind(self) -> LossKind:
        """What the registry knows of this entry's loss."""
        return LOSSES[self.loss]

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
        if self.dataset is not None and self.dataset not in DATASETS:
            raise VireidError(
                f"dataset: expected 'sysu', 'regdb', 'llcm' or None, got {self.dataset!r}"
            )
        if not isinstance(self.entries, (list, tuple)):
            raise VireidError(f"entries: expected a list of LossEntry, got {self.entries!r}")
        entries = tuple(self.entries)
        if not entries:
            raise VireidError("entries: a loss spec needs at least one entry")
        for i, entry in enumerate(entries):
            if not isinstance(entry, LossEntry):
                raise VireidError(f"entries[{i}]: expected a LossEntry, got {type(entry)!r}")
        object.__setattr__(self, "entries", entries)
        if not isinstance(self.notes, (list, tuple)) or not all(
            isinstance(n, str) for n in self.notes
        ):
            raise VireidError(f"notes: expected a list of strings, got {self.notes!r}")
        object.__setattr__(self, "notes", tuple(self.notes))
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries):
            for term in LOSSES[entry.loss].term_names(entry.prefix, entry.on):
                claim_term(seen, term, i)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a preset file or a run record): ``reference.config.to_dict`` with each
        entry's options as a table; :meth:`from_dict` (or ``from_mapping``) reads it back."""
        data = config.to_dict(self)
        for entry in data["entries"]:
            entry["options"] = dict(entry["options"])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossSpec:
        if not isinstance(data, Mapping) or "entries" not in data or "method" not in data:
            raise VireidError("loss spec: expected a mapping with 'method' and 'entries'")
        entries = data["entries"]
        if not isinstance(entries, (list, tuple)):
            raise VireidError(f"entries: expected a list of tables, one per loss, got {entries!r}")
        for i, item in enumerate(entries):
            if not isinstance(item, Mapping) or not {"loss", "on"} <= set(item):
                raise VireidError(f"entries[{i}]: expected a mapping with 'loss' and 'on'")
            unknown = set(item) - {"loss", "on", "weight", "options", "name", "provenance", "split"}
            if unknown:
                raise VireidError(f"entries[{i}]: unknown field(s) {sorted(unknown)}")
        return config.from_mapping(cls, data)


def claim_term(seen: dict[str, int], term: str, index: int) -> None:
    """Record that ``entries[index]`` produces ``term``; a name two entries produce is an error.

    The one collision check: on the spec's own selectors when it is made, and on the branches
    a ``*`` selector expands to when the losses are computed.
    """
    if term in seen:
        raise VireidError(
            f"entries[{index}]: term {term!r} is already produced by "
            f"entries[{seen[term]}]; give one of them a name"
        )
    seen[term] = index
