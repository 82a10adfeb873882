"""The jobs API contract (issue #21), on both engines: in-process, and RQ with real workers."""

from __future__ import annotations

import pytest

from tests.jobs.conftest import disk_stack_tiff, wait_for_state

ENGINES = ["local", "rq"]


@pytest.fixture(params=ENGINES)
def jobs_client(request):
    """A client of the app on one engine; on RQ, with one real worker running."""
    if request.param == "local":
        return request.getfixturevalue("local_app").test_client()
    app = request.getfixturevalue("rq_app")
    request.getfixturevalue("rq_workers").start()
    return app.test_client()


def submit(client, data: bytes, model: str = "nucleus", filename="stack.tif", **fields):
    from io import BytesIO

    return client.post(
        "/api/v1/jobs", data={"model": model, "file": (BytesIO(data), filename), **fields}
    )


def test_a_stack_job_finishes_with_predicts_answer(jobs_client, image_maker):
    data = disk_stack_tiff(image_maker, 10)
    submitted = submit(jobs_client, data, threshold="0.5")
    assert submitted.status_code == 202, submitted.get_json()
    body = submitted.get_json()
    assert body["state"] == "queued" and set(body) == {"id", "state", "status_url"}
    assert submitted.headers["Location"] == body["status_url"]
    status = wait_for_state(jobs_client, body["status_url"])
    assert status["state"] == "finished", status
    assert status["progress"] == {"done": 10, "total": 10}
    assert status["error"] is None and status["expires_at"]
    result = jobs_client.get(status["result_url"]).get_json()
    predicted = jobs_client.post(
        "/api/v1/predict/nucleus",
        data={"file": (__import__("io").BytesIO(data), "stack.tif"), "threshold": "0.5"},
    ).get_json()
    assert result["count_per_frame"] == predicted["count_per_frame"] == [1, 2, 3, 4, 5] * 2
    assert [f["objects"] for f in result["frames"]] == [f["objects"] for f in predicted["frames"]]
    assert result["axes"] == predicted["axes"] and result["kind"] == "stack"
    csv = jobs_client.get(f"/api/v1/jobs/{body['id']}/download/csv")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert len(csv.get_data(as_text=True).strip().splitlines()) == 1 + 30  # header + objects
    tiff = jobs_client.get(f"/api/v1/jobs/{body['id']}/download/tiff")
    assert tiff.status_code == 200 and tiff.get_data()[:2] in (b"II", b"MM")
