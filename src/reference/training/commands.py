"""The ``vireid`` commands of the training area: the only code here that prints.

Spec: ``spec/training/extract.md`` (``vireid extract``), ``spec/training/demo.md``
(``vireid demo``). One function per command; ``cli.py`` parses the arguments and calls it.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
    pool = "SYSU-MM01 test pool" if fs.dataset == "sysu" else f"RegDB trial {done.trial} test split"
    print(
        f"wrote {out}: {len(fs)} images of {ids} identities ({pool}), d={fs.dim}"
        f"{', flip-averaged' if flip else ''}"
    )
    protocol = "sysu" if fs.dataset == "sysu" else "regdb"
    print(f"score it: vireid evaluate {protocol} --features {out}")
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
    made = "cached" if result.synth_s == 0 else f"written in {result.synth_s:.0f} s"
    print(f"SynthVI: {result.root} ({made})")
    print(f"run folders: {', '.join(str(m.run_dir) for m in result.methods)}")
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
