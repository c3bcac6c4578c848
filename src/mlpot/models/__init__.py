"""Potentials: modules mapping a batch of structures to per-atom energies."""

from mlpot.models.pair import LennardJones
from mlpot.models.potential import Potential, compute_properties, load_potential, register_potential

__all__ = [
    "Potential",
    "compute_properties",
    "load_potential",
    "register_potential",
    "LennardJones",
]
