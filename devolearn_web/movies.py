"""Time-lapse movies (.mov, .mp4, .avi with PyAV; animated GIF with Pillow) as a FrameStack.

Why PyAV: its wheels bundle FFmpeg's decoders, so a git-push deploy needs no system ffmpeg, and
it demuxes from an in-memory BytesIO, so an upload never touches the disk (OpenCV would need a
temporary file and brings ~60 MB of GUI and codec code the server does not use; imageio-ffmpeg
pipes through a separate ffmpeg process). Frames are converted to one signal plane as they are
decoded (gray, the channel asked for, or the channel the first frame shows to carry the signal),
so a 389-frame movie costs its frames in uint8, never in float32.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageSequence

from devolearn_web.errors import BadImage, BadParameter, TooLarge
from devolearn_web.imaging import PIL_DECODE_ERRORS
from devolearn_web.signal import CHANNEL_NAMES, dominant_channel
from devolearn_web.stacks import DEFAULT_MAX_STACK_FRAMES, DEFAULT_MAX_STACK_VOXELS, FrameStack

MOVIE_FORMATS_SENTENCE = "Movies can be MP4, MOV, AVI or animated GIF."


def sniff_movie(data: bytes) -> str | None:
    """'MP4', 'MOV', 'AVI' or 'GIF' (animated only) from the magic bytes, else None."""
    if data[4:8] == b"ftyp":
        return "MOV" if data[8:10] == b"qt" else "MP4"
    if data[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "MOV"  # QuickTime files from older cameras start with an atom other than ftyp
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "AVI"
    if data[:6] in (b"GIF87a", b"GIF89a") and _gif_frame_count(data) > 1:
        return "GIF"
    return None


def decode_movie(
    data: bytes,
    max_pixels: int,
    max_frames: int = DEFAULT_MAX_STACK_FRAMES,
    max_voxels: int = DEFAULT_MAX_STACK_VOXELS,
    channel: int | None = None,
) -> FrameStack:
    """Every frame of a movie as uint8 signal planes in a FrameStack (kind 'movie')."""
    container = sniff_movie(data)
    if container is None:
        raise BadImage(f"The file is not a movie this server can read. {MOVIE_FORMATS_SENTENCE}")
    if container == "GIF":
        frames, times, note, channels = _decode_gif(
            data, max_pixels, max_frames, max_voxels, channel
        )
    else:
        frames, times, note, channels = _decode_video(
            data, container, max_pixels, max_frames, max_voxels, channel
        )
    if not frames:
        raise BadImage(f"The {container} file holds no video frames that could be decoded.")
    stack = np.stack(frames)
    notes = (f"{container} movie: {len(frames)} frames of {stack.shape[2]} x {stack.shape[1]}.",)
    if note:
        notes += (note,)
    positions = tuple(
        {"time": index, "seconds": round(seconds, 3)} for index, seconds in enumerate(times)
    )
    return FrameStack(
        kind="movie",
        data=stack,
        positions=positions,
        axes={
            "guessed": "TYX",
            "used": "TYX",
            "source": f"a {container} movie: every frame is a time point",
            "shape": [int(size) for size in stack.shape],
            "frames": len(frames),
            "slider": ["time"],
            **channels,
        },
        notes=notes,
        offset=0.0,
        scale=1.0 / 255,
        frame_times_s=tuple(times),
    )


def _decode_video(
    data: bytes,
    container_name: str,
    max_pixels: int,
    max_frames: int,
    max_voxels: int,
    channel: int | None,
) -> tuple[list[np.ndarray], list[float], str | None, dict]:
    import av  # imported here: only movie uploads pay for loading FFmpeg

    frames: list[np.ndarray] = []
    times: list[float] = []
    channel_choice: int | None = None
    note = None
    channels = {"channel": None, "channels": 1}
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise BadImage(f"The {container_name} file has no video track.")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads: decoding keeps up with the model
            for frame in container.decode(stream):
                if not frames:
                    _check_frame_size(frame.width, frame.height, max_pixels)
                    # Gray pixel formats have one channel; YUV, RGB and palettes decode to three.
                    count = 1 if frame.format.name.startswith(("gray", "ya")) else 3
                    channel_choice, note = _pick_channel(
                        frame.to_ndarray(format="rgb24"), count, channel
                    )
                    channels = {"channel": channel_choice, "channels": count}
                _check_budget(len(frames) + 1, frame.width * frame.height, max_frames, max_voxels)
                frames.append(_signal_plane(frame, channel_choice))
                seconds = frame.time if frame.time is not None else len(times) / 25
                times.append(float(seconds))
    except av.error.FFmpegError as error:
        raise BadImage(
            f"The {container_name} movie is truncated, damaged or uses a codec this server "
            f"cannot decode ({type(error).__name__})."
        ) from error
    return frames, times, note, channels


def _signal_plane(frame, channel: int | None) -> np.ndarray:
    """uint8 HxW: the chosen colour channel, or luminance (the decoder's own gray conversion)."""
    if channel is None:
        return np.ascontiguousarray(frame.to_ndarray(format="gray"))
    return np.ascontiguousarray(frame.to_ndarray(format="rgb24")[..., channel])


def _pick_channel(
    rgb: np.ndarray, count: int, channel: int | None
) -> tuple[int | None, str | None]:
    """The channel asked for (checked against the movie's `count`), else the one with signal."""
    if channel is None:
        return _choose_movie_channel(rgb) if count == 3 else (None, None)
    if channel >= count:
        names = "0" if count == 1 else "0 red, 1 green, 2 blue"
        raise BadParameter(
            f"Channel {channel} does not exist: this movie has {count} channel(s) ({names})."
        )
    return (channel if count == 3 else None), None


def _choose_movie_channel(rgb: np.ndarray) -> tuple[int | None, str | None]:
    """The channel index that clearly carries the signal in the first frame (the one rule of
    devolearn_web.signal), or None (gray)."""
    spreads = rgb.reshape(-1, 3)[:: max(1, rgb.size // 3_000_000)].astype(np.float32).std(axis=0)
    index = dominant_channel(spreads)
    if index is not None:
        return (
            index,
            f"Colour movie: the {CHANNEL_NAMES[index]} channel carries the signal and was used.",
        )
    return None, None


def _decode_gif(
    data: bytes, max_pixels: int, max_frames: int, max_voxels: int, channel: int | None
) -> tuple[list[np.ndarray], list[float], str | None, dict]:
    frames: list[np.ndarray] = []
    times: list[float] = []
    channel_choice: int | None = None
    note = None
    elapsed_ms = 0.0
    try:
        with Image.open(io.BytesIO(data), formats=["GIF"]) as image:
            _check_frame_size(image.width, image.height, max_pixels)
            for frame in ImageSequence.Iterator(image):
                _check_budget(len(frames) + 1, image.width * image.height, max_frames, max_voxels)
                rgb = np.asarray(frame.convert("RGB"))
                if not frames:
                    # GIF frames are palette colours: three channels, whatever they show.
                    channel_choice, note = _pick_channel(rgb, 3, channel)
                if channel_choice is None:
                    plane = np.asarray(frame.convert("L"))
                else:
                    plane = rgb[..., channel_choice]
                frames.append(np.ascontiguousarray(plane))
                times.append(elapsed_ms / 1000)
                elapsed_ms += float(frame.info.get("duration", 100) or 100)
    except PIL_DECODE_ERRORS as error:
        raise BadImage("The animated GIF is truncated or damaged.") from error
    return frames, times, note, {"channel": channel_choice, "channels": 3}


def _gif_frame_count(data: bytes) -> int:
    try:
        with Image.open(io.BytesIO(data), formats=["GIF"]) as image:
            return int(getattr(image, "n_frames", 1))
    except PIL_DECODE_ERRORS:
        return 1


def _check_frame_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise BadImage(f"The movie's frames have an impossible size ({width} x {height}).")
    if width * height > max_pixels:
        raise TooLarge(
            f"The movie's frames are {width} x {height} pixels; this server analyses frames of "
            f"up to {max_pixels / 1e6:g} megapixels."
        )


def _check_budget(frames: int, frame_pixels: int, max_frames: int, max_voxels: int) -> None:
    if frames > max_frames:
        raise TooLarge(
            f"The movie has more than {max_frames} frames, the most this server analyses."
        )
    if frames * frame_pixels > max_voxels:
        raise TooLarge(
            f"The movie holds more than {max_voxels / 1e6:g} million pixels in all "
            f"(frames x width x height), the most this server analyses at once."
        )
