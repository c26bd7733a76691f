"""``ModelOutput``: named features and logits per branch, modality tags, the test embedding.

Spec: ``spec/models/output.md``. Branch names follow one convention so that losses select what
they need by name, never by position: ``global``, ``coarse.<i>`` and ``fine.<i>`` (stripes
numbered top to bottom from 0). ``features[name]`` is the feature the metric losses use (before
the BN neck); ``logits[name]`` the classifier output of that branch; ``embedding`` the test
feature; ``modality`` the tag of each row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from reference.data.modality import check_modality_tags
from reference.errors import VireidError

_BRANCH = re.compile(r"^(global|(coarse|fine)\.\d+)$")


@dataclass(frozen=True)
class ModelOutput:
    features: dict[str, torch.Tensor]
    logits: dict[str, torch.Tensor]
    modality: torch.Tensor
    embedding: torch.Tensor
    neck_features: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.embedding.shape[0]
        if self.embedding.dim() != 2:
            raise VireidError(
                f"embedding: expected a (B, D) tensor, got shape {tuple(self.embedding.shape)}"
            )
        check_modality_tags(self.modality, n)
        for kind, mapping in (
            ("features", self.features),
            ("logits", self.logits),
            ("neck_features", self.neck_features),
        ):
            for name, value in mapping.items():
                if not _BRANCH.match(name):
                    raise VireidError(
                        f"{kind}[{name!r}]: branch names are 'global', 'coarse.<i>' or 'fine.<i>'"
                    )
                if value.dim() != 2 or value.shape[0] != n:
                    raise VireidError(
                        f"{kind}[{name!r}]: expected shape ({n}, d), got {tuple(value.shape)}"
                    )

    def branches(self, granularity: str) -> list[str]:
        """Names of the feature branches of one granularity, in stripe order.

        ``granularity`` is ``"global"``, ``"coarse"`` or ``"fine"``.
        """
        if granularity not in ("global", "coarse", "fine"):
            raise VireidError(
                f"granularity: expected 'global', 'coarse' or 'fine', got {granularity!r}"
            )
        if granularity == "global":
            return ["global"] if "global" in self.features else []
        names = [k for k in self.features if k.startswith(granularity + ".")]
        return sorted(names, key=lambda k: int(k.split(".")[1]))
