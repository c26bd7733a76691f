"""The published tables: schema, loader, and every figure of papers.md read back from the CSVs.

The papers.md test parses the document's tables and figure lists itself (independently of how the
CSV files were written) and checks, both ways, that the CSV files hold exactly those figures.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from reference.errors import VireidError
from reference.results import published
from tests.results.shared import PAPERS, ROOT, needs_papers

FOLDER = ROOT / "results" / "published"
SOURCES = ("agw_repo", "hctri", "llcm", "luckydc_repo", "method_a", "method_b")


def test_the_loader_finds_the_source_tree_folder_and_every_source():
    assert published.published_dir() == FOLDER
    assert published.sources() == SOURCES


def test_the_tables_ship_as_package_data_through_one_link():
    # a wheel carries src/reference/results/published (a link to results/published, so there is
    # one copy of the tables): the loader's fallback when no source tree is around
    shipped = ROOT / "src" / "reference" / "results" / "published"
    assert shipped.is_symlink() and shipped.resolve() == (ROOT / "results" / "published").resolve()
    names = sorted(p.name for p in shipped.glob("*.csv"))
    assert names == [f"{s}.csv" for s in published.sources()]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"reference.results" = ["published/*.csv"]' in pyproject


def test_every_file_follows_the_schema():
    for path in sorted(FOLDER.glob("*.csv")):
        text = path.read_text(encoding="utf-8")
        assert text.splitlines()[0] == ",".join(published.COLUMNS), path
        assert text.endswith("\n") and "\r" not in text, path
        frame = published.load_source(path.stem)
        assert frame["value"].dtype == "float64"
        assert (frame["source"] == path.stem).all()
        assert set(frame["metric"]) <= set(published.METRICS)


def test_load_published_concatenates_every_source_with_unique_keys():
    table = published.load_published()
    assert list(table.columns) == list(published.COLUMNS)
    assert set(table["source"]) == set(SOURCES)
    assert not table.duplicated(list(published.KEY)).any()
    assert len(table) == sum(len(published.load_source(s)) for s in SOURCES)


def test_derived_rows_are_marked_and_are_method_a_minus_its_gain():
    table = published.load_source("method_a")
    derived = table[published.is_derived(table)]
    assert set(derived["method"]) == {"baseline"}
    a = table[table["method"] == "Method A"].set_index("metric")["value"]
    b = derived.set_index("metric")["value"]
    assert b["R1"] == pytest.approx(a["R1"] - 3.4)
    assert b["mAP"] == pytest.approx(a["mAP"] - 3.61)
    # nothing else in any table is derived
    everything = published.load_published()
    assert published.is_derived(everything).sum() == 2
    assert not published.is_reranked(everything).any()


def test_select_matches_method_names_case_and_punctuation_blind():
    rows = published.select("method_a:method-a")
    assert set(rows["method"]) == {"Method A"}
    assert len(published.select("method_b:bdf")) == 12  # 8 SYSU-MM01 + 4 RegDB figures


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("method_b", "--against: expected SOURCE:METHOD (e.g. method_b:BDF), got 'method_b'"),
        ("nosuch:BDF", "no such published table; sources: agw_repo, hctri"),
        ("method_b:XYZ", "--against: method_b has no method 'XYZ'; it has: AlignGAN, BDF"),
    ],
)
def test_select_bad_reference(reference, message):
    with pytest.raises(VireidError) as info:
        published.select(reference)
    assert message in str(info.value)


def _frame(**change) -> pd.DataFrame:
    row = dict(
        method="M", source="s", venue="", dataset="sysu", mode="all", shots="1", draw="agw",
        direction="i2v", metric="R1", value="50.0", note="",
    )  # fmt: skip
    row.update(change)
    return pd.DataFrame([row], columns=list(published.COLUMNS))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dataset": "market"}, "t.csv: row 1: dataset: expected one of ['llcm', 'regdb', 'sysu']"),
        ({"mode": "outdoor"}, "t.csv: row 1: mode: expected one of ['all', 'indoor'] for sysu"),
        ({"dataset": "regdb", "direction": "v2t"}, "row 1: mode: expected one of [''] for regdb"),
        ({"metric": "R2"}, "row 1: metric: expected one of ['R1', 'R5', 'R10', 'R20', 'mAP'"),
        ({"value": "5O.0"}, "row 1: value: expected a number in percent, got '5O.0'"),
        ({"value": "150"}, "row 1: value: expected a percentage in [0, 100], got 150"),
        ({"source": "other"}, "row 1: source: expected 's' (the file name), got 'other'"),
        ({"method": ""}, "row 1: method: expected a name, got an empty cell"),
    ],
)
def test_validate_names_the_row_and_column(change, message):
    with pytest.raises(VireidError) as info:
        published.validate(_frame(**change), "t.csv", source="s")
    assert message in str(info.value)


def test_validate_rejects_other_columns_and_duplicates():
    with pytest.raises(VireidError, match=r"t.csv: columns \['method'"):
        published.validate(_frame().drop(columns=["note"]), "t.csv")
    twice = pd.concat([_frame(), _frame(value="51")], ignore_index=True)
    with pytest.raises(VireidError, match=r"t\.csv: two rows for the same figure"):
        published.validate(twice, "t.csv")


def test_published_dir_env_override_and_missing(tmp_path, monkeypatch):
    (tmp_path / "x.csv").write_text(",".join(published.COLUMNS) + "\n")
    monkeypatch.setenv("VIREID_PUBLISHED", str(tmp_path))
    assert published.published_dir() == tmp_path
    assert published.sources() == ("x",)
    with pytest.raises(VireidError, match=r"no published tables"):
        published.load_published(tmp_path / "none")


# ---------------------------------------------------------------------------------------------
# papers.md, parsed here
# ---------------------------------------------------------------------------------------------

Figure = tuple[str, str, str, str, str, str, str, str, float]  # source method dataset mode shots
# draw direction metric value


N = r"(\d+(?:\.\d+)?)"  # a number, without a sentence's full stop


def _num(text: str) -> float:
    return float(text.strip())


def parse_papers(text: str) -> list[Figure]:
    figures: list[Figure] = []
    flat = re.sub(r"\s*\n\s*", " ", text)  # figure lists wrap over lines

    # Method A: "all-search: Rank-1 74.0, mAP 70.51; +3.4 / +3.61 ... Rank-1 70.6, mAP 66.90"
    m = re.search(
        rf"SYSU-MM01 all-search: Rank-1 {N}, mAP {N}; \+{N} / \+{N} over their "
        rf"baseline, so the baseline is Rank-1 {N}, mAP {N}",
        flat,
    )
    assert m, "Method A's figures not found in papers.md"
    a = ("method_a", "sysu", "all", "unstated", "unstated", "i2v")
    figures += [
        (a[0], "Method A", *a[1:], "R1", _num(m[1])),
        (a[0], "Method A", *a[1:], "mAP", _num(m[2])),
        (a[0], "baseline", *a[1:], "R1", _num(m[5])),
        (a[0], "baseline", *a[1:], "mAP", _num(m[6])),
    ]
    assert _num(m[1]) - _num(m[3]) == pytest.approx(_num(m[5]))
    assert _num(m[2]) - _num(m[4]) == pytest.approx(_num(m[6]))

    # Method B's SYSU-MM01 table
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| method | all R1"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    assert head[1:] == [
        f"{mode} {met}" for mode in ("all", "indoor") for met in ("R1", "R10", "R20", "mAP")
    ]
    rows = 0
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("*").strip() for c in line.strip("|").split("|")]
        name = re.sub(r"\s*\(.*\)$", "", cells[0]).strip()
        name = "BDF" if name == "BDF" else name
        for label, cell in zip(head[1:], cells[1:], strict=True):
            mode, metric = label.split()
            if cell != "-":
                figures.append(
                    ("method_b", name, "sysu", mode, "1", "unstated", "i2v", metric, _num(cell))
                )
        rows += 1
    assert rows == 12

    # Method B's RegDB list
    m = re.search(r"RegDB visible-to-thermal \(R1 / R10 / R20 / mAP\): (.*?)\.(?: |$)", flat)
    assert m, "Method B's RegDB list not found"
    items = [item.strip().strip("*") for item in m[1].split(";")]
    assert len(items) == 11
    for item in items:
        name, values = item.rsplit(" ", 1)
        for metric, cell in zip(("R1", "R10", "R20", "mAP"), values.split("/"), strict=True):
            if cell != "-":
                figures.append(
                    ("method_b", name.strip("*"), "regdb", "", "", "", "v2t", metric, _num(cell))
                )

    # the predecessor's README line
    m = re.search(
        r"Predecessor \(HcTri\) results from its repository's README: SYSU-MM01 all-search "
        rf"R1 {N}, mAP {N}, mINP {N}; RegDB R1 {N}, mAP {N}, mINP {N}",
        flat,
    )
    assert m, "the predecessor's README figures not found"
    for i, metric in enumerate(("R1", "mAP", "mINP")):
        figures.append(("hctri", "HcTri", "sysu", "all", "1", "agw", "i2v", metric, _num(m[1 + i])))
        figures.append(("hctri", "HcTri", "regdb", "", "", "", "v2t", metric, _num(m[4 + i])))

    # the public repositories' README table
    start = next(i for i, line in enumerate(lines) if line.startswith("| method (repository) |"))
    repos = {
        "AGW": ("agw_repo", "AGW", "agw"),
        "CAJ": ("agw_repo", "CAJ", "agw"),
        "HcTri": ("hctri", "HcTri", "agw"),
        "a one-shot baseline": ("luckydc_repo", "one-shot baseline", "official"),
    }
    seen = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        key = next(k for k in repos if cells[0].startswith(k))
        seen.append(key)
        source, name, draw = repos[key]
        for cell, setting in zip(
            cells[1:],
            (("sysu", "all", "1", draw, "i2v"), ("regdb", "", "", "", "v2t")),
            strict=True,
        ):
            if cell == "-":
                continue
            for metric, value in zip(("R1", "mAP", "mINP"), cell.split("/"), strict=True):
                if value.strip() != "-":
                    figures.append((source, name, *setting, metric, _num(value)))
    assert sorted(seen) == sorted(repos)

    # LLCM's README figures
    m = re.search(
        r"README figures, R1 / mAP, infrared-to-visible \| visible-to-infrared: (.*?)\.(?: |$)",
        flat,
    )
    assert m, "LLCM's README figures not found"
    items = [item.strip() for item in m[1].split(";")]
    assert len(items) == 3
    for item in items:
        name, values = item.split(" ", 1)
        for direction, pair in zip(("i2v", "v2i"), values.split("|"), strict=True):
            for metric, value in zip(("R1", "mAP"), pair.split("/"), strict=True):
                figures.append(("llcm", name, "llcm", "", "", "", direction, metric, _num(value)))
    return figures


@needs_papers
def test_every_figure_of_papers_md_is_in_the_csv_files_and_nothing_else():
    expected = parse_papers(PAPERS.read_text(encoding="utf-8"))
    # the HcTri figures appear twice in papers.md (its README line and the repositories' table)
    unique = sorted(set(expected))
    keys = [f[:-1] for f in unique]
    assert len(keys) == len(set(keys)), "papers.md gives one figure two different values"
    table = published.load_published()
    got = {
        (r.source, r.method, r.dataset, r.mode, r.shots, r.draw, r.direction, r.metric): r.value
        for r in table.itertuples(index=False)
    }
    missing = [f for f in unique if f[:-1] not in got]
    assert not missing, f"figures of papers.md missing from the CSV files: {missing}"
    wrong = [(f, got[f[:-1]]) for f in unique if got[f[:-1]] != f[-1]]
    assert not wrong, f"figures that differ from papers.md (papers.md, CSV): {wrong}"
    extra = set(got) - set(keys)
    assert not extra, f"CSV figures not in papers.md: {sorted(extra)}"
    assert len(unique) == len(table) == 158


@needs_papers
def test_the_parser_sees_a_typo():
    text = PAPERS.read_text(encoding="utf-8").replace("| 33.26 | 79.04 |", "| 33.62 | 79.04 |")
    figures = {f[:-1]: f[-1] for f in parse_papers(text)}
    assert figures[("method_b", "MAC", "sysu", "all", "1", "unstated", "i2v", "R1")] == 33.62


def test_csv_values_keep_the_printed_digits():
    # the files keep the figures as printed ("66.90", "14.8"): read them as text
    text = Path(FOLDER / "method_a.csv").read_text(encoding="utf-8")
    assert ",mAP,66.90," in text and ",R1,74.0," in text


def test_a_directory_that_is_not_a_path_is_named():
    for load in (published.load_published, lambda d: published.load_source("x", d)):
        with pytest.raises(VireidError) as info:
            load(["tables"])
        assert str(info.value) == (
            "directory: expected a non-empty path (str or os.PathLike), got ['tables']"
        )


def test_a_source_that_is_a_folder_or_not_a_csv_file_is_named(tmp_path):
    (tmp_path / "good.csv").write_text(",".join(published.COLUMNS) + "\n")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(VireidError) as info:
        published.load_source("folder", tmp_path)
    assert str(info.value) == (
        f"{tmp_path / 'folder.csv'}: is a folder; expected a published table (a CSV file)"
    )
    (tmp_path / "quoted.csv").write_text('method,source\n"unclosed,x\n')
    with pytest.raises(VireidError) as info:
        published.load_source("quoted", tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'quoted.csv'}: cannot read as a CSV table: ")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(VireidError) as info:
        published.load_source("empty", tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'empty.csv'}: cannot read as a CSV table: ")
