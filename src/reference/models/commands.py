"""The ``vireid model`` commands: the only code of the models area that prints.

Spec: ``spec/models/summary.md`` (section "Command line").
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from reference.datasets import SYSU_TRAINVAL_IDS
from reference.errors import VireidError
from reference.models.build import ModelConfig, build_model
from reference.models.pretrained import load_pretrained
from reference.models.summary import format_summary, parse_size, summarize

#: ``--num-classes`` when only ``--kind`` is given: SYSU-MM01's training identities.
DEFAULT_NUM_CLASSES = SYSU_TRAINVAL_IDS


def _read_config(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VireidError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VireidError(f"{path}: cannot read a JSON config ({exc})") from exc
    if not isinstance(values, dict):
        raise VireidError(f"{path}: expected a JSON object of model fields")
    return values


def summary_command(
    *,
    config_file: Path | None,
    overrides: dict[str, Any],
    pretrained: Path | None,
    size: str,
) -> int:
    """``vireid model summary``: flags in ``overrides`` (those given) win over the file; without
    a file, ``num_classes`` defaults to :data:`DEFAULT_NUM_CLASSES`."""
    height, width = parse_size(size)
    if config_file is None and overrides.get("kind") is None:
        raise VireidError("model summary: expected --kind or --config")
    values = _read_config(config_file) if config_file is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if config_file is None:
        values.setdefault("num_classes", DEFAULT_NUM_CLASSES)
    if pretrained is not None:
        values["pretrained"] = str(pretrained)
    config = ModelConfig.from_dict(values)
    model = build_model(replace(config, pretrained=None))
    if config.pretrained is None:
        note = f"none (random initialisation, init_seed={config.init_seed})"
    else:
        written = load_pretrained(model, config.pretrained)
        note = (
            f"{config.pretrained}: {len(written)} tensors copied into the backbone "
            "(specific stages once per stream; fc ignored)"
        )
    print(format_summary(config, summarize(model, height, width), note))
    return 0
