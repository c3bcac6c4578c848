"""Structures in memory, neighbour lists and reading/writing data files."""

from mlpot.data.batch import REF_ENERGY, REF_FORCES, REF_STRESS, AtomsBatch
from mlpot.data.neighbors import NeighborList, neighbor_list, pair_vectors

__all__ = [
    "AtomsBatch",
    "NeighborList",
    "neighbor_list",
    "pair_vectors",
    "REF_ENERGY",
    "REF_FORCES",
    "REF_STRESS",
]
