"""The published tables as data: one tidy CSV per source in ``results/published/``.

Spec: ``spec/results/published.md``.

Each row is one figure: ``method, source, venue, dataset, mode, shots, draw, direction, metric,
value, note``. ``value`` is in percent, as printed by the source. The protocol columns take

- ``dataset``: ``sysu`` | ``regdb`` | ``llcm``;
- ``mode``: ``all`` | ``indoor`` (SYSU-MM01), empty elsewhere;
- ``shots``: ``1`` | ``10`` (SYSU-MM01), empty elsewhere; ``unstated`` when the source does not say;
- ``draw``: ``agw`` | ``official`` (SYSU-MM01), empty elsewhere; ``unstated`` when not said;
- ``direction``: ``i2v`` (SYSU-MM01, infrared queries), ``v2t`` | ``t2v`` (RegDB),
  ``i2v`` | ``v2i`` (LLCM).

A ``note`` starting with ``derived:`` marks a figure computed from other published figures (not
printed by the source); a note containing ``re-ranked`` marks a re-ranked figure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from reference.checks import check_file, check_path, parse_number
from reference.errors import VireidError

COLUMNS: tuple[str, ...] = (
    "method",
    "source",
    "venue",
    "dataset",
    "mode",
    "shots",
    "draw",
    "direction",
    "metric",
    "value",
    "note",
)
#: the columns that fix the protocol a figure was measured under
SETTINGS: tuple[str, ...] = ("dataset", "mode", "shots", "draw", "direction")
METRICS: tuple[str, ...] = ("R1", "R5", "R10", "R20", "mAP", "mINP")
UNSTATED = "unstated"
#: allowed values of each protocol column, per dataset ("" = does not apply)
ALLOWED: dict[str, dict[str, tuple[str, ...]]] = {
    "sysu": {
        "mode": ("all", "indoor"),
        "shots": ("1", "10", UNSTATED),
        "draw": ("agw", "official", UNSTATED),
        "direction": ("i2v",),
    },
    "regdb": {"mode": ("",), "shots": ("",), "draw": ("",), "direction": ("v2t", "t2v")},
    "llcm": {"mode": ("",), "shots": ("",), "draw": ("",), "direction": ("i2v", "v2i")},
}
#: the published row each training preset reproduces (None: nothing published for it)
PRESET_ROWS: dict[str, str | None] = {
    "baseline-sysu": "method_a:baseline",
    "method_a-sysu": "method_a:Method A",
    "method_b-sysu": "method_b:BDF",
    "method_b-regdb": "method_b:BDF",
    "baseline-regdb": None,
    "method_a-regdb": None,
    # LLCM publishes other methods' figures (AGW, CAJ, DEEN: --against llcm:AGW), none of these
    "baseline-llcm": None,
    "method_a-llcm": None,
    "method_b-llcm": None,
}
#: the key of a figure: no two rows of the tables share it
KEY: tuple[str, ...] = ("source", "method", *SETTINGS, "metric")


def published_dir() -> Path:
    """The folder of the published CSV files.

    ``VIREID_PUBLISHED`` when set; else ``results/published`` of the source tree this package
    lives in (an editable install or ``PYTHONPATH=src``); else ``published/`` beside this module
    (a copy shipped as package data).
    """
    env = os.environ.get("VIREID_PUBLISHED")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [here.parents[3] / "results" / "published", here.parent / "published"]
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.csv")):
            return folder
    raise VireidError(
        "published tables: no folder of CSV files found; looked in "
        + ", ".join(str(c) for c in candidates)
        + " (set VIREID_PUBLISHED to the results/published folder of the source tree)"
    )


def sources(directory: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """The source names: the stems of the CSV files, sorted."""
    folder = check_path(directory, "directory") if directory is not None else published_dir()
    return tuple(sorted(p.stem for p in folder.glob("*.csv")))


def load_source(name: str, directory: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """One source's figures, validated (see :func:`validate`)."""
    folder = check_path(directory, "directory") if directory is not None else published_dir()
    path = check_file(
        folder / f"{name}.csv", "source", expected="a published table (a CSV file)",
        missing=f"no such published table; sources: {', '.join(sources(folder)) or 'none'}",
    )  # fmt: skip
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:  # pandas' parser errors are ValueErrors
        raise VireidError(f"{path}: cannot read as a CSV table: {exc}") from exc
    return validate(frame, str(path), source=name)


def load_published(directory: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every source's figures in one frame (the sources in name order)."""
    folder = check_path(directory, "directory") if directory is not None else published_dir()
    frames = [load_source(name, folder) for name in sources(folder)]
    if not frames:
        raise VireidError(f"{folder}: no published tables (*.csv)")
    table = pd.concat(frames, ignore_index=True)
    _check_unique(table, str(folder))
    return table


def validate(frame: pd.DataFrame, where: str, *, source: str | None = None) -> pd.DataFrame:
    """Check the schema of a published table; return it with ``value`` as float64.

    Raises :class:`VireidError` naming ``where``, the row (1-based data row) and the column.
    """
    if tuple(frame.columns) != COLUMNS:
        raise VireidError(f"{where}: columns {list(frame.columns)}; expected {list(COLUMNS)}")
    frame = frame.copy()
    for i, row in enumerate(frame.itertuples(index=False), start=1):
        at = f"{where}: row {i}"
        if not row.method:
            raise VireidError(f"{at}: method: expected a name, got an empty cell")
        if source is not None and row.source != source:
            raise VireidError(
                f"{at}: source: expected {source!r} (the file name), got {row.source!r}"
            )
        if row.dataset not in ALLOWED:
            raise VireidError(
                f"{at}: dataset: expected one of {sorted(ALLOWED)}, got {row.dataset!r}"
            )
        for column, allowed in ALLOWED[row.dataset].items():
            value = getattr(row, column)
            if value not in allowed:
                raise VireidError(
                    f"{at}: {column}: expected one of {list(allowed)} for {row.dataset}, "
                    f"got {value!r}"
                )
        if row.metric not in METRICS:
            raise VireidError(f"{at}: metric: expected one of {list(METRICS)}, got {row.metric!r}")
        value = parse_number(row.value, f"{at}: value", expected="a number in percent")
        if not 0.0 <= value <= 100.0:
            raise VireidError(f"{at}: value: expected a percentage in [0, 100], got {row.value}")
    frame["value"] = frame["value"].astype("float64")
    _check_unique(frame, where)
    return frame


def _check_unique(frame: pd.DataFrame, where: str) -> None:
    dup = frame.duplicated(list(KEY), keep=False)
    if dup.any():
        first = frame[dup].iloc[0]
        key = ", ".join(f"{k}={first[k]!r}" for k in KEY)
        raise VireidError(f"{where}: two rows for the same figure ({key})")


def is_derived(frame: pd.DataFrame) -> pd.Series:
    """True for figures computed from other published figures (note ``derived: ...``)."""
    return frame["note"].str.startswith("derived:")


def is_reranked(frame: pd.DataFrame) -> pd.Series:
    """True for re-ranked figures (note mentions ``re-ranked``)."""
    return frame["note"].str.contains("re-ranked", regex=False)


def normalise_name(name: str) -> str:
    """Method names compare case- and punctuation-blind: ``method-a`` == ``Method A``."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def select(reference: str, directory: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The figures of ``SOURCE:METHOD`` (method names compare as :func:`normalise_name`)."""
    source, sep, method = reference.partition(":")
    if not sep or not source or not method:
        raise VireidError(
            f"--against: expected SOURCE:METHOD (e.g. method_b:BDF), got {reference!r}"
        )
    table = load_source(source, directory)
    rows = table[table["method"].map(normalise_name) == normalise_name(method)]
    if rows.empty:
        names = ", ".join(sorted(set(table["method"])))
        raise VireidError(f"--against: {source} has no method {method!r}; it has: {names}")
    return rows.reset_index(drop=True)
