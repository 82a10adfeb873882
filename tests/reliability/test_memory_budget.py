"""Bounded memory on a small dyno: gunicorn as the Procfile starts it (one worker, four threads,
the three shipped models) gets four 36-megapixel uploads of real embryo content at once. Each is
answered 200, or 503 with Retry-After and a sentence (the worker's memory budget is taken);
none is killed for memory, the worker's peak resident memory stays within 450 MB, and a small
upload afterwards is answered at once. Then the budget's rules on the app itself: a request
bigger than the whole budget is a 413, one that waits past MEMORY_WAIT_SECONDS a 503, and a
reservation lasts until the answer has been sent.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from reliability_support import REPOSITORY_ROOT, multipart_body, request

from devolearn_web.admission import EXTENSION_KEY, MemoryBudget
from devolearn_web.errors import ServerBusy, TooLarge
from devolearn_web.memory_estimate import estimate_bytes, probe_upload

SAMPLE = REPOSITORY_ROOT.parent / "shared" / "samples" / "embryo_sample.png"
MAX_WORKER_PEAK_KIB = 450 * 1024
# 585 x 315 tiled 14 x 14: 8190 x 4410 = 36.1 megapixels (RGBA, as the sample).
TILES = 14
MODELS = ("nucleus", "membrane", "nucleus", "lineage")


def worker_peak_kib(pid: int) -> int:
    """VmHWM (peak resident memory since the process started) in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for process {pid}")


@pytest.fixture(scope="module")
def tiled_sample() -> bytes:
    """The real embryo sample tiled to about 36 megapixels, as a PNG."""
    if not SAMPLE.is_file():
        pytest.skip(f"the real sample {SAMPLE} is not here (shared/samples is not checked out)")
    with Image.open(SAMPLE) as image:
        tile = np.asarray(image)
    buffer = io.BytesIO()
    Image.fromarray(np.tile(tile, (TILES, TILES, 1))).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


@pytest.mark.slow
def test_four_36_megapixel_uploads_at_once_stay_within_450_mb(gunicorn_server, tiled_sample):
    # The shipped models, the Procfile's command and the default budget; a long time budget
    # so that every answer here is about memory, not the clock.
    server = gunicorn_server(REPOSITORY_ROOT / "models", JOB_TIME_BUDGET_SECONDS="120")
    [worker] = server.worker_pids()
    body, content_type = multipart_body({}, tiled_sample, b"tiled.png")
    answers: dict[int, tuple] = {}

    def upload(index: int, model: str) -> None:
        answers[index] = request(
            server.port, "POST", f"/api/v1/predict/{model}", body, content_type, timeout=180
        )

    clients = [
        threading.Thread(target=upload, args=(index, model)) for index, model in enumerate(MODELS)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=300)
    assert server.worker_pids() == [worker], f"the worker died:\n{server.log()}"
    peak = worker_peak_kib(worker)
    statuses = [answers[index][0] for index in range(len(MODELS))]
    for status, answer, headers in answers.values():
        assert status in (200, 503), (status, answer[:300])
        if status == 503:
            assert int(headers["Retry-After"]) > 0
            assert "try again" in json.loads(answer)["error"]
        else:
            assert json.loads(answer)["model"] in MODELS
    assert 200 in statuses, statuses
    print(f"\nworker peak {peak / 1024:.0f} MB; answers {statuses}")
    assert peak <= MAX_WORKER_PEAK_KIB, f"worker peak {peak / 1024:.0f} MB, statuses {statuses}"
    with SAMPLE.open("rb") as handle:
        small = multipart_body({}, handle.read())
    status, answer, _ = request(server.port, "POST", "/api/v1/predict/nucleus", *small)
    assert status == 200, answer[:300]


def png(side: int = 64) -> bytes:
    image = np.zeros((side, side), np.uint8)
    image[side // 4 : side // 2, side // 4 : side // 2] = 220
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def predict(client, **fields):
    return client.post(
        "/api/v1/predict/nucleus", data={"file": (io.BytesIO(png()), "x.png"), **fields}
    )


def test_a_run_bigger_than_the_whole_budget_is_a_413_that_says_why(make_app, tiny_models_dir):
    client = make_app(MODELS_DIR=tiny_models_dir, MEMORY_BUDGET_MB=20).test_client()
    response = predict(client)
    assert response.status_code == 413
    message = response.get_json()["error"]
    assert "MB of memory" in message and "20 MB" in message and "smaller image" in message
    assert "Retry-After" not in response.headers  # waiting cannot help


def test_a_run_that_does_not_fit_waits_then_gets_a_503_with_retry_after(make_app, tiny_models_dir):
    # No held results here: the budget then holds this request's reservations alone.
    app = make_app(
        MODELS_DIR=tiny_models_dir, MEMORY_BUDGET_MB=300, MEMORY_WAIT_SECONDS=0.3, RESULT_CACHE_MB=0
    )
    budget: MemoryBudget = app.extensions[EXTENSION_KEY]
    held = budget.reserve(290_000_000, "another upload")  # a request in flight elsewhere
    client = app.test_client()
    started = time.monotonic()
    response = predict(client)
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "busy" in response.get_json()["error"] and "try again" in response.get_json()["error"]
    assert budget.in_use == 290_000_000  # the refused request holds nothing
    held.release()
    response = predict(client)
    assert response.status_code == 200
    assert budget.in_use == len(response.data)  # only the body, until it has been sent
    response.close()  # what the server does once the body has gone out
    assert budget.in_use == 0


def test_a_waiting_run_goes_ahead_when_memory_is_given_back(make_app, tiny_models_dir):
    app = make_app(MODELS_DIR=tiny_models_dir, MEMORY_BUDGET_MB=300, MEMORY_WAIT_SECONDS=10)
    budget: MemoryBudget = app.extensions[EXTENSION_KEY]
    held = budget.reserve(290_000_000, "another upload")
    threading.Timer(0.3, held.release).start()
    started = time.monotonic()
    assert predict(app.test_client()).status_code == 200
    assert 0.25 < time.monotonic() - started < 5


def test_the_budget_serves_first_come_first_and_refuses_what_never_fits():
    budget = MemoryBudget(100, wait_seconds=0.2)
    first = budget.reserve(60, "first")
    with pytest.raises(TooLarge):
        budget.reserve(101, "too big")
    with pytest.raises(ServerBusy) as refused:
        budget.reserve(50, "second")
    assert refused.value.headers == {"Retry-After": "1"}
    assert budget.in_use == 60
    first.release()
    first.release()  # idempotent
    second = budget.reserve(50, "second")
    second.grow(100)
    assert budget.in_use == 100 and budget.peak_in_use == 100
    second.release()
    assert budget.in_use == 0


def test_admission_off_with_a_zero_budget(make_app, tiny_models_dir):
    app = make_app(MODELS_DIR=tiny_models_dir, MEMORY_BUDGET_MB=0)
    assert EXTENSION_KEY not in app.extensions
    assert predict(app.test_client()).status_code == 200


def stack_tiff(frames: int = 20, side: int = 128) -> bytes:
    import tifffile

    planes = np.zeros((frames, side, side), np.uint8)
    planes[:, side // 4 : side // 2, side // 4 : side // 2] = 200
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, planes, imagej=True, metadata={"axes": "ZYX"})
    return buffer.getvalue()


def test_stacks_and_downloads_count_against_the_same_budget(make_app, tiny_models_dir):
    # A budget between what a 20-slice stack's JSON answer needs and what its ZIP needs
    # (every slice's labels, probability and mask held, and the files): the JSON is answered,
    # the ZIP refused with a sentence, whatever the estimate's constants are.
    data = stack_tiff()
    shape = probe_upload(data)
    assert (shape.frames, shape.width, shape.height) == (20, 128, 128)
    as_json = estimate_bytes(len(data), shape, "segmentation", "json")
    as_zip = estimate_bytes(len(data), shape, "segmentation", "zip")
    assert as_zip > as_json
    budget_mb = (as_json + as_zip) / 2 / 1e6
    client = make_app(MODELS_DIR=tiny_models_dir, MEMORY_BUDGET_MB=budget_mb).test_client()

    def send(**fields):
        form = {"file": (io.BytesIO(data), "stack.tif"), **fields}
        return client.post("/api/v1/predict/nucleus", data=form)

    assert send().status_code == 200
    refused = send(format="zip")
    assert refused.status_code == 413
    message = refused.get_json()["error"]
    assert "this stack of 20 128 x 128 frames" in message and "format=csv" in message
    assert send(format="csv").status_code == 200
