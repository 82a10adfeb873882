"""Image and label-map helpers for training: scaling, resizing, lossless PNG in and out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from devolearn_web import imaging, signal

GREEN = 1


def signal_channel(image: np.ndarray, channel: int | None = None) -> np.ndarray:
    """The grayscale signal of an image, by the app's one rule (devolearn_web.signal): HxW as
    is; HxWxC by `channel`, else the channel that clearly carries the signal, else luminance.

    A chosen channel keeps the file's dtype; luminance is float32, in 0..1 for 8/16-bit images
    (so scale_by_dtype keeps it as it is, as the app does)."""
    # Colour microscopy frames carry the signal in one channel and speckle in the others, so
    # averaging or taking the maximum over channels would mix noise in.
    if image.ndim == 2:
        return image
    colour = image[..., :3] if image.shape[-1] >= 3 else image[..., :1]
    if channel is not None or colour.shape[-1] == 1:
        return colour[..., channel or 0]
    step = signal.sample_step(colour.shape[0], colour.shape[1])
    bright = signal.full_scale(colour.dtype)
    # In 0..1 units (float or 32-bit colour: all channels scaled together, as the app does).
    sample = scale_by_dtype(colour[::step, ::step])
    if signal.channels_identical(sample):
        return colour[..., 0]
    chosen = signal.dominant_channel(sample.reshape(-1, 3).std(axis=0))
    if chosen is not None:
        return colour[..., chosen]
    luminance = colour.astype(np.float32) @ signal.LUMINANCE_WEIGHTS
    return luminance / np.float32(bright) if bright is not None else luminance


def scale_by_dtype(image: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] by the app's one rule (devolearn_web.signal.unit_scaling): 8-bit / 255,
    16-bit / 65535, float already in [0, 1] as is, anything else by its own min..max."""
    bright = signal.full_scale(image.dtype)
    if bright is not None:
        return image.astype(np.float32) / np.float32(bright)
    values = image.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(image.shape, dtype=np.float32)
    low, high = float(values[finite].min()), float(values[finite].max())
    scaling = signal.unit_scaling(image.dtype, low, high)
    values = np.where(finite, values, low)
    return ((values - scaling.offset) * scaling.scale).astype(np.float32)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize float32 HxW to size x size smoothly, exactly as the app does (PIL bilinear)."""
    return imaging.resize_image(image.astype(np.float32), (size, size))


def network_image(image: np.ndarray, size: int) -> np.ndarray:
    """What the app feeds a network from a grayscale image (any dtype, HxW): float32 [0, 1]."""
    # The app's own order and functions: scale by bit depth, resize, then the robust
    # percentile stretch, so training images look exactly like served ones.
    return imaging.normalise_for_model(resize_image(scale_by_dtype(image), size))


def lineage_network_image(image: np.ndarray, size: int) -> np.ndarray | None:
    """What the app feeds the lineage network from a grayscale frame (any dtype, HxW): the
    embryo cut out at its training framing, float32 [0, 1]; None when no single embryo shows."""
    from devolearn_web.embryo import embryo_centred_view, find_embryo
    from devolearn_web.training.specs import MODEL_SPECS

    pixels = scale_by_dtype(image)
    region = find_embryo(pixels).region
    if region is None:
        return None
    fill = MODEL_SPECS["lineage"].framing["embryo_fill"]
    view = embryo_centred_view(pixels, region, (fill["length"], fill["width"]), (size, size))
    return imaging.normalise_for_model(view)


def resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """Resize an instance label map (int HxW) to size x size by nearest neighbour: int32."""
    if labels.max() > np.iinfo(np.int32).max:
        raise ValueError("label values must fit in int32")
    resized = Image.fromarray(labels.astype(np.int32)).resize(
        (size, size), Image.Resampling.NEAREST
    )
    return np.asarray(resized, dtype=np.int32)


def separate_touching_labels(labels: np.ndarray) -> np.ndarray:
    """Set to 0 one pixel of every 4-adjacent pair holding two different objects (int HxW)."""
    # Resizing can close the thin gaps between neighbouring objects; without a gap two cells
    # (or nuclei) merge into one connected component and the count drops.
    out = labels.copy()
    both = (labels[:, :-1] > 0) & (labels[:, 1:] > 0)
    horizontal = both & (labels[:, :-1] != labels[:, 1:])
    both = (labels[:-1, :] > 0) & (labels[1:, :] > 0)
    vertical = both & (labels[:-1, :] != labels[1:, :])
    out[:, :-1][horizontal] = 0
    out[:-1, :][vertical] = 0
    return out


def write_image_png(path: Path, unit_image: np.ndarray) -> None:
    """Write a float [0, 1] image (HxW) as an 8-bit grayscale PNG (lossless)."""
    pixels = np.rint(np.clip(unit_image, 0.0, 1.0) * 255.0).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")


def write_labels_png(path: Path, labels: np.ndarray) -> None:
    """Write an instance label map (int HxW, values < 65536) as a 16-bit PNG (lossless)."""
    if labels.min() < 0 or labels.max() > np.iinfo(np.uint16).max:
        raise ValueError("a 16-bit label PNG holds labels 0..65535 only")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint16)).save(path, format="PNG")


def read_gray(path: Path, channel: int | None = None) -> np.ndarray:
    """Read an image file as its grayscale signal (HxW: the file's own dtype, or float32
    luminance when no channel carries the signal; signal_channel)."""
    with Image.open(path) as image:
        pixels = np.asarray(image)
    return signal_channel(pixels, channel)


def read_unit_image(path: Path) -> np.ndarray:
    """Read an 8-bit grayscale PNG written by `write_image_png` as float32 [0, 1] (HxW)."""
    return read_gray(path).astype(np.float32) / 255.0


def read_labels(path: Path) -> np.ndarray:
    """Read a label PNG or TIFF as int32 (HxW)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path)).astype(np.int32)
    with Image.open(path) as image:
        return np.asarray(image).astype(np.int32)
