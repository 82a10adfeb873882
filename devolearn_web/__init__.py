"""DevoLearn Web app factory: importing the package does nothing; `create_app()` wires it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

from flask import Flask, Request, Response

from devolearn_web.config import REPOSITORY_ROOT, Config, configure_logging, request_size_limit
from devolearn_web.errors import register_error_handlers

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class InMemoryRequest(Request):
    """A request whose uploaded files stay in memory: nothing a visitor sends touches the disk."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        # Werkzeug spools files over 500 KB to a temporary file; MAX_CONTENT_LENGTH bounds memory.
        return io.BytesIO()


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: settings from the environment (overridden by test_config), blueprints,
    error handlers, security headers and the model registry."""
    app = Flask(
        __name__,
        template_folder=str(REPOSITORY_ROOT / "templates"),
        static_folder=str(REPOSITORY_ROOT / "static"),
    )
    app.request_class = InMemoryRequest
    app.json.sort_keys = False  # lineage populations keep the order A, E, M, P, C, D, Z
    app.config.from_mapping(Config().as_dict())
    if test_config:
        app.config.from_mapping(test_config)
    app.config["MODELS_DIR"] = Path(app.config["MODELS_DIR"])
    if not (test_config or {}).get("MAX_CONTENT_LENGTH"):
        app.config["MAX_CONTENT_LENGTH"] = request_size_limit(app.config["MAX_UPLOAD_BYTES"])
    configure_logging(app.config["LOG_LEVEL"])

    # Imported here, not at the top: `import devolearn_web.segmentation` (as training does) must
    # not pull in ONNX Runtime, Plotly and the views.
    from devolearn_web import registry
    from devolearn_web.views import api, pages

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    register_error_handlers(app)
    app.after_request(add_security_headers)
    registry.init_app(app)
    return app


def add_security_headers(response: Response) -> Response:
    """CSP (no inline scripts, no CDNs), nosniff and a same-origin referrer on every response."""
    for header, value in SECURITY_HEADERS.items():
        response.headers.setdefault(header, value)
    return response
