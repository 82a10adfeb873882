"""Int8 static quantization (ONNX Runtime QDQ, per-channel), adopted only when accuracy holds.

The float32 model is quantized with activation ranges calibrated on simulated training images,
then both files are measured on the test split with the evaluation's own functions. The int8
file goes to models/<name>.int8.onnx, and the card gets a `quantized` section telling the app
to serve it, only when every acceptance rule holds (see Acceptance). Either way the verdict and
both accuracies are written to runs/<model>/quantization.json. The card's own metrics (those of
the float32 file) are left as they are.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from devolearn_web.cpu_features import SATURATION_FREE_INT8_FLAGS, int8_sums_saturate
from devolearn_web.file_digest import file_sha256
from devolearn_web.segmentation import label_instances
from devolearn_web.training.cards import write_card
from devolearn_web.training.dataset import lineage_input
from devolearn_web.training.evaluate import evaluate_lineage, evaluate_segmentation
from devolearn_web.training.images import read_unit_image
from devolearn_web.training.index import read_index
from devolearn_web.training.layout import Workspace
from devolearn_web.training.onnx_runner import OnnxModel
from devolearn_web.training.specs import (
    DEFAULT_THRESHOLD,
    LINEAGES,
    counts_from_scaled,
    get_spec,
)

logger = logging.getLogger(__name__)

CALIBRATION_IMAGES = 64
CALIBRATION_SPLIT = "train"
# The output's sigmoid, and the layers from the last convolution (or Gemm) to it, stay float32:
# logits read in 1/255 steps of their range would move pixels across the threshold, and these
# layers cost little next to the encoder.
FLOAT_OUTPUT_OPS = ("Sigmoid",)
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
# ONNX Runtime's calibration method (a CalibrationMethod name) and each method's settings.
DEFAULT_CALIBRATION_METHOD = "MinMax"
CALIBRATION_OPTIONS = {"Percentile": {"CalibPercentile": 99.999}}


@dataclass(frozen=True)
class Acceptance:
    """When an int8 model may replace the float32 one (all must hold on the test split).

    Segmentation: test IoU drops by at most `max_iou_drop`; the object count (as the app counts:
    split nuclei, connected cells) is identical on at least `min_same_count_fraction` of the
    test images, and differs by at most `max_mean_abs_count_difference` on average.
    Lineage: no lineage's mean absolute error (against the truth) grows by more than
    `max_lineage_mae_increase` cells, and in every lineage the int8 count differs from the
    float32 count by at most `max_lineage_mean_abs_count_difference` cells on average (rounded
    counts of up to 250 cells move by one now and then; they must not drift).
    """

    max_iou_drop: float = 0.01
    min_same_count_fraction: float = 0.95
    max_mean_abs_count_difference: float = 0.1
    max_lineage_mae_increase: float = 0.5
    max_lineage_mean_abs_count_difference: float = 0.5


def float32_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with float16-stored weights (initialiser -> Cast to float32) made float32 again.

    The quantizer calibrates and quantizes weights it can read as initialisers; behind a Cast
    it would treat them as activations.
    """
    graph = model.graph
    initialisers = {item.name: item for item in graph.initializer}
    kept_nodes, folded = [], set()
    for node in graph.node:
        source = initialisers.get(node.input[0]) if node.op_type == "Cast" else None
        to_float = any(a.name == "to" and a.i == TensorProto.FLOAT for a in node.attribute)
        if source is not None and source.data_type == TensorProto.FLOAT16 and to_float:
            values = numpy_helper.to_array(source).astype(np.float32)
            graph.initializer.append(numpy_helper.from_array(values, node.output[0]))
            folded.add(source.name)
            continue
        kept_nodes.append(node)
    still_used = {name for node in kept_nodes for name in node.input}
    remaining = [
        item for item in graph.initializer if item.name not in folded or item.name in still_used
    ]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    del graph.initializer[:]
    graph.initializer.extend(remaining)
    return model


def network_inputs(model: str, index_csv: Path, split: str, count: int, seed: int = 0):
    """float32 (N, C, 256, 256) network inputs of `count` random images of a split."""
    rows = read_index(index_csv, split)
    if not rows:
        raise ValueError(f"the {split} split of {index_csv} is empty")
    chosen = random.Random(seed).sample(rows, min(count, len(rows)))
    images = [read_unit_image(index_csv.parent / row["image"]) for row in chosen]
    if get_spec(model).is_segmentation:
        return np.stack(images)[:, None].astype(np.float32)
    return np.stack([lineage_input(image) for image in images]).astype(np.float32)


def quantize_file(
    float_path: Path,
    int8_path: Path,
    calibration: np.ndarray,
    method: str = DEFAULT_CALIBRATION_METHOD,
    float_prefixes: tuple[str, ...] = (),
    unsigned_weights: bool = False,
) -> Path:
    """Write the int8 QDQ model of a float ONNX file (per-channel int8 weights, uint8
    activations whose ranges `method` calibrates on `calibration`, float32 (N, C, H, W)).

    unsigned_weights: uint8 weights (U8U8), whose products ONNX Runtime sums exactly on every
    CPU; int8 weights (U8S8) are faster with VNNI but saturate without it (cpu_features.py)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(calibration[i : i + 1] for i in range(len(calibration)))

        def get_next(self) -> dict | None:
            item = next(self._items, None)
            return None if item is None else {"input": item}

    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        plain = Path(scratch) / "float32.onnx"
        prepared = Path(scratch) / "prepared.onnx"
        onnx.save(float32_weights(onnx.load(str(float_path))), str(plain))
        # The symbolic shape pass fails on this graph's Resize nodes; ONNX's own inference
        # (still run) is enough for the quantizer.
        quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
        prepared_model = onnx.load(str(prepared))
        excluded = output_head_nodes(prepared_model) + [
            node.name for node in prepared_model.graph.node if node.name.startswith(float_prefixes)
        ]
        int8_path.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(
            str(prepared),
            str(int8_path),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8 if unsigned_weights else QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod[method],
            extra_options=CALIBRATION_OPTIONS.get(method, {}),
        )
    return int8_path


def output_head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of each output sigmoid and the nodes back to (and with) the last weighted layer."""
    producers = {output: node for node in model.graph.node for output in node.output}
    excluded = []
    for node in model.graph.node:
        if node.op_type not in FLOAT_OUTPUT_OPS:
            continue
        excluded.append(node.name)
        current = producers.get(node.input[0])
        while current is not None:
            excluded.append(current.name)
            if current.op_type in WEIGHTED_OPS:
                break
            current = producers.get(current.input[0])
    return excluded


class CountingModel:
    """Wraps an OnnxModel for evaluate_segmentation and records each image's object count."""

    def __init__(self, onnx_model: OnnxModel, model: str, threshold: float) -> None:
        self.onnx_model = onnx_model
        self.model = model
        self.threshold = threshold
        self.counts: list[int] = []

    def run(self, inputs: np.ndarray) -> np.ndarray:
        probabilities = self.onnx_model.run(inputs)
        for probability in probabilities[:, 0]:
            self.counts.append(int(label_instances(self.model, probability, self.threshold).max()))
        return probabilities


def measure_file(
    model: str,
    path: Path,
    index_csv: Path,
    threshold: float,
    threads: int,
    calibration: dict | None = None,
) -> tuple[dict, np.ndarray]:
    """(test-split metrics as the evaluation reports them, per-image counts) of one ONNX file.

    Counts: objects per image for segmentation (as the app counts them), int (N,); cells per
    lineage for lineage, int (N, 7).
    """
    if get_spec(model).is_segmentation:
        counting = CountingModel(OnnxModel(path, threads), model, threshold)
        metrics = evaluate_segmentation(model, counting, index_csv, threshold)
        return metrics, np.asarray(counting.counts)
    onnx_model = OnnxModel(path, threads)
    metrics = evaluate_lineage(onnx_model, index_csv, calibration)
    inputs = network_inputs(model, index_csv, "test", count=len(read_index(index_csv, "test")))
    return metrics, counts_from_scaled(onnx_model.run(inputs), calibration)


def compare(model: str, reference: tuple[dict, np.ndarray], candidate: tuple[dict, np.ndarray]):
    """How the int8 candidate's test metrics and per-image counts differ from the float32 ones."""
    (float_metrics, float_counts), (int8_metrics, int8_counts) = reference, candidate
    test = {"float32": float_metrics, "int8": int8_metrics}
    if get_spec(model).is_segmentation:
        difference = np.abs(int8_counts - float_counts)
        return {
            "test": test,
            "iou_drop": float_metrics["iou"] - int8_metrics["iou"],
            "same_count_fraction": float((difference == 0).mean()),
            "mean_abs_count_difference": float(difference.mean()),
            "max_abs_count_difference": int(difference.max()),
        }
    increase = {name: int8_metrics["mae"][name] - float_metrics["mae"][name] for name in LINEAGES}
    return {
        "test": test,
        "mae_increase": increase,
        "max_mae_increase": max(increase.values()),
        "same_count_fraction": float((int8_counts == float_counts).all(axis=1).mean()),
        "mean_abs_count_difference": {
            name: float(value)
            for name, value in zip(
                LINEAGES, np.abs(int8_counts - float_counts).mean(axis=0), strict=True
            )
        },
    }


def verdict(model: str, comparison: dict, rules: Acceptance) -> list[str]:
    """The acceptance rules the int8 model breaks (an empty list: adopt it)."""
    broken = []
    if get_spec(model).is_segmentation:
        if comparison["same_count_fraction"] < rules.min_same_count_fraction:
            broken.append(
                f"counts identical on {comparison['same_count_fraction']:.1%} of test images "
                f"(< {rules.min_same_count_fraction:.0%})"
            )
        if comparison["iou_drop"] > rules.max_iou_drop:
            broken.append(f"IoU drops by {comparison['iou_drop']:.4f} (> {rules.max_iou_drop})")
        if comparison["mean_abs_count_difference"] > rules.max_mean_abs_count_difference:
            broken.append(
                f"mean count difference {comparison['mean_abs_count_difference']:.3f} "
                f"(> {rules.max_mean_abs_count_difference})"
            )
        return broken
    if comparison["max_mae_increase"] > rules.max_lineage_mae_increase:
        broken.append(
            f"a lineage's MAE grows by {comparison['max_mae_increase']:.2f} cells "
            f"(> {rules.max_lineage_mae_increase})"
        )
    drift = max(comparison["mean_abs_count_difference"].values())
    if drift > rules.max_lineage_mean_abs_count_difference:
        broken.append(
            f"a lineage's count moves by {drift:.2f} cells on average "
            f"(> {rules.max_lineage_mean_abs_count_difference})"
        )
    return broken


def _measured_elsewhere(section: object, sums_saturate_here: bool) -> bool:
    """True for a card's int8 section that only a CPU unlike this one could have measured."""
    return (
        sums_saturate_here and isinstance(section, dict) and bool(section.get("requires_cpu_flags"))
    )


def int8_file_name(model: str) -> str:
    return f"{model}.int8.onnx"


@dataclass(frozen=True)
class Recipe:
    """One way to quantize: node-name prefixes kept float32 besides the output head."""

    name: str
    float_prefixes: tuple[str, ...] = ()


# Tried in order, the fastest first; the first one that passes the rules is adopted. Keeping the
# FPN decoder float32 halves the gain but leaves the fine detail that splits nuclei untouched.
RECIPES = {
    "segmentation": (
        Recipe("int8 everywhere"),
        Recipe("int8 encoder, float32 decoder", ("/network/decoder/",)),
    ),
    "lineage": (Recipe("int8 everywhere"),),
}


def quantize(
    workspace: Workspace,
    calibration_images: int = CALIBRATION_IMAGES,
    threshold: float = DEFAULT_THRESHOLD,
    threads: int = 2,
    rules: Acceptance = Acceptance(),
    method: str = DEFAULT_CALIBRATION_METHOD,
) -> dict:
    """Quantize models/<model>.onnx by each recipe in turn; adopt the first that keeps `rules`."""
    model = workspace.model
    card_path = workspace.models_dir / f"{model}.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    float_path = workspace.models_dir / card["file"]
    if file_sha256(float_path) != card["sha256"]:
        raise ValueError(f"{float_path} does not match its card's sha256; export it again")
    calibration = network_inputs(model, workspace.index_csv, CALIBRATION_SPLIT, calibration_images)
    # Lineage counts are compared as the app reads them, through the card's calibration.
    counting = (workspace.index_csv, threshold, threads, card["output"].get("calibration"))
    reference = measure_file(model, float_path, *counting)
    candidate = workspace.run_dir / "int8-candidate.onnx"
    # Where U8S8 sums saturate (x86 without VNNI), uint8 weights are used: exact on every CPU,
    # so the file runs everywhere as measured here. Elsewhere int8 weights (faster with VNNI)
    # are measured exactly, and the app serves that file only on CPUs that compute it so.
    portable = int8_sums_saturate()
    attempts, adopted = [], None
    for recipe in RECIPES[get_spec(model).task]:
        quantize_file(
            float_path,
            candidate,
            calibration,
            method,
            recipe.float_prefixes,
            unsigned_weights=portable,
        )
        measured = measure_file(model, candidate, *counting)
        comparison = compare(model, reference, measured)
        broken = verdict(model, comparison, rules)
        attempts.append(
            {
                "recipe": recipe.name,
                "method": (
                    f"ONNX Runtime quantize_static, QDQ, per-channel "
                    f"{'uint8 (U8U8)' if portable else 'int8'} weights, uint8 "
                    f"activations, {method} calibration on {len(calibration)} "
                    f"{CALIBRATION_SPLIT} images; the last weighted layer and the sigmoid kept "
                    f"float32"
                    + (f", and {', '.join(recipe.float_prefixes)}" if recipe.float_prefixes else "")
                ),
                "comparison": comparison,
                "rejected_because": broken,
            }
        )
        if not broken:
            adopted = attempts[-1]
            break
        logger.warning("int8 %s (%s) not adopted: %s", model, recipe.name, "; ".join(broken))
    record = {
        "model": model,
        "float32_file": float_path.name,
        "float32_sha256": card["sha256"],
        "acceptance": asdict(rules),
        "attempts": attempts,
        "adopted": adopted is not None,
        "int8_sums_saturate_on_this_cpu": portable,
    }
    if adopted is not None:
        target = workspace.models_dir / int8_file_name(model)
        shutil.copyfile(candidate, target)
        card["quantized"] = {
            "file": target.name,
            "sha256": file_sha256(target),
            "serve": True,
            "recipe": adopted["recipe"],
            "method": adopted["method"],
            "size_bytes": target.stat().st_size,
            "test_metrics": adopted["comparison"]["test"],
            "acceptance": record["acceptance"],
        }
        if not portable:
            card["quantized"]["requires_cpu_flags"] = list(SATURATION_FREE_INT8_FLAGS)
        write_card(card, card_path)
        record["int8_file"] = target.as_posix()
    elif _measured_elsewhere(card.get("quantized"), portable):
        # An int8 file that needs exact int8 sums was measured on a CPU that has them; this
        # one cannot stand in for it, so its verdict stays (the app serves it only there).
        record["kept_earlier_int8_file"] = card["quantized"]["file"]
    elif card.pop("quantized", None) is not None:  # an earlier int8 file no longer fits
        write_card(card, card_path)
    workspace.run_dir.mkdir(parents=True, exist_ok=True)
    (workspace.run_dir / "quantization.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
