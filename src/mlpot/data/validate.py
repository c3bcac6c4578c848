"""Checks of a data set before use: missing or non-finite values, overlapping atoms, bad cells.

:func:`validate_structures` raises a :class:`~mlpot.errors.DataError` at the first problem, with a
message that names the source file, the structure index (0-based) and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np
import vesin

from mlpot.data.batch import REF_ENERGY, REF_FORCES, REF_STRESS
from mlpot.errors import DataError


def _where(source: str, index: int) -> str:
    return f"{source}: structure {index} (0-based)"


def _check_finite(values, what: str, where: str, fix: str) -> None:
    array = np.asarray(values, dtype=float)
    bad = ~np.isfinite(array)
    if bad.any():
        first = np.argwhere(bad)[0].tolist()
        raise DataError(
            f"{where}: {what} contains NaN or inf ({int(bad.sum())} value(s), first at index "
            f"{first}); {fix}"
        )


def _check_cell(atoms: ase.Atoms, where: str) -> None:
    cell = np.asarray(atoms.get_cell()[:], dtype=float)
    _check_finite(cell, "the cell", where, "fix or remove this structure")
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    if pbc.any():
        periodic_vectors = cell[pbc]
        rank = np.linalg.matrix_rank(periodic_vectors, tol=1e-8) if len(periodic_vectors) else 0
        if rank < int(pbc.sum()):
            raise DataError(
                f"{where}: the cell has zero volume along its periodic directions "
                f"(cell={cell.tolist()}, pbc={pbc.tolist()}); give the cell vectors or set "
                "pbc=False for a molecule"
            )


def closest_pair(atoms: ase.Atoms, cutoff: float) -> tuple[int, int, float] | None:
    """The closest pair (i, j, distance in Å) among pairs closer than ``cutoff`` Å, periodic
    images included, or None."""
    if len(atoms) < 2 and not atoms.get_pbc().any():
        return None
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    cell = np.asarray(atoms.get_cell()[:], dtype=float) if pbc.any() else np.zeros((3, 3))
    # vesin's cell list gets slow for tiny cutoffs (many bins): search within at least 1 Å.
    calculator = vesin.NeighborList(cutoff=max(float(cutoff), 1.0), full_list=False)
    i, j, d = calculator.compute(atoms.get_positions(), cell, pbc.tolist(), "ijd")
    close = d < cutoff
    i, j, d = i[close], j[close], d[close]
    if len(d) == 0:
        return None
    k = int(np.argmin(d))
    return int(i[k]), int(j[k]), float(d[k])


def validate_structure(
    atoms: ase.Atoms,
    index: int = 0,
    source: str = "<memory>",
    require_energy: bool = False,
    require_forces: bool = False,
    min_distance: float = 0.1,
) -> None:
    """Check one structure; see :func:`validate_structures`."""
    where = _where(source, index)
    n = len(atoms)
    if n == 0:
        raise DataError(f"{where} has no atoms; remove it from the data set")
    _check_finite(atoms.get_positions(), "the positions", where, "fix or remove this structure")
    _check_cell(atoms, where)

    if REF_ENERGY in atoms.info:
        try:
            energy = float(np.asarray(atoms.info[REF_ENERGY], dtype=float).reshape(()))
        except (TypeError, ValueError):
            raise DataError(
                f"{where}: the reference energy {atoms.info[REF_ENERGY]!r} is not one number"
            ) from None
        if not np.isfinite(energy):
            raise DataError(
                f"{where}: the reference energy is {energy}; fix or remove this structure"
            )
    elif require_energy:
        raise DataError(
            f"{where} has no reference energy; training needs one for every structure: give "
            "the right --energy-key (info key of the energies) or remove this structure"
        )

    if REF_FORCES in atoms.arrays:
        forces = np.asarray(atoms.arrays[REF_FORCES], dtype=float)
        if forces.shape != (n, 3):
            raise DataError(
                f"{where}: the reference forces have shape {forces.shape}, expected ({n}, 3) "
                "for its atoms; check the --forces-key"
            )
        _check_finite(forces, "the reference forces", where, "fix or remove this structure")
    elif require_forces:
        raise DataError(
            f"{where} has no reference forces; give the right --forces-key (per-atom array "
            "of the forces), remove this structure, or train on energies only"
        )

    if REF_STRESS in atoms.info:
        stress = np.asarray(atoms.info[REF_STRESS], dtype=float)
        if stress.shape != (3, 3):
            raise DataError(
                f"{where}: the reference stress has shape {stress.shape}, expected (3, 3) eV/Å³"
            )
        _check_finite(stress, "the reference stress", where, "fix or remove this structure")

    if min_distance > 0:
        pair = closest_pair(atoms, min_distance)
        if pair is not None:
            i, j, distance = pair
            raise DataError(
                f"{where}: atoms {i} and {j} (0-based) are {distance:.4g} Å apart (periodic "
                f"images included), closer than {min_distance} Å; duplicate atoms or wrong "
                "units (Bohr read as Å?): fix or remove this structure"
            )


def validate_structures(
    structures: Sequence[ase.Atoms],
    source: str = "<memory>",
    require_energy: bool = False,
    require_forces: bool = False,
    min_distance: float = 0.1,
) -> None:
    """Check a data set; raise DataError at the first problem.

    Checks: the data set is not empty; every structure has atoms, finite positions and cell,
    a cell with non-zero volume along its periodic directions; reference energies, forces
    (shape (n_atoms, 3)) and stress (3×3) are finite where present, and present when
    ``require_energy`` / ``require_forces``; no two atoms are closer than ``min_distance`` Å
    (periodic images included; 0 disables the check).
    """
    structures = list(structures)
    if not structures:
        raise DataError(f"{source}: empty data set (no structures); check the file and --format")
    for index, atoms in enumerate(structures):
        if not isinstance(atoms, ase.Atoms):
            raise DataError(
                f"{_where(source, index)} is a {type(atoms).__name__}, not an ase.Atoms"
            )
        validate_structure(
            atoms,
            index=index,
            source=source,
            require_energy=require_energy,
            require_forces=require_forces,
            min_distance=min_distance,
        )
