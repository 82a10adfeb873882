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
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import onnxruntime
from flask import Flask, current_app
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from devolearn_web.catalogue import MODEL_NAMES, entry
from devolearn_web.cpu_features import has_any_flag
from devolearn_web.errors import ModelUnavailable
from devolearn_web.file_digest import file_sha256
from devolearn_web.model_cards import CardError, ModelCard, parse_card
from devolearn_web.optimized_models import optimized_copy

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run: its card and its ONNX Runtime session."""

    name: str
    card: ModelCard
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
        # Each model's card as last parsed, with the bytes it was parsed from: a card is parsed
        # and checked once per version of its file, however often it is asked for.
        self._cards: dict[str, tuple[bytes, ModelCard]] = {}
        # Failed loads, remembered with the file's (size, mtime) so a fixed file is retried.
        self._failures: dict[str, tuple[tuple, str]] = {}

    def card(self, name: str) -> ModelCard:
        """The model's typed card; UnknownModel or ModelUnavailable when it cannot be read."""
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
        entry(name)  # UnknownModel, listing the catalogue's models

    def _read_card(self, name: str) -> ModelCard:
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
            data = path.read_bytes()
            cached = self._cards.get(name)
            if cached is not None and cached[0] == data:
                return cached[1]
            card = json.loads(data.decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelUnavailable(
                f"The {name} model's card {path.name} cannot be read ({error})."
            ) from error
        try:
            parsed = parse_card(name, card)
        except CardError as error:
            raise ModelUnavailable(
                f"The {name} model's card {path.name} is not valid: {error}."
            ) from error
        self._cards[name] = (data, parsed)
        return parsed

    def _model_path(self, name: str, card: ModelCard) -> Path:
        return self._served_file(name, card)[0]

    def _served_file(self, name: str, card: ModelCard) -> tuple[Path, str | None]:
        """(path, expected sha256) of the file to serve: the card's int8 file when its
        `quantized` section says `serve`, this CPU has what it requires and the file is there,
        else the float32 `file`."""
        quantized = int8_section_to_serve(card)
        if quantized is not None:
            path = self.models_dir / quantized["file"]
            if path.is_file():
                return path, quantized.get("sha256")
            logger.warning("Model %s: %s is missing, serving the float32 file", name, path.name)
        return self.models_dir / card.file, card.sha256

    def _verify_model_file(self, name: str, card: ModelCard) -> None:
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

    def _session_for(self, name: str, path: Path, card: ModelCard) -> onnxruntime.InferenceSession:
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
        self, name: str, data: bytes | str, card: ModelCard, optimized: bool = False
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
        if card.input.name not in inputs:
            raise ModelUnavailable(
                f"The {name} model has inputs {inputs}, not '{card.input.name}' as its card says."
            )
        if card.output.name not in outputs:
            raise ModelUnavailable(
                f"The {name} model has outputs {outputs}, not '{card.output.name}' "
                "as its card says."
            )
        return session


def card_problem(name: str, card: object) -> str | None:
    """What is wrong with a card for the fields the app relies on, or None."""
    try:
        parse_card(name, card)
    except CardError as error:
        return str(error)
    return None


def quantized_section(card: Mapping) -> dict | None:
    """The card's `quantized` section when it tells the app to serve that file, else None."""
    section = card.get("quantized")
    if not isinstance(section, dict) or section.get("serve") is not True:
        return None
    file_name = section.get("file")
    if not isinstance(file_name, str) or not file_name or Path(file_name).name != file_name:
        return None
    return section


def int8_section_to_serve(card: Mapping) -> dict | None:
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
