"""Reading and writing structure files with reference energies, forces and stress.

:func:`read_structures` reads anything ASE reads (extxyz, VASP OUTCAR / vasprun.xml, XSF, ASE db,
...) and n2p2 ``input.data``. Reference values end up under ``atoms.info["ref_energy"]`` (eV),
``atoms.arrays["ref_forces"]`` (eV/Å) and ``atoms.info["ref_stress"]`` (3×3, eV/Å³, ASE sign
convention: positive under tension); these keys are authoritative, the calculator ASE attached is
removed. :func:`summarize` is the text of ``mlpot info``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import ase
import ase.io
import numpy as np
from ase.stress import voigt_6_to_full_3x3_stress

from mlpot._atomic import atomic_output
from mlpot.data.batch import REF_ENERGY, REF_FORCES, REF_STRESS
from mlpot.data.validate import validate_structures
from mlpot.errors import DataError
from mlpot.interop.n2p2_data import read_n2p2_data, unit_factors, write_n2p2_data

# Keys looked up, in this order, when no key is given (after the calculator's results).
ENERGY_KEYS = ("energy", "Energy", "REF_energy", "dft_energy", "DFT_energy", "total_energy")
FORCES_KEYS = ("forces", "REF_forces", "dft_forces", "DFT_forces", "force")
STRESS_KEYS = ("stress", "REF_stress", "dft_stress", "DFT_stress")
VIRIAL_KEYS = ("virial", "REF_virial", "dft_virial", "DFT_virial", "virials")


def is_n2p2_file(path: str | os.PathLike, format: str | None = None) -> bool:
    """True for format "n2p2", or a file named ``input.data`` / ``*.data`` with no format."""
    if format is not None:
        return format.lower() in ("n2p2", "input.data")
    name = Path(path).name
    return name == "input.data" or name.endswith(".data")


def _as_stress_3x3(value, what: str) -> np.ndarray:
    """3×3 array from a 3×3, 9- or Voigt-6 (xx yy zz yz xz xy) value."""
    array = np.asarray(value, dtype=float)
    if array.shape == (3, 3):
        return array.copy()
    if array.size == 9:
        return array.reshape(3, 3).copy()
    if array.size == 6:
        return voigt_6_to_full_3x3_stress(array.reshape(6))
    raise DataError(f"{what} has {array.size} values; expected 6 (Voigt), 9 or 3×3")


def _virial_to_stress(atoms: ase.Atoms, virial, what: str) -> np.ndarray:
    """stress = −virial / V (eV/Å³) for a virial in eV."""
    virial = _as_stress_3x3(virial, what)
    volume = abs(float(np.linalg.det(atoms.get_cell()[:]))) if atoms.get_pbc().all() else 0.0
    if volume <= 0:
        raise DataError(
            f"{what}: a virial needs a periodic cell with a volume to convert to stress; "
            "this structure has none"
        )
    return -virial / volume


def _pop_reference(
    atoms: ase.Atoms,
    energy_key: str | None,
    forces_key: str | None,
    stress_key: str | None,
    virial_key: str | None,
    where: str,
) -> None:
    """Move reference values from the calculator / info / arrays to the REF_* keys."""
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    info, arrays = atoms.info, atoms.arrays

    energy = None
    if energy_key is not None:
        if energy_key in info:
            energy = info[energy_key]
        elif energy_key in results:
            energy = results[energy_key]
    else:
        if "energy" in results:
            energy = results["energy"]
        elif "free_energy" in results:
            energy = results["free_energy"]
        else:
            energy = next((info[k] for k in ENERGY_KEYS if k in info), None)
        if energy is None and REF_ENERGY in info:
            energy = info[REF_ENERGY]
    if energy is not None:
        try:
            info[REF_ENERGY] = float(np.asarray(energy, dtype=float).reshape(()))
        except (TypeError, ValueError):
            raise DataError(f"{where}: the energy {energy!r} is not one number") from None

    forces = None
    if forces_key is not None:
        if forces_key in arrays:
            forces = arrays[forces_key]
        elif forces_key in results:
            forces = results[forces_key]
    else:
        if "forces" in results:
            forces = results["forces"]
        else:
            forces = next((arrays[k] for k in FORCES_KEYS if k in arrays), None)
        if forces is None and REF_FORCES in arrays:
            forces = arrays[REF_FORCES]
    if forces is not None:
        forces = np.array(forces, dtype=float)
        if forces.shape != (len(atoms), 3):
            raise DataError(
                f"{where}: the forces have shape {forces.shape}, expected ({len(atoms)}, 3)"
            )
        arrays[REF_FORCES] = forces

    stress = None
    if virial_key is not None:
        if virial_key in info:
            stress = _virial_to_stress(atoms, info[virial_key], f"{where}: virial {virial_key!r}")
    elif stress_key is not None:
        if stress_key in info:
            stress = _as_stress_3x3(info[stress_key], f"{where}: stress {stress_key!r}")
        elif stress_key in results:
            stress = _as_stress_3x3(results[stress_key], f"{where}: stress {stress_key!r}")
    else:
        if "stress" in results:
            stress = _as_stress_3x3(results["stress"], f"{where}: stress")
        else:
            key = next((k for k in STRESS_KEYS if k in info), None)
            if key is not None:
                stress = _as_stress_3x3(info[key], f"{where}: stress {key!r}")
            else:
                key = next((k for k in VIRIAL_KEYS if k in info), None)
                if key is not None:
                    stress = _virial_to_stress(atoms, info[key], f"{where}: virial {key!r}")
        if stress is None and REF_STRESS in info:
            stress = _as_stress_3x3(info[REF_STRESS], f"{where}: stress {REF_STRESS!r}")
    if stress is not None:
        info[REF_STRESS] = stress
    atoms.calc = None


def _convert_units(atoms: ase.Atoms, length: float, energy: float) -> None:
    """Scale a structure read in (length, energy) file units to Å and eV in place."""
    if length != 1.0:
        atoms.set_cell(atoms.get_cell()[:] * length, scale_atoms=False)
        atoms.set_positions(atoms.get_positions() * length)
    if REF_ENERGY in atoms.info:
        atoms.info[REF_ENERGY] = atoms.info[REF_ENERGY] * energy
    if REF_FORCES in atoms.arrays:
        atoms.arrays[REF_FORCES] = atoms.arrays[REF_FORCES] * (energy / length)
    if REF_STRESS in atoms.info:
        atoms.info[REF_STRESS] = atoms.info[REF_STRESS] * (energy / length**3)


def _check_key_found(
    structures: Sequence[ase.Atoms], key: str | None, ref: str, kind: str, source: str
) -> None:
    if key is None or not structures:
        return
    container = "arrays" if ref == REF_FORCES else "info"
    if not any(ref in getattr(a, container) for a in structures):
        available = sorted(set().union(*(getattr(a, container).keys() for a in structures)))
        raise DataError(
            f"{source}: no structure has the {kind} key {key!r}; keys present in atoms."
            f"{container}: {available}"
        )


def read_structures(
    path: str | os.PathLike,
    format: str | None = None,
    index: str | int = ":",
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str | None = None,
    length_unit: str = "angstrom",
    energy_unit: str = "ev",
    require_energy: bool = False,
    require_forces: bool = False,
    virial_key: str | None = None,
    validate: bool = True,
) -> list[ase.Atoms]:
    """Read structures with reference values from any ASE-readable file or n2p2 ``input.data``.

    Args:
        path: the file.
        format: ASE format name, or "n2p2" (default: n2p2 for ``input.data`` / ``*.data``,
            else ASE's guess).
        index: which frames (ASE's index syntax, default all).
        energy_key, forces_key, stress_key: info/array keys of the reference values (e.g. QUIP's
            ``dft_energy``, ``dft_forces``); default: what ASE's calculator attached, then
            common keys. A stress key naming a virial (containing "virial") is converted.
        length_unit, energy_unit: the file's units ("angstrom"/"bohr", "ev"/"hartree");
            everything is converted to Å and eV.
        require_energy, require_forces: every structure must have them.
        virial_key: info key of a virial (eV); converted to stress = −virial / V.
        validate: run :func:`validate_structures` on the result.

    Returns:
        list of ``ase.Atoms`` with ``info["ref_energy"]`` (eV), ``arrays["ref_forces"]`` (eV/Å),
        ``info["ref_stress"]`` (3×3, eV/Å³) where the file has them.
    """
    path = Path(path)
    source = str(path)
    length, energy = unit_factors(length_unit, energy_unit)
    if not path.exists():
        raise DataError(f"{source}: no such file; check the path")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{source}: the file is empty (empty data set); check the path")
    if stress_key is not None and virial_key is None and "virial" in stress_key.lower():
        virial_key, stress_key = stress_key, None

    if is_n2p2_file(path, format):
        structures = read_n2p2_data(path, length_unit=length_unit, energy_unit=energy_unit)
        structures = _select(structures, index, source)
        energy_key = forces_key = stress_key = virial_key = None  # n2p2 has fixed fields
    else:
        try:
            frames = ase.io.read(path, index=index, format=format)
        except DataError:
            raise
        except Exception as exc:  # ASE raises many kinds of errors on bad files
            fmt = format or "the format guessed from its name and content"
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise DataError(
                f"{source}: cannot read it as {fmt} ({type(exc).__name__}: {message}); "
                "check the file or give --format"
            ) from exc
        structures = [frames] if isinstance(frames, ase.Atoms) else list(frames)
        for i, atoms in enumerate(structures):
            where = f"{source}: structure {i} (0-based)"
            _pop_reference(atoms, energy_key, forces_key, stress_key, virial_key, where)
            _convert_units(atoms, length, energy)

    _check_key_found(structures, energy_key, REF_ENERGY, "energy", source)
    _check_key_found(structures, forces_key, REF_FORCES, "forces", source)
    _check_key_found(structures, stress_key, REF_STRESS, "stress", source)
    _check_key_found(structures, virial_key, REF_STRESS, "virial", source)
    if validate:
        validate_structures(
            structures,
            source=source,
            require_energy=require_energy,
            require_forces=require_forces,
        )
    return structures


def _select(structures: list[ase.Atoms], index: str | int, source: str) -> list[ase.Atoms]:
    """Apply ASE-style index syntax (int, ":" or "start:stop:step") to a list."""
    if isinstance(index, int):
        try:
            return [structures[index]]
        except IndexError:
            raise DataError(
                f"{source}: index {index} out of range ({len(structures)} structures)"
            ) from None
    text = str(index).strip()
    if ":" not in text:
        return _select(structures, int(text), source)
    parts = [int(p) if p.strip() else None for p in text.split(":")]
    return structures[slice(*parts)]


def write_structures(
    structures: ase.Atoms | Iterable[ase.Atoms],
    path: str | os.PathLike,
    format: str | None = None,
    length_unit: str = "angstrom",
    energy_unit: str = "ev",
) -> None:
    """Write structures atomically as extxyz (default) or n2p2 ``input.data``.

    In extxyz the REF_* values are written as ``energy``/``forces``/``stress`` (per-atom values
    with ASE's 8 decimals; energies and stress in full precision). n2p2 files are written with
    repr-exact floats, in the units ``length_unit``/``energy_unit``.
    """
    if isinstance(structures, ase.Atoms):
        structures = [structures]
    structures = list(structures)
    path = Path(path)
    if is_n2p2_file(path, format):
        write_n2p2_data(structures, path, length_unit=length_unit, energy_unit=energy_unit)
        return
    if format not in (None, "extxyz", "xyz"):
        raise DataError(f"{path}: can write extxyz or n2p2 input.data, not format {format!r}")
    if (length_unit, energy_unit) != ("angstrom", "ev"):
        raise DataError(f"{path}: extxyz files are written in Å and eV only")
    frames = [_for_extxyz(atoms) for atoms in structures]
    with atomic_output(path) as tmp:
        ase.io.write(str(tmp), frames, format="extxyz")


def _for_extxyz(atoms: ase.Atoms) -> ase.Atoms:
    """A copy whose REF_* values are a SinglePointCalculator's energy/forces/stress."""
    from ase.calculators.singlepoint import SinglePointCalculator

    copy = atoms.copy()
    copy.calc = None
    results = {}
    if REF_ENERGY in copy.info:
        results["energy"] = float(copy.info.pop(REF_ENERGY))
    if REF_FORCES in copy.arrays:
        results["forces"] = np.asarray(copy.arrays.pop(REF_FORCES), dtype=float)
    if REF_STRESS in copy.info:
        stress = np.asarray(copy.info.pop(REF_STRESS), dtype=float).reshape(3, 3)
        results["stress"] = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    for key in ("energy", "forces", "stress", "free_energy"):
        copy.info.pop(key, None)
        if key != "energy":
            copy.arrays.pop(key, None)
    if results:
        copy.calc = SinglePointCalculator(copy, **results)
    return copy


def _cell_kind(atoms: ase.Atoms) -> str:
    n_periodic = int(np.asarray(atoms.get_pbc(), dtype=bool).sum())
    return {3: "periodic 3D", 2: "slab (2D periodic)", 1: "wire (1D periodic)", 0: "molecule"}[
        n_periodic
    ]


def summarize(structures: Sequence[ase.Atoms], source: str = "<memory>") -> str:
    """A human-readable summary of a data set (the text of ``mlpot info``)."""
    structures = list(structures)
    if not structures:
        raise DataError(f"{source}: empty data set (no structures)")
    counts = np.array([len(a) for a in structures])
    elements: Counter[str] = Counter()
    for atoms in structures:
        elements.update(atoms.get_chemical_symbols())
    n = len(structures)
    n_energy = sum(REF_ENERGY in a.info for a in structures)
    n_forces = sum(REF_FORCES in a.arrays for a in structures)
    n_stress = sum(REF_STRESS in a.info for a in structures)
    lines = [
        f"file: {source}",
        f"structures: {n}",
        f"atoms: {int(counts.sum())} in total, {int(counts.min())} to {int(counts.max())} per "
        "structure",
        "elements: " + ", ".join(f"{symbol} {count}" for symbol, count in sorted(elements.items())),
        f"energy: {n_energy} of {n} structures",
        f"forces: {n_forces} of {n} structures",
        f"stress: {n_stress} of {n} structures",
    ]
    if n_energy:
        per_atom = np.array(
            [float(a.info[REF_ENERGY]) / len(a) for a in structures if REF_ENERGY in a.info]
        )
        lines.append(
            f"energy per atom: {per_atom.min():.6f} to {per_atom.max():.6f} eV/atom "
            f"(mean {per_atom.mean():.6f})"
        )
    if n_forces:
        forces = np.concatenate(
            [a.arrays[REF_FORCES] for a in structures if REF_FORCES in a.arrays]
        )
        lines.append(f"largest force component: {np.abs(forces).max():.4f} eV/Å")
    kinds = Counter(_cell_kind(a) for a in structures)
    lines.append("cells: " + ", ".join(f"{kind} {count}" for kind, count in kinds.most_common()))
    return "\n".join(lines)
