"""Names of the founder cells (AB, P1, EMS, MS, E, P2, C, P3, D, P4, Z2/Z3, ABa, ABp) on a
tracked recording that starts at 4 cells or fewer.

Decisions:
- Every way of laying the known founder tree (P0 -> AB + P1, AB -> ABa + ABp, P1 -> EMS + P2,
  EMS -> MS + E, P2 -> C + P3, P3 -> D + P4, P4 -> Z2 + Z3) over the tracked tree is scored, and a
  track is named only when every naming within NEAR_BEST of the best gives it the same name:
  a guess between two equally good namings is left unnamed, and the note says which.
- Timing is the main evidence: each named cell's division (and its clone's next one: AB's
  granddaughters 14 min after ABa/ABp, MS's daughters 25.5 min after MS, E's 51.5 min after E,
  C's 25.5 and D's 47.5) against Sulston et al. 1983's times, after fitting when the first
  cleavage was and the recording's tempo (temperature and the time between time points are not
  known: a minute apart, as Fluo-N3DH-CE, is the prior). A cell still undivided at the end
  counts as "divides later", which also tells MS from E and C from P3 in long recordings.
- Positions add two rules that hold in real embryos and in the simulator: ABp touches P2 while
  ABa lies at the anterior end (so ABa is the AB daughter farther from the P1/P2 side), and EMS
  lies nearer the AB side than P2. MS anterior of E and C dorsal of P3 are true in embryos but
  the simulator divides those cells along random axes, so they are not used (no measure of them).
- When even the best naming leaves a division more than MISFIT_SPREADS off its time (or a
  cell long overdue), the tracks are wrong somewhere: no names, and the note says which.
- Sizes are not used: AB is larger than P1 in embryos, but the simulator halves every cell.
- A division where one daughter lasts STUB_TIME_POINTS or fewer and vanishes is read as one
  nucleus cut in two by the segmentation (the tracker's commonest false division), not a birth.
- Pure numpy/scipy: no Flask, so jobs and the benchmark call it too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import log_expit, log_ndtr

from devolearn_web.tracking import Track

# Minutes after the first cleavage (about 20 C) when each founder divides: Sulston et al. 1983
# (Dev Biol 100:64-119) as read into devolearn_web/training/simulator/division_timing.csv.
# ABa and ABp divide 17 min after AB; Z2 and Z3 do not divide in the embryo.
DIVISION_MINUTES = {
    "P0": 0.0,
    "AB": 16.0,
    "P1": 17.0,
    "ABa": 33.0,
    "ABp": 33.0,
    "EMS": 36.5,
    "P2": 39.5,
    "MS": 54.5,
    "E": 54.5,
    "P3": 64.0,
    "C": 66.0,
    "D": 108.5,
    "P4": 132.0,
    "Z2/Z3": math.inf,
}
# The 1-cell stage lasts several minutes before the first cleavage.
P0_BIRTH_MINUTES = -6.0
DAUGHTERS = {
    "P0": ("AB", "P1"),
    "AB": ("ABa", "ABp"),
    "P1": ("EMS", "P2"),
    "EMS": ("MS", "E"),
    "P2": ("C", "P3"),
    "P3": ("D", "P4"),
    "P4": ("Z2/Z3", "Z2/Z3"),
}
PARENT = {daughter: mother for mother, pair in DAUGHTERS.items() for daughter in pair}
# Minutes from a clone founder's division to her daughters' (the clone's first round).
CLONE_CYCLE_MINUTES = {"ABa": 14.0, "ABp": 14.0, "MS": 25.5, "E": 51.5, "C": 25.5, "D": 47.5}
# The cells alive at the start of a recording, by how many nuclei it starts with.
STARTS = {
    1: (("P0",),),
    2: (("AB", "P1"),),
    3: (("ABa", "ABp", "P1"), ("AB", "EMS", "P2")),  # P1 divides first now and then
    4: (("ABa", "ABp", "EMS", "P2"),),
}
MAX_START = max(STARTS)

# Spread (min) of a founder's division between embryos, of a clone's cycle (a fraction of it),
# and of reading a division off time points a minute apart.
FOUNDER_SPREAD = 0.7
CYCLE_SPREAD = 0.10
READING_SPREAD = 1.0
# The recording's tempo (one per recording) is fitted within this range, log-normal prior.
TEMPO_RANGE = (0.5, 2.0)
TEMPO_PRIOR = 0.25
TEMPO_STEPS = 13
OFFSET_STEP = 1.0
# A cell that never divides, seen dividing: as unlikely as a division 3.7 spreads off.
NEVER_DIVIDES = -8.0
# Position rules: a difference of this fraction of the two distances is one unit of evidence.
POSITION_SCALE = 0.05
# Namings within this log-likelihood of the best (a factor of 20) are taken as just as good.
NEAR_BEST = math.log(20.0)
# The best naming is refused when a division is this many spreads off its fitted time: the
# tracks then hold a missed, extra or shifted division, and any naming of them would mislead.
# On the simulator's true tracks (validation seeds 1000-1059 from 1 and 4 cells, 100 time
# points, about 22 divisions each) the worst division of a recording was at most 4.0 off.
MISFIT_SPREADS = 5.0
STUB_TIME_POINTS = 2


@dataclass
class Cell:
    """One nucleus from birth to division: tracks joined over false divisions (stubs dropped)."""

    tracks: list[int]
    begin: int
    end: int
    children: list[Cell] = field(default_factory=list)
    divided: bool = False


@dataclass(frozen=True)
class Naming:
    """Founder names by track id (only the tracks named) and a sentence on what was named."""

    names: dict[int, str]
    note: str


def build_cells(tracks: Sequence[Track], last_time: int) -> list[Cell]:
    """The tracked forest as cells, roots first; false divisions (a stub daughter) undone."""
    children: dict[int, list[Track]] = {}
    for track in tracks:
        children.setdefault(track.parent, []).append(track)

    def is_stub(track: Track) -> bool:
        short = track.end - track.begin + 1 <= STUB_TIME_POINTS
        return short and not children.get(track.track) and track.end < last_time

    def grow(track: Track) -> Cell:
        cell = Cell([track.track], track.begin, track.end)
        current = track
        while True:
            kids = children.get(current.track, [])
            real = [kid for kid in kids if not is_stub(kid)]
            if len(kids) == 2 and len(real) == 1:
                current = real[0]
                cell.tracks.append(current.track)
                cell.end = current.end
                continue
            if len(real) == 2:
                cell.children = [grow(kid) for kid in real]
                cell.divided = True
            elif kids:
                cell.divided = True  # a division the stubs leave unreadable: not a cell's end
            return cell

    return [grow(track) for track in children.get(0, [])]


def name_founders(
    tracks: Sequence[Track],
    positions: Sequence[Mapping[int, Sequence[float]]],
) -> Naming:
    """Founder names for a recording's tracks; `positions`: per time point, track id -> centre
    (any axis order, the same length unit on every axis)."""
    times = len(positions)
    if not tracks or times == 0:
        return Naming({}, "No founder names: there are no tracks.")
    cells = build_cells(tracks, times - 1)
    roots = [cell for cell in cells if cell.begin == 0]
    if len(roots) > MAX_START:
        return Naming(
            {},
            f"No founder names: the recording starts at {len(roots)} nuclei, and founders are "
            f"named only from {MAX_START} cells or fewer (later, which nucleus is which cannot "
            "be read from the order of divisions).",
        )
    if not roots:
        return Naming({}, "No founder names: no nucleus is tracked from the first time point.")
    scored = [(_score(naming, roots, positions, times), naming) for naming in _namings(roots)]
    best = max(score for score, _ in scored)
    best_naming = next(naming for score, naming in scored if score == best)
    misfit = _misfit(best_naming, roots, times)
    if misfit is not None:
        return Naming(
            {},
            "No founder names: the tracked divisions do not fit the founders' timing under any "
            f"naming ({misfit}); a division is likely missed, extra or shifted in the tracks.",
        )
    near = [naming for score, naming in scored if score >= best - NEAR_BEST]
    agreed: dict[int, str] = {}
    undecided: set[str] = set()
    for cell_id, name in near[0].items():
        if all(naming.get(cell_id) == name for naming in near[1:]):
            agreed[cell_id] = name
        else:
            undecided.add(name)
    by_id = {id(cell): cell for cell in _walk(roots)}
    names = {track: name for cell_id, name in agreed.items() for track in by_id[cell_id].tracks}
    named = sorted(set(agreed.values()), key=list(DIVISION_MINUTES).index)
    note = (
        f"Founders named from the timing of divisions and positions: {', '.join(named)}. "
        "The naming was checked on simulated recordings only (docs/tracking.md): on a real "
        "recording a division the tracks miss or add can make a name wrong, so check the names "
        "against the images."
    )
    if not named:
        note = "No founder names: the divisions seen fit two or more namings equally well."
    if undecided:
        note += (
            f" Not told apart (the recording's divisions fit either naming): "
            f"{', '.join(sorted(undecided, key=list(DIVISION_MINUTES).index))}."
        )
    return Naming(names, note)


def _walk(cells: Sequence[Cell]) -> Iterator[Cell]:
    for cell in cells:
        yield cell
        yield from _walk(cell.children)


def _namings(roots: Sequence[Cell]) -> Iterator[dict[int, str]]:
    """Every naming of the tracked tree: start cells in any order, daughters either way round."""
    for start in STARTS[len(roots)]:
        for order in set(itertools.permutations(start)):
            parts = [
                list(_subtree_namings(cell, name)) for cell, name in zip(roots, order, strict=True)
            ]
            for combination in itertools.product(*parts):
                merged: dict[int, str] = {}
                for part in combination:
                    merged.update(part)
                yield merged


def _subtree_namings(cell: Cell, name: str) -> Iterator[dict[int, str]]:
    if name not in DAUGHTERS or len(cell.children) != 2:
        yield {id(cell): name}
        return
    first, second = DAUGHTERS[name]
    orders = {(first, second), (second, first)}
    for one, other in orders:
        for left in _subtree_namings(cell.children[0], one):
            for right in _subtree_namings(cell.children[1], other):
                yield {id(cell): name, **left, **right}


def _score(
    naming: dict[int, str],
    roots: Sequence[Cell],
    positions: Sequence[Mapping[int, Sequence[float]]],
    times: int,
) -> float:
    """Log-likelihood of a naming: timing (best tempo and offset) plus the position rules."""
    return _timing_score(naming, roots, times) + _position_score(naming, roots, positions)


def _timing_score(naming: dict[int, str], roots: Sequence[Cell], times: int) -> float:
    penalty, seen, later, before, _ = _timing_events(naming, roots, times)
    return penalty + _fit(seen, later, before)[0]


def _timing_events(naming: dict[int, str], roots: Sequence[Cell], times: int) -> tuple:
    """(penalty, seen, later, before, what each seen and later event is) of a naming."""
    seen, later, before = [], [], []  # (minute observed, expected minute, spread)
    what = []  # per seen event, then per later event: (name, divides after the founder)
    penalty = 0.0
    last = times - 1 + 0.5
    founder_spread = math.hypot(FOUNDER_SPREAD, READING_SPREAD)
    for cell in _walk(roots):
        name = naming.get(id(cell))
        if name is None:
            continue
        expected = DIVISION_MINUTES[name]
        if cell.divided:
            if math.isinf(expected):
                penalty += NEVER_DIVIDES
            else:
                seen.append((cell.end + 0.5, expected, founder_spread))
                what.append(("seen", name, False, cell.end))
        elif cell.end == times - 1 and not math.isinf(expected):
            later.append((last, expected, founder_spread))
            what.append(("later", name, False, cell.end))
        if name in CLONE_CYCLE_MINUTES:
            cycle = CLONE_CYCLE_MINUTES[name]
            spread = math.hypot(founder_spread, CYCLE_SPREAD * cycle)
            for child in cell.children:
                if child.divided:
                    seen.append((child.end + 0.5, expected + cycle, spread))
                    what.append(("seen", name, True, child.end))
                elif child.end == times - 1:
                    later.append((last, expected + cycle, spread))
                    what.append(("later", name, True, child.end))
    for root in roots:
        mother = PARENT.get(naming[id(root)])
        birth = DIVISION_MINUTES[mother] if mother else P0_BIRTH_MINUTES
        before.append((0.0, birth, founder_spread))  # born before the first time point
    kinds = [item for item in what if item[0] == "seen"] + [i for i in what if i[0] == "later"]
    return penalty, seen, later, before, kinds


def _fit(seen: list, later: list, before: list) -> tuple[float, float, float]:
    """The best log-likelihood over the recording's tempo and its first cleavage's minute, and
    that tempo and minute: a coarse grid, then a fine one around its best point."""
    tempos = np.linspace(*np.log(TEMPO_RANGE), TEMPO_STEPS)
    # The first cleavage's minute: a 4-cell recording starts under 50 tempo-minutes after it,
    # a 1-cell one up to 6 before it.
    offsets = np.arange(-50.0 * TEMPO_RANGE[1], 7.0 * TEMPO_RANGE[1], OFFSET_STEP)
    columns = [
        tuple(np.array(column) for column in zip(*events, strict=True)) if events else None
        for events in (seen, later, before)
    ]
    total = _grid(columns, tempos, offsets)
    row, column = np.unravel_index(int(np.argmax(total)), total.shape)
    tempo_step = tempos[1] - tempos[0]
    fine_tempos = tempos[row] + np.linspace(-tempo_step, tempo_step, 9)
    fine_offsets = offsets[column] + np.linspace(-OFFSET_STEP, OFFSET_STEP, 11)
    fine = _grid(columns, fine_tempos, fine_offsets)
    if fine.max() <= total.max():
        return float(total.max()), float(np.exp(tempos[row])), float(offsets[column])
    row, column = np.unravel_index(int(np.argmax(fine)), fine.shape)
    return float(fine.max()), float(np.exp(fine_tempos[row])), float(fine_offsets[column])


def _misfit(naming: dict[int, str], roots: Sequence[Cell], times: int) -> str | None:
    """A sentence on the division that fits the best naming's timing worst, when it is more
    than MISFIT_SPREADS off (a division seen too early or late, or one overdue and not seen)."""
    _, seen, later, before, what = _timing_events(naming, roots, times)
    _, tempo, offset = _fit(seen, later, before)
    worst, sentence = MISFIT_SPREADS, None
    for (observed, expected, spread), (kind, name, clone, end) in zip(
        seen + later, what, strict=True
    ):
        z = (observed - (offset + tempo * expected)) / (tempo * spread)
        who = f"{name}'s daughters" if clone else name
        if kind == "seen" and abs(z) > worst:
            when = "early" if z < 0 else "late"
            worst, sentence = abs(z), f"{who} would divide at time point {end + 1}, too {when}"
        elif kind == "later" and z > worst:
            worst, sentence = z, f"{who} would not have divided by the last time point"
    return sentence


def _grid(columns: list, log_tempos: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Log-likelihood (tempos x offsets) of the seen, later and before events."""
    tempo = np.exp(log_tempos)[:, None, None]
    offset = offsets[None, :, None]
    total = np.broadcast_to(
        -0.5 * (log_tempos[:, None] / TEMPO_PRIOR) ** 2, (len(log_tempos), len(offsets))
    ).copy()
    for kind, events in zip(("seen", "later", "before"), columns, strict=True):
        if events is None:
            continue
        observed, expected, spread = events
        scale = tempo * spread
        z = (observed - (offset + tempo * expected)) / scale
        if kind == "seen":
            total += (_normal_log_density(z) - np.log(scale)).sum(axis=2)
        elif kind == "later":  # divides after the last time point: expected > observed
            total += log_ndtr(-z).sum(axis=2)
        else:  # the mother divided before the first time point: expected < observed
            total += log_ndtr(z).sum(axis=2)
    return total


def _position_score(
    naming: dict[int, str],
    roots: Sequence[Cell],
    positions: Sequence[Mapping[int, Sequence[float]]],
) -> float:
    """ABa farther than ABp from the P side; EMS nearer the AB side than P2."""
    cells = {name: cell for cell in _walk(roots) if (name := naming.get(id(cell)))}
    score = 0.0
    if "ABa" in cells and "ABp" in cells:
        for p_side in ("P2", "P1"):
            if p_side in cells:
                score += _nearer(positions, cells[p_side], cells["ABp"], cells["ABa"])
                break
    if "EMS" in cells and "P2" in cells:
        ab_side = [cells[name] for name in ("AB", "ABa", "ABp") if name in cells]
        if ab_side:
            score += _nearer(positions, ab_side, cells["EMS"], cells["P2"])
    return score


def _nearer(positions, reference, near: Cell, far: Cell) -> float:
    """log P(`near` is nearer than `far` to `reference`), at the first time all are seen."""
    references = reference if isinstance(reference, list) else [reference]
    for moment in positions:
        ref = [_centre(moment, cell) for cell in references]
        ref = [centre for centre in ref if centre is not None]
        a, b = _centre(moment, near), _centre(moment, far)
        if ref and a is not None and b is not None:
            middle = np.mean(ref, axis=0)
            to_near, to_far = np.linalg.norm(a - middle), np.linalg.norm(b - middle)
            difference = (to_far - to_near) / max(to_far + to_near, 1e-9)
            return float(log_expit(difference / POSITION_SCALE))
    return 0.0


def _centre(moment: Mapping[int, Sequence[float]], cell: Cell) -> np.ndarray | None:
    for track in cell.tracks:
        if track in moment:
            return np.asarray(moment[track], dtype=float)
    return None


def _normal_log_density(z: np.ndarray) -> np.ndarray:
    """log of the standard normal density (scipy.stats would cost the app ~0.1 s of start-up)."""
    return -0.5 * z * z - 0.5 * np.log(2.0 * np.pi)
