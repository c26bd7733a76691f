"""Shared dataset folder pieces (spec/data/layout.md): list files and identity folders."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.data.layout import (
    CAM_DIR,
    PID_DIR,
    detect_dataset,
    identity_folders,
    read_list_file,
)
from reference.data.records import Problems
from reference.errors import VireidError

EXPECTED = "expected lines '<path> <label>'"
ONCE = "expected each image once"
IMAGE = "expected an image file"
NAMED = "unexpected entry; expected identity folders named <pid:04d>"
ONLY = "unexpected entry; expected only {} files in an identity folder"


def no_problem(rel: str, parts: tuple[str, ...]) -> str | None:
    return None


def read(root: Path, text: str | bytes | None, *, collect: bool = False, path_problem=no_problem):
    path = root / "list.txt"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text, encoding="utf-8")
    problems = Problems(collect=collect)
    lines = read_list_file(
        root, path, kind="list file", expected=EXPECTED, path_problem=path_problem,
        problems=problems,
    )  # fmt: skip
    return lines, problems.items


def touch(root: Path, rel: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(b"")


def test_lines_in_file_order_with_their_parts(tmp_path):
    touch(tmp_path, "Visible/1/b.bmp")
    touch(tmp_path, "Visible/2/a.bmp")
    lines, problems = read(tmp_path, "Visible/2/a.bmp 7\n\n   \nVisible/1/b.bmp 0\n")
    assert lines == [
        ("Visible/2/a.bmp", 7, ("Visible", "2", "a.bmp")),
        ("Visible/1/b.bmp", 0, ("Visible", "1", "b.bmp")),
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "{list}: missing list file; " + EXPECTED),
        (b"\xff\xfe 1\n", "{list}: cannot read list file ("),
        ("a/x.png\n", "{list}: line 1: 1 fields in 'a/x.png'; " + EXPECTED),
        ("\na/x.png 1 2\n", "{list}: line 2: 3 fields in 'a/x.png 1 2'; " + EXPECTED),
        ("a/x.png -1\n", "{list}: line 1: label '-1' is not a non-negative integer; " + EXPECTED),
        ("a/x.png ٣\n", "{list}: line 1: label '٣' is not a non-negative integer; " + EXPECTED),
        ("a/x.png 1\na/x.png 2\n", "{list}: line 2: 'a/x.png' is listed twice; " + ONCE),
        ("a/y.png 1\n", "{list}: line 1: names {root}/a/y.png, which is not there; " + IMAGE),
    ],
)  # fmt: skip
def test_each_problem_names_the_file_line_and_what_was_expected(tmp_path, text, message):
    touch(tmp_path, "a/x.png")
    expected = message.format(list=tmp_path / "list.txt", root=tmp_path)
    with pytest.raises(VireidError) as info:
        read(tmp_path, text)
    assert str(info.value).startswith(expected)
    if not message.endswith("("):
        assert str(info.value) == expected


def test_the_path_rule_is_the_callers(tmp_path):
    touch(tmp_path, "a/x.png")
    seen = []

    def rule(rel, parts):
        seen.append((rel, parts))
        return "is not under b/" if parts[0] != "b" else None

    with pytest.raises(VireidError) as info:
        read(tmp_path, "a/x.png 1\n", path_problem=rule)
    assert str(info.value) == (
        f"{tmp_path / 'list.txt'}: line 1: path 'a/x.png' is not under b/; {EXPECTED}"
    )
    assert seen == [("a/x.png", ("a", "x.png"))]


def test_collect_mode_reports_every_problem_and_keeps_the_good_lines(tmp_path):
    touch(tmp_path, "a/x.png")
    touch(tmp_path, "a/z.png")
    lines, problems = read(
        tmp_path, "a/x.png 1\nbad\na/x.png 1\na/y.png 2\na/z.png q\na/z.png 4\n", collect=True
    )
    assert lines == [("a/x.png", 1, ("a", "x.png")), ("a/z.png", 4, ("a", "z.png"))]
    assert [re.match(r".*: line (\d+):", p).group(1) for p in problems] == ["2", "3", "4", "5"]


names = st.text("abcxyz", min_size=1, max_size=5)


@given(
    st.lists(st.tuples(names, st.integers(0, 10**6)), max_size=8, unique_by=lambda e: e[0]),
    st.lists(st.integers(0, 2), min_size=9, max_size=9),
)
def test_every_listed_existing_file_comes_back_in_order(entries, blanks):
    """Oracle: the non-blank lines, in order, as ``(rel, int(label), parts)``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = ""
        for i, (name, label) in enumerate(entries):
            touch(root, f"d/{name}.png")
            text += "\n" * blanks[i] + f"d/{name}.png {label}\n"
        lines, problems = read(root, text + "\n" * blanks[-1])
    assert lines == [(f"d/{n}.png", label, ("d", f"{n}.png")) for n, label in entries]
    assert problems == []


def test_identity_folders_sorted_files_per_pid(tmp_path):
    for rel in ("0007/b.jpg", "0007/a.jpg", "0012/c.jpg"):
        touch(tmp_path, rel)
    assert identity_folders(tmp_path, Problems(collect=False), suffix=".jpg") == {
        7: ("a.jpg", "b.jpg"),
        12: ("c.jpg",),
    }


@pytest.mark.parametrize(
    ("make", "suffix", "message"),
    [
        (["12/a.jpg"], "", "{d}/12: " + NAMED),
        (["notes.txt"], "", "{d}/notes.txt: " + NAMED),
        (["0001/a.png"], ".jpg", "{d}/0001/a.png: " + ONLY.format(".jpg image")),
        (["0001/sub/a.jpg"], "", "{d}/0001/sub: " + ONLY.format("image")),
        (["0001/"], "", "{d}/0001: empty identity folder; expected at least one image"),
    ],
)  # fmt: skip
def test_identity_folder_problems(tmp_path, make, suffix, message):
    for rel in make:
        if rel.endswith("/"):
            (tmp_path / rel).mkdir(parents=True)
        else:
            touch(tmp_path, rel)
    with pytest.raises(VireidError) as info:
        identity_folders(tmp_path, Problems(collect=False), suffix=suffix)
    assert str(info.value) == message.format(d=tmp_path)


def test_identity_folders_collect_mode_keeps_the_rest(tmp_path):
    for rel in ("0001/a.jpg", "0001/b.txt", "0002/c.txt", "x/a.jpg"):
        touch(tmp_path, rel)
    problems = Problems(collect=True)
    assert identity_folders(tmp_path, problems, suffix=".jpg") == {1: ("a.jpg",)}
    assert problems.items == [
        f"{tmp_path / '0001/b.txt'}: unexpected entry; expected only .jpg image files in an "
        "identity folder",
        f"{tmp_path / '0002/c.txt'}: unexpected entry; expected only .jpg image files in an "
        "identity folder",
        f"{tmp_path / '0002'}: empty identity folder; expected at least one image",
        f"{tmp_path / 'x'}: unexpected entry; expected identity folders named <pid:04d>",
    ]


def test_folder_name_patterns():
    assert CAM_DIR.fullmatch("cam12").group(1) == "12"
    assert not CAM_DIR.fullmatch("Cam1") and not CAM_DIR.fullmatch("cam")
    assert PID_DIR.fullmatch("0042") and not PID_DIR.fullmatch("42")
    assert not PID_DIR.fullmatch("00042")


@pytest.mark.parametrize(
    ("folders", "dataset"),
    [
        (("cam1", "cam3", "exp"), "sysu"),
        (("Visible", "Thermal", "idx"), "regdb"),
        (("test_vis", "test_nir", "idx", "train_vis"), "llcm"),
    ],
)
def test_the_layout_tells_the_dataset(tmp_path, folders, dataset):
    for name in folders:
        (tmp_path / name).mkdir()
    assert detect_dataset(tmp_path) == dataset


def test_a_folder_of_no_layout_or_of_several_is_named(tmp_path):
    expected = (
        "expected a SYSU-MM01 folder (cam1..cam6, exp/), a RegDB folder (Visible/, Thermal/, "
        "idx/) or an LLCM folder (test_vis/, test_nir/, idx/)"
    )
    with pytest.raises(VireidError) as exc:
        detect_dataset(tmp_path)
    assert str(exc.value) == f"{tmp_path}: cannot tell the dataset (no layout found); {expected}"
    for name in ("Visible", "Thermal", "idx", "test_vis", "test_nir"):
        (tmp_path / name).mkdir()
    with pytest.raises(VireidError) as exc:
        detect_dataset(tmp_path)
    assert str(exc.value) == (
        f"{tmp_path}: cannot tell the dataset (several layouts found); {expected}"
    )
    missing = tmp_path / "nope"
    with pytest.raises(VireidError) as exc:
        detect_dataset(missing)
    assert str(exc.value) == f"{missing}: not a directory; {expected}"
