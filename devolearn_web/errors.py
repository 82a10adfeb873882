"""One family of typed errors carrying their HTTP status, and the one handler rendering them."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, make_response, render_template, request
from PIL import Image
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)

# Paths whose answers are always JSON, whatever the client says it accepts.
JSON_PATH_PREFIXES = ("/api/", "/healthz")
# What a visitor reads when a bug (not their input) stops the work; the traceback is logged.
UNEXPECTED_ERROR_SENTENCE = "Something went wrong on the server; the error has been logged."


class DevoLearnError(Exception):
    """An error a visitor caused or can understand: an HTTP status and a plain sentence."""

    status: int = 500
    message: str = "Something went wrong on the server."

    def __init__(self, message: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message or self.message)
        if message is not None:
            self.message = message
        # Extra response headers, e.g. Retry-After on a 429.
        self.headers = dict(headers or {})


class BadImage(DevoLearnError):
    """The upload is empty, truncated or cannot be decoded."""

    status = 400
    message = "The file could not be read as an image."


class NoEmbryo(DevoLearnError):
    """The image holds no single embryo where a model needs one (the lineage model)."""

    status = 422
    message = "No single embryo was found in the image: crop it to one embryo and try again."


class UnknownModel(DevoLearnError):
    """The URL names a model that does not exist; the message lists the valid names."""

    status = 404
    message = "There is no model by that name."


class TooLarge(DevoLearnError):
    """The upload has too many bytes or too many pixels (decompression bombs included)."""

    status = 413
    message = "The file is too large."


class UnsupportedType(DevoLearnError):
    """The upload is not in one of the accepted image formats."""

    status = 415
    message = "This type of file is not supported."


class BadParameter(DevoLearnError):
    """A form field is missing or out of range."""

    status = 400
    message = "A parameter of the request is not valid."


class ModelUnavailable(DevoLearnError):
    """The model file is missing, corrupt or does not match its card."""

    status = 503
    message = "The model is not available on this server."


class TooManyRequests(DevoLearnError):
    """One client sent more images than the per-client rate limit allows (with Retry-After)."""

    status = 429
    message = "Too many images from your address in a short time; please wait and try again."


class ServerBusy(DevoLearnError):
    """The worker's memory budget is taken by other requests in flight (with Retry-After)."""

    status = 503
    message = "The server is busy with other images right now; please try again shortly."


class TookTooLong(DevoLearnError):
    """The job ran past the server's per-request time budget and was stopped cleanly."""

    status = 503
    message = "The analysis took longer than this server allows for one image and was stopped."


class JobNotFound(DevoLearnError):
    """No job has this id: it never existed, or it expired and was deleted."""

    status = 404
    message = (
        "There is no job with this id: it never existed, or its results expired and were deleted."
    )


class JobNotFinished(DevoLearnError):
    """The job's results were asked for before it finished (409, with its state)."""

    status = 409
    message = "The job has not finished yet; ask again when its state is 'finished'."


class JobsUnavailable(DevoLearnError):
    """The job queue (Redis) cannot be reached: a 503 with a sentence; predict still works."""

    status = 503
    message = (
        "Jobs cannot be taken right now: the job queue is unreachable. Images and stacks that "
        "fit one request can still be analysed; please try the job again in a few minutes."
    )


# Sentences for errors werkzeug raises before our code runs (routing, method, body size).
HTTP_SENTENCES = {
    400: "The request could not be understood.",
    404: "There is no page or API endpoint at this address.",
    405: "This address does not accept that kind of request (HTTP method).",
    413: "The upload is larger than this server accepts.",
    429: "Too many requests from your address in a short time; please wait and try again.",
}


def wants_json() -> bool:
    """True for API paths and for clients that prefer JSON to HTML."""
    if request.path.startswith(JSON_PATH_PREFIXES):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def render_error(status: int, message: str) -> tuple[Response | str, int]:
    """JSON {"status", "error"} for API clients, the error page for browsers."""
    if wants_json():
        return jsonify({"status": status, "error": message}), status
    return render_template("error.html", status=status, message=message), status


def handle_devolearn_error(error: DevoLearnError) -> Response:
    """Render one of our typed errors, with its extra headers."""
    if error.status >= 500:
        logger.warning("%s on %s: %s", type(error).__name__, request.path, error.message)
    response = make_response(render_error(error.status, error.message))
    response.headers.update(error.headers)
    return response


def handle_http_exception(error: HTTPException) -> Response:
    """Render werkzeug's own errors (404, 405, 413...) in the same shape as ours."""
    status = error.code or 500
    message = HTTP_SENTENCES.get(status, error.description or HTTP_SENTENCES[400])
    if status == 413:
        limit = _upload_limit_sentence()
        message = f"{message} {limit}" if limit else message
    response = make_response(render_error(status, message))
    # Keep the headers the status needs, such as Allow on a 405 (RFC 9110).
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def handle_decompression_bomb(error: Image.DecompressionBombError) -> Response:
    """PIL's own bomb guard fired in code that did not expect it: still a 413, not a 500."""
    return handle_devolearn_error(
        TooLarge(
            "The image claims far more pixels than this server analyses (a file this small "
            "cannot hold them: it may be damaged or a decompression bomb)."
        )
    )


def handle_unexpected_error(error: Exception) -> tuple[Response | str, int]:
    """A bug, not bad input: log the traceback and answer a plain 500."""
    logger.exception("Unexpected error on %s", request.path, exc_info=error)
    return render_error(500, UNEXPECTED_ERROR_SENTENCE)


def _upload_limit_sentence() -> str:
    from flask import current_app, g

    # A view with its own limit (the jobs API) names it in g before reading the upload.
    limit = g.get("upload_limit_bytes") or current_app.config.get("MAX_UPLOAD_BYTES")
    if not limit:
        return ""
    return f"The limit is {limit / 1_000_000:g} MB per file."


def register_error_handlers(app: Flask) -> None:
    """Route every error through one renderer."""
    app.register_error_handler(DevoLearnError, handle_devolearn_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Image.DecompressionBombError, handle_decompression_bomb)
    app.register_error_handler(Exception, handle_unexpected_error)
