"""The ``vireid model summary`` command (spec/models/summary.md): config precedence, the
``--pretrained`` report, bad config files."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.models import resnet50

from reference.cli import main
from reference.errors import VireidError
from reference.models.commands import summary_command


def test_pretrained_count_is_torchvision_keys_plus_the_second_streams_copies(tmp_path, capsys):
    state = resnet50().state_dict()
    torch.save(state, tmp_path / "w.pth")
    keys = [k for k in state if not k.startswith("fc.")]
    specific = [k for k in keys if k.split(".")[0] in ("conv1", "bn1", "layer1")]
    status = summary_command(
        config_file=None,
        overrides={"kind": "baseline", "num_classes": 3},
        pretrained=tmp_path / "w.pth",
        size="64x32",
    )
    assert status == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert f": {len(keys) + len(specific)} tensors copied" in line
    assert (len(keys), len(specific)) == (318, 66)


def test_flags_override_the_config_file(tmp_path, capsys):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"kind": "method_a", "num_classes": 7, "last_stride": 2}))
    summary_command(
        config_file=path, overrides={"last_stride": 1, "kind": None}, pretrained=None, size="96x48"
    )
    first = capsys.readouterr().out.splitlines()[0]
    assert first == (
        "model       method_a, ResNet-50, 7 classes, share_from=2, last_stride=1, input 96x48"
    )


def test_depth_flag_through_the_command_line(capsys):
    argv = ["model", "summary", "--kind", "baseline", "--depth", "18", "--size", "64x32"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "model       baseline, ResNet-18, 395 classes, share_from=2, last_stride=1, input 64x32"
    )
    # the last stage of a ResNet-18 gives 512 channels
    assert any(line.split()[:1] == ["layer4"] and "512 x 4 x 2" in line for line in lines)
    with pytest.raises(SystemExit) as info:  # argparse's usage error
        main(["model", "summary", "--kind", "baseline", "--depth", "101"])
    assert info.value.code == 2
    assert "argument --depth: invalid choice: 101" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "cannot read a JSON config (Expecting property name"),
        ("[1, 2]", "expected a JSON object of model fields"),
        ('{"kind": "baseline", "num_classes": 3, "stripes": 6}', "model: unknown field(s)"),
        ('{"kind": "baseline"}', "model: missing field(s) ['num_classes']"),
    ],
)
def test_bad_config_files_are_named(tmp_path, content, message):
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(VireidError) as info:
        summary_command(config_file=path, overrides={}, pretrained=None, size="96x48")
    text = str(info.value)
    assert message in text
    if not text.startswith("model:"):
        assert text.startswith(f"{path}: ")
