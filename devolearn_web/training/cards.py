"""Model cards (models/<name>.json): build them from a run's records and check them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from devolearn_web.catalogue import TRAINING_RANGE
from devolearn_web.lineage_counts import calibration_problem
from devolearn_web.training.specs import (
    DEFAULT_THRESHOLD,
    LINEAGE_MAXIMA,
    LINEAGES,
    MODEL_SIDE,
    MODEL_SPECS,
    ModelSpec,
)

CARD_VERSION = "1.0.0"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Says where output.default_threshold came from while no metrics of the card were measured at
# it: a new file starts from the threshold of the card it replaces (see carried_over_threshold).
THRESHOLD_SOURCE = "default_threshold_source"

_SIMULATED_ONLY = (
    "Trained only on simulated images of a digital embryo, never on real microscopy: the test "
    "metrics are measured on simulated embryos the model never saw and say little about "
    "real data."
)
LIMITATIONS = {
    "nucleus": [
        _SIMULATED_ONLY,
        "On real data it was checked on one image only (embryo_sample.png, no ground truth): "
        "compare its counts with your own before trusting them.",
        "Uploads are brought to the working grid (input.working_grid): the embryo's long axis "
        "along x and nuclei at the size the network was trained at, from a diameter you give, "
        "the pixel size, or the embryo's length and then the nuclei found. The network saw "
        "only the simulator's framing in training, so a scale estimate that is off shows in "
        "the count; in dense late embryos a nucleus is 5 to 10 grid pixels across and touching "
        "nuclei may merge.",
        "The slices of a z-stack share one grid, chosen on the whole embryo; a single slice "
        "near the embryo's top or bottom, uploaded alone, shows little embryo to size it by: "
        "give the nucleus diameter (or the pixel size) for such an image.",
        "Touching nuclei are separated by a watershed of the distance map weighted by the "
        "network's probability, which can split an elongated, dividing nucleus in two.",
        "A nucleus the slice cuts near its top or bottom shows as a small, dim, blurred disc and "
        "is often missed: metrics.test.seg_by_reference_area gives SEG by object size.",
    ],
    "membrane": [
        _SIMULATED_ONLY,
        "On real data it was checked on one image only (seg_sample.jpg, no ground truth).",
        "Where the network misses a membrane, touching cells are separated by a "
        "distance-transform watershed, which can leave two flat cells merged or cut a long one "
        "in two; a cell cut twice by the slice counts twice.",
        "Uploads are brought to the working grid (input.working_grid): the embryo's long axis "
        "along x and cells at the size the network was trained at, from a diameter you give, "
        "the pixel size, or the embryo's length and then the cells found; the network saw only "
        "the simulator's framing in training.",
    ],
    "lineage": [
        _SIMULATED_ONLY,
        "Populations are read from a 2D image of a 3D embryo: cells hidden behind others are "
        "inferred, not seen.",
        f"Trained up to the stage where lineage A has {TRAINING_RANGE['A']} cells; later "
        "stages are extrapolation.",
        "Unlike the original DevoLearn model this network ends in a sigmoid, so every output "
        "stays in [0, 1] and no count exceeds its lineage's maximum.",
        "Counts are read through a calibration curve per lineage fitted on simulated training "
        "embryos (output.calibration): it undoes the network's pull towards the middle of each "
        "range on simulated data, and may over- or under-correct on real images.",
    ],
}

# What a nucleus model taught on `simulate --label-visible-caps` labels draws, and so counts.
VISIBLE_CAPS_MEANING = (
    "per-pixel probability that the pixel belongs to a nucleus, or to the out-of-focus light "
    "of a nucleus just above or below the slice where the slice shows it"
)
VISIBLE_CAPS_LIMITATION = (
    "A slice's count includes the nuclei just above or below it whose out-of-focus light the "
    "slice shows (training_data.visible_caps): on one slice such light and a dim nucleus look "
    "alike, so the model was taught to draw what the slice shows. For a whole embryo's count "
    "use a z-stack's 3D count (stacks), which joins the pieces of a nucleus across slices."
)


def build_card(
    spec: ModelSpec,
    *,
    sha256: str,
    opset: int,
    activation: str,
    training_data: dict,
    metrics: dict,
    hyperparameters: dict,
    reproduce: str,
    limitations: list[str],
    training_plot: str | None = None,
    version: str = CARD_VERSION,
    export: dict | None = None,
    architecture: str | None = None,
    calibration: dict | None = None,
) -> dict:
    """A model card in the layout of docs/model-cards.md."""
    visible_caps = bool(training_data.get("visible_caps"))
    output: dict = {
        "name": "output",
        "activation": activation,
        "meaning": VISIBLE_CAPS_MEANING if visible_caps else spec.output_meaning,
    }
    if spec.is_segmentation:
        # Where the metrics were measured, so the slider starts at the figures' threshold.
        output["default_threshold"] = metrics.get("threshold", DEFAULT_THRESHOLD)
    else:
        output.update(
            lineages=list(LINEAGES),
            maxima=list(LINEAGE_MAXIMA),
            training_range={"A": LINEAGE_MAXIMA[0]},
        )
        if calibration:
            output["calibration"] = calibration
    card = {
        "name": spec.name,
        "title": spec.title,
        "version": version,
        "task": spec.task,
        "architecture": architecture or spec.architecture,
        "file": f"{spec.name}.onnx",
        "sha256": sha256,
        "opset": opset,
        "input": {
            "name": "input",
            "size": [MODEL_SIDE, MODEL_SIDE],
            "channels": spec.channels,
            "normalisation": spec.normalisation,
            "description": spec.input_description,
            **spec.framing,
        },
        "output": output,
        "training_data": training_data,
        "metrics": metrics,
        "hyperparameters": hyperparameters,
    }
    if training_plot:
        card["training_plot"] = training_plot
    if export:
        card["export"] = export
    card["reproduce"] = reproduce
    card["limitations"] = [*limitations, VISIBLE_CAPS_LIMITATION] if visible_caps else limitations
    return card


def read_card(path: Path) -> dict | None:
    """The card at path; None when there is none or it is not a JSON object."""
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def carried_over_threshold(replaced: dict | None, sha256: str) -> dict:
    """The output fields a new, unmeasured file takes from the card it replaces, if any.

    That card's threshold was chosen for the model this one replaces: a better start than the
    global 0.5, and what later steps measure at. The note says it was not chosen for this file.
    """
    output = (replaced or {}).get("output")
    threshold = output.get("default_threshold") if isinstance(output, dict) else None
    if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        return {}
    if replaced.get("sha256") == sha256:  # the same file: its threshold and any note stay true
        kept = ("default_threshold", THRESHOLD_SOURCE)
        return {key: output[key] for key in kept if key in output}
    source = (
        f"carried over from the card this one replaced (version {replaced.get('version')}, "
        f"sha256 {str(replaced.get('sha256'))[:12]}...); not re-chosen for this file"
    )
    return {"default_threshold": threshold, THRESHOLD_SOURCE: source}


def validate_card(card: dict) -> list[str]:
    """Problems that would break the app or mislead a reader; an empty list means valid."""
    problems = []
    name = card.get("name")
    if name not in MODEL_SPECS:
        return [f"name must be one of {sorted(MODEL_SPECS)}, got {name!r}"]
    spec = MODEL_SPECS[name]
    expected = {"task": spec.task, "file": f"{name}.onnx"}
    problems += [f"{k} must be {v!r}" for k, v in expected.items() if card.get(k) != v]
    for key in ("title", "version", "architecture", "reproduce"):
        if not isinstance(card.get(key), str) or not card[key]:
            problems.append(f"{key} must be a non-empty string")
    if not SHA256.match(str(card.get("sha256", ""))):
        problems.append("sha256 must be 64 lowercase hex digits")
    if not isinstance(card.get("opset"), int) or card["opset"] < 11:
        problems.append("opset must be an integer of at least 11")
    problems += _input_problems(card.get("input", {}), spec)
    problems += _output_problems(card.get("output", {}), spec)
    data = card.get("training_data", {})
    if not isinstance(data.get("simulated"), bool) or not data.get("description"):
        problems.append("training_data needs simulated (true/false) and a description")
    for key in ("metrics", "hyperparameters"):
        if not isinstance(card.get(key), dict):
            problems.append(f"{key} must be an object")
    limitations = card.get("limitations")
    if not limitations or not all(isinstance(item, str) and item for item in limitations):
        problems.append("limitations must be a non-empty list of sentences")
    return problems


def _input_problems(block: dict, spec: ModelSpec) -> list[str]:
    problems = []
    if block.get("name") != "input":
        problems.append("input.name must be 'input'")
    if block.get("size") != [MODEL_SIDE, MODEL_SIDE]:
        problems.append(f"input.size must be [{MODEL_SIDE}, {MODEL_SIDE}]")
    if block.get("channels") != spec.channels:
        problems.append(f"input.channels must be {spec.channels}")
    if block.get("normalisation") not in ("unit", "symmetric"):
        problems.append("input.normalisation must be 'unit' or 'symmetric'")
    return problems


def _output_problems(block: dict, spec: ModelSpec) -> list[str]:
    problems = []
    if block.get("name") != "output":
        problems.append("output.name must be 'output'")
    if block.get("activation") not in ("none", "sigmoid"):
        problems.append("output.activation must be 'none' or 'sigmoid'")
    if spec.is_segmentation:
        threshold = block.get("default_threshold")
        if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            problems.append("output.default_threshold must be between 0 and 1")
        if THRESHOLD_SOURCE in block and not (
            isinstance(block[THRESHOLD_SOURCE], str) and block[THRESHOLD_SOURCE]
        ):
            problems.append(f"output.{THRESHOLD_SOURCE} must be a sentence")
    else:
        if block.get("lineages") != list(LINEAGES):
            problems.append(f"output.lineages must be {list(LINEAGES)}")
        if block.get("maxima") != list(LINEAGE_MAXIMA):
            problems.append(f"output.maxima must be {list(LINEAGE_MAXIMA)}")
        if not isinstance(block.get("training_range"), dict):
            problems.append("output.training_range must be an object such as {'A': 250}")
        if "calibration" in block:
            problem = calibration_problem(block["calibration"], LINEAGES)
            problems += [problem] if problem else []
    return problems


def write_card(card: dict, path: Path) -> Path:
    """Write a card after checking it; raises ValueError listing its problems."""
    problems = validate_card(card)
    if problems:
        raise ValueError("invalid model card: " + "; ".join(problems))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path
