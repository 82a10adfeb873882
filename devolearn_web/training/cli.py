"""Command line: python -m devolearn_web.training <command> --model {membrane,nucleus,lineage}."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from devolearn_web.catalogue import MODEL_NAMES
from devolearn_web.training.layout import Workspace
from devolearn_web.training.specs import DEFAULT_THRESHOLD, REFERENCE_NETWORK_NAMES

# CPU-friendly simulation sizes: (train, validation, test seeds, time points or frames per seed).
DEFAULT_SIMULATION = {
    "nucleus": (6, 2, 2, 12),
    "membrane": (6, 2, 2, 12),
    "lineage": (24, 4, 4, 40),
}


THRESHOLD_HELP = "default: the card's output.default_threshold (where the app starts), else 0.5"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, choices=sorted(MODEL_NAMES))
    parser.add_argument("--data-root", type=Path, default=Path("data"))
    parser.add_argument("--runs-root", type=Path, default=Path("runs"))
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--docs-images-dir", type=Path, default=Path("docs/images"))
    parser.add_argument("--threads", type=int, default=2, help="torch / onnxruntime threads")


def _processes_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="simulate / preprocess in this many processes (the files are the same)",
    )


def _simulate_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("simulation")
    group.add_argument("--train-seeds", type=at_least_one, help="embryos for training (seeds 0..)")
    group.add_argument(
        "--validation-seeds", type=at_least_one, help="embryos for validation (1000..)"
    )
    group.add_argument("--test-seeds", type=at_least_one, help="embryos for testing (2000..)")
    group.add_argument(
        "--timepoints", type=at_least_one, help="time points (lineage: frames) per embryo"
    )
    group.add_argument("--shape", type=int, nargs="+", help="Z H W (lineage: H W) of the images")
    group.add_argument("--no-projections", action="store_true", help="nucleus: slices only")
    group.add_argument(
        "--projection-seeds",
        type=int,
        default=0,
        help="nucleus: extra training embryos (seeds 500..) seen only as projections",
    )
    group.add_argument(
        "--uneven-nuclei",
        type=float,
        default=0.0,
        help="nucleus: share of the training images whose nuclei each keep their own "
        "brightness, down to a tenth (validation and test stay even)",
    )
    group.add_argument(
        "--uneven-projections-only",
        action="store_true",
        help="nucleus: only the projections get --uneven-nuclei; slices stay even, since one "
        "slice cannot tell a dim nucleus from the out-of-focus light of a bright one",
    )
    group.add_argument(
        "--label-visible-caps",
        action="store_true",
        help="nucleus: also label each nucleus in the next slice, where its out-of-focus light "
        "shows (every split)",
    )


def _tune_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("tuning (Optuna)")
    group.add_argument("--trials", type=int, default=20, help="completed trials to reach")
    group.add_argument("--data-fraction", type=float, default=0.1)
    group.add_argument("--trial-epochs", type=int, default=2)
    group.add_argument(
        "--trial-images",
        type=int,
        default=192,
        help="training images per trial (steps = this / batch size): caps each trial's cost",
    )
    group.add_argument("--trial-validation-images", type=int, default=48)


def _train_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--minutes", type=float, default=60.0, help="total budget, across resumes")
    group.add_argument("--max-epochs", type=int, default=100)
    group.add_argument("--max-steps", type=int, help="total optimiser steps, across resumes")
    group.add_argument("--learning-rate", type=float, help="default: tuned, else 1e-3")
    group.add_argument("--batch-size", type=int, help="default: tuned, else 8")
    group.add_argument("--checkpoint-minutes", type=float, default=5.0)
    group.add_argument("--validation-limit", type=int, help="validate on this many images")
    group.add_argument("--no-augment", action="store_true")
    group.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    group.add_argument("--fresh", action="store_true", help="discard the checkpoint, start over")
    group.add_argument(
        "--gap-weight",
        type=float,
        default=0.0,
        help="segmentation: extra cross-entropy weight on the one-pixel gaps between touching "
        "objects (0: none)",
    )
    group.add_argument(
        "--small-object-weight",
        type=float,
        default=0.0,
        help="segmentation: extra cross-entropy weight on objects under 50 px (at 256x256) and "
        "the 2 px around them (0: none)",
    )
    group.add_argument(
        "--zoom-range",
        type=float,
        help="segmentation: objects zoomed from 1/Z to Z (default: augment.ZOOM_RANGE, real "
        "microscopes' sizes; about 1.15 covers what the app's working grid leaves after "
        "sizing the embryo)",
    )
    group.add_argument(
        "--aspect-range",
        type=float,
        help="segmentation: rows stretched against columns by up to this factor (default: "
        "augment.ASPECT_RANGE; 1: never)",
    )
    group.add_argument(
        "--resolution-augmentation",
        action="store_true",
        help="lineage: also train on views softened as uploads at other pixel sizes give them "
        "(downscaled and re-enlarged, blurred, smeared along one axis)",
    )
    group.add_argument(
        "--no-object-dimming",
        action="store_true",
        help="segmentation: no dimming of single objects in augmentation (for data simulated "
        "with --uneven-nuclei, whose labels already agree with its dim nuclei)",
    )
    group.add_argument(
        "--projection-repeats",
        type=int,
        default=1,
        help="nucleus: list each whole-embryo projection this many times in an epoch (each "
        "with its own augmentation), to weigh projections against the many slices",
    )
    group.add_argument(
        "--tight-crops",
        type=share,
        default=0.0,
        help="segmentation: share of training views cut to one box on a dark canvas, as the "
        "app frames an upload cropped tight around part of an embryo",
    )
    group.add_argument(
        "--freeze-batch-norm",
        action="store_true",
        help="keep the BatchNorm statistics of --init-from's network (small-batch fine-tunes)",
    )
    group.add_argument(
        "--init-from",
        type=Path,
        help="a new run starts from this ONNX file's weights (e.g. the shipped model) "
        "instead of random ones",
    )


def _precision_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast (default: on where the CPU computes bfloat16 natively, "
        "AVX-512 BF16 or AMX, and on CUDA; emulated it is ~25x slower than float32)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        default="cpu",
        help="where to train (auto: a CUDA GPU when PyTorch sees one)",
    )


def _evaluate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples-dir", type=Path, default=Path("../shared/samples"))
    parser.add_argument("--threshold", type=float, help=THRESHOLD_HELP)


def share(text: str) -> float:
    """An argparse type: a share from 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, got {text}")
    return value


def at_least_one(text: str) -> int:
    """An argparse type: a whole number of at least 1 (0 would quietly mean the default)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def at_least_zero(text: str) -> int:
    """An argparse type: a whole number of 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per pipeline step."""
    parser = argparse.ArgumentParser(
        prog="python -m devolearn_web.training",
        description="Simulate data, train, tune, export and evaluate the DevoLearn models.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {
        "simulate": "write simulated train/validation/test datasets (disjoint seeds)",
        "preprocess": "256x256 lossless PNGs + index.csv from dataset folders",
        "tune": "Optuna study over learning rate and batch size",
        "train": "train (resumes runs/<model>/checkpoint.pt)",
        "export": "best checkpoint -> models/<model>.onnx (+ card)",
        "calibrate": "lineage: fit the count calibration on the training split, re-evaluate",
        "evaluate": "measure the ONNX file on the test split and the real samples",
        "card": "write models/<model>.json from the run's records",
        "import": "a state_dict or an original devolearn-web ONNX file -> models/ + card",
        "all": "every step in order; a rerun resumes",
        "benchmark": "seconds per training step, bfloat16 and float32 side by side",
        "quantize": "int8 models/<model>.int8.onnx, adopted only if test accuracy holds",
        "split-search": "score ways of splitting touching objects on the validation split",
        "ceiling": "the best the architecture's output could score: fitted to the test labels",
        "score-checkpoint": "score a training checkpoint (any --network) on the test split",
        "bioimageio": "models/<model>.onnx + card -> a BioImage.IO model package (zip)",
    }
    sub = {name: commands.add_parser(name, help=helps[name]) for name in RUNNERS}
    for name, parser_ in sub.items():
        _common(parser_)
        parser_.set_defaults(func=RUNNERS[name])
    _simulate_args(sub["simulate"])
    sub["simulate"].add_argument("--force", action="store_true", help="delete and redo")
    for name in ("simulate", "preprocess", "all"):
        _processes_arg(sub[name])
    preprocess = sub["preprocess"]
    for split in ("train", "validation", "test"):
        preprocess.add_argument(f"--{split}", type=Path, help=f"{split} dataset folder")
    preprocess.add_argument("--size", type=int, default=256)
    preprocess.add_argument("--force", action="store_true", help="redo an existing index")
    preprocess.add_argument(
        "--train-empty-ends",
        type=at_least_zero,
        default=0,
        help="keep this many empty slices past each end of the train stacks (default 0)",
    )
    _tune_args(sub["tune"])
    _precision_args(sub["tune"])
    _train_args(sub["train"])
    _precision_args(sub["train"])
    sub["train"].add_argument(
        "--network",
        choices=REFERENCE_NETWORK_NAMES,
        help="segmentation: train this reference network instead of the model's own, to "
        "measure it with score-checkpoint (export refuses it); use another --runs-root",
    )
    sub["export"].add_argument("--float32", action="store_true", help="store float32 weights")
    sub["export"].add_argument(
        "--blend-with",
        type=Path,
        help="the ONNX file the run started from (--init-from): ship a blend of the two weights",
    )
    sub["export"].add_argument(
        "--blend-weight",
        type=share,
        help="with --blend-with: how far from that file towards the fine-tune (0-1)",
    )
    _evaluate_args(sub["evaluate"])
    _evaluate_args(sub["calibrate"])
    sub["evaluate"].add_argument("--onnx", type=Path, help="default: models/<model>.onnx")
    sub["evaluate"].add_argument(
        "--update-card",
        action="store_true",
        help="also put the metrics into models/<model>.json if it describes the measured file",
    )
    sub["evaluate"].add_argument(
        "--real-samples-only",
        action="store_true",
        help="measure only the real samples, through the app (seconds); --update-card then "
        "replaces only the card's metrics.real_samples",
    )
    for name in ("export", "card", "import", "all"):
        sub[name].add_argument("--version", default="1.0.0", help="the card's version")
    source = sub["import"].add_mutually_exclusive_group(required=True)
    source.add_argument("--state-dict", type=Path, help="a .pt/.pth state_dict")
    source.add_argument("--onnx", type=Path, help="an original devolearn-web ONNX file")
    sub["import"].add_argument(
        "--append-sigmoid",
        action=argparse.BooleanOptionalAction,
        help="state_dict only; default: yes for segmentation, no for lineage",
    )
    everything = sub["all"]
    _simulate_args(everything)
    _tune_args(everything)
    _train_args(everything)
    _precision_args(everything)
    _evaluate_args(everything)
    everything.add_argument("--no-tune", action="store_true", help="skip the Optuna study")
    quantize = sub["quantize"]
    quantize.add_argument("--calibration-images", type=int, default=64)
    quantize.add_argument("--threshold", type=float, help=THRESHOLD_HELP)
    quantize.add_argument(
        "--calibration-method", choices=("MinMax", "Percentile", "Entropy"), default="MinMax"
    )
    search = sub["split-search"]
    search.add_argument("--images", type=int, default=300, help="validation maps to score")
    search.add_argument("--threshold", type=float, help=THRESHOLD_HELP)
    ceiling = sub["ceiling"]
    ceiling.add_argument("--split", default="test", choices=("train", "validation", "test"))
    ceiling.add_argument("--steps", type=int, default=300, help="Adam steps of each fit")
    ceiling.add_argument("--threshold", type=float, help=THRESHOLD_HELP)
    ceiling.add_argument(
        "--update-card", action="store_true", help="also put it into models/<model>.json"
    )
    scoring = sub["score-checkpoint"]
    scoring.add_argument("--checkpoint", type=Path, help="default: runs/<model>/best.pt")
    scoring.add_argument("--threshold", type=float, help=THRESHOLD_HELP)
    scoring.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    package = sub["bioimageio"]
    package.add_argument(
        "--out", type=Path, help="default: <runs-root>/<model>/<model>.bioimageio.zip"
    )
    package.add_argument("--examples-dir", type=Path, default=Path("static/examples"))
    bench = sub["benchmark"]
    bench.add_argument("--batch-size", type=int, default=8)
    bench.add_argument("--side", type=int, default=256)
    bench.add_argument("--steps", type=int, default=5)
    bench.add_argument("--warmup", type=int, default=2)
    return parser


def workspace_from(args: argparse.Namespace) -> Workspace:
    """The folders of the chosen model from the common flags."""
    return Workspace(
        model=args.model,
        data_root=args.data_root,
        runs_root=args.runs_root,
        models_dir=args.models_dir,
        docs_images_dir=args.docs_images_dir,
    )


def simulation_plan(args: argparse.Namespace):
    """The SimulationPlan of the simulation flags, model defaults filling the gaps."""
    from devolearn_web.training.simulate import SimulationPlan, plan_seeds

    train, validation, test, timepoints = DEFAULT_SIMULATION[args.model]
    seeds = plan_seeds(
        args.train_seeds or train, args.validation_seeds or validation, args.test_seeds or test
    )
    return SimulationPlan(
        model=args.model,
        seeds=seeds,
        timepoints=args.timepoints or timepoints,
        shape=args.shape,
        projections=not args.no_projections,
        projection_seeds=args.projection_seeds,
        uneven_nuclei=args.uneven_nuclei,
        uneven_projections_only=args.uneven_projections_only,
        visible_caps=args.label_visible_caps,
    )


def tune_settings(args: argparse.Namespace):
    """TuneSettings from the tuning flags."""
    from devolearn_web.training.tune import TuneSettings

    return TuneSettings(
        trials=args.trials,
        data_fraction=args.data_fraction,
        trial_epochs=args.trial_epochs,
        trial_images=args.trial_images,
        validation_limit=args.trial_validation_images,
        bf16=use_bfloat16(args),
        threads=args.threads,
        seed=args.seed,
        device=args.device,
    )


def use_bfloat16(args: argparse.Namespace) -> bool:
    """--bf16 / --no-bf16 as given, else whether this CPU (or CUDA) computes bfloat16 natively."""
    if args.bf16 is not None:
        return args.bf16
    if args.device == "cuda":
        return True
    if args.device == "auto":
        import torch

        if torch.cuda.is_available():
            return True
    from devolearn_web.cpu_features import bfloat16_is_native

    return bfloat16_is_native()


def train_settings(args: argparse.Namespace):
    """TrainSettings from the training flags."""
    from devolearn_web.training.train import TrainSettings

    return TrainSettings(
        minutes=args.minutes,
        max_epochs=args.max_epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        bf16=use_bfloat16(args),
        threads=args.threads,
        checkpoint_minutes=args.checkpoint_minutes,
        validation_limit=args.validation_limit,
        augment=not args.no_augment,
        seed=args.seed,
        workers=args.workers,
        fresh=args.fresh,
        device=args.device,
        init_from=getattr(args, "init_from", None),
        gap_weight=getattr(args, "gap_weight", 0.0),
        small_object_weight=getattr(args, "small_object_weight", 0.0),
        network=getattr(args, "network", None),
        freeze_batch_norm=getattr(args, "freeze_batch_norm", False),
        resolution_augmentation=getattr(args, "resolution_augmentation", False),
        object_dimming=not getattr(args, "no_object_dimming", False),
        projection_repeats=getattr(args, "projection_repeats", 1),
        tight_crops=getattr(args, "tight_crops", 0.0),
        **{
            name: value
            for name in ("zoom_range", "aspect_range")
            if (value := getattr(args, name, None)) is not None
        },
    )


def card_threshold(workspace: Workspace, given: float | None) -> float:
    """The threshold given, else the shipped card's default (where the app starts), else 0.5."""
    if given is not None:
        return given
    if workspace.card_path.exists():
        card = json.loads(workspace.card_path.read_text(encoding="utf-8"))
        default = card.get("output", {}).get("default_threshold")
        if default is not None:
            return float(default)
    return DEFAULT_THRESHOLD


# One function per sub-command, set on its parser with set_defaults(func=...). Each imports
# only what it needs: `simulate` never loads torch, `evaluate` no optuna.


def _simulate(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.simulate import simulate

    return simulate(workspace, simulation_plan(args), force=args.force, processes=args.processes)


def _preprocess(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.index import split_sizes
    from devolearn_web.training.preprocess import preprocess

    given = {s: getattr(args, s) for s in ("train", "validation", "test") if getattr(args, s)}
    if given and len(given) != 3:
        raise ValueError("give all three of --train, --validation and --test, or none")
    index = preprocess(
        workspace,
        given or None,
        size=args.size,
        force=args.force,
        processes=args.processes,
        train_empty_ends=args.train_empty_ends,
    )
    return {"index": index.as_posix(), "images": split_sizes(index)}


def _tune(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.tune import tune

    return tune(workspace, tune_settings(args))


def _train(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.train import train

    return asdict(train(workspace, train_settings(args)))


def _export(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.shipping import export_trained_model, write_trained_card

    if (args.blend_with is None) != (args.blend_weight is None):
        raise ValueError("--blend-with and --blend-weight go together: give both or neither")
    record = export_trained_model(
        workspace,
        float16_storage=not args.float32,
        blend_with=args.blend_with,
        blend_weight=1.0 if args.blend_weight is None else args.blend_weight,
    )
    write_trained_card(workspace, args.version)
    return record


def _calibrate(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.calibrate import calibrate

    return calibrate(workspace, args.threads, args.samples_dir)


def _evaluate(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.evaluate import (
        evaluate,
        evaluate_real_samples_only,
        update_card_metrics,
        update_card_real_samples,
    )

    measure = (args.onnx, args.samples_dir, args.threshold, args.threads)
    if args.real_samples_only:
        record = evaluate_real_samples_only(workspace, *measure)
        if args.update_card:
            record["card_updated"] = update_card_real_samples(workspace, record)
        return record
    metrics = evaluate(workspace, *measure)
    if args.update_card:
        metrics["card_updated"] = update_card_metrics(workspace, metrics)
    return metrics


def _card(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.shipping import write_trained_card

    return write_trained_card(workspace, args.version)


def _import(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.importing import import_original_onnx, import_state_dict

    if args.state_dict:
        return import_state_dict(workspace, args.state_dict, args.append_sigmoid, args.version)
    return import_original_onnx(workspace, args.onnx, args.version)


def _all(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.pipeline import PipelineSettings, run_all

    settings = PipelineSettings(
        simulation=simulation_plan(args),
        tune=None if args.no_tune else tune_settings(args),
        train=train_settings(args),
        samples_dir=args.samples_dir,
        threshold=args.threshold,
        version=args.version,
        processes=args.processes,
    )
    return run_all(workspace, settings)


def _benchmark(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.benchmark import time_training_steps

    return time_training_steps(
        args.model, args.batch_size, args.side, args.steps, args.warmup, args.threads
    )


def _quantize(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.quantize import quantize

    return quantize(
        workspace,
        args.calibration_images,
        args.threshold,
        args.threads,
        method=args.calibration_method,
    )


def _split_search(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.split_search import main_table

    return main_table(workspace, args.images, args.threshold, args.threads)


def _bioimageio(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.package import write_bioimageio_package

    return write_bioimageio_package(workspace, args.out, args.examples_dir)


def _ceiling(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.ceiling import measure_ceiling, put_ceiling_in_card

    record = measure_ceiling(workspace, args.split, args.steps, args.threshold, args.threads)
    if args.update_card:
        record["card_updated"] = put_ceiling_in_card(workspace, record)
    return record


def _score_checkpoint(args: argparse.Namespace, workspace: Workspace) -> object:
    from devolearn_web.training.score_checkpoint import score_checkpoint

    return score_checkpoint(workspace, args.checkpoint, args.threshold, args.device, args.threads)


RUNNERS = {
    "simulate": _simulate,
    "preprocess": _preprocess,
    "tune": _tune,
    "train": _train,
    "export": _export,
    "calibrate": _calibrate,
    "evaluate": _evaluate,
    "card": _card,
    "import": _import,
    "all": _all,
    "benchmark": _benchmark,
    "quantize": _quantize,
    "split-search": _split_search,
    "ceiling": _ceiling,
    "score-checkpoint": _score_checkpoint,
    "bioimageio": _bioimageio,
}


def run_command(args: argparse.Namespace) -> object:
    """Run one parsed command; returns what it produced (printed as JSON)."""
    workspace = workspace_from(args)
    if hasattr(args, "threshold"):
        args.threshold = card_threshold(workspace, args.threshold)
    return args.func(args, workspace)


def main(argv: list[str] | None = None) -> int:
    """Parse, run, print the result as JSON; a known failure prints one line and returns 1."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from devolearn_web.training.command_records import record_command

    # Recorded first, so a card written during this very command (export, all) names it.
    if args.command not in ("benchmark", "bioimageio"):  # neither changes a model
        record_command(workspace_from(args), args.command, argv)
    try:
        result = run_command(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0
