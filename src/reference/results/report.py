"""Reports of runs against published rows: a Markdown table and a CMC curve plot (PNG).

Spec: ``spec/results/check.md`` (section "Reports").

For every protocol any run scored (a section each): one row per run with its mean figures and
95% intervals, then the published rows of the ``--against`` methods for that protocol (placed as
``compare.preferred`` places them: under the one protocol ``results check`` compares them
with). The plot has one panel per protocol, one CMC curve (mean over trials, ranks 1..20)
per run that scored it, and the published R1/R5/R10/R20 points as markers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from reference.fileio import atomic_open, atomic_write_text, check_writable
from reference.results.compare import preferred
from reference.results.published import METRICS, SETTINGS, is_derived, is_reranked
from reference.results.record import ProtocolResult, RunRecord, describe

#: panels in a row of the CMC plot: SYSU-MM01's four protocols of a draw share one row
PANELS_PER_ROW = 4
PANEL_INCHES = (5.0, 4.0)
DPI = 100
PUBLISHED_MARKERS = ("x", "^", "s", "D", "v", "P")  # black: the runs' curves use the colours
REPORT_FILE = "report.md"
PLOT_FILE = "cmc.png"

Runs = Sequence[tuple[str, RunRecord]]


def protocols_of(runs: Runs) -> dict[str, ProtocolResult]:
    """Every protocol any run scored, first occurrence order (key -> a representative result)."""
    out: dict[str, ProtocolResult] = {}
    for _, run in runs:
        for key, result in run.protocols.items():
            out.setdefault(key, result)
    return out


def published_for(
    protocol: ProtocolResult,
    published: pd.DataFrame | None,
    scored: Sequence[ProtocolResult] | None = None,
) -> pd.DataFrame:
    """The published rows compared with ``protocol``: those ``compare.preferred`` gives to it.

    ``scored``: every protocol the report shows (default: ``protocol`` alone). A row whose source
    leaves the shots or the draw unstated goes under the one protocol ``results check`` would
    compare it with (single-shot, the ``agw`` draw), not under every protocol it could fit.
    """
    if published is None or published.empty:
        return pd.DataFrame()
    scored = list(scored) if scored is not None else [protocol]
    reranked = is_reranked(published)
    keep = []
    for i, row in enumerate(published.itertuples(index=False)):
        wanted = {name: getattr(row, name) for name in SETTINGS}
        wanted["rerank"] = bool(reranked.iloc[i])
        chosen = preferred(scored, wanted)
        keep.append(chosen is not None and chosen.key == protocol.key)
    return published[keep]


def _cell(result: ProtocolResult, metric: str) -> str:
    mean = result.mean(metric)
    if mean is None:
        return "-"
    iv = result.interval(metric)
    text = f"{100 * mean:.2f}"
    return text if iv is None else f"{text} [{100 * iv[0]:.1f}, {100 * iv[1]:.1f}]"


def markdown_report(runs: Runs, published: pd.DataFrame | None = None) -> str:
    lines = ["# Results", ""]
    lines.append(
        "Figures in percent; runs show the mean over trials and [the 95% bootstrap interval "
        "over query identities]. Published rows: source:method; *derived* = computed from other "
        "published figures."
    )
    lines.append("")
    for name, run in runs:
        code = run.code.get("revision") or "unknown"
        dirty = " (dirty)" if run.code.get("dirty") else ""
        gpu = run.environment.get("gpu") or "no GPU"
        lines.append(f"- run {name} (`{run.run_id}`): code {code}{dirty}, {gpu}")
    shown = protocols_of(runs)
    for key, representative in shown.items():
        lines += ["", f"## {describe(representative.protocol)} (`{key}`)", ""]
        lines.append("| | " + " | ".join(METRICS) + " | trials |")
        lines.append("|---|" + "---|" * (len(METRICS) + 1))
        for name, run in runs:
            result = run.protocols.get(key)
            if result is None:
                continue
            trials = len(result.scores.get("trials", []))
            cells = " | ".join(_cell(result, m) for m in METRICS)
            lines.append(f"| run {name} | {cells} | {trials} |")
        rows = published_for(representative, published, list(shown.values()))
        if rows.empty:
            continue
        derived = is_derived(rows)
        for (source, method), group in rows.groupby(["source", "method"], sort=False):
            values = dict(zip(group["metric"], group["value"], strict=True))
            cells = " | ".join(f"{values[m]:.2f}" if m in values else "-" for m in METRICS)
            mark = " *derived*" if derived[group.index].any() else ""
            lines.append(f"| {source}:{method}{mark} | {cells} | |")
    return "\n".join(lines) + "\n"


def cmc_figure(runs: Runs, published: pd.DataFrame | None = None):
    """A matplotlib Figure (Agg): one panel per protocol, a curve per run, published points."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    protocols = protocols_of(runs)
    n = max(1, len(protocols))
    cols = min(n, PANELS_PER_ROW)
    rows = -(-n // cols)
    fig = Figure(figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows), dpi=DPI)
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    for spare in axes[n:]:  # the last row's empty places
        fig.delaxes(spare)
    for ax, (key, representative) in zip(axes, protocols.items(), strict=False):
        for name, run in runs:
            result = run.protocols.get(key)
            if result is None:
                continue
            cmc = result.cmc()
            ax.plot(range(1, len(cmc) + 1), [100 * v for v in cmc], label=f"run {name}")
        rows = published_for(representative, published, list(protocols.values()))
        groups = [] if rows.empty else rows.groupby(["source", "method"], sort=False)
        for i, ((source, method), group) in enumerate(groups):
            ranks = group[group["metric"].str.fullmatch(r"R\d+")]
            if ranks.empty:
                continue
            x = [int(m[1:]) for m in ranks["metric"]]
            marker = PUBLISHED_MARKERS[i % len(PUBLISHED_MARKERS)]
            ax.scatter(
                x,
                ranks["value"],
                marker=marker,
                color="black",
                zorder=3,
                label=f"{source}:{method}",
            )
        ax.set_title(describe(representative.protocol), fontsize=9)
        ax.set_xlabel("rank")
        ax.set_ylabel("matching rate (%)")
        ax.set_xlim(0.5, 20.5)
        ax.set_xticks([1, 5, 10, 15, 20])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def write_report(
    runs: Runs,
    published: pd.DataFrame | None,
    out_dir: str | os.PathLike[str],
    *,
    force: bool = False,
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``cmc.png`` into ``out_dir`` (atomically, replacing only with
    ``force``); both targets are checked before anything is written."""
    folder = Path(out_dir)
    report, plot = folder / REPORT_FILE, folder / PLOT_FILE
    check_writable(report, overwrite=force)
    check_writable(plot, overwrite=force)
    text = markdown_report(runs, published)
    fig = cmc_figure(runs, published)
    with atomic_open(plot, "wb", overwrite=force) as handle:
        fig.savefig(handle, format="png", dpi=DPI)
    atomic_write_text(report, text, overwrite=force)
    return report, plot
