"""Loading the implementation under audit from a module or a file."""

from __future__ import annotations

import pytest

from reference.audit.target import Target, TargetFailure, load_target, target_failures
from reference.errors import VireidError
from tests.audit import wrong_eval, wrong_loss


def test_load_target_from_a_file_and_from_a_module(tmp_path):
    f = tmp_path / "their_eval.py"
    f.write_text("import helper\ndef evaluate(distmat, *a):\n    return helper.X\n")
    (tmp_path / "helper.py").write_text("X = 42\n")
    t = load_target(f"{f}:evaluate")
    assert t.name == "evaluate" and t.function(None) == 42
    m = load_target("tests.audit.wrong_eval:correct")
    assert m.function is wrong_eval.correct


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "target: expected 'package.module:function' or 'path/to/file.py:function', "
         "got 'no_colon'"),
        ("/nonexistent/x.py:f", "target: /nonexistent/x.py: no such file (from "
         "'/nonexistent/x.py:f')"),
        ("tests.audit.wrong_eval:nothing", "target: 'tests.audit.wrong_eval' has no attribute "
         "'nothing'"),
        ("no_such_module_xyz:f", "target: cannot import module 'no_such_module_xyz': "
         "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    ],
)  # fmt: skip
def test_bad_targets_are_named(spec, message):
    with pytest.raises(VireidError) as err:
        load_target(spec)
    assert str(err.value) == message


def test_a_folder_named_like_a_file_is_named_as_a_folder(tmp_path):
    folder = tmp_path / "repo.py"
    folder.mkdir()
    with pytest.raises(VireidError) as err:
        load_target(f"{folder}:evaluate")
    assert str(err.value) == (
        f"target: {folder}: is a folder; expected a Python file (from '{folder}:evaluate')"
    )


def test_a_class_is_built_without_arguments(tmp_path):
    f = tmp_path / "their_loss.py"
    f.write_text(
        "import torch\nclass TripletLoss(torch.nn.Module):\n"
        "    def forward(self, inputs, targets):\n        return inputs.sum()\n"
        "class Needs:\n    def __init__(self, margin):\n        pass\n"
    )
    t = load_target(f"{f}:TripletLoss")
    assert t.name == "TripletLoss" and [p.name for p in t.parameters()] == ["inputs", "targets"]
    with pytest.raises(VireidError) as err:
        load_target(f"{f}:Needs")
    assert str(err.value).startswith("target: class 'Needs' cannot be built without arguments")


def test_import_errors_of_the_file_are_named(tmp_path):
    f = tmp_path / "broken.py"
    f.write_text("import no_such_module_abc\n")
    with pytest.raises(VireidError) as err:
        load_target(f"{f}:x")
    assert str(err.value) == (
        f"target: importing {f} failed: ModuleNotFoundError: No module named 'no_such_module_abc'"
    )
    assert callable(wrong_loss.tri_correct)


def test_target_failures_names_what_the_target_raised():
    with pytest.raises(TargetFailure) as info, target_failures():
        {}["k"]
    assert str(info.value) == "KeyError: 'k'"
    assert isinstance(info.value.__cause__, KeyError)
    unusable = TargetFailure("returned None; expected a scalar tensor")
    with pytest.raises(TargetFailure) as again, target_failures():
        raise unusable
    assert again.value is unusable and again.value.__cause__ is None
    with target_failures():
        value = 3
    assert value == 3


def test_required_counts_the_positional_parameters_without_a_default():
    def f(a, b, /, c, d=1, *rest, e, f=2, **kw): ...

    class Loss:  # an nn.Module-like loss: called through __call__, defined by forward
        def __call__(self, *args):
            return self.forward(*args)

        def forward(self, x, y, tags=None): ...

    assert [q.name for q in Target("m:f", f, "f").required()] == ["a", "b", "c"]
    assert [q.name for q in Target("m:Loss", Loss(), "Loss").required()] == ["x", "y"]
    assert [q.name for q in Target("m:g", lambda *a, **k: 0, "g").required()] == []
