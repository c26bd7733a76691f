"""The ranking picture: queries beside their top-10 gallery images, true / false matches framed.

Spec: ``spec/results/check.md`` (section "Ranks").

SYSU-MM01 features file and dataset folder: the queries are every infrared test image, the
gallery is trial 0 of the chosen draw (``agw`` by default), single-shot, all-search; the camera
rule applies (camera-3 queries skip camera 2). Each query's gallery is ranked by distance; its
AP is the protocol's (``rank_metrics``). Of ``n`` queries shown, ``(n + 2) // 3`` are the worst
(lowest AP), ``(n + 1) // 3`` the best (highest AP, then earliest first hit) and ``n // 3`` drawn
at random (seeded) from the others. A row: the query, then its ten nearest gallery images, each
framed green (same identity) or red, with ``cam<c>`` and the distance under it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reference.data.sysu import scan_sysu
from reference.errors import VireidError
from reference.evaluation.distance import pairwise_distance
from reference.evaluation.features import FeatureSet
from reference.evaluation.metrics import exclusion_mask, rank_metrics
from reference.evaluation.sysu import agw_gallery, folders_of, query_rows
from reference.fileio import atomic_open, check_writable

TOP = 10
CELL_INCHES = (1.0, 2.1)  # width, height of one image cell
DPI = 100
TRUE_COLOUR, FALSE_COLOUR = "#1a9850", "#d73027"


@dataclass(frozen=True)
class RankedQuery:
    """One row of the picture."""

    kind: str  # "worst" | "best" | "random"
    query: int  # row of the features file
    ap: float
    gallery: tuple[int, ...]  # rows of the features file, nearest first
    distances: tuple[float, ...]
    matches: tuple[bool, ...]


def image_paths(fs: FeatureSet, root: str | os.PathLike[str]) -> list[Path]:
    """The image of each row of a SYSU-MM01 features file in the dataset folder ``root``."""
    layout = scan_sysu(root)
    paths = []
    for i, (cam, pid, frame) in enumerate(zip(fs.camids, fs.pids, fs.frames, strict=True)):
        names = layout.files.get((int(cam), int(pid)), ())
        if frame >= len(names):
            raise VireidError(
                f"features row {i}: frame {frame} of cam{cam}/{pid:04d}, but {root} has "
                f"{len(names)} images there: the features file does not belong to this dataset"
            )
        paths.append(Path(root) / f"cam{cam}" / f"{pid:04d}" / names[int(frame)])
    return paths


def rank_queries(
    fs: FeatureSet, *, n_queries: int = 6, seed: int = 0, metric: str = "euclidean"
) -> list[RankedQuery]:
    """Pick and rank ``n_queries`` queries (see the module docstring)."""
    if isinstance(n_queries, bool) or not isinstance(n_queries, int) or n_queries < 1:
        raise VireidError(f"--queries: expected a positive integer, got {n_queries!r}")
    folders = folders_of(fs)
    queries = query_rows(folders)
    gallery = agw_gallery(folders, mode="all", shots=1, trial=0)
    if queries.size == 0 or gallery.size == 0:
        raise VireidError("features: no infrared query or no visible gallery image")
    dist = pairwise_distance(fs.features[queries], fs.features[gallery], metric)
    q_pids, g_pids = fs.pids[queries], fs.pids[gallery]
    q_cams, g_cams = fs.camids[queries], fs.camids[gallery]
    metrics = rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, exclusion="sysu")
    assert metrics.queries is not None
    valid = np.flatnonzero(metrics.queries.valid)
    ap = metrics.queries.ap
    by_ap = valid[np.lexsort((metrics.queries.first_hit[valid], -ap[valid]))]  # best first
    n_worst = min((n_queries + 2) // 3, valid.size)
    n_best = min((n_queries + 1) // 3, valid.size - n_worst)
    worst = [int(i) for i in by_ap[::-1][:n_worst]]
    best = [int(i) for i in by_ap[:n_best]]
    rest = np.setdiff1d(valid, worst + best)
    rng = np.random.default_rng(seed)
    n_random = min(n_queries - n_worst - n_best, rest.size)
    random_pick = [int(i) for i in rng.choice(rest, size=n_random, replace=False)]
    skip = exclusion_mask(q_pids, g_pids, q_cams, g_cams, "sysu").numpy()
    d = dist.double().numpy()
    out = []
    for kind, picks in (("worst", worst), ("best", best), ("random", sorted(random_pick))):
        for i in picks:
            kept = np.flatnonzero(~skip[i])
            order = kept[np.lexsort((kept, d[i, kept]))][:TOP]
            out.append(
                RankedQuery(
                    kind=kind,
                    query=int(queries[i]),
                    ap=float(ap[i]),
                    gallery=tuple(int(gallery[j]) for j in order),
                    distances=tuple(float(d[i, j]) for j in order),
                    matches=tuple(bool(g_pids[j] == q_pids[i]) for j in order),
                )
            )
    return out


#: pixels of a cell's image area (width, height; the images keep their aspect inside it), the
#: frame around it, and the text band above it (the query's kind and AP); the camera and the
#: distance go in the 30 pixels left below it (cells of 100 x 210 pixels)
IMAGE_PIXELS = (84, 150)
FRAME_PIXELS = {"query": 1, "match": 3}
TOP_BAND = 30


def ranks_figure(fs: FeatureSet, paths: list[Path], ranked: list[RankedQuery]):
    """A matplotlib Figure (Agg): a row per ranked query, query then the top ten.

    The cells are drawn into one picture at the figure's own pixels (``CELL_INCHES`` x ``DPI``
    each) and shown by one image axes with the text on top: one axes per cell took about 30 ms
    each to make (ticks, spines), two seconds for six rows."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from PIL import Image

    cols = TOP + 1
    cell_w, cell_h = round(CELL_INCHES[0] * DPI), round(CELL_INCHES[1] * DPI)
    canvas = np.full((cell_h * len(ranked), cell_w * cols, 3), 255, dtype=np.uint8)
    fig = Figure(figsize=(CELL_INCHES[0] * cols, CELL_INCHES[1] * len(ranked)), dpi=DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()

    def label(x: float, y: float, text: str, size: int) -> None:
        # text artists draw above the image, whenever they are made
        ax.text(x, y, text, ha="center", va="top", fontsize=size, linespacing=1.1)

    for r, row in enumerate(ranked):
        cells = [
            (row.query, None, None),
            *zip(row.gallery, row.distances, row.matches, strict=True),
        ]
        for c, (index, distance, match) in enumerate(cells):
            x0, y0 = c * cell_w, r * cell_h
            cam = int(fs.camids[index])
            if c == 0:
                colour, frame = "#000000", FRAME_PIXELS["query"]
                label(x0 + cell_w / 2, y0 + 2, f"{row.kind}\nAP {row.ap:.2f}", 7)
                below = f"query cam{cam}\nid {int(fs.pids[index])}"
            else:
                colour = TRUE_COLOUR if match else FALSE_COLOUR
                frame = FRAME_PIXELS["match"]
                below = f"cam{cam}\n{distance:.3f}"
            with Image.open(paths[index]) as image:
                rgb = image.convert("RGB")
                scale = min(IMAGE_PIXELS[0] / rgb.width, IMAGE_PIXELS[1] / rgb.height)
                w, h = max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))
                pixels = np.asarray(rgb.resize((w, h), Image.Resampling.BILINEAR))
            left = x0 + (cell_w - w) // 2
            top = y0 + TOP_BAND + (IMAGE_PIXELS[1] - h) // 2
            bottom_of_image = y0 + TOP_BAND + IMAGE_PIXELS[1]
            rgb_frame = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
            canvas[top - frame : top + h + frame, left - frame : left + w + frame] = rgb_frame
            canvas[top : top + h, left : left + w] = pixels
            label(x0 + cell_w / 2, bottom_of_image + 4, below, 6)
    # one canvas pixel per figure pixel: the picture is not resampled
    ax.imshow(canvas, interpolation="nearest", extent=(0, canvas.shape[1], canvas.shape[0], 0))
    ax.set_xlim(0, canvas.shape[1])
    ax.set_ylim(canvas.shape[0], 0)
    return fig


def write_ranks(
    fs: FeatureSet,
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    n_queries: int = 6,
    seed: int = 0,
    force: bool = False,
) -> tuple[Path, list[RankedQuery]]:
    """Write the picture as PNG to ``out`` (atomically; an existing file only with ``force``)."""
    target = check_writable(out, overwrite=force)
    paths = image_paths(fs, root)
    ranked = rank_queries(fs, n_queries=n_queries, seed=seed)
    fig = ranks_figure(fs, paths, ranked)
    with atomic_open(target, "wb", overwrite=force) as handle:
        fig.savefig(handle, format="png", dpi=DPI)
    return target, ranked
