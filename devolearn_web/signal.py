"""One rule for the signal: which colour channel carries it, and how values become 0..1.

Single images (devolearn_web.imaging), stacks (stacks, paged_stacks), movies (movies) and
training (training.images) all decide with these functions, so the same pixels give the same
model input however they arrive (tests/test_signal_parity.py).

- Channel: fluorescence is usually one channel carrying the signal with speckle in the others.
  A channel whose spread (standard deviation) is SIGNAL_CHANNEL_DOMINANCE times the next one's
  is used alone; otherwise luminance (LUMINANCE_WEIGHTS). Never the maximum over channels: it
  adds the speckle of every channel to the signal.
- Scaling to 0..1: 8-bit / 255 and 16-bit / 65535 (any byte order; never wrapped to 8 bits),
  bool as 0 and 1; float values already in [0, 1] are kept as they are; other float and 32-bit
  integer values have no natural range and are scaled by their own finite min..max.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A channel "carries the signal" when its spread is this many times the next channel's.
SIGNAL_CHANNEL_DOMINANCE = 3.0
CHANNEL_NAMES = ("red", "green", "blue")
LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Deciding which channel carries the signal needs statistics, not every pixel: a channel's
# spread estimated from 16,384 evenly spaced pixels is within a few percent of the full one,
# and the choice needs a 3x difference.
STATISTICS_SAMPLE_PIXELS = 16_384
# Channels that differ by less than this (in 0..1 units) anywhere are one gray image saved as RGB.
IDENTICAL_CHANNELS_TOLERANCE = 1.5 / 255


def full_scale(dtype: np.dtype) -> float | None:
    """The value of a fully bright pixel for dtypes with a natural range (bool, 8 and 16-bit
    unsigned, any byte order); None for those scaled by their values (float, 32-bit...)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return 1.0
    if dtype.kind == "u" and dtype.itemsize in (1, 2):
        return 255.0 if dtype.itemsize == 1 else 65535.0
    return None


def sample_step(height: int, width: int) -> int:
    """Every how many rows and columns the channel statistics look (STATISTICS_SAMPLE_PIXELS)."""
    return max(1, int(np.sqrt(height * width / STATISTICS_SAMPLE_PIXELS)))


def dominant_channel(spreads) -> int | None:
    """Index of the channel whose spread is SIGNAL_CHANNEL_DOMINANCE times every other's; None
    when no channel clearly leads (use luminance)."""
    spreads = np.asarray(spreads, dtype=np.float64).ravel()
    if spreads.size == 0:
        return None
    order = np.argsort(spreads)[::-1]
    strongest = spreads[order[0]]
    if spreads.size == 1:
        return int(order[0]) if strongest > 0 else None
    if strongest > 0 and strongest >= SIGNAL_CHANNEL_DOMINANCE * spreads[order[1]]:
        return int(order[0])
    return None


def channels_identical(unit_sample: np.ndarray) -> bool:
    """True when the channels of an HxWxC sample in 0..1 units are the same gray image."""
    return float(np.abs(unit_sample - unit_sample[..., :1]).max()) < IDENTICAL_CHANNELS_TOLERANCE


@dataclass(frozen=True)
class UnitScaling:
    """unit = (value - offset) * scale; by_range: scaled by the data's own min..max (say so)."""

    offset: float
    scale: float
    by_range: bool


def unit_scaling(dtype: np.dtype, low: float, high: float) -> UnitScaling:
    """How values of `dtype` whose finite values span low..high are taken to [0, 1]
    (low and high are ignored for the dtypes full_scale knows)."""
    natural = full_scale(dtype)
    if natural is not None:
        return UnitScaling(0.0, 1.0 / natural, False)
    # A float TIFF in [0, 1] (probabilities, normalised data) already is the unit signal: kept.
    if np.dtype(dtype).kind == "f" and 0.0 <= low and high <= 1.0:
        return UnitScaling(0.0, 1.0, False)
    span = high - low
    return UnitScaling(low, (1.0 / span if span > 0 else 0.0), True)
