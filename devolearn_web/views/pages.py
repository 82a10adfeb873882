"""The HTML pages: home, one page per model, model cards, example images and Plotly.js."""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.resources
import io
import json
import logging
import os
import tempfile
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    request,
    send_file,
    url_for,
)

from devolearn_web.admission import admit
from devolearn_web.bioimageio_package import (
    PACKAGE_BUILD_BYTES,
    build_package_file,
    package_cache_path,
)
from devolearn_web.card_glance import glance
from devolearn_web.catalogue import (
    CATALOGUE,
    LINEAGE_FOUNDERS,
    LINEAGE_ORDER,
    RANGE_LINEAGE,
    TRAINING_RANGE,
    route_names,
)
from devolearn_web.errors import ModelUnavailable
from devolearn_web.examples import EXAMPLES_FOLDER, examples_for, find_example, licence_files
from devolearn_web.figures import MASK_RGBA
from devolearn_web.file_digest import file_sha256
from devolearn_web.imaging import (
    ACCEPTED_FORMATS,
    MICROSCOPE_FORMAT_ADVICE,
    MICROSCOPE_FORMATS,
    decode_image,
    resize_image,
    to_display_png,
)
from devolearn_web.model_cards import ModelCard
from devolearn_web.registry import get_registry, int8_runs_as_measured, quantized_section
from devolearn_web.views.jobs import DOWNLOAD_FORMATS as JOB_DOWNLOAD_FORMATS

logger = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)

# What the drop zone accepts; anything else is refused in the browser before any request.
ACCEPTED_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
ACCEPTED_EXTENSIONS += (".mp4", ".mov", ".avi")  # movies (devolearn_web.movies)
ACCEPTED_EXTENSIONS += (".zip",)  # per-time-point TIFFs (tTTT.tif): always sent as a job
ACCEPTED_MIME_TYPES = ("image/png", "image/jpeg", "image/tiff", "image/bmp", "image/gif")
ACCEPTED_MIME_TYPES += ("video/mp4", "video/quicktime", "video/x-msvideo")
THUMBNAIL_WIDTH = 160
DEFAULT_THRESHOLD = 0.5
TIMELAPSE_FOLDER = "home"
TIMELAPSE_MANIFEST = "timelapse.json"

# Card fields that have their own place on the card page; any others are listed at the end.
CARD_FIELDS_SHOWN = {
    "name",
    "title",
    "version",
    "task",
    "architecture",
    "file",
    "sha256",
    "opset",
    "input",
    "output",
    "training_data",
    "metrics",
    "hyperparameters",
    "training_plot",
    "reproduce",
    "limitations",
}


@bp.app_context_processor
def navigation_context() -> dict:
    """The sidebar's links (every template, error pages included), marking the current page."""
    path = request.path
    navigation = [{"label": "Home", "url": url_for("pages.home")}] + [
        {"label": model.page.heading, "url": url_for("pages.model_page", name=name)}
        for name, model in CATALOGUE.items()
    ]
    card_links = [
        {"label": model.page.heading, "url": url_for("pages.model_card", name=name)}
        for name, model in CATALOGUE.items()
    ]
    for item in navigation + card_links:
        item["active"] = item["url"] == path
    return {"navigation": navigation, "card_links": card_links}


@bp.get("/")
def home() -> str:
    """What DevoLearn does, the three models, the time-lapse player and the community links."""
    status = get_registry().status()
    models = [
        {
            "heading": model.page.heading,
            "summary": model.page.summary,
            "url": url_for("pages.model_page", name=name),
            "card_url": url_for("pages.model_card", name=name),
            "ready": bool(status.get(name, {}).get("ready")),
            "problem": status.get(name, {}).get("problem"),
        }
        for name, model in CATALOGUE.items()
    ]
    return render_template("home.html", models=models, timelapse=_timelapse())


@bp.get(f"/<any({route_names()}):name>")
def model_page(name: str) -> str:
    """A model's page: drop zone, examples, threshold slider and the (empty) results area."""
    model = CATALOGUE[name]
    card, problem = _card_or_problem(name)
    default_threshold = DEFAULT_THRESHOLD
    if card is not None and card.output.default_threshold is not None:
        default_threshold = card.output.default_threshold
    training_range = card.output.training_range if card is not None else TRAINING_RANGE
    page_data = {
        "model": name,
        "task": model.task,
        "accepted_extensions": list(ACCEPTED_EXTENSIONS),
        "accepted_formats": ACCEPTED_FORMATS,
        "microscope_formats": MICROSCOPE_FORMATS,
        "microscope_format_advice": MICROSCOPE_FORMAT_ADVICE,
        "lineages": [{"key": key, "founder": LINEAGE_FOUNDERS[key]} for key in LINEAGE_ORDER],
        "mask_rgba": list(MASK_RGBA),
        "figure_order": list(model.figures),
        "training_range_a": training_range.get(RANGE_LINEAGE, TRAINING_RANGE[RANGE_LINEAGE]),
        "jobs": {
            "url": url_for("jobs.submit_job"),
            "min_bytes": current_app.config["PAGE_JOB_BYTES"]
            or current_app.config["MAX_UPLOAD_BYTES"],
            "formats": list(JOB_DOWNLOAD_FORMATS),
        },
    }
    return render_template(
        "model.html",
        name=name,
        page=_page_words(name),
        card=card.json if card else None,  # the template shows the card as written
        problem=problem,
        default_threshold=default_threshold,
        examples=examples_for(name),
        accept=",".join(ACCEPTED_EXTENSIONS + ACCEPTED_MIME_TYPES),
        accepted_formats=ACCEPTED_FORMATS,
        thumbnail_width=THUMBNAIL_WIDTH,
        page_data=page_data,
        glance=glance(name, card, model.page.count_noun) if card else None,
    )


def _page_words(name: str) -> dict:
    """The words of a model's page, with its name and task, for the templates."""
    model = CATALOGUE[name]
    return {
        "name": name,
        "task": model.task,
        "assembles_nuclei": model.assembles_nuclei,
        **asdict(model.page),
    }


@bp.get("/models/<name>")
def model_card(name: str) -> str:
    """The model card: what the network is, what it was trained on, how well it does."""
    registry = get_registry()
    card, problem = _card_or_problem(name)  # UnknownModel (a 404 listing the names) propagates
    checksum, plot_url, extra, served, output = None, None, {}, None, None
    if card is not None:
        checksum = _checksum_state(registry.models_dir, card)
        served = _served_file_sentence(card, registry.status_of(name)["file"])
        if _training_plot_path(registry.models_dir, name).is_file():
            plot_url = url_for("pages.training_plot", name=name)
        extra = {key: value for key, value in card.items() if key not in CARD_FIELDS_SHOWN}
        output = _output_shown(card.get("output"))
    page = CATALOGUE[name].page
    return render_template(
        "card.html",
        name=name,
        heading=(card.title if card else None) or page.heading,
        card=card.json if card else None,  # the template shows the card as written
        problem=problem,
        checksum=checksum,
        served=served,
        output=output,
        training_plot_url=plot_url,
        extra_fields=extra,
        page_url=url_for("pages.model_page", name=name),
        summary=page.summary,
        glance=glance(name, card, page.count_noun) if card else None,
    )


@bp.get("/models/<name>/bioimageio.zip")
def bioimageio_package(name: str) -> Response:
    """The model as a BioImage.IO model package, built from models/ once, then from disk."""
    registry = get_registry()
    card = registry.card(name)  # a 404 naming the models, or a 503 saying why it cannot run
    problem = registry.status_of(name)["problem"]
    if problem:
        raise ModelUnavailable(problem)
    cache_dir = current_app.config.get("BIOIMAGEIO_CACHE_DIR") or (
        Path(tempfile.gettempdir()) / f"devolearn-bioimageio-{os.getuid()}"
    )
    target = package_cache_path(registry.models_dir, name, Path(cache_dir))
    if not target.is_file():
        admit(PACKAGE_BUILD_BYTES, f"building the {name} model package")
        build_package_file(registry.models_dir, _examples_dir(), name, target)
    return send_file(
        target,
        mimetype="application/zip",
        as_attachment=True,
        download_name=f"devolearn-{name}-{card.version}.bioimageio.zip",
        max_age=300,
    )


@bp.get("/models/<name>/training.png")
def training_plot(name: str) -> Response:
    """The model's training plot: only `<name>_training.png` from the models folder."""
    registry = get_registry()
    if name not in registry.names:
        abort(404)
    path = _training_plot_path(registry.models_dir, name)
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype="image/png", max_age=300)


@bp.get("/examples/<filename>")
def example_file(filename: str) -> Response:
    """An example image (or its licence) listed in the manifest; anything else is a 404."""
    if find_example(filename) is None and filename not in licence_files():
        abort(404)
    return send_file(_examples_dir() / filename, max_age=3600)


@bp.get("/examples/<filename>/thumbnail.png")
def example_thumbnail(filename: str) -> Response:
    """A small contrast-stretched PNG of an example, made from the file itself."""
    if find_example(filename) is None:
        abort(404)
    path = _examples_dir() / filename
    png = _thumbnail_png(str(path), path.stat().st_mtime_ns)
    return send_file(io.BytesIO(png), mimetype="image/png", max_age=3600)


# Plotly.js is 4.8 MB: sent gzipped (1.4 MB) to every browser that accepts it, and cached for a
# year, since its URL carries the plotly version (pages ask for ?v=<version>, plotly_js_url).
PLOTLY_MAX_AGE_S = 365 * 24 * 3600


@lru_cache(maxsize=1)
def _plotly_bytes() -> tuple[bytes, bytes]:
    """Plotly.js as shipped and gzipped, read and compressed once per process."""
    path = importlib.resources.files("plotly") / "package_data" / "plotly.min.js"
    plain = path.read_bytes()
    return plain, gzip.compress(plain, compresslevel=9, mtime=0)


@bp.app_template_global()
def plotly_js_url() -> str:
    """Plotly.js's URL with the plotly version, so a new plotly is never read from a cache."""
    return url_for("pages.plotly_js", v=importlib.metadata.version("plotly"))


@bp.get("/static/vendor/plotly.min.js")
def plotly_js() -> Response:
    """Plotly.js from the installed plotly package, so no page needs a CDN."""
    plain, compressed = _plotly_bytes()
    gzipped = "gzip" in request.accept_encodings
    response = Response(compressed if gzipped else plain, mimetype="text/javascript")
    if gzipped:
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Vary"] = "Accept-Encoding"
    response.cache_control.public = True
    response.cache_control.max_age = PLOTLY_MAX_AGE_S
    response.cache_control.immutable = True
    response.headers["X-Plotly-Version"] = importlib.metadata.version("plotly")
    return response


def _served_file_sentence(card: ModelCard, served: str | None) -> str | None:
    """Which file this server runs, and why not the int8 one when the card offers one."""
    if served is None:
        return None
    quantized = quantized_section(card)
    if quantized is None:
        return served
    if served == quantized["file"]:
        return f"{served} (int8)"
    needed = quantized.get("requires_cpu_flags") or []
    if needed and not int8_runs_as_measured(quantized):
        return (
            f"{served} (float32): the int8 file {quantized['file']} was accepted on a CPU with "
            f"{' or '.join(map(str, needed))}, which this server's CPU lacks"
        )
    return f"{served} (float32): the int8 file {quantized['file']} is missing"


def _output_shown(output: object) -> object:
    """The card's output section, with calibration curves summed up instead of listed."""
    if not isinstance(output, dict) or not isinstance(output.get("calibration"), dict):
        return output
    calibration = dict(output["calibration"])
    knots = calibration.pop("knots", {})
    if isinstance(knots, dict):
        calibration["curves"] = ", ".join(
            f"{name}: {len(curve.get('network', []))} knots"
            for name, curve in knots.items()
            if isinstance(curve, dict)
        )
    return {**output, "calibration": calibration}


def _card_or_problem(name: str) -> tuple[ModelCard | None, str | None]:
    """The model's card (None when unreadable) and the sentence saying why the model cannot run."""
    registry = get_registry()
    try:
        card = registry.card(name)
    except ModelUnavailable as error:
        return None, error.message
    return card, registry.status_of(name)["problem"]


def _examples_dir() -> Path:
    return Path(current_app.static_folder or "static") / EXAMPLES_FOLDER


def _training_plot_path(models_dir: Path, name: str) -> Path:
    return Path(models_dir) / f"{name}_training.png"


def _checksum_state(models_dir: Path, card: ModelCard) -> str:
    """'match', 'mismatch' or 'missing': the model file against the card's sha256."""
    path = Path(models_dir) / card.file
    if not path.is_file():
        return "missing"
    return "match" if file_sha256(path) == card.sha256 else "mismatch"


@lru_cache(maxsize=32)
def _thumbnail_png(path: str, mtime_ns: int) -> bytes:
    decoded = decode_image(Path(path).read_bytes(), filename=Path(path).name)
    height = max(1, round(decoded.height * THUMBNAIL_WIDTH / decoded.width))
    return to_display_png(resize_image(decoded.pixels, (height, THUMBNAIL_WIDTH)))


def _timelapse() -> dict | None:
    """The home page's time-lapse manifest (static/home/timelapse.json), when it is usable."""
    folder = Path(current_app.static_folder or "static") / TIMELAPSE_FOLDER
    path = folder / TIMELAPSE_MANIFEST
    if not path.is_file():
        return None
    # The folder's mtime changes when a frame is added or removed: that re-checks the frames.
    manifest = _read_timelapse_manifest(
        str(path), path.stat().st_mtime_ns, folder.stat().st_mtime_ns
    )
    if manifest is None:
        return None
    return {
        "title": manifest.get("title", ""),
        "manifest": manifest,
        "base_url": url_for("static", filename=f"{TIMELAPSE_FOLDER}/"),
    }


@lru_cache(maxsize=4)
def _read_timelapse_manifest(path: str, mtime_ns: int, folder_mtime_ns: int) -> dict | None:
    folder = Path(path).parent
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
        frames = manifest["frames"]
        for frame in frames:
            for key in ("input", "overlay"):
                name = frame[key]
                # Frames are plain file names beside the manifest; a missing one would show
                # as a broken image and a console error, so the player is left out instead.
                if Path(name).name != name or not (folder / name).is_file():
                    raise ValueError(f"frame file {name!r} is not in {folder}")
        if not frames:
            raise ValueError("the manifest lists no frames")
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("Time-lapse manifest %s is not usable: %s", path, error)
        return None
    return manifest
