"""The JSON API: list the models, run one on an upload, describe itself, report health."""

from __future__ import annotations

import difflib

from flask import Blueprint, current_app, jsonify, request

from devolearn_web.admission import admit
from devolearn_web.budget import Deadline
from devolearn_web.downloads import safe_stem
from devolearn_web.errors import BadParameter, TooLarge
from devolearn_web.figures import build_figures
from devolearn_web.memory_estimate import estimate_bytes, probe_upload
from devolearn_web.openapi import openapi_document
from devolearn_web.pipelines import predict_bytes
from devolearn_web.registry import get_registry
from devolearn_web.scale import parse_scale_request
from devolearn_web.stack_assembly import parse_assembly_request
from devolearn_web.stacks import parse_channel
from devolearn_web.views.frames import answer_frames_or_file, needs_frames_or_file, parse_format
from devolearn_web.views.held import answer_held, filter_for, filtered, hold, object_filters

bp = Blueprint("api", __name__)
# The predict endpoint's options (openapi.py): read from the multipart form only.
FORM_FIELDS = (
    "threshold",
    "diameter",
    "pixel_size_um",
    "include",
    "format",
    "axes",
    "channel",
    "frame",
    "progress",
    "assemble",
    "track",
    "z_step_um",
    "result",
    "min_area",
    "exclude",
    "projection",
)


@bp.get("/api/v1/models")
def list_models():
    """Every model's card, with "ready" and "problem" added."""
    return jsonify({"models": get_registry().cards()})


@bp.post("/api/v1/predict/<name>")
def predict_upload(name: str):
    """Run a model on the multipart field `file`; optional fields `threshold` and `include`."""
    # The budget starts with the request: receiving the upload counts against a router's limit.
    deadline = Deadline(current_app.config["JOB_TIME_BUDGET_SECONDS"])
    registry = get_registry()
    task = registry.card(name).task  # 404 for an unknown model before looking at the upload
    refuse_query_fields()
    refuse_unknown_fields()
    threshold = parse_threshold(request.form.get("threshold"))
    upload = request.files.get("file")
    held_key = (request.form.get("result") or "").strip()
    if held_key:
        if upload is not None:
            raise BadParameter(
                "Send either a file or the 'result' id of an earlier answer, not both."
            )
        requested = parse_format(request.form.get("format"))
        return answer_held(held_key, threshold, request.form, requested)
    if upload is None:
        raise BadParameter("No image was sent: attach it in the multipart form field 'file'.")
    data = upload.read()
    limit = current_app.config["MAX_UPLOAD_BYTES"]
    if len(data) > limit:
        raise TooLarge(
            f"The file is {len(data) / 1e6:.1f} MB; this server accepts up to {limit / 1e6:g} MB."
        )
    admit_model_run(data, task, request.form)
    if needs_frames_or_file(data, request.form):  # stacks, movies, CSV/TIFF/PNG/ZIP downloads
        return answer_frames_or_file(
            registry, name, data, upload.filename, threshold, request.form, deadline
        )
    result, image = predict_bytes(
        registry,
        name,
        data,
        filename=upload.filename,
        threshold=threshold,
        max_pixels=current_app.config["MAX_IMAGE_PIXELS"],
        deadline=deadline,
        channel=parse_channel(request.form.get("channel")),
        scale_request=parse_scale_request(request.form),
    )
    result = filtered(result, filter_for(object_filters(request.form, None), 0))
    answer = result.to_json()
    if "figures" in parse_include(request.form.get("include")):
        answer.update(build_figures(result, image))
    answer.update(hold(name, task, safe_stem(upload.filename, name), [result]))
    return jsonify(answer)


@bp.get("/api/v1/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of this API."""
    return jsonify(openapi_document())


@bp.get("/healthz")
def healthz():
    """ "ok" when every model is ready, "degraded" otherwise, with each model's status."""
    models = get_registry().status()
    healthy = all(state["ready"] for state in models.values())
    return jsonify({"status": "ok" if healthy else "degraded", "models": models})


def admit_model_run(data: bytes, task: str, form) -> None:
    """Hold the memory this run will need from the worker's budget (devolearn_web.admission),
    estimated from the upload's headers: it waits, or is a 503 or 413, before any decoding."""
    config = current_app.config
    shape = probe_upload(data, config["MAX_STACK_VOXELS"])
    limits = (
        config["MAX_IMAGE_PIXELS"],
        config["MAX_STACK_VOXELS"],
        config["MAX_STACK_FRAMES"],
    )
    if shape is not None and not shape.within(*limits):
        shape = None  # the decoder refuses it with its own sentence, after a small effort
    figures = "figures" in parse_include(form.get("include"))
    answer = parse_format(form.get("format"))
    if answer == "json" and parse_assembly_request(form).wanted:
        answer = "zip"  # 3D nuclei and tracks hold every frame's labels, as a ZIP download does
    need = estimate_bytes(len(data), shape, task, answer, figures)
    admit(need, shape.phrase() if shape is not None else "this upload")


def refuse_query_fields() -> None:
    """400 for an option sent in the query string, which would otherwise be silently ignored."""
    # One place per option: a script's ?threshold=0.9 must not run at the default unnoticed.
    for key in FORM_FIELDS:
        if key in request.args:
            raise BadParameter(
                f"'{key}' was sent in the query string, which this endpoint does not read: send "
                f"it as a multipart form field next to the file (curl -F {key}=...)."
            )


def refuse_unknown_fields(known: tuple[str, ...] = ("file", *FORM_FIELDS)) -> None:
    """400 for a form field this endpoint does not read, naming the nearest one it does."""
    # A misspelt option (thresold=0.9) would otherwise run at the default unnoticed; the pages
    # and the documented clients send only these fields, so refusing breaks none of them.
    for key in request.form:
        if key in known:
            continue
        # A multipart part may come without a name at all (werkzeug gives None).
        name = key if isinstance(key, str) else ""
        close = difflib.get_close_matches(name, known, n=1) if name else []
        hint = f"; did you mean '{close[0]}'?" if close else "."
        what = f"'{name[:40]}' is not a field" if name else "A form field without a name is not one"
        raise BadParameter(f"{what} this endpoint reads{hint} It reads: {', '.join(known)}.")


def parse_threshold(raw: str | None) -> float | None:
    """The threshold form field as a float in 0..1, None when absent or blank."""
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError as error:
        raise BadParameter(
            f"The threshold must be a number from 0 to 1; '{raw[:40]}' is not a number."
        ) from error
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise BadParameter(f"The threshold must be between 0 and 1; {raw[:40]} is not.")
    return value


def parse_include(raw: str | None) -> set[str]:
    """The comma-separated `include` field as a set of words (only "figures" means anything)."""
    return {word.strip() for word in (raw or "").split(",") if word.strip()}
