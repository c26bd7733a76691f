"""The training-data pipeline: decoded images in memory -> sampler -> transforms -> ``Batch``.

Spec: ``spec/data/pipeline.md``. For each index batch of the
:class:`~reference.data.sampler.CrossModalitySampler` (rows ``[V of p ids x k, I of p ids x k]``):

    x      = images[idx]                       uint8, gathered from the in-memory decoded cache
    x      = x.to(device)                      the rest runs where the batch is
    x      = geometric(x)                      resize, per-sample pad-and-crop, flip (uint8)
    (x, .) = four_modality(x)                  Method B only: + D_V rows (tag 2), + D_I rows (tag 3)
    y      = photometric(x, modality)          channel aug. (opt.), normalise, erasing (opt.)
    yield Batch(y, labels[idx], modality, camids[idx])

The transforms' randomness comes from a CPU ``torch.Generator`` seeded from ``(seed, epoch,
rank)``, the sampler's from ``(seed, epoch)``: an epoch is replayed exactly by ``set_epoch``.
Files are read once, by the decoded cache; nothing here touches the disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reference.checks import check_bool
from reference.data.batch import Batch
from reference.data.derivatives import DerivativeConfig, four_modality
from reference.data.records import ImageRecords
from reference.data.sampler import CrossModalitySampler, IdentityOrder
from reference.data.transforms import TrainTransform, TransformConfig, check_uint8_images
from reference.errors import VireidError


@dataclass(frozen=True)
class PipelineConfig:
    """Sampler, transform and Method B settings of a training pipeline.

    Defaults: the predecessor's SYSU-MM01 batch (6 identities x 8 images per modality) and
    transform; ``four_modality=True`` gives Method B's batches.
    """

    p: int = 6
    k: int = 8
    seed: int = 0
    replacement: bool = True
    identities: IdentityOrder = "random"
    num_batches: int | None = None
    transform: TransformConfig = field(default_factory=TransformConfig)
    four_modality: bool = False
    derivatives: DerivativeConfig = field(default_factory=DerivativeConfig)

    def __post_init__(self) -> None:
        # p, k, seed and the sampler switches are checked by the sampler, with its messages
        if not isinstance(self.transform, TransformConfig):
            raise VireidError(f"transform: expected a TransformConfig, got {self.transform!r}")
        if not isinstance(self.derivatives, DerivativeConfig):
            raise VireidError(f"derivatives: expected a DerivativeConfig, got {self.derivatives!r}")
        check_bool(self.four_modality, "four_modality")


def _transform_seed(seed: int, epoch: int, rank: int) -> int:
    # a distinct, well-mixed 63-bit stream per (seed, epoch, rank), apart from the sampler's
    state = np.random.SeedSequence([seed, epoch, rank, 1]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


class TrainPipeline:
    """Iterate over the training batches of one epoch (per rank), as :class:`Batch` values.

    Args:
        images: the decoded uint8 (N, 3, H, W) images, one row per image. Rows are gathered
            where the tensor is: on the CPU (then copied to ``device`` per batch) or already on
            ``device`` (a GPU holds the whole SYSU-MM01 cache: 34k x 288 x 144 x 3 B = 4.3 GB).
        labels, modality, camids: one integer per image (modality 0 = V, 1 = I).
        config: see :class:`PipelineConfig`.
        device: where the transforms run and the batches are delivered.
        rank, world_size: as for the sampler (default: from ``torch.distributed``).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: np.ndarray | torch.Tensor,
        modality: np.ndarray | torch.Tensor,
        camids: np.ndarray | torch.Tensor,
        config: PipelineConfig | None = None,
        *,
        device: torch.device | str = "cpu",
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self.images = check_uint8_images(images)
        self.sampler = CrossModalitySampler(
            labels,
            modality,
            p=self.config.p,
            k=self.config.k,
            seed=self.config.seed,
            replacement=self.config.replacement,
            identities=self.config.identities,
            num_batches=self.config.num_batches,
            rank=rank,
            world_size=world_size,
        )
        n = self.sampler.labels.size
        if self.images.shape[0] != n:
            raise VireidError(
                f"images: expected {n} rows (one per label), got {self.images.shape[0]}"
            )
        cams = camids.detach().cpu().numpy() if isinstance(camids, torch.Tensor) else camids
        cams = np.asarray(cams)
        if cams.shape != (n,) or not np.issubdtype(cams.dtype, np.integer):
            raise VireidError(
                f"camids: expected {n} integers (one per label), got dtype {cams.dtype} "
                f"shape {cams.shape}"
            )
        self.device = torch.device(device)
        self.transform = TrainTransform(self.config.transform)
        self._labels = torch.from_numpy(self.sampler.labels)
        self._modality = torch.from_numpy(self.sampler.modality)
        self._camids = torch.from_numpy(cams.astype(np.int64))
        self.epoch = 0

    @classmethod
    def from_records(
        cls,
        records: ImageRecords,
        config: PipelineConfig | None = None,
        *,
        device: torch.device | str = "cpu",
        cache_dir: Path | None = None,
        workers: int = 0,
        progress: bool = False,
        images_on_device: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> TrainPipeline:
        """Decode ``records`` once at the transform's size (through the decoded cache).

        ``images_on_device=True`` moves the decoded images to ``device`` once, so batches are
        gathered there without a host-to-device copy per batch.
        """
        from reference.data.cache import load_decoded

        config = config or PipelineConfig()
        images = load_decoded(
            records,
            size=config.transform.size,
            cache_dir=cache_dir,
            workers=workers,
            progress=progress,
        )
        if images_on_device:
            images = images.to(device)
        return cls(
            images,
            records.labels,
            records.modality,
            records.camids,
            config,
            device=device,
            rank=rank,
            world_size=world_size,
        )

    def __len__(self) -> int:
        return len(self.sampler)

    @property
    def batch_size(self) -> int:
        """Rows per delivered batch: ``2 p k``, or ``4 p k`` with ``four_modality``."""
        return self.sampler.batch_size * (2 if self.config.four_modality else 1)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.epoch = self.sampler.epoch

    def make_batch(self, index: list[int] | torch.Tensor, generator: torch.Generator) -> Batch:
        """The transformed :class:`Batch` of the given image indices (in sampler row order)."""
        idx = torch.as_tensor(index, dtype=torch.int64)
        raw = self.images.index_select(0, idx.to(self.images.device))
        non_blocking = raw.device.type == "cpu" and self.device.type == "cuda"
        if non_blocking:
            raw = raw.pin_memory()  # lets the copy to the GPU run asynchronously
        batch = Batch(
            images=self.transform.geometric(
                raw.to(self.device, non_blocking=non_blocking), generator
            ),
            labels=self._labels[idx].to(self.device),
            modality=self._modality[idx].to(self.device),
            camids=self._camids[idx].to(self.device),
        )
        if self.config.four_modality:
            batch = four_modality(batch, self.config.derivatives)
        return Batch(
            images=self.transform.photometric(batch.images, generator, batch.modality),
            labels=batch.labels,
            modality=batch.modality,
            camids=batch.camids,
        )

    def epoch_generator(self) -> torch.Generator:
        """The transforms' CPU generator at the start of the current epoch, seeded from
        ``(seed, epoch, rank)``. The training engine keeps it (and its state in checkpoints) to
        resume an epoch part-way through."""
        return torch.Generator().manual_seed(
            _transform_seed(self.config.seed, self.epoch, self.sampler.rank)
        )

    def __iter__(self) -> Iterator[Batch]:
        generator = self.epoch_generator()
        for index in self.sampler:
            yield self.make_batch(index, generator)
