"""n2p2 input.data reading and writing, checked against an independent parse of the same text."""

from pathlib import Path

import ase
import numpy as np
import pytest
from ase.units import Bohr, Hartree

from mlpot.data.batch import REF_ENERGY, REF_FORCES
from mlpot.errors import DataError, ParameterError
from mlpot.interop.n2p2_data import (
    ATOMIC_CHARGES,
    ATOMIC_ENERGIES,
    COMMENT,
    read_n2p2_data,
    write_n2p2_data,
)

# (folder, length in Å per file unit, energy in eV per file unit, units for read_n2p2_data)
DATASETS = [
    ("H2O_RPBE-D3", Bohr, Hartree, ("bohr", "hartree")),
    ("Cu2S_PBE", 1.0, 1.0, ("angstrom", "ev")),
]


def independent_parse(path: Path):
    """Plain split-based parse: per structure the atom rows, lattice rows and energy."""
    blocks = []
    for line in path.read_text().splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "begin":
            blocks.append({"atoms": [], "lattice": [], "symbols": [], "energy": None})
        elif words[0] == "atom":
            blocks[-1]["atoms"].append([float(w) for w in words[1:4] + words[5:10]])
            blocks[-1]["symbols"].append(words[4])
        elif words[0] == "lattice":
            blocks[-1]["lattice"].append([float(w) for w in words[1:4]])
        elif words[0] == "energy":
            blocks[-1]["energy"] = float(words[1])
    return blocks


@pytest.mark.parametrize("folder, length, energy, units", DATASETS)
def test_train_data_matches_independent_parse(shared_data, folder, length, energy, units):
    path = shared_data / "n2p2" / folder / "train.input.data"
    structures = read_n2p2_data(path, *units)
    blocks = independent_parse(path)
    assert len(structures) == len(blocks) == 20
    for atoms, block in zip(structures, blocks, strict=True):
        rows = np.array(block["atoms"])
        assert len(atoms) == len(rows)
        assert atoms.get_chemical_symbols() == block["symbols"]
        np.testing.assert_allclose(atoms.positions, rows[:, 0:3] * length, rtol=1e-15, atol=0)
        np.testing.assert_allclose(
            atoms.arrays[REF_FORCES], rows[:, 5:8] * energy / length, rtol=1e-15, atol=0
        )
        np.testing.assert_allclose(atoms.arrays[ATOMIC_CHARGES], rows[:, 3], rtol=0, atol=0)
        assert atoms.info[REF_ENERGY] == pytest.approx(block["energy"] * energy, rel=1e-15)
        assert len(block["lattice"]) == 3 and atoms.pbc.all()
        np.testing.assert_allclose(
            atoms.cell[:], np.array(block["lattice"]) * length, rtol=1e-15, atol=0
        )


def test_known_atom_counts(shared_data):
    h2o = read_n2p2_data(shared_data / "n2p2/H2O_RPBE-D3/train.input.data", "bohr", "hartree")
    cu2s = read_n2p2_data(shared_data / "n2p2/Cu2S_PBE/train.input.data")
    # counted with: awk '/^ *begin/{n=0} /^ *atom/{n++} /^ *end/{print n}' train.input.data
    assert [len(a) for a in h2o] == [192] + [48] * 11 + [96, 192, 192, 96] + [192] * 4
    assert sum(len(a) for a in h2o) == 2064
    assert all(len(a) == 144 for a in cu2s)
    # water: 1 O per 2 H
    for atoms in h2o:
        symbols = atoms.get_chemical_symbols()
        assert symbols.count("H") == 2 * symbols.count("O")
    # Bohr/Hartree converted: an RPBE-D3 water molecule is about -76.56 Ha = -2083 eV
    per_molecule = [a.info[REF_ENERGY] / (len(a) / 3) for a in h2o]
    assert all(-2084 < e < -2080 for e in per_molecule)


@pytest.mark.parametrize("folder, length, energy, units", DATASETS)
def test_write_read_round_trip_is_bit_exact(shared_data, tmp_path, folder, length, energy, units):
    original = read_n2p2_data(shared_data / "n2p2" / folder / "train.input.data", *units)
    out = tmp_path / "input.data"
    write_n2p2_data(original, out, *units)
    again = read_n2p2_data(out, *units)
    assert len(again) == len(original)
    for a, b in zip(original, again, strict=True):
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.cell[:], b.cell[:])
        assert np.array_equal(a.numbers, b.numbers)
        assert np.array_equal(a.pbc, b.pbc)
        assert np.array_equal(a.arrays[REF_FORCES], b.arrays[REF_FORCES])
        assert np.array_equal(a.arrays[ATOMIC_CHARGES], b.arrays[ATOMIC_CHARGES])
        assert np.array_equal(a.arrays[ATOMIC_ENERGIES], b.arrays[ATOMIC_ENERGIES])
        assert a.info[REF_ENERGY] == b.info[REF_ENERGY]
        assert a.info[COMMENT] == b.info[COMMENT]
        assert a.info["charge"] == b.info["charge"]
    # written in the file's own units: the numbers in the text are the same as the original's
    blocks_original = independent_parse(shared_data / "n2p2" / folder / "train.input.data")
    blocks_written = independent_parse(out)
    for x, y in zip(blocks_original, blocks_written, strict=True):
        np.testing.assert_allclose(np.array(x["atoms"]), np.array(y["atoms"]), rtol=1e-15)
        assert x["energy"] == pytest.approx(y["energy"], rel=1e-15)


def test_random_full_precision_floats_round_trip_bit_exactly(tmp_path):
    rng = np.random.default_rng(7)
    atoms = ase.Atoms(
        "CuSCu",
        positions=rng.normal(size=(3, 3)) * 3.0,
        cell=rng.normal(size=(3, 3)) + 6 * np.eye(3),
        pbc=True,
    )
    atoms.arrays[REF_FORCES] = rng.normal(size=(3, 3)) * 1e-3
    atoms.arrays[ATOMIC_CHARGES] = rng.normal(size=3)
    atoms.info[REF_ENERGY] = -1234.5678901234567 + rng.normal() * 1e-9
    atoms.info[COMMENT] = "random test structure"
    molecule = ase.Atoms("H2O", positions=rng.normal(size=(3, 3)) * 2.0)
    molecule.info[REF_ENERGY] = float(rng.normal())
    path = tmp_path / "input.data"
    write_n2p2_data([atoms, molecule], path)
    back = read_n2p2_data(path)
    assert np.array_equal(back[0].positions, atoms.positions)
    assert np.array_equal(back[0].cell[:], atoms.cell[:])
    assert np.array_equal(back[0].arrays[REF_FORCES], atoms.arrays[REF_FORCES])
    assert np.array_equal(back[0].arrays[ATOMIC_CHARGES], atoms.arrays[ATOMIC_CHARGES])
    assert back[0].info[REF_ENERGY] == atoms.info[REF_ENERGY]
    assert back[0].info[COMMENT] == "random test structure"
    # total charge defaults to the sum of the atomic charges
    assert back[0].info["charge"] == pytest.approx(atoms.arrays[ATOMIC_CHARGES].sum())
    # a molecule has no lattice lines, is read back non-periodic, with zero forces written
    assert "lattice" not in path.read_text().split("end")[1]
    assert not back[1].pbc.any() and np.all(back[1].cell[:] == 0)
    assert np.array_equal(back[1].positions, molecule.positions)
    assert np.all(back[1].arrays[REF_FORCES] == 0)


def test_unit_conversion_on_write(tmp_path):
    atoms = ase.Atoms("H", positions=[[Bohr, 0, 0]], cell=np.eye(3) * 2 * Bohr, pbc=True)
    atoms.info[REF_ENERGY] = 3 * Hartree
    atoms.arrays[REF_FORCES] = np.array([[Hartree / Bohr, 0, 0]])
    path = tmp_path / "input.data"
    write_n2p2_data(atoms, path, "bohr", "hartree")
    block = independent_parse(path)[0]
    assert block["atoms"][0][0] == pytest.approx(1.0, rel=1e-15)
    assert block["atoms"][0][5] == pytest.approx(1.0, rel=1e-15)
    assert block["energy"] == pytest.approx(3.0, rel=1e-15)
    assert block["lattice"][0][0] == pytest.approx(2.0, rel=1e-15)


def test_write_refuses_partial_pbc_and_missing_energy(tmp_path):
    slab = ase.Atoms("H", cell=np.eye(3) * 5, pbc=[True, True, False])
    slab.info[REF_ENERGY] = 0.0
    with pytest.raises(DataError, match=r"structure 0 \(0-based\).*pbc=True"):
        write_n2p2_data(slab, tmp_path / "input.data")
    no_energy = ase.Atoms("H", cell=np.eye(3) * 5, pbc=True)
    with pytest.raises(DataError, match=r"structure 0 \(0-based\) has no reference energy"):
        write_n2p2_data(no_energy, tmp_path / "input.data")
    assert not (tmp_path / "input.data").exists()
    with pytest.raises(ParameterError, match="unknown length unit 'nm'"):
        read_n2p2_data(tmp_path / "input.data", length_unit="nm")


BAD_FILES = [
    ("begin\natom 0 0 0 H 0 0 0 0\nend\n", 2, "expected 'atom x y z element charge energy"),
    ("begin\natom 0 0 zero H 0 0 0 0 0\nend\n", 2, "with numbers"),
    ("begin\natom 0 0 0 Qq 0 0 0 0 0\nend\n", 2, "unknown element 'Qq'"),
    ("begin\nlattice 1 0 0\natom 0 0 0 H 0 0 0 0 0\nend\n", 4, "1 'lattice' lines"),
    ("begin\natom 0 0 0 H 0 0 0 0 0\nenergy\nend\n", 3, "expected 'energy E'"),
    ("begin\natom 0 0 0 H 0 0 0 0 0\nenrgy 1.0\nend\n", 3, "unknown keyword 'enrgy'"),
    ("atom 0 0 0 H 0 0 0 0 0\n", 1, "expected 'begin'"),
    ("begin\natom 0 0 0 H 0 0 0 0 0\nbegin\n", 3, "before the 'end'"),
    ("begin\nenergy 1.0\nend\n", 3, "has no atoms"),
]


@pytest.mark.parametrize("text, line, message", BAD_FILES)
def test_bad_lines_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "input.data"
    path.write_text(text)
    with pytest.raises(DataError) as error:
        read_n2p2_data(path)
    assert f"{path} line {line}: " in str(error.value)
    assert message in str(error.value)


def test_truncated_file(tmp_path):
    path = tmp_path / "input.data"
    path.write_text("begin\natom 0 0 0 H 0 0 0 0 0\n")
    with pytest.raises(DataError, match=r"begun on line 1 has no 'end'"):
        read_n2p2_data(path)
