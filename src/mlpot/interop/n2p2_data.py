"""Reading and writing n2p2's ``input.data`` structure files.

Layout (one block per structure, keywords first on each line)::

    begin
    comment free text
    lattice ax ay az          (three lines, the cell vectors; absent for a molecule)
    atom x y z element charge energy fx fy fz
    ...
    energy E
    charge Q
    end

Units: n2p2 files use whatever units the potential was fitted in, often Bohr and Hartree. Give
``length_unit`` ("angstrom" or "bohr") and ``energy_unit`` ("ev" or "hartree"): values are
converted to Å / eV / eV/Å on reading and back on writing.

On the returned ``ase.Atoms``: reference energy ``info["ref_energy"]`` (eV), forces
``arrays["ref_forces"]`` (eV/Å), the comment ``info["comment"]``, the total charge
``info["charge"]``, per-atom charges ``arrays["initial_charges"]`` and the per-atom energy column
``arrays["n2p2_atomic_energy"]`` (eV), so that write → read round-trips. A lattice makes the
structure periodic in all three directions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import ase
import numpy as np
from ase.data import atomic_numbers, chemical_symbols
from ase.units import Bohr, Hartree

from mlpot._atomic import atomic_write_text
from mlpot.data.batch import REF_ENERGY, REF_FORCES
from mlpot.errors import DataError, ParameterError

COMMENT = "comment"
TOTAL_CHARGE = "charge"
ATOMIC_CHARGES = "initial_charges"
ATOMIC_ENERGIES = "n2p2_atomic_energy"

LENGTH_UNITS = {"angstrom": 1.0, "bohr": Bohr}
ENERGY_UNITS = {"ev": 1.0, "hartree": Hartree}

_ATOM_FORMAT = "atom x y z element charge energy fx fy fz"


def unit_factors(length_unit: str, energy_unit: str) -> tuple[float, float]:
    """(Å per file length unit, eV per file energy unit); ParameterError for an unknown unit."""
    try:
        length = LENGTH_UNITS[str(length_unit).lower()]
    except KeyError:
        raise ParameterError(
            f"unknown length unit {length_unit!r}; use one of {sorted(LENGTH_UNITS)}"
        ) from None
    try:
        energy = ENERGY_UNITS[str(energy_unit).lower()]
    except KeyError:
        raise ParameterError(
            f"unknown energy unit {energy_unit!r}; use one of {sorted(ENERGY_UNITS)}"
        ) from None
    return length, energy


class _Block:
    """One structure being parsed."""

    def __init__(self, line_number: int):
        self.begin_line = line_number
        self.comment: str | None = None
        self.lattice: list[list[float]] = []
        self.positions: list[list[float]] = []
        self.symbols: list[str] = []
        self.charges: list[float] = []
        self.atomic_energies: list[float] = []
        self.forces: list[list[float]] = []
        self.energy: float | None = None
        self.total_charge: float | None = None


def _floats(words: Sequence[str], where: str, expected: str, line: str) -> list[float]:
    try:
        return [float(w) for w in words]
    except ValueError:
        raise DataError(f"{where}: expected '{expected}' with numbers, got {line!r}") from None


def read_n2p2_data(
    path: str | os.PathLike,
    length_unit: str = "angstrom",
    energy_unit: str = "ev",
) -> list[ase.Atoms]:
    """Read every structure of an n2p2 ``input.data`` file, converted to Å and eV.

    Raises DataError naming the file and line for anything that does not parse.
    """
    path = Path(path)
    length, energy = unit_factors(length_unit, energy_unit)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path of the n2p2 input.data file")
    structures: list[ase.Atoms] = []
    block: _Block | None = None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path} line {number}"
            keyword, _, rest = line.partition(" ")
            keyword = keyword.lower()
            words = rest.split()
            if keyword == "begin":
                if block is not None:
                    raise DataError(
                        f"{where}: 'begin' before the 'end' of the structure begun on line "
                        f"{block.begin_line}; add the missing 'end'"
                    )
                block = _Block(number)
                continue
            if block is None:
                raise DataError(
                    f"{where}: expected 'begin' (start of a structure), got {line!r}; "
                    "is this an n2p2 input.data file? (if not, give its --format)"
                )
            if keyword == "comment":
                block.comment = rest.strip()
            elif keyword == "lattice":
                if len(words) != 3:
                    raise DataError(f"{where}: expected 'lattice ax ay az', got {line!r}")
                if len(block.lattice) == 3:
                    raise DataError(f"{where}: more than three 'lattice' lines in one structure")
                block.lattice.append(_floats(words, where, "lattice ax ay az", line))
            elif keyword == "atom":
                if len(words) != 9:
                    raise DataError(f"{where}: expected '{_ATOM_FORMAT}', got {line!r}")
                symbol = words[3]
                if symbol not in atomic_numbers or symbol == "X":
                    raise DataError(
                        f"{where}: unknown element {symbol!r} in {line!r}; "
                        "the 5th column must be a chemical symbol"
                    )
                values = _floats(words[:3] + words[4:], where, _ATOM_FORMAT, line)
                block.positions.append(values[:3])
                block.symbols.append(symbol)
                block.charges.append(values[3])
                block.atomic_energies.append(values[4])
                block.forces.append(values[5:8])
            elif keyword == "energy":
                if len(words) != 1:
                    raise DataError(f"{where}: expected 'energy E', got {line!r}")
                block.energy = _floats(words, where, "energy E", line)[0]
            elif keyword == "charge":
                if len(words) != 1:
                    raise DataError(f"{where}: expected 'charge Q', got {line!r}")
                block.total_charge = _floats(words, where, "charge Q", line)[0]
            elif keyword == "end":
                structures.append(_finish(block, where, length, energy))
                block = None
            else:
                raise DataError(
                    f"{where}: unknown keyword {keyword!r} in {line!r}; expected one of begin, "
                    "comment, lattice, atom, energy, charge, end"
                )
    if block is not None:
        raise DataError(
            f"{path}: the structure begun on line {block.begin_line} has no 'end' (file truncated?)"
        )
    return structures


def _finish(block: _Block, where: str, length: float, energy: float) -> ase.Atoms:
    if not block.symbols:
        raise DataError(f"{where}: the structure begun on line {block.begin_line} has no atoms")
    if block.lattice and len(block.lattice) != 3:
        raise DataError(
            f"{where}: the structure begun on line {block.begin_line} has "
            f"{len(block.lattice)} 'lattice' lines; give all three cell vectors or none"
        )
    periodic = bool(block.lattice)
    cell = np.array(block.lattice, dtype=float) * length if periodic else np.zeros((3, 3))
    atoms = ase.Atoms(
        symbols=block.symbols,
        positions=np.array(block.positions, dtype=float) * length,
        cell=cell,
        pbc=periodic,
    )
    atoms.arrays[REF_FORCES] = np.array(block.forces, dtype=float) * (energy / length)
    atoms.arrays[ATOMIC_CHARGES] = np.array(block.charges, dtype=float)
    atoms.arrays[ATOMIC_ENERGIES] = np.array(block.atomic_energies, dtype=float) * energy
    if block.energy is not None:
        atoms.info[REF_ENERGY] = block.energy * energy
    if block.total_charge is not None:
        atoms.info[TOTAL_CHARGE] = block.total_charge
    if block.comment is not None:
        atoms.info[COMMENT] = block.comment
    return atoms


def _r(value) -> str:
    """Shortest string that reads back to exactly the same float."""
    return repr(float(value))


def format_n2p2_data(
    structures: Iterable[ase.Atoms],
    length_unit: str = "angstrom",
    energy_unit: str = "ev",
    source: str = "<memory>",
) -> str:
    """The text of an n2p2 ``input.data`` file for ``structures`` (Å/eV in, file units out).

    Structures need a reference energy (``info["ref_energy"]``); missing reference forces are
    written as zeros (n2p2's convention for "not known"). Only fully periodic or fully
    non-periodic structures can be written.
    """
    length, energy = unit_factors(length_unit, energy_unit)
    lines: list[str] = []
    for index, atoms in enumerate(structures):
        what = f"{source}: structure {index} (0-based)"
        pbc = np.asarray(atoms.get_pbc(), dtype=bool)
        if pbc.any() and not pbc.all():
            raise DataError(
                f"{what} is periodic in some directions only (pbc={pbc.tolist()}); n2p2 knows "
                "fully periodic or non-periodic structures: set pbc=True with a vacuum gap"
            )
        if REF_ENERGY not in atoms.info:
            raise DataError(
                f"{what} has no reference energy (info['{REF_ENERGY}']); n2p2 input.data needs "
                "one for every structure"
            )
        n = len(atoms)
        forces = atoms.arrays.get(REF_FORCES)
        forces = np.zeros((n, 3)) if forces is None else np.asarray(forces, dtype=float)
        charges = atoms.arrays.get(ATOMIC_CHARGES)
        charges = np.zeros(n) if charges is None else np.asarray(charges, dtype=float)
        atomic_energies = atoms.arrays.get(ATOMIC_ENERGIES)
        atomic_energies = (
            np.zeros(n) if atomic_energies is None else np.asarray(atomic_energies, dtype=float)
        )
        lines.append("begin")
        comment = atoms.info.get(COMMENT)
        if comment is not None:
            lines.append(f"comment {' '.join(str(comment).splitlines())}")
        if pbc.all():
            for vector in np.asarray(atoms.get_cell()[:], dtype=float) / length:
                lines.append(f"lattice {_r(vector[0])} {_r(vector[1])} {_r(vector[2])}")
        positions = atoms.get_positions() / length
        forces_file = forces / (energy / length)
        energies_file = atomic_energies / energy
        for a in range(n):
            x, y, z = positions[a]
            fx, fy, fz = forces_file[a]
            symbol = chemical_symbols[atoms.numbers[a]]
            lines.append(
                f"atom {_r(x)} {_r(y)} {_r(z)} {symbol} {_r(charges[a])} "
                f"{_r(energies_file[a])} {_r(fx)} {_r(fy)} {_r(fz)}"
            )
        lines.append(f"energy {_r(float(atoms.info[REF_ENERGY]) / energy)}")
        lines.append(f"charge {_r(atoms.info.get(TOTAL_CHARGE, float(np.sum(charges))))}")
        lines.append("end")
    return "\n".join(lines) + "\n"


def write_n2p2_data(
    structures: ase.Atoms | Iterable[ase.Atoms],
    path: str | os.PathLike,
    length_unit: str = "angstrom",
    energy_unit: str = "ev",
) -> None:
    """Write ``structures`` (Å/eV) as an n2p2 ``input.data`` file in the given units, atomically.

    Floats are written with ``repr`` so that reading the file back gives the same numbers
    bit for bit (in Å/eV units; unit conversion may change the last bit).
    """
    if isinstance(structures, ase.Atoms):
        structures = [structures]
    text = format_n2p2_data(structures, length_unit, energy_unit, source=str(path))
    atomic_write_text(path, text)
