"""DevoLearn Web app factory: importing the package does nothing; `create_app()` wires it."""

from __future__ import annotations

import io
import logging
import os
import tempfile
from pathlib import Path
from typing import IO

from flask import Flask, Request, Response, current_app
from werkzeug.formparser import FormDataParser
from werkzeug.middleware.proxy_fix import ProxyFix

from devolearn_web.config import REPOSITORY_ROOT, Config, configure_logging, request_size_limit
from devolearn_web.errors import BadParameter, register_error_handlers

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # frame-ancestors for browsers that predate CSP level 2.
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

logger = logging.getLogger(__name__)


class InMemoryRequest(Request):
    """A request whose uploaded files stay in memory: nothing a visitor sends touches the disk.

    The one exception is a job's upload (views/jobs.py sets `spool_dir`): it may be gigabytes,
    so it is streamed to an unnamed temporary file there, gone when closed or on a crash."""

    spool_dir: str | None = None

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        if self.spool_dir is not None:
            os.makedirs(self.spool_dir, mode=0o700, exist_ok=True)
            return tempfile.TemporaryFile(dir=self.spool_dir)
        # Werkzeug spools files over 500 KB to a temporary file; MAX_CONTENT_LENGTH bounds memory.
        return io.BytesIO()

    def make_form_data_parser(self) -> FormDataParser:
        """Werkzeug's parser, told to raise on a malformed form instead of dropping it."""
        parser = super().make_form_data_parser()
        # Silently, a form with a non-UTF-8 file name (an old Windows client) arrives empty and
        # the visitor is told that no image was sent; _load_form_data says what happened.
        parser.silent = False
        return parser

    def _load_form_data(self) -> None:
        try:
            super()._load_form_data()
        except ValueError as error:
            # An empty form stays behind, so later reads neither parse again nor fail again.
            self.__dict__["form"] = self.parameter_storage_class()
            self.__dict__["files"] = self.parameter_storage_class()
            raise BadParameter(
                "The upload could not be read: the form is malformed, or the file name is not "
                "UTF-8 text. Rename the file with plain letters and digits and send it again."
            ) from error


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
    test_config = test_config or {}
    app.config.from_mapping(Config().as_dict())
    # Never debug mode (the Werkzeug debugger runs code for whoever sees it): FLASK_DEBUG in the
    # environment is ignored; only a test may set DEBUG.
    app.config["DEBUG"] = False
    # Tests run without the rate limit unless they switch it on themselves.
    if test_config.get("TESTING"):
        app.config["RATE_LIMIT_ENABLED"] = False
    app.config.from_mapping(test_config)
    # Absolute now: Flask's send_file reads a relative path from the package's folder, not the
    # working directory a maintainer named it from (DEVOLEARN_MODELS_DIR=models).
    app.config["MODELS_DIR"] = Path(app.config["MODELS_DIR"]).resolve()
    if not test_config.get("MAX_CONTENT_LENGTH"):
        app.config["MAX_CONTENT_LENGTH"] = request_size_limit(app.config["MAX_UPLOAD_BYTES"])
    configure_logging(app.config["LOG_LEVEL"])
    _warn_about_unsafe_settings(test_config)
    if int(app.config["TRUSTED_PROXY_COUNT"]) > 0:
        # The client address (for the rate limit) from X-Forwarded-For, set by that many proxies.
        hops = int(app.config["TRUSTED_PROXY_COUNT"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops)

    # Imported here, not at the top: `import devolearn_web.segmentation` (as training does) must
    # not pull in ONNX Runtime, Plotly and the views.
    from devolearn_web import admission, cli, ratelimit, registry, result_cache
    from devolearn_web.views import api, jobs, pages

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(jobs.bp)
    register_error_handlers(app)
    app.after_request(add_security_headers)
    ratelimit.init_app(app)
    admission.init_app(app)  # after the rate limit: a refused client reserves nothing
    result_cache.init_app(app)
    registry.init_app(app)
    cli.init_app(app)  # `flask devolearn predict ...` (batch, no server)
    jobs.init_app(app)  # after the registry: in-process jobs share its models
    app.context_processor(retention_context)
    return app


def retention_context() -> dict:
    """How long held results and finished jobs' results are kept, in words, for the footer."""
    config = current_app.config
    return {
        "held_result_lifetime": describe_duration(config["RESULT_CACHE_SECONDS"]),
        "job_result_lifetime": describe_duration(config["JOB_RESULT_TTL_SECONDS"]),
    }


def describe_duration(seconds: float) -> str:
    """A duration as a visitor reads it: "an hour", "10 minutes", "90 seconds", "2 days"."""
    units = ((86400, "day", "a day"), (3600, "hour", "an hour"), (60, "minute", "a minute"))
    for unit_seconds, unit, one in units:
        if seconds >= unit_seconds and seconds % unit_seconds == 0:
            amount = int(seconds // unit_seconds)
            return one if amount == 1 else f"{amount} {unit}s"
    return f"{seconds:g} seconds"


def _warn_about_unsafe_settings(test_config: dict) -> None:
    """Log what a deploy should set: SECRET_KEY, and that FLASK_DEBUG has no effect."""
    if test_config.get("TESTING"):
        return
    if not os.environ.get("SECRET_KEY") and "SECRET_KEY" not in test_config:
        logger.warning(
            "SECRET_KEY is not set: using a random key for this process. Nothing is signed with "
            "it today (no sessions or logins); set SECRET_KEY before adding any."
        )
    if os.environ.get("FLASK_DEBUG", "").strip().lower() in ("1", "true", "yes", "on"):
        logger.warning("FLASK_DEBUG is set but ignored: this app never runs in debug mode.")


def add_security_headers(response: Response) -> Response:
    """CSP (no inline scripts, no CDNs), nosniff and a same-origin referrer on every response."""
    for header, value in SECURITY_HEADERS.items():
        response.headers.setdefault(header, value)
    return response
