"""A model card at a glance, for biologists: the first screen of a card page and its one-line
summary under every result. The card's full fields stay on the page, folded below."""

from __future__ import annotations

import math
from collections.abc import Mapping

from devolearn_web.catalogue import CATALOGUE

# Metric keys as a biologist reads them.
METRIC_LABELS = {
    "iou": "IoU",
    "dice": "Dice",
    "seg": "SEG",
    "count_error_percent": "count error",
    "max_mae_percent_of_maximum": "worst lineage's mean error, of its range,",
    "mae_percent_mean": "mean error, of the range,",
}
# What each metric measures, in words, for the card's first screen (IoU and SEG mean nothing
# to most biologists).
METRIC_MEANINGS = {
    "iou": "How well the pixels found overlap the true ones; 1 is perfect",
    "dice": "How well the pixels found overlap the true ones; 1 is perfect",
    "seg": "How well each true object is matched by one object found (the Cell Tracking "
    "Challenge's measure); 1 is perfect",
    "count_error_percent": "How far the number of objects found is from the true number, "
    "on average",
    "max_mae_percent_of_maximum": "The average miss of the least accurate lineage, as a share "
    "of the largest count that lineage reaches",
    "mae_percent_mean": "The average miss per lineage, as a share of the largest count it reaches",
}
# Limitations shown on the first screen; the rest are one click below.
LIMITS_AT_A_GLANCE = 3


def _number(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return str(value)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def headline_tests(card: Mapping) -> list[dict]:
    """The headline test figures: the card's targets when it has any, else its plain numbers."""
    metrics = card.get("metrics") or {}
    targets = metrics.get("targets") or {}
    if targets:
        return [
            {
                "label": METRIC_LABELS.get(key, key.replace("_", " ")),
                "meaning": METRIC_MEANINGS.get(key),
                "value": _number(item.get("value")) + ("%" if "percent" in key else ""),
                "target": item.get("target"),
                "met": item.get("met"),
            }
            for key, item in targets.items()
            if isinstance(item, dict)
        ]
    test = metrics.get("test") or {}
    return [
        {
            "label": METRIC_LABELS.get(key, key.replace("_", " ")),
            "meaning": METRIC_MEANINGS.get(key),
            "value": _number(value) + ("%" if "percent" in key else ""),
        }
        for key, value in test.items()
        if key in METRIC_LABELS and isinstance(value, int | float)
    ]


def real_results(card: Mapping, noun: str) -> list[dict]:
    """What the model found on each real sample, against the range a person expects there."""
    samples = (card.get("metrics") or {}).get("real_samples") or {}
    rows = []
    for sample, item in samples.items():
        if not isinstance(item, dict):
            continue
        found = item.get("count", item.get("total"))
        expected = item.get("expected_range") or []
        rows.append(
            {
                "sample": sample,
                "found": f"{found} {noun}",
                "expected": f"{expected[0]}–{expected[1]}" if len(expected) == 2 else None,
                "within": item.get("within_expected_range"),
            }
        )
    return rows


def glance(name: str, card: Mapping, noun: str) -> dict:
    """The first screen of a card page and the one line shown under every result."""
    simulated = bool((card.get("training_data") or {}).get("simulated"))
    tests = headline_tests(card)
    real = real_results(card, noun)
    limits = list(card.get("limitations") or [])
    parts = ["trained on simulated embryos only" if simulated else "trained on real images"]
    if tests:
        unmet = [item["label"] for item in tests if item.get("met") is False]
        shown = ", ".join(f"{item['label']} {item['value']}" for item in tests[:2])
        parts.append(f"on unseen simulated embryos {shown}" if simulated else shown)
        if unmet:
            parts.append(f"short of its target on {', '.join(unmet)}")
    for row in real[:1]:
        expected = f" (a person expects {row['expected']})" if row["expected"] else ""
        # The evaluation runs the sample through the app's own path, so this is the count a
        # visitor gets by uploading that file (`training/real_samples.py`).
        parts.append(f"the app counts {row['found']} on the real {row['sample']}{expected}")
    parts.append(f"{len(limits)} known limits")
    one_line = f"{card.get('title') or name} {card.get('version', '')}: " + "; ".join(parts) + "."
    return {
        "simulated": simulated,
        "tests": tests,
        "real": real,
        "limits_first": limits[:LIMITS_AT_A_GLANCE],
        "limits_more": limits[LIMITS_AT_A_GLANCE:],
        "do_not_trust": CATALOGUE[name].page.do_not_trust if name in CATALOGUE else (),
        "one_line": one_line.replace("  ", " "),
    }
