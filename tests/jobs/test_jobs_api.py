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


def test_an_unknown_job_is_a_404_sentence(jobs_client):
    for path in ("/api/v1/jobs/" + "0" * 32, "/api/v1/jobs/nonsense/result"):
        answer = jobs_client.get(path)
        assert answer.status_code == 404
        assert "no job with this id" in answer.get_json()["error"]
    assert jobs_client.delete("/api/v1/jobs/" + "0" * 32).status_code == 404


def test_a_download_whose_results_expired_meanwhile_is_a_404_sentence(jobs_client, image_maker):
    """Results deleted between the status check and the read (their TTL) are not a 500."""
    from devolearn_web.views.jobs import get_engine

    body = submit(jobs_client, disk_stack_tiff(image_maker, 6)).get_json()
    assert wait_for_state(jobs_client, body["status_url"])["state"] == "finished"
    with jobs_client.application.app_context():
        store = get_engine().store
        for name in store.blob_names(body["id"]):
            if name.startswith("result-"):
                store.delete_blob(body["id"], name)
    answer = jobs_client.get(f"/api/v1/jobs/{body['id']}/download/csv")
    assert answer.status_code == 404
    assert "expired" in answer.get_json()["error"]


def test_a_frame_only_the_decoder_can_refuse_fails_the_job_with_its_sentence(
    jobs_client, image_maker
):
    submitted = submit(jobs_client, disk_stack_tiff(image_maker, 3), frame="7").get_json()
    status = wait_for_state(jobs_client, submitted["status_url"])
    assert status["state"] == "failed"
    assert status["error"] == "Frame 7 does not exist: there are 3 (0 to 2)."
    refused = jobs_client.get(status["result_url"])
    assert refused.status_code == 409 and "Frame 7 does not exist" in refused.get_json()["error"]


def test_one_frame_of_a_stack_as_a_job(jobs_client, image_maker):
    submitted = submit(jobs_client, disk_stack_tiff(image_maker, 6), frame="4").get_json()
    status = wait_for_state(jobs_client, submitted["status_url"])
    assert status["state"] == "finished" and status["progress"]["total"] == 1
    result = jobs_client.get(status["result_url"]).get_json()
    assert result["count_per_frame"] == [5]


@pytest.mark.parametrize(
    "fields, status, words",
    [
        ({"model": "nucleus"}, 400, "No file was sent"),
        ({"model": "kidney", "file": b"x"}, 400, "must name a model: one of membrane"),
        ({"file": b"x"}, 400, "(it was missing)"),
        ({"model": "nucleus", "file": b""}, 400, "The file is empty"),
        ({"model": "nucleus", "file": b"%PDF-1.4 not an image"}, 415, "not an image"),
        ({"model": "nucleus", "file": b"II*\x00garbage"}, 400, "truncated or damaged"),
        ({"model": "nucleus", "file": "stack", "threshold": "2"}, 400, "between 0 and 1"),
        ({"model": "nucleus", "file": "stack", "thresold": "0.2"}, 400, "did you mean 'threshold'"),
        ({"model": "nucleus", "file": "stack", "axes": "Q"}, 400, "axes 'Q' are not valid"),
        ({"model": "nucleus", "file": "stack", "format": "pdf"}, 400, "format 'pdf' is not known"),
        ({"model": "lineage", "file": "stack", "format": "tiff"}, 400, "not available"),
        ({"model": "nucleus", "file": "stack", "diameter": "-3"}, 400, "diameter"),
    ],
)
def test_bad_uploads_are_refused_as_predict_refuses_them(
    local_app, image_maker, fields, status, words
):
    from io import BytesIO

    client = local_app.test_client()
    data = dict(fields)
    if "file" in data:
        raw = disk_stack_tiff(image_maker, 2) if data["file"] == "stack" else data["file"]
        data["file"] = (BytesIO(raw), "upload.tif")
    answer = client.post("/api/v1/jobs", data=data)
    assert answer.status_code == status, answer.get_json()
    assert words in answer.get_json()["error"]


def test_a_query_string_option_is_refused(local_app, image_maker):
    from io import BytesIO

    answer = local_app.test_client().post(
        "/api/v1/jobs?threshold=0.9",
        data={"model": "nucleus", "file": (BytesIO(disk_stack_tiff(image_maker, 2)), "s.tif")},
    )
    assert answer.status_code == 400 and "query string" in answer.get_json()["error"]


def test_a_stack_over_the_job_limit_is_a_413_before_it_is_queued(make_app, image_maker, tmp_path):
    app = make_app(REDIS_URL="", JOBS_DIR=str(tmp_path / "jobs"), JOB_MAX_STACK_VOXELS=1000)
    answer = submit(app.test_client(), disk_stack_tiff(image_maker, 2))
    assert answer.status_code == 413 and "Send it as several jobs" in answer.get_json()["error"]
    assert not list((tmp_path / "jobs").glob("*/record.json"))


def test_an_upload_over_the_job_byte_limit_is_a_413(make_app, image_maker, tmp_path):
    app = make_app(
        REDIS_URL="",
        JOBS_DIR=str(tmp_path / "jobs"),
        JOB_MAX_UPLOAD_BYTES=10_000,
        MAX_UPLOAD_BYTES=40_000_000,
    )
    answer = submit(app.test_client(), disk_stack_tiff(image_maker, 3))
    assert answer.status_code == 413
    # The job limit is named, not predict's (werkzeug refuses before the view reads the file).
    assert "The limit is 0.01 MB per file." in answer.get_json()["error"]
    assert "40 MB" not in answer.get_json()["error"]


def test_a_job_upload_may_exceed_predicts_limit(make_app, image_maker, tmp_path):
    app = make_app(REDIS_URL="", JOBS_DIR=str(tmp_path / "jobs"), MAX_UPLOAD_BYTES=10_000)
    data = disk_stack_tiff(image_maker, 3)
    client = app.test_client()
    assert (
        client.post(
            "/api/v1/predict/nucleus", data={"file": (__import__("io").BytesIO(data), "s.tif")}
        ).status_code
        == 413
    )
    submitted = submit(client, data)
    assert submitted.status_code == 202
    assert wait_for_state(client, submitted.get_json()["status_url"])["state"] == "finished"
    app.extensions["devolearn_jobs"].shutdown()


def test_every_page_states_how_long_a_job_keeps_an_upload(local_app):
    client = local_app.test_client()
    for path in ("/", "/nucleus", "/membrane", "/lineage"):
        page = " ".join(client.get(path).get_data(as_text=True).split())
        assert "An image analysed on a page in one request is never stored" in page, path
        assert "by a page for a stack too big for one request" in page, path
        assert "kept only until the job finishes, fails or is cancelled" in page, path
        assert "nothing you upload is stored" not in page.lower(), path
