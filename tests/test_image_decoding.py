"""Decoding uploads: every PIL mode and bit depth, colour channels, pages, magic-byte formats."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from devolearn_web.errors import BadImage, BadParameter, TooLarge, UnsupportedType
from devolearn_web.imaging import (
    decode_image,
    encode_gray_png,
    normalise_for_model,
    probability_to_png,
    resize_image,
    sniff_format,
    to_display_png,
)

RAMP = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))  # 16 x 64, 0..252


def encoded(image: Image.Image, image_format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def test_grayscale_8bit_is_scaled_by_255(image_maker):
    decoded = decode_image(image_maker.encode(RAMP))
    assert decoded.mode == "L"
    assert decoded.pixels.dtype == np.float32
    assert (decoded.width, decoded.height) == (64, 16)
    np.testing.assert_allclose(decoded.pixels, RAMP / 255, atol=1e-6)
    assert decoded.notes == ()


def test_bilevel_mode_1_becomes_zero_and_one():
    bits = np.zeros((8, 8), dtype=bool)
    bits[2:5, 3:6] = True
    decoded = decode_image(encoded(Image.fromarray(bits)))
    assert decoded.mode == "1"
    np.testing.assert_array_equal(decoded.pixels, bits.astype(np.float32))


@pytest.mark.parametrize("image_format", ["PNG", "TIFF"])
def test_16bit_grayscale_is_divided_by_65535_not_wrapped(image_format):
    values = np.array([[0, 255, 256, 4095], [40000, 65535, 1000, 30000]], dtype=np.uint16)
    decoded = decode_image(encoded(Image.fromarray(values), image_format))
    assert decoded.mode == "I;16"
    np.testing.assert_allclose(decoded.pixels, values / 65535, rtol=1e-6)
    # 256 wraps to 0 and 40000 to 64 in 8 bits: ordering must survive
    assert decoded.pixels[0, 2] > decoded.pixels[0, 1]
    assert decoded.pixels[1, 0] > decoded.pixels[0, 3]


def test_16bit_big_endian_tiff_reads_the_same_values():
    values = np.array([[1, 300], [40000, 65535]], dtype=np.uint16)
    image = Image.frombytes("I;16B", (2, 2), values.astype(">u2").tobytes())
    decoded = decode_image(encoded(image, "TIFF"))
    np.testing.assert_allclose(decoded.pixels, values / 65535, rtol=1e-6)


def test_16bit_lzw_tiff_is_decoded_without_extra_codecs():
    values = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 60).astype(np.uint16)
    decoded = decode_image(encoded(Image.fromarray(values), "TIFF", compression="tiff_lzw"))
    np.testing.assert_allclose(decoded.pixels, values / 65535, rtol=1e-6)


@pytest.mark.parametrize(
    ("array", "mode"),
    [
        (np.array([[-5, 0], [10, 15]], dtype=np.int32), "I"),
        (np.array([[-2.5, 0.0], [1.0, 7.5]], dtype=np.float32), "F"),
    ],
)
def test_32bit_integer_and_float_are_scaled_by_their_own_range(image_maker, array, mode):
    decoded = decode_image(image_maker.tiff(array))
    assert decoded.mode == mode
    expected = (array - array.min()) / (array.max() - array.min())
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-6)
    assert any("own range" in note for note in decoded.notes)


def test_pil_mode_I_and_F_tiffs_decode(image_maker):
    for array in (np.array([[0, 100], [200, 400]], dtype=np.int32), np.eye(2, dtype=np.float32)):
        decoded = decode_image(encoded(Image.fromarray(array), "TIFF"))
        assert decoded.pixels.max() == pytest.approx(1.0)
        assert decoded.pixels.min() == pytest.approx(0.0)


def test_float_with_nan_uses_the_finite_range(image_maker):
    array = np.array([[np.nan, 1.0], [2.0, 3.0]], dtype=np.float32)
    decoded = decode_image(image_maker.tiff(array))
    assert np.isfinite(decoded.pixels).all()
    assert decoded.pixels[1, 1] == pytest.approx(1.0)


def embryo_like_rgba() -> np.ndarray:
    """Like embryo_sample.png: nuclei in green, faint speckle in red and blue, opaque alpha."""
    rng = np.random.default_rng(0)
    rgba = np.zeros((60, 80, 4), dtype=np.uint8)
    rows, cols = np.mgrid[:60, :80]
    for x, y in [(20, 20), (50, 30), (30, 45)]:
        rgba[..., 1][(cols - x) ** 2 + (rows - y) ** 2 < 64] = 200
    # The sample's red and blue: mostly 0..5 with rare specks up to ~100.
    rgba[..., 0][rng.random((60, 80)) < 0.03] = 60
    rgba[..., 2][rng.random((60, 80)) < 0.03] = 70
    rgba[..., 0][0, 0] = 100
    rgba[..., 3] = 255
    return rgba


def test_rgba_fluorescence_uses_the_green_channel(image_maker):
    rgba = embryo_like_rgba()
    decoded = decode_image(image_maker.encode(rgba))
    assert decoded.mode == "RGBA"
    np.testing.assert_allclose(decoded.pixels, rgba[..., 1] / 255, atol=1e-6)
    assert "green channel carries the signal" in " ".join(decoded.notes)


def test_red_signal_is_chosen_when_red_dominates(image_maker):
    rgb = np.zeros((20, 20, 3), dtype=np.uint8)
    rgb[5:15, 5:15, 0] = 180
    rgb[0, 0, 2] = 30
    decoded = decode_image(image_maker.encode(rgb))
    np.testing.assert_allclose(decoded.pixels, rgb[..., 0] / 255, atol=1e-6)
    assert "red channel" in decoded.notes[-1]


@pytest.mark.parametrize("bits", [8, 16])
def test_a_channel_asked_for_replaces_the_automatic_choice(image_maker, bits):
    rgba = embryo_like_rgba()  # the green channel carries the signal
    if bits == 16:
        data = image_maker.tiff(rgba[..., :3].astype(np.uint16) * 257, photometric="rgb")
    else:
        data = image_maker.encode(rgba)
    decoded = decode_image(data, channel=0)
    np.testing.assert_allclose(decoded.pixels, rgba[..., 0] / 255, atol=1e-6)
    assert decoded.notes[-1] == "Colour image: the red channel (0) was used, as asked."


@pytest.mark.parametrize(
    ("array", "channel", "words"),
    [
        (RAMP, 1, "this image has 1 channel(s) (0)"),
        (np.stack([RAMP, RAMP], axis=-1), 1, "this image has 1 channel(s) (0)"),  # gray + alpha
        (np.stack([RAMP] * 4, axis=-1), 3, "3 channel(s) (0 red, 1 green, 2 blue)"),  # not alpha
    ],
)
def test_a_channel_the_image_lacks_is_refused(image_maker, array, channel, words):
    data = image_maker.encode(array)
    np.testing.assert_array_equal(decode_image(data, channel=0).pixels, decode_image(data).pixels)
    with pytest.raises(
        BadParameter, match=f"Channel {channel} does not exist: .*{re.escape(words)}"
    ):
        decode_image(data, channel=channel)


def test_colour_without_a_dominant_channel_uses_luminance_not_the_maximum(image_maker):
    rgb = np.zeros((10, 10, 3), dtype=np.uint8)
    rgb[:5, :, 0] = 200  # a red half and a green half: no single signal channel
    rgb[5:, :, 1] = 200
    decoded = decode_image(image_maker.encode(rgb))
    luminance = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255
    np.testing.assert_allclose(decoded.pixels, luminance, atol=1e-5)
    assert "luminance" in decoded.notes[-1]
    assert decoded.pixels.max() < 200 / 255  # the maximum over channels would give 200/255


def test_gray_stored_as_rgb_is_read_as_grayscale(image_maker):
    rgb = np.repeat(RAMP[..., None], 3, axis=2)
    decoded = decode_image(image_maker.encode(rgb))
    np.testing.assert_allclose(decoded.pixels, RAMP / 255, atol=1e-6)
    assert "identical" in decoded.notes[-1]


def test_gray_with_alpha_ignores_alpha(image_maker):
    la = np.stack([RAMP, np.full_like(RAMP, 7)], axis=-1)
    decoded = decode_image(image_maker.encode(la, mode="LA"))
    assert decoded.mode == "LA"
    np.testing.assert_allclose(decoded.pixels, RAMP / 255, atol=1e-6)


def test_palette_image_is_looked_up(image_maker):
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[4:12, 4:12, 1] = 240
    palette_image = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    decoded = decode_image(encoded(palette_image))
    assert decoded.mode == "P"
    assert decoded.pixels[8, 8] == pytest.approx(240 / 255, abs=2 / 255)
    assert decoded.pixels[0, 0] == pytest.approx(0.0, abs=2 / 255)


@pytest.mark.parametrize("image_format", ["JPEG", "TIFF"])
def test_cmyk_goes_through_rgb(image_format):
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    rgb[4:12, 4:12, 1] = 220
    cmyk = Image.fromarray(rgb).convert("CMYK")
    decoded = decode_image(encoded(cmyk, image_format))
    assert decoded.mode == "CMYK"
    assert decoded.pixels[8, 8] > 0.7
    assert decoded.pixels[0, 0] < 0.1
    assert any("CMYK" in note for note in decoded.notes)


@pytest.mark.parametrize("image_format", ["JPEG", "BMP", "GIF", "TIFF"])
def test_accepted_formats_decode_to_the_same_picture(image_maker, image_format):
    decoded = decode_image(image_maker.encode(RAMP, image_format))
    assert decoded.pixels.shape == RAMP.shape
    np.testing.assert_allclose(decoded.pixels, RAMP / 255, atol=6 / 255)  # JPEG is lossy


@pytest.mark.parametrize("image_format", ["JPEG", "PNG"])
def test_exif_orientation_is_applied_as_viewers_show_it(image_format):
    image = Image.fromarray(RAMP)  # 64 wide, 16 high, dark on the left
    exif = image.getexif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to view": a phone held upright
    decoded = decode_image(encoded(image, image_format, exif=exif.tobytes()))
    assert (decoded.width, decoded.height) == (16, 64)
    np.testing.assert_allclose(decoded.pixels, np.rot90(RAMP, -1) / 255, atol=6 / 255)
    assert any("EXIF orientation" in note for note in decoded.notes)


def test_a_movie_format_we_cannot_read_names_the_ones_we_can():
    with pytest.raises(UnsupportedType) as caught:
        sniff_format(b"\x1aE\xdf\xa3" + bytes(60), "embryo.mkv")  # Matroska / WebM
    assert "MP4, MOV, AVI" in caught.value.message
    assert "cannot read movies" not in caught.value.message


def test_multi_page_tiff_uses_the_first_page_and_says_so(image_maker):
    stack = np.stack([np.full((8, 10), value, dtype=np.uint16) for value in (1000, 2000, 3000)])
    decoded = decode_image(image_maker.tiff(stack, photometric="minisblack"))
    assert (decoded.height, decoded.width) == (8, 10)
    np.testing.assert_allclose(decoded.pixels, 1000 / 65535, rtol=1e-6)
    assert "only the first of 3 pages" in " ".join(decoded.notes)


def test_rgb_tiff_written_planar_is_read_channels_last(image_maker):
    planes = np.zeros((3, 12, 14), dtype=np.uint8)
    planes[1, 3:9, 3:9] = 200
    decoded = decode_image(image_maker.tiff(planes, photometric="rgb", planarconfig="separate"))
    assert (decoded.height, decoded.width) == (12, 14)
    assert decoded.pixels[5, 5] == pytest.approx(200 / 255)


def test_animated_gif_uses_the_first_frame_and_says_so():
    frames = [Image.fromarray(np.full((6, 6), value, dtype=np.uint8)) for value in (10, 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(buffer.getvalue())
    assert decoded.pixels.mean() == pytest.approx(10 / 255, abs=2 / 255)
    assert "2 frames" in " ".join(decoded.notes)


def test_format_is_sniffed_from_bytes_not_the_filename(image_maker):
    assert sniff_format(image_maker.encode(RAMP, "PNG"), "picture.jpg") == "PNG"
    with pytest.raises(UnsupportedType, match="text file"):
        sniff_format(b"hello, I am not an image", "picture.png")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
        (b"<!DOCTYPE html><html></html>", "HTML"),
        (b"%PDF-1.7 ...", "PDF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WebP"),
    ],
)
def test_unsupported_types_are_named_with_the_accepted_formats(data, words):
    with pytest.raises(UnsupportedType) as caught:
        decode_image(data)
    assert words in caught.value.message
    assert "PNG, JPEG, TIFF" in caught.value.message


def test_pixel_limit_is_checked_before_decoding(image_maker):
    with pytest.raises(TooLarge, match="megapixels"):
        decode_image(image_maker.encode(RAMP), max_pixels=100)


def test_empty_and_truncated_files_are_bad_images(image_maker):
    with pytest.raises(BadImage, match="empty"):
        decode_image(b"")
    png = image_maker.encode(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8))
    with pytest.raises(BadImage):
        decode_image(png[: len(png) // 2])


def test_normalise_for_model_stretches_dim_and_bright_images_alike():
    rng = np.random.default_rng(2)
    scene = rng.random((64, 64)).astype(np.float32)
    dim = scene * (4095 / 65535)  # a 12-bit camera in a 16-bit file
    bright = scene
    np.testing.assert_allclose(normalise_for_model(dim), normalise_for_model(bright), atol=1e-5)
    normalised = normalise_for_model(bright)
    assert normalised.dtype == np.float32
    assert normalised.min() == 0.0 and normalised.max() == 1.0


def test_normalise_for_model_keeps_sparse_signal_and_blank_images():
    sparse = np.zeros((100, 100), dtype=np.float32)
    sparse[0, 0] = 0.3  # one bright pixel: above the 99.8th percentile
    assert normalise_for_model(sparse)[0, 0] == 1.0
    assert not normalise_for_model(np.full((5, 5), 0.4, dtype=np.float32)).any()


@settings(max_examples=25, deadline=None, database=None)
@given(arrays(np.uint16, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_any_16bit_png_round_trips_exactly(values):
    decoded = decode_image(encoded(Image.fromarray(values)))
    np.testing.assert_allclose(decoded.pixels * 65535, values, atol=0.02)


def test_resize_image_is_smooth_and_sized():
    image = np.zeros((40, 60), dtype=np.float32)
    image[:, 30:] = 1.0
    resized = resize_image(image, (20, 30))
    assert resized.shape == (20, 30) and resized.dtype == np.float32
    assert 0.0 < resized[10, 15] < 1.0 or 0.0 < resized[10, 14] < 1.0  # an edge, not a jump


def test_display_and_probability_pngs_are_8bit_grayscale():
    pixels = np.linspace(0, 0.01, 100, dtype=np.float32).reshape(10, 10)
    shown = Image.open(io.BytesIO(to_display_png(pixels)))
    assert shown.mode == "L" and shown.size == (10, 10)
    assert np.asarray(shown).max() == 255  # dim input stretched for display
    probability = Image.open(io.BytesIO(probability_to_png(pixels)))
    assert np.asarray(probability).max() == 3  # probabilities are not stretched


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (512, 708)])
def test_gray_png_round_trips_through_pillow(shape):
    gray = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    gray[0, 0], gray[-1, -1] = 0, 255  # "up" differences that wrap around modulo 256
    decoded = Image.open(io.BytesIO(encode_gray_png(gray)))
    decoded.load()  # checks the zlib stream and the chunk CRCs
    assert decoded.mode == "L" and decoded.size == (shape[1], shape[0])
    np.testing.assert_array_equal(np.asarray(decoded), gray)


@pytest.mark.parametrize("with_alpha", [True, False])
def test_indexed_png_round_trips_through_pillow(with_alpha):
    from devolearn_web.imaging import encode_indexed_png

    rng = np.random.default_rng(3)
    indices = rng.integers(0, 4, size=(37, 53)).astype(np.uint8)
    palette = np.array([(0, 0, 0), (230, 159, 0), (86, 180, 233), (255, 255, 255)], np.uint8)
    alpha = [0, 105, 255, 255] if with_alpha else None
    image = Image.open(io.BytesIO(encode_indexed_png(indices, palette, alpha)))
    assert image.mode == "P" and image.size == (53, 37)
    np.testing.assert_array_equal(np.asarray(image), indices)
    rgba = np.asarray(image.convert("RGBA"))
    np.testing.assert_array_equal(rgba[..., :3], palette[indices])
    expected_alpha = np.array(alpha if with_alpha else [255] * 4, np.uint8)[indices]
    np.testing.assert_array_equal(rgba[..., 3], expected_alpha)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_tiff_is_refused_not_read_as_its_real_part(image_maker, dtype):
    # A Fourier transform saved as TIFF: its real part alone would be a meaningless picture.
    data = image_maker.tiff(np.ones((20, 20), dtype))
    with pytest.raises(UnsupportedType, match="complex numbers"):
        decode_image(data, "fft.tif")


def test_float_tiff_with_a_signalling_nan_is_read_quietly(image_maker):
    # A fuzz find: widening a signalling NaN to float64 warns; the NaN is skipped all the same.
    array = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    array.view(np.uint32)[0, 0] = 0x7F800001  # a signalling NaN
    decoded = decode_image(image_maker.tiff(array), "nan.tif")
    assert np.isfinite(decoded.pixels).all() and decoded.pixels.max() == 1.0


def test_a_damaged_compressed_tiff_is_a_bad_image_not_a_crash():
    # Where imagecodecs is installed, tifffile decodes LZW with it, and its codecs raise their
    # own RuntimeError subclasses on damaged data.
    pytest.importorskip("imagecodecs", reason="tifffile writes LZW only with imagecodecs")
    import tifffile

    from devolearn_web.imaging import decode_image

    buffer = io.BytesIO()
    pixels = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    tifffile.imwrite(buffer, pixels, compression="lzw")
    data = bytearray(buffer.getvalue())
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tiff:
        start, length = tiff.pages[0].dataoffsets[0], tiff.pages[0].databytecounts[0]
    data[start : start + length] = b"\xff" * length
    with pytest.raises(BadImage, match="damaged"):
        decode_image(bytes(data), "damaged.tif")
