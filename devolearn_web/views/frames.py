"""The predict endpoint's responses, made from an analysis.Answer: JSON, NDJSON lines (a stack
with progress) or a download.

Downloads are made from the request itself: the client sends the file again with `format=...`
(the page still holds it in memory), the server decodes it, runs the model and writes the CSV,
TIFF, PNG, ROI set or ZIP into memory and sends it back. Nothing is stored between requests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from flask import Response, jsonify, stream_with_context

from devolearn_web.analysis import Answer
from devolearn_web.errors import UNEXPECTED_ERROR_SENTENCE, DevoLearnError

logger = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"


def respond(answer: Answer) -> Response:
    """The response for an answer: a file, streamed NDJSON lines, or JSON."""
    if answer.file is not None:
        return file_response(*answer.file)
    if answer.events is not None:
        return Response(stream_with_context(_ndjson(answer.events)), mimetype=NDJSON)
    return jsonify(answer.json)


def _ndjson(events: Iterator[dict]) -> Iterator[str]:
    """One JSON object per line; an error after the first line is sent as a line too."""
    try:
        for event in events:
            yield json.dumps(event, separators=(",", ":")) + "\n"
    except DevoLearnError as error:
        yield json.dumps({"error": error.message, "status": error.status}) + "\n"
    except Exception:
        # The 200 and the first lines are already sent: no error handler can answer any more,
        # so a bug ends the stream with the handler's own sentence instead of a cut connection.
        logger.exception("Unexpected error while streaming a stack's answer")
        yield json.dumps({"error": UNEXPECTED_ERROR_SENTENCE, "status": 500}) + "\n"


def file_response(body: bytes, media_type: str, filename: str) -> Response:
    """A download: attached, never cached."""
    response = Response(body, mimetype=media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
