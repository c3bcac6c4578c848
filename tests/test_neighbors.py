"""Neighbour lists agree with ASE's neighbor_list, including small and triclinic cells."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list

from mlpot.data import AtomsBatch, neighbor_list, pair_vectors
from mlpot.errors import DataError


def random_structure(rng, n, cell, pbc):
    positions = rng.random((n, 3)) @ np.asarray(cell) if np.any(pbc) else rng.random((n, 3)) * 4
    return Atoms(numbers=[14] * n, positions=positions, cell=cell, pbc=pbc)


def pair_set(i, j, shifts, d):
    return sorted(
        (int(a), int(b), tuple(int(x) for x in s), round(float(r), 8))
        for a, b, s, r in zip(i, j, shifts, d, strict=True)
    )


@pytest.mark.parametrize(
    "cell,pbc,cutoff",
    [
        (np.diag([6.0, 7.0, 8.0]), True, 3.5),
        (np.diag([2.0, 2.5, 3.0]), True, 5.0),  # cell smaller than the cutoff
        ([[3.0, 0.0, 0.0], [1.4, 2.6, 0.0], [0.7, 0.9, 2.8]], True, 6.0),  # small triclinic
        ([[5.0, 0.0, 0.0], [2.0, 4.5, 0.0], [1.0, 1.0, 4.0]], [True, True, False], 4.0),
        (np.zeros((3, 3)), False, 3.0),  # molecule without cell
    ],
)
def test_neighbor_list_matches_ase(cell, pbc, cutoff):
    rng = np.random.default_rng(7)
    structures = [random_structure(rng, n, cell, pbc) for n in (5, 9)]
    batch = AtomsBatch.from_atoms(structures)
    nl = neighbor_list(batch, cutoff)
    d = torch.linalg.norm(pair_vectors(batch, nl), dim=1).numpy()
    offset = 0
    for s, atoms in enumerate(structures):
        i, j, S, dist = ase_neighbor_list("ijSd", atoms, cutoff)
        mask = batch.structure_index[nl.centers].numpy() == s
        ours = pair_set(
            nl.centers.numpy()[mask] - offset,
            nl.neighbors.numpy()[mask] - offset,
            nl.shifts.numpy()[mask],
            d[mask],
        )
        assert ours == pair_set(i, j, S, dist)
        offset += len(atoms)
    # ordered by centre (the descriptor kernels read memory in that order)
    assert np.all(np.diff(nl.centers.numpy()) >= 0)


def test_pair_vectors_differentiable_in_positions_and_cell():
    atoms = Atoms("Si2", positions=[[0, 0, 0], [1.3, 1.3, 1.3]], cell=np.eye(3) * 2.7, pbc=True)
    batch = AtomsBatch.from_atoms([atoms])
    nl = neighbor_list(batch, 3.0)
    pos = batch.positions.clone().requires_grad_(True)
    cell = batch.cell.clone().requires_grad_(True)
    pair_vectors(batch, nl, pos, cell).norm(dim=1).sum().backward()
    assert pos.grad is not None and cell.grad.abs().sum() > 0


def test_zero_volume_periodic_cell_is_reported():
    atoms = Atoms("Si2", positions=[[0, 0, 0], [1, 1, 1]], cell=[[2, 0, 0], [4, 0, 0], [0, 0, 2]])
    atoms.pbc = True
    with pytest.raises(DataError, match="structure 0: the cell has zero volume"):
        neighbor_list(AtomsBatch.from_atoms([atoms]), 3.0)


def test_float32_batch():
    atoms = Atoms("Si2", positions=[[0, 0, 0], [1.3, 1.3, 1.3]], cell=np.eye(3) * 2.7, pbc=True)
    batch = AtomsBatch.from_atoms([atoms], dtype=torch.float32)
    nl = neighbor_list(batch, 3.0)
    assert pair_vectors(batch, nl).dtype == torch.float32
    assert batch.to(torch.float64).positions.dtype == torch.float64
