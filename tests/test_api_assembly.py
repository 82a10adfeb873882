"""The API's 3D nuclei and tracks: assemble=3d, track=true, their downloads and their 400s."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import tifffile

from tests.conftest import encode_image, encode_tiff, to_uint8

SHAPE = (10, 80, 120)


def balls(centres: list[tuple[float, float, float]], radius: float = 9.0) -> np.ndarray:
    """uint8 ZxHxW: bright balls at (z, y, x); z counts as 3 pixels deep (3 um slices of 1 um)."""
    z, y, x = np.indices(SHAPE)
    image = np.zeros(SHAPE, dtype=np.float32)
    for cz, cy, cx in centres:
        image[((z - cz) * 3) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= radius**2] = 1.0
    return to_uint8(image)


TWO_BALLS = [(3, 40, 30), (6, 40, 90)]


def post(client, data: bytes, model: str = "nucleus", **fields):
    form = {"file": (io.BytesIO(data), "stack.tif"), **fields}
    return client.post(f"/api/v1/predict/{model}", data=form)


def test_a_z_stack_assembled_in_3d_counts_each_nucleus_once(client):
    response = post(client, encode_tiff(balls(TWO_BALLS)), assemble="3d", include="figures")
    assert response.status_code == 200, response.json
    answer = response.json
    assert sum(answer["count_per_frame"]) > 2  # each ball is seen in several slices...
    assert answer["count_3d"] == 2  # ...and is one nucleus in 3D
    assert sorted(round(found["z"]) for found in answer["objects_3d"]) == [3, 6]
    assert all(found["volume"] > 0 for found in answer["objects_3d"])
    # Every slice names a nucleus by its 3D label: the left ball is one label in all its slices.
    objects = [found for frame in answer["frames"] for found in frame["objects"]]
    left = {found["label"] for found in objects if found["x"] < 60}
    assert len(left) == 1
    assert answer["figures_3d"]["nuclei_3d"]["data"][0]["type"] == "scatter3d"
    assert any("z step" in note for note in answer["notes"])


def test_the_labels_tiff_of_a_3d_assembly_is_a_3d_label_image(client):
    response = post(client, encode_tiff(balls(TWO_BALLS)), assemble="3d", format="tiff")
    assert response.status_code == 200
    with tifffile.TiffFile(io.BytesIO(response.data)) as tiff:
        assert tiff.series[0].axes == "ZYX"
        labels = tiff.asarray()
    assert set(np.unique(labels)) == {0, 1, 2}


def test_a_calibrated_stack_gives_microns(client):
    data = encode_tiff(
        balls(TWO_BALLS),
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.2),
        metadata={"axes": "ZYX", "unit": "um", "spacing": 0.6},
    )
    answer = post(client, data, assemble="3d").json
    assert answer["z_step_um"] == pytest.approx(0.6)
    found = answer["objects_3d"][0]
    assert found["volume_um3"] == pytest.approx(found["volume"] * 0.2 * 0.2 * 0.6, rel=1e-3)


def moving_disks(times: int = 4) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """uint8 TxHxW: two disks drifting right; the left one divides at time 2. And its truth."""
    rows, cols = np.indices(SHAPE[1:])
    movie = np.zeros((times, *SHAPE[1:]), dtype=np.uint8)
    for t in range(times):
        centres = [(40, 90 + t)]
        centres += [(40, 25 + t)] if t < 2 else [(28, 27 + t), (54, 27 + t)]
        for row, col in centres:
            movie[t][(rows - row) ** 2 + (cols - col) ** 2 <= 8**2] = 255
    return movie, [(1, 0, 1, 0), (2, 0, times - 1, 0), (3, 2, times - 1, 1), (4, 2, times - 1, 1)]


def test_a_time_series_is_tracked_with_its_division(client):
    movie, _ = moving_disks()
    data = encode_tiff(movie, metadata={"axes": "TYX"})
    answer = post(client, data, track="true", include="figures").json
    tracks = answer["tracks"]
    assert len(tracks) == 4
    assert answer["divisions"] == 1
    assert answer["nuclei_per_time"] == [2, 2, 3, 3]
    mother = next(t for t in tracks if t["end"] == 1)
    assert sorted(t["parent"] for t in tracks) == [0, 0, mother["track"], mother["track"]]
    assert set(answer["figures_3d"]) == {"lineage_tree", "nuclei_over_time", "founder_counts"}
    # Two disks are no embryo: every track says it has no founder name, and the notes say why.
    assert all("name" in track for track in tracks)
    assert any("founder" in note.lower() for note in answer["notes"])
    # Per-founder counts per time point: none from the unnamed tree, the model's beside them.
    counts = answer["founder_counts"]
    assert [row["t"] for row in counts] == [0, 1, 2, 3]
    assert all(set(row["tree"]) == set("AEMPCDZ") for row in counts)
    assert all(value is None for row in counts for value in row["tree"].values())
    assert all("model" in row for row in counts)
    assert any("Founder counts from the tree are null" in note for note in answer["notes"])
    # The model's estimate is the lineage model's own answer on that time point's image.
    alone = post(client, encode_tiff(movie[2]), model="lineage").json
    assert counts[2]["model"] == alone["populations"]


def test_the_ctc_download_is_read_back_by_the_challenges_measures(client, tmp_path):
    from ctc_metrics.scripts.evaluate import evaluate_sequence

    movie, truth_tracks = moving_disks()
    data = encode_tiff(movie, metadata={"axes": "TYX"})
    response = post(client, data, track="true", format="ctc")
    assert response.status_code == 200
    zipfile.ZipFile(io.BytesIO(response.data)).extractall(tmp_path / "RES")
    assert (tmp_path / "RES" / "res_track.txt").exists()
    # The truth: the same disks, labelled by hand with the tracks above.
    rows, cols = np.indices(SHAPE[1:])
    (tmp_path / "GT" / "TRA").mkdir(parents=True)
    (tmp_path / "GT" / "SEG").mkdir()
    for t in range(movie.shape[0]):
        labels = np.zeros(SHAPE[1:], dtype=np.uint16)
        centres = [(2, 40, 90 + t)]
        centres += [(1, 40, 25 + t)] if t < 2 else [(3, 28, 27 + t), (4, 54, 27 + t)]
        for label, row, col in centres:
            labels[(rows - row) ** 2 + (cols - col) ** 2 <= 8**2] = label
        tifffile.imwrite(tmp_path / "GT" / "TRA" / f"man_track{t:03d}.tif", labels)
        tifffile.imwrite(tmp_path / "GT" / "SEG" / f"man_seg{t:03d}.tif", labels)
    lines = "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in truth_tracks)
    (tmp_path / "GT" / "TRA" / "man_track.txt").write_text(lines)
    scores = evaluate_sequence(
        str(tmp_path / "RES"), str(tmp_path / "GT"), ["DET", "TRA"], threads=1
    )
    assert scores["DET"] > 0.99 and scores["TRA"] > 0.99, scores


def test_the_tracks_csv_has_a_row_per_nucleus_and_time(client):
    movie, _ = moving_disks()
    data = encode_tiff(movie, metadata={"axes": "TYX"})
    response = post(client, data, track="true", format="tracks-csv")
    assert response.status_code == 200
    lines = response.data.decode().splitlines()
    assert lines[0] == "time,track,parent,name,x,y,z,volume"
    assert len(lines) == 1 + 2 + 2 + 3 + 3


@pytest.mark.parametrize(
    ("model", "make", "fields", "words"),
    [
        ("nucleus", "png", {"assemble": "3d"}, "single 2D image"),
        ("nucleus", "png", {"track": "true"}, "single 2D image"),
        ("nucleus", "zyx", {"track": "true"}, "axes=T"),
        ("nucleus", "tyx", {"assemble": "3d"}, "axes=Z"),
        ("membrane", "zyx", {"assemble": "3d"}, "nucleus model"),
        ("lineage", "tyx", {"track": "true"}, "nucleus model"),
        ("nucleus", "zyx", {"assemble": "4d"}, "assemble must be 3d"),
        ("nucleus", "zyx", {"track": "maybe"}, "track must be true or false"),
        ("nucleus", "zyx", {"assemble": "3d", "z_step_um": "-1"}, "z_step_um"),
        ("nucleus", "zyx", {"z_step_um": "1"}, "only to link nuclei"),
        ("nucleus", "tyx", {"format": "ctc"}, "track=true"),
        ("nucleus", "tyx", {"format": "founder-counts-csv"}, "track=true"),
        ("nucleus", "zyx", {"assemble": "3d", "frame": "2"}, "every frame"),
    ],
)
def test_requests_that_cannot_be_assembled_are_400s_in_words(client, model, make, fields, words):
    data = {
        "png": lambda: encode_image(balls(TWO_BALLS)[3]),
        "zyx": lambda: encode_tiff(balls(TWO_BALLS)),
        "tyx": lambda: encode_tiff(moving_disks()[0], metadata={"axes": "TYX"}),
    }[make]()
    response = post(client, data, model, **fields)
    assert response.status_code == 400, response.json
    assert words in response.json["error"]


def test_the_founder_counts_csv_has_a_row_per_time_point(client):
    movie, _ = moving_disks()
    data = encode_tiff(movie, metadata={"axes": "TYX"})
    response = post(client, data, track="true", format="founder-counts-csv")
    assert response.status_code == 200, response.data[:300]
    lines = response.data.decode().splitlines()
    assert lines[0].startswith("t,tree_A,tree_E,") and "model_Z" in lines[0]
    assert [line.split(",")[0] for line in lines[1:]] == ["0", "1", "2", "3"]
