"""Each shipped model as a BioImage.IO model package (rdf.yaml format 0.5), from models/ alone.

The zip holds the ONNX file, its card, test tensors, a cover and documentation, described by an
rdf.yaml that bioimage.io-aware tools read (deepImageJ in Fiji, ilastik, QuPath, napari via
bioimageio.core). No PyTorch: the test output is the shipped ONNX file run by ONNX Runtime on
the test input after the package's own preprocessing, so a tool that follows the rdf.yaml
reproduces it (tests/test_bioimageio_package.py checks this and validates the package).

The test input is an example image prepared as the app prepares the network's input: decoded
to its signal channel in [0, 1], then for segmentation brought to the first working grid
(devolearn_web.scale; embryo along x, objects at the trained size, dark canvas to 256, sides a
multiple of 32), for lineage cut out at the embryo's training framing (devolearn_web.embryo).
What the format has no words for (the embryo crop, the size-aware grid, the mirror averaging,
splitting touching objects, the lineage calibration) is in the documentation.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import tifffile
import yaml
from PIL import Image

from devolearn_web import catalogue
from devolearn_web.embryo import embryo_centred_view, find_embryo
from devolearn_web.file_digest import file_sha256
from devolearn_web.imaging import (
    MODEL_HIGH_PERCENTILE,
    MODEL_LOW_PERCENTILE,
    decode_image,
    resize_image,
)
from devolearn_web.model_cards import ModelCard, parse_card
from devolearn_web.scale import (
    AUTOMATIC_SCALE,
    MIN_CANVAS_SIDE,
    NETWORK_MULTIPLE,
    TILE_OVERLAP,
    GridCard,
    initial_grid,
    working_shape,
)

FORMAT_VERSION = "0.5.14"  # bioimageio.spec's current model format
LICENCE = "MIT"  # as the DevoLearn models this project succeeds
AUTHORS = [{"name": "DevoLearn Web contributors"}]
CITATIONS = [
    {
        "text": "DevoLearn: deep-learning models for C. elegans embryo microscopy (OpenWorm "
        "DevoWorm), the models and web app this package's networks succeed.",
        "url": "https://github.com/DevoLearn/devolearn",
    },
    {
        "text": "Lin T.-Y., Dollar P., Girshick R., He K., Hariharan B., Belongie S. Feature "
        "Pyramid Networks for Object Detection. CVPR 2017.",
        "doi": "10.1109/CVPR.2017.106",
    },
    {
        "text": "He K., Zhang X., Ren S., Sun J. Deep Residual Learning for Image Recognition. "
        "CVPR 2016.",
        "doi": "10.1109/CVPR.2016.90",
    },
]
TAGS = ["c-elegans", "embryo", "fluorescence-light-microscopy", "onnx", "simulated-training-data"]
# A tensor's description is at most 128 characters; the card's full sentence is in README.md.
INPUT_WORDS = {
    "segmentation": "Grayscale z-slice or projection on the working grid (see README.md), any "
    "intensity range; the package stretches it.",
    "lineage": "Grayscale view of one whole embryo cut out at the training framing (see "
    "README.md), copied to 3 channels.",
}
COVER_SIDE = 256
# A test tile larger than this is cut to it: tools run larger images in tiles anyway.
TEST_SIDE_LIMIT = 512
# scale_range's own default (bioimageio: out = (x - low) / (high - low + eps)).
SCALE_RANGE_EPS = 1e-6


@dataclass(frozen=True)
class TestTensors:
    """The package's test input (before preprocessing) and output (after postprocessing)."""

    input: np.ndarray  # float32 (1, C, H, W)
    output: np.ndarray  # float32 (1, 1, H, W) probability, or (1, 7) cell counts


def segmentation_test_input(pixels: np.ndarray, card: ModelCard) -> np.ndarray:
    """float32 (1, 1, H, W): the upload's signal on its first working grid, before the
    contrast stretch, on a dark canvas of at least 256, sides a multiple of 32."""
    search = find_embryo(pixels)
    grid = initial_grid(pixels, GridCard.of(card), AUTOMATIC_SCALE, search.region)
    oriented = np.ascontiguousarray(pixels.T if grid.transpose else pixels, dtype=np.float32)
    resized = resize_image(oriented, working_shape(grid, pixels.shape))
    # The middle of a large grid: the embryo, not a corner of the margin.
    top, left = (max(0, (side - TEST_SIDE_LIMIT) // 2) for side in resized.shape)
    resized = resized[top : top + TEST_SIDE_LIMIT, left : left + TEST_SIDE_LIMIT]
    # The app pads the stretched image with 0: the stretch's dark level before stretching.
    sides = [max(MIN_CANVAS_SIDE, _round_up(side)) for side in resized.shape]
    canvas = np.full(sides, grid.low, dtype=np.float32)
    top, left = ((side - have) // 2 for side, have in zip(sides, resized.shape, strict=True))
    canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return canvas[None, None]


def lineage_test_input(pixels: np.ndarray, card: ModelCard) -> np.ndarray:
    """float32 (1, 3, 256, 256): the embryo cut out at its training framing, copied to 3
    channels, before the contrast stretch."""
    search = find_embryo(pixels)
    if search.region is None:
        raise ValueError(f"the lineage example shows no single embryo: {search.problem}")
    view = embryo_centred_view(pixels, search.region, card.input.embryo_fill, card.input.size)
    channels = card.input.channels
    return np.ascontiguousarray(np.repeat(view[None, None], channels, axis=1), dtype=np.float32)


def preprocessing(card: ModelCard) -> list[dict]:
    """The app's per-image contrast stretch (and the lineage's [-1, 1]) in the format's terms."""
    axes = ["y", "x"] if card.is_segmentation else ["channel", "y", "x"]
    steps = [
        {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
        {
            "id": "scale_range",
            "kwargs": {
                "axes": axes,
                "min_percentile": MODEL_LOW_PERCENTILE,
                "max_percentile": MODEL_HIGH_PERCENTILE,
                "eps": SCALE_RANGE_EPS,
            },
        },
        {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}},
    ]
    if card.input.normalisation == "symmetric":
        steps.append({"id": "scale_linear", "kwargs": {"gain": 2.0, "offset": -1.0}})
    return steps


def postprocessing(card: ModelCard) -> list[dict]:
    """Lineage: the network's fractions times each lineage's maximum (uncalibrated counts)."""
    if card.is_segmentation:
        return []
    maxima = list(card.output.maxima)
    return [{"id": "scale_linear", "kwargs": {"axis": "channel", "gain": maxima, "offset": 0.0}}]


def apply_steps(tensor: np.ndarray, steps: list[dict]) -> np.ndarray:
    """A float32 tensor through the processing steps this module writes, as the format
    defines them (percentiles per sample over the named axes)."""
    out = np.asarray(tensor, dtype=np.float32)
    names = ["batch", "channel", "y", "x"][: out.ndim]
    for step in steps:
        kwargs = step["kwargs"]
        if step["id"] == "scale_range":
            reduce = tuple(names.index(axis) for axis in kwargs["axes"])
            low, high = np.percentile(
                out,
                [kwargs["min_percentile"], kwargs["max_percentile"]],
                axis=reduce,
                keepdims=True,
            )
            out = ((out - low) / (high - low + kwargs["eps"])).astype(np.float32)
        elif step["id"] == "clip":
            out = np.clip(out, kwargs["min"], kwargs["max"])
        elif step["id"] == "scale_linear":
            gain, offset = np.asarray(kwargs["gain"], np.float32), np.float32(kwargs["offset"])
            if "axis" in kwargs:  # one gain per entry along the axis
                shape = [1] * out.ndim
                shape[names.index(kwargs["axis"])] = gain.size
                gain = gain.reshape(shape)
            out = out * gain + offset
        elif step["id"] != "ensure_dtype":
            raise ValueError(f"no reference implementation of {step['id']}")
    return out.astype(np.float32)


def make_test_tensors(card: ModelCard, onnx_path: Path, example_path: Path) -> TestTensors:
    """The test input from the example, and the ONNX file's answer to it through ONNX Runtime."""
    import onnxruntime

    pixels = decode_image(example_path.read_bytes(), example_path.name).pixels
    pixels = np.asarray(pixels, dtype=np.float32)
    if card.is_segmentation:
        test_input = segmentation_test_input(pixels, card)
    else:
        test_input = lineage_test_input(pixels, card)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(onnx_path), options, providers=["CPUExecutionProvider"]
    )
    network_input = apply_steps(test_input, preprocessing(card))
    output = session.run([card.output.name], {card.input.name: network_input})[0]
    return TestTensors(test_input, apply_steps(output, postprocessing(card)))


def _round_up(size: int) -> int:
    return -(-size // NETWORK_MULTIPLE) * NETWORK_MULTIPLE


def input_axes(card: ModelCard) -> list[dict]:
    """The network's input axes: any size in steps of 32 for segmentation, in micrometres of
    the working grid; 256 x 256 for lineage."""
    channel = {"type": "channel", "channel_names": _channel_names(card)}
    if not card.is_segmentation:
        side_y, side_x = card.input.size
        return [
            {"type": "batch"},
            channel,
            {"type": "space", "id": "y", "size": side_y},
            {"type": "space", "id": "x", "size": side_x},
        ]
    grid = GridCard.of(card)
    # Rows of the grid are stretched by the training frames' aspect: a column spans more µm.
    root = math.sqrt(grid.aspect)
    size = {"min": MIN_CANVAS_SIDE, "step": NETWORK_MULTIPLE}
    return [
        {"type": "batch"},
        {"type": "channel", "channel_names": [catalogue.entry(card.name).package.channel]},
        {"type": "space", "id": "y", "size": size, "unit": "micrometer",
         "scale": round(grid.um_per_px / root, 4)},
        {"type": "space", "id": "x", "size": size, "unit": "micrometer",
         "scale": round(grid.um_per_px * root, 4)},
    ]  # fmt: skip


def _channel_names(card: ModelCard) -> list[str]:
    channels = card.input.channels
    name = catalogue.entry(card.name).package.channel
    return [name] if channels == 1 else [f"{name}_copy{index}" for index in range(channels)]


def output_axes(card: ModelCard) -> list[dict]:
    """Segmentation: one probability map the input's size (a halo of half the app's tile
    overlap); lineage: one value per founder lineage."""
    if not card.is_segmentation:
        return [
            {"type": "batch"},
            {"type": "channel", "channel_names": list(card.output.lineages)},
        ]
    # The same grid as the input's: a referenced axis must share its unit (and so its scale).
    spatial = [axis for axis in input_axes(card) if axis["type"] == "space"]
    return [
        {"type": "batch"},
        {"type": "channel", "channel_names": ["probability"]},
        *(
            {
                **axis,
                "size": {"tensor_id": "input", "axis_id": axis["id"]},
                "halo": TILE_OVERLAP // 2,
            }
            for axis in spatial
        ),
    ]


def rdf(card: ModelCard, files: dict[str, str]) -> dict:
    """The rdf.yaml content; `files` maps each packaged file to its sha256."""
    name = card.name
    task_tags = ["segmentation", "semantic-segmentation"] if card.is_segmentation else []
    return {
        "format_version": FORMAT_VERSION,
        "type": "model",
        "name": catalogue.entry(name).package.name,
        "description": (
            f"{card['title']} ({card['architecture']}), trained only on simulated C. elegans "
            "embryos; exported to ONNX by DevoLearn Web."
        ),
        "version": card.version,
        "authors": AUTHORS,
        # The FPN paper only where the network is one.
        "cite": [
            entry
            for entry in CITATIONS
            if "FPN" in card["architecture"] or "Pyramid" not in entry["text"]
        ],  # fmt: skip
        "license": LICENCE,
        "tags": TAGS + task_tags + (["lineage", "regression"] if not task_tags else []),
        "documentation": {"source": "README.md", "sha256": files["README.md"]},
        "covers": [{"source": "cover.png", "sha256": files["cover.png"]}],
        "attachments": [{"source": f"{name}.json", "sha256": files[f"{name}.json"]}],
        "inputs": [
            {
                "id": "input",
                "description": INPUT_WORDS[card.task],
                "axes": input_axes(card),
                "test_tensor": {"source": "test_input.npy", "sha256": files["test_input.npy"]},
                "sample_tensor": {
                    "source": "sample_input.tif",
                    "sha256": files["sample_input.tif"],
                },
                "data": {"type": "float32"},
                "preprocessing": preprocessing(card),
            }
        ],
        "outputs": [
            {
                "id": "output",
                "description": catalogue.entry(name).package.output,
                "axes": output_axes(card),
                "test_tensor": {"source": "test_output.npy", "sha256": files["test_output.npy"]},
                "sample_tensor": {
                    "source": "sample_output.tif",
                    "sha256": files["sample_output.tif"],
                },
                "data": {"type": "float32"},
                "postprocessing": postprocessing(card),
            }
        ],
        "weights": {
            "onnx": {
                "source": card.file,
                "sha256": files[card.file],
                "opset_version": int(card.get("opset", 17)),
            }
        },
        "config": {
            "devolearn_web": {
                "card": f"{name}.json",
                "example": catalogue.entry(name).package.example,
            }
        },
    }


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def tiff_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.ascontiguousarray(array, dtype=np.float32))
    return buffer.getvalue()


def cover_png(card: ModelCard, tensors: TestTensors) -> bytes:
    """A 2:1 cover: the network's input beside its answer (probability, or counts as bars)."""
    shown = apply_steps(tensors.input, preprocessing(card))[0, 0]
    shown = (shown - shown.min()) / max(float(shown.max() - shown.min()), 1e-6)
    left = _square(Image.fromarray((shown * 255).astype(np.uint8)))
    if card.is_segmentation:
        probability = (np.clip(tensors.output[0, 0], 0, 1) * 255).astype(np.uint8)
        dim = (shown * 255 * 0.6).astype(np.uint8)
        overlay = np.stack([dim, np.maximum(dim, probability), np.zeros_like(dim)], axis=-1)
        right = _square(Image.fromarray(overlay))
    else:
        right = _bars(tensors.output[0], card.output.maxima)
    cover = Image.new("RGB", (2 * COVER_SIDE, COVER_SIDE))
    cover.paste(left.convert("RGB"), (0, 0))
    cover.paste(right.convert("RGB"), (COVER_SIDE, 0))
    buffer = io.BytesIO()
    cover.save(buffer, format="PNG")
    return buffer.getvalue()


def _square(image: Image.Image) -> Image.Image:
    image = image.copy()
    image.thumbnail((COVER_SIDE, COVER_SIDE))
    canvas = Image.new(image.mode, (COVER_SIDE, COVER_SIDE))
    canvas.paste(image, ((COVER_SIDE - image.width) // 2, (COVER_SIDE - image.height) // 2))
    return canvas


def _bars(counts: np.ndarray, maxima: tuple[float, ...]) -> Image.Image:
    """Seven bars, each a lineage's count as a share of its maximum."""
    from PIL import ImageDraw

    image = Image.new("RGB", (COVER_SIDE, COVER_SIDE), "white")
    draw = ImageDraw.Draw(image)
    width = COVER_SIDE // (2 * len(counts) + 1)
    for index, (count, maximum) in enumerate(zip(counts, maxima, strict=True)):
        height = int((COVER_SIDE - 20) * min(1.0, max(0.0, float(count) / float(maximum))))
        left = width * (2 * index + 1)
        draw.rectangle([left, COVER_SIDE - 10 - height, left + width, COVER_SIDE - 10], "teal")
    return image


def documentation(card: ModelCard) -> str:
    """README.md of the package: what it is, that it learned from simulated embryos, its
    metrics and limitations, and what the rdf.yaml cannot say."""
    from devolearn_web.bioimageio_docs import package_readme

    return package_readme(card, catalogue.entry(card.name).package.example)


def write_package(models_dir: Path, examples_dir: Path, name: str, target: BinaryIO) -> None:
    """Write the package of models/<name>.onnx + .json into `target` (a zip)."""
    models_dir = Path(models_dir)
    card_path = models_dir / f"{name}.json"
    card_text = card_path.read_text(encoding="utf-8")
    card = parse_card(name, json.loads(card_text))
    onnx_path = models_dir / card.file
    tensors = make_test_tensors(
        card, onnx_path, Path(examples_dir) / catalogue.entry(name).package.example
    )
    small = {
        f"{name}.json": card_text.encode("utf-8"),
        "test_input.npy": npy_bytes(tensors.input),
        "test_output.npy": npy_bytes(tensors.output),
        # Sample tensors: the same arrays as TIFF, for people and for imageio-based tools.
        "sample_input.tif": tiff_bytes(tensors.input),
        "sample_output.tif": tiff_bytes(tensors.output),
        "cover.png": cover_png(card, tensors),
        "README.md": documentation(card).encode("utf-8"),
    }
    digests = {path: hashlib.sha256(data).hexdigest() for path, data in small.items()}
    digests[card.file] = file_sha256(onnx_path)
    description = rdf(card, digests)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zipped:
        zipped.writestr("rdf.yaml", yaml.safe_dump(description, sort_keys=False, width=100))
        for path, data in small.items():
            zipped.writestr(path, data)
        # Float weights barely compress: stored, the 26 MB are copied, not squeezed for 0.5 s.
        zipped.write(onnx_path, card.file, compress_type=zipfile.ZIP_STORED)


# Built once per model file and card, then served from disk: a build runs the network and
# copies 26 MB, which no visitor should wait for twice.
PACKAGE_BUILD_BYTES = 200 * 1_000_000  # a second ONNX session of an FPN, its run, the zip


def package_cache_path(models_dir: Path, name: str, cache_dir: Path) -> Path:
    """Where the package of the model's current file and card is kept in `cache_dir` (a new
    name whenever either, or this code, changes)."""
    models_dir = Path(models_dir)
    card_path = models_dir / f"{name}.json"
    card = parse_card(name, json.loads(card_path.read_text(encoding="utf-8")))
    sources = (card_path, models_dir / card.file, Path(__file__))
    key = hashlib.sha256()
    for path in (*sources, Path(__file__).with_name("bioimageio_docs.py")):
        stat = path.stat()
        key.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return Path(cache_dir) / f"{name}-{key.hexdigest()[:16]}.bioimageio.zip"


def build_package_file(models_dir: Path, examples_dir: Path, name: str, target: Path) -> Path:
    """Write the package to `target`, whole or not at all (two builds at once both finish)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target.parent, suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as stream:
            write_package(models_dir, examples_dir, name, stream)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    return target
