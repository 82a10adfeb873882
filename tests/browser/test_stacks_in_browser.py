"""Stacks and movies in a real browser: drop a stack, move the slice slider, chart and downloads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.page_scripts import drop_file

pytestmark = pytest.mark.browser

MOVE_SLIDER_JS = """([id, value]) => {
    const slider = document.getElementById(id);
    slider.value = String(value);
    slider.dispatchEvent(new Event("input", { bubbles: true }));
}"""

DISKS = [(60, 60), (180, 60), (300, 60), (120, 200), (260, 200)]


def _wait_done(page) -> None:
    page.wait_for_function(
        "() => { const root = document.getElementById('analysis');"
        " return root.dataset.state === 'done' && Number(root.dataset.answers || 0) > 0; }"
    )


def test_stack_drop_slice_slider_threshold_and_download(watched_page, image_maker) -> None:
    page, watch = watched_page
    planes = [image_maker.disks((280, 380), DISKS[: count + 1], 25) for count in range(4)]
    stack = image_maker.tiff(image_maker.uint8(np.stack(planes)), photometric="minisblack")
    page.goto("/nucleus")
    page.wait_for_selector("#analysis[data-state='ready']")

    drop_file(page, stack, "embryo stack.tif", "image/tiff")
    _wait_done(page)
    assert page.locator("#stack-controls").is_visible()
    assert "ZYX" in page.text_content("#stack-axes-text")
    # A z-stack opens on its middle slice, where the embryo is, not on its top cap.
    assert page.text_content("#frame-value") == "slice 3 of 4"
    assert page.text_content("#count-value") == "3"
    chart = page.evaluate("() => document.getElementById('frame-chart').data[0].y")
    assert chart == [1, 2, 3, 4]

    page.evaluate(MOVE_SLIDER_JS, ["frame-slider", 3])
    page.wait_for_function("() => document.getElementById('count-value').textContent === '4'")
    assert page.text_content("#frame-value") == "slice 4 of 4"
    assert page.locator("#table-container tbody tr").count() == 4

    # The threshold slider repaints the shown slice's mask in the browser, with no request.
    requests_before = len(watch.api_requests())
    page.evaluate(MOVE_SLIDER_JS, ["threshold", 0.95])
    assert page.get_attribute("#threshold", "data-repaints") == "1"
    assert watch.api_requests()[requests_before:] == []

    page.locator("#downloads button[data-format='csv']").click()
    page.wait_for_function(
        "() => (document.getElementById('analysis').dataset.lastDownload || '')"
        ".startsWith('nucleus-embryo_stack.csv')"
    )
    assert watch.console_errors == []


def test_lineage_movie_chart_options(watched_page, image_maker) -> None:
    from PIL import Image

    page, watch = watched_page
    frames = [
        Image.fromarray(image_maker.uint8(image_maker.disks((64, 96), [(48, 32)], 6 + 3 * i)))
        for i in range(8)
    ]
    import io

    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    page.goto("/lineage")
    page.wait_for_selector("#analysis[data-state='ready']")
    drop_file(page, buffer.getvalue(), "embryo.gif", "image/gif")
    _wait_done(page)
    traces = page.evaluate("() => document.getElementById('frame-chart').data.map((t) => t.name)")
    assert traces[:7] == ["A", "E", "M", "P", "C", "D", "Z"]
    assert page.locator("#stack-axes-form").is_hidden()  # a movie's axes are fixed

    page.fill("#skip-first", "2")
    page.fill("#skip-last", "1")
    page.wait_for_function("() => document.getElementById('frame-chart').data[0].x.length === 5")
    assert page.evaluate("() => document.getElementById('frame-chart').data[0].x[0]") == 3
    page.check("#running-max")
    page.wait_for_function(
        "() => document.getElementById('frame-chart').layout.title.text.includes('running')"
    )
    assert watch.console_errors == []


def test_lineage_chart_marks_the_frames_the_server_flags(watched_page, image_maker) -> None:
    page, watch = watched_page
    planes = [image_maker.disks((64, 96), [(32, 48)], 6 + 3 * i) for i in range(4)]
    data = image_maker.tiff(np.stack(planes), imagej=True, metadata={"axes": "TYX"})

    def flagged(route):
        # The tiny model's embryos are young: the server's real answer (the last line of its
        # progress stream) is edited on the way.
        response = route.fetch()
        lines = response.text().splitlines()
        event = json.loads(lines[-1])
        event["result"]["outside_training_range_frames"] = [3]
        event["result"]["at_end_of_training_range_frames"] = [1, 2]
        lines[-1] = json.dumps(event)
        route.fulfill(response=response, body="\n".join(lines) + "\n")

    page.route("**/api/v1/predict/lineage", flagged)
    page.goto("/lineage")
    page.wait_for_selector("#analysis[data-state='ready']")
    drop_file(page, data, "late.tif", "image/tiff")
    _wait_done(page)
    marks = page.evaluate(
        "() => document.getElementById('frame-chart').data.slice(7).map((t) => [t.name, t.x])"
    )
    # Shown numbers count from 1, as the slider's label does.
    assert marks == [
        ["past A = 250 (outside the training range)", [4]],
        ["A at the end of the training range (250)", [2, 3]],
    ]
    assert watch.console_errors == []


def test_counts_chart_ticks_are_whole_slices_and_counts(watched_page, image_maker) -> None:
    """Slices and counts are whole numbers: no tick at "slice 0.5" or "1.5 objects"."""
    page, watch = watched_page
    planes = [image_maker.disks((280, 380), DISKS[: count + 1], 25) for count in range(4)]
    stack = image_maker.tiff(image_maker.uint8(np.stack(planes)), photometric="minisblack")
    page.goto("/nucleus")
    page.wait_for_selector("#analysis[data-state='ready']")
    drop_file(page, stack, "embryo stack.tif", "image/tiff")
    _wait_done(page)
    ticks = page.evaluate(
        "() => ['xtick', 'ytick'].map((axis) => [...document.querySelectorAll("
        "`#frame-chart .${axis} text`)].map((text) => text.textContent))"
    )
    assert len(ticks[0]) == 4 and all(label.isdigit() for label in ticks[0]), ticks[0]
    assert ticks[1] and all(label.isdigit() for label in ticks[1]), ticks[1]
    assert watch.console_errors == []


def test_stack_slices_and_channels_count_from_one(watched_page, image_maker) -> None:
    """The label, the chart and the channel count from 1, as Fiji does (the files from 0)."""
    page, watch = watched_page
    planes = [image_maker.disks((280, 380), DISKS[: count + 1], 25) for count in range(4)]
    # Two channels, the second carrying the signal: the page picks it and names it channel 2.
    stack = np.stack([np.stack([np.zeros_like(plane), plane]) for plane in planes])
    data = image_maker.tiff(image_maker.uint8(stack), imagej=True, metadata={"axes": "ZCYX"})
    page.goto("/nucleus")
    page.wait_for_selector("#analysis[data-state='ready']")
    drop_file(page, data, "two channels.tif", "image/tiff")
    _wait_done(page)
    assert page.text_content("#frame-value") == "slice 3 of 4"
    assert "channel 2 of 2" in page.text_content("#stack-axes-text")
    x, y, line = page.evaluate(
        "() => { const chart = document.getElementById('frame-chart');"
        " return [chart.data[0].x, chart.data[0].y, chart.layout.shapes[0].x0]; }"
    )
    assert x == [1, 2, 3, 4] and y == [1, 2, 3, 4]
    assert line == 3  # the dotted line marks the slice shown
    ticks = page.evaluate(
        "() => [...document.querySelectorAll('#frame-chart .xtick text')].map((t) => t.textContent)"
    )
    assert ticks == ["1", "2", "3", "4"]
    assert watch.console_errors == []


def test_a_z_stack_on_the_lineage_page_is_projected_by_default(watched_page, image_maker) -> None:
    # The lineage model was trained on whole-embryo projections, not on single z-slices.
    page, watch = watched_page
    embryo = image_maker.disks((64, 96), [(48, 32)], 20, 0.9)
    stack = np.stack([image_maker.uint8(embryo * (0.5 + z / 10)) for z in range(5)])
    page.goto("/lineage")
    page.wait_for_selector("#analysis[data-state='ready']")
    posts: list = []
    page.on("request", lambda request: posts.append(request) if request.method == "POST" else None)
    drop_file(page, image_maker.tiff(stack), "z.tif", "image/tiff")
    _wait_done(page)
    notes = page.text_content("#notes")
    assert "projected" in notes, notes
    assert "projection=none" not in (posts[0].post_data or "")  # the page leaves the default
    assert watch.console_errors == []
