"""Scores of a protocol run: per-trial rank metrics, their mean and spread, JSON and a table.

Spec: ``spec/evaluation/scores.md``.

For each figure ``f`` in R1, R5, R10, R20 (``cmc[r-1]``), mAP, mINP and the number of valid
queries, over the ``T`` trials with values ``f_1..f_T``::

    mean = (1/T) sum_t f_t          std = sqrt((1/T) sum_t (f_t - mean)^2)   (population, ddof=0)

The JSON document (``Scores.to_json``) keeps every per-trial figure and the settings that produced
them; the table (``Scores.table``) shows the figures in percent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reference.errors import VireidError
from reference.evaluation.metrics import QueryValues, RankMetrics
from reference.fileio import atomic_write_text

#: The figures of the table and of ``summary``, in order; ranks are 1-based.
RANKS: tuple[int, ...] = (1, 5, 10, 20)
FIGURES: tuple[str, ...] = ("R1", "R5", "R10", "R20", "mAP", "mINP")
SCHEMA = "vireid.scores/1"


@dataclass(frozen=True)
class TrialScores:
    """The rank metrics of one trial, with the trial's label and gallery size."""

    trial: int  # SYSU-MM01: the draw's trial number (0-based); RegDB: position of the file
    metrics: RankMetrics
    num_gallery: int
    source: str | None = None  # RegDB: the features file of this trial

    @property
    def queries(self) -> QueryValues | None:
        """The trial's per-query values (``metrics.queries``): AP, INP, first hit, validity."""
        return self.metrics.queries

    def figure(self, name: str) -> float:
        if name.startswith("R") and name[1:].isdigit():
            return self.metrics.rank(int(name[1:]))
        if name == "mAP":
            return self.metrics.mAP
        if name == "mINP":
            return self.metrics.mINP
        if name == "num_valid":
            return float(self.metrics.num_valid)
        raise VireidError(f"figure: unknown figure {name!r}; expected one of {FIGURES}")


@dataclass(frozen=True)
class Scores:
    """Per-trial figures of one protocol run and the settings that produced them."""

    protocol: str  # "sysu" | "regdb"
    settings: Mapping[str, Any]
    trials: tuple[TrialScores, ...]
    title: str = field(default="")

    def __post_init__(self) -> None:
        if not self.trials:
            raise VireidError("trials: expected at least one trial")

    def queries(self) -> tuple[QueryValues | None, ...]:
        """Each trial's per-query values, in trial order (see ``QueryValues``)."""
        return tuple(t.queries for t in self.trials)

    def values(self, name: str) -> np.ndarray:
        """The per-trial values of figure ``name`` (float64, one per trial)."""
        return np.array([t.figure(name) for t in self.trials], dtype=np.float64)

    def mean(self, name: str) -> float:
        return float(self.values(name).mean())

    def std(self, name: str) -> float:
        """Population standard deviation (ddof=0): 0 for a single trial."""
        return float(self.values(name).std(ddof=0))

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {"mean": self.mean(name), "std": self.std(name)}
            for name in (*FIGURES, "num_valid")
        }

    def to_dict(self) -> dict[str, Any]:
        per_trial = []
        for t in self.trials:
            entry: dict[str, Any] = {"trial": t.trial}
            if t.source is not None:
                entry["source"] = t.source
            entry.update({name: t.figure(name) for name in FIGURES})
            entry.update(
                {
                    "cmc": [float(v) for v in t.metrics.cmc],
                    "num_valid": t.metrics.num_valid,
                    "num_query": t.metrics.num_query,
                    "num_gallery": t.num_gallery,
                }
            )
            per_trial.append(entry)
        return {
            "schema": SCHEMA,
            "protocol": self.protocol,
            "title": self.title,
            "settings": dict(self.settings),
            "summary": self.summary(),
            "trials": per_trial,
        }

    def to_json(self) -> str:
        """The JSON document of spec/evaluation/scores.md (figures as fractions in [0, 1])."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def write_json(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``to_json()`` atomically; an existing file only with ``overwrite``."""
        return atomic_write_text(path, self.to_json(), overwrite=overwrite)

    def table(self) -> str:
        """One row per trial and a ``mean ± std`` row; figures in percent."""
        head: list[Cell] = [("trial", ""), *((n, "") for n in FIGURES), ("valid queries", "")]
        rows: list[list[Cell]] = []
        for t in self.trials:
            label = str(t.trial) if t.source is None else f"{t.trial} {Path(t.source).name}"
            rows.append(
                [
                    (label, ""),
                    *((f"{100 * t.figure(n):.2f}", "") for n in FIGURES),
                    (f"{t.metrics.num_valid}/{t.metrics.num_query}", ""),
                ]
            )
        valid = self.values("num_valid")
        n_query = {t.metrics.num_query for t in self.trials}
        if valid.min() == valid.max() and len(n_query) == 1:
            valid_cell = (f"{int(valid[0])}/{n_query.pop()}", "")
        else:
            valid_cell = (f"{self.mean('num_valid'):.1f}", f"{self.std('num_valid'):.1f}")
        rows.append(
            [
                ("mean ± std", ""),
                *((f"{100 * self.mean(n):.2f}", f"{100 * self.std(n):.2f}") for n in FIGURES),
                valid_cell,
            ]
        )
        return _format_table(self.title, head, rows)


Cell = tuple[str, str]  # (value, spread); the spread is shown as "± spread" when not empty


def _format_table(title: str, head: list[Cell], rows: list[list[Cell]]) -> str:
    table = [head, *rows]
    value_w = [max(len(r[i][0]) for r in table) for i in range(len(head))]
    spread_w = [max(len(r[i][1]) for r in table) for i in range(len(head))]

    def cell(i: int, c: Cell) -> str:
        if i == 0:
            return c[0].ljust(value_w[0])
        text = c[0].rjust(value_w[i])
        if spread_w[i]:  # values line up with the means, spreads in their own sub-column
            text += f" ± {c[1].rjust(spread_w[i])}" if c[1] else " " * (3 + spread_w[i])
        return text

    def line(cells: list[Cell]) -> str:
        return "  ".join(cell(i, c) for i, c in enumerate(cells)).rstrip()

    rule = "-" * max(len(line(r)) for r in table)
    out = [title] if title else []
    out += [line(head), rule]
    out += [line(r) for r in rows[:-1]]
    if len(rows) > 1:
        out.append(rule)
    out.append(line(rows[-1]))
    return "\n".join(out) + "\n"
