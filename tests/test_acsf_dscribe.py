"""ACSF.from_dscribe reproduces DScribe 2.x ACSF exactly (float64, 1e-10 relative)."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from mlpot.descriptors import ACSF

dscribe = pytest.importorskip("dscribe.descriptors")

PARAMS = dict(
    g2_params=[(0.5, 1.0), (0.1, 2.0), (0.02, 0.0)],
    g3_params=[0.7, 1.3],
    g4_params=[(0.1, 1, 1), (0.2, 2, -1), (0.05, 3.5, 1), (0.0, 16, -1)],
    g5_params=[(0.1, 1, 1), (0.3, 4, -1), (0.01, 1.5, -1)],
)


def random_periodic(numbers, cell, rng):
    return Atoms(
        numbers=numbers, scaled_positions=rng.random((len(numbers), 3)), cell=cell, pbc=True
    )


def random_molecule(numbers, rng, box=6.0, min_distance=0.7):
    positions = []
    while len(positions) < len(numbers):
        p = rng.random(3) * box
        if all(np.linalg.norm(p - q) > min_distance for q in positions):
            positions.append(p)
    return Atoms(numbers=numbers, positions=positions)


def assert_same(ours, ref, acsf=None, numbers=None):
    assert ours.shape == ref.shape
    assert np.all(np.isfinite(ours))
    bad = np.argwhere(np.isnan(ref))
    for i, j in bad:
        # DScribe computes pow(0.5 (1 + lambda cos), zeta) without clamping: for non-integer
        # zeta it gives NaN when 1 + lambda cos rounds to -1e-17 (collinear periodic images).
        # We clamp at 0 as n2p2 does. Only such entries may differ.
        function = acsf.functions_for(int(numbers[i]))[j]
        assert function.is_angular and not float(function.zeta).is_integer()
    ref = np.where(np.isnan(ref), ours, ref)
    scale = np.maximum(np.abs(ref), 1e-300)
    err = np.abs(ours - ref)
    # 1e-10 relative per feature (absolute 1e-14 for features that are zero up to rounding)
    assert np.all((err <= 1e-10 * scale) | (err < 1e-14)), err.max()


def structures(rng):
    """(species, Atoms, periodic) cases: 1, 2, 3 elements, triclinic cells smaller than r_cut."""
    out = []
    si = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 1, 1)
    si.rattle(0.1, seed=3)
    out.append((["Si"], si, True))
    triclinic = np.array([[3.1, 0.0, 0.0], [0.9, 2.9, 0.0], [0.5, 0.7, 3.3]])
    out.append((["Ti", "O"], random_periodic(rng.choice([8, 22], size=6), triclinic, rng), True))
    skewed = np.array([[2.6, 0.0, 0.0], [1.9, 2.4, 0.0], [-1.1, 0.8, 2.9]])
    out.append((["H", "O", "C"], random_periodic(rng.choice([1, 6, 8], size=5), skewed, rng), True))
    out.append((["H", "O", "C"], random_molecule(rng.choice([1, 6, 8], size=9), rng), False))
    out.append((["Cu", "S"], random_molecule(rng.choice([16, 29], size=8), rng), False))
    return out


@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("r_cut", [4.5, 6.0])
def test_equal_to_dscribe(case, r_cut):
    rng = np.random.default_rng(100 + case)
    species, atoms, periodic = structures(rng)[case]
    reference = dscribe.ACSF(species=species, r_cut=r_cut, periodic=periodic, **PARAMS)
    ref = reference.create(atoms)
    acsf = ACSF.from_dscribe(species, r_cut, **PARAMS)
    assert_same(acsf.compute(atoms), ref, acsf, atoms.numbers)


def test_sample_nnp_parameters_and_order():
    """The 11-function set of sample_NNP's desc.npy: same layout as DScribe's."""
    kw = dict(
        species=["Si"],
        r_cut=7.0,
        g2_params=[(0.025, 0), (0.05, 0), (0.1, 0), (0.2, 0), (0.4, 0), (0.8, 0)],
        g4_params=[(0.1, 1, 1), (0.1, 4, 1), (0.1, 1, -1), (0.1, 4, -1)],
    )
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=1)
    acsf = ACSF.from_dscribe(**kw)
    assert acsf.n_features == {14: 11}
    assert [f.kind for f in acsf.functions_for(14)] == ["G1"] + ["G2"] * 6 + ["G4"] * 4
    assert_same(acsf.compute(atoms), dscribe.ACSF(periodic=True, **kw).create(atoms))


def test_list_of_structures_matches_dscribe():
    rng = np.random.default_rng(7)
    cell = np.diag([4.0, 4.5, 5.0])
    frames = [random_periodic(rng.choice([8, 22], size=n), cell, rng) for n in (3, 5, 1)]
    reference = dscribe.ACSF(species=["O", "Ti"], r_cut=5.0, periodic=True, **PARAMS)
    acsf = ACSF.from_dscribe(["O", "Ti"], 5.0, **PARAMS)
    ours = acsf.compute(frames)
    assert isinstance(ours, list) and len(ours) == 3
    for atoms, features in zip(frames, ours, strict=True):
        assert_same(features, reference.create(atoms), acsf, atoms.numbers)
