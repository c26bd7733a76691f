"""Identity loss: cross-entropy of classifier logits, with optional label smoothing.

Spec: ``spec/losses/identity.md``. For ``n`` rows with logits ``z_i`` over ``C`` classes and label
``y_i``, the smoothed target is ``q_ic = (1 - epsilon) * [c == y_i] + epsilon / C`` and::

    loss = (1 / n) * sum_i  - sum_c q_ic * log softmax(z_i)_c

``epsilon = 0`` is the plain cross-entropy. Computed in float32 for float16/bfloat16 logits (and
returned in float32), in the logits' dtype otherwise.

Organisation: one ``log_softmax``; the loss is two sums of it,
``-((1 - epsilon) * sum_i lp_{i, y_i} + (epsilon / C) * sum_ic lp_ic) / n`` (an ``nll_loss`` and a
``sum``), so autograd's backward is one fused log-softmax backward. The finiteness of the logits
is read off the second sum (a row's log-probabilities are finite iff its logits are).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reference.errors import VireidError
from reference.losses.checks import check_class_indices, check_epsilon, check_labels
from reference.losses.distances import check_features, compute_dtype, report_nonfinite


def cross_entropy_unchecked(
    logits: Tensor, labels: Tensor, epsilon: float, field: str = "logits"
) -> Tensor:
    """The loss of :func:`identity_loss` for logits and labels already validated, except for
    the finiteness of the logits, which this checks (naming ``field``)."""
    if torch.is_autocast_enabled(logits.device.type):
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return cross_entropy_unchecked(logits, labels, epsilon, field)
    n, num_classes = logits.shape
    lp = torch.log_softmax(logits.to(compute_dtype(logits.dtype)), dim=1)
    total = lp.sum()
    if not math.isfinite(total.detach().item()):  # one sync, no extra operation
        # a non-finite logit makes its row's log-probabilities non-finite; a sum that
        # overflowed from finite values is not an input error and is left to the loss
        report_nonfinite(logits, field)
    nll = F.nll_loss(lp, labels.long(), reduction="sum")  # -sum_i lp_{i, y_i}
    # -((1 - eps) * sum_i lp_{i, y_i} + (eps / C) * sum_ic lp_ic) / n in two operations
    weight = epsilon / (num_classes * (1.0 - epsilon))
    return torch.add(nll, total, alpha=-weight).mul((1.0 - epsilon) / n)


def identity_loss(logits: Tensor, labels: Tensor, *, epsilon: float = 0.0) -> Tensor:
    """Scalar (smoothed) cross-entropy; see the module docstring and ``spec/losses/identity.md``."""
    check_features(logits, "logits", finite=False)  # finiteness: checked in the forward pass
    n, num_classes = logits.shape
    if n == 0:
        raise VireidError(f"logits: expected at least one row, got shape (0, {num_classes})")
    check_labels(labels, n, against="logits")
    check_epsilon(epsilon)
    labels = labels.to(logits.device)
    check_class_indices(labels, num_classes)
    return cross_entropy_unchecked(logits, labels, epsilon)


class IdentityLoss(nn.Module):
    """:func:`identity_loss` with ``epsilon`` fixed."""

    def __init__(self, epsilon: float = 0.0) -> None:
        super().__init__()
        check_epsilon(epsilon)
        self.epsilon = float(epsilon)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return identity_loss(logits, labels, epsilon=self.epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"
