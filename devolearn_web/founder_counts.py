"""Per-founder counts over time: from the named tree, beside the lineage model's estimates on
the same time points (issue 22, part 3).

Decisions:
- Counts are in the lineage model's keys (devolearn_web.catalogue: A E M P C D Z) and mean what
  the simulator the model was trained on counts (training/simulator/division_timing.csv): A is
  AB and its descendants (ABa, ABp...), E is EMS until it divides and then E's clone, M is MS's
  clone, C is C's, D is D's, P is the P cell still undivided (P0, P1, P2, P3 or P4: one at most),
  Z is Z2 and Z3.
- A nucleus counts for a lineage when it, or its nearest named ancestor, is named: a named clone
  founder (AB, ABa, ABp, MS, E, C, D, Z2/Z3) passes its key to all its descendants; a named
  P cell or EMS only to itself (its daughters are of other lineages). Nuclei the founders'
  naming leaves out (no named ancestor, or the daughters of a P cell or EMS not named) could
  be of several lineages: at each time point every lineage one of them could be of gets null.
- Nuclei the tracker made by cutting one nucleus in two (a stub daughter, founders.build_cells)
  are not counted, as the naming does not count them.
- The model's estimate at a time point is the shipped lineage model's answer on that time
  point's image (the brightest value through z for a z-stack), through the app's own pipeline
  (pipelines.predict); null where the model finds no embryo or is not installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from devolearn_web.budget import NO_DEADLINE, Deadline
from devolearn_web.catalogue import LINEAGE_ORDER
from devolearn_web.founders import DAUGHTERS, STUB_TIME_POINTS
from devolearn_web.tracking import Track

# The lineage key of each founder name (the simulator's letters: division_timing.csv).
KEY_OF = {
    "P0": "P",
    "AB": "A",
    "ABa": "A",
    "ABp": "A",
    "P1": "P",
    "EMS": "E",
    "P2": "P",
    "MS": "M",
    "E": "E",
    "C": "C",
    "P3": "P",
    "D": "D",
    "P4": "P",
    "Z2/Z3": "Z",
}
# Founders whose every descendant is of their own lineage; the others (P cells, EMS) pass on
# other lineages to their daughters.
CLONES = frozenset(("AB", "ABa", "ABp", "MS", "E", "C", "D", "Z2/Z3"))


def _descendant_keys(name: str) -> frozenset[str]:
    """Every lineage key a descendant (or the cell itself) of a founder could be counted in."""
    keys = {KEY_OF[name]}
    if name not in CLONES:
        for daughter in DAUGHTERS.get(name, ()):
            keys |= _descendant_keys(daughter)
    return frozenset(keys)


ALL_KEYS = frozenset(LINEAGE_ORDER)


def tree_counts(
    tracks: Sequence[Track], names: dict[int, str], times: int
) -> tuple[list[dict[str, int | None]], list[str]]:
    """Per time point, nuclei per lineage key from the named tracks (None: unknown), and the
    keys that are unknown at some time point (in LINEAGE_ORDER)."""
    by_id = {track.track: track for track in tracks}
    children: dict[int, list[Track]] = {}
    for track in tracks:
        children.setdefault(track.parent, []).append(track)

    def is_stub(track: Track) -> bool:  # as founders.build_cells reads a false division
        short = track.end - track.begin + 1 <= STUB_TIME_POINTS
        return short and not children.get(track.track) and track.end < times - 1

    def keys_of(track: Track) -> frozenset[str]:
        """The lineage keys this track could be counted in (one: known)."""
        if track.track in names:
            return frozenset((KEY_OF[names[track.track]],))
        current = track
        while current.parent in by_id:
            current = by_id[current.parent]
            if current.track in names:
                name = names[current.track]
                return frozenset((KEY_OF[name],)) if name in CLONES else _descendant_keys(name)
        return ALL_KEYS

    counts = [dict.fromkeys(LINEAGE_ORDER, 0) for _ in range(times)]
    unknown: list[set[str]] = [set() for _ in range(times)]
    for track in tracks:
        if is_stub(track):
            continue
        keys = keys_of(track)
        for moment in range(track.begin, min(track.end, times - 1) + 1):
            if len(keys) == 1:
                (key,) = keys
                counts[moment][key] += 1
            else:
                unknown[moment] |= keys
    rows: list[dict[str, int | None]] = [
        {key: (None if key in missing else count[key]) for key in LINEAGE_ORDER}
        for count, missing in zip(counts, unknown, strict=True)
    ]
    ever = set().union(*unknown) if unknown else set()
    return rows, [key for key in LINEAGE_ORDER if key in ever]


def tree_counts_note(unknown_keys: Sequence[str], naming_note: str, any_named: bool) -> str:
    """A sentence on what the tree's counts leave out, and why."""
    if not unknown_keys:
        return (
            "Founder counts from the tree: the nuclei descending from each named founder at "
            "each time point, beside the lineage model's estimate on that time point's image."
        )
    why = (
        naming_note
        if not any_named
        else "some nuclei descend from no named founder (the naming left them out)"
    )
    return (
        f"Founder counts from the tree are null for {', '.join(unknown_keys)} where a nucleus "
        f"could be of that lineage but its founder is not named: {why}"
    )


def founder_counts_rows(
    tree: Sequence[dict[str, int | None]], model: Sequence[dict[str, int] | None]
) -> list[dict]:
    """The answer's `founder_counts`: per time point (0-based t), the tree's and the model's."""
    return [
        {"t": moment, "tree": dict(counts), "model": None if estimate is None else dict(estimate)}
        for moment, (counts, estimate) in enumerate(zip(tree, model, strict=True))
    ]


def founder_counts_csv(rows: Sequence[dict]) -> str:
    """One row per time point: t (0-based), then tree_A..., then model_A... (empty: unknown)."""
    header = ["t", *(f"tree_{k}" for k in LINEAGE_ORDER), *(f"model_{k}" for k in LINEAGE_ORDER)]
    lines = [",".join(header)]
    for row in rows:
        tree = [row["tree"].get(key) for key in LINEAGE_ORDER]
        model = [(row["model"] or {}).get(key) for key in LINEAGE_ORDER]
        cells = [str(row["t"]), *("" if value is None else str(value) for value in tree + model)]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def model_estimates(
    registry, stack, deadline: Deadline = NO_DEADLINE
) -> tuple[list[dict[str, int] | None], str | None]:
    """Per time point, the shipped lineage model's populations on the time point's projection
    (max over z for a z-stack, the frame for a single plane), and a note when some are missing.
    Past the `deadline` the request stops (TookTooLong), as the nucleus model's run does."""
    from devolearn_web.stack_pipeline import max_projection

    has_z = "z" in (stack.axes.get("slider") or ())
    frames = max_projection(stack) if has_z else stack
    return estimates_on(registry, (frames.image(index) for index in range(frames.count)), deadline)


def estimates_on(
    registry, images: Iterable, deadline: Deadline = NO_DEADLINE
) -> tuple[list[dict[str, int] | None], str | None]:
    """model_estimates on time-point images (DecodedImage) given one at a time."""
    from devolearn_web.errors import DevoLearnError, TookTooLong
    from devolearn_web.pipelines import predict

    estimates: list[dict[str, int] | None] = []
    problems: list[str] = []
    for index, image in enumerate(images):
        try:
            result = predict(registry, "lineage", image, deadline=deadline)
        except TookTooLong:
            raise
        except DevoLearnError as error:
            estimates.append(None)
            problems.append(f"time point {index + 1}: {error}")
            continue
        estimates.append({key: int(result.populations[key]) for key in LINEAGE_ORDER})
    if not problems:
        return estimates, None
    return estimates, (
        f"The lineage model gave no estimate at {len(problems)} of {len(estimates)} time points "
        f"({problems[0]}{'; ...' if len(problems) > 1 else ''})."
    )


def founder_counts_for(
    registry, stack, tracks: Sequence[Track], naming, times: int, deadline: Deadline = NO_DEADLINE
) -> tuple[list, list]:
    """(the answer's `founder_counts`, notes) for a tracked stack of `times` time points: the
    tree's counts from the founders' `naming` (founders.Naming or None), the lineage model's
    on each time point."""
    return founder_counts_with(*model_estimates(registry, stack, deadline), tracks, naming, times)


def founder_counts_with(
    model: Sequence[dict[str, int] | None],
    model_note: str | None,
    tracks: Sequence[Track],
    naming,
    times: int,
) -> tuple[list, list]:
    """founder_counts_for with the lineage model's estimates (and their note) already made."""
    names = naming.names if naming is not None else {}
    tree, unknown = tree_counts(tracks, names, times)
    notes = [tree_counts_note(unknown, naming.note if naming else "", bool(names))]
    if model_note:
        notes.append(model_note)
    return founder_counts_rows(tree, model), notes
