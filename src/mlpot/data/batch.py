"""A batch of structures as flat tensors, without padding.

Atoms of all structures are concatenated; ``structure_index[a]`` says which structure atom ``a``
belongs to. Units: Å for lengths, eV for energies, eV/Å for forces, eV/Å³ for stress (ASE's sign
convention: stress = (1/V) ∂E/∂ε, positive under tension).

Reference values read from data files live on each ``ase.Atoms`` under the keys
:data:`REF_ENERGY` (``atoms.info``, eV), :data:`REF_FORCES` (``atoms.arrays``, eV/Å) and
:data:`REF_STRESS` (``atoms.info``, 3×3 eV/Å³), so that they never clash with an attached
calculator's results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import ase
import numpy as np
import torch

from mlpot.errors import DataError

REF_ENERGY = "ref_energy"
REF_FORCES = "ref_forces"
REF_STRESS = "ref_stress"


@dataclass
class AtomsBatch:
    """Structures concatenated into flat tensors.

    Attributes:
        positions: (N, 3) Cartesian positions, Å.
        numbers: (N,) atomic numbers.
        cell: (S, 3, 3) cell vectors as rows, Å (zeros for a molecule without cell).
        pbc: (S, 3) periodic directions.
        structure_index: (N,) index of each atom's structure.
        n_atoms: (S,) number of atoms per structure.
        energy: (S,) reference total energies, eV, or None.
        forces: (N, 3) reference forces, eV/Å, or None.
        stress: (S, 3, 3) reference stress, eV/Å³, or None (NaN rows where a structure lacks it).
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    structure_index: torch.Tensor
    n_atoms: torch.Tensor
    energy: torch.Tensor | None = None
    forces: torch.Tensor | None = None
    stress: torch.Tensor | None = None

    @property
    def n_structures(self) -> int:
        return int(self.n_atoms.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device

    def volume(self) -> torch.Tensor:
        """(S,) cell volumes, Å³ (|det cell|; zero for molecules)."""
        return torch.linalg.det(self.cell).abs()

    def unknown_elements(self, known: Sequence[int]) -> tuple[list[int], int]:
        """Atomic numbers of the batch outside ``known`` (sorted) and the first structure that
        holds one; ``([], -1)`` when every atom's element is known."""
        numbers = self.numbers
        known_tensor = torch.as_tensor(list(known), dtype=numbers.dtype, device=numbers.device)
        outside = ~torch.isin(numbers, known_tensor)
        if not bool(outside.any()):
            return [], -1
        return sorted(set(numbers[outside].tolist())), int(self.structure_index[outside][0])

    def replace(self, **changes) -> AtomsBatch:
        """A shallow copy with some fields replaced."""
        return replace(self, **changes)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        """Move to a device and/or cast floating-point fields to ``dtype``."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                out[f.name] = None
            elif value.is_floating_point():
                out[f.name] = value.to(device=device, dtype=dtype)
            else:
                out[f.name] = value.to(device=device)
        return AtomsBatch(**out)

    @classmethod
    def from_atoms(
        cls,
        structures: ase.Atoms | Sequence[ase.Atoms],
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> AtomsBatch:
        """Build a batch from one or several ``ase.Atoms``.

        Reference energy/forces/stress are taken from ``REF_ENERGY``/``REF_FORCES``/``REF_STRESS``
        when *every* structure has them (stress: when any has it, NaN elsewhere).
        """
        if isinstance(structures, ase.Atoms):
            structures = [structures]
        structures = list(structures)
        if not structures:
            raise DataError("empty data set: no structures to put in a batch")
        n_atoms = np.array([len(a) for a in structures], dtype=np.int64)
        positions = np.concatenate([a.get_positions() for a in structures]).reshape(-1, 3)
        numbers = np.concatenate([a.get_atomic_numbers() for a in structures]).astype(np.int64)
        cell = np.stack([np.asarray(a.get_cell()[:], dtype=float) for a in structures])
        pbc = np.stack([np.asarray(a.get_pbc(), dtype=bool) for a in structures])
        structure_index = np.repeat(np.arange(len(structures)), n_atoms)

        def tensor(x):
            return torch.as_tensor(x, dtype=dtype, device=device)

        energy = forces = stress = None
        if all(REF_ENERGY in a.info for a in structures):
            energy = tensor(np.array([float(a.info[REF_ENERGY]) for a in structures]))
        if all(REF_FORCES in a.arrays for a in structures):
            forces = tensor(np.concatenate([a.arrays[REF_FORCES] for a in structures]))
        if any(REF_STRESS in a.info for a in structures):
            stress = tensor(
                np.stack(
                    [
                        np.asarray(a.info[REF_STRESS], dtype=float).reshape(3, 3)
                        if REF_STRESS in a.info
                        else np.full((3, 3), np.nan)
                        for a in structures
                    ]
                )
            )
        return cls(
            positions=tensor(positions),
            numbers=torch.as_tensor(numbers, device=device),
            cell=tensor(cell),
            pbc=torch.as_tensor(pbc, device=device),
            structure_index=torch.as_tensor(structure_index, device=device),
            n_atoms=torch.as_tensor(n_atoms, device=device),
            energy=energy,
            forces=forces,
            stress=stress,
        )

    def to_atoms(self) -> list[ase.Atoms]:
        """Back to a list of ``ase.Atoms`` (with reference values under the REF_* keys)."""
        out = []
        offsets = np.concatenate([[0], np.cumsum(self.n_atoms.cpu().numpy())])
        for s in range(self.n_structures):
            lo, hi = offsets[s], offsets[s + 1]
            atoms = ase.Atoms(
                numbers=self.numbers[lo:hi].cpu().numpy(),
                positions=self.positions[lo:hi].detach().cpu().double().numpy(),
                cell=self.cell[s].detach().cpu().double().numpy(),
                pbc=self.pbc[s].cpu().numpy(),
            )
            if self.energy is not None:
                atoms.info[REF_ENERGY] = float(self.energy[s])
            if self.forces is not None:
                atoms.arrays[REF_FORCES] = self.forces[lo:hi].detach().cpu().double().numpy()
            if self.stress is not None and not torch.isnan(self.stress[s]).any():
                atoms.info[REF_STRESS] = self.stress[s].detach().cpu().double().numpy()
            out.append(atoms)
        return out
