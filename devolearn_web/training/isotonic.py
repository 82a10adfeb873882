"""The count calibration's fit: isotonic regression per lineage, in NumPy alone.

Apart from calibrate.py (which evaluates through the training data loaders, and so loads
PyTorch) so that the fit and its tests run where PyTorch is not installed.
"""

from __future__ import annotations

import numpy as np

from devolearn_web.training.specs import LINEAGES

CALIBRATION_SPLIT = "train"
KNOT_DECIMALS = 3
METHOD = (
    "isotonic regression, per lineage, of the true counts on the network's counts (output x "
    "maximum) over the unaugmented training images; knots at the centres of the pooled blocks, "
    "linear between them, flat beyond the ends"
)


def isotonic_knots(raw: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (x strictly increasing, y non-decreasing) of the least-squares monotone fit."""
    order = np.argsort(raw, kind="stable")
    x, y = np.asarray(raw, np.float64)[order], np.asarray(truth, np.float64)[order]
    # Pool adjacent violators: each block keeps its mean, weight and x span.
    means, weights, lows, highs = [], [], [], []
    for value, position in zip(y, x, strict=True):
        means.append(value)
        weights.append(1.0)
        lows.append(position)
        highs.append(position)
        while len(means) > 1 and means[-2] >= means[-1]:
            mean, weight, high = means.pop(), weights.pop(), highs.pop()
            lows.pop()
            means[-1] = (means[-1] * weights[-1] + mean * weight) / (weights[-1] + weight)
            weights[-1] += weight
            highs[-1] = high
    centres = (np.asarray(lows) + np.asarray(highs)) / 2
    return _strictly_increasing(centres, np.asarray(means))


def _strictly_increasing(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots rounded for the card, with ties in x merged (the later y wins) and y monotone."""
    x, y = np.round(x, KNOT_DECIMALS), np.maximum.accumulate(np.round(y, KNOT_DECIMALS))
    keep = np.append(np.diff(x) > 0, True)
    x, y = x[keep], y[keep]
    if x.size == 1:  # one block: a flat curve still needs two knots
        x, y = np.array([x[0], x[0] + 1.0]), np.array([y[0], y[0]])
    return x, y


def fit_calibration(raw: np.ndarray, truth: np.ndarray) -> dict:
    """The card's `output.calibration` from the network's and the true counts (N, 7) each."""
    knots = {}
    for column, name in enumerate(LINEAGES):
        x, y = isotonic_knots(raw[:, column], truth[:, column])
        knots[name] = {"network": x.tolist(), "count": y.tolist()}
    fitted_on = f"{CALIBRATION_SPLIT} split, {len(raw)} images"
    return {"method": METHOD, "fitted_on": fitted_on, "knots": knots}
