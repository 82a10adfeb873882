"""The digital C. elegans embryo: lineage, cell packing and microscope images for training."""

from devolearn_web.training.simulator.datasets import (
    write_lineage_dataset,
    write_membrane_dataset,
    write_nucleus_dataset,
)
from devolearn_web.training.simulator.embryo import Embryo, simulate_embryo
from devolearn_web.training.simulator.lineage import LINEAGE_KEYS

__all__ = [
    "LINEAGE_KEYS",
    "Embryo",
    "simulate_embryo",
    "write_lineage_dataset",
    "write_membrane_dataset",
    "write_nucleus_dataset",
]
