"""SynthVI in the LLCM layout: training lists, test identities, ``test_vis`` / ``test_nir``.

Spec: ``spec/data/synthvi.md`` (section "LLCM layout"). Uses the public pieces of SynthVI
(``synthvi_render``: identities, cameras, poses, image writing; ``dataset_folder``: the atomic
commit). Layout (``spec/data/llcm.md``):

- ``train_vis/cam<k>/<pid:04d>/<frame:04d>.jpg`` (and ``train_nir``), listed in
  ``idx/train_vis.txt`` / ``idx/train_nir.txt`` as ``<relative path> <label>`` (label = rank of
  the training identity);
- ``test_vis/cam<k>/<pid:04d>/<frame:04d>.jpg`` (visible cameras 1..9) and ``test_nir/...``
  (infrared cameras 1, 2, 4..9), with the test identities in ``idx/test_id.txt``.

A third of the identities (the real 351 / 1,064, at least 2) are test identities. Each identity
has images in a random subset of each modality's cameras (at least one per modality), 2 to 5
images per folder. Camera ``k`` of both modalities is one physical place: its visible and
infrared renderings share the background seed, only the response differs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reference.data.dataset_folder import write_dataset_folder
from reference.data.synthvi_plan import MAX_IDS, check_synth_int
from reference.data.synthvi_render import S_IMAGES, camera, identities, poses, rng, write_images
from reference.datasets import (
    LLCM_IDS,
    LLCM_INFRARED_CAMERAS,
    LLCM_TEST_IDS,
    LLCM_VISIBLE_CAMERAS,
)

MIN_IDS_LLCM = 4
#: a stream of its own (SynthVI's streams are 1..5), so the other layouts are unchanged
S_LLCM_PLAN = 16
_PRESENCE = 0.6
_IMAGES = (2, 5)
#: (folder prefix, cameras, infrared) of each modality
MODALITIES = (("vis", LLCM_VISIBLE_CAMERAS, False), ("nir", LLCM_INFRARED_CAMERAS, True))


def llcm_plan(ids: int, seed: int) -> tuple[list[int], list[int], dict[tuple[str, int, int], int]]:
    """``(train pids, test pids, counts)``: ``counts[(modality, cam, pid)]`` images (> 0)."""
    ids = check_synth_int(
        "ids", ids, MIN_IDS_LLCM, MAX_IDS, " (train and test need at least 2 identities each)"
    )
    n_test = min(ids - 2, max(2, round(ids * LLCM_TEST_IDS / LLCM_IDS)))
    perm = rng(seed, S_LLCM_PLAN).permutation(np.arange(1, ids + 1))
    test = sorted(int(p) for p in perm[:n_test])
    train = sorted(int(p) for p in perm[n_test:])
    counts: dict[tuple[str, int, int], int] = {}
    for pid in range(1, ids + 1):
        g = rng(seed, S_LLCM_PLAN, pid)
        for name, cams, _ in MODALITIES:
            present = g.random(len(cams)) < _PRESENCE
            present[g.integers(len(cams))] = True  # both modalities for every identity
            sizes = g.integers(_IMAGES[0], _IMAGES[1] + 1, size=len(cams))
            for cam, here, n in zip(cams, present.tolist(), sizes.tolist(), strict=True):
                if here:
                    counts[(name, cam, pid)] = int(n)
    return train, test, counts


def write_llcm_layout(
    out: Path, ids: int, seed: int, size: tuple[int, int], force: bool
) -> tuple[dict[str, int], dict[str, int]]:
    """Write the LLCM layout; return (images per top-level folder, identities per split)."""
    train, test, counts = llcm_plan(ids, seed)
    in_test = set(test)
    label = {pid: i for i, pid in enumerate(train)}
    ident = identities(range(1, ids + 1), seed)
    images: dict[str, int] = {}

    def fill(tmp: Path) -> None:
        lists: dict[str, list[str]] = {"vis": [], "nir": []}
        for m, (name, cams, infrared) in enumerate(MODALITIES):
            for cam in cams:
                # one place per camera number: the infrared model takes the visible one's seed key
                cam_model = camera(seed, 200 + cam, infrared=infrared)
                folders = [
                    (pid, n) for (nm, c, pid), n in sorted(counts.items()) if (nm, c) == (name, cam)
                ]
                rows = np.repeat([pid - 1 for pid, _ in folders], [n for _, n in folders])
                rels = [
                    f"{'test' if pid in in_test else 'train'}_{name}/cam{cam}/{pid:04d}/{f:04d}.jpg"
                    for pid, n in folders
                    for f in range(1, n + 1)
                ]
                if not rels:
                    continue
                poses_ = poses(rng(seed, S_IMAGES, 300 + 10 * m + cam), len(rels))
                write_images(
                    tmp, rels, ident, rows.astype(np.int64), cam_model, poses_, size, "JPEG"
                )
                for rel in rels:
                    top = rel.split("/")[0]
                    images[top] = images.get(top, 0) + 1
                    if top.startswith("train_"):
                        lists[name].append(f"{rel} {label[int(rel.split('/')[2])]}")
        for top in ("train_vis", "train_nir", "test_vis", "test_nir"):
            (tmp / top).mkdir(exist_ok=True)
        for name, cams, _ in MODALITIES:  # every test camera folder, as in the dataset
            for cam in cams:
                (tmp / f"test_{name}" / f"cam{cam}").mkdir(exist_ok=True)
        idx = tmp / "idx"
        idx.mkdir()
        for name, lines in lists.items():
            (idx / f"train_{name}.txt").write_text("\n".join(lines) + "\n")
        (idx / "test_id.txt").write_text(",".join(map(str, test)) + "\n")

    tops = ("idx", "train_vis", "train_nir", "test_vis", "test_nir")
    write_dataset_folder(out, force, tops, fill)
    return images, {"train": len(train), "test": len(test)}
