"""The JSON API: list the models, run one on an upload, describe itself, report health."""

from __future__ import annotations

import difflib

from flask import Blueprint, current_app, jsonify, request

from devolearn_web.admission import admit
from devolearn_web.analysis import Limits, Upload, analyse
from devolearn_web.budget import Deadline
from devolearn_web.errors import BadParameter, TooLarge
from devolearn_web.memory_estimate import estimate_bytes
from devolearn_web.openapi import openapi_document
from devolearn_web.options import PredictOptions
from devolearn_web.registry import get_registry
from devolearn_web.views.frames import respond
from devolearn_web.views.held import answer_held

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
    """Run a model on the multipart field `file` (or a held `result`), with the form's options."""
    # The budget starts with the request: receiving the upload counts against a router's limit.
    deadline = Deadline(current_app.config["JOB_TIME_BUDGET_SECONDS"])
    registry = get_registry()
    task = registry.card(name).task  # 404 for an unknown model before looking at the upload
    refuse_query_fields()
    refuse_unknown_fields()
    options = PredictOptions.from_form(request.form)
    upload = request.files.get("file")
    if options.result:
        if upload is not None:
            raise BadParameter(
                "Send either a file or the 'result' id of an earlier answer, not both."
            )
        return answer_held(options)
    if upload is None:
        raise BadParameter("No image was sent: attach it in the multipart form field 'file'.")
    data = upload.read()
    limit = current_app.config["MAX_UPLOAD_BYTES"]
    if len(data) > limit:
        raise TooLarge(
            f"The file is {len(data) / 1e6:.1f} MB; this server accepts up to {limit / 1e6:g} MB."
        )
    with Upload(data, upload.filename) as opened:
        admit_model_run(opened, task, options)
        answer = analyse(
            registry, name, task, opened, options, Limits.of(current_app.config), deadline
        )
    return respond(answer)


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


def admit_model_run(upload: Upload, task: str, options: PredictOptions) -> None:
    """Hold the memory this run will need from the worker's budget (devolearn_web.admission),
    estimated from the upload's headers: it waits, or is a 503 or 413, before any decoding."""
    config = current_app.config
    shape = upload.shape(config["MAX_STACK_VOXELS"])
    limits = (
        config["MAX_IMAGE_PIXELS"],
        config["MAX_STACK_VOXELS"],
        config["MAX_STACK_FRAMES"],
    )
    if shape is not None and not shape.within(*limits):
        shape = None  # the decoder refuses it with its own sentence, after a small effort
    answer = options.format
    if answer == "json" and options.assembly.wanted:
        answer = "zip"  # 3D nuclei and tracks hold every frame's labels, as a ZIP download does
    need = estimate_bytes(len(upload.data), shape, task, answer, options.figures)
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
