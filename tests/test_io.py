"""read_structures / write_structures: ASE formats and keys, checked against independent parses."""

import re

import ase
import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.units import Bohr, Hartree

from mlpot.data.batch import REF_ENERGY, REF_FORCES, REF_STRESS, AtomsBatch
from mlpot.data.io import read_structures, summarize, write_structures
from mlpot.errors import DataError


def parse_extxyz(path):
    """Independent plain-text parse of extxyz (species, positions, forces columns)."""
    lines = path.read_text().splitlines()
    frames, k = [], 0
    while k < len(lines):
        n = int(lines[k])
        header = lines[k + 1]
        assert "Properties=species:S:1:pos:R:3:forces:R:3" in header
        energy = float(re.search(r"(?:^|\s)energy=(\S+)", header).group(1))
        rows = [line.split() for line in lines[k + 2 : k + 2 + n]]
        symbols = [r[0] for r in rows]
        numbers = np.array([[float(x) for x in r[1:7]] for r in rows])
        frames.append((symbols, numbers[:, :3], numbers[:, 3:6], energy))
        k += n + 2
    return frames


@pytest.mark.parametrize(
    "relative, count",
    [
        ("mlearn_Si/train.extxyz", 214),
        ("mlearn_Si/test.extxyz", 25),
        ("aenet_TiO2/TiO2_1000.extxyz", 1000),
    ],
)
def test_extxyz_energies_and_forces(shared_data, relative, count):
    path = shared_data / relative
    structures = read_structures(path, require_energy=True, require_forces=True)
    reference = parse_extxyz(path)
    assert len(structures) == len(reference) == count
    for atoms, (symbols, positions, forces, energy) in zip(structures, reference, strict=True):
        assert atoms.get_chemical_symbols() == symbols
        np.testing.assert_array_equal(atoms.positions, positions)
        np.testing.assert_array_equal(atoms.arrays[REF_FORCES], forces)
        assert atoms.info[REF_ENERGY] == energy
        assert atoms.calc is None
        assert atoms.pbc.all()
    batch = AtomsBatch.from_atoms(structures)
    assert batch.energy is not None and batch.forces is not None
    assert int(batch.n_atoms.sum()) == sum(len(r[0]) for r in reference)


def test_index_selects_frames(shared_data):
    path = shared_data / "mlearn_Si/test.extxyz"
    reference = parse_extxyz(path)
    assert [s.info[REF_ENERGY] for s in read_structures(path, index="3:6")] == [
        r[3] for r in reference[3:6]
    ]
    last = read_structures(path, index=-1)
    assert len(last) == 1 and last[0].info[REF_ENERGY] == reference[-1][3]
    n2p2 = shared_data / "n2p2/Cu2S_PBE/train.input.data"
    assert len(read_structures(n2p2, index="::5")) == 4
    assert len(read_structures(n2p2, index=2)) == 1


def quip_structures():
    rng = np.random.default_rng(3)
    frames = []
    for k in range(3):
        atoms = ase.Atoms(
            "Si4",
            positions=rng.uniform(0, 5, size=(4, 3)),
            cell=np.diag([5.0, 5.5, 6.0]) + 0.1 * k,
            pbc=True,
        )
        atoms.info["dft_energy"] = -10.0 - k
        atoms.info["dft_virial"] = np.arange(9.0).reshape(3, 3) + k
        atoms.arrays["dft_forces"] = rng.normal(size=(4, 3))
        frames.append(atoms)
    return frames


def test_quip_style_keys(tmp_path):
    frames = quip_structures()
    path = tmp_path / "quip.xyz"
    ase.io.write(path, frames, format="extxyz")
    assert "dft_energy=" in path.read_text()
    read = read_structures(
        path, energy_key="dft_energy", forces_key="dft_forces", stress_key="dft_virial"
    )
    for atoms, original in zip(read, frames, strict=True):
        assert atoms.info[REF_ENERGY] == original.info["dft_energy"]
        # ASE's extxyz writer keeps 8 decimals of per-atom values
        np.testing.assert_allclose(
            atoms.arrays[REF_FORCES], original.arrays["dft_forces"], rtol=0, atol=5.1e-9
        )
        volume = np.linalg.det(original.cell[:])
        np.testing.assert_allclose(
            atoms.info[REF_STRESS], -original.info["dft_virial"] / volume, rtol=1e-12
        )
    # without keys the common QUIP names are picked up as well
    default = read_structures(path)
    assert [a.info[REF_ENERGY] for a in default] == [-10.0, -11.0, -12.0]
    # a key no frame has is reported with the keys that exist
    with pytest.raises(DataError, match=r"no structure has the energy key 'DFT_E'.*dft_energy"):
        read_structures(path, energy_key="DFT_E")


def test_extxyz_stress_voigt_to_3x3_and_write_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    atoms = ase.Atoms("Cu2", positions=[[0, 0, 0], [1.8, 1.8, 0]], cell=[3.6] * 3, pbc=True)
    voigt = rng.normal(size=6) * 0.01  # xx yy zz yz xz xy
    forces = rng.normal(size=(2, 3))
    atoms.calc = SinglePointCalculator(atoms, energy=-7.25, forces=forces, stress=voigt)
    path = tmp_path / "a.extxyz"
    ase.io.write(path, atoms)
    (read,) = read_structures(path)
    xx, yy, zz, yz, xz, xy = voigt
    expected = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    np.testing.assert_allclose(read.info[REF_STRESS], expected, rtol=1e-12)
    assert read.info[REF_ENERGY] == -7.25
    np.testing.assert_allclose(read.arrays[REF_FORCES], forces, rtol=0, atol=5.1e-9)

    out = tmp_path / "out.extxyz"
    write_structures([read, read], out)
    assert not list(tmp_path.glob(".out.extxyz.*"))  # no temporary file left behind
    back = read_structures(out)
    assert len(back) == 2
    np.testing.assert_allclose(back[1].info[REF_STRESS], expected, rtol=1e-12)
    np.testing.assert_allclose(back[1].arrays[REF_FORCES], forces, rtol=0, atol=5.1e-9)
    assert back[1].info[REF_ENERGY] == -7.25
    # the extxyz text carries them under the standard names
    header = out.read_text().splitlines()[1]
    assert "energy=-7.25" in header and "stress=" in header and "forces:R:3" in header


def test_write_n2p2_through_write_structures(shared_data, tmp_path):
    structures = read_structures(shared_data / "mlearn_Si/test.extxyz", index=":3")
    write_structures(structures, tmp_path / "input.data")
    back = read_structures(tmp_path / "input.data")
    for a, b in zip(structures, back, strict=True):
        assert np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.arrays[REF_FORCES], b.arrays[REF_FORCES])
        assert a.info[REF_ENERGY] == b.info[REF_ENERGY]
    # in Bohr/Hartree on disk, Å/eV in memory
    write_structures(structures, tmp_path / "bohr.data", length_unit="bohr", energy_unit="hartree")
    first_energy = next(
        line
        for line in (tmp_path / "bohr.data").read_text().splitlines()
        if line.startswith("energy")
    )
    assert float(first_energy.split()[1]) == pytest.approx(structures[0].info[REF_ENERGY] / Hartree)
    back = read_structures(tmp_path / "bohr.data", length_unit="bohr", energy_unit="hartree")
    np.testing.assert_allclose(back[0].positions, structures[0].positions, rtol=1e-14, atol=1e-14)


def test_units_of_ase_formats(tmp_path):
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 1.4]])
    atoms.calc = SinglePointCalculator(atoms, energy=-1.17, forces=[[0, 0, 0.1], [0, 0, -0.1]])
    ase.io.write(tmp_path / "h2.extxyz", atoms)
    (read,) = read_structures(tmp_path / "h2.extxyz", length_unit="bohr", energy_unit="hartree")
    assert read.get_distance(0, 1) == pytest.approx(1.4 * Bohr, rel=1e-14)
    assert read.info[REF_ENERGY] == pytest.approx(-1.17 * Hartree, rel=1e-14)
    assert read.arrays[REF_FORCES][0, 2] == pytest.approx(0.1 * Hartree / Bohr, rel=1e-14)


def test_ase_db_and_xsf(tmp_path):
    rng = np.random.default_rng(11)
    frames = []
    for k in range(3):
        atoms = ase.Atoms(
            "Si2", positions=[[0, 0, 0], [1.36, 1.36, 1.36 + 0.1 * k]], cell=[5.43] * 3, pbc=True
        )
        forces = rng.normal(size=(2, 3))
        stress = rng.normal(size=6) * 1e-3
        atoms.calc = SinglePointCalculator(atoms, energy=-10.8 - k, forces=forces, stress=stress)
        frames.append(atoms)
    ase.io.write(tmp_path / "set.db", frames)
    read = read_structures(tmp_path / "set.db")
    assert [a.info[REF_ENERGY] for a in read] == [-10.8, -11.8, -12.8]
    for atoms, original in zip(read, frames, strict=True):
        np.testing.assert_array_equal(atoms.arrays[REF_FORCES], original.calc.results["forces"])
        np.testing.assert_array_equal(atoms.positions, original.positions)
        s = original.calc.results["stress"]
        assert atoms.info[REF_STRESS][1, 2] == s[3] and atoms.info[REF_STRESS][0, 1] == s[5]

    ase.io.write(tmp_path / "one.xsf", frames[2])
    (xsf,) = read_structures(tmp_path / "one.xsf", format="xsf")
    np.testing.assert_allclose(xsf.positions, frames[2].positions, atol=1e-12)
    np.testing.assert_allclose(xsf.arrays[REF_FORCES], frames[2].calc.results["forces"], atol=1e-12)
    np.testing.assert_allclose(xsf.cell[:], frames[2].cell[:], atol=1e-12)


def test_summarize_counts(shared_data):
    structures = read_structures(
        shared_data / "n2p2/H2O_RPBE-D3/train.input.data", length_unit="bohr", energy_unit="hartree"
    )
    text = summarize(structures, "water")
    assert "structures: 20" in text
    assert "atoms: 2064 in total, 48 to 192 per structure" in text
    assert "elements: H 1376, O 688" in text
    assert "energy: 20 of 20 structures" in text and "stress: 0 of 20 structures" in text
    per_atom = [a.info[REF_ENERGY] / len(a) for a in structures]
    assert f"{min(per_atom):.6f} to {max(per_atom):.6f} eV/atom" in text
    assert "cells: periodic 3D 20" in text

    mixed = [
        ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]),
        ase.Atoms("Cu", cell=[3, 3, 10], pbc=[True, True, False]),
        ase.Atoms("Cu", cell=[3, 3, 3], pbc=True),
    ]
    text = summarize(mixed, "mixed")
    assert "molecule 1" in text and "slab (2D periodic) 1" in text and "periodic 3D 1" in text
    assert "energy: 0 of 3 structures" in text


def test_vasp_outcar_from_ase_test_data():
    """ASE ships a small OUTCAR (18 atoms); compare with a plain parse of its text."""
    from pathlib import Path

    from ase.units import GPa

    outcar = Path(ase.__file__).parent / "test/testdata/vasp/OUTCAR_example_1"
    if not outcar.is_file():
        pytest.skip("this ASE installation has no test data (OUTCAR_example_1)")
    (atoms,) = read_structures(outcar, format="vasp-out", require_energy=True, require_forces=True)
    lines = outcar.read_text().splitlines()
    energy_line = [line for line in lines if "energy(sigma->0)" in line][-1]
    assert atoms.info[REF_ENERGY] == float(energy_line.split()[-1])  # -68.23102426
    start = [k for k, line in enumerate(lines) if "TOTAL-FORCE (eV/Angst)" in line][-1] + 2
    rows = np.array([[float(x) for x in lines[k].split()] for k in range(start, start + 18)])
    np.testing.assert_array_equal(atoms.positions, rows[:, :3])
    np.testing.assert_array_equal(atoms.arrays[REF_FORCES], rows[:, 3:])
    # "in kB" holds XX YY ZZ XY YZ ZX of the pressure-like tensor: stress = -kB * 0.1 GPa
    kb = [float(x) for x in [line for line in lines if line.startswith("  in kB")][-1].split()[2:]]
    xx, yy, zz, xy, yz, zx = (-0.1 * GPa * np.array(kb)).tolist()
    expected = np.array([[xx, xy, zx], [xy, yy, yz], [zx, yz, zz]])
    np.testing.assert_allclose(atoms.info[REF_STRESS], expected, rtol=1e-12)
    assert atoms.calc is None
