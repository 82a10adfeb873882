"""Where things land on a laptop and a phone: the result in view, full screen, linked zoom,
µm for a calibrated TIFF, hover on any object, the page menu and the card's first screen."""

from __future__ import annotations

import io

import pytest
import tifffile

from bench.page_scripts import drop_file

pytestmark = pytest.mark.browser

LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 375, "height": 812}
# 4 pixels per µm, as Fiji writes a calibrated TIFF.
PIXEL_SIZE_UM = 0.25

TOP_OF = """(selector) => {
    const box = document.querySelector(selector).getBoundingClientRect();
    return [box.top, box.bottom];
}"""
DONE_JS = "() => document.getElementById('analysis').dataset.state === 'done'"
PLOTS = "document.querySelectorAll('#figures .figure-panel .plot')"


@pytest.fixture
def calibrated_disks_tiff(image_maker) -> bytes:
    """Three bright disks on 708x512, 8-bit, with ImageJ's pixel size of 0.25 µm."""
    image = image_maker.disks((512, 708), [(110, 120), (330, 110), (560, 380)], 45, 1.0)
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        image_maker.uint8(image),
        imagej=True,
        resolution=(1 / PIXEL_SIZE_UM, 1 / PIXEL_SIZE_UM),
        metadata={"unit": "um"},
    )
    return buffer.getvalue()


@pytest.fixture(params=[LAPTOP, PHONE], ids=["laptop", "phone"])
def sized_page(request, browser, server_url):
    """A fresh page at a laptop's or a phone's viewport, and that viewport's height."""
    context = browser.new_context(viewport=request.param, base_url=server_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(20_000)
    yield page, request.param["height"], errors
    context.close()


def _wait_for_scroll_to_settle(page) -> None:
    """The page scrolls smoothly to the result: wait until it has stopped moving."""
    last = None
    for _ in range(50):
        page.wait_for_timeout(150)
        now = page.evaluate("() => scrollY")
        if now == last and now > 0:
            return
        last = now
    raise AssertionError("the page never scrolled to the result")


def _in_view(page, selector: str, height: int) -> bool:
    top, bottom = page.evaluate(TOP_OF, selector)
    return 0 <= top < height and bottom > 0


def test_a_dropped_calibrated_tiff_lands_in_view_in_micrometres(
    sized_page, calibrated_disks_tiff
) -> None:
    page, height, errors = sized_page
    page.goto("/nucleus")
    page.wait_for_selector("#analysis[data-state='ready']")
    drop_file(page, calibrated_disks_tiff, "disks.tif", "image/tiff")
    page.wait_for_function(DONE_JS)
    _wait_for_scroll_to_settle(page)
    assert page.text_content("#count-value") == "3"
    assert _in_view(page, "#count-value", height)
    assert _in_view(page, "#figures .figure-panel", height)

    # µm on the axes, in the table (pixels kept) and in the summary.
    assert page.evaluate(f"{PLOTS}[0].layout.xaxis.title.text") == "x (µm)"
    headers = page.locator("#table-container th").all_text_contents()
    assert headers[:4] == ["Label", "x (µm)", "y (µm)", "Area (µm²)"]
    assert "Area (px²)" in headers
    assert "px of 0.250 µm (177.0 × 128.0 µm)" in page.text_content("#file-info")

    # Linked zoom: a zoom on the input panel moves the outlined panel to the same µm.
    page.evaluate(
        f"Plotly.relayout({PLOTS}[0], {{'xaxis.range': [20, 60], 'yaxis.range': [50, 10]}})"
    )
    page.wait_for_function(f"() => Math.abs({PLOTS}[1].layout.xaxis.range[0] - 20) < 1e-6")
    assert page.evaluate(f"{PLOTS}[1].layout.xaxis.range") == [20, 60]

    # Full screen keeps the slider and the count in view, above the enlarged panel.
    page.click("#figures .figure-panel .fullscreen-button")
    page.wait_for_function("() => Boolean(document.fullscreenElement)")
    for selector in ("#threshold", "#count-value", "#figures .figure-panel.is-fullscreen"):
        assert page.is_visible(selector) and _in_view(page, selector, height), selector
    assert not page.is_visible("#dropzone")
    assert errors == []


def test_hover_anywhere_on_an_object_names_it(browser, server_url, calibrated_disks_tiff) -> None:
    context = browser.new_context(viewport=LAPTOP, base_url=server_url)
    page = context.new_page()
    page.goto("/nucleus")
    page.wait_for_selector("#analysis[data-state='ready']")
    drop_file(page, calibrated_disks_tiff, "disks.tif", "image/tiff")
    page.wait_for_function(DONE_JS)
    _wait_for_scroll_to_settle(page)
    # A point inside the first disk but 30 px from its centre: no centroid marker there.
    x_um, y_um = (110 + 30) * PIXEL_SIZE_UM, 120 * PIXEL_SIZE_UM
    where = page.evaluate(
        """([x, y]) => {
            const plot = document.querySelectorAll('#figures .figure-panel .plot')[0];
            const full = plot._fullLayout, box = plot.getBoundingClientRect();
            return [box.left + full._size.l + full.xaxis.l2p(x),
                    box.top + full._size.t + full.yaxis.l2p(y)];
        }""",
        [x_um, y_um],
    )
    page.mouse.move(*where)
    readout = page.locator("#figures .figure-panel .hover-readout").first
    page.wait_for_function(
        "() => document.querySelector('#figures .hover-readout').textContent !== ''"
    )
    text = readout.text_content()
    assert text.startswith("Nucleus ") and "µm²" in text and "px²" in text
    context.close()


def test_arrow_keys_in_the_page_menu_do_not_leave_the_page(browser, server_url) -> None:
    context = browser.new_context(viewport=LAPTOP, base_url=server_url)
    page = context.new_page()
    page.goto("/membrane")
    page.focus("#page-select")
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(500)
    assert page.url.endswith("/membrane")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/nucleus")
    context.close()


def test_phone_folds_the_navigation_into_a_menu(browser, server_url) -> None:
    context = browser.new_context(viewport=PHONE, base_url=server_url)
    page = context.new_page()
    page.goto("/nucleus")
    assert not page.is_visible("#page-select")
    assert _in_view(page, "#dropzone", PHONE["height"])
    page.click("#menu-toggle")
    assert page.is_visible("#page-select")
    assert page.get_attribute("#menu-toggle", "aria-expanded") == "true"
    context.close()


@pytest.mark.parametrize("name", ["membrane", "nucleus", "lineage"])
def test_card_page_shows_limits_on_the_first_screen(sized_page, name: str) -> None:
    page, height, errors = sized_page
    page.goto(f"/models/{name}")
    assert _in_view(page, "#limits-glance-heading", height)
    assert page.is_visible("#glance-limits li")
    assert not page.is_visible("#card-details .facts")  # folded until asked for
    assert errors == []
