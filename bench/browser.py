"""(6) In Chromium (Playwright): from a slider input event to the repainted threshold overlay.

Driven the way tests/browser drives the pages: Debian's /usr/bin/chromium, headless, a file
dropped on the drop zone, then `input` events on the slider. Two figures per move: the event
handler's own time (mask recomputed, Plotly image swapped) and the time until the next
animation frame (when the browser paints it).
"""

from __future__ import annotations

from pathlib import Path

from bench.context import BenchContext
from bench.inputs import model_upload
from bench.page_scripts import SLIDE_JS, drop_file
from bench.report import Row, format_ms
from bench.server import running_server
from bench.stats import Summary

SECTION = "6 browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MAX_REPAINT_MS = 50.0
VIEWPORT = {"width": 1400, "height": 1000}


def slider_values(count: int) -> list[float]:
    """Thresholds a visitor sweeps through: down from 0.5 to 0.1 and back up to 0.9."""
    values = [round(0.5 - 0.4 * i / (count // 2), 3) for i in range(1, count // 2 + 1)]
    return values + [
        round(0.1 + 0.8 * i / (count - count // 2), 3) for i in range(1, count - count // 2 + 1)
    ]


def measure_browser(context: BenchContext) -> list[Row]:
    """Slider-to-repaint on the membrane and nucleus pages, 708x512 uploads."""
    if not CHROMIUM.exists():
        return [Row(SECTION, "slider -> repaint", f"skipped: {CHROMIUM} is missing")]
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return [Row(SECTION, "slider -> repaint", "skipped: playwright is not installed")]
    moves = 10 if context.quick else 40
    rows = []
    with running_server(context.models_dir) as server, sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for name in ("membrane", "nucleus"):
                timings = _slide_on_page(chromium, server.port, name, context, moves)
                handled = Summary.of([t["handled"] for t in timings])
                painted = Summary.of([t["nextFrame"] for t in timings])
                rows.append(
                    Row(
                        SECTION,
                        f"{name}: slider input -> overlay swapped (handler)",
                        format_ms(handled.median),
                        format_ms(handled.p95),
                    )
                )
                rows.append(
                    Row(
                        SECTION,
                        f"{name}: slider input -> next frame painted",
                        format_ms(painted.median),
                        format_ms(painted.p95),
                        target=f"<= {MAX_REPAINT_MS:g} ms",
                        met=painted.median <= MAX_REPAINT_MS,
                    )
                )
        finally:
            chromium.close()
    return rows


def _slide_on_page(chromium, port: int, name: str, context: BenchContext, moves: int) -> list:
    page_context = chromium.new_context(viewport=VIEWPORT, base_url=f"http://127.0.0.1:{port}")
    try:
        page = page_context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"/{name}")
        page.wait_for_selector("#analysis[data-state='ready']")
        drop_file(page, model_upload(name, context.samples_dir), f"{name}.png", "image/png")
        page.wait_for_function(
            "() => { const root = document.getElementById('analysis');"
            " return root.dataset.state === 'done' && Number(root.dataset.answers || 0) > 0; }"
        )
        page.evaluate(SLIDE_JS, [0.45, 0.5])  # warm-up: the first move decodes the map
        return page.evaluate(SLIDE_JS, slider_values(moves))
    finally:
        page_context.close()
