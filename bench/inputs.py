"""The benchmark's inputs, made in memory: 708x512 images, a 389-frame movie, a 35-slice stack.

The real sample images (../shared/samples) are used when present, resized to the nucleus data's
frame size, so the nucleus watershed has a realistic number of nuclei to split; without them a
synthetic embryo of bright disks stands in.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

FRAME_SHAPE = (512, 708)  # (height, width): a Fluo-N3DH-CE slice
MOVIE_FRAMES = 389
STACK_SLICES = 35
DEFAULT_SAMPLES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "samples"
MOVIE_FRAMES_PER_SECOND = 10


def _resized_channel(path: Path, channel: str | None, shape: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as image:
        plane = image.getchannel(channel) if channel else image.convert("L")
        return np.asarray(plane.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def synthetic_embryo(shape: tuple[int, int] = FRAME_SHAPE, nuclei: int = 90, seed: int = 0):
    """uint8 HxW: bright round nuclei of varied brightness inside an elliptical embryo."""
    rng = np.random.default_rng(seed)
    height, width = shape
    rows, cols = np.mgrid[:height, :width].astype(np.float32)
    image = np.zeros(shape, dtype=np.float32)
    radius = 0.035 * min(height, width) + 4
    for _ in range(nuclei):
        angle, spread = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 0.8))
        y = height / 2 + spread * 0.38 * height * np.sin(angle)
        x = width / 2 + spread * 0.42 * width * np.cos(angle)
        inside = (rows - y) ** 2 + (cols - x) ** 2 <= radius**2
        image[inside] = np.maximum(image[inside], rng.uniform(0.5, 1.0))
    noise = rng.normal(0.0, 0.03, shape).astype(np.float32)
    return np.clip((image + noise) * 255, 0, 255).astype(np.uint8)


def embryo_plane(samples_dir: Path = DEFAULT_SAMPLES_DIR, shape=FRAME_SHAPE) -> np.ndarray:
    """uint8 HxW nuclei image: the real embryo sample's green channel, or a synthetic one."""
    path = samples_dir / "embryo_sample.png"
    return _resized_channel(path, "G", shape) if path.exists() else synthetic_embryo(shape)


def membrane_plane(samples_dir: Path = DEFAULT_SAMPLES_DIR, shape=FRAME_SHAPE) -> np.ndarray:
    """uint8 HxW membrane slice: the real seg_sample.jpg, or the synthetic embryo inverted."""
    path = samples_dir / "seg_sample.jpg"
    return _resized_channel(path, None, shape) if path.exists() else 255 - synthetic_embryo(shape)


def png_bytes(plane: np.ndarray) -> bytes:
    """8-bit grayscale PNG bytes of a uint8 HxW array."""
    buffer = io.BytesIO()
    Image.fromarray(plane, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def model_upload(model: str, samples_dir: Path = DEFAULT_SAMPLES_DIR) -> bytes:
    """The 708x512 PNG the benchmark sends to a model."""
    plane = membrane_plane(samples_dir) if model == "membrane" else embryo_plane(samples_dir)
    return png_bytes(plane)


def drifting_frames(plane: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, H, W): the plane drifting a few pixels with fresh noise in every frame."""
    rng = np.random.default_rng(seed)
    frames = np.empty((count, *plane.shape), dtype=np.uint8)
    for index in range(count):
        shift = (int(3 * np.sin(index / 20)), int(3 * np.cos(index / 25)))
        noise = rng.normal(0, 4, plane.shape)
        frames[index] = np.clip(np.roll(plane, shift, axis=(0, 1)) + noise, 0, 255)
    return frames


def movie_bytes(frames: np.ndarray) -> bytes:
    """An MP4 (H.264 when the PyAV build has it, else MPEG-4 part 2) of uint8 (T, H, W) frames."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=MOVIE_FRAMES_PER_SECOND)
        stream.height, stream.width = frames.shape[1:]
        stream.pix_fmt = "yuv420p"
        for plane in frames:
            frame = av.VideoFrame.from_ndarray(plane, format="gray")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def stack_tiff_bytes(plane: np.ndarray, slices: int = STACK_SLICES) -> bytes:
    """A 16-bit multi-page TIFF z-stack (Z, H, W), dimmer and blurrier away from the middle."""
    import tifffile
    from scipy import ndimage as ndi

    stack = np.empty((slices, *plane.shape), dtype=np.uint16)
    for index in range(slices):
        depth = abs(index - slices / 2) / (slices / 2)
        blurred = ndi.gaussian_filter(plane.astype(np.float32), sigma=0.5 + 2.5 * depth)
        stack[index] = np.clip(blurred * (1.0 - 0.6 * depth) * 16, 0, 4095).astype(np.uint16)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, stack)
    return buffer.getvalue()


def tiled_sample_png(samples_dir: Path = DEFAULT_SAMPLES_DIR, tiles: int = 14) -> bytes:
    """The real embryo sample (RGBA, 585x315) tiled tiles x tiles (14: 36 megapixels) as a PNG:
    the worst case the memory budget is sized for; a synthetic embryo when it is absent."""
    path = samples_dir / "embryo_sample.png"
    if path.exists():
        with Image.open(path) as image:
            tile = np.asarray(image)
        big = np.tile(tile, (tiles, tiles, 1))
    else:
        big = np.tile(synthetic_embryo((315, 585)), (tiles, tiles))
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
