"""Every guard has a test that fails when the guard is removed (issue #19, section 6).

Size limits, the time budget between pipeline stages, a damaged card or model, and an error in
the middle of a streamed answer: each answers a sentence with its status, never a 500 or a
silently wrong result. Limits are set small here so the files that cross them stay tiny.

Each guard, and the test here that fails when it is removed (each removed and run to check):
- stacks.read_tiff_stack, frames > max_frames: test_a_stack_past_the_frame_limit_is_a_413,
  test_a_3000_page_tiff_is_a_413_at_the_default_limits;
- stacks._check_size, the stack voxel limit: test_a_stack_past_the_voxel_limit_is_a_413;
- analysis.analyse, check_download_size:
  test_an_image_download_past_the_download_voxel_limit_is_a_413;
- pipelines._segment, deadline.check("finding and measuring objects"):
  test_a_segmentation_stops_at_each_stage_once_the_budget_is_spent;
- pipelines.working_map, one probability map per image, and pipelines._count_lineages, one
  number per lineage: test_a_model_output_of_the_wrong_shape_is_a_503;
- pipelines.run_model, ORT_ERRORS -> ModelUnavailable:
  test_a_model_that_fails_to_run_is_a_503_with_a_sentence;
- model_cards._parse_input, input.channels: test_an_invalid_card_is_a_503_naming_what_is_wrong;
- views.frames, a DevoLearnError mid-stream becomes an error line:
  test_an_error_mid_stream_ends_the_ndjson_answer_with_an_error_line;
- movies, the frame and voxel limits while decoding: test_a_movie_past_the_frame_limit_is_a_413,
  test_a_movie_past_the_voxel_limit_is_a_413.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from devolearn_web import pipelines
from devolearn_web.budget import Deadline
from devolearn_web.errors import ModelUnavailable, TookTooLong
from devolearn_web.imaging import decode_image
from devolearn_web.registry import ModelRegistry
from devolearn_web.scale import ScaleRequest

API = "/api/v1/predict/{}"


def post(client, model: str, data: bytes, filename: str, **fields: str):
    """POST one upload (and form fields) to the predict endpoint, as a multipart form.

    The body is built here: werkzeug's test client spools a body over 500 kB to a temporary
    file it never closes (a ResourceWarning, an error under this suite's settings)."""
    boundary = "guard-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    content_type = f"multipart/form-data; boundary={boundary}"
    return client.post(API.format(model), data=b"".join(parts), content_type=content_type)


def error_of(response, status: int) -> str:
    """The JSON error sentence, once the status is the one expected."""
    assert response.status_code == status, response.get_data(as_text=True)[:400]
    answer = response.get_json()
    assert answer["status"] == status
    sentence = answer["error"]
    assert sentence[:1].isupper() and sentence.rstrip().endswith((".", ")")), sentence
    assert "Traceback" not in sentence
    return sentence


def gray_stack(frames: int, side: int = 16) -> np.ndarray:
    """uint8 (frames, side, side): a bright square on black in each frame."""
    stack = np.zeros((frames, side, side), np.uint8)
    stack[:, side // 4 : 3 * side // 4, side // 4 : 3 * side // 4] = 200
    return stack


def gif_movie(frames: int, side: int = 16) -> bytes:
    """An animated GIF of `frames` frames of side x side (each frame different, so none merge)."""
    planes = [
        Image.fromarray(np.full((side, side), 10 + 20 * index, np.uint8)) for index in range(frames)
    ]
    buffer = io.BytesIO()
    planes[0].save(buffer, format="GIF", save_all=True, append_images=planes[1:], duration=100)
    return buffer.getvalue()


def mp4_movie(frames: int, side: int = 32) -> bytes:
    """An MPEG-4 movie of `frames` gray frames of side x side."""
    av = pytest.importorskip("av", reason="PyAV (requirements.txt) decodes the movies")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as output:
        stream = output.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = side, side, "yuv420p"
        for index in range(frames):
            rgb = np.full((side, side, 3), 10 + 20 * index, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()


# ---- size limits ----------------------------------------------------------------------------


def test_a_stack_past_the_voxel_limit_is_a_413(make_app, image_maker):
    client = make_app(MAX_STACK_VOXELS=4 * 16 * 16).test_client()
    data = image_maker.tiff(gray_stack(5), photometric="minisblack")
    sentence = error_of(post(client, "nucleus", data, "s.tif"), 413)
    assert "million values" in sentence
    assert post(client, "nucleus", image_maker.tiff(gray_stack(4)), "s.tif").status_code == 200


def test_a_stack_past_the_frame_limit_is_a_413(make_app, image_maker):
    client = make_app(MAX_STACK_FRAMES=4).test_client()
    data = image_maker.tiff(gray_stack(5), photometric="minisblack")
    sentence = error_of(post(client, "nucleus", data, "s.tif"), 413)
    assert "5 frames" in sentence and "up to 4" in sentence
    assert post(client, "nucleus", image_maker.tiff(gray_stack(4)), "s.tif").status_code == 200


def test_a_3000_page_tiff_is_a_413_at_the_default_limits(client, image_maker):
    # Deterministic: the frame limit answers before any frame is analysed, however fast the
    # machine (a slow one would otherwise stop at the time budget with a 503).
    data = image_maker.tiff(np.zeros((3000, 8, 8), np.uint8), photometric="minisblack")
    sentence = error_of(post(client, "nucleus", data, "s.tif"), 413)
    assert "3000 frames" in sentence


@pytest.mark.parametrize("encode", [gif_movie, mp4_movie], ids=["gif", "mp4"])
def test_a_movie_past_the_frame_limit_is_a_413(make_app, encode):
    client = make_app(MAX_STACK_FRAMES=3).test_client()
    sentence = error_of(post(client, "nucleus", encode(5), "m.bin"), 413)
    assert "more than 3 frames" in sentence


@pytest.mark.parametrize("encode", [gif_movie, mp4_movie], ids=["gif", "mp4"])
def test_a_movie_past_the_voxel_limit_is_a_413(make_app, encode):
    data = encode(5)
    side = Image.open(io.BytesIO(data)).width if encode is gif_movie else 32
    client = make_app(MAX_STACK_VOXELS=3 * side * side).test_client()
    sentence = error_of(post(client, "nucleus", data, "m.bin"), 413)
    assert "million pixels in all" in sentence


@pytest.mark.parametrize("encode", [gif_movie, mp4_movie], ids=["gif", "mp4"])
def test_a_movie_with_frames_past_the_pixel_limit_is_a_413(make_app, encode):
    client = make_app(MAX_IMAGE_PIXELS=500).test_client()
    sentence = error_of(post(client, "nucleus", encode(3, side=32), "m.bin"), 413)
    assert "megapixels" in sentence


@pytest.mark.parametrize(
    "file_format, fields",
    [
        ("tiff", {}),
        ("probability-tiff", {}),
        ("zip", {}),
        # The 3D assembly's downloads are made on their own path, with their own check.
        ("tiff", {"assemble": "3d"}),
    ],
    ids=["tiff", "probability-tiff", "zip", "tiff-assembled-3d"],
)
def test_an_image_download_past_the_download_voxel_limit_is_a_413(
    make_app, image_maker, file_format, fields
):
    client = make_app(MAX_DOWNLOAD_VOXELS=3 * 16 * 16).test_client()
    data = image_maker.tiff(gray_stack(4), photometric="minisblack")
    sentence = error_of(post(client, "nucleus", data, "s.tif", format=file_format, **fields), 413)
    assert "format=csv" in sentence
    # The CSV holds numbers only: it has no such limit.
    assert post(client, "nucleus", data, "s.tif", format="csv", **fields).status_code == 200


# ---- the time budget between stages --------------------------------------------------------


class StopAt(Deadline):
    """A deadline that runs out exactly when `stage` is checked, and records every check."""

    def __init__(self, stage: str) -> None:
        super().__init__(60.0)
        self.stage = stage
        self.checked: list[str] = []

    def check(self, next_stage: str) -> None:
        self.checked.append(next_stage)
        if next_stage == self.stage:
            raise self.exceeded(next_stage)


@pytest.fixture
def registry(tiny_models_dir: Path) -> ModelRegistry:
    return ModelRegistry(tiny_models_dir)


SEGMENTATION_STAGES = [
    "preparing the image for the model",
    "starting the model",
    "finding and measuring objects",
]


@pytest.mark.parametrize("stage", SEGMENTATION_STAGES)
def test_a_segmentation_stops_at_each_stage_once_the_budget_is_spent(
    registry, five_disks_png, stage
):
    image = decode_image(five_disks_png, "disks.png")
    with pytest.raises(TookTooLong, match=f"while {stage}"):
        pipelines.predict(registry, "nucleus", image, deadline=StopAt(stage))


def test_a_tiled_segmentation_checks_the_budget_between_tiles(registry, five_disks_png):
    # A diameter of 2 pixels enlarges the 200 x 140 image past one tile of the working grid.
    image = decode_image(five_disks_png, "disks.png")
    with pytest.raises(TookTooLong, match="while running the model"):
        pipelines.predict(
            registry,
            "nucleus",
            image,
            deadline=StopAt("running the model"),
            scale_request=ScaleRequest(diameter=2.0),
        )


@pytest.mark.parametrize("stage", ["preparing the image for the model", "starting the model"])
def test_a_lineage_count_stops_at_each_stage_once_the_budget_is_spent(registry, stage):
    image = decode_image(_embryo_png(), "embryo.png")
    with pytest.raises(TookTooLong, match=f"while {stage}"):
        pipelines.predict(registry, "lineage", image, deadline=StopAt(stage))


# ---- a damaged card or model ----------------------------------------------------------------


def test_an_invalid_card_is_a_503_naming_what_is_wrong(make_app, models_copy, five_disks_png):
    card_path = models_copy / "membrane.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["input"]["channels"] = 2
    card_path.write_text(json.dumps(card), encoding="utf-8")
    client = make_app(MODELS_DIR=models_copy).test_client()
    sentence = error_of(post(client, "membrane", five_disks_png, "d.png"), 503)
    assert "membrane.json is not valid" in sentence and "input.channels" in sentence
    assert post(client, "nucleus", five_disks_png, "d.png").status_code == 200


def _replace_model(folder: Path, name: str, graph) -> None:
    """Write graph as folder/<name>.onnx and point its card's sha256 at it."""
    from onnx import checker, helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    checker.check_model(model)
    data = model.SerializeToString()
    (folder / f"{name}.onnx").write_bytes(data)
    card_path = folder / f"{name}.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["sha256"] = hashlib.sha256(data).hexdigest()
    card_path.write_text(json.dumps(card), encoding="utf-8")


def _two_channel_segmentation_graph():
    """[N,1,H,W] -> [N,2,H,W]: two maps per image where the app expects one."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.full((2, 1, 3, 3), 1 / 9, dtype=np.float32)
    return helper.make_graph(
        [helper.make_node("Conv", ["input", "W"], ["output"], pads=[1, 1, 1, 1])],
        "two_maps",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 2, "H", "W"])],
        initializer=[numpy_helper.from_array(weights, "W")],
    )


def _five_number_lineage_graph():
    """[N,3,256,256] -> [N,5]: five numbers per image where the card names seven lineages."""
    from onnx import TensorProto, helper, numpy_helper

    weights = np.ones((5, 3), dtype=np.float32)
    return helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W"], ["output"], transB=1),
        ],
        "five_numbers",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 256, 256])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 5])],
        initializer=[numpy_helper.from_array(weights, "W")],
    )


def _failing_graph():
    """A graph ONNX Runtime loads but cannot run: it reshapes to a size no input has."""
    from onnx import TensorProto, helper, numpy_helper

    impossible = np.array([1_000_003, -1], dtype=np.int64)  # a prime no map size is a multiple of
    return helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["output"])],
        "fails_at_run",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1_000_003, "M"])],
        initializer=[numpy_helper.from_array(impossible, "shape")],
    )


@pytest.mark.parametrize(
    "name, graph, words",
    [
        ("nucleus", _two_channel_segmentation_graph, "output of shape"),
        ("lineage", _five_number_lineage_graph, "returned 5 numbers"),
    ],
    ids=["segmentation", "lineage"],
)
def test_a_model_output_of_the_wrong_shape_is_a_503(
    make_app, models_copy, five_disks_png, name, graph, words
):
    _replace_model(models_copy, name, graph())
    client = make_app(MODELS_DIR=models_copy).test_client()
    image = five_disks_png if name == "nucleus" else _embryo_png()
    sentence = error_of(post(client, name, image, "i.png"), 503)
    assert words in sentence


def test_a_model_that_fails_to_run_is_a_503_with_a_sentence(make_app, models_copy, five_disks_png):
    _replace_model(models_copy, "nucleus", _failing_graph())
    client = make_app(MODELS_DIR=models_copy).test_client()
    sentence = error_of(post(client, "nucleus", five_disks_png, "d.png"), 503)
    assert "nucleus model failed to run" in sentence


def _embryo_png() -> bytes:
    """A 200 x 140 PNG of one bright ellipse (an embryo) on black."""
    rows, cols = np.mgrid[:140, :200]
    embryo = np.where(((cols - 100) / 60) ** 2 + ((rows - 70) / 40) ** 2 <= 1, 200, 0)
    buffer = io.BytesIO()
    Image.fromarray(embryo.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


# ---- an error in the middle of a streamed answer --------------------------------------------


@pytest.mark.parametrize(
    "error, status, words",
    [
        (ModelUnavailable("The nucleus model stopped."), 503, "The nucleus model stopped."),
        (RuntimeError("a bug"), 500, "Something went wrong on the server"),
    ],
    ids=["typed-error", "bug"],
)
def test_an_error_mid_stream_ends_the_ndjson_answer_with_an_error_line(
    client, image_maker, monkeypatch, error, status, words
):
    from devolearn_web import stack_pipeline

    original = stack_pipeline.predict_batch
    calls = []

    def fails_on_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(stack_pipeline, "predict_batch", fails_on_the_second_batch)
    data = image_maker.tiff(gray_stack(18), photometric="minisblack")
    response = post(client, "nucleus", data, "s.tif", progress="ndjson")
    assert response.status_code == 200  # the status line went out with the first bytes
    events = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert events[0] == {"progress": {"done": 16, "total": 18}}
    assert events[-1] == {"error": events[-1]["error"], "status": status}
    assert words in events[-1]["error"]
    assert "a bug" not in events[-1]["error"]
