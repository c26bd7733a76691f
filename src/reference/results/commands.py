"""The ``vireid results`` commands: check, table, ranks (and reproduce).

Spec: ``spec/results/check.md``. Tables go to stdout, progress to stderr; the only printing code
of the results area.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reference.errors import VireidError
from reference.evaluation.features import load_features
from reference.results import compare, published
from reference.results.record import read_record
from reference.results.report import write_report


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _name(run: Path) -> str:
    path = Path(run)
    return (path.parent if path.suffix == ".json" else path).name or str(path)


def results_check(*, run: Path, against: str | None, tolerance: str | None) -> int:
    """Compare a run with a published method (by default the row of the run's preset); exit 0
    when nothing falls short, 1 otherwise."""
    tolerances = compare.parse_tolerance(tolerance)
    record = read_record(run)
    name = _name(run)
    if against is None:
        preset = str(record.config.get("preset", ""))
        against = published.PRESET_ROWS.get(Path(preset).stem) if preset else None
        if against is None:
            raise VireidError(
                f"--against: {name} records no preset with a published row "
                f"(preset {preset or 'unknown'!r}); name one as SOURCE:METHOD"
            )
    rows = published.select(against)
    result = compare.check(record, rows, against, tolerances, run_name=name)
    print(compare.check_table(result), end="")
    print(compare.summary_line(result, name))
    return 0 if result.passed else 1


def results_table(*, runs: Sequence[Path], against: Sequence[str], out: Path, force: bool) -> int:
    """Write report.md and cmc.png of the runs against the published rows."""
    records = [(_name(r), read_record(r)) for r in runs]
    refs = compare.references_of(against)
    table = pd.concat([published.select(r) for r in refs], ignore_index=True) if refs else None
    report, plot = write_report(records, table, out, force=force)
    print(report.read_text(encoding="utf-8"), end="")
    _progress(f"wrote {report} and {plot}")
    return 0


def results_curves(*, runs: Sequence[Path], out: Path, force: bool) -> int:
    """Write the training curves of run folders (log.csv, eval.csv) as one PNG."""
    from reference.results.curves import write_curves

    path, logs = write_curves(runs, out, force=force)
    for run in logs:
        last = run.log.iloc[-1]
        print(f"{run.name}: {len(run.log)} log rows to step {int(last['step'])}, "
              f"last total loss {float(last['total']):.4f}")  # fmt: skip
    _progress(f"wrote {path}")
    return 0


def results_ranks(
    *,
    features: Path,
    data_root: Path,
    queries: int,
    out: Path,
    seed: int,
    force: bool,
    direction: str | None = None,
    trial: int | None = None,
) -> int:
    """Write the ranking picture of a features file of the dataset in ``data_root``."""
    from reference.data.layout import detect_dataset
    from reference.results.ranks import check_direction, write_ranks

    if not data_root.is_dir():
        raise VireidError(f"--data-root: {data_root} is not a folder")
    dataset = detect_dataset(data_root)
    direction = check_direction(dataset, direction)
    if (dataset == "regdb") != (trial is not None):
        raise VireidError(
            "--trial: RegDB features hold one trial's test split: give that trial (1..10)"
            if dataset == "regdb"
            else f"--trial: only for RegDB (a {dataset} features file holds the whole test pool)"
        )
    fs = load_features(features, dataset)
    path, ranked = write_ranks(
        fs, data_root, out, n_queries=queries, seed=seed, force=force,
        dataset=dataset, direction=direction, trial=trial,
    )  # fmt: skip
    for row in ranked:
        hits = "".join("+" if m else "." for m in row.matches)
        print(f"{row.kind:6s}  query row {row.query:6d}  AP {row.ap:.3f}  top-10 {hits}")
    _progress(f"wrote {path}")
    return 0


def results_reproduce(
    *,
    preset: str,
    data_root: Path,
    pretrained: Path | None,
    out: Path | None,
    split: Path | None,
    against: str | None,
    tolerance: str | None,
    trials: int,
    overrides: Sequence[str],
) -> int:
    """Train, extract, score, record and check; exit 0 when nothing falls short, 1 otherwise."""
    from reference.results.reproduce import reproduce
    from reference.training.engine import TrainingStopped

    tolerances = compare.parse_tolerance(tolerance)
    out_dir = out if out is not None else Path("runs") / f"reproduce-{Path(preset).stem}"
    try:
        done = reproduce(
            preset, data_root, pretrained, out_dir, overrides=tuple(overrides), split=split,
            against=against, tolerance=tolerances, trials=trials, progress=_progress,
        )  # fmt: skip
    except TrainingStopped as stop:
        _progress(f"stopped: {stop}; run the same command again to resume")
        return stop.status
    for key, result in done.record.protocols.items():
        figures = "  ".join(
            f"{m} {100 * v:.2f}" for m in ("R1", "R10", "mAP", "mINP")
            if (v := result.mean(m)) is not None
        )  # fmt: skip
        print(f"{key:28s} {figures}")
    print(f"run record: {done.out_dir / 'run.json'}")
    if done.check is None:
        print(f"no published row for {preset}: nothing to check against")
        return 0
    print(compare.check_table(done.check), end="")
    print(compare.summary_line(done.check, done.out_dir.name))
    return 0 if done.check.passed else 1


def results_golden(*, update: bool) -> int:
    """Re-run the golden SynthVI runs; compare (exit 1 on a regression) or, with ``update``,
    rewrite ``results/golden/golden.json``."""
    from reference.results import golden

    recorded = None if update else golden.read_golden()  # a missing record fails before the run
    got = golden.run_golden(progress=_progress)
    for method, figures in got["methods"].items():
        shown = "  ".join(f"{k} {100 * v:.2f}" for k, v in figures["figure"].items())
        print(f"{method:10s} {shown}  ({figures['seconds']:.1f} s)")
    if update:
        path = golden.write_golden(got)
        print(f"wrote {path}")
        return 0
    problems = golden.compare_golden(got, recorded)
    for line in problems:
        print(line)
    print("regression: " + ("none" if not problems else f"{len(problems)} figures moved"))
    return 1 if problems else 0
