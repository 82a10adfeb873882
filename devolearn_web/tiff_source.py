"""One parsed TIFF per upload: the TiffFile a caller opened and hands down, else one opened here."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import tifffile


@contextmanager
def tiff_from(data: bytes, tiff: tifffile.TiffFile | None = None) -> Iterator[tifffile.TiffFile]:
    """`tiff` itself (left open for its owner), or `data` parsed and closed after the block."""
    if tiff is not None:
        yield tiff
        return
    with tifffile.TiffFile(io.BytesIO(data)) as opened:
        yield opened
