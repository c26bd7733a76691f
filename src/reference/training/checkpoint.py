"""Training checkpoints: the only code that saves or loads them.

Spec: ``spec/training/checkpoint.md``. A checkpoint is one ``torch.save`` file holding plain
data and tensors only, so it is read back with ``torch.load(weights_only=True)``:

    format, version       "vireid-checkpoint", 1
    model                 the network's state dict (parameters and BatchNorm buffers)
    optimizer, scheduler  their state dicts (momentum buffers, learning rates, epoch counter)
    scaler                the fp16 gradient scaler's state ({} when unused)
    epoch, epoch_step     position: epoch in progress, optimizer steps done in it
    step                  optimizer steps done in the whole run
    world_size            processes that wrote it
    rng                   one entry per rank: torch CPU and CUDA, numpy, Python generators, and
                          the pipeline's transform generator
    config                the resolved TrainConfig as plain data
    revision              the code revision (``git describe``, else the package version)
    extra                 run bookkeeping (best validation score, images seen, wall time)

It is written atomically (``reference.fileio``): a reader never sees half a file and an
interrupted write leaves the previous checkpoint intact. A missing, truncated or foreign file is
a :class:`VireidError` naming the file.
"""

from __future__ import annotations

import functools
import io
import random
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reference import __version__
from reference.checks import check_file
from reference.config import config_diff
from reference.errors import VireidError
from reference.fileio import atomic_write_bytes
from reference.models.build import build_model
from reference.models.network import ReidNetwork
from reference.training.config import TrainConfig, config_from_dict, config_to_dict

FORMAT = "vireid-checkpoint"
VERSION = 1
KEYS = (
    "format",
    "version",
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "epoch",
    "epoch_step",
    "step",
    "world_size",
    "rng",
    "config",
    "revision",
    "extra",
)


@functools.cache
def code_revision() -> str:
    """``git describe --always --dirty`` of the source tree, else ``"vireid-reference <ver>"``."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or f"vireid-reference {__version__}"
    except (OSError, subprocess.SubprocessError):
        return f"vireid-reference {__version__}"


def rng_state(transform: torch.Generator | None) -> dict[str, Any]:
    """Every random generator of this process, as tensors and plain data."""
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 (the legacy global state)
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": [py_version, list(py_internal), py_gauss],
        "transform": None if transform is None else transform.get_state(),
    }


def set_rng_state(state: dict[str, Any], transform: torch.Generator | None) -> None:
    """Restore what :func:`rng_state` saved (the transform generator when one is given)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        {
            "bit_generator": numpy["bit_generator"],
            "state": {"key": numpy["key"].numpy().astype(np.uint32), "pos": numpy["pos"]},
            "has_gauss": numpy["has_gauss"],
            "gauss": numpy["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if transform is not None and state["transform"] is not None:
        transform.set_state(state["transform"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (the keys of :data:`KEYS` but ``format``, ``version``, ``revision``)
    atomically to ``path``, replacing an older checkpoint there."""
    missing = [k for k in KEYS if k not in ("format", "version", "revision") and k not in state]
    if missing:
        raise VireidError(f"checkpoint state: missing {missing}")
    payload = {"format": FORMAT, "version": VERSION, "revision": code_revision(), **state}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue(), overwrite=True)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path`` (tensors on the CPU), checked to be one of ours."""
    path = check_file(
        path, "path", expected="a checkpoint file (last.pt, best-val.pt)",
        missing="no such checkpoint file",
    )  # fmt: skip
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged or foreign file
        if not zipfile.is_zipfile(path):  # torch's own words are then a bare KeyError: 105
            first = "not a zip archive, which torch.save writes"
        else:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VireidError(
            f"{path}: not a readable checkpoint (truncated, or not a torch file): {first}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise VireidError(f"{path}: not a vireid training checkpoint (no format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise VireidError(
            f"{path}: checkpoint version {data.get('version')!r}; this code reads {VERSION}"
        )
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise VireidError(f"{path}: checkpoint lacks {missing}")
    return data


def checkpoint_config(data: dict[str, Any], path: str | Path) -> TrainConfig:
    """The TrainConfig recorded in a checkpoint read by :func:`read_checkpoint`."""
    try:
        return config_from_dict(data["config"])
    except VireidError as exc:
        raise VireidError(f"{path}: its config is not valid here: {exc}") from None


#: config fields that say where things are or how memory is handed out, not what is computed:
#: they may differ on resume
RESUME_MAY_DIFFER = (
    "data.root", "data.cache_dir", "data.workers", "run.progress", "run.keep_freed_memory",
    "preset",
)  # fmt: skip


def check_resume(config: TrainConfig, data: dict[str, Any], path: Path, world_size: int) -> None:
    """Refuse to resume the checkpoint ``data`` (read from ``path``) with another config (the
    differing fields named) or another number of processes."""
    saved = checkpoint_config(data, path)
    diff = config_diff(config_to_dict(config), config_to_dict(saved))
    diff = [d for d in diff if d not in RESUME_MAY_DIFFER]
    if diff:
        raise VireidError(
            f"{path}: the run was made with a different config; differing fields: "
            f"{', '.join(diff)} (start a new run with --force or another --out)"
        )
    if data["world_size"] != world_size:
        raise VireidError(
            f"{path}: written by {data['world_size']} process(es); this run has "
            f"{world_size}: resume with the same number"
        )


def load_model(
    checkpoint_path: str | Path, device: torch.device | str = "cpu"
) -> tuple[ReidNetwork, TrainConfig]:
    """The trained network of a checkpoint, on ``device`` in eval mode, and its config.

    The network is built from the recorded ``model`` config without drawing its random
    initialisation or reading its ``pretrained`` file (``initialise=False``: the checkpoint holds
    every weight and buffer), and loaded strictly.
    """
    data = read_checkpoint(checkpoint_path)
    config = checkpoint_config(data, checkpoint_path)
    model = build_model(config.model, initialise=False)
    try:
        model.load_state_dict(data["model"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise VireidError(
            f"{checkpoint_path}: weights do not fit its model config: {first}"
        ) from None
    return model.to(device).eval(), config
