"""Identity loss: cross-entropy of classifier logits, with optional label smoothing.

Spec: ``spec/losses/identity.md``. For ``n`` rows with logits ``z_i`` over ``C`` classes and label
``y_i``, the smoothed target is ``q_ic = (1 - epsilon) * [c == y_i] + epsilon / C`` and::

    loss = (1 / n) * sum_i  - sum_c q_ic * log softmax(z_i)_c

``epsilon = 0`` is the plain cross-entropy. Computed in float32 for float16/bfloat16 logits (and
returned in float32), in the logits' dtype otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference.errors import VireidError
from reference.losses.distances import check_features, compute_dtype
from reference.losses.triplet import check_labels


def _check_epsilon(epsilon: float) -> None:
    if not isinstance(epsilon, (int, float)) or not (0.0 <= epsilon < 1.0):
        raise VireidError(f"epsilon: expected a label-smoothing weight in [0, 1), got {epsilon!r}")


def identity_loss(logits: Tensor, labels: Tensor, *, epsilon: float = 0.0) -> Tensor:
    """Scalar (smoothed) cross-entropy; see the module docstring and ``spec/losses/identity.md``."""
    check_features(logits, "logits")
    n, num_classes = logits.shape
    if n == 0:
        raise VireidError(f"logits: expected at least one row, got shape (0, {num_classes})")
    check_labels(labels, n, against="logits")
    _check_epsilon(epsilon)
    labels = labels.to(logits.device)
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        values = sorted({int(v) for v in labels[bad].tolist()})
        raise VireidError(
            f"labels: expected class indices in 0..{num_classes - 1} (logits have {num_classes} "
            f"columns), got {values}"
        )
    dtype = compute_dtype(logits.dtype)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        # PyTorch's label_smoothing uses exactly q = (1 - eps) * onehot + eps / C.
        return F.cross_entropy(logits.to(dtype), labels.long(), label_smoothing=float(epsilon))


class IdentityLoss(nn.Module):
    """:func:`identity_loss` with ``epsilon`` fixed."""

    def __init__(self, epsilon: float = 0.0) -> None:
        super().__init__()
        _check_epsilon(epsilon)
        self.epsilon = float(epsilon)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return identity_loss(logits, labels, epsilon=self.epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"
