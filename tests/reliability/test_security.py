"""Security: uploads never touch the disk, headers on every response, no debug, the secret key,
escaped messages, the examples allow-list."""

from __future__ import annotations

import builtins
import io
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import HTML_FILENAME
from flask import Request
from PIL import Image
from reliability_support import REPOSITORY_ROOT, multipart_body

from devolearn_web import create_app
from devolearn_web.errors import render_error

# Werkzeug spools uploads above this size to a temporary file unless the app stops it.
WERKZEUG_SPOOL_BYTES = 500 * 1024


class DiskWatch:
    """Records every file opened for writing or created while it is installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[str] = []
        real_open, real_os_open = builtins.open, os.open

        def watched_open(file, mode="r", *args, **kwargs):
            if any(flag in mode for flag in "wax+"):
                self.writes.append(f"open({file!r}, {mode!r})")
            return real_open(file, mode, *args, **kwargs)

        def watched_os_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                self.writes.append(f"os.open({path!r})")
            return real_os_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", watched_open)
        monkeypatch.setattr(io, "open", watched_open)
        monkeypatch.setattr(os, "open", watched_os_open)
        self.temp_dir = Path(tempfile.gettempdir())
        self.before = set(self.temp_dir.iterdir())

    def new_temp_files(self) -> set[Path]:
        return set(self.temp_dir.iterdir()) - self.before


def large_png() -> bytes:
    """A noisy PNG of about 1.2 MB: well past werkzeug's spooling threshold."""
    noise = np.random.default_rng(5).integers(0, 255, (1100, 1100), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def post_upload(app, data: bytes, filename: bytes = b"big.png"):
    body, content_type = multipart_body({}, data, filename)
    return app.test_client().post(
        "/api/v1/predict/membrane", data=body, headers={"Content-Type": content_type}
    )


def test_the_disk_watch_sees_werkzeugs_default_spooling(make_app, monkeypatch):
    """Control: with werkzeug's own Request a large upload IS written to a temporary file."""
    app = make_app()
    app.request_class = Request
    watch = DiskWatch(monkeypatch)
    data = large_png()
    assert len(data) > WERKZEUG_SPOOL_BYTES
    post_upload(app, data)
    assert watch.writes, "the watch must notice a spooled upload, or the next test proves nothing"


@pytest.mark.parametrize("image_format", ["PNG", "TIFF-LZW", "multi-page TIFF"])
def test_uploads_never_touch_the_disk(make_app, monkeypatch, image_format):
    app = make_app()
    client_data = {
        "PNG": large_png(),
        "TIFF-LZW": _encode(np.zeros((900, 900), np.uint8), "TIFF", compression="tiff_lzw"),
        "multi-page TIFF": _multipage_tiff(),
    }[image_format]
    watch = DiskWatch(monkeypatch)
    response = post_upload(app, client_data)
    assert response.status_code == 200, response.get_json()
    assert watch.writes == []
    assert watch.new_temp_files() == set()


def _encode(array: np.ndarray, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _multipage_tiff() -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros((3, 400, 400), np.uint16), photometric="minisblack")
    return buffer.getvalue()


REQUIRED_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def assert_security_headers(response, where: str) -> None:
    policy = response.headers.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in policy, where
    assert "default-src 'self'" in policy and "object-src 'none'" in policy, where
    assert "'unsafe-eval'" not in policy, where
    for header, value in REQUIRED_HEADERS.items():
        assert response.headers.get(header) == value, (where, header)


def every_get_url(app) -> list[str]:
    """One URL per GET route (arguments filled with an allowed value or a missing one)."""
    samples = {"name": "membrane", "filename": "seg_sample.jpg"}
    urls = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        values = {argument: samples.get(argument, "x") for argument in rule.arguments}
        if rule.endpoint == "static":
            values = {"filename": "css/style.css"}
        try:
            urls.append(rule.build(values, append_unknown=False)[1])
        except (ValueError, TypeError):  # a converter refused the sample value
            continue
    return sorted(set(urls))


def test_security_headers_on_every_route_and_error(app, monkeypatch):
    client = app.test_client()
    urls = every_get_url(app)
    assert "/healthz" in urls and "/api/v1/openapi.json" in urls and "/" in urls
    for url in urls:
        with client.get(url) as response:  # file responses must be closed
            assert_security_headers(response, url)
    assert_security_headers(client.get("/no/such/page"), "404 page")
    assert_security_headers(client.get("/api/v1/predict/membrane"), "405")
    assert_security_headers(client.post("/api/v1/predict/membrane"), "400")
    limited = create_app(
        {"TESTING": True, "MODELS_DIR": app.config["MODELS_DIR"], "MAX_CONTENT_LENGTH": 10}
    )
    assert_security_headers(
        limited.test_client().post(
            "/api/v1/predict/membrane", data={"file": (io.BytesIO(b"x" * 99), "x")}
        ),
        "413",
    )

    from devolearn_web.views import api

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(api, "analyse", broken)
    png = _encode(np.zeros((8, 8), np.uint8), "PNG")
    crashed = client.post("/api/v1/predict/membrane", data={"file": (io.BytesIO(png), "x.png")})
    assert crashed.status_code == 500
    assert_security_headers(crashed, "500")


def test_no_debug_mode_even_when_flask_debug_is_set(monkeypatch, tiny_models_dir, caplog):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    monkeypatch.setenv("DEVOLEARN_MODELS_DIR", str(tiny_models_dir))
    with caplog.at_level(logging.WARNING, logger="devolearn_web"):
        app = create_app()
    assert app.debug is False
    assert "FLASK_DEBUG is set but ignored" in caplog.text
    assert "debug=False" in (REPOSITORY_ROOT / "app.py").read_text(encoding="utf-8")


def test_a_crash_shows_no_traceback(app, monkeypatch):
    from devolearn_web.views import api

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(api, "analyse", broken)
    png = _encode(np.zeros((8, 8), np.uint8), "PNG")
    response = app.test_client().post(
        "/api/v1/predict/membrane", data={"file": (io.BytesIO(png), "x.png")}
    )
    text = response.get_data(as_text=True)
    assert "secret internal detail" not in text and "Traceback" not in text


def test_secret_key_comes_from_the_environment(monkeypatch, tiny_models_dir):
    monkeypatch.setenv("DEVOLEARN_MODELS_DIR", str(tiny_models_dir))
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    assert create_app().config["SECRET_KEY"] == "from-the-environment"


def test_without_a_secret_key_each_process_makes_one_and_says_so(
    monkeypatch, tiny_models_dir, caplog
):
    monkeypatch.setenv("DEVOLEARN_MODELS_DIR", str(tiny_models_dir))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="devolearn_web"):
        first, second = create_app(), create_app()
    assert len(first.config["SECRET_KEY"]) >= 32
    assert first.config["SECRET_KEY"] != second.config["SECRET_KEY"]
    assert "SECRET_KEY is not set" in caplog.text


def test_error_pages_escape_the_message(app):
    with app.test_request_context("/membrane", headers={"Accept": "text/html"}):
        page, status = render_error(400, '<script>alert("x")</script> & more')
    assert status == 400
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page


def test_an_html_filename_comes_back_as_inert_json_text(client):
    body, content_type = multipart_body({}, b"not an image", HTML_FILENAME)
    response = client.post(
        "/api/v1/predict/nucleus", data=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert response.mimetype == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # JSON text, shown by the page with textContent (tests/browser checks the page itself).
    assert response.get_json()["error"].startswith("'<img src=x onerror=")


@pytest.mark.parametrize(
    "url",
    [
        "/examples/..%2F..%2Fwsgi.py",
        "/examples/%2e%2e%2fapp.py",
        "/examples/../../app.py",
        "/examples/..%5C..%5Capp.py",
        "/examples/app.py",
        "/examples/.env",
        "/examples/%00seg_sample.jpg",
        "/examples/seg_sample.jpg%00.py",
        "/examples/..%2F..%2Fwsgi.py/thumbnail.png",
    ],
)
def test_examples_are_served_from_the_allow_list_only(client, url):
    with client.get(url) as response:
        assert response.status_code in (400, 404)
        assert b"create_app" not in response.get_data()


def test_an_allowed_example_is_served(client):
    from devolearn_web.examples import EXAMPLES

    path = REPOSITORY_ROOT / "static" / "examples" / EXAMPLES[0].filename
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout")
    with client.get(f"/examples/{EXAMPLES[0].filename}") as response:
        assert response.status_code == 200
        assert response.get_data() == path.read_bytes()
