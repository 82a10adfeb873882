"""The pages in a real browser: drop a file, see figures and counts, move the slider, examples."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import numpy as np
import pytest

from bench.page_scripts import SLIDE_JS, drop_file

pytestmark = pytest.mark.browser

# Six disks of different brightness on a 708x512 image (the nucleus data's frame size). With the
# tiny models, probability = sigmoid(20 * (brightness - 0.5)): 4 disks pass the default 0.5,
# all 6 pass 0.2 and 3 pass 0.9.
DISK_CENTRES = [(110, 120), (330, 110), (560, 130), (150, 380), (380, 390), (600, 380)]
DISK_BRIGHTNESS = [1.0, 1.0, 0.8, 0.6, 0.45, 0.45]
COUNT_AT_DEFAULT, COUNT_AT_LOW_THRESHOLD = 4, 6
LOW_THRESHOLD = 0.2
# The issue asks for under 50 ms; a shared 2-core machine gets slack, the real figure is printed.
REPAINT_BOUND_MS = 150
LINEAGE_ORDER = ["A", "E", "M", "P", "C", "D", "Z"]

# Remembers whether the progress indicator was ever visible (it may be brief).
WATCH_PROGRESS_JS = """() => {
    const progress = document.getElementById("progress");
    window.progressWasShown = false;
    new MutationObserver(() => {
        if (!progress.hidden) window.progressWasShown = true;
    }).observe(progress, { attributes: true });
}"""

# Notes when the page starts each request to the API and when its answer is in, on the page's
# own clock (the slide's input times are on it too).
RECORD_API_CALLS_JS = """() => {
    window.apiCalls = [];
    const fetchBefore = window.fetch;
    window.fetch = (url, options = {}) => {
        const body = options.body instanceof FormData ? options.body : null;
        const call = { url: new URL(url, location.href).href, method: options.method || "GET",
                       threshold: body && body.get("threshold"), at: performance.now() };
        if (call.url.includes("/api/")) window.apiCalls.push(call);
        return fetchBefore(url, options);
    };
}"""
# The page asks the server once the slider has rested this long with a held result.
HELD_REFRESH_DELAY_MS = int(
    re.search(
        r"const HELD_REFRESH_DELAY_MS = (\d+);",
        (Path(__file__).parents[2] / "static" / "js" / "page.js").read_text(),
    ).group(1)
)

# The mask overlay as the figure holds it and as the SVG on screen draws it.
MASK_SOURCE_JS = """() => {
    for (const plot of document.querySelectorAll(".figure-panel .plot")) {
        const images = (plot.layout && plot.layout.images) || [];
        const index = images.findIndex((image) => image.name === "threshold-mask");
        if (index < 0) continue;
        const drawn = plot.querySelectorAll(".layer-above image")[index];
        const href = drawn.getAttribute("href") || drawn.getAttribute("xlink:href");
        return [images[index].source, href];
    }
    return null;
}"""


@pytest.fixture
def disk_image_png(image_maker) -> bytes:
    """The six-disk test image as 8-bit PNG bytes."""
    image = np.zeros((512, 708), dtype=np.float32)
    for centre, brightness in zip(DISK_CENTRES, DISK_BRIGHTNESS, strict=True):
        image = np.maximum(image, image_maker.disks(image.shape, [centre], 45, brightness))
    return image_maker.encode(image_maker.uint8(image))


def _wait_for_answer(page, answers_before: int = 0) -> None:
    page.wait_for_function(
        "(n) => { const root = document.getElementById('analysis');"
        " return root.dataset.state === 'done' && Number(root.dataset.answers || 0) > n; }",
        arg=answers_before,
    )


def _answers(page) -> int:
    return int(page.get_attribute("#analysis", "data-answers") or 0)


def _open_model_page(page, name: str) -> None:
    page.goto(f"/{name}")
    page.wait_for_selector("#analysis[data-state='ready']")


@pytest.mark.parametrize("name", ["membrane", "nucleus"])
def test_segmentation_page_drop_slide_and_example(
    watched_page, server_url: str, disk_image_png: bytes, name: str
) -> None:
    page, watch = watched_page
    _open_model_page(page, name)

    page.evaluate(WATCH_PROGRESS_JS)
    drop_file(page, disk_image_png, "six disks.png")
    _wait_for_answer(page)
    assert page.evaluate("() => window.progressWasShown") is True
    assert page.text_content("#count-value") == str(COUNT_AT_DEFAULT)
    assert len(page.locator("#table-container tbody tr").all()) == COUNT_AT_DEFAULT
    assert page.locator(".figure-panel .plot .main-svg").count() >= 2
    # Every overlay (mask, outlines) is really drawn, not just present in the layout.
    drawn = page.evaluate(
        "() => [...document.querySelectorAll('.figure-panel .plot')].map((plot) =>"
        " [(plot.layout.images || []).length, plot.querySelectorAll('.layer-above image').length])"
    )
    assert all(in_layout == on_screen for in_layout, on_screen in drawn), drawn
    assert any(in_layout == 2 for in_layout, _ in drawn)
    assert page.input_value("#threshold") == "0.5"

    # The mask follows the slider with no request to the server: the page asks only once the
    # slider has rested (on a loaded machine one step of the slide may rest that long).
    page.evaluate(RECORD_API_CALLS_JS)
    mask_before = page.evaluate(MASK_SOURCE_JS)
    timings = page.evaluate(SLIDE_JS, [0.45, 0.3, LOW_THRESHOLD])
    mask_after = page.evaluate(MASK_SOURCE_JS)
    assert mask_before[0] == mask_before[1] and mask_after[0] == mask_after[1]
    assert mask_after[0] != mask_before[0]
    inputs = [timing["inputAt"] for timing in timings]
    for call in page.evaluate("() => window.apiCalls"):
        rested = call["at"] - max((at for at in inputs if at <= call["at"]), default=call["at"])
        assert rested >= HELD_REFRESH_DELAY_MS - 1, (call, inputs)
    handled = [timing["handled"] for timing in timings]
    next_frame = [timing["nextFrame"] for timing in timings]
    print(
        f"\n{name}: 708x512 mask repaint, input event -> Plotly image swapped: "
        f"{', '.join(f'{ms:.1f}' for ms in handled)} ms (median {statistics.median(handled):.1f}); "
        f"to the next frame: median {statistics.median(next_frame):.1f} ms"
    )
    assert statistics.median(handled) < REPAINT_BOUND_MS

    # Counts, table and outlines follow the slider's last value with one debounced request.
    page.wait_for_function(
        "(last) => window.apiCalls.some((call) => call.at > last)"
        " && document.getElementById('update-status').textContent === ''"
        " && document.getElementById('analysis').dataset.state === 'done'",
        arg=inputs[-1],
    )
    assert page.text_content("#count-value") == str(COUNT_AT_LOW_THRESHOLD)
    calls = page.evaluate("() => window.apiCalls")
    last_rest = [call for call in calls if call["at"] > inputs[-1]]
    assert [(call["method"], call["url"], call["threshold"]) for call in last_rest] == [
        ("POST", f"{server_url}/api/v1/predict/{name}", f"{LOW_THRESHOLD:.3f}")
    ]

    # Plotly's zoom controls and our full-screen button are there, and work.
    assert page.locator(".modebar-btn[data-title='Zoom in']").count() >= 2
    assert page.locator(".modebar-btn[data-title='Download plot as a PNG']").count() >= 2
    assert page.locator(".modebar-btn[data-title='Reset axes']").count() >= 2
    first_plot = page.locator(".figure-panel .plot").first
    x_range_before = first_plot.evaluate("(plot) => [...plot.layout.xaxis.range]")
    page.locator(".figure-panel").first.hover()
    page.locator(".figure-panel").first.locator(".modebar-btn[data-title='Zoom in']").click()
    page.wait_for_function(
        "([before]) => { const plot = document.querySelector('.figure-panel .plot');"
        " const r = plot.layout.xaxis.range; return r[1] - r[0] < before[1] - before[0]; }",
        arg=[x_range_before],
    )
    fullscreen = page.locator(".figure-panel .fullscreen-button").first
    assert fullscreen.is_visible()
    fullscreen.click()
    # The whole analysis goes full screen (slider and count kept), this panel enlarged in it.
    page.wait_for_function(
        "() => document.fullscreenElement?.id === 'analysis'"
        " && document.querySelector('.figure-panel').classList.contains('is-fullscreen')"
    )
    page.evaluate("() => document.exitFullscreen()")
    page.wait_for_function("() => document.fullscreenElement === null")

    # An example from the gallery runs like a drop.
    answers_before = _answers(page)
    example = page.locator(".example-button").first
    example_name = example.get_attribute("data-example-name")
    example.click()
    _wait_for_answer(page, answers_before)
    assert example_name in page.text_content("#file-info")
    assert int(page.text_content("#count-value")) >= 0
    assert watch.console_errors == []


def test_lineage_page_shows_counts_in_order_and_total(watched_page, disk_image_png) -> None:
    page, watch = watched_page
    _open_model_page(page, "lineage")
    drop_file(page, disk_image_png, "embryo.png")
    _wait_for_answer(page)

    rows = page.locator("#table-container tbody tr")
    assert [row.get_attribute("data-lineage") for row in rows.all()] == LINEAGE_ORDER
    counts = [int(row.locator("td").last.text_content()) for row in rows.all()]
    total = int(page.text_content("#count-value"))
    assert total == sum(counts)
    assert page.text_content("#table-container tfoot td") == str(total)
    bars = page.evaluate(
        "() => document.querySelector('[data-figure-key=populations] .plot').data[0]"
    )
    assert bars["x"] == LINEAGE_ORDER and bars["y"] == counts
    assert page.locator("#range-warning").is_hidden()

    answers_before = _answers(page)
    page.locator(".example-button").first.click()
    _wait_for_answer(page, answers_before)
    assert page.locator(".modebar-btn[data-title='Zoom in']").count() >= 1
    assert page.locator(".figure-panel .fullscreen-button").count() == 2
    assert watch.console_errors == []


def _lineage_warning(page, image: bytes, a_count: int, **flags: bool) -> str:
    """The range warning shown when the server's real answer is edited to A = a_count, flags."""

    def edited(route):
        # The tiny model's embryos are young, so the server's real answer is edited on the way.
        answer = route.fetch().json()
        answer["populations"]["A"] = a_count
        answer["total"] = sum(answer["populations"].values())
        answer.update(flags)
        route.fulfill(json=answer)

    page.route("**/api/v1/predict/lineage", edited)
    _open_model_page(page, "lineage")
    drop_file(page, image, "late embryo.png")
    _wait_for_answer(page)
    warning = page.locator("#range-warning")
    assert warning.is_visible()
    return warning.text_content()


def test_lineage_page_warns_past_the_training_range(watched_page, disk_image_png) -> None:
    page, watch = watched_page
    text = _lineage_warning(page, disk_image_png, 312, outside_training_range=True)
    assert "312" in text and "250" in text
    assert watch.console_errors == []


def test_lineage_page_warns_at_the_end_of_the_training_range(watched_page, disk_image_png) -> None:
    page, watch = watched_page
    # What the shipped model answers for an embryo at or past A = 250: just under the limit.
    text = _lineage_warning(
        page, disk_image_png, 247, outside_training_range=False, at_end_of_training_range=True
    )
    assert "247" in text and "at the end" in text and "too low" in text
    assert watch.console_errors == []


def test_one_object_is_counted_in_the_singular(watched_page, image_maker) -> None:
    page, _ = watched_page
    image = image_maker.disks((512, 708), [DISK_CENTRES[0]], 45, 1.0)
    _open_model_page(page, "membrane")
    drop_file(page, image_maker.encode(image_maker.uint8(image)), "one cell.png")
    _wait_for_answer(page)
    assert page.text_content("#count-noun") == "cell"
    assert page.text_content("#table-container caption").startswith("1 cell:")


@pytest.mark.parametrize(
    "filename, content",
    [
        ('<img src=x onerror="alert(1)">.html', b"<html><body>not an image</body></html>"),
        ("notes.txt", b"plain text"),
    ],
)
def test_unsupported_file_is_refused_on_the_page_without_a_request(
    watched_page, filename: str, content: bytes
) -> None:
    page, watch = watched_page
    _open_model_page(page, "nucleus")
    drop_file(page, content, filename, "text/html")
    page.wait_for_selector("#message:not([hidden])")
    message = page.text_content("#message")
    assert filename in message and "PNG" in message and "8, 16 or 32 bit" in message
    assert page.locator("#message img").count() == 0
    assert watch.api_requests() == []
    assert watch.console_errors == []


def test_server_error_sentence_is_shown(watched_page) -> None:
    page, watch = watched_page
    _open_model_page(page, "membrane")
    drop_file(page, b"\x89PNG\r\n\x1a\n but the rest is not", "broken.png")
    page.wait_for_selector("#message:not([hidden])")
    message = page.text_content("#message")
    assert "PNG" in message and "damaged" in message
    # The browser itself logs the failed request; nothing else may appear.
    assert all("status of 400" in error for error in watch.console_errors)


@pytest.mark.parametrize("path", ["/", "/models/membrane", "/models/nucleus", "/models/lineage"])
def test_page_loads_without_console_errors(watched_page, path: str) -> None:
    page, watch = watched_page
    page.goto(path)
    page.wait_for_load_state("networkidle")
    assert page.locator("select#page-select").is_visible()
    if path == "/":
        for link in (
            "https://launchpass.com/openworm",
            "https://pypi.org/project/devolearn/",
            "https://github.com/DevoLearn/devolearn",
        ):
            assert page.locator(f"a[href='{link}']").count() >= 1
        if page.locator("#timelapse").count():
            page.click("#timelapse-play")
            page.click("#timelapse-play")
    else:
        assert page.locator(".pill-ok", has_text="file matches").count() == 1
        plot = page.locator("img.training-plot")
        assert plot.evaluate("(image) => image.complete && image.naturalWidth > 0")
    assert watch.console_errors == []


def test_page_drop_down_switches_pages(watched_page) -> None:
    page, watch = watched_page
    page.goto("/membrane")
    with page.expect_navigation():
        page.select_option("#page-select", label="Nucleus segmentation")
    assert page.url.endswith("/nucleus")
    with page.expect_navigation():
        page.select_option("#page-select", label="Home")
    assert page.locator("h1").text_content().startswith("DevoLearn")
    assert watch.console_errors == []


def test_error_page_shows_the_sentence(watched_page) -> None:
    page, _ = watched_page
    response = page.goto("/models/no-such-model")
    assert response.status == 404
    assert "membrane, nucleus, lineage" in page.text_content(".error-message")
    assert page.title().startswith("Error 404")


@pytest.mark.parametrize("path", ["/membrane", "/nucleus", "/lineage"])
@pytest.mark.parametrize("width", [1400, 1000, 390])
def test_example_captions_stay_inside_their_column(watched_page, path: str, width: int) -> None:
    page, _ = watched_page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(path)
    overflowing = page.evaluate(
        """() => [...document.querySelectorAll('.gallery-item')].flatMap((item) => {
            const box = item.getBoundingClientRect();
            return [...item.children]
                .filter((child) => child.scrollWidth > child.clientWidth + 1
                    || child.getBoundingClientRect().right > box.right + 1)
                .map((child) => child.textContent.trim().slice(0, 60));
        })"""
    )
    assert overflowing == []


@pytest.mark.parametrize(
    "path", ["/", "/membrane", "/models/membrane", "/models/nucleus", "/models/lineage"]
)
@pytest.mark.parametrize("width", [1000, 390])
def test_pages_fit_the_window_without_sideways_scrolling(
    watched_page, path: str, width: int
) -> None:
    page, _ = watched_page
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(path)
    page.wait_for_load_state("networkidle")
    scroll_width, client_width = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll_width <= client_width
    # Nor is a card's figure squeezed into a column a letter wide.
    squeezed = page.evaluate(
        """() => [...document.querySelectorAll('dd')]
            .filter((dd) => !dd.children.length && dd.textContent.trim().length > 3)
            .filter((dd) => dd.getBoundingClientRect().width
                < 4 * parseFloat(getComputedStyle(dd).fontSize))
            .map((dd) => dd.textContent.trim())"""
    )
    assert squeezed == []


def test_files_saved_from_the_page_are_named_like_the_servers(watched_page, disk_image_png):
    """The probability PNG and the figure PNGs are <model>-<upload>_<what>, as the server's."""
    page, watch = watched_page
    _open_model_page(page, "nucleus")
    drop_file(page, disk_image_png, "six disks.png")
    _wait_for_answer(page)
    page.locator("#downloads button[data-format='probability-tiff']").click()
    page.wait_for_function("() => document.getElementById('analysis').dataset.lastDownload")
    server_name = page.get_attribute("#analysis", "data-last-download").split()[0]
    assert server_name == "nucleus-six_disks_probability.tif"
    link = page.get_attribute("#downloads a[download]", "download")
    assert link == "nucleus-six_disks_probability.png"
    figure_names = page.evaluate(
        "() => [...document.querySelectorAll('.figure-panel .plot')]"
        ".map((plot) => plot._context.toImageButtonOptions.filename)"
    )
    assert figure_names == ["nucleus-six_disks_input", "nucleus-six_disks_outlines"]
    assert watch.console_errors == []


def test_the_roi_set_is_offered_beside_the_label_tiff(watched_page, disk_image_png, tmp_path):
    """The page's ROI set button saves the server's Fiji ROI set: one outline per object."""
    import roifile

    page, watch = watched_page
    _open_model_page(page, "nucleus")
    drop_file(page, disk_image_png, "six disks.png")
    _wait_for_answer(page)
    formats = page.eval_on_selector_all(
        "#downloads button", "(buttons) => buttons.map((b) => b.dataset.format)"
    )
    assert formats[formats.index("tiff") + 1] == "roi"
    with page.expect_download() as download_info:
        page.locator("#downloads button[data-format='roi']").click()
    download = download_info.value
    assert download.suggested_filename == "nucleus-six_disks_RoiSet.zip"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert len(roifile.roiread(saved)) == COUNT_AT_DEFAULT
    assert watch.console_errors == []


# Names whose cleaning differed between the page and the server (runs of spaces, dots, unicode,
# folders, length), and the upload name a dropped file with such a name sends.
TRICKY_UPLOAD_NAMES = [
    "t001.tif",
    "a  b.png",
    "a b .c.png",
    "embryo.v2.ome.tif",
    "a.",
    ".png",
    "",
    "embryo α β.tif",
    "ß😀x.png",
    "data/run 1/t001.tif",
    "C:\\data\\t001.tif",
    "a.png\n",
    "x" * 100 + ".png",
    "é" * 3 + "y" * 90 + ".png",
]


def test_page_and_server_clean_upload_names_alike(watched_page, disk_image_png):
    """The page's downloadStem (static/js/results.js) gives the server's safe_stem for any name."""
    from devolearn_web.downloads import safe_stem

    page, _ = watched_page
    _open_model_page(page, "nucleus")
    page_stems = page.evaluate(
        """async (names) => {
            const { downloadStem } = await import("/static/js/results.js");
            return names.map((name) => downloadStem("nucleus", name));
        }""",
        TRICKY_UPLOAD_NAMES,
    )
    assert page_stems == [safe_stem(name, "nucleus") for name in TRICKY_UPLOAD_NAMES]
    # A file dropped with such a name: the page's PNG and the server's TIFF share the stem.
    drop_file(page, disk_image_png, "six  disks.v2.png")
    _wait_for_answer(page)
    page.locator("#downloads button[data-format='tiff']").click()
    page.wait_for_function("() => document.getElementById('analysis').dataset.lastDownload")
    server_name = page.get_attribute("#analysis", "data-last-download").split()[0]
    assert server_name == "nucleus-six_disks_v2_labels.tif"
    link = page.get_attribute("#downloads a[download]", "download")
    assert link == "nucleus-six_disks_v2_probability.png"


def test_the_scale_is_shown_and_a_diameter_runs_again(watched_page, disk_image_png) -> None:
    page, _ = watched_page
    _open_model_page(page, "nucleus")
    drop_file(page, disk_image_png, "disks.png")
    _wait_for_answer(page)
    assert "(embryo)" in page.text_content("#scale-info")
    answers = _answers(page)
    page.fill("#diameter", "90")
    page.press("#diameter", "Enter")
    _wait_for_answer(page, answers)
    assert "(diameter)" in page.text_content("#scale-info")
    assert page.text_content("#count-value") == str(COUNT_AT_DEFAULT)


def test_a_picture_of_the_wrong_kind_is_warned_about(watched_page, disk_image_png) -> None:
    page, _ = watched_page
    _open_model_page(page, "membrane")  # solid disks are nuclei, not cell outlines
    drop_file(page, disk_image_png, "disks.png")
    _wait_for_answer(page)
    assert page.is_visible("#image-warnings")
    assert "looks like a nucleus image" in page.text_content("#image-warnings")
