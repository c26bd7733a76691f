"""The ``vireid`` command line: parses arguments and calls one function per command.

Commands:
  vireid evaluate sysu   score a features file under the SYSU-MM01 protocol
  vireid evaluate regdb  score one features file per RegDB trial
  vireid evaluate llcm   score a features file under the LLCM protocol
  vireid synth           write a SynthVI dataset folder (SYSU-MM01 or RegDB layout)
  vireid data check      validate a dataset folder and report its counts
  vireid model summary   a model's stages, shapes, parameters and step cost (checks --pretrained)

Errors in the user's input are printed as ``error: <message>`` with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reference import __version__
from reference.datasets import REGDB_IDS_PER_SPLIT, SYSU_TRAINVAL_IDS
from reference.errors import VireidError


def _add_metric(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metric",
        choices=["euclidean", "cosine"],
        default="euclidean",
        help="distance between query and gallery features (default: euclidean)",
    )
    p.add_argument(
        "--rerank", choices=["k-reciprocal"], help="re-rank the distances (spec: rerank.md)"
    )
    p.add_argument("--k1", type=int, help="re-ranking: k of the k-reciprocal sets (default 20)")
    p.add_argument("--k2", type=int, help="re-ranking: query-expansion neighbours (default 6)")
    p.add_argument(
        "--lambda", dest="lambda_", type=float, help="re-ranking: original-distance weight (0.3)"
    )


def _add_json_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", type=Path, metavar="OUT", help="write the scores as JSON to OUT")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vireid", description="Visible-infrared person re-identification reference tools."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    evaluate = commands.add_parser("evaluate", help="score features under a dataset protocol")
    protocols = evaluate.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")

    sysu = protocols.add_parser("sysu", help="SYSU-MM01 protocol (10 trials by default)")
    source = sysu.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", type=Path, metavar="F.npz", help="features file to score")
    source.add_argument(
        "--example",
        action="store_true",
        help="score a generated SYSU-MM01-shaped example features file",
    )
    sysu.add_argument("--mode", choices=["all", "indoor"], default="all")
    sysu.add_argument("--shots", type=int, choices=[1, 10], default=1)
    sysu.add_argument("--sampling", choices=["official", "agw"], default="agw")
    sysu.add_argument(
        "--split",
        type=Path,
        metavar="rand_perm_cam.mat",
        help="the dataset authors' gallery permutations (required with --sampling official)",
    )
    sysu.add_argument("--trials", type=int, default=10, help="number of trials (default 10)")
    _add_metric(sysu)
    _add_json_output(sysu)

    regdb = protocols.add_parser("regdb", help="RegDB protocol (one features file per trial)")
    rsource = regdb.add_mutually_exclusive_group(required=True)
    rsource.add_argument("--features", type=Path, nargs="+", metavar="T.npz")
    rsource.add_argument(
        "--example", action="store_true", help="score generated RegDB-shaped example trials"
    )
    regdb.add_argument("--direction", choices=["v2t", "t2v"], default="v2t")
    _add_metric(regdb)
    _add_json_output(regdb)

    llcm = protocols.add_parser("llcm", help="LLCM protocol (10 trials by default)")
    lsource = llcm.add_mutually_exclusive_group(required=True)
    lsource.add_argument("--features", type=Path, metavar="F.npz", help="features file to score")
    lsource.add_argument(
        "--example", action="store_true", help="score a generated LLCM-shaped example"
    )
    llcm.add_argument("--direction", choices=["i2v", "v2i"], default="i2v")
    llcm.add_argument("--trials", type=int, default=10, help="number of trials (default 10)")
    _add_metric(llcm)
    _add_json_output(llcm)

    synth = commands.add_parser("synth", help="write a SynthVI dataset folder")
    synth.add_argument("--layout", choices=["sysu", "regdb", "llcm"], required=True)
    synth.add_argument("--out", type=Path, required=True, metavar="DIR")
    synth.add_argument("--ids", type=int, default=None, help="number of identities")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--force", action="store_true", help="write into a non-empty DIR")

    data = commands.add_parser("data", help="dataset tools")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = data_commands.add_parser("check", help="validate a dataset folder")
    check.add_argument("root", type=Path, metavar="ROOT")
    check.add_argument("--dataset", choices=["sysu", "regdb", "llcm"], required=True)

    model = commands.add_parser("model", help="model tools")
    model_commands = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    summary = model_commands.add_parser(
        "summary",
        help="build a model and print its stages, shapes, parameters and step cost",
        description="Build a model from a config and print its stages, output shapes, parameter "
        "counts and the operations of one training step. With --pretrained, the local weights "
        "file is loaded (and checked) first. Flags override the fields of --config.",
    )
    summary.add_argument("--config", type=Path, metavar="MODEL.json", help="ModelConfig fields")
    summary.add_argument("--kind", choices=["method_a", "method_b", "baseline"])
    summary.add_argument(
        "--num-classes",
        type=int,
        metavar="N",
        help=f"training identities: {SYSU_TRAINVAL_IDS} SYSU-MM01 (the default without "
        f"--config), {REGDB_IDS_PER_SPLIT} RegDB",
    )
    summary.add_argument("--share-from", type=int, metavar="K", help="first shared stage, 0..5")
    summary.add_argument("--last-stride", type=int, choices=[1, 2])
    summary.add_argument("--derived-routing", choices=["base", "cross", "own"])
    summary.add_argument(
        "--pretrained",
        type=Path,
        metavar="PATH",
        help="local torchvision ResNet-50 state dict copied into every stream",
    )
    summary.add_argument(
        "--size", default="288x144", metavar="HxW", help="input size (default 288x144)"
    )
    return parser


#: ``vireid model summary`` flags that override the fields of ``--config`` (when given)
_MODEL_FLAGS = ("kind", "num_classes", "share_from", "last_stride", "derived_routing")


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "evaluate":
        from reference.evaluation import commands as evaluation

        common = {k: getattr(args, k) for k in ("features", "example", "metric", "force")}
        common["json_out"] = args.json
        common["rerank"] = evaluation.rerank_settings(args.rerank, args.k1, args.k2, args.lambda_)
        if args.protocol == "sysu":
            return evaluation.evaluate_sysu(
                mode=args.mode,
                shots=args.shots,
                sampling=args.sampling,
                split=args.split,
                trials=args.trials,
                **common,
            )
        if args.protocol == "llcm":
            return evaluation.evaluate_llcm(direction=args.direction, trials=args.trials, **common)
        return evaluation.evaluate_regdb(direction=args.direction, **common)
    if args.command == "synth":
        from reference.data.commands import synth_command

        return synth_command(
            layout=args.layout, out=args.out, ids=args.ids, seed=args.seed, force=args.force
        )
    if args.command == "model":
        from reference.models.commands import summary_command

        overrides = {k: getattr(args, k) for k in _MODEL_FLAGS}
        return summary_command(
            config_file=args.config, overrides=overrides, pretrained=args.pretrained, size=args.size
        )
    from reference.data.commands import check_command

    return check_command(root=args.root, dataset=args.dataset)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except VireidError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
