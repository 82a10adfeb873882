"""A job's data lives only as long as the job; a dead or stopped worker does not lose it."""

from __future__ import annotations

import signal
import time
from io import BytesIO

import numpy as np
import pytest

from tests.jobs.conftest import CHUNK_FRAMES, disk_stack_tiff, free_port, wait_for_state


def submit(client, data: bytes, **fields):
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    # Encoded here: the test client spools a large form to a temporary file it never closes.
    form = {"model": "nucleus", "file": FileStorage(BytesIO(data), "s.tif"), **fields}
    boundary, body = encode_multipart(form)
    return client.post(
        "/api/v1/jobs", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


def job_keys(redis_client) -> list[bytes]:
    return list(redis_client.scan_iter(match="devolearn:job:*"))


def test_local_results_are_deleted_when_they_expire(make_app, image_maker, tmp_path):
    jobs_dir = tmp_path / "jobs"
    app = make_app(REDIS_URL="", JOBS_DIR=str(jobs_dir), JOB_RESULT_TTL_SECONDS=1)
    client = app.test_client()
    submitted = submit(client, disk_stack_tiff(image_maker, 5)).get_json()
    status = wait_for_state(client, submitted["status_url"])
    assert status["state"] == "finished"
    folder = jobs_dir / submitted["id"]
    assert sorted(path.name for path in (folder / "blobs").iterdir()) == [
        "result-00000.pickle",
        "result-00001.pickle",
        "result.json",
        "stack",
    ]  # the input and the chunks' frames went when the job finished
    assert not any((jobs_dir / "uploads").iterdir())  # the spooled upload too
    time.sleep(1.2)
    assert client.get(submitted["status_url"]).status_code == 404
    assert not folder.exists()
    app.extensions["devolearn_jobs"].shutdown()


def test_rq_results_are_deleted_when_they_expire(
    make_app, redis_url, redis_client, rq_workers, image_maker, tmp_path
):
    app = make_app(REDIS_URL=redis_url, JOBS_DIR=str(tmp_path / "jobs"), JOB_RESULT_TTL_SECONDS=2)
    rq_workers.environment["JOB_RESULT_TTL_SECONDS"] = "2"
    rq_workers.start()
    client = app.test_client()
    submitted = submit(client, disk_stack_tiff(image_maker, 5)).get_json()
    assert wait_for_state(client, submitted["status_url"])["state"] == "finished"
    names = {key.decode().split(":")[-1] for key in job_keys(redis_client)}
    assert "input" not in names and "chunk-00000.npy" not in names and "result.json" in names
    assert all(0 < redis_client.ttl(key) <= 2 for key in job_keys(redis_client))
    time.sleep(2.5)
    assert job_keys(redis_client) == []
    assert client.get(submitted["status_url"]).status_code == 404


def test_cancel_deletes_the_input_and_nothing_runs(rq_app, redis_client, rq_workers, image_maker):
    client = rq_app.test_client()
    submitted = submit(client, disk_stack_tiff(image_maker, 8)).get_json()  # no worker yet
    assert client.get(submitted["status_url"]).get_json()["state"] == "queued"
    early = client.get(f"/api/v1/jobs/{submitted['id']}/result")
    assert early.status_code == 409 and "queued" in early.get_json()["error"]
    assert client.delete(f"/api/v1/jobs/{submitted['id']}").status_code == 204
    blobs = [key for key in job_keys(redis_client) if b":blob" in key]
    assert blobs == []
    rq_workers.start()
    time.sleep(3)
    status = client.get(submitted["status_url"]).get_json()
    assert status["state"] == "cancelled" and status["progress"]["done"] == 0
    assert client.get(status["result_url"]).status_code == 409


def test_cancel_a_running_local_job_deletes_its_files(make_app, image_maker, tmp_path):
    jobs_dir = tmp_path / "jobs"
    app = make_app(REDIS_URL="", JOBS_DIR=str(jobs_dir), JOB_CHUNK_FRAMES=1)
    client = app.test_client()
    submitted = submit(client, big_stack(image_maker, 12)).get_json()
    wait_for_state(client, submitted["status_url"], states=("running",))
    assert client.delete(f"/api/v1/jobs/{submitted['id']}").status_code == 204
    app.extensions["devolearn_jobs"].shutdown()  # the chunk in hand ends; no other starts
    status = client.get(submitted["status_url"]).get_json()
    assert status["state"] == "cancelled" and status["progress"]["done"] < 12
    assert not any((jobs_dir / submitted["id"] / "blobs").iterdir())


def test_redis_unreachable_is_a_503_sentence_and_predict_still_works(
    make_app, image_maker, five_disks_png, tmp_path
):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", JOBS_DIR=str(tmp_path / "j"))
    client = app.test_client()
    answer = submit(client, disk_stack_tiff(image_maker, 2))
    assert answer.status_code == 503
    assert "job queue is unreachable" in answer.get_json()["error"]
    assert client.get("/api/v1/jobs/" + "0" * 32).status_code == 503
    predicted = client.post(
        "/api/v1/predict/nucleus", data={"file": (BytesIO(five_disks_png), "five.png")}
    )
    assert predicted.status_code == 200 and predicted.get_json()["count"] == 5


def big_stack(image_maker, frames: int) -> bytes:
    """Frames large enough that a chunk of them takes about a second on the tiny models."""
    centres = [(x, y) for x in range(60, 1400, 160) for y in range(60, 1000, 160)]
    plane = image_maker.uint8(image_maker.disks((1000, 1400), centres, 30))
    return image_maker.tiff(np.stack([plane] * frames), photometric="minisblack")


def started_chunks(redis_client) -> list[str]:
    from rq import Queue
    from rq.registry import StartedJobRegistry

    registry = StartedJobRegistry(queue=Queue("devolearn", connection=redis_client))
    return [job_id for job_id in registry.get_job_ids() if "-chunk-" in job_id]


@pytest.mark.slow
def test_a_worker_killed_mid_chunk_has_its_chunk_retried_and_the_job_finishes(
    rq_app, redis_client, rq_workers, image_maker
):
    client = rq_app.test_client()
    first = rq_workers.start()
    submitted = submit(client, big_stack(image_maker, 20)).get_json()
    deadline = time.monotonic() + 60
    while not started_chunks(redis_client) and time.monotonic() < deadline:
        time.sleep(0.05)
    in_hand = started_chunks(redis_client)
    assert in_hand, rq_workers.log_text()
    first.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    first.wait(10)
    rq_workers.start()
    status = wait_for_state(client, submitted["status_url"], timeout=120)
    recovery_s = time.monotonic() - killed_at
    assert status["state"] == "finished", (status, rq_workers.log_text())
    assert status["progress"] == {"done": 20, "total": 20}
    result = client.get(status["result_url"]).get_json()
    assert len(result["count_per_frame"]) == 20 and len(set(result["count_per_frame"])) == 1
    assert "AbandonedJobError" in rq_workers.log_text() or "retry" in rq_workers.log_text().lower()
    print(f"\nkilled mid-chunk ({in_hand[0]}); the job finished {recovery_s:.1f} s later")
    assert recovery_s < 120


@pytest.mark.slow
def test_sigterm_lets_the_chunk_in_hand_finish_then_the_worker_exits(
    rq_app, redis_client, rq_workers, image_maker
):
    client = rq_app.test_client()
    worker = rq_workers.start()
    submitted = submit(client, big_stack(image_maker, 12)).get_json()
    deadline = time.monotonic() + 60
    while not started_chunks(redis_client) and time.monotonic() < deadline:
        time.sleep(0.05)
    in_hand = started_chunks(redis_client)[0]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    index = int(in_hand.rsplit("-", 1)[1])
    done = {int(i) for i in redis_client.smembers(f"devolearn:job:{submitted['id']}:done")}
    assert index in done  # the chunk in hand was finished, not dropped
    assert len(done) < 12 // CHUNK_FRAMES  # and the worker took no new one
    rq_workers.start()
    assert wait_for_state(client, submitted["status_url"])["state"] == "finished"
