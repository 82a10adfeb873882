"""Cell counts from the lineage network's scaled outputs, with the card's optional calibration.

A network trained with a mean-squared error behind a sigmoid pulls its answers towards the
middle of each lineage's range: a target of exactly the maximum needs an infinite logit, so a
late embryo's 16 E cells come out near 13. A card may carry a monotone calibration per lineage
(knots fitted on the training split by `python -m devolearn_web.training calibrate`) that maps
the network's count back onto the counts it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def lineage_counts(
    scaled: np.ndarray,
    lineages: Sequence[str],
    maxima: Sequence[float],
    calibration: Mapping | None = None,
) -> np.ndarray:
    """Whole cell counts (int64, same shape) from scaled outputs (float, ..., lineages)."""
    raw = network_counts(scaled, maxima)
    knots = (calibration or {}).get("knots", {})
    for column, lineage in enumerate(lineages):
        if lineage in knots:
            curve = knots[lineage]
            # Beyond the outermost knots the count stays at the end value (np.interp's rule).
            raw[..., column] = np.interp(raw[..., column], curve["network"], curve["count"])
    return np.rint(raw).astype(np.int64)


def network_counts(scaled: np.ndarray, maxima: Sequence[float]) -> np.ndarray:
    """The network's own counts before calibration and rounding: clip(scaled * maxima, 0)."""
    return np.clip(np.asarray(scaled, dtype=np.float64) * np.asarray(maxima, np.float64), 0, None)


def calibration_problem(calibration: object, lineages: Sequence[str]) -> str | None:
    """Why a card's `output.calibration` cannot be used, or None when it can."""
    if not isinstance(calibration, Mapping):
        return "output.calibration must be an object"
    knots = calibration.get("knots")
    if not isinstance(knots, Mapping) or not set(knots) <= set(lineages):
        return "output.calibration.knots must map lineage names to curves"
    for lineage, curve in knots.items():
        problem = _curve_problem(curve)
        if problem:
            return f"output.calibration.knots.{lineage}: {problem}"
    return None


def _curve_problem(curve: object) -> str | None:
    if not isinstance(curve, Mapping):
        return "must be an object with 'network' and 'count' lists"
    try:
        network = np.asarray(curve.get("network"), dtype=np.float64)
        count = np.asarray(curve.get("count"), dtype=np.float64)
    except (TypeError, ValueError):
        return "'network' and 'count' must be lists of numbers"
    if network.ndim != 1 or network.shape != count.shape or network.size < 2:
        return "'network' and 'count' must be lists of the same length, at least 2"
    if not (np.isfinite(network).all() and np.isfinite(count).all()):
        return "knots must be finite numbers"
    if np.any(np.diff(network) <= 0):
        return "'network' must increase strictly"
    if np.any(np.diff(count) < 0) or count[0] < 0:
        return "'count' must not decrease and must not be negative"
    return None
