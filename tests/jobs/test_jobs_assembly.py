"""3D nuclei and tracks as jobs (issue #22, "whole recordings as jobs"): a simulated recording
tracked by a real RQ worker gives predict's tracks and CTC files; bad combinations are 400s at
submission, in predict's words."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import tifffile

from devolearn_web.training.simulator.ctc_recording import write_ctc_recording
from devolearn_web.training.simulator.held_out import TEST_SEEDS
from tests.conftest import encode_image, encode_tiff
from tests.jobs.conftest import wait_for_state
from tests.test_api_assembly import TWO_BALLS, balls, moving_disks

# Small enough for the tiny models in seconds, deep enough that nuclei span several slices, and
# under the 500 KB past which werkzeug's test client spools a request body to a file it leaves open.
RECORDING_SHAPE = (8, 80, 112)
RECORDING_TIMES = 3


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> bytes:
    """A simulated TZYX recording from the 4-cell stage (a held-out seed), as one ImageJ TIFF."""
    folder = tmp_path_factory.mktemp("ctc") / "recording"
    write_ctc_recording(folder, TEST_SEEDS[0], 4, RECORDING_TIMES, shape=RECORDING_SHAPE)
    times = range(RECORDING_TIMES)
    stack = np.stack([tifffile.imread(folder / "01" / f"t{t:03d}.tif") for t in times])
    return encode_tiff(stack, imagej=True, metadata={"axes": "TZYX"})


def submit(client, data: bytes, model: str = "nucleus", **fields):
    form = {"model": model, "file": (io.BytesIO(data), "recording.tif"), **fields}
    return client.post("/api/v1/jobs", data=form)


def predict(client, data: bytes, **fields):
    form = {"file": (io.BytesIO(data), "recording.tif"), **fields}
    return client.post("/api/v1/predict/nucleus", data=form)


def finished(client, submitted) -> str:
    """The finished job's id (the test fails with the job's state otherwise)."""
    assert submitted.status_code == 202, submitted.get_json()
    status = wait_for_state(client, submitted.get_json()["status_url"], timeout=120)
    assert status["state"] == "finished", status
    return status["id"]


def zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        return {name: bundle.read(name) for name in bundle.namelist()}


def _naming_note(note: str) -> bool:
    return "founder" in note.lower() and not note.startswith("Founder counts")


def test_an_rq_worker_tracks_a_recording_as_predict_does(
    rq_app, rq_workers, recording, redis_client
):
    rq_workers.start()
    client = rq_app.test_client()
    fields = {"track": "true", "threshold": "0.5"}
    job = finished(client, submit(client, recording, **fields))
    result = client.get(f"/api/v1/jobs/{job}/result").get_json()
    predicted = predict(client, recording, **fields).get_json()
    assert result["tracks"] and result["divisions"] == predicted["divisions"]
    for key in ("tracks", "nuclei_per_time", "count_3d_per_time", "objects_3d", "z_step_um"):
        assert result[key] == predicted[key], key
    # Every slice carries its track id, as predict's frames do.
    assert [f["objects"] for f in result["frames"]] == [f["objects"] for f in predicted["frames"]]
    # The founder naming's notes alike, and the founder counts: the tree's, and the lineage
    # model's on every time point's projection, read by the job a chunk of frames at a time.
    assert [n for n in predicted["notes"] if _naming_note(n)] == [
        n for n in result["notes"] if _naming_note(n)
    ]
    assert result["founder_counts"] == predicted["founder_counts"]
    assert any(row["model"] for row in result["founder_counts"])
    assert "assembly" in result["timings_ms"]
    # The CTC result layout and the tracks CSV: the same files as predict's.
    ctc = client.get(f"/api/v1/jobs/{job}/download/ctc")
    assert ctc.status_code == 200 and ctc.mimetype == "application/zip"
    expected = zip_members(predict(client, recording, format="ctc", **fields).data)
    assert zip_members(ctc.data) == expected
    assert "res_track.txt" in expected and "mask002.tif" in expected
    csv = client.get(f"/api/v1/jobs/{job}/download/tracks-csv")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    assert csv.data == predict(client, recording, format="tracks-csv", **fields).data
    counts = client.get(f"/api/v1/jobs/{job}/download/founder-counts-csv")
    assert counts.status_code == 200 and counts.mimetype == "text/csv"
    assert counts.data == predict(client, recording, format="founder-counts-csv", **fields).data
    # The labels TIFF holds track ids through z and time (TZYX), as predict's.
    tiff = client.get(f"/api/v1/jobs/{job}/download/tiff")
    with tifffile.TiffFile(io.BytesIO(tiff.data)) as opened:
        assert opened.series[0].axes == "TZYX"
        labels = opened.asarray()
    predicted_tiff = predict(client, recording, format="tiff", **fields).data
    np.testing.assert_array_equal(labels, tifffile.imread(io.BytesIO(predicted_tiff)))
    track_ids = {track["track"] for track in result["tracks"]}
    assert set(np.unique(labels)) - {0} <= track_ids
    # Only the results stay: the upload, its frames and the unrelabelled results are gone.
    names = {key.decode().rsplit(":", 1)[-1] for key in redis_client.scan_iter("*:blob:*")}
    kept = ("assembled-", "assembly", "result.json", "stack")
    assert names and all(name.startswith(kept) for name in names), names


def test_a_z_stack_assembled_in_3d_as_a_job_draws_predicts_figures(local_app):
    client = local_app.test_client()
    data = encode_tiff(balls(TWO_BALLS))
    fields = {"assemble": "3d", "include": "figures"}
    job = finished(client, submit(client, data, **fields))
    result = client.get(f"/api/v1/jobs/{job}/result").get_json()
    predicted = predict(client, data, **fields).get_json()
    assert result["count_3d"] == predicted["count_3d"] == 2
    assert result["objects_3d"] == predicted["objects_3d"]
    assert result["figures_3d"] == predicted["figures_3d"]
    # A slice's figures are drawn with its 3D labels: the same outlines and hover as predict's.
    for mine, theirs in zip(result["frames"], predicted["frames"], strict=True):
        assert mine["objects"] == theirs["objects"]
        assert mine["figures"] == theirs["figures"]
    tiff = client.get(f"/api/v1/jobs/{job}/download/tiff")
    with tifffile.TiffFile(io.BytesIO(tiff.data)) as opened:
        assert opened.series[0].axes == "ZYX"
        assert set(np.unique(opened.asarray())) == {0, 1, 2}
    refused = client.get(f"/api/v1/jobs/{job}/download/ctc")
    assert refused.status_code == 400 and "track=true" in refused.get_json()["error"]


def test_a_time_series_of_single_planes_is_tracked_as_a_job(local_app):
    client = local_app.test_client()
    movie, _ = moving_disks()
    data = encode_tiff(movie, metadata={"axes": "TYX"})
    job = finished(client, submit(client, data, track="true"))
    result = client.get(f"/api/v1/jobs/{job}/result").get_json()
    assert len(result["tracks"]) == 4 and result["divisions"] == 1
    assert result["nuclei_per_time"] == [2, 2, 3, 3]
    assert [row["t"] for row in result["founder_counts"]] == [0, 1, 2, 3]
    lines = client.get(f"/api/v1/jobs/{job}/download/tracks-csv").data.decode().splitlines()
    assert lines[0] == "time,track,parent,name,x,y,z,volume" and len(lines) == 1 + 10
    assert client.get(f"/api/v1/jobs/{job}/download/founder-counts-csv").status_code == 200
    # The founder counts come from the stored answer: gone between status and download, a 404.
    from devolearn_web.jobs.work import RESULT
    from devolearn_web.views.jobs import get_engine

    with local_app.app_context():
        get_engine().store.delete_blob(job, RESULT)
    answer = client.get(f"/api/v1/jobs/{job}/download/founder-counts-csv")
    assert answer.status_code == 404 and "expired" in answer.get_json()["error"]


@pytest.mark.parametrize(
    ("model", "make", "fields", "words"),
    [
        ("nucleus", "png", {"assemble": "3d"}, "single 2D image"),
        ("nucleus", "png", {"track": "true"}, "single 2D image"),
        ("nucleus", "zyx", {"track": "true"}, "axes=T"),
        ("nucleus", "tyx", {"assemble": "3d"}, "axes=Z"),
        ("nucleus", "tyx", {"assemble": "3d", "axes": "T"}, "axes=Z"),
        ("nucleus", "zyx", {"track": "true", "axes": "Z"}, "axes=T"),
        ("membrane", "zyx", {"assemble": "3d"}, "nucleus model"),
        ("lineage", "tyx", {"track": "true"}, "nucleus model"),
        ("nucleus", "zyx", {"assemble": "4d"}, "assemble must be 3d"),
        ("nucleus", "zyx", {"track": "maybe"}, "track must be true or false"),
        ("nucleus", "zyx", {"assemble": "3d", "z_step_um": "-1"}, "z_step_um"),
        ("nucleus", "zyx", {"z_step_um": "1"}, "only to link nuclei"),
        ("nucleus", "tyx", {"format": "ctc"}, "track=true"),
        ("nucleus", "tyx", {"format": "tracks-csv", "assemble": "3d"}, "track=true"),
        ("nucleus", "tyx", {"format": "founder-counts-csv"}, "track=true"),
        ("nucleus", "zyx", {"assemble": "3d", "frame": "2"}, "every frame"),
    ],
)
def test_jobs_that_cannot_be_assembled_are_400s_at_submission(
    local_app, model, make, fields, words
):
    data = {
        "png": lambda: encode_image(balls(TWO_BALLS)[3]),
        "zyx": lambda: encode_tiff(balls(TWO_BALLS)),
        "tyx": lambda: encode_tiff(moving_disks()[0], metadata={"axes": "TYX"}),
    }[make]()
    client = local_app.test_client()
    response = submit(client, data, model, **fields)
    assert response.status_code == 400, response.get_json()
    assert words in response.get_json()["error"]
    # Predict refuses the same upload with the same sentence.
    predicted = client.post(
        f"/api/v1/predict/{model}", data={"file": (io.BytesIO(data), "x.tif"), **fields}
    )
    assert predicted.status_code == 400
    assert predicted.get_json()["error"] == response.get_json()["error"]


def test_the_openapi_document_describes_3d_and_tracks_for_jobs(local_app):
    from openapi_spec_validator import validate

    from devolearn_web.views.jobs import DOWNLOAD_FORMATS

    document = local_app.test_client().get("/api/v1/openapi.json").get_json()
    validate(document)
    submit_job = document["paths"]["/api/v1/jobs"]["post"]
    form = submit_job["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"assemble", "track", "z_step_um"} <= set(form)
    assert "track=true" in submit_job["description"] and "400" in submit_job["description"]
    download = document["paths"]["/api/v1/jobs/{id}/download/{format}"]["get"]
    enum = next(p for p in download["parameters"] if p["name"] == "format")["schema"]["enum"]
    assert enum == list(DOWNLOAD_FORMATS) and {"ctc", "tracks-csv"} <= set(enum)
    # The result is predict's stack answer, whose schema names the 3D and track fields.
    result = document["paths"]["/api/v1/jobs/{id}/result"]["get"]["responses"]["200"]
    reference = result["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = document["components"]["schemas"][reference]["properties"]
    assert {"count_3d", "objects_3d", "tracks", "nuclei_per_time"} <= set(fields)


def test_a_stack_past_the_assembly_limit_is_a_413_only_when_assembly_is_asked(make_app, tmp_path):
    app = make_app(REDIS_URL="", JOBS_DIR=str(tmp_path / "jobs"), JOB_MAX_ASSEMBLY_VOXELS=50_000)
    client = app.test_client()
    data = encode_tiff(balls(TWO_BALLS))  # 10 x 80 x 120: 96,000 values
    refused = submit(client, data, assemble="3d")
    assert refused.status_code == 413, refused.get_json()
    assert "JOB_MAX_ASSEMBLY_VOXELS" in refused.get_json()["error"]
    assert "0.096 million values" in refused.get_json()["error"]
    accepted = submit(client, data)
    assert accepted.status_code == 202
    assert wait_for_state(client, accepted.get_json()["status_url"])["state"] == "finished"
    app.extensions["devolearn_jobs"].shutdown()


def test_an_assembly_step_past_its_timeout_fails_the_job_saying_so(redis_client, monkeypatch):
    from types import SimpleNamespace

    from rq.timeouts import JobTimeoutException

    from devolearn_web.jobs import rq_engine
    from devolearn_web.jobs.settings import JobSettings
    from devolearn_web.jobs.store import RedisStore

    settings = JobSettings(jobs_dir=".", models_dir=".", prepare_timeout_s=600)
    monkeypatch.setitem(rq_engine._worker_state, "settings", settings)
    store = RedisStore(redis_client)
    job_id = "a" * 32
    store.create(job_id, {"id": job_id, "state": "running", "options": {}}, 60)
    step = SimpleNamespace(id=f"{job_id}-assemble", args=(job_id,), retries_left=0)
    rq_engine.on_failure(step, redis_client, JobTimeoutException, JobTimeoutException(), None)
    record = store.get(job_id)
    assert record["state"] == "failed"
    assert record["error"].startswith("Linking the recording's nuclei in 3D")
    assert "600 s" in record["error"]
