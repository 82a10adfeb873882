"""Multi-page TIFFs and ImageJ hyperstacks: axes guessed or given, every slice analysed in order."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from devolearn_web.analysis import analyse_image
from devolearn_web.errors import BadParameter, UnsupportedType
from devolearn_web.stacks import parse_axes_override, read_tiff_stack, tiff_frame_count

DISKS = [(30, 30), (90, 30), (150, 30), (60, 100), (130, 100)]


def disk_stack(image_maker, counts: list[int], dtype=np.uint8) -> np.ndarray:
    """(N, 140, 200) slices: slice i holds counts[i] bright disks."""
    planes = [image_maker.disks((140, 200), DISKS[:count], 12) for count in counts]
    scale = 255 if dtype == np.uint8 else 65535
    return np.round(np.stack(planes) * scale).astype(dtype)


@pytest.mark.parametrize(
    "shape, options, axes, frames, slider",
    [
        ((4, 20, 30), {"photometric": "minisblack"}, "ZYX", 4, ["z"]),
        ((5, 20, 30), {"metadata": {"axes": "TYX"}}, "TYX", 5, ["time"]),
        ((2, 3, 20, 30), {"imagej": True, "metadata": {"axes": "TZYX"}}, "TZYX", 6, ["time", "z"]),
        ((3, 2, 20, 30), {"imagej": True, "metadata": {"axes": "ZCYX"}}, "ZCYX", 3, ["z"]),
        ((4, 20, 30, 3), {"photometric": "rgb"}, "ZYXS", 4, ["z"]),
    ],
)
def test_stack_axes_are_guessed_from_the_file(image_maker, shape, options, axes, frames, slider):
    data = image_maker.tiff(
        np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8), **options
    )
    stack = read_tiff_stack(data)
    assert stack.axes["guessed"] == axes
    assert stack.count == frames == tiff_frame_count(data)
    assert stack.axes["slider"] == slider
    assert stack.pixels(0).dtype == np.float32 and stack.pixels(0).shape == (20, 30)


def test_time_and_z_are_flattened_time_outermost(image_maker):
    values = np.arange(2 * 3, dtype=np.uint8).reshape(2, 3, 1, 1) * 10 + np.zeros(
        (2, 3, 4, 5), np.uint8
    )
    stack = read_tiff_stack(image_maker.tiff(values, imagej=True, metadata={"axes": "TZYX"}))
    assert [p for p in stack.positions[:4]] == [
        {"time": 0, "z": 0},
        {"time": 0, "z": 1},
        {"time": 0, "z": 2},
        {"time": 1, "z": 0},
    ]
    assert stack.data[4, 0, 0] == 40  # time 1, z 1


def test_axes_override_turns_pages_into_time_points(image_maker):
    data = image_maker.tiff(np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    stack = read_tiff_stack(data, axes_override="T")
    assert stack.axes["guessed"] == "ZYX" and stack.axes["used"] == "TYX"
    assert stack.positions[2] == {"time": 2}


def test_channel_with_the_signal_is_chosen_and_can_be_overridden(image_maker):
    signal = disk_stack(image_maker, [1, 2], np.uint16)
    hyperstack = np.stack([np.full_like(signal, 100), signal], axis=1)  # Z, C, Y, X
    data = image_maker.tiff(hyperstack, imagej=True, metadata={"axes": "ZCYX"})
    assert read_tiff_stack(data).axes["channel"] == 1
    assert read_tiff_stack(data, channel=0).pixels(0).max() == pytest.approx(100 / 65535)


def test_a_channel_a_single_channel_stack_lacks_is_refused(image_maker):
    data = image_maker.tiff(disk_stack(image_maker, [1, 2]), photometric="minisblack")
    assert read_tiff_stack(data, channel=0).count == 2  # its one channel
    with pytest.raises(BadParameter, match="Channel 1 does not exist: this stack has one"):
        read_tiff_stack(data, channel=1)


def test_colour_stack_read_by_brightness_still_reports_its_channels(image_maker):
    gray = disk_stack(image_maker, [1, 2])
    data = image_maker.tiff(np.repeat(gray[..., None], 3, axis=3), photometric="rgb")
    stack = read_tiff_stack(data)
    assert (stack.axes["channel"], stack.axes["channels"]) == (None, 3)


@pytest.mark.parametrize("raw", ["XYZ", "ZZ", "Q", "T Z C X"])
def test_bad_axes_are_refused_with_a_sentence(raw):
    with pytest.raises(BadParameter):
        parse_axes_override(raw)


def test_axes_override_of_the_wrong_length_is_refused(image_maker):
    data = image_maker.tiff(np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(BadParameter, match="1 besides the image plane"):
        read_tiff_stack(data, axes_override="TZ")


def test_api_answers_a_stack_frame_by_frame(client, image_maker):
    data = image_maker.tiff(disk_stack(image_maker, [1, 3, 5]), photometric="minisblack")
    response = client.post(
        "/api/v1/predict/nucleus",
        data={"file": (io.BytesIO(data), "stack.tif"), "include": "figures"},
    )
    answer = response.get_json()
    assert response.status_code == 200, answer
    assert answer["model"] == "nucleus" and answer["kind"] == "stack"
    assert answer["count_per_frame"] == [1, 3, 5]
    assert [frame["count"] for frame in answer["frames"]] == [1, 3, 5]
    assert [frame["position"] for frame in answer["frames"]] == [{"z": 0}, {"z": 1}, {"z": 2}]
    assert answer["frames"][0]["probability"].startswith("data:image/png;base64,")
    assert "figures" in answer["frames"][2]
    assert answer["axes"]["guessed"] == "ZYX"


def test_a_slice_of_pixel_noise_in_a_stack_is_not_run_and_reads_no_nuclei(client, image_maker):
    """A slice beyond the embryo keeps its own answer, not the stack's embryo."""
    from tests.test_embryo import noise

    stack = disk_stack(image_maker, [0, 3, 5])
    stack[0] = np.round(noise(stack.shape[1:]) * 255).astype(np.uint8)
    data = image_maker.tiff(stack, photometric="minisblack")
    response = client.post("/api/v1/predict/nucleus", data={"file": (io.BytesIO(data), "s.tif")})
    answer = response.get_json()
    assert response.status_code == 200, answer
    assert answer["count_per_frame"] == [0, 3, 5]
    sentence = "nothing that stands out from its own pixel noise"
    assert [any(sentence in text for text in frame["warnings"]) for frame in answer["frames"]] == [
        True,
        False,
        False,
    ]


def test_a_segmentation_stack_runs_each_frame_at_its_own_working_grid(
    app, image_maker, monkeypatch
):
    # Each frame is analysed as the same image uploaded alone would be (its own scale).
    from devolearn_web import stack_pipeline
    from devolearn_web.pipelines import run_model as real_run_model

    calls = []

    def counting_run_model(model, tensor, deadline):
        calls.append(tensor.shape[0])
        return real_run_model(model, tensor, deadline)

    monkeypatch.setattr("devolearn_web.pipelines.run_model", counting_run_model)
    data = image_maker.tiff(np.zeros((5, 16, 16), np.uint8), photometric="minisblack")
    with app.app_context():
        from devolearn_web.registry import get_registry

        stack = stack_pipeline.load_frames(data)
        results = list(stack_pipeline.predict_stack(get_registry(), "membrane", stack))
    assert len(results) == 5
    # One look at the whole embryo chooses the stack's grid, then each frame and its mirror
    # image go in one call.
    assert calls == [2] * 6


def test_a_lineage_movie_is_sent_to_the_model_in_batches(app, image_maker, monkeypatch):
    from devolearn_web import stack_pipeline
    from devolearn_web.pipelines import VIEW_FLIPS
    from devolearn_web.pipelines import run_model as real_run_model

    calls = []

    def counting_run_model(model, tensor, deadline):
        calls.append(tensor.shape[0])
        return real_run_model(model, tensor, deadline)

    monkeypatch.setattr("devolearn_web.pipelines.run_model", counting_run_model)
    rows, cols = np.ogrid[:80, :120]
    embryo = ((rows - 40) / 25.0) ** 2 + ((cols - 60) / 42.0) ** 2 <= 1  # one bright ellipse
    frames = np.repeat((embryo * 200).astype(np.uint8)[None], 20, axis=0)
    data = image_maker.tiff(frames, photometric="minisblack")
    with app.app_context():
        from devolearn_web.registry import get_registry

        stack = stack_pipeline.load_frames(data)
        results = list(stack_pipeline.predict_stack(get_registry(), "lineage", stack))
    assert len(results) == 20
    views = len(VIEW_FLIPS)  # each embryo is seen as its four mirror images
    assert calls == [views * stack_pipeline.BATCH_SIZE, views * (20 - stack_pipeline.BATCH_SIZE)]


def test_lineage_stack_gives_populations_per_frame(client, image_maker):
    data = image_maker.tiff(disk_stack(image_maker, [1, 5]), imagej=True, metadata={"axes": "TYX"})
    answer = client.post(
        "/api/v1/predict/lineage", data={"file": (io.BytesIO(data), "t.tif")}
    ).get_json()
    assert answer["kind"] == "stack"
    assert list(answer["populations_per_frame"]) == ["A", "E", "M", "P", "C", "D", "Z"]
    assert answer["total_per_frame"] == [frame["total"] for frame in answer["frames"]]
    assert answer["outside_training_range_frames"] == []


def test_lineage_stack_names_the_frames_at_the_end_of_the_training_range(
    make_app, models_copy, image_maker
):
    data = image_maker.tiff(disk_stack(image_maker, [1, 5]), imagej=True, metadata={"axes": "TYX"})

    def answer():
        client = make_app(MODELS_DIR=models_copy).test_client()
        upload = {"file": (io.BytesIO(data), "t.tif")}
        return client.post("/api/v1/predict/lineage", data=upload).get_json()

    counts = answer()["populations_per_frame"]["A"]
    assert counts[0] != counts[1]
    card_path = models_copy / "lineage.json"
    card = json.loads(card_path.read_text())
    # The larger count sits at the range's end, the smaller well inside it (under 96%).
    card["output"]["training_range"] = {"A": max(counts)}
    card_path.write_text(json.dumps(card))
    assert min(counts) < 0.96 * max(counts), "the frames must differ enough in A"
    flagged = answer()
    assert flagged["at_end_of_training_range_frames"] == [counts.index(max(counts))]
    assert flagged["outside_training_range_frames"] == []
    assert any("at the end of the model's training range" in note for note in flagged["notes"])


def test_progress_is_streamed_as_ndjson_before_the_answer(client, image_maker):
    data = image_maker.tiff(np.zeros((18, 16, 16), np.uint8), photometric="minisblack")
    response = client.post(
        "/api/v1/predict/membrane",
        data={"file": (io.BytesIO(data), "s.tif"), "progress": "ndjson"},
    )
    assert response.mimetype == "application/x-ndjson"
    events = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [event["progress"] for event in events[:-1]] == [
        {"done": 16, "total": 18},
        {"done": 18, "total": 18},
    ]
    assert events[-1]["result"]["frame_count"] == 18


def test_batch_size_and_frames_with_images_are_the_apps_settings(make_app, image_maker):
    data = image_maker.tiff(np.zeros((7, 16, 16), np.uint8), photometric="minisblack")
    answer = (
        make_app(MAX_FRAMES_WITH_IMAGES=7)
        .test_client()
        .post("/api/v1/predict/membrane", data={"file": (io.BytesIO(data), "s.tif")})
        .get_json()
    )
    assert "probability" in answer["frames"][0]
    client = make_app(STACK_BATCH_SIZE=5, MAX_FRAMES_WITH_IMAGES=3).test_client()
    response = client.post(
        "/api/v1/predict/membrane",
        data={"file": (io.BytesIO(data), "s.tif"), "progress": "ndjson"},
    )
    events = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert [event["progress"]["done"] for event in events[:-1]] == [5, 7]
    answer = events[-1]["result"]
    assert "probability" not in answer["frames"][0]
    assert any("stacks of up to 3 frames" in note for note in answer["notes"])


def test_one_frame_of_a_stack_can_be_asked_for(client, image_maker):
    data = image_maker.tiff(disk_stack(image_maker, [1, 4]), photometric="minisblack")
    answer = client.post(
        "/api/v1/predict/membrane", data={"file": (io.BytesIO(data), "s.tif"), "frame": "1"}
    ).get_json()
    assert answer["count"] == 4 and answer["position"] == {"z": 1}


def test_real_sample_as_a_stack_counts_like_the_single_image(client, real_sample, image_maker):
    from PIL import Image

    gray = np.asarray(Image.open(real_sample("seg_sample.jpg")).convert("L"))
    data = image_maker.tiff(np.stack([gray, gray]), photometric="minisblack")
    single = client.post(
        "/api/v1/predict/membrane",
        data={"file": (io.BytesIO(image_maker.encode(gray)), "seg.png")},
    ).get_json()
    stack = client.post(
        "/api/v1/predict/membrane", data={"file": (io.BytesIO(data), "seg.tif")}
    ).get_json()
    assert stack["count_per_frame"] == [single["count"], single["count"]]


def test_complex_stack_is_refused(image_maker):
    with pytest.raises(UnsupportedType, match="complex numbers"):
        read_tiff_stack(image_maker.tiff(np.ones((3, 20, 20), np.complex64)))


def test_float64_stack_with_a_signalling_nan_is_read_quietly(image_maker):
    stack = np.linspace(0, 1, 4 * 64).reshape(4, 8, 8)
    stack.view(np.uint64)[0, 0, 0] = 0x7FF0000000000001  # a signalling NaN
    frames = read_tiff_stack(image_maker.tiff(stack, photometric="minisblack"))
    assert np.isfinite(frames.pixels(0)).all() and frames.pixels(3).max() == 1.0


def embryo_slices(sizes: list[float]) -> np.ndarray:
    """(N, 120, 180) uint8 z-slices of one embryo: an ellipse of relative size sizes[i] holding
    bright nuclei, as a slice near the top or bottom shows a small cross-section."""
    rows, cols = np.ogrid[:120, :180]
    planes = []
    for size in sizes:
        inside = ((rows - 60) / (40 * size)) ** 2 + ((cols - 90) / (70 * size)) ** 2 <= 1
        nuclei = (np.sin(rows / 4.0) * np.sin(cols / 4.0)) > 0.5
        planes.append(np.where(inside, np.where(nuclei, 220, 60), 5).astype(np.uint8))
    return np.stack(planes)


def test_the_slices_of_a_stack_share_one_grid_chosen_on_the_whole_embryo(app, image_maker):
    from devolearn_web import stack_pipeline

    data = image_maker.tiff(embryo_slices([0.3, 0.6, 1.0, 0.6, 0.3]), photometric="minisblack")
    with app.app_context():
        from devolearn_web.registry import get_registry

        stack = stack_pipeline.load_frames(data)
        answers = [
            r.to_json() for _, r in stack_pipeline.predict_stack(get_registry(), "nucleus", stack)
        ]
    assert {answer["scale"] for answer in answers} == {answers[2]["scale"]}
    assert all(
        answer["scale_source"].endswith("one grid for the whole stack") for answer in answers
    )
    # The grid follows the whole embryo (the middle slice), not a cap alone.
    with app.app_context():
        alone, _ = analyse_image(
            get_registry(), "nucleus", image_maker.tiff(embryo_slices([1.0])[0])
        )
    assert answers[0]["scale"] == pytest.approx(alone.to_json()["scale"], rel=0.05)


def test_a_time_lapse_of_z_stacks_is_sized_on_the_middle_time_point_projected(image_maker):
    from devolearn_web import stack_pipeline

    values = np.zeros((3, 4, 6, 8), np.uint8)
    values[1, 2, 1, 1] = 200  # the middle time point, one slice each
    values[1, 0, 4, 6] = 100
    values[0, 1, 3, 3] = 250  # another time point: not in the reference
    stack = read_tiff_stack(image_maker.tiff(values, imagej=True, metadata={"axes": "TZYX"}))
    reference = stack_pipeline.reference_image(stack).pixels
    expected = values[1].max(axis=0) / 255.0
    assert np.allclose(reference, expected, atol=1e-6)
