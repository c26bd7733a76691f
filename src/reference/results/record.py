"""Run records: ``run.json`` in a run folder, the one document a reproduced number comes with.

Spec: ``spec/results/record.md``.

A record holds the resolved config, the code revision (and whether the tree had uncommitted
changes), the environment (Python, torch, CUDA, GPU), the dataset fingerprint, the seeds, how the
model was selected, the training summary, and for each protocol scored its settings, per-trial
and mean figures (fractions in [0, 1], as in ``vireid.scores/1``) and bootstrap intervals.

``run.json`` is written atomically; a folder's record is only ever replaced by a record of the
same run (same ``run_id``), never by another run's.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reference import __version__
from reference.checks import check_path
from reference.errors import VireidError
from reference.evaluation.scores import Scores
from reference.fileio import atomic_write_text
from reference.results.intervals import DEFAULT_LEVEL, DEFAULT_RESAMPLES, bootstrap_intervals
from reference.results.record_figures import check_figures, check_intervals

SCHEMA = "vireid.run/1"
RUN_FILE = "run.json"
#: the protocol settings a comparison with a published row must agree on (published.SETTINGS)
PROTOCOL_FIELDS: tuple[str, ...] = ("dataset", "mode", "shots", "draw", "direction")
#: files whose content enters the dataset fingerprint (split and index files); images enter by
#: relative path and size only
INDEX_SUFFIXES: tuple[str, ...] = (".txt", ".mat", ".csv", ".json")


# ---------------------------------------------------------------------------------------------
# the protocol a Scores object was measured under, in the published tables' vocabulary
# ---------------------------------------------------------------------------------------------


def protocol_of(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``dataset, mode, shots, draw, direction`` (strings, as in the published CSV) + ``rerank``."""
    dataset = settings.get("dataset")
    rerank = bool(settings.get("rerank", False))
    if dataset == "sysu":
        return {
            "dataset": "sysu",
            "mode": str(settings["mode"]),
            "shots": str(settings["shots"]),
            "draw": str(settings["sampling"]),
            "direction": "i2v",
            "rerank": rerank,
        }
    if dataset in ("regdb", "llcm"):
        return {
            "dataset": dataset,
            "mode": "",
            "shots": "",
            "draw": "",
            "direction": str(settings["direction"]),
            "rerank": rerank,
        }
    raise VireidError(f"settings.dataset: expected 'sysu', 'regdb' or 'llcm', got {dataset!r}")


def protocol_key(protocol: Mapping[str, Any]) -> str:
    """A short name: ``sysu-all-1shot-agw``, ``regdb-v2t`` (``+rerank`` when re-ranked)."""
    if protocol["dataset"] == "sysu":
        key = f"sysu-{protocol['mode']}-{protocol['shots']}shot-{protocol['draw']}"
    else:
        key = f"{protocol['dataset']}-{protocol['direction']}"
    return key + ("+rerank" if protocol.get("rerank") else "")


def describe(protocol: Mapping[str, Any]) -> str:
    """Words for a protocol: ``SYSU-MM01 all-search single-shot agw draw``."""
    if protocol["dataset"] == "sysu":
        shots = {"1": "single-shot", "10": "multi-shot"}.get(protocol["shots"], "shots unstated")
        draw = "draw unstated" if protocol["draw"] == "unstated" else f"{protocol['draw']} draw"
        text = f"SYSU-MM01 {protocol['mode']}-search {shots} {draw}"
    else:
        text = f"{'RegDB' if protocol['dataset'] == 'regdb' else 'LLCM'} {protocol['direction']}"
    return text + (" re-ranked" if protocol.get("rerank") else "")


@dataclass(frozen=True)
class ProtocolResult:
    """One protocol scored by a run: settings, per-trial and mean figures, intervals."""

    key: str
    protocol: Mapping[str, Any]  # protocol_of(settings)
    scores: Mapping[str, Any]  # the vireid.scores/1 document
    intervals: Mapping[str, Mapping[str, float]]  # figure -> {value, low, high, level, resamples}
    interval_settings: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_scores(
        cls,
        scores: Scores,
        *,
        resamples: int = DEFAULT_RESAMPLES,
        level: float = DEFAULT_LEVEL,
        seed: int = 0,
    ) -> ProtocolResult:
        protocol = protocol_of(scores.settings)
        queries = scores.queries()
        if any(q is None for q in queries):
            intervals: dict[str, Any] = {}
        else:
            found = bootstrap_intervals(queries, resamples=resamples, level=level, seed=seed)
            intervals = {name: iv.to_dict() for name, iv in found.items()}
        return cls(
            key=protocol_key(protocol),
            protocol=protocol,
            scores=scores.to_dict(),
            intervals=intervals,
            interval_settings={
                "method": "bootstrap over query identities (spec/results/intervals.md)",
                "resamples": resamples,
                "level": level,
                "seed": seed,
            },
        )

    def mean(self, figure: str) -> float | None:
        """The mean over trials of ``figure`` (a fraction), ``None`` when the run lacks it."""
        entry = self.scores.get("summary", {}).get(figure)
        return None if entry is None else float(entry["mean"])

    def interval(self, figure: str) -> tuple[float, float] | None:
        entry = self.intervals.get(figure)
        return None if entry is None else (float(entry["low"]), float(entry["high"]))

    def cmc(self) -> list[float]:
        """The mean CMC over the trials (fractions, rank 1 first)."""
        trials = self.scores.get("trials", [])
        curves = [t["cmc"] for t in trials if "cmc" in t]
        if not curves:
            return []
        n = min(len(c) for c in curves)
        return [sum(c[r] for c in curves) / len(curves) for r in range(n)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": dict(self.protocol),
            "scores": _plain(self.scores),
            "intervals": _plain(self.intervals),
            "interval_settings": dict(self.interval_settings),
        }

    @classmethod
    def from_dict(cls, key: str, data: Mapping[str, Any], where: str) -> ProtocolResult:
        if not isinstance(data, Mapping):
            raise VireidError(f"{where}: protocols.{key}: expected an object")
        for name in ("protocol", "scores"):
            if not isinstance(data.get(name), Mapping):
                raise VireidError(f"{where}: protocols.{key}.{name}: expected an object")
        protocol = dict(data["protocol"])
        missing = [f for f in PROTOCOL_FIELDS if f not in protocol]
        if missing:
            raise VireidError(f"{where}: protocols.{key}.protocol: missing {missing}")
        protocol.setdefault("rerank", False)
        at = f"{where}: protocols.{key}"
        check_figures(data["scores"], f"{at}.scores")
        intervals = data.get("intervals") or {}
        check_intervals(intervals, f"{at}.intervals")
        return cls(
            key=key,
            protocol=protocol,
            scores=data["scores"],
            intervals=intervals,
            interval_settings=data.get("interval_settings") or {},
        )


# ---------------------------------------------------------------------------------------------
# provenance: code, environment, dataset
# ---------------------------------------------------------------------------------------------


def code_revision(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``{"version", "revision", "dirty"}`` of the git checkout holding ``path`` (this package by
    default); ``revision`` and ``dirty`` are ``None`` outside a checkout or without git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    out: dict[str, Any] = {"version": __version__, "revision": None, "dirty": None}
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return out
    out["revision"] = head.stdout.strip()
    out["dirty"] = bool(status.stdout.strip())
    return out


def environment() -> dict[str, Any]:
    """Python, platform, NumPy, torch, CUDA and the GPU's name (``None`` without one)."""
    import numpy
    import torch

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cpu_threads": torch.get_num_threads(),
    }


def dataset_fingerprint(root: str | os.PathLike[str]) -> dict[str, Any]:
    """SHA-256 over every file under ``root`` in sorted order: its relative path and size, and
    the content of split/index files (``INDEX_SUFFIXES``). Images are not read (a SYSU-MM01
    folder is 45,863 of them); a renamed, added, removed or resized file changes it."""
    base = Path(root)
    if not base.is_dir():
        raise VireidError(f"{base}: dataset root is not a folder")
    digest = hashlib.sha256()
    files = 0
    size = 0
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        rel = path.relative_to(base).as_posix()
        n = path.stat().st_size
        digest.update(f"{rel}\0{n}\n".encode())
        if path.suffix.lower() in INDEX_SUFFIXES:
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        files += 1
        size += n
    return {"root": str(base), "sha256": digest.hexdigest(), "files": files, "bytes": size}


# ---------------------------------------------------------------------------------------------
# the record
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """The content of ``run.json`` (see the module docstring and the spec for every key)."""

    run_id: str
    created: str
    config: Mapping[str, Any] = field(default_factory=dict)
    code: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    dataset: Mapping[str, Any] = field(default_factory=dict)
    seeds: Mapping[str, Any] = field(default_factory=dict)
    model_selection: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    protocols: Mapping[str, ProtocolResult] = field(default_factory=dict)
    name: str = ""

    @classmethod
    def new(cls, *, name: str = "", **fields: Any) -> RunRecord:
        """A fresh record with a new ``run_id``, the current time, code revision and environment
        (unless given)."""
        fields.setdefault("code", code_revision())
        fields.setdefault("environment", environment())
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return cls(run_id=uuid.uuid4().hex, created=now, name=name, **fields)

    def with_protocol(self, result: ProtocolResult) -> RunRecord:
        """A copy with ``result`` added (or replacing the result of the same protocol)."""
        protocols = dict(self.protocols)
        protocols[result.key] = result
        return replace(self, protocols=protocols)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "name": self.name,
            "created": self.created,
            "config": _plain(self.config),
            "code": _plain(self.code),
            "environment": _plain(self.environment),
            "dataset": _plain(self.dataset),
            "seeds": _plain(self.seeds),
            "model_selection": _plain(self.model_selection),
            "training": _plain(self.training),
            "protocols": {key: p.to_dict() for key, p in self.protocols.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = RUN_FILE) -> RunRecord:
        if not isinstance(data, Mapping):
            raise VireidError(f"{where}: expected a JSON object")
        if data.get("schema") != SCHEMA:
            raise VireidError(f"{where}: schema: expected {SCHEMA!r}, got {data.get('schema')!r}")
        for key in ("run_id", "created"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise VireidError(f"{where}: {key}: expected a non-empty string")
        protocols = data.get("protocols", {})
        if not isinstance(protocols, Mapping):
            raise VireidError(f"{where}: protocols: expected an object")
        return cls(
            run_id=data["run_id"],
            created=data["created"],
            name=str(data.get("name", "")),
            config=data.get("config") or {},
            code=data.get("code") or {},
            environment=data.get("environment") or {},
            dataset=data.get("dataset") or {},
            seeds=data.get("seeds") or {},
            model_selection=data.get("model_selection") or {},
            training=data.get("training") or {},
            protocols={k: ProtocolResult.from_dict(k, v, where) for k, v in protocols.items()},
        )


def record_path(run: str | os.PathLike[str]) -> Path:
    """``run`` itself when it is a file, else ``run/run.json``."""
    path = check_path(run, "run")
    return path if path.is_file() or path.suffix == ".json" else path / RUN_FILE


def read_record(run: str | os.PathLike[str]) -> RunRecord:
    """Read and check the record of a run folder (or a ``run.json`` path)."""
    path = record_path(run)
    if not path.is_file():
        raise VireidError(f"{path}: no run record (run.json) there")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise VireidError(f"{path}: not valid JSON ({exc})") from None
    return RunRecord.from_dict(data, str(path))


def write_record(folder: str | os.PathLike[str], record: RunRecord) -> Path:
    """Write ``folder/run.json`` atomically. An existing record is replaced only by one of the
    same run (same ``run_id``); another run's record is never overwritten."""
    path = Path(folder) / RUN_FILE
    if path.exists():
        try:
            existing = json.loads(path.read_text(encoding="utf-8")).get("run_id")
        except (json.JSONDecodeError, AttributeError):
            existing = None
        if existing != record.run_id:
            raise VireidError(
                f"{path}: holds the record of another run (run_id {existing!r}); "
                f"not replaced by run {record.run_id!r}: use a new run folder"
            )
    return atomic_write_text(path, record.to_json(), overwrite=path.exists())


def _plain(value: Any) -> Any:
    """JSON-ready copy: mappings to dicts, tuples to lists, paths to strings."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
