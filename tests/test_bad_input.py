"""Every kind of bad data gives a DataError naming the file, the structure (0-based) or line."""

import ase
import numpy as np
import pytest

from mlpot.data.batch import REF_ENERGY, REF_FORCES, REF_STRESS
from mlpot.data.io import read_structures
from mlpot.data.validate import closest_pair, validate_structures
from mlpot.errors import DataError, MlpotError

HEADER = 'Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:3'
GOOD_FRAME = f'2\n{HEADER} energy=-1.5 pbc="T T T"\nH 0 0 0 0 0 0.1\nH 0 0 0.8 0 0 -0.1\n'


def frames_file(tmp_path, bad_frame, name="data.extxyz"):
    """An extxyz file whose structure 1 (0-based) is ``bad_frame``."""
    path = tmp_path / name
    path.write_text(GOOD_FRAME + bad_frame + GOOD_FRAME)
    return path


def read_error(path, **kwargs) -> str:
    with pytest.raises(DataError) as error:
        read_structures(path, **kwargs)
    message = str(error.value)
    assert message.startswith(str(path))
    return message


def test_good_file_reads(tmp_path):
    path = frames_file(tmp_path, GOOD_FRAME)
    structures = read_structures(path, require_energy=True, require_forces=True)
    assert [s.info[REF_ENERGY] for s in structures] == [-1.5] * 3
    assert structures[1].get_distance(0, 1) == pytest.approx(0.8)


def test_missing_energy_when_required(tmp_path):
    no_energy = f'2\n{HEADER} pbc="T T T"\nH 0 0 0 0 0 0\nH 0 0 0.8 0 0 0\n'
    path = frames_file(tmp_path, no_energy)
    assert len(read_structures(path)) == 3  # fine when energies are not needed
    message = read_error(path, require_energy=True)
    assert "structure 1 (0-based) has no reference energy" in message
    assert "--energy-key" in message


def test_missing_forces_when_required(tmp_path):
    header = 'Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3'
    path = frames_file(tmp_path, f'2\n{header} energy=-1.5 pbc="T T T"\nH 0 0 0\nH 0 0 0.8\n')
    message = read_error(path, require_forces=True)
    assert "structure 1 (0-based) has no reference forces" in message


@pytest.mark.parametrize(
    "frame, what",
    [
        (f'2\n{HEADER} energy=-1.5 pbc="T T T"\nH nan 0 0 0 0 0\nH 0 0 0.8 0 0 0\n', "positions"),
        (
            '2\nLattice="5 0 0 0 5 0 0 0 nan" Properties=species:S:1:pos:R:3:forces:R:3 '
            'energy=-1.5 pbc="T T T"\nH 0 0 0 0 0 0\nH 0 0 0.8 0 0 0\n',
            "the cell",
        ),
        (f'2\n{HEADER} energy=nan pbc="T T T"\nH 0 0 0 0 0 0\nH 0 0 0.8 0 0 0\n', "energy"),
        (f'2\n{HEADER} energy=-1.5 pbc="T T T"\nH 0 0 0 0 0 0\nH 0 0 0.8 0 inf 0\n', "forces"),
        (
            f'2\n{HEADER} energy=-1.5 stress="0 0 0 0 nan 0 0 0 0" pbc="T T T"\n'
            "H 0 0 0 0 0 0\nH 0 0 0.8 0 0 0\n",
            "stress",
        ),
    ],
)
def test_non_finite_values(tmp_path, frame, what):
    message = read_error(frames_file(tmp_path, frame))
    assert "structure 1 (0-based)" in message
    assert what in message
    assert "nan" in message.lower() or "inf" in message.lower()


def test_forces_of_wrong_shape(tmp_path):
    header = 'Lattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:2'
    path = frames_file(tmp_path, f'2\n{header} energy=-1.5 pbc="T T T"\nH 0 0 0 0 0\nH 0 0 1 0 0\n')
    message = read_error(path)
    assert "structure 1 (0-based): the forces have shape (2, 2), expected (2, 3)" in message
    # the same check on structures built in memory
    atoms = ase.Atoms("H3", positions=[[0, 0, 0], [0, 0, 1], [0, 1, 0]])
    atoms.arrays[REF_FORCES] = np.zeros((3, 2))
    with pytest.raises(DataError, match=r"mine: structure 0 \(0-based\): the reference forces "
                       r"have shape \(3, 2\), expected \(3, 3\)"):  # fmt: skip
        validate_structures([atoms], source="mine")


def test_atoms_too_close(tmp_path):
    close = f'2\n{HEADER} energy=-1.5 pbc="T T T"\nH 1 1 1 0 0 0\nH 1 1 1.05 0 0 0\n'
    message = read_error(frames_file(tmp_path, close))
    assert "structure 1 (0-based): atoms 0 and 1 (0-based) are 0.05 Å apart" in message
    assert "closer than 0.1 Å" in message


def test_atoms_too_close_through_periodic_image():
    # 4.96 Å apart in the cell, 0.04 Å apart across the periodic boundary along z
    atoms = ase.Atoms("H2", positions=[[1, 1, 0.02], [1, 1, 4.98]], cell=[5, 5, 5], pbc=True)
    with pytest.raises(DataError, match=r"set: structure 0 \(0-based\): atoms 0 and 1 .*0\.04 Å"):
        validate_structures([atoms], source="set")
    assert closest_pair(atoms, 0.1)[2] == pytest.approx(atoms.get_distance(0, 1, mic=True))
    # the same pair without periodicity along z is fine
    atoms.pbc = [True, True, False]
    validate_structures([atoms], source="set")
    # a distance check that can be switched off
    atoms.pbc = True
    validate_structures([atoms], source="set", min_distance=0)


def test_zero_volume_cell(tmp_path):
    flat = (
        '2\nLattice="5 0 0 0 5 0 0 0 0" Properties=species:S:1:pos:R:3:forces:R:3 '
        'energy=-1.5 pbc="T T T"\nH 0 0 0 0 0 0\nH 0 0 0.8 0 0 0\n'
    )
    message = read_error(frames_file(tmp_path, flat))
    assert "structure 1 (0-based): the cell has zero volume along its periodic directions" in (
        message
    )
    # a slab periodic in x and y only is fine with a zero third vector
    slab = ase.Atoms("H", cell=[[5, 0, 0], [0, 5, 0], [0, 0, 0]], pbc=[True, True, False])
    validate_structures([slab])


def test_empty_data_set(tmp_path):
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    assert "empty" in read_error(empty)
    blank = tmp_path / "input.data"
    blank.write_text("\n# nothing here\n")
    assert "empty data set" in read_error(blank)
    with pytest.raises(DataError, match=r"mine: empty data set"):
        validate_structures([], source="mine")
    with pytest.raises(DataError, match=r"mine: structure 0 \(0-based\) has no atoms"):
        validate_structures([ase.Atoms()], source="mine")


def test_missing_file(tmp_path):
    message = read_error(tmp_path / "nowhere.extxyz")
    assert "no such file" in message
    assert issubclass(DataError, MlpotError)


def test_unparseable_files(tmp_path):
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_text("hello world\nthis is not a structure file\n")
    message = read_error(garbage)
    assert "cannot read it as" in message and "--format" in message
    n2p2 = tmp_path / "train.data"
    n2p2.write_text("begin\nlattice 5 0 0\nlattice 0 5 0\nlattice 0 0 5\natom 0 0 0 H 0\nend\n")
    message = read_error(n2p2)
    assert f"{n2p2} line 5: expected 'atom x y z element charge energy fx fy fz'" in message


def test_stress_of_wrong_shape_in_memory():
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 1]], cell=[4, 4, 4], pbc=True)
    atoms.info[REF_STRESS] = np.zeros(6)
    with pytest.raises(DataError, match=r"structure 0 \(0-based\): the reference stress has shape"):
        validate_structures([atoms])
