"""A job's prepare reads a TIFF (or a ZIP of time points) a page at a time (issue #21)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from devolearn_web.errors import BadImage, BadParameter, TooLarge
from devolearn_web.paged_stacks import open_tiff, open_zip
from devolearn_web.stacks import read_tiff_stack
from tests.jobs.conftest import REPOSITORY_ROOT, wait_for_state

RNG = np.random.default_rng(7)


def write(path: Path, array: np.ndarray, **options) -> Path:
    tifffile.imwrite(path, array, **options)
    return path


CASES = {
    "unnamed pages (z)": (RNG.integers(0, 60000, (6, 20, 24), dtype=np.uint16), {}),
    "ImageJ TZCYX, channel guessed": (
        np.stack(
            [
                RNG.integers(0, 10, (3, 2, 20, 24), dtype=np.uint8),
                RNG.integers(0, 250, (3, 2, 20, 24), dtype=np.uint8),
            ],
            axis=2,
        ),
        {"imagej": True, "metadata": {"axes": "TZCYX"}},
    ),
    "float32 out of range": (
        RNG.normal(5, 3, (5, 16, 16)).astype(np.float32),
        {"photometric": "minisblack"},
    ),
    "zlib-compressed pages": (
        RNG.integers(0, 255, (4, 16, 16), dtype=np.uint8),
        {"compression": "zlib", "photometric": "minisblack"},
    ),
    "big-endian int16": (
        RNG.integers(-300, 300, (4, 16, 16)).astype(">i2"),
        {"byteorder": ">", "photometric": "minisblack"},
    ),
}


@pytest.mark.parametrize(
    "case, axes",
    [(case, None) for case in CASES] + [(case, "T") for case in CASES if CASES[case][0].ndim == 3],
)
def test_paged_frames_are_the_in_memory_readers_frames(case, axes, tmp_path):
    array, options = CASES[case]
    path = write(tmp_path / "s.tif", array, **options)
    whole = read_tiff_stack(path.read_bytes(), axes, None, 10**9, 10**6)
    paged = open_tiff(path, axes, None, 10**9, 10**6)
    try:
        frames = paged.frames(0, paged.stack.count)
    finally:
        paged.close()
    np.testing.assert_array_equal(frames, whole.data)
    for field in ("positions", "axes", "notes", "offset", "scale", "mode"):
        assert getattr(paged.stack, field) == getattr(whole, field), field


def test_colour_or_planar_pages_are_left_to_the_in_memory_reader(tmp_path):
    colour = write(tmp_path / "c.tif", np.zeros((3, 8, 8, 3), np.uint8), photometric="rgb")
    planar = write(tmp_path / "p.tif", np.zeros((3, 8, 8), np.uint8))  # one planar page
    assert open_tiff(colour, None, None, 10**9, 10**6) is None
    assert open_tiff(planar, None, None, 10**9, 10**6) is None


def test_a_chosen_channel_and_the_refusals_match_the_in_memory_reader(tmp_path):
    array, options = CASES["ImageJ TZCYX, channel guessed"]
    path = write(tmp_path / "s.tif", array, **options)
    paged = open_tiff(path, None, 0, 10**9, 10**6)
    np.testing.assert_array_equal(paged.frames(0, 6), array[:, :, 0].reshape(6, 20, 24))
    paged.close()
    with pytest.raises(BadParameter, match="Channel 5 does not exist: this stack has 2 channels"):
        open_tiff(path, None, 5, 10**9, 10**6)
    with pytest.raises(TooLarge, match="million values"):
        open_tiff(path, None, None, 1000, 10**6)
    truncated = tmp_path / "cut.tif"
    truncated.write_bytes(path.read_bytes()[:300])
    with pytest.raises(BadImage, match="truncated or damaged"):
        paged = open_tiff(truncated, None, None, 10**9, 10**6)
        try:
            paged.frames(0, paged.stack.count)
        finally:
            paged.close()


def ctc_zip(path: Path, time_points: int, depth: int = 3, names=None) -> Path:
    """A ZIP of tTTT.tif z-stacks: time point t holds t + 1 bright disks."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for t in range(time_points):
            stack = np.zeros((depth, 140, 200), np.uint8)
            for disk in range(t % 4 + 1):
                yy, xx = np.ogrid[:140, :200]
                stack[:, (yy - 30 - 25 * disk) ** 2 + (xx - 100) ** 2 < 144] = 220
            buffer = io.BytesIO()
            tifffile.imwrite(buffer, stack, photometric="minisblack")
            archive.writestr((names or {}).get(t, f"01/t{t:03d}.tif"), buffer.getvalue())
    return path


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_zip_of_time_points_is_a_tz_stack(tmp_path):
    paged = open_zip(ctc_zip(tmp_path / "s.zip", 3), 10**9, 10**6)
    assert paged.stack.count == 9 and paged.stack.axes["used"] == "TZYX"
    assert paged.stack.positions[4] == {"time": 1, "z": 1}
    frames = paged.frames(0, 9)
    assert (frames[3:6] > 0).sum() > (frames[0:3] > 0).sum()  # t001 holds two disks, t000 one
    paged.close()


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "truncated or damaged"),
        (
            lambda p: zip_of(p, {"notes.txt": b"hello"}),
            "holds no per-time-point TIFFs: name them t000.tif",
        ),
        (lambda p: ctc_zip(p, 2, names={1: "t000.tiff"}), "two TIFFs for time point 0"),
        (
            lambda p: zip_of(p, {"t000.tif": b"II*\x00broken"}),
            "'t000.tif' in the ZIP is not a readable TIFF",
        ),
    ],
)
def test_bad_zips_are_refused_with_a_sentence(make, words, tmp_path):
    path = tmp_path / "bad.zip"
    make(path)
    with pytest.raises(BadImage, match=words):
        open_zip(path, 10**9, 10**6)


def test_time_points_of_different_sizes_fail_with_a_sentence(tmp_path):
    path = ctc_zip(tmp_path / "s.zip", 2)
    with zipfile.ZipFile(path, "a") as archive:
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.zeros((3, 10, 10), np.uint8), photometric="minisblack")
        archive.writestr("t002.tif", buffer.getvalue())
    paged = open_zip(path, 10**9, 10**6)
    with pytest.raises(BadImage, match="every time point must have the same size"):
        paged.frames(0, paged.stack.count)
    paged.close()


@pytest.mark.parametrize("engine", ["local", "rq"])
def test_a_zip_job_finishes_like_the_same_stack_as_one_tiff(engine, request, tmp_path):
    if engine == "local":
        client = request.getfixturevalue("local_app").test_client()
    else:
        client = request.getfixturevalue("rq_app").test_client()
        request.getfixturevalue("rq_workers").start()
    archive = ctc_zip(tmp_path / "s.zip", 3)
    with zipfile.ZipFile(archive) as opened:
        stacks = [tifffile.imread(io.BytesIO(opened.read(f"01/t{t:03d}.tif"))) for t in range(3)]
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.stack(stacks), imagej=True, metadata={"axes": "TZYX"})
    answers = []
    for data, name in ((archive.read_bytes(), "s.zip"), (buffer.getvalue(), "s.tif")):
        submitted = client.post(
            "/api/v1/jobs", data={"model": "nucleus", "file": (io.BytesIO(data), name)}
        )
        assert submitted.status_code == 202, submitted.get_json()
        status = wait_for_state(client, submitted.get_json()["status_url"])
        assert status["state"] == "finished", status
        answers.append(client.get(submitted.get_json()["status_url"] + "/result").get_json())
    from_zip, from_tiff = answers
    assert len(from_zip["frames"]) == 9
    assert [frame["position"] for frame in from_zip["frames"]] == [
        frame["position"] for frame in from_tiff["frames"]
    ]
    assert [frame["count"] for frame in from_zip["frames"]] == [
        frame["count"] for frame in from_tiff["frames"]
    ]


def test_a_zip_upload_is_checked_before_it_is_queued(local_app, tmp_path):
    client = local_app.test_client()
    bad = zip_of(tmp_path / "bad.zip", {"readme.txt": b"x"})
    answer = client.post(
        "/api/v1/jobs", data={"model": "nucleus", "file": (io.BytesIO(bad.read_bytes()), "b.zip")}
    )
    assert answer.status_code == 400
    assert "no per-time-point TIFFs" in answer.get_json()["error"]
    good = ctc_zip(tmp_path / "good.zip", 2).read_bytes()
    for field, value, words in (
        ("axes", "ZT", "its axes are 'TZ', not 'ZT'"),
        ("channel", "1", "Channel 1 does not exist"),
    ):
        answer = client.post(
            "/api/v1/jobs",
            data={"model": "nucleus", field: value, "file": (io.BytesIO(good), "g.zip")},
        )
        assert answer.status_code == 400 and words in answer.get_json()["error"], field
    assert not list((tmp_path / "jobs").glob("*/record.json"))  # nothing was queued


@pytest.mark.slow
def test_preparing_a_gigabyte_tiff_keeps_the_worker_under_300_mb(tmp_path):
    """1 GB of 16-bit pages: peak RSS was about twice the file (2068 MB) before paging."""
    path = tmp_path / "big.tif"
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY_ROOT)}
    module = "bench.prepare_memory"
    try:
        subprocess.run(
            [sys.executable, "-m", module, "make", str(path), "40"], check=True, env=environment
        )
        assert path.stat().st_size > 1e9
        output = subprocess.run(
            [sys.executable, "-m", module, "measure", str(path)],
            check=True,
            env=environment,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        path.unlink(missing_ok=True)
    figures = json.loads(output.strip().splitlines()[-1])
    assert figures["frames"] == 1400 and figures["chunks"] == 40
    assert figures["peak_rss_after_mb"] < 300, figures


def test_a_cancel_while_prepare_writes_chunks_stands(tmp_path):
    """A DELETE mid-prepare: prepare must not set the job back to running, and keeps nothing."""
    from devolearn_web.jobs import work
    from devolearn_web.jobs.settings import JobSettings
    from devolearn_web.jobs.store import FolderStore

    settings = JobSettings(jobs_dir=tmp_path / "jobs", models_dir=tmp_path, chunk_frames=2)
    store = FolderStore(settings.jobs_dir)
    store.create("abc", {"id": "abc", "model": "nucleus", "state": "queued", "options": {}}, 60)
    path = write(tmp_path / "s.tif", CASES["unnamed pages (z)"][0])
    with path.open("rb") as source:
        store.put_blob_from_file("abc", work.INPUT, source)
    writes = []
    original = store.put_blob

    def put_then_cancel(job_id, name, data):
        original(job_id, name, data)
        writes.append(name)
        if name == work.chunk_name(0):
            work.cancel(store, job_id, settings)  # the visitor's DELETE, between two chunks

    store.put_blob = put_then_cancel
    assert work.prepare(store, "abc", settings) == 0
    assert work.chunk_name(2) in writes  # prepare went on writing after the cancel...
    assert store.get("abc")["state"] == "cancelled"  # ...but did not bring the job back
    assert store.blob_names("abc") == []
    work.fail(store, "abc", BadImage("late failure"), settings)
    assert store.get("abc")["state"] == "cancelled"
