"""The ``vireid train`` command: the only training code that prints.

Spec: ``spec/training/engine.md`` (section "Command line"). Loads the preset with the overrides,
trains into the run folder and prints a short summary on stdout (progress on stderr). Exit
status: 0 done, 2 bad input (``error: ...``), 3 non-finite loss, 130 interrupted by Ctrl-C
(a resumable ``last.pt`` was written).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from reference.training.config import load_preset
from reference.training.engine import TrainingStopped, train


def default_out_dir(preset: str, trial: int | None) -> Path:
    """``runs/<preset>`` (``runs/<preset>-trial<T>`` for a RegDB trial)."""
    name = Path(preset).stem if preset.endswith(".toml") else preset
    return Path("runs") / (f"{name}-trial{trial}" if trial is not None else name)


def train_command(
    *,
    preset: str,
    data_root: Path,
    trial: int | None = None,
    pretrained: Path | None = None,
    out: Path | None = None,
    overrides: tuple[str, ...] = (),
    resume: bool = False,
    force: bool = False,
    deterministic: bool = False,
    val_ids: int | None = None,
    monitor_test: bool = False,
) -> int:
    """``vireid train``: see the module docstring."""
    assignments = [f"data.root={_literal(data_root)}"]
    if trial is not None:
        assignments.append(f"data.trial={trial}")
    if pretrained is not None:
        assignments.append(f"model.pretrained={_literal(pretrained)}")
    if deterministic:
        assignments.append("run.deterministic=true")
    if val_ids is not None:
        assignments.append(f"run.val_ids={val_ids}")
    if monitor_test:
        assignments.append("run.monitor_test=true")
    config = load_preset(preset, [*assignments, *overrides])
    out_dir = out if out is not None else default_out_dir(preset, trial)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    try:
        result = train(config, out_dir, resume=resume, force=force)
    except TrainingStopped as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        return stop.status
    if rank0:
        print(f"run folder      {result.out_dir}")
        print(f"epochs, steps   {result.epochs}, {result.steps}")
        print(f"wall time       {result.wall_s:.1f} s ({result.images_per_s:.1f} images/s)")
        losses = ", ".join(f"{k} {v:.4f}" for k, v in result.final_losses.items())
        print(f"final losses    {losses}")
        if result.best_val is not None:
            bv = result.best_val
            print(
                f"best val        epoch {bv['epoch']}: R1 {100 * bv['r1']:.2f} "
                f"mAP {100 * bv['mAP']:.2f} mINP {100 * bv['mINP']:.2f}"
            )
        print(f"model           {result.checkpoint}")
    return 0


def _literal(path: Path) -> str:
    """A path as a TOML string literal for an override."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'
