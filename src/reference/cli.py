"""The ``vireid`` command line: parses arguments and calls one function per command.

Commands:
  vireid evaluate sysu   score a features file under the SYSU-MM01 protocol
  vireid evaluate regdb  score one features file per RegDB trial
  vireid evaluate llcm   score a features file under the LLCM protocol
  vireid synth           write a SynthVI dataset folder (SYSU-MM01 or RegDB layout)
  vireid data check      validate a dataset folder and report its counts
  vireid model summary   a model's stages, shapes, parameters and step cost (checks --pretrained)
  vireid audit eval|loss|features   where another implementation differs, by kind (exit 1)
  vireid train           train a preset on a dataset folder into a run folder
  vireid extract         write a checkpoint's test-pool features file (SYSU-MM01 or RegDB)
  vireid demo            train, extract and score the three methods on SynthVI (the main job)
  vireid results ...     check a run against a published row, tables and plots, rank pictures

Errors in the user's input are printed as ``error: <message>`` with exit status 2.

Why it must be one file (above 400 lines): this is the whole command surface, every command's
arguments beside the one dispatch, so that a user's flag and the function it reaches are read in
one place; the areas' ``commands.py`` modules hold what each command does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reference import __version__
from reference.checks import is_path
from reference.datasets import LLCM_TRAIN_IDS, REGDB_IDS_PER_SPLIT, SYSU_TRAINVAL_IDS
from reference.errors import VireidError

_Subparsers = argparse._SubParsersAction


def _path(text: str) -> Path:
    """A path argument: ``Path("")`` is the working folder, so an empty argument (an unset
    shell variable, ``--data-root "$ROOT"``) is refused instead of read there."""
    if not is_path(text):
        raise argparse.ArgumentTypeError("expected a non-empty path")
    return Path(text)


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
    p.add_argument("--json", type=_path, metavar="OUT", help="write the scores as JSON to OUT")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")


def _add_protocol(
    protocols: _Subparsers, name: str, summary: str, *, example: str, **features
) -> argparse.ArgumentParser:
    """``vireid evaluate NAME``: ``--features`` (keywords ``features``) or ``--example``."""
    parser = protocols.add_parser(name, help=summary)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", type=_path, **features)
    source.add_argument("--example", action="store_true", help=example)
    return parser


def _add_group(commands: _Subparsers, name: str, summary: str) -> _Subparsers:
    """``vireid NAME ACTION``: a command whose actions are subcommands (``args.NAME_command``)."""
    group = commands.add_parser(name, help=summary)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vireid", description="Visible-infrared person re-identification reference tools."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    evaluate = commands.add_parser("evaluate", help="score features under a dataset protocol")
    protocols = evaluate.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")

    sysu = _add_protocol(
        protocols, "sysu", "SYSU-MM01 protocol (10 trials by default)",
        example="score a generated SYSU-MM01-shaped example features file", metavar="F.npz",
        help="features file to score",
    )  # fmt: skip
    sysu.add_argument("--mode", choices=["all", "indoor"], default="all")
    sysu.add_argument("--shots", type=int, choices=[1, 10], default=1)
    sysu.add_argument("--sampling", choices=["official", "agw"], default="agw")
    sysu.add_argument(
        "--split",
        type=_path,
        metavar="rand_perm_cam.mat",
        help="the dataset authors' gallery permutations (required with --sampling official)",
    )
    sysu.add_argument("--trials", type=int, default=10, help="number of trials (default 10)")
    _add_metric(sysu)
    _add_json_output(sysu)

    regdb = _add_protocol(
        protocols, "regdb", "RegDB protocol (one features file per trial)",
        example="score generated RegDB-shaped example trials", nargs="+", metavar="T.npz",
    )  # fmt: skip
    regdb.add_argument("--direction", choices=["v2t", "t2v"], default="v2t")
    _add_metric(regdb)
    _add_json_output(regdb)

    llcm = _add_protocol(
        protocols, "llcm", "LLCM protocol (10 trials by default)", metavar="F.npz",
        help="features file to score", example="score a generated LLCM-shaped example",
    )  # fmt: skip
    llcm.add_argument("--direction", choices=["i2v", "v2i"], default="i2v")
    llcm.add_argument("--trials", type=int, default=10, help="number of trials (default 10)")
    _add_metric(llcm)
    _add_json_output(llcm)

    synth = commands.add_parser("synth", help="write a SynthVI dataset folder")
    synth.add_argument("--layout", choices=["sysu", "regdb", "llcm"], required=True)
    synth.add_argument("--out", type=_path, required=True, metavar="DIR")
    synth.add_argument("--ids", type=int, default=None, help="number of identities")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--force", action="store_true", help="write into a non-empty DIR")

    data_commands = _add_group(commands, "data", "dataset tools")
    check = data_commands.add_parser("check", help="validate a dataset folder")
    check.add_argument("root", type=_path, metavar="ROOT")
    check.add_argument(
        "--dataset",
        choices=["sysu", "regdb", "llcm"],
        help="default: the one ROOT's folders show (cam1..cam6 + exp/, Visible/ + Thermal/ + "
        "idx/, test_vis/ + test_nir/ + idx/)",
    )

    model_commands = _add_group(commands, "model", "model tools")
    summary = model_commands.add_parser(
        "summary",
        help="build a model and print its stages, shapes, parameters and step cost",
        description="Build a model from a config and print its stages, output shapes, parameter "
        "counts and the operations of one training step. With --pretrained, the local weights "
        "file is loaded (and checked) first. Flags override the fields of --config.",
    )
    summary.add_argument("--config", type=_path, metavar="MODEL.json", help="ModelConfig fields")
    summary.add_argument("--kind", choices=["method_a", "method_b", "baseline"])
    summary.add_argument(
        "--num-classes",
        type=int,
        metavar="N",
        help=f"training identities: {SYSU_TRAINVAL_IDS} SYSU-MM01 (the default without "
        f"--config), {REGDB_IDS_PER_SPLIT} RegDB, {LLCM_TRAIN_IDS} LLCM",
    )
    summary.add_argument("--share-from", type=int, metavar="K", help="first shared stage, 0..5")
    summary.add_argument("--last-stride", type=int, choices=[1, 2])
    summary.add_argument(
        "--depth", type=int, choices=[18, 34, 50], help="the ResNet (default 50, the methods')"
    )
    summary.add_argument("--derived-routing", choices=["base", "cross", "own"])
    summary.add_argument(
        "--pretrained",
        type=_path,
        metavar="PATH",
        help="local torchvision ResNet state dict (of --depth) copied into every stream",
    )
    summary.add_argument(
        "--size", default="288x144", metavar="HxW", help="input size (default 288x144)"
    )
    train = commands.add_parser(
        "train",
        help="train a preset on a dataset folder into a run folder",
        description="Train a preset (baseline-sysu, method_a-regdb, ... or a .toml file) on a "
        "dataset folder. Run under torchrun for several GPUs. Exit status 3: a non-finite loss; "
        "130: interrupted (resume with --resume).",
    )
    train.add_argument("--preset", required=True, metavar="P", help="preset name or .toml file")
    train.add_argument("--data-root", type=_path, required=True, metavar="ROOT")
    train.add_argument("--trial", type=int, metavar="T", help="RegDB trial 1..10")
    train.add_argument("--pretrained", type=_path, metavar="W", help="local ResNet-50 weights")
    train.add_argument("--out", type=_path, metavar="DIR", help="run folder (default runs/<P>)")
    train.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
        help="override a config field, e.g. --set optim.lr_head=0.05 (repeatable)",
    )  # fmt: skip
    train.add_argument("--resume", action="store_true", help="continue the run in DIR")
    train.add_argument("--force", action="store_true", help="replace the run in DIR")
    train.add_argument("--deterministic", action="store_true", help="deterministic algorithms")
    train.add_argument(
        "--val-ids", type=int, metavar="N",
        help="hold out N training identities to select the model (best-val.pt)",
    )  # fmt: skip
    train.add_argument(
        "--monitor-test", action="store_true",
        help="score the test set per evaluation epoch, for analysis only (never selects)",
    )  # fmt: skip
    _add_extract(commands)
    _add_results(commands)
    _add_audit(commands)
    return parser


def _add_extract(commands: _Subparsers) -> None:
    extract = commands.add_parser(
        "extract",
        help="write a checkpoint's test-pool features file",
        description="Embed every image of the dataset's test pool (SYSU-MM01: the test "
        "identities in all six cameras; RegDB: one trial's test split; LLCM: every test image "
        "of both modalities) with the model of a "
        "training checkpoint and write the features file that 'vireid evaluate' scores.",
    )
    extract.add_argument("--checkpoint", type=_path, required=True, metavar="C.pt")
    extract.add_argument("--data-root", type=_path, required=True, metavar="ROOT")
    extract.add_argument(
        "--trial", type=int, metavar="T", help="RegDB trial 1..10 (default: the run's trial)"
    )
    extract.add_argument("--out", type=_path, required=True, metavar="F.npz")
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
        "--out", type=_path, default=Path("vireid-demo"), metavar="DIR",
        help="run folders DIR/<method> (default: ./vireid-demo)",
    )  # fmt: skip
    demo.add_argument(
        "--cache", type=_path, metavar="DIR",
        help="SynthVI and decoded-image cache (default: $XDG_CACHE_HOME/vireid or ~/.cache/vireid)",
    )  # fmt: skip
    demo.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    demo.add_argument("--force", action="store_true", help="replace the run folders' files")


def _add_results(commands: _Subparsers) -> None:
    actions = _add_group(commands, "results", "run records against the published tables")
    check = actions.add_parser(
        "check",
        help="compare a run with a published row; exit 1 when a figure falls short",
        description="Side by side with the published figures on the same protocol: value, "
        "published, delta, 95% interval and a verdict per figure. Exit 0 when nothing falls "
        "short, 1 otherwise; comparing across protocols is refused (exit 2).",
    )
    check.add_argument("run", type=_path, metavar="RUN", help="run folder (or its run.json)")
    check.add_argument(
        "--against", metavar="SOURCE:METHOD", help="default: the published row of the run's preset"
    )
    check.add_argument(
        "--tolerance", metavar="R1=1.5,mAP=1.5", help="points per figure (default 1.5 each)"
    )
    table = actions.add_parser("table", help="Markdown report and CMC plot of runs")
    table.add_argument("runs", type=_path, nargs="+", metavar="RUN")
    table.add_argument("--against", action="append", default=[], metavar="SOURCE:METHOD")
    table.add_argument("--out", type=_path, required=True, metavar="DIR")
    table.add_argument("--force", action="store_true", help="replace report.md / cmc.png")
    curves = actions.add_parser(
        "curves", help="training curves of run folders: losses, rates, speed, mAP (PNG)"
    )
    curves.add_argument("runs", type=_path, nargs="+", metavar="RUN", help="training run folder")
    curves.add_argument("--out", type=_path, required=True, metavar="curves.png")
    curves.add_argument("--force", action="store_true", help="replace the PNG if it exists")
    ranks = actions.add_parser("ranks", help="queries beside their top-10 gallery images (PNG)")
    ranks.add_argument("features", type=_path, metavar="FEATURES.npz")
    ranks.add_argument("--data-root", type=_path, required=True, metavar="ROOT")
    ranks.add_argument("--queries", type=int, default=6, metavar="N", help="default 6")
    ranks.add_argument("--seed", type=int, default=0, help="seed of the random queries")
    ranks.add_argument("--out", type=_path, required=True, metavar="ranks.png")
    ranks.add_argument("--force", action="store_true", help="replace the PNG if it exists")
    ranks.add_argument(
        "--direction",
        choices=["i2v", "v2i", "v2t", "t2v"],
        help="LLCM i2v (default) or v2i, RegDB v2t (default) or t2v; SYSU-MM01: i2v",
    )
    ranks.add_argument("--trial", type=int, metavar="T", help="RegDB: the features' trial")
    gold = actions.add_parser(
        "golden", help="re-run the golden SynthVI runs and compare with results/golden"
    )
    gold.add_argument("--update", action="store_true", help="rewrite the golden record")
    rep = actions.add_parser(
        "reproduce",
        help="train, extract, score every protocol, record and check a preset (resumable)",
    )
    rep.add_argument("--preset", required=True, metavar="P", help="preset name or .toml file")
    rep.add_argument("--data-root", type=_path, required=True, metavar="ROOT")
    rep.add_argument(
        "--pretrained", type=_path, required=True, metavar="W", help="ResNet-50 weights"
    )
    rep.add_argument("--out", type=_path, metavar="DIR", help="default runs/reproduce-<P>")
    rep.add_argument("--split", type=_path, metavar="rand_perm_cam.mat", help="SYSU official draw")
    rep.add_argument("--against", metavar="SOURCE:METHOD", help="default: the preset's row")
    rep.add_argument("--tolerance", metavar="R1=1.5,mAP=1.5")
    rep.add_argument("--trials", type=int, default=10, help="RegDB trials (default 10)")
    rep.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
        help="override a config field of the preset (repeatable)",
    )  # fmt: skip


def _fields(args: argparse.Namespace, *names: str) -> dict[str, object]:
    """``{name: args.name}``: the parsed options a command function takes under the same names."""
    return {name: getattr(args, name) for name in names}


def _dispatch_results(args: argparse.Namespace) -> int:
    from reference.results import commands as results

    if args.results_command == "check":
        return results.results_check(run=args.run, against=args.against, tolerance=args.tolerance)
    if args.results_command == "table":
        return results.results_table(
            runs=args.runs, against=args.against, out=args.out, force=args.force
        )
    if args.results_command == "curves":
        return results.results_curves(runs=args.runs, out=args.out, force=args.force)
    if args.results_command == "golden":
        return results.results_golden(update=args.update)
    if args.results_command == "reproduce":
        return results.results_reproduce(
            preset=args.preset, data_root=args.data_root, pretrained=args.pretrained,
            out=args.out, split=args.split, against=args.against, tolerance=args.tolerance,
            trials=args.trials, overrides=args.overrides,
        )  # fmt: skip
    return results.results_ranks(
        **_fields(
            args, "features", "data_root", "queries", "out", "seed", "force", "direction", "trial"
        )
    )


def _add_audit(commands: _Subparsers) -> None:
    audit = commands.add_parser("audit", help="where another implementation differs, by kind")
    what = audit.add_subparsers(dest="audit_command", required=True, metavar="WHAT")

    def reports(p: argparse.ArgumentParser) -> None:
        p.add_argument("--expect", type=_path, metavar="FILE", help="known deviations (TOML)")
        p.add_argument("--markdown", type=_path, metavar="OUT.md", help="write the Markdown report")
        p.add_argument("--json", type=_path, metavar="OUT.json", help="write the JSON report")
        p.add_argument("--force", action="store_true", help="replace report files that exist")

    target_help = "package.module:function or path/to/file.py:function"
    ev = what.add_parser("eval", help="audit an evaluation function on the battery")
    ev.add_argument("target", metavar="TARGET", help=target_help)
    ev.add_argument("--protocol", choices=["sysu", "regdb", "market", "llcm"], default="sysu")
    ev.add_argument("--adapter", choices=["distance", "similarity", "torchreid"])
    ev.add_argument(
        "--scale", type=float, default=1.0, help="examples per probe x SCALE (default 1)"
    )
    reports(ev)
    lo = what.add_parser("loss", help="audit a loss: value and gradient on generated batches")
    lo.add_argument("name", choices=["tri", "hctri", "ca", "mml", "mdl", "id"], metavar="NAME")
    lo.add_argument("target", metavar="TARGET", help=target_help)
    lo.add_argument("--adapter", choices=["plain", "tags", "halves"])
    lo.add_argument(
        "--scale", type=float, default=1.0, help="examples per probe x SCALE (default 1)"
    )
    reports(lo)
    fe = what.add_parser("features", help="re-score features and compare with claimed figures")
    fe.add_argument("features", type=_path, metavar="F.npz")
    fe.add_argument("--protocol", choices=["sysu", "regdb", "market", "llcm"], required=True)
    fe.add_argument("--claimed", required=True, metavar="R1=..,mAP=..", help="in percent")
    fe.add_argument("--tolerance", type=float, default=0.5, help="points of percent (default 0.5)")
    fe.add_argument("--trials", type=int, default=10, help="SYSU-MM01, LLCM trials (default 10)")
    fe.add_argument("--direction", choices=["i2v", "v2i"], help="LLCM's (default i2v)")
    reports(fe)


def _dispatch_audit(args: argparse.Namespace) -> int:
    from reference.audit import commands as audit

    files = audit.ReportFiles(args.expect, args.markdown, args.json, args.force)
    if args.audit_command == "eval":
        return audit.audit_eval_command(
            target=args.target,
            protocol=args.protocol,
            adapter=args.adapter,
            scale=args.scale,
            files=files,
        )
    if args.audit_command == "loss":
        return audit.audit_loss_command(
            name=args.name, target=args.target, adapter=args.adapter, scale=args.scale, files=files
        )
    return audit.audit_features_command(
        features=args.features,
        protocol=args.protocol,
        claimed=args.claimed,
        tolerance=args.tolerance,
        trials=args.trials,
        files=files,
        direction=args.direction,
    )


#: ``vireid model summary`` flags that override the fields of ``--config`` (when given)
_MODEL_FLAGS = ("kind", "num_classes", "share_from", "last_stride", "depth", "derived_routing")


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "results":
        return _dispatch_results(args)
    if args.command == "audit":
        return _dispatch_audit(args)
    if args.command == "evaluate":
        from reference.evaluation import commands as evaluation

        common = _fields(args, "features", "example", "metric", "force")
        common["json_out"] = args.json
        common["rerank"] = evaluation.rerank_settings(args.rerank, args.k1, args.k2, args.lambda_)
        own = _fields(args, *evaluation.PROTOCOLS[args.protocol].options)
        return evaluation.evaluate(args.protocol, **own, **common)
    if args.command == "train":
        from reference.training.commands import train_command

        return train_command(
            **_fields(args, "preset", "data_root", "trial", "pretrained", "out", "resume"),
            **_fields(args, "force", "deterministic", "val_ids", "monitor_test"),
            overrides=tuple(args.overrides),
        )
    if args.command == "synth":
        from reference.data.commands import synth_command

        return synth_command(
            layout=args.layout, out=args.out, ids=args.ids, seed=args.seed, force=args.force
        )
    if args.command == "model":
        from reference.models.commands import summary_command

        overrides = _fields(args, *_MODEL_FLAGS)
        return summary_command(
            config_file=args.config, overrides=overrides, pretrained=args.pretrained, size=args.size
        )
    if args.command == "demo":
        from reference.training.commands import demo_command

        return demo_command(out=args.out, cache=args.cache, device=args.device, force=args.force)
    if args.command == "extract":
        from reference.training.commands import extract_command

        return extract_command(
            **_fields(args, "checkpoint", "data_root", "out", "trial", "flip", "batch_size"),
            **_fields(args, "device", "force"),
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
