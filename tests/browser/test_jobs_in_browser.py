"""A stack too big for one request goes from the model page as a job (issue #21): progress,
the answer drawn as predict's, a download from the job, a link that reopens it, and cancel."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from bench.page_scripts import drop_file
from tests.browser.conftest import (
    REPOSITORY_ROOT,
    VIEWPORT,
    _free_loopback_port,
    _wait_until_up,
)

pytestmark = pytest.mark.browser

DISKS = [(60, 60), (180, 60), (300, 60), (120, 200), (260, 200)]


@pytest.fixture(scope="module")
def jobs_server(tiny_models_dir, tmp_path_factory):
    """gunicorn with a page job threshold of 1 byte: every dropped file goes as a job."""
    pytest.importorskip("gunicorn", reason="the browser tests serve the app with gunicorn")
    port = _free_loopback_port()
    folder = tmp_path_factory.mktemp("jobs-server")
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "DEVOLEARN_MODELS_DIR": str(tiny_models_dir),
        "WEB_CONCURRENCY": "1",
        "LOG_LEVEL": "warning",
        "REDIS_URL": "",
        "JOBS_DIR": str(folder / "jobs"),
        "JOB_CHUNK_FRAMES": "2",
        "PAGE_JOB_BYTES": "1",
    }
    command = [sys.executable, "-m", "gunicorn", "wsgi:app", "--config", "gunicorn.conf.py"]
    command += ["--bind", f"127.0.0.1:{port}"]
    log_path = folder / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=REPOSITORY_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(f"{base_url}/healthz", process, log_path)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def job_page(browser, jobs_server):
    context = browser.new_context(viewport=VIEWPORT, base_url=jobs_server)
    page = context.new_page()
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("request", lambda request: requests.append((request.method, request.url)))
    page.set_default_timeout(30_000)
    yield page, errors, requests
    context.close()


def disk_stack(image_maker, frames: int) -> bytes:
    planes = [image_maker.disks((280, 380), DISKS[: i % 4 + 1], 25) for i in range(frames)]
    return image_maker.tiff(
        image_maker.uint8(np.stack(planes)), photometric="minisblack", compression="zlib"
    )


def test_a_stack_over_the_page_threshold_runs_as_a_job(job_page, jobs_server, image_maker):
    page, errors, requests = job_page
    page.goto("/nucleus")
    page.wait_for_selector("#analysis[data-state='ready']")
    progress_seen = []
    page.expose_function("sawProgress", lambda text: progress_seen.append(text))
    page.evaluate(
        """() => new MutationObserver(() => window.sawProgress(
             document.getElementById('progress-text').textContent))
           .observe(document.getElementById('progress-text'), {childList: true})"""
    )
    drop_file(page, disk_stack(image_maker, 4), "embryo stack.tif", "image/tiff")
    page.wait_for_function(
        "() => document.getElementById('analysis').dataset.state === 'done'"
        " && Number(document.getElementById('analysis').dataset.answers || 0) > 0"
    )
    job_id = page.get_attribute("#analysis", "data-job")
    assert job_id and len(job_id) == 32
    posted = [url for method, url in requests if method == "POST" and "/api/" in url]
    assert posted == [f"{jobs_server}/api/v1/jobs"]  # never predict
    assert any(f"/api/v1/jobs/{job_id}" in url for _, url in requests)
    assert any("Job: frame" in text or "queued" in text for text in progress_seen), progress_seen
    # Drawn as predict's answer is: the stack controls, the chart, the count, the figures.
    assert page.locator("#stack-controls").is_visible()
    chart = page.evaluate("() => document.getElementById('frame-chart').data[0].y")
    assert chart == [1, 2, 3, 4]
    assert page.text_content("#count-value") == "3"  # the middle slice, as predict's answer opens
    assert page.locator("#figures .js-plotly-plot").count() > 0
    # The link reopens the job; its downloads come from the job, not from predict.
    assert page.url.endswith(f"/nucleus?job={job_id}")
    page.locator("#downloads button[data-format='csv']").click()
    page.wait_for_function(
        "() => (document.getElementById('analysis').dataset.lastDownload || '')"
        ".startsWith('nucleus-embryo_stack.csv')"
    )
    assert ("GET", f"{jobs_server}/api/v1/jobs/{job_id}/download/csv") in requests
    assert not page.locator("#downloads button[data-format='roi']").count()  # jobs make no ROI
    page.goto(f"/nucleus?job={job_id}")
    page.wait_for_function(
        "() => document.getElementById('analysis').dataset.state === 'done'"
        " && Number(document.getElementById('analysis').dataset.answers || 0) > 0"
    )
    assert page.evaluate("() => document.getElementById('frame-chart').data[0].y") == [1, 2, 3, 4]
    assert errors == []


def test_a_running_job_can_be_cancelled_from_the_page(job_page, jobs_server, image_maker):
    page, errors, requests = job_page
    page.goto("/nucleus")
    page.wait_for_selector("#analysis[data-state='ready']")
    drop_file(page, disk_stack(image_maker, 400), "long stack.tif", "image/tiff")
    page.wait_for_selector("#job-cancel:not([hidden])")
    page.wait_for_function("() => document.getElementById('analysis').dataset.job")
    job_id = page.get_attribute("#analysis", "data-job")
    assert page.get_attribute("#analysis", "data-job-state") in (None, "queued", "running")
    page.click("#job-cancel")
    try:
        page.wait_for_selector("#analysis[data-state='cancelled']")
    except PlaywrightTimeout:
        shown = page.evaluate(
            "() => [document.getElementById('analysis').dataset.state,"
            " document.getElementById('message').textContent]"
        )
        pytest.fail(f"not cancelled: state and message {shown}; requests {requests[-6:]}")
    assert "cancelled" in page.text_content("#message")
    assert ("DELETE", f"{jobs_server}/api/v1/jobs/{job_id}") in requests
    with urllib.request.urlopen(f"{jobs_server}/api/v1/jobs/{job_id}") as answer:
        assert b'"state":"cancelled"' in answer.read().replace(b" ", b"")
    assert "?job=" not in page.url
    assert errors == []


def _wait_answered(page) -> None:
    page.wait_for_function(
        "() => document.getElementById('analysis').dataset.state === 'done'"
        " && Number(document.getElementById('analysis').dataset.answers || 0) > 0"
    )


def test_a_zip_of_time_points_and_a_ticked_box_go_as_jobs_at_the_default_threshold(
    watched_page, server_url, image_maker, tmp_path
):
    """The app as deployed (40 MB threshold): small files still go as jobs when asked to."""
    from tests.jobs.test_paged_prepare import ctc_zip

    page, watch = watched_page
    page.goto("/nucleus")
    page.wait_for_selector("#analysis[data-state='ready']")
    archive = ctc_zip(tmp_path / "recording.zip", 2, depth=2).read_bytes()
    drop_file(page, archive, "recording.zip", "application/zip")
    _wait_answered(page)
    assert page.get_attribute("#analysis", "data-job")
    assert "Stack of 4 frames" in page.text_content("#stack-axes-text")
    posted = [url for method, url in watch.api_requests() if method == "POST"]
    assert posted == [f"{server_url}/api/v1/jobs"]

    page.check("#as-job")
    drop_file(page, disk_stack(image_maker, 3), "small.tif", "image/tiff")
    page.wait_for_function(
        "() => document.getElementById('analysis').dataset.job"
        " && document.getElementById('analysis').dataset.state === 'done'"
        " && document.getElementById('frame-chart').data[0].y.length === 3"
    )
    posted = [url for method, url in watch.api_requests() if method == "POST"]
    assert posted == [f"{server_url}/api/v1/jobs"] * 2  # never predict
    assert watch.console_errors == []


def test_a_job_carries_the_3d_and_track_boxes_and_draws_the_tree(
    job_page, jobs_server, image_maker
):
    from tests.browser.test_assembly_in_browser import dividing_recording

    page, errors, requests = job_page
    page.goto("/nucleus")
    page.wait_for_selector("#analysis[data-state='ready']")
    drop_file(page, dividing_recording(image_maker), "embryo 4d.tif", "image/tiff")
    done = (
        "(answers) => document.getElementById('analysis').dataset.state === 'done'"
        " && Number(document.getElementById('analysis').dataset.answers || 0) >= answers"
    )
    page.wait_for_function(done, arg=1)
    first_job = page.get_attribute("#analysis", "data-job")
    answers = int(page.get_attribute("#analysis", "data-answers"))
    page.check("#track")  # the file goes to the queue again, with track=true
    page.wait_for_function(
        "(first) => { const root = document.getElementById('analysis');"
        " return root.dataset.job && root.dataset.job !== first"
        " && root.dataset.state === 'done'; }",
        arg=first_job,
    )
    page.wait_for_function(done, arg=answers + 1)
    job_id = page.get_attribute("#analysis", "data-job")
    posted = [url for method, url in requests if method == "POST" and "/api/" in url]
    assert posted == [f"{jobs_server}/api/v1/jobs"] * 2  # never predict
    with urllib.request.urlopen(f"{jobs_server}/api/v1/jobs/{job_id}/result") as answer:
        assert b'"tracks"' in answer.read()
    # The same figures as predict's answer: summary, tree, nuclei over time, 3D view.
    page.wait_for_selector("#assembly-summary:not([hidden])")
    assert page.text_content("#assembly-summary") == (
        "2 nuclei in 3D at time point 1 of 4 (z step 1 µm) · 4 tracks, 1 division"
    )
    over_time = page.evaluate(
        "() => document.querySelector(\"#figures-3d [data-figure-key='nuclei_over_time'] .plot\")"
        ".data[0].y"
    )
    assert over_time == [2, 2, 3, 3]
    assert page.locator("#figures-3d [data-figure-key='lineage_tree'] .js-plotly-plot").count()
    assert page.locator("#figures-3d [data-figure-key='nuclei_3d'] .js-plotly-plot").count()
    # The tracking downloads come from the job.
    page.locator("#downloads button[data-format='ctc']").click()
    page.wait_for_function(
        "() => (document.getElementById('analysis').dataset.lastDownload || '')"
        ".startsWith('nucleus-embryo_4d_ctc.zip')"
    )
    assert ("GET", f"{jobs_server}/api/v1/jobs/{job_id}/download/ctc") in requests
    # The job's link reopens it with its box ticked and its tree drawn.
    page.goto(f"/nucleus?job={job_id}")
    page.wait_for_function(done, arg=1)
    assert page.is_checked("#track")
    assert page.locator("#figures-3d [data-figure-key='lineage_tree'] .js-plotly-plot").count()
    assert errors == []
