"""The cell lineage: who divides into whom and when, from the founder timing table."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

import numpy as np

LINEAGE_KEYS = ("A", "E", "M", "P", "C", "D", "Z")
NEVER = np.inf
# The table counts minutes from the first cleavage; the simulation shows a few minutes of the
# 1-cell stage first so that its clock starts at 0 with one cell.
FIRST_CLEAVAGE_MINUTES = 6.0
# Per-cell cycle-length jitter (log-normal sigma) and per-seed spread of founder division times.
CYCLE_JITTER = 0.035
FOUNDER_JITTER_MINUTES = 0.7
# A seed's overall developmental tempo (temperature differences between recordings).
TEMPO_SPREAD = 0.04


@dataclass(frozen=True)
class FounderTiming:
    """One row of division_timing.csv: a founder cell and how its clone divides."""

    cell: str
    letter: str
    daughters: tuple[str, ...]
    division_minutes: float
    first_cycle_minutes: float
    cycle_growth: float
    max_rounds: int


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
    rows = csv.DictReader(text.splitlines())
    table = {}
    for row in rows:
        table[row["cell"]] = FounderTiming(
            cell=row["cell"],
            letter=row["letter"],
            daughters=tuple(row["daughters"].split()),
            division_minutes=float(row["division_minutes"] or "inf"),
            first_cycle_minutes=float(row["first_cycle_minutes"] or "nan"),
            cycle_growth=float(row["cycle_growth"] or "nan"),
            max_rounds=int(row["max_rounds"]),
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
    # Each queue entry: (name, parent id, birth, founder row of its clone, rounds done in clone).
    queue: list[tuple[str, int, float, FounderTiming, int]] = [("P0", -1, 0.0, timing["P0"], 0)]
    while queue:
        name, parent, birth, clone, rounds = queue.pop(0)
        if name in timing:
            clone, rounds = timing[name], 0
            division = max(founder_time[name], birth + 3.0)
        elif rounds < clone.max_rounds:
            cycle = clone.first_cycle_minutes * clone.cycle_growth ** (rounds - 1)
            division = birth + tempo * cycle * float(np.exp(rng.normal(0.0, CYCLE_JITTER)))
        else:
            division = NEVER
        if clone.max_rounds == 0:
            division = NEVER
        cell_id = builder.add(name, clone.letter, parent, birth, division)
        if division > end_minutes:
            builder.division[cell_id] = NEVER
            continue
        if clone.daughters:
            names = clone.daughters
        else:
            names = (name + "a", name + "p")
        for daughter in names:
            queue.append((daughter, cell_id, division, clone, rounds + 1))
    return builder.build()


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
