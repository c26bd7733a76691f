"""Regression against ourselves: a small fixed SynthVI run of every method and its golden record.

Spec: ``spec/results/golden.md``.

For each method (``baseline``, ``method_a``, ``method_b``; their SYSU-MM01 presets) the same
tiny run of a ResNet-18 (``DEPTH``): a SynthVI SYSU-MM01 folder (``GOLDEN_IDS`` identities,
seed 0, 32 x 16 images; 96 x 32 for Method A, whose six stripes need six rows of feature map),
``STEPS`` optimizer steps of 2 identities x 2 images per modality on the CPU with deterministic
algorithms, then the test pool's features and the SYSU-MM01 all-search single-shot ``agw``
protocol (10 trials). The figures kept per method: every final loss term, the mean and standard
deviation of the features, and R1, R10, mAP, mINP. ``results/golden/golden.json`` holds them
with the run's settings; :func:`compare_golden` lists every figure outside ``TOLERANCE``.

The methods run in a child process whose CPU kernels are pinned (``KERNEL_ENV``: ATen's and
oneDNN's AVX2 code, one thread): the figures depend on which vector instructions the kernels use,
and a machine with AVX-512 otherwise trains to other figures than one without (the spec gives
the numbers). ``python -m reference.results.golden BASE OUT`` is that child.

Update after a deliberate change: ``vireid results golden --update`` (commit the new file with
the reason in the message).
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reference.checks import check_path
from reference.errors import VireidError
from reference.fileio import atomic_write_text

SCHEMA = "vireid.golden/1"
METHODS: tuple[str, ...] = ("baseline", "method_a", "method_b")
GOLDEN_IDS = 12
STEPS = 3
#: the network's depth: 18, the CPU-cheap one (the spec gives why; depth 50 is the model tests')
DEPTH = 18
SIZES: dict[str, tuple[int, int]] = {
    "baseline": (32, 16),
    "method_a": (96, 32),
    "method_b": (32, 16),
}
#: (relative, absolute) tolerance per kind of figure, see the spec for why
TOLERANCE: dict[str, tuple[float, float]] = {
    "loss": (1e-3, 1e-5),
    "feature": (1e-3, 1e-5),
    "figure": (0.0, 1e-3),  # fractions: a tenth of a point
}


#: the child's environment on top of the caller's: the CPU kernels every machine can run alike
#: (x86 with AVX2; ATen's dispatch and oneDNN's convolutions read these when they start)
KERNEL_ENV: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def golden_path() -> Path:
    """``results/golden/golden.json`` of the source tree (``VIREID_GOLDEN`` overrides it)."""
    env = os.environ.get("VIREID_GOLDEN")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "results" / "golden" / "golden.json"


def overrides(method: str, root: Path) -> list[str]:
    size = SIZES[method]
    return [
        f'data.root="{root}"',
        "pipeline.p=2",
        "pipeline.k=2",
        f"pipeline.num_batches={STEPS}",
        f"model.depth={DEPTH}",
        f"pipeline.transform.size=[{size[0]}, {size[1]}]",
        "run.epochs=1",
        "run.log_every=1",
        "run.deterministic=true",
        "run.progress=false",
        "run.device='cpu'",
        "schedule.warmup_epochs=1",
    ]


def run_method(method: str, root: Path, work: Path) -> dict[str, Any]:
    """Train, extract and score one method's tiny run; return its figures."""
    from reference.evaluation.sysu import evaluate_sysu
    from reference.training.checkpoint import load_model
    from reference.training.config import load_preset
    from reference.training.engine import train
    from reference.training.extract import ExtractConfig, extract_features

    config = load_preset(f"{method}-sysu", overrides(method, root))
    start = time.perf_counter()
    result = train(config, work / method)
    model, _ = load_model(result.checkpoint, "cpu")
    fs = extract_features(
        model, root, dataset="sysu", config=ExtractConfig(transform=config.pipeline.transform),
        progress=False,
    )  # fmt: skip
    scores = evaluate_sysu(fs, mode="all", shots=1, sampling="agw")
    feats = fs.features.astype(np.float64)
    return {
        "loss": {k: float(v) for k, v in sorted(result.final_losses.items())},
        "feature": {"mean": float(feats.mean()), "std": float(feats.std())},
        "figure": {m: scores.mean(m) for m in ("R1", "R10", "mAP", "mINP")},
        "seconds": time.perf_counter() - start,
    }


def run_golden(
    work: str | os.PathLike[str] | None = None, progress: Callable[[str], None] = lambda m: None
) -> dict[str, Any]:
    """Every method's tiny run in ``work`` (a temporary folder by default), in one child process
    with ``KERNEL_ENV`` (:func:`run_methods`): the same figures on any x86 machine with AVX2, with
    or without AVX-512. A child that fails is an error with the end of what it wrote."""
    import reference

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(work) if work is not None else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        out = base / "golden-run.json"
        env = {**os.environ, **KERNEL_ENV}
        # the child imports this same package, wherever the caller found it
        source = str(Path(reference.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
        progress(
            f"golden run: {', '.join(METHODS)} (one child process, CPU kernels pinned to AVX2)"
        )
        done = subprocess.run(
            [sys.executable, "-m", "reference.results.golden", str(base), str(out)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-2000:]
            raise VireidError(f"golden run: the child process failed:\n{tail}")
        methods = json.loads(out.read_text(encoding="utf-8"))
    return {
        "schema": SCHEMA,
        "settings": {
            "ids": GOLDEN_IDS,
            "steps": STEPS,
            "depth": DEPTH,
            "sizes": {k: list(v) for k, v in SIZES.items()},
        },
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "kernels": KERNEL_ENV,
        },
        "methods": methods,
    }


def run_methods(base: Path) -> dict[str, Any]:
    """The child's work: every method's SynthVI folder (kept in ``base`` for a later run) and
    tiny run, on one torch thread (the same arithmetic order on every machine)."""
    from reference.data.synthvi import write_sysu

    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    for method in METHODS:
        root = base / f"synthvi-{method}"
        if not root.exists():
            write_sysu(root, ids=GOLDEN_IDS, seed=0, image_size=SIZES[method])
        out[method] = run_method(method, root, base / "runs")
    return out


def compare_golden(got: Mapping[str, Any], golden: Mapping[str, Any]) -> list[str]:
    """Every figure of ``got`` outside the tolerance of ``golden``'s (empty: no regression).

    Runs of other settings are not compared: their difference is the one problem reported."""
    if got.get("settings") != golden.get("settings"):
        return [
            f"settings: the run's are {json.dumps(got.get('settings'), sort_keys=True)}, the "
            f"golden record's {json.dumps(golden.get('settings'), sort_keys=True)}; a deliberate "
            "change updates the record (vireid results golden --update)"
        ]
    problems = []
    for method in METHODS:
        want = golden["methods"].get(method)
        have = got["methods"].get(method)
        if want is None or have is None:
            problems.append(
                f"{method}: missing from {'the golden record' if want is None else 'the run'}"
            )
            continue
        for kind, (rel, abs_) in TOLERANCE.items():
            names = set(want.get(kind, {})) | set(have.get(kind, {}))
            for name in sorted(names):
                a, b = have.get(kind, {}).get(name), want.get(kind, {}).get(name)
                if a is None or b is None:
                    problems.append(
                        f"{method} {kind} {name}: only in {'golden' if a is None else 'the run'}"
                    )
                elif not math.isclose(a, b, rel_tol=rel, abs_tol=abs_):
                    problems.append(
                        f"{method} {kind} {name}: {a:.6g}, golden {b:.6g} "
                        f"(tolerance rel {rel:g}, abs {abs_:g})"
                    )
    return problems


def write_golden(data: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> Path:
    """Replace the golden record (atomically) with ``data``."""
    target = check_path(path, "path") if path is not None else golden_path()
    return atomic_write_text(target, json.dumps(data, indent=2) + "\n", overwrite=True)


def read_golden(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    target = check_path(path, "path") if path is not None else golden_path()
    if not target.is_file():
        raise VireidError(
            f"{target}: no golden record; write it with vireid results golden --update"
        )
    data = json.loads(target.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        raise VireidError(f"{target}: schema: expected {SCHEMA!r}, got {data.get('schema')!r}")
    return data


def main(argv: list[str]) -> int:
    """The child of :func:`run_golden`: ``BASE OUT`` -> every method's figures in ``OUT``."""
    base, out = (Path(a) for a in argv)
    atomic_write_text(out, json.dumps(run_methods(base)), overwrite=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
