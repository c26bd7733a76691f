"""The method presets: each method's ``LossSpec``, with the provenance of every entry.

Spec: ``spec/losses/loss_spec.md`` (section "Presets"). ``preset(method, dataset)`` or one of
:func:`baseline_losses`, :func:`predecessor_losses`, :func:`method_a_losses`,
:func:`method_b_losses`.
"""

from __future__ import annotations

from collections.abc import Callable

from reference.checks import check_choice
from reference.losses.loss_spec import LossEntry, LossSpec

#: lambda of the predecessor's stripe hetero-center terms per dataset [predecessor].
PREDECESSOR_STRIPE_WEIGHT = {"sysu": 1.0, "regdb": 2.0}
#: margin of the predecessor's hetero-center triplet [predecessor].
PREDECESSOR_MARGIN = 0.3


def _check_dataset(dataset: str) -> str:
    return check_choice(
        dataset, "dataset", tuple(PREDECESSOR_STRIPE_WEIGHT), expected="'sysu' or 'regdb'"
    )


def _predecessor_entries(dataset: str, granularity: str, tag: str) -> list[LossEntry]:
    """Stripe cross-entropies + HcTri(concatenation) + lambda * HcTri per stripe [predecessor]."""
    lam = PREDECESSOR_STRIPE_WEIGHT[dataset]
    margin = {"margin": PREDECESSOR_MARGIN}
    return [
        LossEntry("id", f"{granularity}.*", 1.0, provenance=f"{tag}: a cross-entropy per stripe"),
        LossEntry(
            "hctri",
            granularity,
            1.0,
            margin,
            provenance=f"{tag}: HcTri on the concatenated stripes, margin {PREDECESSOR_MARGIN}",
        ),
        LossEntry(
            "hctri",
            f"{granularity}.*",
            lam,
            margin,
            provenance=f"{tag}: lambda * HcTri per stripe, lambda {lam} for {dataset}",
        ),
    ]


def predecessor_losses(dataset: str = "sysu") -> LossSpec:
    """The hetero-center triplet method's loss on six stripes [predecessor]."""
    dataset = _check_dataset(dataset)
    return LossSpec(
        "predecessor",
        tuple(_predecessor_entries(dataset, "fine", "[predecessor]")),
        dataset=dataset,
        notes=(
            "[predecessor] sum of stripe cross-entropies + HcTri(concatenated stripes) "
            "+ lambda * sum of HcTri(stripe); lambda 1.0 SYSU-MM01, 2.0 RegDB; margin 0.3",
        ),
    )


#: weight of Method A's center alignment loss [reconstruction].
METHOD_A_CENTER_ALIGNMENT_WEIGHT = 1.0


def method_a_losses(dataset: str = "sysu") -> LossSpec:
    """Method A: the predecessor's terms on the fine and coarse stripes, identity loss on the
    global branch, and center alignment on the global feature (see the spec for provenance)."""
    dataset = _check_dataset(dataset)
    entries = [
        LossEntry(
            "id", "global", 1.0, provenance="[reconstruction] identity loss on the global branch"
        ),
        *_predecessor_entries(dataset, "fine", "[predecessor]"),
        *_predecessor_entries(
            dataset, "coarse", "[reconstruction] the predecessor's terms on the coarse stripes"
        ),
        LossEntry(
            "ca",
            "global",
            METHOD_A_CENTER_ALIGNMENT_WEIGHT,
            provenance="[seed] center alignment loss; [reconstruction] its formula (spec/losses/"
            "center_alignment.md), its weight 1.0 and its branch (global)",
        ),
    ]
    return LossSpec(
        "method_a",
        tuple(entries),
        dataset=dataset,
        notes=(
            "[seed] HcTri on the part-level features and a center alignment loss",
            "[predecessor] the stripe losses on the six fine stripes",
            "[reconstruction] the global and coarse branches' terms, the center alignment "
            "formula, weight and branch",
        ),
    )


def method_b_losses(dataset: str = "sysu") -> LossSpec:
    """Method B: DID, MML and MDL on the global branch, weights 1, margins 0.3 [reconstruction]."""
    dataset = _check_dataset(dataset)
    margin = {"margin": 0.3}
    return LossSpec(
        "method_b",
        (
            LossEntry("did", "global", 1.0, provenance="[seed] DID loss; [reconstruction] all"),
            LossEntry(
                "mml", "global", 1.0, margin, provenance="[seed] MML; [reconstruction] formula"
            ),
            LossEntry(
                "mdl",
                "global",
                1.0,
                margin,
                provenance="[seed] MDL; [reconstruction] formula and directions",
            ),
        ),
        dataset=dataset,
        notes=(
            "[reconstruction] weights 1.0; margins 0.3, the predecessor's hetero-center margin",
        ),
    )


def baseline_losses(dataset: str = "sysu") -> LossSpec:
    """The baseline: identity loss + batch-hard triplet (margin 0.3) on the global branch."""
    dataset = _check_dataset(dataset)
    return LossSpec(
        "baseline",
        (
            LossEntry("id", "global", 1.0, provenance="[reconstruction] the field's identity loss"),
            LossEntry(
                "tri",
                "global",
                1.0,
                {"margin": 0.3},
                provenance="[reconstruction] the field's batch-hard triplet, margin 0.3",
            ),
        ),
        dataset=dataset,
    )


PRESETS: dict[str, Callable[[str], LossSpec]] = {
    "baseline": baseline_losses,
    "predecessor": predecessor_losses,
    "method_a": method_a_losses,
    "method_b": method_b_losses,
}


def preset(method: str, dataset: str = "sysu") -> LossSpec:
    """The preset ``LossSpec`` of ``method`` (a key of :data:`PRESETS`) for ``dataset``."""
    check_choice(method, "method", PRESETS)
    return PRESETS[method](dataset)
