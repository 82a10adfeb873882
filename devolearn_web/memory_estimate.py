"""How much memory a model run will hold at its peak, estimated from the upload's headers alone
(no pixel decoded), for the admission budget (devolearn_web.admission).

A single image goes through three phases that never overlap: decoding (the decoder's copy of the
pixels beside the signal being made), the network (the signal, plus ONNX Runtime's activations
for one tile and the working grid's arrays) and the answer at the upload's size (the signal,
the 8-bit probability and 16-bit labels, plus a download or the figures). The need is the
largest phase plus the request body. A stack or movie holds its frames and, for a download,
every frame's maps. The figures per pixel below were measured on this code
(tests/reliability/test_memory_budget.py, `python -m bench --only memory`); each phase's
estimate is an upper bound of what was measured.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import tifffile
from PIL import Image

from devolearn_web.errors import DevoLearnError
from devolearn_web.imaging import COMPACT_SIGNAL_PIXELS, TIFF_DECODE_ERRORS, sniff_format
from devolearn_web.movies import sniff_movie
from devolearn_web.stacks import DEFAULT_MAX_STACK_VOXELS, is_tiff, tiff_frame_count
from devolearn_web.tiff_source import tiff_from

MB = 1_000_000
# ONNX Runtime's activations for one 512 x 512 tile of an FPN (about 75 MB, gunicorn.conf.py's
# malloc settings) and the working grid's own arrays for a grid of about 1.5 megapixels (the
# working grid of one embryo; scale.MAX_WORKING_PIXELS lets an embryo small in a large frame
# reach 6 megapixels, which this does not cover); the lineage network's input is 256 x 256.
NETWORK_BYTES = {"segmentation": 120 * MB, "lineage": 25 * MB}
# Bands of rows in flight, the answer's JSON and PNG, Python's own objects.
SLACK_BYTES = 16 * MB
# PIL's bytes a pixel by mode (colour is held at 4, as RGBX).
PIL_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I": 4, "F": 4}
PIL_COLOUR_MODES = ("RGB", "RGBA")
# At the upload's size: the 8-bit probability (1) and the labels kept at 1 bit (upload-size
# labels are made, 2 bytes a pixel, only for what reads them: LABELS_BYTES_PER_PIXEL).
SEGMENTATION_BYTES_PER_PIXEL = 1.2
LABELS_BYTES_PER_PIXEL = 2.0
# What a download or the figures add at the upload's size, per pixel: the file (a TIFF held
# with BytesIO's slack), the mask PNG's mask, the ZIP's TIFFs, masks and compressed copies;
# the figures' mask, outline and palette images (made in bands).
ANSWER_BYTES_PER_PIXEL = {
    "json": 0.0,
    "csv": 0.0,
    "png": 1.5,
    "tiff": 2.3,
    "probability-tiff": 4.6,
    # The ROI set is a few kB per object; tracing an object copies at most a megapixel sample
    # of its box (roi_sets.MAX_TRACED_PIXELS), which SLACK_BYTES covers.
    "roi": 0.2,
    "zip": 11.0,
    "figures": 3.0,
}
# The answers that read the labels at the upload's size (a stack's downloads all do).
READS_LABELS = ("tiff", "roi", "zip", "figures")
# A stack's frames are held twice while they are read (the file's series and the frames).
STACK_COPIES = 2
# What reading a damaged or hostile header raises (the decoders' own list, and their refusals).
PROBE_ERRORS = (
    DevoLearnError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
    *TIFF_DECODE_ERRORS,
)


@dataclass(frozen=True)
class UploadShape:
    """An upload's size from its headers: one frame's pixels, frames, the decoder's bytes for
    one pixel of one frame (every channel), and whether it is PIL colour (read one plane at a
    time: imaging._Rows)."""

    width: int
    height: int
    frames: int = 1
    bytes_per_pixel: float = 1.0
    pil_colour: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def within(self, max_pixels: int, max_voxels: int, max_frames: int) -> bool:
        """True when the decoders' own limits let this upload through."""
        if self.frames <= 1:
            return self.pixels <= max_pixels
        return (
            self.pixels <= max_pixels
            and self.frames <= max_frames
            and (self.frames * self.pixels <= max_voxels)
        )

    def phrase(self) -> str:
        """How the upload is named in a sentence: 'this 36-megapixel image'."""
        size = f"{self.width} x {self.height}"
        if self.pixels >= 1_000_000:
            size = f"{self.pixels / 1e6:.1f}".removesuffix(".0") + "-megapixel"
        if self.frames > 1:
            return f"this stack of {self.frames} {size} frames"
        return f"this {size} image"


def probe_upload(
    data: bytes, max_voxels: int = DEFAULT_MAX_STACK_VOXELS, tiff: tifffile.TiffFile | None = None
) -> UploadShape | None:
    """The upload's size from its headers; None when they cannot be read (the decoder then
    answers with what is wrong with the file). `max_voxels`: the stack limit, which bounds a
    movie whose frame count its header does not give; `tiff`: a TIFF upload already parsed."""
    try:
        movie = sniff_movie(data)
        if movie == "GIF":
            return _probe_gif(data)
        if movie is not None:
            return _probe_video(data, max_voxels)
        if is_tiff(data):
            return _probe_tiff(data, tiff)
        with Image.open(io.BytesIO(data), formats=[sniff_format(data)]) as image:
            width, height = image.size
            colour = image.mode in PIL_COLOUR_MODES
            return UploadShape(width, height, 1, _pil_bytes(image.mode), colour)
    except PROBE_ERRORS:
        return None


def _pil_bytes(mode: str) -> float:
    if mode.startswith("I;16"):
        return 2
    return PIL_BYTES_PER_PIXEL.get(mode, 4)


def _probe_tiff(data: bytes, parsed: tifffile.TiffFile | None) -> UploadShape:
    with tiff_from(data, parsed) as tiff:
        frames = max(1, tiff_frame_count(data, tiff))
        page = tiff.pages[0]
        width, height = int(page.imagewidth), int(page.imagelength)
        itemsize = np.dtype(page.dtype).itemsize if page.dtype is not None else 4
        if frames == 1:
            return UploadShape(width, height, 1, max(1, page.samplesperpixel) * itemsize)
        series = tiff.series[0]
        total = int(np.prod(series.shape)) * np.dtype(series.dtype).itemsize
    return UploadShape(width, height, frames, total / (frames * width * height))


def _probe_gif(data: bytes) -> UploadShape:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        return UploadShape(width, height, int(getattr(image, "n_frames", 1)), 1)


def _probe_video(data: bytes, max_voxels: int) -> UploadShape:
    import av  # only movie uploads pay for loading FFmpeg

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            frames = int(stream.frames or 0)
            if frames <= 0 and stream.duration and stream.average_rate:
                seconds = float(stream.duration * stream.time_base)
                frames = int(seconds * float(stream.average_rate)) + 1
    except av.error.FFmpegError:
        return None
    if width <= 0 or height <= 0:
        return None
    if frames <= 0:  # unknown: as many as the stack limit lets through
        frames = max(1, max_voxels // (width * height))
    return UploadShape(width, height, frames, 1)


def estimate_bytes(
    upload_bytes: int,
    shape: UploadShape | None,
    task: str,
    answer: str = "json",
    figures: bool = False,
) -> int:
    """Peak bytes a model run on this upload will hold: the request body (twice: werkzeug's
    buffer and the bytes read from it) plus its largest phase. `answer` is the download format
    (or json); `figures` adds the pages' figures."""
    body = 2 * upload_bytes
    if shape is None:  # unreadable headers: the decoder refuses it, after a small effort
        return body + 4 * upload_bytes + SLACK_BYTES
    pixels = shape.pixels
    signal = pixels * (2 if pixels > COMPACT_SIGNAL_PIXELS else 4)
    network = NETWORK_BYTES.get(task, NETWORK_BYTES["segmentation"])
    at_upload_size = SEGMENTATION_BYTES_PER_PIXEL * pixels if task == "segmentation" else 0
    extra = ANSWER_BYTES_PER_PIXEL.get(answer, ANSWER_BYTES_PER_PIXEL["zip"])
    if figures:
        extra += ANSWER_BYTES_PER_PIXEL["figures"]
    reads_labels = task == "segmentation" and (answer in READS_LABELS or figures)
    if reads_labels or (shape.frames > 1 and answer != "json" and task == "segmentation"):
        extra += LABELS_BYTES_PER_PIXEL
    if shape.frames <= 1:
        phases = (decode_bytes(shape), signal + network, signal + at_upload_size + extra * pixels)
        return int(body + max(phases) + SLACK_BYTES)
    frames = shape.frames
    held = STACK_COPIES * frames * pixels * shape.bytes_per_pixel
    one_frame = signal + max(network, at_upload_size)
    kept = 0.0 if answer == "json" else frames * (at_upload_size + extra * pixels)
    return int(body + held + one_frame + kept + SLACK_BYTES)


def decode_bytes(shape: UploadShape) -> float:
    """Peak bytes while one image is decoded into its signal (imaging.decode_image)."""
    pixels, source = shape.pixels, shape.bytes_per_pixel
    if pixels <= COMPACT_SIGNAL_PIXELS:  # read whole: the decoder's copy, numpy's, the signal
        return pixels * (2 * source + 4)
    if shape.pil_colour:  # the colour image, then one plane of it, then the float16 signal
        return pixels * max(source + 1, 1 + 2)
    return pixels * (source + 2)
