"""ASE calculator for any mlpot :class:`~mlpot.models.potential.Potential`."""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from mlpot.data.batch import AtomsBatch
from mlpot.data.neighbors import NeighborList, neighbor_list
from mlpot.errors import ParameterError
from mlpot.models.potential import Potential, compute_properties


class MlpotCalculator(Calculator):
    """Energy, free energy, forces, stress and per-atom energies from an mlpot potential.

    Units follow ASE: eV, eV/Å, eV/Å³. Stress is available for structures periodic in all three
    directions.

    ``skin`` (Å): for potentials whose results do not change when the neighbour list holds pairs
    beyond their cutoff (``potential.accepts_longer_neighbor_lists``), the list is built with
    ``cutoff + skin`` and reused, as in LAMMPS, until an atom has moved more than ``skin / 2``
    or the cell, periodicity or atoms change. The results are the same as with a fresh list;
    ``skin=0`` builds a new list at every call.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, potential: Potential, skin: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not skin >= 0:
            raise ParameterError(f"neighbour-list skin must be >= 0 Å, got {skin}")
        self.potential = potential.eval()
        self.skin = float(skin) if potential.accepts_longer_neighbor_lists else 0.0
        self._list_state: tuple | None = None  # (numbers, pbc, cell, positions, list)
        self.neighbor_list_builds = 0

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """What changed since the last calculation: numbers, positions, cell, pbc.

        Exact comparisons (ASE's generic check compares every array with ``isclose``, about
        0.5 ms per call); magnetic moments and charges do not enter mlpot potentials.
        """
        if self.atoms is None:
            return list(all_changes)
        old, changes = self.atoms, []
        if len(old) != len(atoms) or not np.array_equal(old.numbers, atoms.numbers):
            return ["positions", "numbers", "cell", "pbc"]
        if not np.array_equal(old.positions, atoms.positions):
            changes.append("positions")
        if not np.array_equal(old.cell.array, atoms.cell.array):
            changes.append("cell")
        if not np.array_equal(old.pbc, atoms.pbc):
            changes.append("pbc")
        return changes

    def _neighbor_list(self, batch: AtomsBatch) -> NeighborList:
        """The cached list while every atom stays within skin / 2 of where it was built."""
        atoms = self.atoms
        state = self._list_state
        if self.skin > 0 and state is not None:
            numbers, pbc, cell, positions, cached = state
            if (
                len(positions) == len(atoms)
                and np.array_equal(numbers, atoms.numbers)
                and np.array_equal(pbc, atoms.pbc)
                and np.array_equal(cell, atoms.cell.array)
            ):
                moved2 = ((atoms.positions - positions) ** 2).sum(axis=1)
                if len(moved2) == 0 or moved2.max() < (0.5 * self.skin) ** 2:
                    return cached
        nl = neighbor_list(batch, self.potential.cutoff + self.skin)
        self.neighbor_list_builds += 1
        if self.skin > 0:
            self._list_state = (
                atoms.numbers.copy(),
                atoms.pbc.copy(),
                atoms.cell.array.copy(),
                atoms.positions.copy(),
                nl,
            )
        return nl

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        batch = AtomsBatch.from_atoms(self.atoms, dtype=self.potential.dtype)
        want_stress = "stress" in properties and bool(self.atoms.pbc.all())
        nl = self._neighbor_list(batch)  # compute_properties checks the elements
        out = compute_properties(self.potential, batch, nl, forces=True, stress=want_stress)
        energies = out["atomic_energies"].detach().cpu().double().numpy()
        energy = float(out["energy"][0].detach())
        if out["energy"].dtype != torch.float64:  # a float32 model: sum its atoms in float64
            energy = float(energies.sum())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": energies,
            "forces": out["forces"].detach().cpu().double().numpy(),
        }
        if want_stress:
            stress = out["stress"][0].detach().cpu().double().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
        elif "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress needs a cell periodic in all directions")
