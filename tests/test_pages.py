"""The HTML pages: navigation, CSP-safe markup, model cards, the example allow-list, Plotly.js."""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.resources
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from devolearn_web.examples import EXAMPLES, examples_for

PAGES = ["/", "/membrane", "/nucleus", "/lineage"]
CARD_PAGES = ["/models/membrane", "/models/nucleus", "/models/lineage"]
HTML = {"Accept": "text/html"}
STATIC_EXAMPLES = Path(__file__).resolve().parent.parent / "static" / "examples"


class TagCollector(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict]]:
    collector = TagCollector()
    collector.feed(html)
    return collector.tags


@pytest.mark.parametrize("path", PAGES + CARD_PAGES)
def test_pages_have_no_inline_scripts_or_handlers(client, path):
    response = client.get(path, headers=HTML)
    assert response.status_code == 200
    for tag, attrs in tags_of(response.get_data(as_text=True)):
        if tag == "script":
            assert "src" in attrs or attrs.get("type") == "application/json", attrs
            assert not str(attrs.get("src", "")).startswith(("http:", "https:", "//"))
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)


@pytest.mark.parametrize("path", PAGES)
def test_page_drop_down_lists_every_page_and_selects_this_one(client, path):
    tags = tags_of(client.get(path, headers=HTML).get_data(as_text=True))
    options = [attrs for tag, attrs in tags if tag == "option"]
    assert [option["value"] for option in options] == PAGES
    assert [option["value"] for option in options if "selected" in option] == [path]


def test_home_page_links_the_community_and_the_models(client):
    html = client.get("/", headers=HTML).get_data(as_text=True)
    for link in (
        "https://launchpass.com/openworm",
        "https://pypi.org/project/devolearn/",
        "https://github.com/DevoLearn/devolearn",
        'href="/membrane"',
        'href="/models/lineage"',
    ):
        assert link in html


def test_home_page_without_frames_shows_no_player(app, tmp_path):
    (tmp_path / "home").mkdir()
    app.static_folder = str(tmp_path)
    html = app.test_client().get("/", headers=HTML).get_data(as_text=True)
    assert 'id="timelapse"' not in html and "timelapse.js" not in html


def test_home_page_plays_the_shipped_time_lapse(client):
    html = client.get("/", headers=HTML).get_data(as_text=True)
    assert 'id="timelapse"' in html and "frame_000_input.png" in html


def test_home_page_plays_the_frames_its_manifest_lists(app, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    for name in ("f0_in.png", "f0_out.png", "f1_in.png", "f1_out.png"):
        (home / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    frames = [
        {"input": "f0_in.png", "overlay": "f0_out.png", "time_min": 30, "counts": {"nuclei": 8}},
        {"input": "f1_in.png", "overlay": "f1_out.png", "time_min": 40, "counts": {"nuclei": 12}},
    ]
    (home / "timelapse.json").write_text(json.dumps({"title": "Test run", "frames": frames}))
    app.static_folder = str(tmp_path)
    html = app.test_client().get("/", headers=HTML).get_data(as_text=True)
    assert 'id="timelapse"' in html and "timelapse.js" in html
    assert "f0_in.png" in html and "Test run" in html

    (home / "f1_out.png").unlink()  # a missing frame: no broken player
    html = app.test_client().get("/", headers=HTML).get_data(as_text=True)
    assert 'id="timelapse"' not in html


@pytest.mark.parametrize("name", ["membrane", "nucleus", "lineage"])
def test_model_page_offers_examples_with_credit_and_a_drop_zone(client, name):
    html = client.get(f"/{name}", headers=HTML).get_data(as_text=True)
    assert len(examples_for(name)) >= 2
    for example in examples_for(name):
        assert f'data-example-name="{example.filename}"' in html
    assert "MIT licence, © 2020 DevoLearn" in html
    assert 'id="dropzone"' in html and 'type="file"' in html
    assert ".tiff" in html and ".bmp" in html
    assert ('id="threshold"' in html) == (name != "lineage")


def test_drop_zone_lists_the_formats_the_server_reads(client):
    """The hint and the browser's refusal name 32-bit TIFFs, from the server's one list."""
    html = client.get("/nucleus", headers=HTML).get_data(as_text=True)
    hint = html.split('id="dropzone-help">', 1)[1].split("</span>", 1)[0]
    assert "TIFF (8, 16 or 32 bit, stacks too)" in hint and "MP4, MOV or AVI" in hint
    page_data = json.loads(html.split('id="page-data">', 1)[1].split("</script>", 1)[0])
    assert "TIFF (8, 16 or 32 bit, stacks too)" in page_data["accepted_formats"]


def test_slider_starts_at_the_card_default_threshold(make_app, models_copy):
    card_path = models_copy / "nucleus.json"
    card = json.loads(card_path.read_text())
    card["output"]["default_threshold"] = 0.35
    card_path.write_text(json.dumps(card))
    html = make_app(MODELS_DIR=models_copy).test_client().get("/nucleus").get_data(as_text=True)
    slider = next(attrs for tag, attrs in tags_of(html) if attrs.get("id") == "threshold")
    assert slider["value"] == "0.35"


def test_model_page_says_when_its_model_is_missing(make_app, models_copy):
    (models_copy / "membrane.onnx").unlink()
    client = make_app(MODELS_DIR=models_copy).test_client()
    page = client.get("/membrane", headers=HTML)
    assert page.status_code == 200
    assert "membrane.onnx is missing" in page.get_data(as_text=True)
    card = client.get("/models/membrane", headers=HTML).get_data(as_text=True)
    assert "membrane.onnx is missing" in card and "file missing" in card


@pytest.mark.parametrize("name", ["membrane", "nucleus", "lineage"])
def test_model_card_page_shows_the_card(client, name):
    html = client.get(f"/models/{name}", headers=HTML).get_data(as_text=True)
    for text in ("0.0.1-test", "Training data", "Metrics", "Hyperparameters", "Limitations"):
        assert text in html
    assert "file matches" in html
    assert f'src="/models/{name}/training.png"' in html


def test_card_page_rounds_long_figures_and_points_to_the_full_card(make_app, models_copy):
    card_path = models_copy / "nucleus.json"
    card = json.loads(card_path.read_text())
    card["metrics"] = {"test": {"iou": 0.855071146826948, "images": 862}}
    card_path.write_text(json.dumps(card))
    client = make_app(MODELS_DIR=models_copy).test_client()
    html = client.get("/models/nucleus", headers=HTML).get_data(as_text=True)
    assert "<dd>0.8551</dd>" in html and "0.855071146826948" not in html
    assert "<dd>862</dd>" in html  # whole numbers stay whole
    assert 'href="/api/v1/models"' in html


def test_unknown_model_card_is_a_404_page_listing_the_models(client):
    response = client.get("/models/worm", headers=HTML)
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "membrane, nucleus, lineage" in html and 'class="error-message"' in html


def test_training_plot_is_served_only_under_its_own_name(client):
    with client.get("/models/nucleus/training.png") as response:
        assert response.status_code == 200 and response.mimetype == "image/png"
    for path in ("/models/worm/training.png", "/models/nucleus/nucleus.onnx"):
        assert client.get(path).status_code == 404


def test_training_plot_is_served_from_a_models_folder_named_relative_to_the_working_directory(
    make_app, models_copy, monkeypatch
):
    # DEVOLEARN_MODELS_DIR=models is a natural setting; Flask's send_file would read a relative
    # path from the package's folder instead and answer 500.
    monkeypatch.chdir(models_copy.parent)
    client = make_app(MODELS_DIR=Path(models_copy.name)).test_client()
    with client.get("/models/nucleus/training.png") as response:
        assert response.status_code == 200 and response.mimetype == "image/png"
    assert client.get("/api/v1/models").status_code == 200


def test_every_listed_example_exists_and_has_a_thumbnail(client):
    for example in EXAMPLES:
        assert (STATIC_EXAMPLES / example.filename).is_file()
        with client.get(f"/examples/{example.filename}") as served:
            assert served.status_code == 200
            assert served.data == (STATIC_EXAMPLES / example.filename).read_bytes()
        with client.get(f"/examples/{example.filename}/thumbnail.png") as thumbnail:
            assert thumbnail.status_code == 200 and thumbnail.data.startswith(b"\x89PNG")
        if example.licence:
            with client.get(f"/examples/{example.licence}") as licence:
                assert licence.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/examples/favicon.svg",
        "/examples/..%2Fcss%2Fstyle.css",
        "/examples/../app.py",
        "/examples/%2e%2e/app.py",
        "/examples/missing.png",
        "/examples/LICENSE-devolearn.txt/thumbnail.png",
    ],
)
def test_examples_route_serves_only_the_allow_list(client, path):
    assert client.get(path).status_code == 404


def test_plotly_js_is_served_from_the_plotly_package(client):
    packaged = importlib.resources.files("plotly") / "package_data" / "plotly.min.js"
    with client.get("/static/vendor/plotly.min.js") as response:
        assert response.status_code == 200
        assert "javascript" in response.mimetype
        assert response.data == packaged.read_bytes()


def test_plotly_js_is_sent_gzipped_and_cached_for_a_year(client):
    packaged = importlib.resources.files("plotly") / "package_data" / "plotly.min.js"
    gzipped = {"Accept-Encoding": "gzip, deflate, br"}
    with client.get("/static/vendor/plotly.min.js", headers=gzipped) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in response.headers["Vary"]
        assert len(response.data) < len(packaged.read_bytes()) / 2
        assert gzip.decompress(response.data) == packaged.read_bytes()
        assert response.cache_control.max_age >= 365 * 24 * 3600
        assert response.cache_control.immutable


def test_model_pages_ask_for_plotly_js_by_its_version(client):
    version = importlib.metadata.version("plotly")
    sources = [
        attrs["src"]
        for tag, attrs in tags_of(client.get("/nucleus", headers=HTML).get_data(as_text=True))
        if tag == "script" and "plotly" in attrs.get("src", "")
    ]
    assert sources == [f"/static/vendor/plotly.min.js?v={version}"]


def test_error_page_for_browsers_carries_the_sentence(client):
    response = client.get("/no/such/page", headers=HTML)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "There is no page or API endpoint at this address." in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("cpu", "served"),
    [
        ({"avx512_vnni"}, "nucleus.int8.onnx (int8)"),
        ({"avx2"}, "nucleus.onnx (float32): the int8 file nucleus.int8.onnx was accepted on a CPU"),
    ],
)
def test_card_page_says_which_file_this_server_runs(
    make_app, models_copy, monkeypatch, cpu, served
):
    from devolearn_web import cpu_features

    monkeypatch.setattr(cpu_features, "cpu_flags", lambda: frozenset(cpu))
    (models_copy / "nucleus.int8.onnx").write_bytes((models_copy / "nucleus.onnx").read_bytes())
    card_path = models_copy / "nucleus.json"
    card = json.loads(card_path.read_text())
    card["quantized"] = {
        "file": "nucleus.int8.onnx",
        "serve": True,
        "requires_cpu_flags": ["avx512_vnni"],
    }
    card_path.write_text(json.dumps(card))
    html = make_app(MODELS_DIR=models_copy).test_client().get("/models/nucleus", headers=HTML)
    assert served in html.get_data(as_text=True)


def test_card_page_names_the_float32_file_when_there_is_no_int8_one(client):
    html = client.get("/models/membrane", headers=HTML).get_data(as_text=True)
    assert 'id="served-file">membrane.onnx</dd>' in html


def test_card_page_sums_up_the_count_calibration(make_app, models_copy):
    card_path = models_copy / "lineage.json"
    card = json.loads(card_path.read_text())
    curve = {"network": [0.5, 7.0, 13.4], "count": [0.0, 8.0, 16.0]}
    card["output"]["calibration"] = {"method": "isotonic regression", "knots": {"E": curve}}
    card_path.write_text(json.dumps(card))
    html = make_app(MODELS_DIR=models_copy).test_client().get("/models/lineage", headers=HTML)
    text = html.get_data(as_text=True)
    assert "isotonic regression" in text and "E: 3 knots" in text
    assert "13.4" not in text  # the curve itself stays in the JSON card


def test_card_page_opens_with_a_summary_for_people_and_folds_the_details(client):
    html = client.get("/models/nucleus", headers=HTML).get_data(as_text=True)
    glance = html[html.index('id="glance"') : html.index('id="card-details"')]
    for text in (
        "What it does",
        "Simulated embryos only",
        "How well it does",
        "Known limits",
        "A test model: it only finds bright blobs.",
        "When not to trust it",
    ):
        assert text in glance
    details = html[html.index('<details class="card-details"') :]
    for text in ("SHA-256", "Training data", "Metrics", "Hyperparameters", "Limitations"):
        assert text in details
    assert details.index("</details>") > details.index("Limitations")


def test_card_summary_names_targets_missed_and_the_real_sample():
    from devolearn_web.card_glance import glance

    card = {
        "title": "Nuclei",
        "version": "4.0.0",
        "training_data": {"simulated": True},
        "metrics": {
            "targets": {"seg": {"target": ">= 0.85", "value": 0.6606, "met": False}},
            "real_samples": {
                "embryo_sample.png": {"count": 77, "expected_range": [60, 120]},
            },
        },
        "limitations": ["a", "b", "c", "d"],
    }
    summary = glance("nucleus", card, "nuclei")
    assert summary["one_line"] == (
        "Nuclei 4.0.0: trained on simulated embryos only; on unseen simulated embryos SEG 0.661;"
        " short of its target on SEG; the app counts 77 nuclei on the real embryo_sample.png (a"
        " person expects 60–120); 4 known limits."
    )
    assert summary["limits_first"] == ["a", "b", "c"] and summary["limits_more"] == ["d"]


@pytest.mark.parametrize("name", ["membrane", "nucleus", "lineage"])
def test_every_result_links_the_model_card_summary(client, name):
    html = client.get(f"/{name}", headers=HTML).get_data(as_text=True)
    results = html[html.index('id="results"') :]
    line = results[results.index('id="card-line"') :]
    line = line[: line.index("</p>")]
    assert f'href="/models/{name}"' in line and "trained on simulated embryos only" in line


@pytest.mark.parametrize(
    ("held_seconds", "job_seconds", "held_words", "job_words"),
    [
        (600, 3600, "10 minutes", "an hour"),
        (300, 7200, "5 minutes", "2 hours"),
        (90, 86400, "90 seconds", "a day"),
    ],
)
def test_the_footer_says_how_long_results_are_kept_as_configured(
    make_app, held_seconds, job_seconds, held_words, job_words
):
    client = make_app(RESULT_CACHE_SECONDS=held_seconds, JOB_RESULT_TTL_SECONDS=job_seconds)
    footer = client.test_client().get("/").get_data(as_text=True).split('class="footer"')[1]
    footer = " ".join(footer.split())
    assert f"held in this server's memory for {held_words} after its last use" in footer
    assert f"its results are deleted {job_words} after it ends" in footer
