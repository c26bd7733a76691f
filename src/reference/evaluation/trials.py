"""One trial of an evaluation protocol: the distances it ranks and the scores it gives.

Spec: ``spec/evaluation/trials.md``. SYSU-MM01, RegDB and LLCM (``sysu.md``, ``regdb.md``,
``llcm.md``) draw their queries and galleries each in their own way; what a trial does with them
is the same:

- the distances are :func:`~reference.evaluation.distance.pairwise_distance`, or with ``rerank``
  the re-ranked distances of :func:`~reference.evaluation.rerank.reranked_distance`
  (:func:`trial_distance`);
- the trial's figures are :func:`~reference.evaluation.metrics.rank_metrics` under the protocol's
  rules, and a :class:`~reference.errors.VireidError` it raises is raised again naming the
  features and the trial (:func:`score_trial`).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from reference.errors import VireidError
from reference.evaluation.distance import PreparedQueries, pairwise_distance
from reference.evaluation.features import FeatureSet
from reference.evaluation.metrics import CMCKind, Exclusion, rank_metrics
from reference.evaluation.rerank import RerankSettings, reranked_distance
from reference.evaluation.scores import TrialScores

#: the identities and cameras of a trial's queries or gallery items
Labels = tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]


def labels_of(fs: FeatureSet, rows: np.ndarray, device: torch.device) -> Labels:
    """The identities and cameras of ``fs``'s ``rows`` as tensors on ``device`` (copies)."""
    return (
        torch.from_numpy(fs.pids[rows]).to(device),
        torch.from_numpy(fs.camids[rows]).to(device),
    )


def features_of(fs: FeatureSet, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """The features of ``fs``'s ``rows`` as a tensor on ``device``, to be read only.

    Where ``rows`` is one ascending run of consecutive indices (a RegDB file keeps each
    modality's rows together) the tensor is a view of the read-only array: the distances read
    it, nothing writes it, and it saves the copy of NumPy's fancy indexing (13 ms a RegDB
    trial). Other rows are that copy."""
    rows = np.asarray(rows)
    if rows.size and bool((np.diff(rows) == 1).all()):  # one row, or each the next's neighbour
        block = fs.features[int(rows[0]) : int(rows[-1]) + 1]
        with warnings.catch_warnings():  # torch warns of a non-writable array
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(block).to(device)
    return torch.from_numpy(fs.features[rows]).to(device)


def trial_distance(
    query: torch.Tensor,
    gallery: torch.Tensor,
    metric: str,
    rerank: RerankSettings | None,
    prepared: PreparedQueries | None = None,
) -> torch.Tensor:
    """The ``(n_query, n_gallery)`` distances a trial ranks: plain, or re-ranked with ``rerank``
    over the trial's own queries and gallery. ``prepared``: ``query`` prepared once for every
    trial (``PreparedQueries``), used by the plain distance; the same values to the last bit."""
    if rerank is None:
        if prepared is not None:
            return prepared.distances(gallery)
        return pairwise_distance(query, gallery, metric)
    return reranked_distance(query, gallery, metric, rerank)


def score_trial(
    dist: torch.Tensor,
    query: Labels,
    gallery: Labels,
    *,
    trial: int,
    rules: tuple[Exclusion, CMCKind, int],
    chunk_size: int | None,
    where: str,
    source: str | None = None,
) -> TrialScores:
    """The scores of trial ``trial``: the rank metrics of ``dist`` under ``rules`` (exclusion,
    CMC kind, max rank), the gallery size (the columns of ``dist``) and the trial's ``source``.

    A problem of the inputs is raised as ``"<where> trial <trial>: <problem>"``.
    """
    exclusion, cmc_kind, max_rank = rules
    try:
        metrics = rank_metrics(
            dist, query[0], gallery[0], query[1], gallery[1],
            exclusion=exclusion, cmc_kind=cmc_kind, max_rank=max_rank, chunk_size=chunk_size,
        )  # fmt: skip
    except VireidError as exc:
        raise VireidError(f"{where} trial {trial}: {exc}") from exc
    return TrialScores(trial=trial, metrics=metrics, num_gallery=int(dist.shape[1]), source=source)
