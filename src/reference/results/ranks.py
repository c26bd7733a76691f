"""The ranking picture: queries beside their top-10 gallery images, true / false matches framed.

Spec: ``spec/results/check.md`` (section "Ranks").

A features file and its dataset folder, each dataset under its protocol's first trial:
SYSU-MM01, the infrared test images against trial 0 of the ``agw`` draw, single-shot,
all-search, with the camera rule (camera-3 queries skip camera 2); LLCM, one direction
(``i2v`` by default) against trial 0 of its draw, same identity and camera skipped; RegDB, one
trial's test split (its features file), one direction (``v2t`` by default), no rule. Each
query's gallery is ranked by distance; its AP is the protocol's (``rank_metrics``). Of ``n``
queries shown, ``(n + 2) // 3`` are the worst (lowest AP), ``(n + 1) // 3`` the best (highest
AP, then earliest first hit) and ``n // 3`` drawn at random (seeded) from the others. A row: the
query, then its ten nearest gallery images, each framed green (same identity) or red, with
``cam<c>`` and the distance under it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reference.checks import check_choice
from reference.errors import VireidError
from reference.evaluation import llcm, regdb, sysu
from reference.evaluation.distance import pairwise_distance
from reference.evaluation.features import FeatureSet
from reference.evaluation.metrics import exclusion_mask, rank_metrics
from reference.fileio import atomic_open, check_writable
from reference.training.extract import test_records

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


#: each dataset's directions (query, gallery), the first the default; SYSU-MM01 has one
DIRECTIONS: dict[str, tuple[str, ...]] = {
    "sysu": ("i2v",),
    "llcm": tuple(llcm.DIRECTIONS),
    "regdb": tuple(regdb.DIRECTIONS),
}


def check_direction(dataset: str, direction: str | None) -> str:
    """``direction`` one of ``dataset``'s (``None``: its first), else an error naming it."""
    choices = DIRECTIONS[check_choice(dataset, "dataset", DIRECTIONS)]
    if direction is None:
        return choices[0]
    expected = " or ".join(repr(c) for c in choices) + f" for {dataset}"
    return check_choice(direction, "direction", choices, expected=expected)


def image_paths(
    fs: FeatureSet, root: str | os.PathLike[str], dataset: str = "sysu", trial: int | None = None
) -> list[Path]:
    """The image of each row of a features file in the dataset folder ``root``: the test pool's
    image with the row's camera, identity and frame (and modality, for LLCM); RegDB's pool is
    trial ``trial``'s test split."""
    if fs.frames is None:
        raise VireidError("features: no frames; the picture finds each row's image by its frame")
    records = test_records(root, dataset, trial)  # type: ignore[arg-type]
    with_modality = fs.modalities is not None
    columns = [records.camids, records.pids, records.frames]
    if with_modality:
        columns.insert(0, records.modality)
    keys = zip(*(c.tolist() for c in columns), strict=True)
    where = dict(zip(keys, records.paths, strict=True))
    paths = []
    for i in range(len(fs.pids)):
        cam, pid, frame = int(fs.camids[i]), int(fs.pids[i]), int(fs.frames[i])
        key = (int(fs.modalities[i]), cam, pid, frame) if with_modality else (cam, pid, frame)
        path = where.get(key)
        if path is None:
            raise VireidError(
                f"features row {i}: camera {cam}, identity {pid}, frame {frame} is not an image "
                f"of {root}'s test pool: the features file does not belong to this dataset"
            )
        paths.append(path)
    return paths


def protocol_rows(fs: FeatureSet, dataset: str, direction: str):
    """``(queries, gallery, exclusion, cmc_kind)`` of the picture: rows of ``fs`` and the
    protocol's rules (see the module docstring)."""
    if dataset == "sysu":
        folders = sysu.folders_of(fs)
        gallery = sysu.agw_gallery(folders, mode="all", shots=1, trial=0)
        return sysu.query_rows(folders), gallery, sysu.EXCLUSION, sysu.CMC_KIND
    if dataset == "llcm":
        folders = llcm.folders_of(fs)
        q_mod, g_mod = llcm.DIRECTIONS[direction]
        queries, gallery = llcm.query_rows(folders, q_mod), llcm.gallery_rows(folders, g_mod, 0)
        return queries, gallery, llcm.EXCLUSION, llcm.CMC_KIND
    q_cam, g_cam = regdb.DIRECTIONS[direction]
    queries, gallery = np.flatnonzero(fs.camids == q_cam), np.flatnonzero(fs.camids == g_cam)
    return queries, gallery, regdb.EXCLUSION, regdb.CMC_KIND


def rank_queries(
    fs: FeatureSet,
    *,
    n_queries: int = 6,
    seed: int = 0,
    metric: str = "euclidean",
    dataset: str = "sysu",
    direction: str | None = None,
) -> list[RankedQuery]:
    """Pick and rank ``n_queries`` queries (see the module docstring)."""
    if isinstance(n_queries, bool) or not isinstance(n_queries, int) or n_queries < 1:
        raise VireidError(f"--queries: expected a positive integer, got {n_queries!r}")
    direction = check_direction(dataset, direction)
    queries, gallery, rule, kind = protocol_rows(fs, dataset, direction)
    if queries.size == 0 or gallery.size == 0:
        raise VireidError(f"features: no query or no gallery image ({dataset}, {direction})")
    dist = pairwise_distance(fs.features[queries], fs.features[gallery], metric)
    q_pids, g_pids = fs.pids[queries], fs.pids[gallery]
    q_cams, g_cams = fs.camids[queries], fs.camids[gallery]
    metrics = rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, exclusion=rule, cmc_kind=kind)
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
    skip = exclusion_mask(q_pids, g_pids, q_cams, g_cams, rule).numpy()
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
    dataset: str = "sysu",
    direction: str | None = None,
    trial: int | None = None,
) -> tuple[Path, list[RankedQuery]]:
    """Write the picture as PNG to ``out`` (atomically; an existing file only with ``force``);
    ``trial``: the RegDB trial whose test split ``fs`` holds."""
    target = check_writable(out, overwrite=force)
    direction = check_direction(dataset, direction)
    paths = image_paths(fs, root, dataset, trial)
    ranked = rank_queries(fs, n_queries=n_queries, seed=seed, dataset=dataset, direction=direction)
    fig = ranks_figure(fs, paths, ranked)
    with atomic_open(target, "wb", overwrite=force) as handle:
        fig.savefig(handle, format="png", dpi=DPI)
    return target, ranked
