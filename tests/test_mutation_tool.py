"""The mutation runner (``tools/mutation.py``) on a tiny fixture package: it generates the
mutants it says it does, applies them, tells killed from surviving ones, and its test selection
(only the tests that run a mutant's lines) gives the same verdicts as running every test."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest
from tools import mutation
from tools.mutation import Layout, Mutant, Result, Runner

TINY = textwrap.dedent(
    '''
    """A docstring the runner leaves alone: 123."""

    LIMIT: int = 10


    def clamp(x: int, low: int = 0, high: int = LIMIT) -> int:
        """Clamp into [low, high]."""
        if x < low:
            return low
        if x > high:
            return high
        return x


    def check(n: int) -> int:
        if n < 0:
            raise ValueError(f"negative: {n - 1}")
        return n


    def double(x: int) -> int:
        return x * 2


    def count(n: int) -> int:
        i = 0
        while i < n:
            i += 1
        return i


    def untouched(x: int) -> int:
        return x + 1  # pragma: no mutate


    def flags(a: bool, b: bool, xs: list) -> bool:
        return (a and not b) or xs[1:] == [] and -1 in xs


    def table(n: int) -> list:
        return [i * i for i in range(n)]


    def scale(x: int) -> int:
        return x * 3


    def half(x: int) -> int:
        return x // 2


    HALF = half(8)
    '''
)
TEST_TINY = textwrap.dedent(
    """
    import pytest

    from pkg.area.tiny import check, clamp, count, half, table


    def test_clamp():
        assert clamp(-1) == 0
        assert clamp(11) == 10
        assert clamp(5) == 5


    def test_check():
        assert check(3) == 3
        with pytest.raises(ValueError, match="negative"):
            check(-1)


    def test_count():
        assert count(3) == 3


    @pytest.fixture(scope="module")
    def squares():
        return table(4)


    def test_squares_sum(squares):
        assert sum(squares) == 14


    def test_squares_last(squares):
        assert squares[-1] == 9


    def test_half():
        assert half(4) == 2
    """
)
# Two examples sharing a namespace: the first runs scale, only the second checks its value.
SPEC_TINY = (
    "```python\nfrom pkg.area.tiny import scale\n\ny = scale(2)\n```\n\n"
    "```python\nassert y == 6\n```\n"
)
SPEC_CONFTEST = (
    "from sybil import Sybil\nfrom sybil.parsers.markdown import PythonCodeBlockParser\n\n"
    'pytest_collect_file = Sybil(parsers=[PythonCodeBlockParser()], patterns=["*.md"]).pytest()\n'
)
USER = "from pkg.area.tiny import double\n\n\ndef quadruple(x):\n    return double(double(x))\n"
TEST_USER = (
    "from pkg.area.user import quadruple\n\n\n"
    "def test_quadruple():\n    assert quadruple(3) == 12\n"
)


@pytest.fixture
def fixture_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    src = tmp_path / "src" / "pkg"
    (src / "area").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "area" / "__init__.py").write_text("")
    (src / "area" / "tiny.py").write_text(TINY)
    (src / "area" / "user.py").write_text(USER)
    (tmp_path / "tests" / "area").mkdir(parents=True)
    (tmp_path / "tests" / "area" / "test_tiny.py").write_text(TEST_TINY)
    (tmp_path / "tests" / "area" / "test_user.py").write_text(TEST_USER)
    (tmp_path / "spec" / "area").mkdir(parents=True)
    (tmp_path / "spec" / "conftest.py").write_text(SPEC_CONFTEST)
    (tmp_path / "spec" / "area" / "tiny.md").write_text(SPEC_TINY)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    return Layout(
        root=tmp_path,
        package="pkg",
        src=src,
        tests=tmp_path / "tests",
        spec=tmp_path / "spec",
        pytest_args=("-p", "no:cacheprovider", "-p", "no:randomly"),
    )


def _by_change(mutants: list[Mutant]) -> dict[tuple[str, str], Mutant]:
    return {(m.before, m.after): m for m in mutants}


def test_operators_and_what_is_left_alone() -> None:
    mutants = mutation.mutants_of(TINY, "area/tiny.py")
    changes = _by_change(mutants)
    assert ("x < low", "x <= low") in changes
    assert ("x * 2", "x / 2") in changes
    assert ("i += 1", "i -= 1") in changes
    assert ("not b", "b") in changes
    assert ("-1", "1") in changes
    assert ("a and (not b)", "a or not b") in changes
    assert ("1:", "1 + 1:") in changes  # the slice of xs[1:]
    assert ("return low", "return None") in changes
    assert ("0", "1") in changes  # the default argument low=0, among others
    raise_change = [m for m in mutants if m.operator == "raise"]
    assert [(m.before, m.after) for m in raise_change] == [
        ("raise ValueError(f'negative: {n - 1}')", "pass")
    ]
    lines = {m.line for m in mutants}
    assert 2 not in lines  # the docstring
    assert ("10", "11") in changes  # LIMIT: int = 10 (its annotation is not mutated)
    assert not any("n - 1" in m.before and m.operator == "binop" for m in mutants)  # the message
    assert not any(m.line == 34 for m in mutants)  # pragma: no mutate
    assert {m.operator for m in mutants} <= set(mutation.OPERATORS)
    assert len({m.id for m in mutants}) == len(mutants)


def test_ids_are_stable_when_the_file_changes_elsewhere() -> None:
    before = mutation.mutants_of(TINY, "area/tiny.py")
    edited = TINY.replace("LIMIT: int = 10\n", "LIMIT: int = 10\nOTHER = 3\n\n")
    after = mutation.mutants_of(edited, "area/tiny.py")
    assert {m.id for m in before} < {m.id for m in after}
    moved = {m.id: m.line for m in after}
    assert all(moved[m.id] >= m.line for m in before)
    assert mutation.mutants_of(TINY, "area/tiny.py") == before  # deterministic


def test_mutate_changes_behaviour_of_that_node_only() -> None:
    mutants = mutation.mutants_of(TINY, "area/tiny.py")
    target = _by_change(mutants)[("x * 2", "x / 2")]
    tree = mutation.mutate(TINY, target.index)
    namespace: dict = {}
    exec(compile(tree, "tiny.py", "exec"), namespace)
    assert namespace["double"](3) == 1.5
    assert namespace["clamp"](11) == 10
    assert ast.unparse(tree).count("x / 2") == 1


@pytest.mark.parametrize("select", [True, False], ids=["selected", "own-then-wider"])
def test_runner_kills_detects_survivors_and_uses_the_wider_round(
    fixture_layout: Layout, select: bool
) -> None:
    if select:
        pytest.importorskip("coverage", reason="test selection records lines with coverage")
    mutants = mutation.select(fixture_layout, ["area"], ["tiny"], None)
    changes = _by_change(mutants)
    chosen = {
        "raise": changes[("raise ValueError(f'negative: {n - 1}')", "pass")],
        "survivor": changes[("n < 0", "n <= 0")],
        "wider": changes[("x * 2", "x / 2")],
        "equivalent": changes[("x < low", "x <= low")],
    }
    runner = Runner(fixture_layout, 20, 60, progress=False, select=select)
    equivalent = {chosen["equivalent"].id: "equivalent"}  # clamp(low) is low either way
    results = runner.run(list(chosen.values()), equivalent)
    status = {name: r.status for name, r in zip(chosen, results, strict=True)}
    assert status == {
        "raise": "killed",
        "survivor": "survived",
        "wider": "killed",  # test_tiny does not call double; test_user does, in the wider round
        "equivalent": "equivalent",
    }
    assert fixture_layout.dependants("area", "tiny") == ["user"]
    text, any_left = mutation.report(results, 1.0, [])
    assert any_left
    assert "area               4      1       0       2        1   66.7%" in text
    assert f"id = {chosen['survivor'].id}" in text
    assert "area/tiny.py:17: [compare] n < 0  ->  n <= 0" in text


def test_a_hanging_mutant_is_stopped_and_counts_as_killed(fixture_layout: Layout) -> None:
    mutants = mutation.select(fixture_layout, ["area"], ["tiny"], None)
    loop = _by_change(mutants)[("i += 1", "i -= 1")]
    runner = Runner(layout=fixture_layout, timeout_factor=1, timeout_min=4, progress=False)
    runner.select = importlib.util.find_spec("coverage") is not None
    [result] = runner.run([loop], {})
    assert result.status == "timeout"
    assert result.seconds < 30


def test_cache_skips_killed_mutants_until_the_source_changes(
    fixture_layout: Layout, tmp_path: Path
) -> None:
    mutants = mutation.select(fixture_layout, ["area"], ["tiny"], None)
    killed = _by_change(mutants)[("return low", "return None")]
    cache = tmp_path / "cache.json"
    runner = Runner(fixture_layout, timeout_factor=20, timeout_min=60, cache_path=cache)
    runner.progress = False
    assert [r.status for r in runner.run([killed], {})] == ["killed"]
    assert [r.status for r in runner.run([killed], {})] == ["cached"]
    tiny = fixture_layout.src / "area" / "tiny.py"
    tiny.write_text(tiny.read_text() + "\n# edited\n")
    assert [r.status for r in runner.run([killed], {})] == ["killed"]


def test_sample_is_repeatable_and_a_subset(fixture_layout: Layout) -> None:
    every = mutation.select(fixture_layout, ["area"], None, None)
    first = mutation.select(fixture_layout, ["area"], None, 5, seed=1)
    assert first == mutation.select(fixture_layout, ["area"], None, 5, seed=1)
    assert len(first) == 5 and set(first) <= set(every)
    assert {m.module for m in every} == {"tiny", "user"}


def test_equivalent_list_needs_a_reason(tmp_path: Path) -> None:
    listed = tmp_path / "eq.toml"
    listed.write_text('[[mutant]]\nid = "a/b.py:f:0123abcd"\nreason = "dead branch"\n')
    assert mutation.load_equivalent(listed) == {"a/b.py:f:0123abcd": "dead branch"}
    listed.write_text(
        '[[mutant]]\nid = "a/b.py:f:0123abcd"\nreason = "dead branch"\n'
        '[[mutant]]\nid = "a/b.py:g:0123abcd"\nkind = "device"\nreason = "two devices"\n'
    )
    assert mutation.load_equivalent(listed) == {"a/b.py:f:0123abcd": "dead branch"}
    assert mutation.load_equivalent(listed, "device") == {"a/b.py:g:0123abcd": "two devices"}
    listed.write_text('[[mutant]]\nid = "a/b.py:f:0123abcd"\n')
    with pytest.raises(SystemExit, match=r"mutant 'a/b\.py:f:0123abcd' has no reason"):
        mutation.load_equivalent(listed)


def test_checked_in_equivalent_list_is_well_formed() -> None:
    # Entries whose code was since rewritten are reported by the runner ("matching no mutant"),
    # not failed here: another branch's refactor must not break the suite.
    path = mutation.ROOT / "tools" / "mutation_equivalent.toml"
    listed = mutation.load_equivalent(path) | mutation.load_equivalent(path, "device")
    assert listed
    for mutant_id, reason in listed.items():
        file, function, digest = mutant_id.split(":")
        assert (Layout().src / file).is_file(), mutant_id
        assert function and len(digest) == 8 and int(digest, 16) >= 0, mutant_id
        assert len(reason) > 40, mutant_id


def test_result_statuses_count_in_the_score() -> None:
    m = Mutant("area/x.py:f:00000000", "area/x.py", 0, 3, "constant", "0", "1")
    statuses = ("killed", "timeout", "cached", "survived", "equivalent", "device-only")
    results = [Result(m, s) for s in statuses]
    text, any_left = mutation.report(results, 2.0, ["area/x.py:g:deadbeef"])
    assert "area               6      1       1       3        1   75.0%" in text
    assert "run time 2s" in text
    assert "area/x.py:g:deadbeef" in text
    assert any_left
    assert sys.modules["tools.mutation"] is mutation


def test_where_a_mutant_runs() -> None:
    mutants = mutation.mutants_of(TINY, "area/tiny.py")
    changes = _by_change(mutants)
    assert changes[("x * 2", "x / 2")].lines == (23,)
    assert changes[("x < low", "x <= low")].lines == (9,)  # the if's test
    assert changes[("raise ValueError(f'negative: {n - 1}')", "pass")].lines == (18,)
    assert changes[("i * i", "i / i")].lines == (42,)  # inside a comprehension
    # At import time (no lines): a module constant and a default argument; `i = 0` is not.
    assert changes[("10", "11")].lines == ()
    zeros = sorted(m.lines for m in mutants if (m.before, m.after) == ("0", "1"))
    assert zeros == [(), (17,), (27,)]  # low=0; n < 0; i = 0


def test_selection_order_is_fastest_first_with_each_document_whole() -> None:
    lines = mutation.LineMap(
        files=["t.py", "d.md"],
        tests={
            "t.py::slow": frozenset({1}),
            "t.py::fast": frozenset({1, 2}),
            "t.py::other": frozenset({3}),
            "d.md::line:1,column:1": frozenset({1}),
            "d.md::line:9,column:1": frozenset(),
        },
        seconds={
            "t.py::slow": 2.0,
            "t.py::fast": 1.0,
            "t.py::other": 0.1,
            "d.md::line:1,column:1": 0.3,
            "d.md::line:9,column:1": 0.2,
        },
        outside=frozenset({7}),
        collect=0.5,
    )
    assert lines.covering((1,)) == [
        "d.md::line:1,column:1",  # the document: 0.5 s in all, and both of its examples
        "d.md::line:9,column:1",
        "t.py::fast",
        "t.py::slow",
    ]
    assert lines.covering((1,), kills={"t.py::slow": 2, "t.py::other": 5}) == [
        "t.py::slow",  # it killed mutants of the module before: tried first
        "d.md::line:1,column:1",
        "d.md::line:9,column:1",
        "t.py::fast",
    ]
    assert lines.covering((3, 4)) == ["t.py::other"]
    assert lines.covering((5,)) == []
    assert mutation.LineMap.from_json(json.loads(json.dumps(lines.to_json()))) == lines


def test_line_map_of_the_unmutated_tests(fixture_layout: Layout) -> None:
    pytest.importorskip("coverage", reason="test selection records lines with coverage")
    runner = Runner(fixture_layout, progress=False)
    lines = runner.line_map("area/tiny.py")
    assert {4, 7, 16, 22, 41} <= lines.outside  # the constant and the def lines: at import
    assert not {9, 23, 42, 46} & lines.outside
    assert {50, 53} <= lines.outside  # half() runs at import too (HALF = half(8))
    assert lines.covering((50,)) == ["tests/area/test_tiny.py::test_half"]
    assert lines.covering((23,)) == ["tests/area/test_user.py::test_quadruple"]  # a dependant
    # A module-scoped fixture runs table() once, in the first test's setup: both tests use it.
    assert set(lines.covering((42,))) == {
        "tests/area/test_tiny.py::test_squares_sum",
        "tests/area/test_tiny.py::test_squares_last",
    }
    spec = lines.covering((46,))  # scale() runs in the first example only; the doc runs whole
    assert len(spec) == 2 and all(n.startswith("spec/area/tiny.md::") for n in spec)
    assert "tests/area/test_tiny.py::test_clamp" in lines.covering((9,))
    assert lines.covering((38,)) == []  # flags(): no test calls it
    assert set(lines.seconds) == set(lines.tests) and lines.collect > 0
    assert lines.files == [
        "spec/area/tiny.md",
        "tests/area/test_tiny.py",
        "tests/area/test_user.py",
    ]


def test_line_map_of_a_module_imported_only_inside_a_test(fixture_layout: Layout) -> None:
    # as cli.py imports an area's commands when a command runs: no line of the module runs
    # outside a test, and that is not the recording failing
    pytest.importorskip("coverage", reason="test selection records lines with coverage")
    (fixture_layout.src / "area" / "lazy.py").write_text("def triple(x):\n    return x * 3\n")
    (fixture_layout.tests / "area" / "test_lazy.py").write_text(
        "def test_triple():\n    from pkg.area.lazy import triple\n\n    assert triple(2) == 6\n"
    )
    lines = Runner(fixture_layout, progress=False).line_map("area/lazy.py")
    assert not lines.outside
    assert lines.covering((2,)) == ["tests/area/test_lazy.py::test_triple"]


def test_selected_runs(fixture_layout: Layout) -> None:
    pytest.importorskip("coverage", reason="test selection records lines with coverage")
    changes = _by_change(mutation.select(fixture_layout, ["area"], ["tiny"], None))
    chosen = {
        "document": changes[("x * 3", "x / 3")],  # only the document's second example sees it
        "fixture": changes[("i * i", "i / i")],  # 0 / 0 in the module fixture's setup
        "uncovered": changes[("a and (not b)", "a or not b")],
        "import time": changes[("10", "11")],  # clamp(11) == 11 then
        "also at import": changes[("x // 2", "x * 2")],  # HALF = half(8) runs it at import
    }
    runner = Runner(fixture_layout, 20, 60, progress=False)
    results = runner.run(list(chosen.values()), {})
    seen = {name: (r.status, r.note) for name, r in zip(chosen, results, strict=True)}
    assert seen == {
        "document": ("killed", "2 tests"),
        "fixture": ("killed", "2 tests"),
        "uncovered": ("survived", "no test runs it"),
        "import time": ("killed", "own + dependants"),
        "also at import": ("killed", "1 tests"),  # its covering test first: it kills
    }
    assert results[2].seconds == 0.0
    killers = runner._kills["area/tiny.py"]  # tried first on the module's next mutants
    assert sum(killers.values()) == 3
    assert any(n.startswith("spec/area/tiny.md::") for n in killers)


def test_a_selected_test_that_is_not_collected_is_an_error(fixture_layout: Layout) -> None:
    run = mutation.run_pytest_forked
    args = ["-q", "tests/area/test_tiny.py"]
    select = mutation._Select(["tests/area/test_tiny.py::test_count", "tests/area/nope.py::x"])
    assert run(args, 60, cwd=fixture_layout.root, plugins=(select,))[0] == "error"
    select = mutation._Select(["tests/area/test_tiny.py::test_count"])
    assert run(args, 60, cwd=fixture_layout.root, plugins=(select,))[0] == "passed"


def _verdicts(results: list[Result]) -> dict[str, str]:
    return {r.mutant.id: "killed" if r.status == "timeout" else r.status for r in results}


def test_both_ways_agree_on_the_fixture_package(fixture_layout: Layout) -> None:
    pytest.importorskip("coverage", reason="test selection records lines with coverage")
    changes = _by_change(mutation.select(fixture_layout, ["area"], ["tiny"], None))
    chosen = [
        changes[key]
        for key in [
            ("x > high", "x >= high"),  # survives: clamp(10) is never asked
            ("return high", "return None"),  # the own tests kill it
            ("x * 2", "x / 2"),  # only the dependant's test sees it
            ("x * 3", "x / 3"),  # only the document's second example checks it
            ("i * i", "i / i"),  # in a module-scoped fixture
            ("a and (not b)", "a or not b"),  # no test runs it
            ("10", "11"),  # at import time
        ]
    ]
    selected = Runner(fixture_layout, 20, 60, progress=False).run(chosen, {})
    every = Runner(fixture_layout, 20, 60, progress=False, select=False).run(chosen, {})
    assert _verdicts(selected) == _verdicts(every)
    assert [r.status for r in selected] == [
        "survived",
        "killed",
        "killed",
        "killed",
        "killed",
        "survived",
        "killed",
    ]


class _OwnTestsOnly(Layout):
    def wider_tests(self, area: str, module: str) -> list[Path]:
        return []


_REAL_MODULE_BOTH_WAYS = """
import json
from hypothesis import settings
from tools import mutation
from tools.mutation import Runner
from tests.test_mutation_tool import _OwnTestsOnly, _verdicts
mutation.preload()
# the forked children inherit this profile: the module's property tests with a few examples
# (derandomized, so both ways see the same draws), which is not what is compared
settings.register_profile("both-ways", derandomize=True, max_examples=5, deadline=None)
args = ("-p", "no:cacheprovider", "--hypothesis-profile", "both-ways")
layout = _OwnTestsOnly(pytest_args=args)
mutants = mutation.select(layout, ["losses"], ["mml"], None)
selected = Runner(layout, progress=False).run(mutants, {})
every = Runner(layout, progress=False, select=False).run(mutants, {})
print(json.dumps({
    "mutants": len(mutants),
    "selected": sorted(map(list, _verdicts(selected).items())),
    "every": sorted(map(list, _verdicts(every).items())),
    "notes": sorted({r.note for r in selected}),
}))
"""


@pytest.mark.slow  # the module's own tests, once with coverage, then 6 mutants both ways
def test_both_ways_agree_on_a_real_module() -> None:
    # in a fresh interpreter: a pytest-xdist worker that already ran other files holds the real
    # module and its dependants imported, and the recording child then saw no line of it
    pytest.importorskip("coverage", reason="test selection records lines with coverage")
    import os
    import subprocess

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "src")])}
    env.pop("PYTEST_XDIST_WORKER", None)
    done = subprocess.run(
        [sys.executable, "-c", _REAL_MODULE_BOTH_WAYS],
        cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["mutants"] >= 5
    assert got["selected"] == got["every"]
    assert "own + dependants" in got["notes"]  # margin and soft_margin defaults
    assert any(note.endswith(" tests") for note in got["notes"])
