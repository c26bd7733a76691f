"""Tiny SynthVI datasets and tiny training configs shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference.data.synthvi import write_regdb, write_synthvi, write_sysu
from reference.training.config import TrainConfig, load_preset

#: images small enough that a ResNet step takes well under a second on one CPU core
TINY = (32, 16)
#: the engine does not depend on the backbone's depth (the models' tests cover every depth):
#: ResNet-18 builds, steps and checkpoints in well under half of ResNet-50's time
TINY_DEPTH = 18
#: Method A's six stripes need a feature map of 6 rows (16-fold downsampling): height 96
TINY_METHOD_A = (96, 32)


@pytest.fixture(scope="session")
def synth_roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("synthvi")
    return {
        "sysu": write_sysu(base / "sysu", ids=8, image_size=TINY),
        "regdb": write_regdb(base / "regdb", ids=6, image_size=TINY),
        "llcm": write_synthvi(base / "llcm", "llcm", ids=8, image_size=TINY).root,
    }


def tiny_config(
    preset: str, root: Path, *overrides: str, steps: int = 1, epochs: int = 1
) -> TrainConfig:
    """``preset`` with 2 ids x 2 images per modality, ``steps`` batches per epoch, tiny images,
    a ResNet-18, deterministic, quiet, a log row every step."""
    size = TINY_METHOD_A if preset.startswith("method_a") else TINY
    return load_preset(
        preset,
        [
            f"data.root='{root}'",
            f"model.depth={TINY_DEPTH}",
            "pipeline.p=2",
            "pipeline.k=2",
            f"pipeline.num_batches={steps}",
            f"pipeline.transform.size=[{size[0]}, {size[1]}]",
            f"run.epochs={epochs}",
            "run.log_every=1",
            "run.deterministic=true",
            "run.progress=false",
            "run.device='cpu'",
            "schedule.warmup_epochs=1",
            *overrides,
        ],
    )
