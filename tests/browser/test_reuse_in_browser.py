"""After the first answer the page reuses what the server holds: slider, minimum size, excluded
objects and downloads send no file again and run no network, and the counts still follow."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bench.page_scripts import drop_file

pytestmark = pytest.mark.browser

# Four large disks and two specks: all pass the default threshold with the tiny models.
LARGE = [(110, 120), (330, 110), (560, 130), (150, 380)]
SPECKS = [(400, 390), (600, 380)]
MOVE_SLIDER_JS = """(value) => {
    const slider = document.getElementById("threshold");
    slider.value = String(value);
    slider.dispatchEvent(new Event("input", { bubbles: true }));
}"""


@pytest.fixture
def specks_png(image_maker) -> bytes:
    image = np.maximum(
        image_maker.disks((512, 708), LARGE, 45, 1.0), image_maker.disks((512, 708), SPECKS, 8, 1.0)
    )
    return image_maker.encode(image_maker.uint8(image))


def _posts(page) -> list:
    """The POSTs the page sends, recorded from now on."""
    posts: list = []
    page.on("request", lambda request: posts.append(request) if request.method == "POST" else None)
    return posts


def _body_size(request) -> int:
    """Bytes of a request's body as sent, from its Content-Length (Chromium does not show a
    file part's bytes to the test)."""
    return int(request.all_headers().get("content-length", "-1"))


def _answers(page) -> int:
    return int(page.get_attribute("#analysis", "data-answers") or 0)


def _wait_for_answer(page, answers_before: int) -> None:
    page.wait_for_function(
        "(n) => { const root = document.getElementById('analysis');"
        " return root.dataset.state === 'done' && Number(root.dataset.answers || 0) > n; }",
        arg=answers_before,
    )


def _download(page, format_name: str) -> str:
    page.evaluate("() => { delete document.getElementById('analysis').dataset.lastDownload; }")
    with page.expect_download() as download:
        started = time.perf_counter()
        page.locator(f"#downloads button[data-format='{format_name}']").click()
    waited = time.perf_counter() - started
    print(f"\n{format_name} download started {waited * 1000:.0f} ms after the click")
    return download.value.path().read_text() if format_name == "csv" else ""


def _drop_and_wait(page, data: bytes, name: str = "specks.png", mime: str = "image/png") -> list:
    page.goto("/membrane")
    page.wait_for_selector("#analysis[data-state='ready']")
    posts = _posts(page)
    drop_file(page, data, name, mime)
    _wait_for_answer(page, 0)
    assert len(posts) == 1 and _body_size(posts[0]) > len(data)
    return posts


def _click_at(page, x: float, y: float) -> None:
    """A real click on the first figure at axis coordinates (x, y)."""
    page.evaluate(
        """([x, y]) => {
            const plot = document.querySelector(".figure-panel .plot");
            plot.scrollIntoView({ block: "center" });
            const layout = plot._fullLayout;
            const box = plot.querySelector(".nsewdrag").getBoundingClientRect();
            window.clickAt = [box.left + layout.xaxis.l2p(x), box.top + layout.yaxis.l2p(y)];
        }""",
        [x, y],
    )
    page.mouse.click(*page.evaluate("() => window.clickAt"))


def test_a_click_excludes_the_object_under_it_on_a_calibrated_image(
    watched_page, specks_png, image_maker
) -> None:
    # Drawn in µm (0.5 µm pixels): the click's µm position must find the object's pixels.
    from PIL import Image

    pixels = np.asarray(Image.open(__import__("io").BytesIO(specks_png)))
    tiff = image_maker.tiff(pixels, resolution=(2.0, 2.0), resolutionunit="MICROMETER")
    page, watch = watched_page
    _drop_and_wait(page, tiff, "specks.tif", "image/tiff")
    assert page.text_content("#count-value") == "6"
    answers = _answers(page)
    x, y = LARGE[3]
    _click_at(page, x * 0.5, y * 0.5)
    _wait_for_answer(page, answers)
    assert page.text_content("#count-value") == "5"
    assert watch.console_errors == []


def test_slider_min_size_exclusion_and_downloads_send_no_file(watched_page, specks_png) -> None:
    page, watch = watched_page
    posts = _drop_and_wait(page, specks_png)
    assert page.text_content("#count-value") == "6"

    answers = _answers(page)
    started = time.perf_counter()
    page.evaluate(MOVE_SLIDER_JS, 0.3)
    _wait_for_answer(page, answers)
    print(f"\ncounts followed the slider in {(time.perf_counter() - started) * 1000:.0f} ms")
    assert page.text_content("#count-value") == "6"

    answers = _answers(page)
    page.fill("#min-size", "1000")
    _wait_for_answer(page, answers)
    assert page.text_content("#count-value") == "4"
    assert len(page.locator("#table-container tbody tr").all()) == 4
    csv = _download(page, "csv")
    assert len(csv.strip().splitlines()) == 1 + 4, csv

    # A click on a large disk drops it: the count, the table and the CSV follow.
    answers = _answers(page)
    page.evaluate(
        """([x, y]) => {
            const plot = document.querySelector(".figure-panel .plot");
            plot.scrollIntoView({ block: "center" });
            const layout = plot._fullLayout;
            const box = plot.querySelector(".nsewdrag").getBoundingClientRect();
            window.clickAt = [box.left + layout.xaxis.l2p(x), box.top + layout.yaxis.l2p(y)];
        }""",
        list(LARGE[0]),
    )
    x, y = page.evaluate("() => window.clickAt")
    page.mouse.click(x, y)
    _wait_for_answer(page, answers)
    assert page.text_content("#count-value") == "3"
    assert not page.locator("#restore-excluded").is_hidden()
    csv = _download(page, "csv")
    assert len(csv.strip().splitlines()) == 1 + 3, csv
    _download(page, "tiff")

    sizes = [_body_size(post) for post in posts[1:]]
    assert len(sizes) >= 6, sizes  # slider, min size, click, three downloads
    assert all(size < 2_000 for size in sizes), sizes  # the file is 7 kB; none carries it
    assert watch.console_errors == []


def test_a_result_no_longer_held_falls_back_to_the_file(watched_page, specks_png) -> None:
    page, watch = watched_page
    posts = _drop_and_wait(page, specks_png)

    def gone_when_held(route) -> None:
        # Another worker, or an expired entry: the server answers 410 to a result id.
        if b'name="result"' not in (route.request.post_data_buffer or b""):
            route.continue_()
        else:
            route.fulfill(
                status=410,
                content_type="application/json",
                body='{"error": "That result is no longer held here.", "status": 410}',
            )

    page.route("**/api/v1/predict/**", gone_when_held)
    answers = _answers(page)
    page.evaluate(MOVE_SLIDER_JS, 0.3)
    _wait_for_answer(page, answers)
    assert page.text_content("#count-value") == "6"
    assert b'name="result"' in posts[1].post_data_buffer
    # The file, sent again (Chromium shows the test no bytes of a file part, nor a routed
    # request's length): a request without a result id, which the server answered.
    assert b'name="result"' not in (posts[2].post_data_buffer or b"")
    assert len(posts) == 3
    assert page.is_hidden("#message")
    # The browser logs the 410 itself; nothing else went wrong.
    assert [error for error in watch.console_errors if "410" not in error] == []
