"""The models and their cards: one ONNX Runtime session per model per process, lazily, locked.

A missing, corrupt or mismatched model never stops the app: that model reports its problem (in
/healthz and as a 503 from its API), the others keep working. A file whose sha256 differs from
its card is refused, because the card's metrics and conventions would then describe some other
network.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import onnxruntime
from flask import Flask, current_app
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from devolearn_web.cpu_features import has_any_flag
from devolearn_web.errors import ModelUnavailable, UnknownModel
from devolearn_web.file_digest import file_sha256
from devolearn_web.lineage_counts import calibration_problem
from devolearn_web.optimized_models import optimized_copy

logger = logging.getLogger(__name__)

MODEL_NAMES = ("membrane", "nucleus", "lineage")
EXTENSION_KEY = "devolearn_registry"
# What ONNX Runtime raises for a bad file or a failed run (none of them subclass each other).
ORT_ERRORS = tuple(
    getattr(ort_state, name)
    for name in (
        "EngineError",
        "EPFail",
        "Fail",
        "InvalidArgument",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoModel",
        "NoSuchFile",
        "NotImplemented",
        "RuntimeException",
    )
)
TASKS = ("segmentation", "lineage")
NORMALISATIONS = ("unit", "symmetric")
ACTIVATIONS = ("none", "sigmoid")


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: its card and its ONNX Runtime session."""

    name: str
    card: dict
    session: onnxruntime.InferenceSession
    file: str = ""  # the file name the session was loaded from (int8 or float32)


class ModelRegistry:
    """Lazy, cached, thread-safe access to the models in one folder."""

    names: tuple[str, ...] = MODEL_NAMES

    def __init__(
        self,
        models_dir: Path,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        optimized_cache_dir: Path | None = None,
        allow_spinning: bool = False,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.allow_spinning = allow_spinning
        # Where this machine's optimised copies of the files are kept (optimized_models.py);
        # None loads the files themselves.
        self.optimized_cache_dir = optimized_cache_dir
        self.load_count: dict[str, int] = {name: 0 for name in self.names}
        self._locks = {name: threading.Lock() for name in self.names}
        self._loaded: dict[str, LoadedModel] = {}
        # Failed loads, remembered with the file's (size, mtime) so a fixed file is retried.
        self._failures: dict[str, tuple[tuple, str]] = {}

    def card(self, name: str) -> dict:
        """The model's card (a dict); UnknownModel or ModelUnavailable when it cannot be read."""
        self._check_name(name)
        if name in self._loaded:
            return self._loaded[name].card
        return self._read_card(name)

    def cards(self) -> list[dict]:
        """Every model's card with its status; a model whose card is unreadable gets its name."""
        answer = []
        for name in self.names:
            state = self.status_of(name)
            try:
                card = dict(self.card(name))
            except ModelUnavailable:
                card = {"name": name}
            card.update(ready=state["ready"], problem=state["problem"])
            answer.append(card)
        return answer

    def get(self, name: str) -> LoadedModel:
        """The loaded model, loading it on first use (once per process, one lock per model)."""
        self._check_name(name)
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        with self._locks[name]:
            loaded = self._loaded.get(name)
            if loaded is None:
                loaded = self._load(name)
                self._loaded[name] = loaded
            return loaded

    def preload(self) -> None:
        """Load every model now; a model that fails is logged and reported, not fatal."""
        for name in self.names:
            try:
                self.get(name)
            except ModelUnavailable as error:
                logger.warning("Model %s is unavailable: %s", name, error.message)

    def close(self) -> None:
        """Release every loaded session now, joining its ONNX Runtime thread pools (a worker
        calls this as it exits, after its last request); a later get() loads the model again."""
        for name in self.names:
            with self._locks[name]:
                self._loaded.pop(name, None)
        gc.collect()  # a session caught in a reference cycle is released now too

    def status(self) -> dict[str, dict]:
        """Per model: {"ready": bool, "loaded": bool, "problem": str | None}."""
        return {name: self.status_of(name) for name in self.names}

    def status_of(self, name: str) -> dict:
        """One model's status, with the file it serves (on this CPU); checks the card and the
        file's sha256 without loading it."""
        loaded = self._loaded.get(name)
        if loaded is not None:
            return {"ready": True, "loaded": True, "problem": None, "file": loaded.file}
        file = None
        try:
            card = self._read_card(name)
            file = self._model_path(name, card).name
            self._verify_model_file(name, card)
            failure = self._failures.get(name)
            if failure and failure[0] == _file_signature(self._model_path(name, card)):
                raise ModelUnavailable(failure[1])
        except ModelUnavailable as error:
            return {"ready": False, "loaded": False, "problem": error.message, "file": file}
        return {"ready": True, "loaded": False, "problem": None, "file": file}

    def _check_name(self, name: str) -> None:
        if name not in self.names:
            valid = ", ".join(self.names)
            raise UnknownModel(f"There is no model called '{name}'. The models are: {valid}.")

    def _read_card(self, name: str) -> dict:
        path = self.models_dir / f"{name}.json"
        if not path.is_file():
            if not (self.models_dir / f"{name}.onnx").is_file():
                missing = f"{name}.onnx and its card {path.name} are"
            else:
                missing = f"its card {path.name} is"
            raise ModelUnavailable(
                f"The {name} model is not installed: {missing} missing "
                "from the server's models folder."
            )
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelUnavailable(
                f"The {name} model's card {path.name} cannot be read ({error})."
            ) from error
        problem = card_problem(name, card)
        if problem:
            raise ModelUnavailable(f"The {name} model's card {path.name} is not valid: {problem}.")
        return card

    def _model_path(self, name: str, card: dict) -> Path:
        return self._served_file(name, card)[0]

    def _served_file(self, name: str, card: dict) -> tuple[Path, str | None]:
        """(path, expected sha256) of the file to serve: the card's int8 file when its
        `quantized` section says `serve`, this CPU has what it requires and the file is there,
        else the float32 `file`."""
        quantized = int8_section_to_serve(card)
        if quantized is not None:
            path = self.models_dir / quantized["file"]
            if path.is_file():
                return path, quantized.get("sha256")
            logger.warning("Model %s: %s is missing, serving the float32 file", name, path.name)
        return self.models_dir / card.get("file", f"{name}.onnx"), card.get("sha256")

    def _verify_model_file(self, name: str, card: dict) -> None:
        """ModelUnavailable unless the model file exists and matches its card's sha256."""
        path = self._model_path(name, card)
        if not path.is_file():
            raise ModelUnavailable(
                f"The {name} model is not installed: {path.name} is missing "
                "from the server's models folder."
            )
        expected = self._served_file(name, card)[1]
        if expected:
            actual = file_sha256(path)
            if actual.lower() != str(expected).lower():
                raise ModelUnavailable(
                    f"The {name} model file {path.name} does not match its card (sha256 "
                    f"{actual[:12]}... instead of {str(expected)[:12]}...): it may be damaged or "
                    "replaced without its card, so it is not used."
                )

    def _load(self, name: str) -> LoadedModel:
        card = self._read_card(name)
        path = self._model_path(name, card)
        signature = _file_signature(path)
        failure = self._failures.get(name)
        if failure and failure[0] == signature:
            raise ModelUnavailable(failure[1])
        try:
            self._verify_model_file(name, card)
            # ONNX Runtime reads the file itself: handing it the bytes costs ~25 MB more peak
            # memory per model (measured with bench); the signature check below keeps the
            # guarantee that the file loaded is the file whose sha256 was checked.
            session = self._session_for(name, path, card)
            if _file_signature(path) != signature:
                raise ModelUnavailable(
                    f"The {name} model file {path.name} changed while it was being loaded; "
                    "it is tried again on the next request."
                )
        except ModelUnavailable as error:
            self._failures[name] = (signature, error.message)
            raise
        self._failures.pop(name, None)
        self.load_count[name] += 1
        logger.info("Loaded model %s from %s", name, path)
        quantized = quantized_section(card)
        if quantized is not None and not int8_runs_as_measured(quantized):
            logger.info(
                "Model %s: this CPU has none of %s, where %s was measured; serving the float32 "
                "file instead",
                name,
                ", ".join(map(str, quantized["requires_cpu_flags"])),
                quantized["file"],
            )
        return LoadedModel(name=name, card=card, session=session, file=path.name)

    def _session_for(self, name: str, path: Path, card: dict) -> onnxruntime.InferenceSession:
        """A session on the checked file, through its optimised copy when there is a cache."""
        expected = self._served_file(name, card)[1]
        if self.optimized_cache_dir is not None and expected:
            copy = optimized_copy(path, str(expected).lower(), self.optimized_cache_dir)
            if copy is not None:
                try:
                    return self._create_session(name, str(copy), card, optimized=True)
                except ModelUnavailable:
                    # A damaged cache entry must not take the model down: drop it, use the file.
                    logger.warning("Discarding the unreadable optimised copy %s", copy)
                    copy.unlink(missing_ok=True)
        return self._create_session(name, str(path), card)

    def _create_session(
        self, name: str, data: bytes | str, card: dict, optimized: bool = False
    ) -> onnxruntime.InferenceSession:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.graph_optimization_level = (
            onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
            if optimized  # already done, for this CPU, by optimized_models.optimized_copy
            else onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        options.log_severity_level = 3  # errors only: ORT's warnings are not the visitor's concern
        # Without the arena a worker gives activation memory back after each run: 60-85 MB
        # less peak with three models, at no measured cost in time (`python -m bench --only
        # options`, docs/performance.md); the memory pattern still plans each run's buffers.
        options.enable_cpu_mem_arena = False
        if not self.allow_spinning:
            # Idle pool threads sleep instead of spinning: the cores go to the request's own
            # postprocessing and to other requests (`python -m bench`, docs/performance.md).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            session = onnxruntime.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except ORT_ERRORS as error:
            raise ModelUnavailable(
                f"The {name} model file cannot be loaded by ONNX Runtime: it is damaged or not "
                f"an ONNX model ({type(error).__name__})."
            ) from error
        inputs = [tensor.name for tensor in session.get_inputs()]
        outputs = [tensor.name for tensor in session.get_outputs()]
        if card["input"].get("name", "input") not in inputs:
            raise ModelUnavailable(
                f"The {name} model has inputs {inputs}, not '{card['input'].get('name')}' "
                "as its card says."
            )
        if card["output"].get("name", "output") not in outputs:
            raise ModelUnavailable(
                f"The {name} model has outputs {outputs}, not '{card['output'].get('name')}' "
                "as its card says."
            )
        return session


def card_problem(name: str, card: object) -> str | None:
    """What is wrong with a card for the fields the app relies on, or None."""
    if not isinstance(card, dict):
        return "it is not a JSON object"
    if card.get("name") != name:
        return f"its name is {card.get('name')!r}, expected {name!r}"
    if card.get("task") not in TASKS:
        return f"task must be one of {TASKS}"
    model_input, output = card.get("input"), card.get("output")
    if not isinstance(model_input, dict) or not isinstance(output, dict):
        return "it needs 'input' and 'output' sections"
    size = model_input.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(_positive_int(s) for s in size)):
        return "input.size must be [height, width]"
    if model_input.get("channels") not in (1, 3):
        return "input.channels must be 1 or 3"
    if model_input.get("normalisation") not in NORMALISATIONS:
        return f"input.normalisation must be one of {NORMALISATIONS}"
    if output.get("activation") not in ACTIVATIONS:
        return f"output.activation must be one of {ACTIVATIONS}"
    file_name = card.get("file", f"{name}.onnx")
    if not isinstance(file_name, str) or Path(file_name).name != file_name:
        return "file must be a plain file name in the models folder"
    if card["task"] == "segmentation":
        threshold = output.get("default_threshold")
        if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            return "output.default_threshold must be a number from 0 to 1"
        if not _working_grid_ok(model_input.get("working_grid")):
            return (
                "input.working_grid needs positive aspect, embryo_length_px and um_per_px, and "
                "object_diameter_px with a median inside its range [low, high]"
            )
    else:
        fill = model_input.get("embryo_fill")
        if not (
            isinstance(fill, dict) and all(_fraction(fill.get(key)) for key in ("length", "width"))
        ):
            return "input.embryo_fill needs length and width, fractions above 0 and up to 1"
        lineages, maxima = output.get("lineages"), output.get("maxima")
        if not (isinstance(lineages, list) and isinstance(maxima, list)):
            return "output.lineages and output.maxima must be lists"
        if len(lineages) != len(maxima) or not lineages:
            return "output.lineages and output.maxima must have the same length"
        if "calibration" in output:
            return calibration_problem(output["calibration"], lineages)
    return None


def _working_grid_ok(grid: object) -> bool:
    if not isinstance(grid, dict):
        return False
    if not all(_positive(grid.get(key)) for key in ("aspect", "embryo_length_px", "um_per_px")):
        return False
    diameter = grid.get("object_diameter_px")
    if not isinstance(diameter, dict) or not _positive(diameter.get("median")):
        return False
    band = diameter.get("range")
    return (
        isinstance(band, list)
        and len(band) == 2
        and all(_positive(value) for value in band)
        and band[0] <= diameter["median"] <= band[1]
    )


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


def _fraction(value: object) -> bool:
    return _positive(value) and value <= 1


def quantized_section(card: dict) -> dict | None:
    """The card's `quantized` section when it tells the app to serve that file, else None."""
    section = card.get("quantized")
    if not isinstance(section, dict) or section.get("serve") is not True:
        return None
    file_name = section.get("file")
    if not isinstance(file_name, str) or not file_name or Path(file_name).name != file_name:
        return None
    return section


def int8_section_to_serve(card: dict) -> dict | None:
    """The card's `quantized` section when its int8 file is to be served on this CPU."""
    section = quantized_section(card)
    return section if section is not None and int8_runs_as_measured(section) else None


def int8_runs_as_measured(section: dict) -> bool:
    """True when this CPU has one of the section's `requires_cpu_flags` (or it needs none).

    The int8 file was accepted on a CPU whose int8 arithmetic is exact (cpu_features.py);
    elsewhere ONNX Runtime computes other answers from it, so the float32 file is served."""
    needed = section.get("requires_cpu_flags")
    if not needed:
        return True
    return isinstance(needed, list) and has_any_flag(str(flag) for flag in needed)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _file_signature(path: Path) -> tuple:
    try:
        stat = path.stat()
    except OSError:
        return ("missing",)
    return (stat.st_size, stat.st_mtime_ns)


def init_app(app: Flask) -> None:
    """Create the app's registry from its config; load every model now if PRELOAD_MODELS."""
    cache = app.config.get("ORT_OPTIMIZED_CACHE_DIR")
    registry = ModelRegistry(
        Path(app.config["MODELS_DIR"]),
        intra_op_threads=int(app.config["ORT_INTRA_OP_THREADS"]),
        inter_op_threads=int(app.config["ORT_INTER_OP_THREADS"]),
        optimized_cache_dir=Path(cache) if cache else None,
        allow_spinning=bool(app.config.get("ORT_ALLOW_SPINNING", False)),
    )
    app.extensions[EXTENSION_KEY] = registry
    if app.config.get("PRELOAD_MODELS"):
        registry.preload()


def get_registry() -> ModelRegistry:
    """The current app's registry."""
    return current_app.extensions[EXTENSION_KEY]
