"""The ``vireid`` command line: parses arguments and calls one function per command.

Commands:
  vireid evaluate sysu   score a features file under the SYSU-MM01 protocol
  vireid evaluate regdb  score one features file per RegDB trial
  vireid synth           write a SynthVI dataset folder (SYSU-MM01 or RegDB layout)
  vireid data check      validate a dataset folder and report its counts
  vireid model summary   a model's stages, shapes, parameters and step cost (checks --pretrained)
  vireid extract         write a checkpoint's test-pool features file (SYSU-MM01 or RegDB)
  vireid demo            train, extract and score the three methods on SynthVI (the main job)

Errors in the user's input are printed as ``error: <message>`` with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reference import __version__
from reference.errors import VireidError


def _add_metric(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metric",
        choices=["euclidean", "cosine"],
        default="euclidean",
        help="distance between query and gallery features (default: euclidean)",
    )
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

    regdb = protocols.add_parser("regdb", help="RegDB protocol (one features file per trial)")
    rsource = regdb.add_mutually_exclusive_group(required=True)
    rsource.add_argument("--features", type=Path, nargs="+", metavar="T.npz")
    rsource.add_argument(
        "--example", action="store_true", help="score generated RegDB-shaped example trials"
    )
    regdb.add_argument("--direction", choices=["v2t", "t2v"], default="v2t")
    _add_metric(regdb)

    synth = commands.add_parser("synth", help="write a SynthVI dataset folder")
    synth.add_argument("--layout", choices=["sysu", "regdb"], required=True)
    synth.add_argument("--out", type=Path, required=True, metavar="DIR")
    synth.add_argument("--ids", type=int, default=None, help="number of identities")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--force", action="store_true", help="write into a non-empty DIR")

    data = commands.add_parser("data", help="dataset tools")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = data_commands.add_parser("check", help="validate a dataset folder")
    check.add_argument("root", type=Path, metavar="ROOT")
    check.add_argument("--dataset", choices=["sysu", "regdb"], required=True)

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
        help="training identities: 395 SYSU-MM01 (the default without --config), 206 RegDB",
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
    _add_extract(commands)
    return parser


def _add_extract(commands) -> None:
    extract = commands.add_parser(
        "extract",
        help="write a checkpoint's test-pool features file",
        description="Embed every image of the dataset's test pool (SYSU-MM01: the test "
        "identities in all six cameras; RegDB: one trial's test split) with the model of a "
        "training checkpoint and write the features file that 'vireid evaluate' scores.",
    )
    extract.add_argument("--checkpoint", type=Path, required=True, metavar="C.pt")
    extract.add_argument("--data-root", type=Path, required=True, metavar="ROOT")
    extract.add_argument(
        "--trial", type=int, metavar="T", help="RegDB trial 1..10 (default: the run's trial)"
    )
    extract.add_argument("--out", type=Path, required=True, metavar="F.npz")
    extract.add_argument(
        "--flip", action="store_true", help="average each embedding with its mirror image's"
    )
    extract.add_argument("--batch-size", type=int, default=64, metavar="N")
    extract.add_argument(
        "--device", default="auto", help="auto (GPU when present), cpu, cuda or cuda:N"
    )
    extract.add_argument("--force", action="store_true", help="replace F.npz if it exists")

    demo = commands.add_parser(
        "demo",
        help="train, extract and score the three methods on SynthVI (minutes, on a CPU)",
        description="Write SynthVI (cached), train the baseline, Method A and Method B for a "
        "short fixed schedule, extract their test features, score them under the SYSU-MM01 "
        "protocol and print one table, untrained against trained.",
    )
    demo.add_argument(
        "--out", type=Path, default=Path("vireid-demo"), metavar="DIR",
        help="run folders DIR/<method> (default: ./vireid-demo)",
    )  # fmt: skip
    demo.add_argument(
        "--cache", type=Path, metavar="DIR",
        help="SynthVI and decoded-image cache (default: $XDG_CACHE_HOME/vireid or ~/.cache/vireid)",
    )  # fmt: skip
    demo.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    demo.add_argument("--force", action="store_true", help="replace the run folders' files")


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "evaluate":
        from reference.evaluation import commands as evaluation

        if args.protocol == "sysu":
            return evaluation.evaluate_sysu(
                features=args.features,
                example=args.example,
                mode=args.mode,
                shots=args.shots,
                sampling=args.sampling,
                split=args.split,
                trials=args.trials,
                metric=args.metric,
                json_out=args.json,
                force=args.force,
            )
        return evaluation.evaluate_regdb(
            features=args.features,
            example=args.example,
            direction=args.direction,
            metric=args.metric,
            json_out=args.json,
            force=args.force,
        )
    if args.command == "synth":
        from reference.data.synthvi import synth_command

        return synth_command(
            layout=args.layout, out=args.out, ids=args.ids, seed=args.seed, force=args.force
        )
    if args.command == "model":
        from reference.models.summary import summary_command

        overrides = {
            "kind": args.kind,
            "num_classes": args.num_classes,
            "share_from": args.share_from,
            "last_stride": args.last_stride,
            "derived_routing": args.derived_routing,
        }
        if args.config is None and args.kind is not None and args.num_classes is None:
            overrides["num_classes"] = 395
        return summary_command(
            config_file=args.config, overrides=overrides, pretrained=args.pretrained, size=args.size
        )
    if args.command == "demo":
        from reference.training.commands import demo_command

        return demo_command(out=args.out, cache=args.cache, device=args.device, force=args.force)
    if args.command == "extract":
        from reference.training.commands import extract_command

        return extract_command(
            checkpoint=args.checkpoint,
            data_root=args.data_root,
            out=args.out,
            trial=args.trial,
            flip=args.flip,
            batch_size=args.batch_size,
            device=args.device,
            force=args.force,
        )
    from reference.data.check import check_command

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
