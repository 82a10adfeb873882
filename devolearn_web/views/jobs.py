"""The jobs API: submit an upload as a job, follow it, fetch its result or a download, cancel it."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request, url_for

from devolearn_web.analysis import Limits, check_download_size
from devolearn_web.config import request_size_limit
from devolearn_web.downloads import check_format
from devolearn_web.errors import BadParameter, JobNotFinished, JobNotFound, JobsUnavailable
from devolearn_web.jobs import work
from devolearn_web.jobs.assembly import TRACK_FORMATS, job_assembly_fields
from devolearn_web.jobs.intake import check_upload
from devolearn_web.jobs.settings import JobSettings
from devolearn_web.options import PredictOptions
from devolearn_web.registry import get_registry
from devolearn_web.views.api import FORM_FIELDS, refuse_query_fields, refuse_unknown_fields

bp = Blueprint("jobs", __name__)
EXTENSION_KEY = "devolearn_jobs"
JOB_FIELDS = ("model", "file", *FORM_FIELDS)
DOWNLOAD_FORMATS = ("csv", "tiff", "probability-tiff", "png", "zip", *TRACK_FORMATS)


def init_app(app: Flask) -> None:
    """The app's job engine: RQ when REDIS_URL is set, else an in-process pool."""
    settings = JobSettings.from_config(app.config)
    if app.config.get("REDIS_URL"):
        from devolearn_web.jobs.rq_engine import RQEngine, connect

        engine = RQEngine(settings, connect(app.config["REDIS_URL"]))
    else:
        from devolearn_web.jobs.local import LocalEngine
        from devolearn_web.registry import EXTENSION_KEY as REGISTRY_KEY

        engine = LocalEngine(
            settings, app.extensions[REGISTRY_KEY], int(app.config.get("JOB_THREADS", 1))
        )
    app.extensions[EXTENSION_KEY] = engine


def get_engine():
    """The current app's job engine (jobs.local.LocalEngine or jobs.rq_engine.RQEngine)."""
    return current_app.extensions[EXTENSION_KEY]


def _store_errors():
    # Redis errors mean the queue is unreachable: a 503 with a sentence, never a 500.
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - redis is a serving requirement
        return ()
    return (RedisError,)


@bp.post("/api/v1/jobs")
def submit_job():
    """Take an upload as a job: 202 with its id and status URL (Location), or a 4xx sentence."""
    engine = get_engine()
    config = current_app.config
    refuse_query_fields()
    g.upload_limit_bytes = config["JOB_MAX_UPLOAD_BYTES"]  # named by werkzeug's 413
    request.max_content_length = request_size_limit(config["JOB_MAX_UPLOAD_BYTES"])
    request.spool_dir = os.path.join(engine.settings.jobs_dir, "uploads")
    refuse_unknown_fields(JOB_FIELDS)
    registry = get_registry()
    model = (request.form.get("model") or "").strip()
    if model not in registry.names:
        raise BadParameter(
            f"The field 'model' must name a model: one of {', '.join(registry.names)}"
            f"{'' if model else ' (it was missing)'}."
        )
    task = registry.card(model).task
    options = _parse_options(request.form, task, model)
    upload = request.files.get("file")
    if upload is None:
        raise BadParameter("No file was sent: attach it in the multipart form field 'file'.")
    size = check_upload(upload.stream, upload.filename, engine.settings, options, model)
    job_id = uuid.uuid4().hex
    record = {
        "id": job_id,
        "model": model,
        "state": "queued",
        "done": 0,
        "total": None,
        "error": None,
        "created_at": time.time(),
        "expires_at": None,
        "filename": upload.filename,
        "bytes": size,
        "options": options,
    }
    try:
        engine.check_available()
        engine.store.create(job_id, record, engine.settings.max_lifetime_s)
        engine.store.put_blob_from_file(job_id, work.INPUT, upload.stream)
        engine.submit(job_id)
    except _store_errors() as error:
        raise JobsUnavailable() from error
    finally:
        upload.stream.close()  # the spooled copy is gone now; the store holds the input
    status_url = url_for("jobs.job_status", job_id=job_id)
    response = jsonify({"id": job_id, "state": "queued", "status_url": status_url})
    response.status_code = 202
    response.headers["Location"] = status_url
    return response


def _parse_options(form, task: str, model: str) -> dict:
    """The predict fields a job keeps, checked as predict checks them (a 400 naming the field)."""
    options = PredictOptions.from_form(form)
    if options.format not in ("json", *TRACK_FORMATS):  # tracks: PredictOptions checks them
        check_format(options.format, task, 1)
    return {
        "threshold": options.threshold,
        "axes": options.axes,
        "channel": options.channel,
        "frame": options.frame,  # checked against the frames once decoded
        "format": options.format,
        # The page asks for figures, so a job's answer is drawn as predict's (Plotly dicts).
        "figures": options.figures,
        "scale": {
            "diameter": options.scale.diameter,
            "pixel_size_um": options.scale.pixel_size_um,
        },
        "assembly": job_assembly_fields(options.assembly, model, options.frame),
    }


def _record(job_id: str) -> dict:
    if not job_id.isalnum() or len(job_id) != 32:
        raise JobNotFound()
    try:
        record = get_engine().store.get(job_id)
    except _store_errors() as error:
        raise JobsUnavailable() from error
    if record is None:
        raise JobNotFound()
    return record


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


@bp.get("/api/v1/jobs/<job_id>")
def job_status(job_id: str):
    """The job's state, progress (frames done of total), error sentence and result URL."""
    record = _record(job_id)
    return jsonify(
        {
            "id": record["id"],
            "model": record["model"],
            "state": record["state"],
            "progress": {"done": record.get("done", 0), "total": record.get("total")},
            "error": record.get("error"),
            "result_url": url_for("jobs.job_result", job_id=job_id),
            "expires_at": _iso(record.get("expires_at")),
        }
    )


def _finished(job_id: str) -> dict:
    record = _record(job_id)
    state = record["state"]
    if state == "finished":
        return record
    if state == "failed":
        raise JobNotFinished(f"The job failed, so it has no results: {record.get('error')}")
    if state == "cancelled":
        raise JobNotFinished("The job was cancelled, so it has no results.")
    total = record.get("total")
    done = f" ({record.get('done', 0)} of {total} frames done)" if total else ""
    raise JobNotFinished(f"The job is {state}{done}; ask again when its state is 'finished'.")


@bp.get("/api/v1/jobs/<job_id>/result")
def job_result(job_id: str):
    """The finished job's answer: the same JSON as predict gives for a stack."""
    _finished(job_id)
    body = get_engine().store.get_blob(job_id, work.RESULT)
    if body is None:
        raise JobNotFound("This job's results have expired and were deleted.")
    return Response(body, mimetype="application/json")


@bp.get("/api/v1/jobs/<job_id>/download/<requested>")
def job_download(job_id: str, requested: str):
    """One download of the finished job (csv, tiff, probability-tiff, png, zip; ctc and
    tracks-csv for a job sent with track=true)."""
    record = _finished(job_id)
    if requested not in DOWNLOAD_FORMATS:
        raise BadParameter(
            f"The format '{requested[:20]}' is not known; choose one of: "
            f"{', '.join(DOWNLOAD_FORMATS)}."
        )
    task = get_registry().card(record["model"]).task
    check_download_size(requested, record.get("voxels", 0), Limits.of(current_app.config))
    body, media_type, filename = work.download(get_engine().store, job_id, requested, task)
    response = Response(body, mimetype=media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.delete("/api/v1/jobs/<job_id>")
def cancel_job(job_id: str):
    """Cancel the job (queued or running) and delete its input and results: 204."""
    _record(job_id)
    try:
        get_engine().cancel(job_id)
    except _store_errors() as error:
        raise JobsUnavailable() from error
    return Response(status=204)
