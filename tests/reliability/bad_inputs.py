"""The bad-input corpus: what visitors may send, and the answer each must get (4xx or a result).

Plain data shared by test_bad_input_corpus.py (through Flask's test client) and test_load.py
(through gunicorn, to show the worker survives all of it). Every case is one request; `status`
is what must come back and `words` must appear in the error sentence (or in the notes of a 200).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
import tifffile
from PIL import Image
from reliability_support import multipart_body

# The corpus app's byte limit: small, so the over-limit cases stay cheap.
CORPUS_MAX_UPLOAD_BYTES = 3_000_000


@dataclass(frozen=True)
class BadInput:
    """One request of the corpus and the answer it must get."""

    id: str
    # The status, or the statuses allowed where the stacks and movies work may answer either.
    status: int | tuple[int, ...]
    words: tuple[str, ...] = ()
    file: bytes | None = None
    filename: bytes = b"upload.png"
    fields: dict[str, str] = field(default_factory=dict)
    model: str = "nucleus"
    method: str = "POST"
    # A raw body (not a multipart form) and its content type.
    raw_body: bytes | None = None
    content_type: str | None = None
    # For 200 answers: the (width, height) the result must have, and for a stack or movie how
    # many frames it holds (a stack answer lists them all; a single answer names the number).
    size: tuple[int, int] | None = None
    frames: int | None = None

    def http(self) -> tuple[str, str, bytes | None, str | None]:
        """(method, path, body, content type) of this request."""
        path = f"/api/v1/predict/{self.model}"
        if self.raw_body is not None or self.method != "POST":
            return self.method, path, self.raw_body, self.content_type
        body, content_type = multipart_body(self.fields, self.file, self.filename)
        return self.method, path, body, content_type


def _pil(array: np.ndarray, image_format: str = "PNG", mode: str | None = None, **options) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _tiff(array: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def _disks(height: int = 140, width: int = 200) -> np.ndarray:
    """uint8 HxW: five bright disks on black (the tiny models find them)."""
    rows, cols = np.mgrid[:height, :width]
    image = np.zeros((height, width), dtype=np.uint8)
    for x, y in [(30, 30), (90, 30), (150, 30), (60, 100), (130, 100)]:
        image[(cols - x) ** 2 + (rows - y) ** 2 <= 144] = 220
    return image


def _noise(height: int = 64, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (height, width), dtype=np.uint8)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR (correct CRC) claiming width x height, then almost nothing."""
    data = bytearray(_pil(_noise(8, 8)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def _gif_claiming(side: int) -> bytes:
    """A small GIF whose logical screen and first image claim side x side pixels."""
    data = bytearray(_pil(_noise(4, 4), "GIF"))
    data[6:10] = struct.pack("<HH", side, side)
    descriptor = data.index(b"\x2c")  # the first image descriptor
    data[descriptor + 5 : descriptor + 9] = struct.pack("<HH", side, side)
    return bytes(data)


def _bmp_claiming(side: int) -> bytes:
    data = bytearray(_pil(_noise(4, 4), "BMP"))
    data[18:26] = struct.pack("<ii", side, side)
    return bytes(data)


def _tiff_claiming(side: int) -> bytes:
    """A TIFF whose first page claims side x side pixels (its tags patched after writing)."""
    data = bytearray(_tiff(np.zeros((4, 4), dtype=np.uint8)))
    with tifffile.TiffFile(io.BytesIO(bytes(data))) as tiff:
        for name in ("ImageWidth", "ImageLength"):
            tag = tiff.pages[0].tags[name]
            fmt = "<H" if tag.dtype == tifffile.DATATYPE.SHORT else "<I"
            data[tag.valueoffset : tag.valueoffset + struct.calcsize(fmt)] = struct.pack(fmt, side)
    return bytes(data)


def _png_with_corrupt_data() -> bytes:
    """A PNG whose compressed pixel data (IDAT) is overwritten with bytes zlib cannot inflate."""
    data = bytearray(_pil(_noise()))
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    data[idat + 6 : idat + 4 + length] = b"\xff" * (length - 2)
    chunk = bytes(data[idat : idat + 4 + length])
    data[idat + 4 + length : idat + 8 + length] = struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    return bytes(data)


def _animated_gif() -> bytes:
    frames = [Image.fromarray(_disks()), Image.fromarray(255 - _disks())]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def _rgba_fluorescence() -> np.ndarray:
    """Like embryo_sample.png: signal in green, sparse speckle in red and blue, opaque alpha."""
    rgba = np.zeros((140, 200, 4), dtype=np.uint8)
    rgba[..., 1] = _disks()
    rgba[..., 0][_noise(140, 200, 1) > 250] = 90
    rgba[..., 3] = 255
    return rgba


def _palette_with_transparency() -> bytes:
    image = Image.fromarray(_disks()).convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    return buffer.getvalue()


PNG = _pil(_disks())
MOVIE_WORDS = ("movie", "PNG, JPEG, TIFF")
HTML_FILENAME = b'<img src=x onerror="alert(1)">.png'

CORPUS: tuple[BadInput, ...] = (
    # Empty, not an image, damaged.
    BadInput("zero-bytes", 400, ("empty",), file=b""),
    BadInput("text-named-png", 415, ("text file", "PNG, JPEG"), file=b"cell counts: 12, 14\n"),
    BadInput("truncated-png", 400, ("truncated",), file=_half(_pil(_noise()))),
    BadInput("png-header-only", 400, ("damaged",), file=_pil(_noise())[:20]),
    BadInput("png-corrupt-pixel-data", 400, ("PNG",), file=_png_with_corrupt_data()),
    BadInput("truncated-jpeg", 400, ("truncated",), file=_half(_pil(_noise(), "JPEG"))),
    BadInput("truncated-tiff", 400, ("TIFF",), file=_half(_pil(_noise(), "TIFF"))),
    BadInput("truncated-16bit-tiff", 400, ("TIFF",), file=_half(_tiff(_noise().astype("u2")))),
    BadInput("truncated-gif", 400, ("GIF",), file=_half(_pil(_noise(), "GIF"))),
    BadInput("truncated-bmp", 400, ("BMP",), file=_half(_pil(_noise(), "BMP"))),
    BadInput(
        "float-tiff-all-nan", 400, ("no finite values",), file=_tiff(np.full((8, 8), np.nan, "f4"))
    ),
    BadInput(
        "html-with-script",
        415,
        ("web page (HTML)",),
        file=b"<!doctype html><html><script>alert(document.cookie)</script></html>",
    ),
    BadInput(
        "svg-with-script",
        415,
        ("SVG",),
        file=b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        filename=b"drawing.svg",
    ),
    BadInput("pdf", 415, ("PDF",), file=b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", filename=b"paper.pdf"),
    BadInput("webp", 415, ("WebP",), file=b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(24)),
    BadInput("zip", 415, ("ZIP",), file=b"PK\x03\x04" + bytes(40), filename=b"images.zip"),
    BadInput("random-binary", 415, ("unrecognised format",), file=bytes(range(256)) * 4),
    # Decompression bombs: a tiny file claiming a huge picture, refused before any pixel.
    BadInput("png-bomb", 413, ("megapixels",), file=_png_claiming(100_000, 100_000)),
    BadInput("png-just-over-limit", 413, ("7000 x 7000",), file=_png_claiming(7_000, 7_000)),
    BadInput("tiff-bomb", 413, ("megapixels",), file=_tiff_claiming(60_000)),
    BadInput("gif-bomb", 413, ("pixels",), file=_gif_claiming(65_535)),
    BadInput("bmp-bomb", 413, ("megapixels",), file=_bmp_claiming(50_000)),
    BadInput("png-zero-width", 400, ("PNG",), file=_png_claiming(0, 10)),
    # Odd but valid pictures: analysed, at their own size.
    BadInput("1x1", 200, file=_pil(np.full((1, 1), 200, np.uint8)), size=(1, 1)),
    BadInput("65535x1", 200, file=_pil(_noise(1, 65_535)), size=(65_535, 1)),
    BadInput("1x65535", 200, file=_pil(_noise(65_535, 1)), size=(1, 65_535)),
    BadInput("1x1-tiff", 200, file=_tiff(np.full((1, 1), 9, np.uint16)), size=(1, 1)),
    BadInput("16-bit-png", 200, file=_pil(_disks().astype(np.uint16) * 250), size=(200, 140)),
    BadInput("16-bit-tiff", 200, file=_tiff(_disks().astype(np.uint16) * 250), size=(200, 140)),
    BadInput(
        "32-bit-float-tiff",
        200,
        ("own range",),
        file=_tiff(_disks().astype(np.float32) * 0.01 - 3),
        size=(200, 140),
    ),
    BadInput("32-bit-int-tiff", 200, ("own range",), file=_tiff(_disks().astype(np.int32) - 7)),
    BadInput(
        "cmyk-jpeg", 200, ("CMYK",), file=_pil(_disks(), "JPEG", mode="CMYK"), size=(200, 140)
    ),
    BadInput("cmyk-tiff", 200, ("CMYK",), file=_pil(_disks(), "TIFF", mode="CMYK")),
    BadInput("palette-png", 200, file=_pil(_disks(), mode="P"), size=(200, 140)),
    BadInput("palette-transparency", 200, file=_palette_with_transparency()),
    BadInput("la-png", 200, file=_pil(_disks(), mode="LA"), size=(200, 140)),
    BadInput("bilevel-png", 200, file=_pil(_disks() > 0)),
    BadInput("rgba-fluorescence", 200, ("green channel",), file=_pil(_rgba_fluorescence())),
    BadInput("lzw-tiff", 200, file=_pil(_disks(), "TIFF", compression="tiff_lzw")),
    # Stacks and movies: every frame; a stack past the frame limit (1000) is a clear 413,
    # answered before any frame is analysed, however fast the machine.
    BadInput("animated-gif", 200, file=_animated_gif(), size=(200, 140), frames=2),
    BadInput(
        "tiff-20-pages",
        200,
        file=_tiff(np.stack([_disks()] * 20), photometric="minisblack", metadata=None),
        size=(200, 140),
        frames=20,
    ),
    BadInput(
        "tiff-3000-pages",
        413,
        ("3000 frames",),
        file=_tiff(np.zeros((3000, 8, 8), np.uint8), photometric="minisblack", metadata=None),
    ),
    BadInput("png-named-jpg", 200, file=PNG, filename=b"picture.jpg", size=(200, 140)),
    # Corrupt movies: a clear 415 (not readable as a movie yet) or 400 (a damaged movie).
    BadInput("corrupt-movie", 415, MOVIE_WORDS, file=bytes(range(256)) * 8, filename=b"embryo.mp4"),
    BadInput(
        "mp4-header-garbage-body",
        (400, 415),
        ("movie",),
        file=b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00" + bytes(range(256)),
        filename=b"embryo.bin",
    ),
    BadInput(
        "avi-garbage", (400, 415), ("movie",), file=b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(64)
    ),
    BadInput("quicktime", 415, MOVIE_WORDS, file=b"garbage", filename=b"timelapse.MOV"),
    # The form itself.
    BadInput("missing-file-field", 400, ("field 'file'",), fields={"threshold": "0.5"}),
    BadInput(
        "misnamed-field",
        400,
        ("field 'file'",),
        raw_body=multipart_body({}, PNG)[0].replace(b'name="file"', b'name="image"'),
        content_type=None,  # filled in below: the boundary must match the body
    ),
    BadInput("raw-png-body", 400, ("field 'file'",), raw_body=PNG, content_type="image/png"),
    BadInput(
        "json-body",
        400,
        ("field 'file'",),
        raw_body=b'{"file": "x"}',
        content_type="application/json",
    ),
    BadInput(
        "multipart-without-boundary",
        400,
        (),
        raw_body=b"--x\r\n\r\n",
        content_type="multipart/form-data",
    ),
    BadInput("empty-filename-no-file", 400, ("empty",), file=b"", filename=b""),
    BadInput(
        "over-the-byte-limit",
        413,
        ("MB",),
        file=PNG + bytes(CORPUS_MAX_UPLOAD_BYTES + 10_000 - len(PNG)),
    ),
    BadInput(
        "far-over-the-request-limit",
        413,
        ("larger than this server accepts",),
        file=bytes(CORPUS_MAX_UPLOAD_BYTES + 200_000),
    ),
    # Parameters.
    BadInput("threshold-abc", 400, ("not a number",), file=PNG, fields={"threshold": "abc"}),
    BadInput("threshold-minus-1", 400, ("between 0 and 1",), file=PNG, fields={"threshold": "-1"}),
    BadInput("threshold-2", 400, ("between 0 and 1",), file=PNG, fields={"threshold": "2"}),
    BadInput("threshold-nan", 400, ("between 0 and 1",), file=PNG, fields={"threshold": "nan"}),
    BadInput("threshold-inf", 400, ("between 0 and 1",), file=PNG, fields={"threshold": "inf"}),
    BadInput(
        "threshold-huge-exponent",
        400,
        ("between 0 and 1",),
        file=PNG,
        fields={"threshold": "1e999"},
    ),
    BadInput(
        "threshold-10k-characters",
        400,
        ("not a number",),
        file=PNG,
        fields={"threshold": "9" * 10_000 + "x"},
    ),
    BadInput(
        "threshold-blank-means-default", 200, file=PNG, fields={"threshold": " "}, size=(200, 140)
    ),
    BadInput(
        "unknown-include-word", 200, file=PNG, fields={"include": "everything"}, size=(200, 140)
    ),
    BadInput("unknown-model", 404, ("membrane, nucleus, lineage",), file=PNG, model="heart"),
    BadInput("model-name-traversal", 404, (), file=PNG, model="..%2F..%2Fetc%2Fpasswd"),
    BadInput("get-instead-of-post", 405, ("HTTP method",), method="GET"),
    # File names: never used as paths, quoted safely in messages.
    BadInput("filename-path-traversal", 200, file=PNG, filename=b"../../../etc/passwd.png"),
    BadInput("filename-windows-traversal", 200, file=PNG, filename=b"..\\..\\boot.ini"),
    BadInput("filename-non-utf8", 400, ("UTF-8",), file=PNG, filename=b"\xff\xfe\xfa embryo.png"),
    BadInput("filename-html-image", 200, file=PNG, filename=HTML_FILENAME),
    BadInput("filename-html-text", 415, ("text file",), file=b"hello", filename=HTML_FILENAME),
    BadInput("filename-5000-characters", 415, ("\u2026",), file=b"hello", filename=b"a" * 5000),
    BadInput(
        "filename-non-utf8-latin1",
        400,
        ("UTF-8",),
        file=b"hello",
        filename="embryo_\u00fc.png".encode("latin-1"),
    ),
)


def _with_matching_boundary(case: BadInput) -> BadInput:
    """The misnamed-field case needs the content type of the body it was cut from."""
    if case.id != "misnamed-field":
        return case
    body = case.raw_body or b""
    boundary = body[2 : body.index(b"\r\n")].decode()
    return BadInput(
        case.id,
        case.status,
        case.words,
        raw_body=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


CORPUS = tuple(_with_matching_boundary(case) for case in CORPUS)
