"""Arithmetic cost of one training step: floating-point operations, forward and backward.

Spec: ``spec/models/cost.md``. A *training step* here is what the model benchmark times:

    forward   out = model(images[, modality])
    loss      L = sum over every output tensor t of mean(t ** 2)
              (a ``ModelOutput``'s features and logits; a plain tensor itself)
    backward  dL/dθ for every parameter θ that requires grad (the images need no gradient)

``step_flops`` counts the floating-point operations of the forward and of the backward with
``torch.utils.flop_counter.FlopCounterMode``: 2 per multiply-add of every convolution and matrix
product (``conv``, ``mm``, ``addmm``, ``bmm``, ``baddbmm`` ...); element-wise work (BN, ReLU,
GeM powers) is not counted. Unlike a timing, the count is the same on every machine, so it shows
where a model's arithmetic goes without a benchmark's noise.

The model is not changed: the step runs on it in train mode, every module's mode and every
buffer (BN running statistics) are restored afterwards (``in_train_mode``), and the gradients
are taken with ``torch.autograd.grad``, so parameters, ``.grad`` and statistics of the caller's
model stay as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from reference.errors import VireidError
from reference.models.output import ModelOutput


@dataclass(frozen=True)
class StepFlops:
    """Floating-point operations of one training step."""

    forward: int
    backward: int

    @property
    def total(self) -> int:
        return self.forward + self.backward


def _outputs(out: object) -> list[torch.Tensor]:
    if isinstance(out, ModelOutput):
        return [*out.features.values(), *out.logits.values()]
    if isinstance(out, torch.Tensor):
        return [out]
    raise VireidError(f"model output: expected a ModelOutput or a tensor, got {type(out).__name__}")


def _step(run, inputs: list[torch.Tensor], params: list[nn.Parameter]) -> StepFlops:
    with FlopCounterMode(display=False) as counter:
        outputs = _outputs(run())
    forward = counter.get_total_flops()
    loss = sum(t.float().square().mean() for t in outputs)
    targets = [*params, *inputs]
    if not targets or not loss.requires_grad:
        return StepFlops(forward, 0)
    with FlopCounterMode(display=False) as counter:
        torch.autograd.grad(loss, targets, allow_unused=True)
    return StepFlops(forward, counter.get_total_flops())


def step_flops(
    model: nn.Module, images: torch.Tensor, modality: torch.Tensor | None = None
) -> StepFlops:
    """Operations of one training step of ``model`` on ``images`` (train mode).

    ``modality`` is passed as the second argument when given (the project's networks take the
    tags; a plain torchvision model does not).
    """
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise VireidError("images: expected a floating-point tensor")
    with in_train_mode(model) as work:
        params = [p for p in work.parameters() if p.requires_grad]

        def run() -> object:
            return work(images) if modality is None else work(images, modality)

        return _step(run, [], params)


def head_step_flops(model: nn.Module, images: torch.Tensor, modality: torch.Tensor) -> StepFlops:
    """Operations of the head's part of the same step: the head alone, on the backbone's map of
    ``images`` (which, unlike the images, needs a gradient), with the head's parameters.

    ``step_flops(...).total - head_step_flops(...).total`` is the backbone's share.
    """
    if not isinstance(model, nn.Module) or not all(
        hasattr(model, name) for name in ("feature_map", "head")
    ):
        raise VireidError("model: expected a network with a backbone and a head (build_model)")
    with in_train_mode(model) as work:
        with torch.no_grad():
            fmap = work.feature_map(images, modality)
        fmap.requires_grad_(True)
        params = [p for p in work.head.parameters() if p.requires_grad]
        return _step(lambda: work.head(fmap, modality), [fmap], params)


@contextmanager
def in_train_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in train mode for a counted step, then as it was: every module's mode, and
    every buffer's value (a train-mode forward moves BatchNorm's running statistics and
    counts). The step takes its gradients with ``torch.autograd.grad``, which leaves ``.grad``
    alone. A copy of the buffers, not of the network (``spec/models/cost.md``: a deep copy of
    Method A's 100 MB of weights cost about 0.1 s a count on a CPU)."""
    modes = [(m, m.training) for m in model.modules()]
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    model.train()
    try:
        yield model
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
        for module, training in modes:
            module.training = training
