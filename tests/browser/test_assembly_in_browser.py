"""3D nuclei and tracks on the nucleus page: tick the controls, see count_3d, the 3D view, the
lineage tree and the tracking downloads; a combination the server refuses shows its sentence."""

from __future__ import annotations

import numpy as np
import pytest

from bench.page_scripts import drop_file

pytestmark = pytest.mark.browser

SHAPE = (6, 80, 120)  # z, y, x: small, so the tiny models answer at once


def balls(centres: list[tuple[float, float, float]], radius: float = 9.0) -> np.ndarray:
    """float32 ZxHxW: bright balls at (z, y, x); a slice is 3 pixels deep."""
    z, y, x = np.indices(SHAPE)
    image = np.zeros(SHAPE, dtype=np.float32)
    for cz, cy, cx in centres:
        image[((z - cz) * 3) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= radius**2] = 1.0
    return image


def dividing_recording(image_maker) -> bytes:
    """A TZYX ImageJ TIFF of 4 time points: a still nucleus, and one that divides at time 2."""
    times = []
    for t in range(4):
        centres = [(3, 40, 90)]
        centres += [(3, 40, 30)] if t < 2 else [(3, 22, 30), (3, 58, 30)]
        times.append(balls(centres))
    data = image_maker.uint8(np.stack(times))
    return image_maker.tiff(data, imagej=True, metadata={"axes": "TZYX"})


# Chromium does not hand a multipart body with a file to Playwright: the page's fetch is wrapped
# to record each form's text fields (the file itself is left out).
RECORD_FORMS_JS = """(() => {
    const original = window.fetch;
    window.sentForms = [];
    window.fetch = (url, options = {}) => {
        if (options.body instanceof FormData) {
            const fields = {};
            for (const [key, value] of options.body.entries()) {
                if (typeof value === "string") fields[key] = value;
            }
            window.sentForms.push(fields);
        }
        return original(url, options);
    };
})();"""


def _open_nucleus_page(page) -> None:
    page.add_init_script(RECORD_FORMS_JS)
    page.goto("/nucleus")
    page.wait_for_selector("#analysis[data-state='ready']")


def _last_form(page) -> dict:
    """The text fields of the last form the page sent."""
    return page.evaluate("() => window.sentForms[window.sentForms.length - 1]")


def _wait_done(page, answers: int = 1) -> None:
    page.wait_for_function(
        "(answers) => { const root = document.getElementById('analysis');"
        " return root.dataset.state === 'done' && Number(root.dataset.answers || 0) >= answers; }",
        arg=answers,
    )


def _plot_traces(page, key: str) -> list[list]:
    """[type, number of points] of each trace Plotly drew in the 3D/tracks panel `key`."""
    return page.evaluate(
        "(key) => { const plot = document.querySelector("
        "`#figures-3d .figure-panel[data-figure-key='${key}'] .plot`);"
        " return plot && plot.data ? plot.data.map((t) => [t.type, (t.x || []).length]) : null; }",
        key,
    )


def _download(page, fmt: str) -> tuple[str, dict]:
    """Click a download button; (the file name the page saved, the form's text fields)."""
    page.locator(f"#downloads button[data-format='{fmt}']").click()
    page.wait_for_function(
        "() => Boolean(document.getElementById('analysis').dataset.lastDownload)"
    )
    saved = page.get_attribute("#analysis", "data-last-download")
    page.evaluate("() => delete document.getElementById('analysis').dataset.lastDownload")
    return saved, _last_form(page)


def test_a_z_stack_assembled_in_3d(watched_page, image_maker) -> None:
    page, watch = watched_page
    stack = image_maker.tiff(
        image_maker.uint8(balls([(2, 40, 30), (3, 40, 90)])), photometric="minisblack"
    )
    _open_nucleus_page(page)
    drop_file(page, stack, "embryo.tif", "image/tiff")
    _wait_done(page)
    assert page.locator("#assembly-controls").is_visible()
    assert page.locator("#assembly-summary").is_hidden()
    assert _plot_traces(page, "nuclei_3d") is None

    page.fill("#z-step", "0.5")  # no request: the z step waits for 3D or tracking
    page.locator("#z-step").dispatch_event("change")
    assert len(page.evaluate("() => window.sentForms")) == 1
    page.check("#assemble-3d")
    sent = _last_form(page)
    assert (sent["assemble"], sent["z_step_um"]) == ("3d", "0.5")
    assert "track" not in sent
    _wait_done(page, answers=2)
    page.wait_for_selector("#assembly-summary:not([hidden])")
    assert page.text_content("#assembly-summary") == "2 nuclei in 3D (z step 0.5 µm)"
    assert _plot_traces(page, "nuclei_3d") == [["scatter3d", 2]]
    assert _plot_traces(page, "lineage_tree") is None  # no tracks without a time axis
    tiff = page.locator("#downloads button[data-format='tiff']")
    assert "3D labels" in tiff.text_content()
    assert page.locator("#downloads button[data-format='ctc']").count() == 0

    saved, form = _download(page, "tiff")
    assert saved.startswith("nucleus-embryo_labels.tif ")
    assert (form["format"], form["assemble"]) == ("tiff", "3d")
    assert watch.console_errors == []


def test_a_recording_tracked_through_its_division(watched_page, image_maker) -> None:
    page, watch = watched_page
    _open_nucleus_page(page)
    drop_file(page, dividing_recording(image_maker), "embryo 4d.tif", "image/tiff")
    _wait_done(page)
    page.check("#track")
    _wait_done(page, answers=2)
    page.wait_for_selector("#assembly-summary:not([hidden])")
    # A time series of z-stacks is assembled in 3D first: 2 nuclei at the first time point.
    assert page.text_content("#assembly-summary") == (
        "2 nuclei in 3D at time point 1 of 4 (z step 1 µm) · 4 tracks, 1 division"
    )
    # The last time point's 3D view, the tree (a line per track, a marker per track) and counts.
    assert _plot_traces(page, "nuclei_3d") == [["scatter3d", 3]]
    tree = _plot_traces(page, "lineage_tree")
    assert tree is not None and tree[1] == ["scatter", 4]
    over_time = page.evaluate(
        "() => document.querySelector(\"#figures-3d [data-figure-key='nuclei_over_time'] .plot\")"
        ".data[0].y"
    )
    assert over_time == [2, 2, 3, 3]
    # Founder counts under the tree: per lineage shown, the tree's line and the model's, dashed.
    dashes = page.evaluate(
        "() => document.querySelector(\"#figures-3d [data-figure-key='founder_counts'] .plot\")"
        ".data.map((trace) => [trace.legendgroup, trace.line.dash, trace.x.length])"
    )
    assert dashes and len(dashes) % 2 == 0
    assert {(group, dash) for group, dash, _ in dashes} == {
        (group, dash) for group, _, _ in dashes for dash in ("solid", "dash")
    }
    assert all(points == 4 for _, _, points in dashes)
    panels = page.evaluate(
        "() => [...document.querySelectorAll('#figures-3d .figure-panel')]"
        ".map((panel) => panel.dataset.figureKey)"
    )
    assert panels.index("founder_counts") == panels.index("lineage_tree") + 1
    # The slider's last slice is at time point 4: the summary follows it.
    last = page.evaluate("() => Number(document.getElementById('frame-slider').max)")
    page.evaluate(
        "(value) => { const slider = document.getElementById('frame-slider');"
        " slider.value = String(value);"
        " slider.dispatchEvent(new Event('input', { bubbles: true })); }",
        last,
    )
    page.wait_for_function(
        "() => document.getElementById('assembly-summary').textContent.startsWith('3 nuclei')"
    )

    saved, form = _download(page, "ctc")
    assert saved.startswith("nucleus-embryo_4d_ctc.zip ")
    assert (form["format"], form["track"]) == ("ctc", "true")
    saved, form = _download(page, "tracks-csv")
    assert saved.startswith("nucleus-embryo_4d_tracks.csv ")
    assert form["format"] == "tracks-csv"
    saved, form = _download(page, "founder-counts-csv")
    assert saved.startswith("nucleus-embryo_4d_founder_counts.csv ")
    assert form["format"] == "founder-counts-csv"
    assert watch.console_errors == []


def test_tracking_a_z_stack_shows_the_servers_sentence(watched_page, image_maker) -> None:
    page, watch = watched_page
    stack = image_maker.tiff(image_maker.uint8(balls([(2, 40, 30)])), photometric="minisblack")
    _open_nucleus_page(page)
    drop_file(page, stack, "slices.tif", "image/tiff")
    _wait_done(page)
    page.check("#track")
    page.wait_for_selector("#message:not([hidden])")
    message = page.text_content("#message")
    assert message.startswith("track=true follows nuclei through time"), message
    assert "axes=T" in message
    # The 400 is the page's to explain, not a console error.
    assert [error for error in watch.console_errors if "400" not in error] == []
