"""The cell lineage: who divides into whom and when, from the founder timing table."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

import numpy as np

from devolearn_web.catalogue import LINEAGE_ORDER

# The founder lineages counted, in the order the lineage model reports them.
LINEAGE_KEYS = LINEAGE_ORDER
NEVER = np.inf
# The table counts minutes from the first cleavage; the simulation shows a few minutes of the
# 1-cell stage first so that its clock starts at 0 with one cell.
FIRST_CLEAVAGE_MINUTES = 6.0
# Per-cell cycle-length jitter (log-normal sigma) and per-seed spread of founder division times.
# Real rounds are far from synchronous (AB's 64 -> 128 round spans about 35 min, 300-380 min in
# Sulston's chart); 10% per cycle spreads the simulated rounds alike and best matches the published
# populations by stage (tests/training/test_simulator_lineage_timing.py).
CYCLE_JITTER = 0.10
FOUNDER_JITTER_MINUTES = 0.7
# A seed's overall developmental tempo (temperature differences between recordings).
TEMPO_SPREAD = 0.04


@dataclass(frozen=True)
class FounderTiming:
    """One row of division_timing.csv: a founder cell and how its clone divides, round by round."""

    cell: str
    letter: str
    daughters: tuple[str, ...]
    division_minutes: float
    # Round r of the clone (r = 1 for the founder's daughters) divides cycle_minutes[r - 1] after
    # its birth, a fraction dividing[r - 1] of its cells; later rounds do not divide.
    cycle_minutes: tuple[float, ...]
    dividing: tuple[float, ...]

    @property
    def rounds(self) -> int:
        """How many rounds of the clone divide after the founder."""
        return len(self.cycle_minutes)


@dataclass
class CellTable:
    """Every cell that ever lives, as parallel arrays by cell id (parents before children)."""

    names: list[str]
    letters: list[str]
    parent: np.ndarray  # int32 (n,), -1 for P0
    generation: np.ndarray  # int32 (n,), divisions since P0; volume is 2**-generation of P0's
    birth: np.ndarray  # float64 (n,), minutes
    division: np.ndarray  # float64 (n,), minutes, inf when the cell does not divide
    daughters: np.ndarray  # int32 (n, 2), -1 when none

    def __len__(self) -> int:
        return len(self.names)

    def alive_at(self, t: float) -> np.ndarray:
        """Ids (int64) of the cells alive at minute t: born at or before t, not yet divided."""
        return np.flatnonzero((self.birth <= t) & (t < self.division))


def load_division_timing() -> dict[str, FounderTiming]:
    """The founder timing table shipped with the package, keyed by cell name."""
    text = resources.files(__package__).joinpath("division_timing.csv").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    table = {}
    for row in csv.DictReader(lines):
        cycles = tuple(float(value) for value in row["cycle_minutes"].split())
        dividing = tuple(float(value) for value in row["dividing"].split())
        if len(dividing) != len(cycles):
            raise ValueError(f"{row['cell']}: cycle_minutes and dividing differ in length")
        table[row["cell"]] = FounderTiming(
            cell=row["cell"],
            letter=row["letter"],
            daughters=tuple(row["daughters"].split()),
            division_minutes=float(row["division_minutes"] or "inf"),
            cycle_minutes=cycles,
            dividing=dividing,
        )
    return table


def build_lineage(
    rng: np.random.Generator, end_minutes: float, timing: dict[str, FounderTiming] | None = None
) -> CellTable:
    """Grow the lineage tree from P0 until end_minutes, with per-seed timing jitter."""
    timing = timing or load_division_timing()
    tempo = float(np.exp(rng.normal(0.0, TEMPO_SPREAD)))
    founder_time = {
        name: FIRST_CLEAVAGE_MINUTES
        + tempo * (row.division_minutes + rng.normal(0.0, FOUNDER_JITTER_MINUTES) * (name != "P0"))
        for name, row in timing.items()
    }
    builder = _TableBuilder()
    rounds_dividing = _RoundsDividing(rng)
    # Each queue entry: (name, parent id, birth, founder row of its clone, rounds done in clone).
    queue: list[tuple[str, int, float, FounderTiming, int]] = [("P0", -1, 0.0, timing["P0"], 0)]
    while queue:
        name, parent, birth, clone, rounds = queue.pop(0)
        if name in timing:
            clone, rounds = timing[name], 0
            division = max(founder_time[name], birth + 3.0)
        elif rounds <= clone.rounds and rounds_dividing.divides(clone, rounds):
            cycle = clone.cycle_minutes[rounds - 1]
            division = birth + tempo * cycle * float(np.exp(rng.normal(0.0, CYCLE_JITTER)))
        else:
            division = NEVER
        cell_id = builder.add(name, clone.letter, parent, birth, division)
        if division > end_minutes:
            builder.division[cell_id] = NEVER
            continue
        names = clone.daughters if clone.daughters else (name + "a", name + "p")
        for daughter in names:
            if daughter not in timing:
                rounds_dividing.born(clone, rounds + 1)
            queue.append((daughter, cell_id, division, clone, rounds + 1))
    return builder.build()


class _RoundsDividing:
    """Which cells of a clone's round divide: exactly round(fraction * n) of its n cells, at random.

    The lineage is built breadth first, so every cell of a round is born before the first of them
    is asked about.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.born_count: dict[tuple[str, int], int] = {}
        self.choices: dict[tuple[str, int], np.ndarray] = {}
        self.asked: dict[tuple[str, int], int] = {}

    def born(self, clone: FounderTiming, round_: int) -> None:
        key = (clone.cell, round_)
        self.born_count[key] = self.born_count.get(key, 0) + 1

    def divides(self, clone: FounderTiming, round_: int) -> bool:
        fraction = clone.dividing[round_ - 1]
        if fraction >= 1.0:
            return True
        key = (clone.cell, round_)
        if key not in self.choices:
            n = self.born_count.get(key, 0)
            chosen = np.zeros(n, dtype=bool)
            chosen[self.rng.permutation(n)[: round(fraction * n)]] = True
            self.choices[key] = chosen
        index = self.asked.get(key, 0)
        self.asked[key] = index + 1
        return bool(self.choices[key][index])


class _TableBuilder:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.letters: list[str] = []
        self.parent: list[int] = []
        self.birth: list[float] = []
        self.division: list[float] = []

    def add(self, name: str, letter: str, parent: int, birth: float, division: float) -> int:
        self.names.append(name)
        self.letters.append(letter)
        self.parent.append(parent)
        self.birth.append(birth)
        self.division.append(division)
        return len(self.names) - 1

    def build(self) -> CellTable:
        n = len(self.names)
        parent = np.asarray(self.parent, dtype=np.int32)
        generation = np.zeros(n, dtype=np.int32)
        daughters = np.full((n, 2), -1, dtype=np.int32)
        for cell_id in range(1, n):
            mother = parent[cell_id]
            generation[cell_id] = generation[mother] + 1
            slot = 0 if daughters[mother, 0] < 0 else 1
            daughters[mother, slot] = cell_id
        return CellTable(
            names=self.names,
            letters=self.letters,
            parent=parent,
            generation=generation,
            birth=np.asarray(self.birth, dtype=np.float64),
            division=np.asarray(self.division, dtype=np.float64),
            daughters=daughters,
        )


def count_by_lineage(letters: list[str], ids: np.ndarray) -> dict[str, int]:
    """Living cells per founder lineage, keys in the order A, E, M, P, C, D, Z."""
    counts = dict.fromkeys(LINEAGE_KEYS, 0)
    for cell_id in ids:
        counts[letters[cell_id]] += 1
    return counts


def time_when_lineage_reaches(cells: CellTable, letter: str, n: int) -> float:
    """The first minute at which the lineage holds at least n living cells (inf if never)."""
    member = np.array([cell_letter == letter for cell_letter in cells.letters])
    events = np.concatenate([cells.birth[member], cells.division[member]])
    change = np.concatenate([np.ones(member.sum()), -np.ones(member.sum())])
    # Merge all events of one instant: a division removes the mother as its daughters appear.
    instants, inverse = np.unique(events, return_inverse=True)
    counts = np.cumsum(np.bincount(inverse, weights=change, minlength=len(instants)))
    reached = np.flatnonzero(counts >= n)
    return float(instants[reached[0]]) if reached.size else float("inf")
