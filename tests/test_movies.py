"""Time-lapse movies (MP4, MOV, AVI with PyAV; animated GIF with Pillow) answered frame by frame."""

from __future__ import annotations

import io

import numpy as np
import pytest

from devolearn_web.errors import BadImage, BadParameter, TooLarge
from devolearn_web.movies import decode_movie, sniff_movie

av = pytest.importorskip("av", reason="PyAV (requirements.txt) decodes the movies")

FRAMES, HEIGHT, WIDTH = 6, 64, 96
CONTAINERS = [("mp4", "mpeg4", "MP4"), ("mov", "mpeg4", "MOV"), ("avi", "mpeg4", "AVI")]


def growing_disks(index: int) -> np.ndarray:
    """uint8 HxW: frame `index` shows a disk whose radius grows with time."""
    rows, cols = np.mgrid[:HEIGHT, :WIDTH]
    radius = 6 + 3 * index
    return np.where((cols - 48) ** 2 + (rows - 32) ** 2 <= radius**2, 220, 10).astype(np.uint8)


def encode_movie(container: str, codec: str, colour: bool = False) -> bytes:
    """A gray movie of growing disks, or (colour) the disks in green over a flat red."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as output:
        stream = output.add_stream(codec, rate=5)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(FRAMES):
            rgb = np.repeat(growing_disks(index)[..., None], 3, axis=2)
            if colour:
                rgb[..., 0], rgb[..., 2] = 120, 0
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()


def encode_gif(colour: bool = False) -> bytes:
    from PIL import Image

    planes = [growing_disks(index) for index in range(FRAMES)]
    if colour:
        planes = [
            np.stack([np.full_like(plane, 120), plane, plane * 0], axis=2) for plane in planes
        ]
    frames = [Image.fromarray(plane) for plane in planes]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=200)
    return buffer.getvalue()


@pytest.mark.parametrize("container, codec, name", CONTAINERS)
def test_video_containers_decode_every_frame(container, codec, name):
    data = encode_movie(container, codec)
    assert sniff_movie(data) == name
    stack = decode_movie(data, max_pixels=1_000_000)
    assert stack.kind == "movie" and stack.count == FRAMES
    assert (stack.height, stack.width) == (HEIGHT, WIDTH)
    bright = [float((stack.pixels(i) > 0.5).mean()) for i in range(FRAMES)]
    assert bright == sorted(bright) and bright[-1] > 2 * bright[0]  # the disk grows in order
    assert stack.frame_times_s == tuple(sorted(stack.frame_times_s))


def test_animated_gif_decodes_with_its_frame_times():
    stack = decode_movie(encode_gif(), max_pixels=1_000_000)
    assert stack.count == FRAMES
    assert stack.positions[1] == {"time": 1, "seconds": 0.2}
    assert abs(float(stack.pixels(0)[32, 48]) - 220 / 255) < 0.02


@pytest.mark.parametrize(
    "encode",
    [lambda: encode_movie("mp4", "mpeg4", colour=True), lambda: encode_gif(colour=True)],
    ids=["mp4", "gif"],
)
def test_colour_movie_reports_its_channels_and_honours_the_one_asked_for(encode):
    data = encode()
    chosen = decode_movie(data, max_pixels=1_000_000)
    assert (chosen.axes["channel"], chosen.axes["channels"]) == (1, 3)  # green carries the disks
    assert abs(float(chosen.pixels(0)[32, 48]) - 220 / 255) < 0.05
    red = decode_movie(data, max_pixels=1_000_000, channel=0)
    assert (red.axes["channel"], red.axes["channels"]) == (0, 3)
    assert abs(float(red.pixels(0)[32, 48]) - 120 / 255) < 0.05
    with pytest.raises(BadParameter, match="Channel 3 does not exist"):
        decode_movie(data, max_pixels=1_000_000, channel=3)


def test_movie_limits_are_checked_while_decoding():
    data = encode_movie("mp4", "mpeg4")
    with pytest.raises(TooLarge, match="frames"):
        decode_movie(data, max_pixels=1_000_000, max_frames=3)
    with pytest.raises(TooLarge, match="megapixels"):
        decode_movie(data, max_pixels=1000)


def test_damaged_movie_is_a_bad_image():
    data = encode_movie("mp4", "mpeg4")
    with pytest.raises(BadImage):
        decode_movie(data[: len(data) // 3], max_pixels=1_000_000)


@pytest.mark.parametrize("container, codec, name", CONTAINERS[:1])
def test_nucleus_movie_counts_per_frame_through_the_api(client, container, codec, name):
    data = encode_movie(container, codec)
    response = client.post(
        "/api/v1/predict/nucleus", data={"file": (io.BytesIO(data), f"embryo.{container}")}
    )
    answer = response.get_json()
    assert response.status_code == 200, answer
    assert answer["kind"] == "movie" and answer["axes"]["used"] == "TYX"
    assert answer["count_per_frame"] == [1] * FRAMES
    areas = [frame["objects"][0]["area"] for frame in answer["frames"]]
    assert areas == sorted(areas)


def test_a_channel_a_movie_lacks_is_a_400_through_the_api(client):
    response = client.post(
        "/api/v1/predict/nucleus",
        data={"file": (io.BytesIO(encode_movie("mp4", "mpeg4")), "e.mp4"), "channel": "5"},
    )
    assert response.status_code == 400
    assert "Channel 5 does not exist" in response.get_json()["error"]


def test_lineage_movie_gives_populations_for_every_frame(client):
    response = client.post(
        "/api/v1/predict/lineage", data={"file": (io.BytesIO(encode_gif()), "embryo.gif")}
    )
    answer = response.get_json()
    assert answer["kind"] == "movie" and len(answer["frames"]) == FRAMES
    assert len(answer["populations_per_frame"]["A"]) == FRAMES
