"""The ``vireid train``, ``vireid extract`` and ``vireid demo`` commands: the only training
code that prints.

``vireid train`` (spec: ``spec/training/engine.md``, section "Command line") loads the preset
with the overrides, trains into the run folder and prints a short summary on stdout (progress on
stderr). Exit status: 0 done, 2 bad input (``error: ...``), 3 non-finite loss, 130 interrupted by
Ctrl-C (a resumable ``last.pt`` was written). ``vireid extract``: ``spec/training/extract.md``;
``vireid demo``: ``spec/training/demo.md``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from reference.errors import VireidError
from reference.training.config import load_preset
from reference.training.engine import TrainingStopped, train

#: why ``--trial`` means nothing for the datasets other than RegDB
ONE_SPLIT = {
    "llcm": "LLCM has one training split (--trial is RegDB's)",
    "sysu": "SYSU-MM01 has one training split (--trial is RegDB's; SYSU-MM01's trials are "
    "gallery draws made when scoring)",
}


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
    if trial is not None and config.data.dataset != "regdb":  # one training split: refused,
        # not ignored into a run folder named for a trial that changed nothing
        raise VireidError(f"trial: {ONE_SPLIT[config.data.dataset]}; got --trial {trial}")
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
        print(f"curves          vireid results curves {result.out_dir} --out curves.png")
    return 0


def _literal(path: Path) -> str:
    """A path as a TOML string literal for an override."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- vireid extract -------------------------------------------------------------------------------


def extract_command(
    *,
    checkpoint: Path,
    data_root: Path,
    out: Path,
    trial: int | None,
    flip: bool,
    batch_size: int,
    device: str,
    force: bool,
) -> int:
    """``vireid extract``: write the test pool's features file and say what it holds."""
    from reference.training.extract import extract_checkpoint

    done = extract_checkpoint(
        checkpoint,
        data_root,
        out,
        trial=trial,
        flip=flip,
        batch_size=batch_size,
        device=device,
        force=force,
    )
    fs = done.features
    ids = len(set(fs.pids.tolist()))
    pool = {
        "sysu": "SYSU-MM01 test pool",
        "regdb": f"RegDB trial {done.trial} test split",
        "llcm": "LLCM test pool, both modalities",
    }[fs.dataset]
    print(
        f"wrote {out}: {len(fs)} images of {ids} identities ({pool}), d={fs.dim}"
        f"{', flip-averaged' if flip else ''}"
    )
    how = " --direction i2v|v2i" if fs.dataset == "llcm" else ""
    print(f"score it: vireid evaluate {fs.dataset} --features {out}{how}")
    return 0


# --- vireid demo ----------------------------------------------------------------------------------


def demo_table(result) -> str:
    """One row per method and state: R1, mAP, mINP (percent, mean over the trials)."""
    head = f"{'method':<10} {'model':<10} {'R1':>6} {'mAP':>6} {'mINP':>6}"
    lines = [head, "-" * len(head)]
    for m in result.methods:
        for state, scores in (("untrained", m.untrained), ("trained", m.trained)):
            figures = " ".join(f"{100 * scores.mean(n):6.2f}" for n in ("R1", "mAP", "mINP"))
            lines.append(f"{m.kind:<10} {state:<10} {figures}")
    return "\n".join(lines) + "\n"


def print_demo(result) -> None:
    """The demo's output on stdout: the configuration, the protocol, the table, where things are."""
    config = result.config
    lines = config.describe()
    print("vireid demo: " + lines[0])
    for line in lines[1:]:
        print(line)
    print(
        f"SYSU-MM01 protocol: all-search, single-shot, agw draw, {config.trials} trials, "
        f"euclidean distance; mean over the trials, in percent"
    )
    print(demo_table(result), end="")
    print(
        "at this scale a seed or the processor's kernels move a method's mAP by up to 11 points: "
        "the table shows learning, not the methods' order (spec/training/demo.md)"
    )
    made = "cached" if result.synth_s == 0 else f"written in {result.synth_s:.0f} s"
    print(f"SynthVI: {result.root} ({made})")
    print(
        f"run folders: {', '.join(str(m.run_dir) for m in result.methods)} "
        "(each with ranks.png, the ranking picture, and curves.png, the training curves)"
    )
    print(f"wall time: {result.wall_s:.0f} s")


def demo_command(
    *, out: Path, cache: Path | None, device: str, force: bool, config=None, progress: bool = True
) -> int:
    """``vireid demo``: train, extract and score the three methods on SynthVI; print one table."""
    from reference.training.demo import DemoConfig, run_demo

    result = run_demo(
        out,
        cache=cache,
        config=config or DemoConfig(device=device),
        force=force,
        progress=progress,
        notify=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print_demo(result)
    return 0
