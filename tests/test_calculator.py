"""The ASE calculator: forces and stress equal finite differences of its own energy."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.neighborlist import neighbor_list

from mlpot.descriptors import ACSF
from mlpot.models.hdnnp import HDNNP


@pytest.fixture(scope="module")
def random_hdnnp():
    """A two-element HDNNP with random weights (its energy surface is smooth but arbitrary)."""
    return HDNNP(ACSF.default(["Si", "O"], r_cut=4.5), hidden_layers=(8, 8), seed=3)


def quartz_like():
    atoms = bulk("Si", "diamond", a=5.6, cubic=True)
    atoms = atoms + Atoms(
        "O4", positions=[[1.3, 1.5, 0.2], [3.9, 1.2, 2.5], [0.4, 3.8, 4.1], [2.8, 4.6, 1.4]]
    )
    atoms.set_cell(
        atoms.cell[:] @ np.array([[1, 0.05, 0], [0, 1, 0.08], [0.03, 0, 1]]), scale_atoms=True
    )
    atoms.rattle(0.05, seed=9)
    return atoms


def test_forces_and_stress_equal_finite_differences(random_hdnnp):
    atoms = quartz_like()
    atoms.calc = random_hdnnp.calculator()
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    fd_forces = calculate_numerical_forces(atoms, eps=1e-5)
    fd_stress = calculate_numerical_stress(atoms, eps=1e-6)
    scale = np.abs(forces).max()
    assert scale > 1e-3  # a non-trivial surface
    np.testing.assert_allclose(forces, fd_forces, atol=1e-7 * max(1.0, scale))
    np.testing.assert_allclose(stress, fd_stress, atol=1e-8)
    energies = atoms.get_potential_energies()
    assert energies.sum() == pytest.approx(atoms.get_potential_energy(), rel=1e-12)
    assert atoms.get_potential_energy() == atoms.get_potential_energy(force_consistent=True)


def test_float32_model_agrees_with_float64_and_sums_energy_in_float64(random_hdnnp):
    """A float32 copy of the model (for fast MD) gives the float64 forces to single precision;
    its total energy is the float64 sum of its per-atom energies (no float32 round-off that
    grows with the number of atoms)."""
    import copy

    atoms = quartz_like().repeat((2, 2, 2))
    single = copy.deepcopy(random_hdnnp).float()
    atoms.calc = random_hdnnp.calculator()
    e64, f64 = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = single.calculator()
    e32, f32 = atoms.get_potential_energy(), atoms.get_forces()
    assert e32 == float(np.sum(atoms.get_potential_energies(), dtype=np.float64))
    assert e32 == pytest.approx(e64, rel=2e-6)
    np.testing.assert_allclose(f32, f64, atol=2e-5 * np.abs(f64).max())


def test_neighbor_list_reuse_with_skin_equals_new_lists(random_hdnnp):
    """The reused skin list gives what a new list gives, and is rebuilt when it must be."""
    atoms = quartz_like()
    reused = random_hdnnp.calculator(skin=1.0)
    fresh = random_hdnnp.calculator(skin=0.0)
    rng = np.random.default_rng(4)

    def pairs_inside():  # (i, j, image) of every pair within the 4.5 Å cutoff
        i, j, shift = neighbor_list("ijS", atoms, 4.5)
        return set(zip(i.tolist(), j.tolist(), map(tuple, shift.tolist()), strict=True))

    start, crossed = pairs_inside(), 0
    for step in range(6):
        if step:  # moves of up to 0.28 Å per atom: pairs cross the 4.5 Å cutoff both ways
            atoms.positions += rng.uniform(-0.16, 0.16, atoms.positions.shape)
        crossed += len(start ^ pairs_inside())
        for calc in (reused, fresh):
            calc.calculate(atoms, ["energy", "forces", "stress"])
        assert reused.results["energy"] == pytest.approx(fresh.results["energy"], rel=1e-12)
        np.testing.assert_allclose(reused.results["forces"], fresh.results["forces"], atol=1e-10)
        np.testing.assert_allclose(reused.results["stress"], fresh.results["stress"], atol=1e-12)
    assert crossed > 0  # the reused list really had to cover pairs that entered the cutoff
    assert reused.neighbor_list_builds == 1 and fresh.neighbor_list_builds == 6
    atoms.positions[0] += [0.3, 0.3, 0.3]  # 0.52 Å > skin / 2: a new list
    reused.calculate(atoms, ["energy"])
    assert reused.neighbor_list_builds == 2
    atoms.set_cell(atoms.cell[:] * 1.001, scale_atoms=False)  # another cell: a new list
    reused.calculate(atoms, ["energy"])
    assert reused.neighbor_list_builds == 3


def test_molecule_without_cell(random_hdnnp):
    atoms = Atoms("SiO2", positions=[[0, 0, 0], [1.6, 0, 0], [-1.5, 0.4, 0.1]])
    atoms.calc = random_hdnnp.calculator()
    np.testing.assert_allclose(
        atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-5), atol=1e-7
    )
    np.testing.assert_allclose(atoms.get_forces().sum(axis=0), 0, atol=1e-10)  # no net force
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_imported_n2p2_potential_finite_differences(shared_data):
    import mlpot

    pot = mlpot.load(
        shared_data / "mlearn_Si" / "n2p2_potential", length_unit="bohr", energy_unit="hartree"
    )
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.08, seed=2)
    atoms.calc = pot.calculator()
    np.testing.assert_allclose(
        atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-5), atol=1e-6
    )
    np.testing.assert_allclose(
        atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-6), atol=1e-7
    )
