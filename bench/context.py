"""What every benchmark section needs to know: folders, repeat counts, threads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.models import float_file, quantized_file
from devolearn_web.catalogue import MODEL_NAMES


@dataclass(frozen=True)
class BenchContext:
    """Settings of one benchmark run; `baseline_dir` serves the same models in float32 only."""

    models_dir: Path
    baseline_dir: Path
    samples_dir: Path
    quick: bool
    threads: int

    @property
    def repeats(self) -> int:
        return 5 if self.quick else 20

    @property
    def warmup(self) -> int:
        return 1 if self.quick else 3

    @property
    def rounds(self) -> int:
        """Repeats of the slow figures (cold start, movie, stack, throughput windows)."""
        return 1 if self.quick else 2

    @property
    def window_seconds(self) -> float:
        """Length of one throughput window under load."""
        return 5.0 if self.quick else 10.0

    @property
    def has_int8(self) -> bool:
        return any(quantized_file(self.models_dir, name) for name in MODEL_NAMES)

    def served_file(self, name: str):
        """The file the app serves for a model: the int8 one when its card says so."""
        return quantized_file(self.models_dir, name) or float_file(self.models_dir, name)

    def served_label(self, name: str) -> str:
        return "int8" if quantized_file(self.models_dir, name) else "float32"
