"""The shared Potential machinery: forces and stress by autograd equal finite differences."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.fd import calculate_numerical_stress
from ase.calculators.lj import LennardJones as AseLJ

from mlpot.models import LennardJones


@pytest.fixture
def argon():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.1, seed=3)
    atoms.set_cell(
        atoms.cell[:] @ np.array([[1.0, 0.02, 0], [0, 1.0, -0.03], [0.01, 0, 1.0]]),
        scale_atoms=True,
    )
    return atoms


def test_lj_matches_ase_lennard_jones(argon):
    """An independent implementation (ASE's) gives the same energy, forces and stress."""
    pot = LennardJones(epsilon=0.0104, sigma=3.4, cutoff=8.5)
    ref = AseLJ(epsilon=0.0104, sigma=3.4, rc=8.5, smooth=False)
    a = argon.copy()
    a.calc = ref
    e_ref, f_ref, s_ref = a.get_potential_energy(), a.get_forces(), a.get_stress()
    a.calc = pot.calculator()
    assert a.get_potential_energy() == pytest.approx(e_ref, rel=1e-10)
    np.testing.assert_allclose(a.get_forces(), f_ref, atol=1e-10)
    np.testing.assert_allclose(a.get_stress(), s_ref, atol=1e-10)


def test_forces_and_stress_equal_finite_differences(argon):
    pot = LennardJones(epsilon=0.0104, sigma=3.4, cutoff=8.5)
    a = argon.copy()
    a.calc = pot.calculator()
    forces = a.get_forces()
    stress = a.get_stress()
    h = 1e-5
    for atom, axis in [(0, 0), (5, 1), (17, 2)]:
        p = a.get_positions()
        b = a.copy()
        b.calc = pot.calculator()
        p[atom, axis] += h
        b.set_positions(p)
        ep = b.get_potential_energy()
        p[atom, axis] -= 2 * h
        b.set_positions(p)
        em = b.get_potential_energy()
        assert forces[atom, axis] == pytest.approx(-(ep - em) / (2 * h), abs=1e-7)
    np.testing.assert_allclose(calculate_numerical_stress(a, eps=1e-6), stress, atol=1e-8)
