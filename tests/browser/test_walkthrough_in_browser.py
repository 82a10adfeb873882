"""What a first-time visitor meets on a model page: hidden controls stay hidden, and a file that
fails does not leave the last file's results standing under its error."""

from __future__ import annotations

import numpy as np
import pytest

from bench.page_scripts import drop_file

pytestmark = pytest.mark.browser


def _open(page, name: str) -> None:
    page.goto(f"/{name}")
    page.wait_for_selector("#analysis[data-state='ready']")


def _wait_for_answer(page, answers_before: int = 0) -> None:
    page.wait_for_function(
        "(n) => { const root = document.getElementById('analysis');"
        " return root.dataset.state === 'done' && Number(root.dataset.answers || 0) > n; }",
        arg=answers_before,
    )


@pytest.fixture
def disks_png(image_maker) -> bytes:
    image = image_maker.disks((256, 356), [(80, 80), (200, 160), (260, 90)], 30, 1.0)
    return image_maker.encode(image_maker.uint8(image))


def test_hidden_buttons_stay_hidden(watched_page, disks_png: bytes) -> None:
    """.button's display once beat the hidden attribute: "Bring back 0 excluded" showed with
    nothing excluded, and "Cancel the job" beside an analysis that was no job."""
    page, watch = watched_page
    _open(page, "nucleus")
    drop_file(page, disks_png, "disks.png")
    _wait_for_answer(page)
    assert page.locator("#object-filter").is_visible()
    assert page.get_attribute("#restore-excluded", "hidden") is not None
    assert not page.locator("#restore-excluded").is_visible()
    assert not page.locator("#job-cancel").is_visible()
    # Named like its neighbours ("Labels (16-bit TIFF)"), not "Download the probability map".
    labels = page.locator("#downloads > *").all_inner_texts()
    assert "Probability (8-bit PNG)" in labels and "Probability (TIFF)" in labels
    assert not any(label.startswith("Download") for label in labels)
    assert watch.console_errors == []


def test_a_failed_file_takes_the_last_results_away(watched_page, disks_png: bytes) -> None:
    page, watch = watched_page
    _open(page, "nucleus")
    drop_file(page, disks_png, "disks.png")
    _wait_for_answer(page)
    assert page.locator("#results").is_visible()

    # The first third of a PNG: the server answers 400 with a sentence.
    drop_file(page, disks_png[: len(disks_png) // 3], "damaged.png")
    page.wait_for_selector("#analysis[data-state='error']")
    assert "damaged" in page.text_content("#message")
    assert page.locator("#message").is_visible()
    # Neither the count, the figures, the downloads nor the slider of disks.png stay: under
    # this message they would read as damaged.png's, and the slider would send damaged.png.
    assert not page.locator("#results").is_visible()
    assert not page.locator("#threshold-controls").is_visible()
    assert not page.locator("#object-filter").is_visible()

    # The next good file is answered as usual.
    drop_file(page, disks_png, "disks again.png")
    _wait_for_answer(page, int(page.get_attribute("#analysis", "data-answers") or 0))
    assert page.locator("#results").is_visible()
    assert "disks again.png" in page.text_content("#file-info")
    assert not page.locator("#message").is_visible()
    errors = [text for text in watch.console_errors if "400" not in text]
    assert errors == []


def test_the_last_results_fade_while_a_new_file_is_analysed(watched_page, disks_png) -> None:
    page, _ = watched_page
    _open(page, "nucleus")
    drop_file(page, disks_png, "disks.png")
    _wait_for_answer(page)
    page.wait_for_timeout(300)  # the fade's transition
    opacity = "(node) => Number(getComputedStyle(node).opacity)"
    assert page.eval_on_selector("#results", opacity) == 1
    page.evaluate("() => { document.getElementById('analysis').dataset.state = 'busy'; }")
    page.wait_for_timeout(300)  # the fade's transition
    assert page.eval_on_selector("#results", opacity) < 0.6


# Whether an input's placeholder is wider than the room inside the box.
PLACEHOLDER_CUT_JS = """(input) => {
    const style = getComputedStyle(input);
    const context = document.createElement("canvas").getContext("2d");
    context.font = `${style.fontSize} ${style.fontFamily}`;
    const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return context.measureText(input.placeholder).width > room;
}"""


@pytest.mark.parametrize("width", [1400, 390])
def test_placeholders_and_the_cancel_button_are_not_cut(browser, server_url, width) -> None:
    """The diameter box read 'autom', the z step 'from', and 'Cancel the job' broke over three
    lines beside a long file name."""
    context = browser.new_context(viewport={"width": width, "height": 900}, base_url=server_url)
    page = context.new_page()
    try:
        _open(page, "nucleus")
        page.evaluate(
            "() => { for (const id of ['threshold-controls', 'stack-controls', 'progress',"
            " 'job-cancel']) document.getElementById(id).hidden = false;"
            " document.getElementById('progress-text').textContent ="
            " 'Job: frame 12 of 35 done, about 2 min left for'"
            " + ' “a_rather_long_recording_name_t000-t199.tif”…'; }"
        )
        for selector in ("#diameter", "#z-step"):
            assert page.eval_on_selector(selector, PLACEHOLDER_CUT_JS) is False, selector
        line = page.eval_on_selector(
            "#progress-text", "(n) => parseFloat(getComputedStyle(n).lineHeight)"
        )
        button = page.locator("#job-cancel").bounding_box()
        assert button["height"] < 2 * line
        assert page.locator("#progress progress").bounding_box()["width"] > 100
    finally:
        context.close()


def test_a_microscope_makers_file_is_refused_with_the_way_to_a_tiff(watched_page) -> None:
    page, watch = watched_page
    _open(page, "nucleus")
    page.set_input_files(
        "#file-input",
        files=[{"name": "embryo 12.lif", "mimeType": "application/octet-stream", "buffer": b"x"}],
    )
    page.wait_for_selector("#analysis[data-state='rejected']")
    message = page.text_content("#message")
    assert "“embryo 12.lif” is a Leica LIF file" in message
    assert "Fiji" in message and "save it as a TIFF" in message
    assert watch.api_requests() == []  # refused in the browser, as any other wrong file


def test_a_z_stack_on_the_lineage_page_is_one_projection_without_a_frame_slider(
    watched_page, image_maker
) -> None:
    """A z-stack projected into one image showed 'Stack of 1 frames', a one-position slider,
    an empty frame-by-frame chart and frame-skipping boxes, and told a page visitor to 'send
    projection=none'."""
    page, watch = watched_page
    _open(page, "lineage")
    slices = [
        image_maker.uint8(image_maker.disks((140, 200), image_maker.five_disks, radius))
        for radius in (8, 12, 10)
    ]
    stack = image_maker.tiff(np.stack(slices), imagej=True, metadata={"axes": "ZYX"})
    drop_file(page, stack, "z-stack.tif", "image/tiff")
    _wait_for_answer(page)
    assert page.text_content("#stack-axes-text").startswith("Stack of 1 frame ·")
    assert page.locator("#stack-axes-form").is_visible()  # it can still be read as time points
    for selector in ("#frame-slider", "#frame-chart", "#skip-first"):
        assert not page.locator(selector).is_visible(), selector
    notes = page.text_content("#notes")
    assert "3 z-slices were projected" in notes and "axes T" in notes
    assert watch.console_errors == []
