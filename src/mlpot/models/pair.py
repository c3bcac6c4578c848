"""Empirical pair potentials on the common :class:`Potential` interface."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mlpot.data.batch import AtomsBatch
from mlpot.data.neighbors import NeighborList
from mlpot.errors import ParameterError
from mlpot.models.potential import Potential, register_potential


@register_potential
class LennardJones(Potential):
    """Single-species 12-6 Lennard-Jones, shifted to zero at the cutoff.

    E = ½ Σ_i Σ_j 4ε[(σ/r)¹² − (σ/r)⁶ − (σ/r_c)¹² + (σ/r_c)⁶], ε in eV, σ and r_c in Å.
    """

    accepts_longer_neighbor_lists = True  # pairs beyond the cutoff are masked

    def __init__(
        self, epsilon: float, sigma: float, cutoff: float, elements: Sequence[int] = (18,)
    ):
        if not (epsilon > 0 and sigma > 0 and cutoff > 0):
            raise ParameterError("Lennard-Jones epsilon, sigma and cutoff must all be positive")
        super().__init__(cutoff, elements)
        self.epsilon = float(epsilon)
        self.sigma = float(sigma)

    def forward(self, batch: AtomsBatch, nl: NeighborList, vectors: torch.Tensor) -> torch.Tensor:
        r = torch.linalg.norm(vectors, dim=1)
        inside = r < self.cutoff
        sr6 = (self.sigma / r.clamp_min(1e-6)) ** 6
        sc6 = (self.sigma / self.cutoff) ** 6
        pair = 4 * self.epsilon * (sr6 * sr6 - sr6 - (sc6 * sc6 - sc6))
        pair = torch.where(inside, pair, torch.zeros_like(pair))
        atomic = torch.zeros(batch.positions.shape[0], dtype=vectors.dtype, device=vectors.device)
        return atomic.index_add(0, nl.centers, 0.5 * pair)

    def get_config(self) -> dict:
        return {
            "epsilon": self.epsilon,
            "sigma": self.sigma,
            "cutoff": self.cutoff,
            "elements": self.elements,
        }
