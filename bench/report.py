"""The benchmark's one table: rows of figures with what they are compared with and the target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One measured figure; `ratio` is figure / compared figure, `met` None when no target."""

    section: str
    what: str
    median: str
    p95: str = ""
    compared_with: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


HEADERS = ("section", "measurement", "median", "p95", "compared with", "ratio", "target", "met")


def format_ms(value: float) -> str:
    """Milliseconds as text: one decimal below 100 ms, whole above."""
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


def format_ratio(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def format_met(met: bool | None) -> str:
    return "" if met is None else ("yes" if met else "NO")


def markdown_table(rows: list[Row]) -> str:
    """The rows as one Markdown table (also readable in a terminal)."""
    cells = [
        (
            row.section,
            row.what,
            row.median,
            row.p95,
            row.compared_with,
            format_ratio(row.ratio),
            row.target,
            format_met(row.met),
        )
        for row in rows
    ]
    widths = [
        max(len(header), *(len(line[i]) for line in cells)) for i, header in enumerate(HEADERS)
    ]

    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(HEADERS), separator, *(line(values) for values in cells)])
