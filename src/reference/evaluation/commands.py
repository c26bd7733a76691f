"""The ``vireid evaluate sysu``, ``vireid evaluate regdb`` and ``vireid evaluate llcm`` commands.

Spec: ``spec/evaluation/sysu.md``, ``spec/evaluation/regdb.md``, ``spec/evaluation/llcm.md``
(sections "Command line"), ``spec/evaluation/rerank.md`` (``--rerank``) and
``spec/evaluation/scores.md`` (the table and the JSON document).

Each command loads (or, with ``--example``, generates) the features, runs the protocol, prints the
table on stdout (progress on stderr) and, with ``--json OUT``, writes the scores atomically; an
existing OUT is only replaced with ``--force``, and that is checked before any work is done.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

from reference.errors import VireidError
from reference.evaluation import example as examples
from reference.evaluation.features import FeatureSet, load_features
from reference.evaluation.llcm import evaluate_llcm as run_llcm
from reference.evaluation.regdb import evaluate_regdb as run_regdb
from reference.evaluation.rerank import RerankSettings
from reference.evaluation.sysu import evaluate_sysu as run_sysu
from reference.evaluation.sysu import load_official_split
from reference.fileio import check_writable


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rerank_settings(
    method: str | None, k1: int | None, k2: int | None, lambda_: float | None
) -> RerankSettings | None:
    """``--rerank METHOD [--k1 --k2 --lambda]``; the three numbers need ``--rerank``."""
    given = {"--k1": k1, "--k2": k2, "--lambda": lambda_}
    if method is None:
        stray = [name for name, value in given.items() if value is not None]
        if stray:
            raise VireidError(f"{stray[0]}: only used with --rerank k-reciprocal")
        return None
    defaults = RerankSettings()
    return RerankSettings(
        method=method,
        k1=defaults.k1 if k1 is None else k1,
        k2=defaults.k2 if k2 is None else k2,
        lambda_=defaults.lambda_ if lambda_ is None else lambda_,
    )


def _features_or_example(
    features: Path | None,
    example: bool,
    dataset: str,
    name: str,
    make_example: Callable[[], FeatureSet],
) -> tuple[FeatureSet, str]:
    """The one features file of a protocol (SYSU-MM01, LLCM), or its generated example, and the
    source recorded with the scores."""
    if example:
        fs = make_example()
        print(
            f"features: generated {name}-shaped example ({len(set(fs.pids.tolist()))} "
            f"identities, {len(fs)} images, d={fs.dim}; synthetic, not a model's features)"
        )
        return fs, "example"
    if features is None:
        raise VireidError("--features: expected a features file (or --example)")
    return load_features(features, dataset), str(features)


#: what a protocol's features step returns: the run's features and the keyword arguments it adds
#: to (or replaces in) the protocol's options
Prepared = tuple[object, dict[str, object]]


def _sysu_features(features: Path | None, example: bool, options: dict[str, object]) -> Prepared:
    sampling, split = options["sampling"], options["split"]
    if sampling == "official" and split is None:
        raise VireidError(
            "--split: --sampling official needs the dataset authors' rand_perm_cam.mat "
            "(--split PATH); use --sampling agw to draw the galleries without it"
        )
    if sampling != "official" and split is not None:
        raise VireidError("--split: only used with --sampling official")
    official = load_official_split(split) if split is not None else None
    # with the official draw the example takes its folder sizes from the split
    make = examples.sysu_example
    if official is not None:
        make = partial(examples.sysu_example_from_split, official)
    fs, source = _features_or_example(features, example, "sysu", "SYSU-MM01", make)
    return fs, {"split": official, "source": source}


def _regdb_features(
    features: list[Path] | None, example: bool, options: dict[str, object]
) -> Prepared:
    if example:
        sets = examples.regdb_example()
        print(
            f"features: generated RegDB-shaped example ({len(sets)} trials, {len(sets[0])} "
            f"images each, d={sets[0].dim}; synthetic, not a model's features)"
        )
        return sets, {"sources": None}
    if not features:
        raise VireidError("--features: expected one features file per trial (or --example)")
    return [load_features(path, "regdb") for path in features], {
        "sources": [str(path) for path in features]
    }


def _llcm_features(features: Path | None, example: bool, options: dict[str, object]) -> Prepared:
    fs, source = _features_or_example(features, example, "llcm", "LLCM", examples.llcm_example)
    return fs, {"source": source}


class Protocol(NamedTuple):
    """An evaluation protocol as a command runs it."""

    #: the scoring function (:func:`reference.evaluation.sysu.evaluate_sysu` and its kin)
    run: Callable[..., object]
    #: ``(features, example, options) -> (data, added options)``: loads or generates the features
    prepare: Callable[..., Prepared]
    #: the command-line options of its own it takes (beside ``metric`` and ``rerank``)
    options: tuple[str, ...]


PROTOCOLS: dict[str, Protocol] = {
    "sysu": Protocol(run_sysu, _sysu_features, ("mode", "shots", "sampling", "split", "trials")),
    "regdb": Protocol(run_regdb, _regdb_features, ("direction",)),
    "llcm": Protocol(run_llcm, _llcm_features, ("direction", "trials")),
}


def evaluate(
    protocol: str,
    *,
    features: Path | list[Path] | None,
    example: bool,
    metric: str,
    json_out: Path | None,
    force: bool,
    rerank: RerankSettings | None = None,
    **options: object,
) -> int:
    """``vireid evaluate PROTOCOL``: score the features (SYSU-MM01 and LLCM: one file; RegDB: one
    file per trial) or the generated example, print the table and, with ``--json``, write the
    scores. ``options`` are the protocol's own (:data:`PROTOCOLS`)."""
    if json_out is not None:
        check_writable(json_out, overwrite=force)
    run, prepare, _ = PROTOCOLS[protocol]
    data, added = prepare(features, example, options)
    scores = run(data, metric=metric, rerank=rerank, progress=_progress, **{**options, **added})
    print(scores.table(), end="")
    if json_out is not None:
        scores.write_json(json_out, overwrite=force)
        _progress(f"wrote {json_out}")
    return 0
