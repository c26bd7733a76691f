"""Reports: the Markdown table and the CMC plot of hand-made runs against published rows."""

from __future__ import annotations

import pytest
from PIL import Image

from reference.errors import VireidError
from reference.results import published
from reference.results.compare import check
from reference.results.report import (
    DPI,
    PANEL_INCHES,
    PANELS_PER_ROW,
    cmc_figure,
    markdown_report,
    write_report,
)
from tests.results.fakes import fake_record, fake_scores


@pytest.fixture(scope="module")
def runs():
    a = fake_record(fake_scores("sysu", r1=0.5, seed=1), fake_scores("regdb", r1=0.8, seed=2))
    b = fake_record(fake_scores("sysu", r1=0.45, seed=3))
    return [("a", a), ("b", b)]


def test_markdown_report_has_a_section_per_protocol_a_row_per_run_and_the_published_rows(runs):
    rows = published.select("method_b:BDF")
    text = markdown_report(runs, rows)
    assert "## SYSU-MM01 all-search single-shot agw draw (`sysu-all-1shot-agw`)" in text
    assert "## RegDB v2t (`regdb-v2t`)" in text
    sysu, regdb = text.split("## SYSU-MM01")[1].split("## RegDB")
    assert sysu.count("| run a |") == 1 and sysu.count("| run b |") == 1
    assert regdb.count("| run a |") == 1 and "| run b |" not in regdb
    r1 = 100 * runs[0][1].protocols["sysu-all-1shot-agw"].mean("R1")
    assert f"| run a | {r1:.2f} [" in sysu
    # BDF's unstated draw matches the agw protocol; its all-search row, not the indoor one
    assert "| method_b:BDF | 51.05 | - | 87.75 | 94.43 | 49.63 | - | |" in sysu
    assert "| method_b:BDF | 80.67 | - | 87.72 | 90.45 | 78.83 | - | |" in regdb
    derived = markdown_report(runs, published.select("method_a:baseline"))
    assert "| method_a:baseline *derived* | 70.60 |" in derived


def test_a_row_with_unstated_shots_goes_only_where_results_check_compares_it():
    # method_a:baseline states neither shots nor draw: results check compares it with the
    # single-shot agw protocol, so the report must not repeat it under the multi-shot one
    run = fake_record(fake_scores("sysu", shots=10, seed=4), fake_scores("sysu", shots=1, seed=5))
    rows = published.select("method_a:baseline")
    text = markdown_report([("a", run)], rows)
    multi, single = text.split("## SYSU-MM01")[1:]
    assert "multi-shot" in multi.splitlines()[0] and "single-shot" in single.splitlines()[0]
    assert "method_a:baseline" not in multi and "| method_a:baseline *derived* | 70.60 |" in single
    compared = check(run, rows, "method_a:baseline")
    assert {c.protocol for c in compared.comparisons} == {"sysu-all-1shot-agw"}
    fig = cmc_figure([("a", run)], rows)
    assert [len(ax.collections) for ax in fig.axes] == [0, 1]
    # with only the multi-shot protocol scored, the row goes there, as check would compare it
    alone = fake_record(fake_scores("sysu", shots=10, seed=4))
    assert "| method_a:baseline *derived* | 70.60 |" in markdown_report([("a", alone)], rows)


def test_cmc_figure_has_one_curve_per_run_and_the_published_points(runs):
    fig = cmc_figure(runs, published.select("method_b:BDF"))
    sysu, regdb = fig.axes
    assert [line.get_label() for line in sysu.get_lines()] == ["run a", "run b"]
    assert [line.get_label() for line in regdb.get_lines()] == ["run a"]
    points = sysu.collections[0].get_offsets()
    assert [tuple(p) for p in points] == [(1, 51.05), (10, 87.75), (20, 94.43)]
    cmc = runs[0][1].protocols["sysu-all-1shot-agw"].cmc()
    assert list(sysu.get_lines()[0].get_ydata()) == pytest.approx([100 * v for v in cmc])


def test_write_report_writes_a_png_of_the_expected_size_and_never_overwrites(runs, tmp_path):
    report, plot = write_report(runs, published.select("method_b:BDF"), tmp_path)
    assert report.read_text().startswith("# Results")
    with Image.open(plot) as image:
        image.load()
        assert image.format == "PNG"
        assert image.size == (2 * PANEL_INCHES[0] * DPI, PANEL_INCHES[1] * DPI)
    with pytest.raises(VireidError, match="file exists"):
        write_report(runs, None, tmp_path)
    write_report(runs[1:], None, tmp_path, force=True)
    with Image.open(plot) as image:
        assert image.size == (PANEL_INCHES[0] * DPI, PANEL_INCHES[1] * DPI)


def test_the_plot_wraps_after_four_panels(tmp_path):
    # a SYSU-MM01 reproduction with both draws (eight protocols) and an LLCM run (two): three
    # rows of four, four, two, instead of one row ten panels (5,000 pixels) wide
    sysu = [
        fake_scores("sysu", mode=mode, shots=shots, sampling=draw, seed=i)
        for i, (draw, mode, shots) in enumerate(
            (d, m, s) for d in ("agw", "official") for m in ("all", "indoor") for s in (1, 10)
        )
    ]
    llcm = [fake_scores("llcm", direction=d, seed=9) for d in ("i2v", "v2i")]
    runs = [("s", fake_record(*sysu)), ("l", fake_record(*llcm))]
    fig = cmc_figure(runs)
    assert len(fig.axes) == 10 and PANELS_PER_ROW == 4
    grid = [ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes]
    assert set(grid) == {(3, 4)}
    _, plot = write_report(runs, None, tmp_path)
    with Image.open(plot) as image:
        assert image.size == (4 * PANEL_INCHES[0] * DPI, 3 * PANEL_INCHES[1] * DPI)
