"""ACSF: n2p2 formulas, cutoff types, autograd forces/stress, invariances, edge cases, errors."""

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list as ase_neighbor_list

import mlpot.descriptors.acsf as acsf_module
from mlpot.data.batch import AtomsBatch
from mlpot.data.neighbors import neighbor_list, pair_vectors
from mlpot.descriptors import ACSF, SymmetryFunction
from mlpot.descriptors.cutoffs import CUTOFF_TYPES, cutoff_function
from mlpot.errors import DataError, ParameterError
from mlpot.models.potential import Potential, compute_properties

# ---------------------------------------------------------------------------------------
# independent NumPy references


def numpy_cutoff(r, rc, name, alpha):
    """n2p2's CutoffFunction, written out per scalar."""
    if r >= rc:
        return 0.0
    if name == "hard":
        return 1.0
    if name in ("tanhu", "tanh"):
        t = math.tanh(1.0 - r / rc) ** 3
        return t / math.tanh(1.0) ** 3 if name == "tanh" else t
    rci = alpha * rc
    if r < rci:
        return 1.0
    x = (r - rci) / (rc - rci)
    return {
        "cos": lambda: 0.5 * (math.cos(math.pi * x) + 1.0),
        "exp": lambda: math.exp(1.0 - 1.0 / (1.0 - x * x)),
        "poly1": lambda: (2 * x - 3) * x**2 + 1,
        "poly2": lambda: ((15 - 6 * x) * x - 10) * x**3 + 1,
        "poly3": lambda: (x * (x * (20 * x - 70) + 84) - 35) * x**4 + 1,
        "poly4": lambda: (x * (x * ((315 - 70 * x) * x - 540) + 420) - 126) * x**5 + 1,
    }[name]()


def brute_force(atoms, functions):
    """Loop-based evaluation of each function (n2p2 / DScribe conventions), NumPy."""
    rc_max = max(f.r_cut for f in functions)
    i_list, j_list, d_list = ase_neighbor_list("ijD", atoms, rc_max)
    numbers = atoms.numbers
    out = np.zeros((len(atoms), len(functions)))
    for i in range(len(atoms)):
        sel = i_list == i
        js, ds = j_list[sel], d_list[sel]
        for col, f in enumerate(functions):
            if f.center != numbers[i]:
                continue
            fc = lambda r, f=f: numpy_cutoff(r, f.r_cut, f.cutoff_type, f.cutoff_alpha)  # noqa
            total = 0.0
            if not f.is_angular:
                for j, d in zip(js, ds, strict=True):
                    r = np.linalg.norm(d)
                    if numbers[j] != f.neighbors[0]:
                        continue
                    g = {
                        "G1": 1.0,
                        "G2": math.exp(-f.eta * (r - f.r_shift) ** 2),
                        "G3": math.cos(f.kappa * r),
                    }[f.kind]
                    total += g * fc(r)
            else:
                for a in range(len(js)):
                    for b in range(a + 1, len(js)):
                        if sorted((numbers[js[a]], numbers[js[b]])) != list(f.neighbors):
                            continue
                        rij, rik = np.linalg.norm(ds[a]), np.linalg.norm(ds[b])
                        rjk = np.linalg.norm(ds[b] - ds[a])
                        cos = ds[a] @ ds[b] / (rij * rik)
                        e = (rij - f.r_shift) ** 2 + (rik - f.r_shift) ** 2
                        cut = fc(rij) * fc(rik)
                        if f.kind == "G4":
                            e += (rjk - f.r_shift) ** 2
                            cut *= fc(rjk)
                        base = max(1.0 + f.lambda_ * cos, 0.0)
                        total += base**f.zeta * math.exp(-f.eta * e) * cut
                total *= 2.0 ** (1.0 - f.zeta)
            out[i, col] = total
    return out


def random_cell_structure(numbers, cell, seed):
    rng = np.random.default_rng(seed)
    return Atoms(
        numbers=numbers, scaled_positions=rng.random((len(numbers), 3)), cell=cell, pbc=True
    )


TRICLINIC = np.array([[3.3, 0.0, 0.0], [1.1, 3.0, 0.0], [0.4, -0.6, 3.4]])


def assert_equals_brute_force(acsf, atoms, features):
    """Each element's columns equal the loop-based reference; the padding after them is zero."""
    for z in acsf.elements:
        fs = acsf.functions_for(z)
        rows = atoms.numbers == z
        np.testing.assert_allclose(
            features[rows, : len(fs)], brute_force(atoms, fs)[rows], rtol=1e-11, atol=1e-13
        )
        assert np.all(features[rows, len(fs) :] == 0)


def n2p2_like_set():
    """Types 2, 3, 9 with shifts, several cutoff types and alpha, two elements (H=1, O=8)."""
    fs = []
    for k, name in enumerate(CUTOFF_TYPES):
        fs.append(SymmetryFunction("G2", 8, (1,), 4.0, 0.3, 1.2, cutoff_type=name))
        fs.append(
            SymmetryFunction(
                "G4",
                8,
                (1, 8),
                3.8,
                0.1,
                0.4 * (k % 3),
                2.0,
                -1.0,
                cutoff_type=name,
                cutoff_alpha=0.2 * (k % 4),
            )
        )
        fs.append(
            SymmetryFunction(
                "G5", 1, (1, 1), 4.2, 0.05, 0.5, 1.0 + k, 1.0, cutoff_type=k, cutoff_alpha=0.1
            )
        )
    fs.append(SymmetryFunction("G3", 1, (8,), 3.5, kappa=1.7, cutoff_type="poly2"))
    fs.append(SymmetryFunction("G1", 1, (8,), 4.0, cutoff_type="exp", cutoff_alpha=0.3))
    fs.append(SymmetryFunction("G5", 8, (8, 8), 4.5, 0.0, 0.0, 2.5, 1.0))
    return fs


# ---------------------------------------------------------------------------------------
# cutoff functions


@pytest.mark.parametrize("name", list(CUTOFF_TYPES))
@pytest.mark.parametrize("alpha", [0.0, 0.35])
def test_cutoff_types_against_formula_and_derivative(name, alpha):
    rc = 5.0
    r = torch.linspace(0.05, 6.0, 241, dtype=torch.float64, requires_grad=True)
    f = cutoff_function(r, rc, name, alpha)
    assert torch.equal(cutoff_function(r.detach(), rc, CUTOFF_TYPES[name], alpha), f.detach())
    expected = np.array([numpy_cutoff(x, rc, name, alpha) for x in r.detach().numpy()])
    np.testing.assert_allclose(f.detach().numpy(), expected, rtol=1e-13, atol=1e-15)
    if name == "hard":  # a step: constant inside, no gradient
        assert not f.requires_grad
        return
    (grad,) = torch.autograd.grad(f.sum(), r)
    assert torch.isfinite(grad).all()
    h = 1e-6
    for x, g in zip(r.detach().numpy(), grad.numpy(), strict=True):
        if abs(x - alpha * rc) < 2 * h or abs(x - rc) < 2 * h:
            continue  # hard cutoff (step) and kinks of alpha are not differentiable
        fd = (numpy_cutoff(x + h, rc, name, alpha) - numpy_cutoff(x - h, rc, name, alpha)) / 2 / h
        assert g == pytest.approx(fd, abs=1e-7)


def test_cutoff_second_derivative_finite_beyond_cutoff():
    r = torch.tensor([4.999999, 5.0, 5.5], dtype=torch.float64, requires_grad=True)
    for name in CUTOFF_TYPES:
        f = cutoff_function(r, 5.0, name, 0.2)
        if name == "hard":
            continue
        (g,) = torch.autograd.grad(f.sum(), r, create_graph=True)
        (h,) = torch.autograd.grad(g.sum(), r)
        assert torch.isfinite(g).all() and torch.isfinite(h).all(), name


# ---------------------------------------------------------------------------------------
# n2p2 symmetry-function types against a loop-based reference


def test_n2p2_types_shifts_and_cutoffs_against_brute_force():
    functions = n2p2_like_set()
    acsf = ACSF(functions)
    periodic = random_cell_structure([8, 1, 1, 8, 1, 1, 1], TRICLINIC, seed=5)
    molecule = Atoms(
        numbers=[8, 1, 1, 8, 1, 1],
        positions=np.random.default_rng(3).random((6, 3)) * 3.0,
    )
    for atoms in (periodic, molecule):
        assert_equals_brute_force(acsf, atoms, acsf.compute(atoms))


def test_column_order_is_function_order():
    fs = n2p2_like_set()
    acsf = ACSF(fs)
    atoms = random_cell_structure([8, 1, 1, 8, 1], TRICLINIC, seed=9)
    full = acsf.compute(atoms)
    rows = atoms.numbers == 8
    for col, f in enumerate(acsf.functions_for(8)):
        single = ACSF([f], elements=[1, 8]).compute(atoms)
        np.testing.assert_allclose(full[rows, col], single[rows, 0], rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------
# forces, stress and second derivatives


class LinearFeaturePotential(Potential):
    """E = Σ_a w_Z(a) · G(a) with fixed random weights (tests only)."""

    def __init__(self, acsf: ACSF, seed: int = 0):
        super().__init__(acsf.cutoff, acsf.elements)
        self.acsf = acsf
        gen = torch.Generator().manual_seed(seed)
        w = torch.randn(len(acsf.elements), acsf.max_features, generator=gen, dtype=torch.float64)
        self.weights = torch.nn.Parameter(w * 0.1)
        self.lookup = {z: i for i, z in enumerate(acsf.elements)}

    def forward(self, batch, nl, vectors):
        g = self.acsf(batch, nl, vectors)
        idx = torch.tensor([self.lookup[int(z)] for z in batch.numbers])
        return (g * self.weights[idx]).sum(dim=1)


def energy_of(potential, atoms):
    batch = AtomsBatch.from_atoms([atoms])
    return float(compute_properties(potential, batch, forces=False)["energy"][0])


@pytest.fixture(scope="module")
def mixed_potential():
    fs = n2p2_like_set()
    return LinearFeaturePotential(ACSF(fs), seed=1)


def test_forces_and_stress_match_finite_differences(mixed_potential):
    potential = mixed_potential
    atoms = random_cell_structure([8, 1, 1, 8, 1, 1], TRICLINIC, seed=11)
    batch = AtomsBatch.from_atoms([atoms])
    out = compute_properties(potential, batch, forces=True, stress=True)
    h = 1e-5
    forces = np.zeros((len(atoms), 3))
    for a in range(len(atoms)):
        for x in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, x] += h
            minus.positions[a, x] -= h
            forces[a, x] = -(energy_of(potential, plus) - energy_of(potential, minus)) / (2 * h)
    np.testing.assert_allclose(
        out["forces"][0 if False else slice(None)].numpy(), forces, atol=1e-6
    )
    volume = atoms.get_volume()
    stress = np.zeros((3, 3))
    for x in range(3):
        for y in range(3):
            energies = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[x, y] += sign * h
                s = atoms.copy()
                s.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
                energies.append(energy_of(potential, s))
            stress[x, y] = (energies[0] - energies[1]) / (2 * h) / volume
    np.testing.assert_allclose(out["stress"][0].numpy(), stress, atol=1e-6)


def test_molecule_forces_match_finite_differences():
    acsf = ACSF.from_dscribe(
        ["H", "C"], 4.0, [(0.5, 1.0)], [1.1], [(0.1, 2, -1), (0.05, 1, 1)], [(0.2, 4, 1)]
    )
    potential = LinearFeaturePotential(acsf, seed=4)
    atoms = Atoms("CH4C", positions=np.random.default_rng(2).random((6, 3)) * 2.5)
    out = compute_properties(potential, AtomsBatch.from_atoms([atoms]), forces=True)
    h = 1e-5
    for a in range(len(atoms)):
        for x in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, x] += h
            minus.positions[a, x] -= h
            fd = -(energy_of(potential, plus) - energy_of(potential, minus)) / (2 * h)
            assert float(out["forces"][a, x]) == pytest.approx(fd, abs=1e-6)


def test_second_derivatives_for_force_training(mixed_potential):
    """d(Σ F²)/dw by double backward equals finite differences in the weights."""
    potential = mixed_potential
    atoms = random_cell_structure([8, 1, 1, 8, 1], TRICLINIC, seed=12)
    batch = AtomsBatch.from_atoms([atoms])

    def loss():
        out = compute_properties(potential, batch, forces=True, create_graph=True)
        return (out["forces"] ** 2).sum()

    value = loss()
    (grad,) = torch.autograd.grad(value, potential.weights)
    assert torch.isfinite(grad).all()
    h = 1e-6
    for index in [(0, 0), (0, 3), (1, 1), (1, 7)]:
        with torch.no_grad():
            potential.weights[index] += h
        up = float(loss().detach())
        with torch.no_grad():
            potential.weights[index] -= 2 * h
        down = float(loss().detach())
        with torch.no_grad():
            potential.weights[index] += h
        assert float(grad[index]) == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-8)


def test_chunked_triplets_equal_unchunked(monkeypatch, mixed_potential):
    atoms = random_cell_structure([8, 1, 1, 8, 1, 1, 1, 8], TRICLINIC * 1.2, seed=13)
    batch = AtomsBatch.from_atoms([atoms])
    whole = compute_properties(mixed_potential, batch, forces=True, stress=True)
    monkeypatch.setattr(acsf_module, "MAX_TRIPLETS_PER_CHUNK", 300)
    chunked = compute_properties(mixed_potential, batch, forces=True, stress=True)
    for key in ("atomic_energies", "forces", "stress"):
        torch.testing.assert_close(chunked[key], whole[key], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------
# invariances


@pytest.fixture(scope="module")
def tio_acsf():
    return ACSF.from_dscribe(
        ["Ti", "O"],
        5.0,
        [(0.3, 1.5), (0.05, 0.0)],
        [0.8],
        [(0.1, 1, -1), (0.02, 4, 1)],
        [(0.05, 2, 1), (0.2, 1, -1)],
    )


def test_rotation_translation_permutation_invariance(tio_acsf):
    atoms = random_cell_structure([22, 8, 8, 22, 8, 8], TRICLINIC * 1.1, seed=21)
    ref = tio_acsf.compute(atoms)
    rotated = atoms.copy()
    rotated.rotate(37, (1, 2, 3), rotate_cell=True)
    rotated.translate((0.3, -1.2, 2.2))
    np.testing.assert_allclose(tio_acsf.compute(rotated), ref, rtol=1e-12, atol=1e-12)
    perm = np.array([3, 1, 5, 0, 2, 4])  # swaps like atoms only among themselves
    assert (atoms.numbers[perm] == atoms.numbers[perm]).all()
    permuted = atoms[perm]
    np.testing.assert_allclose(tio_acsf.compute(permuted), ref[perm], rtol=1e-12, atol=1e-12)


def test_periodic_image_and_equivalent_cell_invariance(tio_acsf):
    atoms = random_cell_structure([22, 8, 8, 22, 8], TRICLINIC, seed=22)
    ref = tio_acsf.compute(atoms)
    shifted = atoms.copy()
    image_shifts = np.array([[1, -2, 0], [0, 1, 3], [2, 0, -1], [0, 0, 1], [-1, 1, 1]])
    shifted.positions += image_shifts @ atoms.cell[:]
    np.testing.assert_allclose(tio_acsf.compute(shifted), ref, rtol=1e-11, atol=1e-12)
    other_cell = atoms.copy()
    m = np.array([[1, 1, 0], [0, 1, 0], [1, -1, 1]])  # unimodular
    other_cell.set_cell(m @ atoms.cell[:], scale_atoms=False)
    other_cell.wrap()
    np.testing.assert_allclose(tio_acsf.compute(other_cell), ref, rtol=1e-11, atol=1e-12)
    supercell = atoms * (2, 1, 1)
    np.testing.assert_allclose(
        tio_acsf.compute(supercell), np.concatenate([ref, ref]), rtol=1e-11, atol=1e-12
    )


# ---------------------------------------------------------------------------------------
# edge cases


def test_isolated_atom_gives_zeros_and_finite_gradients(mixed_potential):
    atoms = Atoms("OH2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.3, 0.9, 0], [30, 0, 0]])
    batch = AtomsBatch.from_atoms([atoms])
    nl = neighbor_list(batch, mixed_potential.acsf.cutoff)
    positions = batch.positions.clone().requires_grad_(True)
    vectors = pair_vectors(batch, nl, positions=positions)
    features = mixed_potential.acsf(batch, nl, vectors)
    assert torch.isfinite(features).all()
    assert torch.all(features[3] == 0)
    (grad,) = torch.autograd.grad(features.sum(), positions, create_graph=True)
    assert torch.isfinite(grad).all() and torch.all(grad[3] == 0)
    (second,) = torch.autograd.grad(grad.pow(2).sum(), positions)
    assert torch.isfinite(second).all()
    out = compute_properties(mixed_potential, batch, forces=True, create_graph=True)
    assert torch.isfinite(out["forces"]).all()
    single = Atoms("O", positions=[[0, 0, 0]])
    assert np.all(mixed_potential.acsf.compute(single) == 0)


def test_collinear_triplets_have_finite_second_derivatives():
    """cos θ = ±1 exactly (a straight chain): no NaN in forces or their derivatives."""
    acsf = ACSF.from_dscribe(["Cu"], 5.0, None, None, [(0.1, 1, 1), (0.1, 1, -1), (0.1, 2, 1)])
    potential = LinearFeaturePotential(acsf, seed=3)
    chain = Atoms("Cu", positions=[[0, 0, 0]], cell=[2.5, 10, 10], pbc=[True, False, False])
    out = compute_properties(
        potential, AtomsBatch.from_atoms([chain]), forces=True, create_graph=True
    )
    (grad,) = torch.autograd.grad((out["forces"] ** 2).sum(), potential.weights)
    assert torch.isfinite(out["forces"]).all() and torch.isfinite(grad).all()


def test_default_set_sizes_and_grid():
    si = ACSF.default(["Si"], r_cut=6.0)
    assert si.n_features == {14: 48}
    fs = si.functions_for(14)
    etas_centre = sorted(f.eta for f in fs if f.kind == "G2" and f.r_shift == 0)
    # Imbalzano "center": eta_m = (N^(m/N) / r_c)^2, N = 7
    np.testing.assert_allclose(etas_centre, [(7 ** (m / 7) / 6.0) ** 2 for m in range(8)])
    shifted = sorted((f.r_shift, f.eta) for f in fs if f.kind == "G2" and f.r_shift > 0)
    assert shifted[0][0] == pytest.approx(6.0 / 8) and shifted[-1][0] == pytest.approx(
        6.0 / 8 ** (1 / 8)
    )
    assert {f.lambda_ for f in fs if f.is_angular} == {1.0, -1.0}
    # radial functions reach r_c, angular ones the shorter angular cutoff 0.75 r_c, whose
    # centred grid they use: eta_m = (N^(m/N) / r_a)^2, N = 3
    assert {f.r_cut for f in fs if not f.is_angular} == {6.0}
    assert {f.r_cut for f in fs if f.is_angular} == {4.5}
    etas_angular = sorted({f.eta for f in fs if f.is_angular})
    np.testing.assert_allclose(etas_angular, [(3 ** (m / 3) / 4.5) ** 2 for m in range(4)])
    same = ACSF.default(["Si"], r_cut=6.0, angular_cutoff=6.0)
    assert {f.r_cut for f in same.functions} == {6.0}
    tio2 = ACSF.default(["O", "Ti"], r_cut=6.5)
    assert tio2.elements == [8, 22] and tio2.n_features == {8: 78, 22: 78}
    atoms = bulk("Si", "diamond", a=5.43)
    features = si.compute(atoms)
    assert np.all(np.isfinite(features)) and features.shape == (2, 48)


def test_config_round_trip(mixed_potential):
    acsf = mixed_potential.acsf
    import json

    again = ACSF.from_config(json.loads(json.dumps(acsf.get_config())))
    assert again.functions == acsf.functions and again.n_features == acsf.n_features
    atoms = random_cell_structure([8, 1, 1], TRICLINIC, seed=30)
    np.testing.assert_array_equal(again.compute(atoms), acsf.compute(atoms))


# ---------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="G2", center=14, neighbors=(14,), r_cut=5.0, eta=-0.1), "eta"),
        (dict(kind="G2", center=14, neighbors=(14,), r_cut=0.0), "r_cut"),
        (dict(kind="G2", center=14, neighbors=(14,), r_cut=-2.0), "r_cut"),
        (dict(kind="G4", center=14, neighbors=(14, 14), r_cut=5.0, zeta=0.5), "zeta"),
        (dict(kind="G5", center=14, neighbors=(14, 14), r_cut=5.0, lambda_=0.5), "lambda"),
        (dict(kind="G4", center=14, neighbors=(14,), r_cut=5.0), "neighbour"),
        (dict(kind="G7", center=14, neighbors=(14,), r_cut=5.0), "kind"),
        (dict(kind="G2", center=14, neighbors=(14,), r_cut=5.0, cutoff_type="gauss"), "cutoff"),
        (dict(kind="G2", center=14, neighbors=(14,), r_cut=5.0, cutoff_type=9), "cutoff"),
        (dict(kind="G2", center=14, neighbors=(14,), r_cut=5.0, cutoff_alpha=1.0), "alpha"),
    ],
)
def test_bad_parameters_raise_parameter_error(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        SymmetryFunction(**kwargs)


def test_bad_dscribe_and_default_parameters():
    with pytest.raises(ParameterError, match="eta"):
        ACSF.from_dscribe(["Si"], 5.0, g2_params=[(-1.0, 0.0)])
    with pytest.raises(ParameterError, match="r_cut"):
        ACSF.from_dscribe(["Si"], -1.0)
    with pytest.raises(ParameterError, match="lambda"):
        ACSF.from_dscribe(["Si"], 5.0, g4_params=[(0.1, 1, 2)])
    with pytest.raises(ParameterError, match="r_cut"):
        ACSF.default(["Si"], r_cut=0)
    with pytest.raises(ParameterError, match="angular_cutoff"):
        ACSF.default(["Si"], r_cut=5.0, angular_cutoff=5.5)
    with pytest.raises(ParameterError, match="symbol"):
        ACSF.default(["Xx"])


def test_uncovered_element_raises_data_error():
    acsf = ACSF.from_dscribe(["Si"], 4.0, [(0.1, 0.0)])
    good = bulk("Si", "diamond", a=5.43)
    bad = good.copy()
    bad.numbers[1] = 8
    with pytest.raises(DataError, match=r"structure 1: element\(s\) O"):
        acsf.compute([good, bad])


# ---------------------------------------------------------------------------------------
# the fused C++ kernel of the angular sums


def cosine_cutoff_set():
    """G2, G4 and G5 with shifts, inner cutoffs, integer and non-integer zeta; cosine cutoffs."""
    fs = []
    for k in range(4):
        fs.append(SymmetryFunction("G2", 8, (1,), 4.0, 0.3, 0.4 * k))
        fs.append(
            SymmetryFunction(
                "G4", 8, (1, 8), 3.8, 0.1 * k, 0.3 * k, 1.0 + 2 * k, -1.0, cutoff_alpha=0.1 * k
            )
        )
        fs.append(SymmetryFunction("G5", 1, (1, 8), 4.2, 0.05, 0.2 * k, 16.0 / (k + 1), 1.0))
        fs.append(SymmetryFunction("G4", 1, (1, 1), 4.0, 0.02 * k, 0.0, 2.5, 1.0))
    fs.append(SymmetryFunction("G5", 8, (8, 8), 4.5, 0.0, 0.0, 1.0, -1.0, cutoff_alpha=0.3))
    # radial G1/G3 with inner cutoffs, and radial cutoffs beyond every angular one
    fs.append(SymmetryFunction("G1", 1, (8,), 5.0, cutoff_alpha=0.2))
    fs.append(SymmetryFunction("G3", 8, (8,), 3.5, kappa=1.3, cutoff_alpha=0.1))
    fs.append(SymmetryFunction("G2", 1, (1,), 5.2, 0.5, 1.0))
    return fs


def test_fused_kernel_equals_pytorch_path_and_brute_force():
    from mlpot.descriptors import _fused

    if not _fused.kernel_available():
        pytest.skip("fused kernel not built here (no compiler)")
    acsf = ACSF(cosine_cutoff_set())
    assert acsf._tables(torch.float64, torch.device("cpu"))["fused_ok"]
    potential = LinearFeaturePotential(acsf, seed=3)
    periodic = random_cell_structure([8, 1, 1, 8, 1, 1, 1], TRICLINIC, seed=21)
    molecule = Atoms("OH2OH2", positions=np.random.default_rng(4).random((6, 3)) * 3.0)
    molecule += Atoms("H", positions=[(20.0, 20.0, 20.0)])  # no neighbour: all zeros
    for atoms in (periodic, molecule):
        assert_equals_brute_force(acsf, atoms, acsf.compute(atoms))
        batch = AtomsBatch.from_atoms([atoms])
        stress = bool(atoms.pbc.all())
        fused = compute_properties(potential, batch, forces=True, stress=stress)
        with _fused.fused_kernel_enabled(False):
            plain = compute_properties(potential, batch, forces=True, stress=stress)
        for key in fused:
            torch.testing.assert_close(fused[key], plain[key], rtol=1e-12, atol=1e-12)
        # a list built with a skin (pairs beyond every cutoff) changes nothing
        longer = neighbor_list(batch, acsf.cutoff + 1.5)
        if stress:  # the periodic cell gains pairs; the small molecule has none beyond 5.2 Å
            assert longer.n_pairs > neighbor_list(batch, acsf.cutoff).n_pairs
        skin = compute_properties(potential, batch, longer, forces=True, stress=stress)
        for key in fused:
            torch.testing.assert_close(skin[key], plain[key], rtol=1e-12, atol=1e-12)
    assert not acsf.compute(molecule)[-1].any()
    # forces through the kernel = finite differences of the energy
    out = compute_properties(potential, AtomsBatch.from_atoms([periodic]), forces=True)
    h = 1e-5
    for a, x in [(0, 0), (1, 2), (3, 1), (6, 2)]:
        plus, minus = periodic.copy(), periodic.copy()
        plus.positions[a, x] += h
        minus.positions[a, x] -= h
        fd = -(energy_of(potential, plus) - energy_of(potential, minus)) / (2 * h)
        assert float(out["forces"][a, x]) == pytest.approx(fd, abs=1e-7)
    # float32 through the kernel agrees with float64 to single precision
    single = ACSF(cosine_cutoff_set()).compute(periodic, dtype=torch.float32)
    np.testing.assert_allclose(single, acsf.compute(periodic), rtol=2e-5, atol=2e-5)


def test_fused_kernel_loads_after_a_killed_build_left_torchs_lock_file():
    """A process killed inside torch's build step leaves ``lock`` in the build folder; torch
    alone would make every later process wait for it forever (found when a killed run hung
    the next one)."""
    import subprocess
    import sys

    from mlpot.descriptors import _fused

    if not _fused.kernel_available():
        pytest.skip("fused kernel not built here (no compiler)")
    directory = _fused.build_directory(_fused.kernel_name())
    stale = directory / "lock"
    stale.touch()
    # without the stamp of a finished build the subprocess goes through the build step
    (directory / _fused.STAMP_FILE).unlink(missing_ok=True)
    code = "from mlpot.descriptors._fused import load_kernel; assert load_kernel() is not None"
    try:
        done = subprocess.run([sys.executable, "-c", code], timeout=180, capture_output=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading the kernel hung on the stale lock file {stale}")
    finally:
        stale_left = stale.exists()
        stale.unlink(missing_ok=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert not stale_left


def test_built_fused_kernel_loads_without_the_build_tools(tmp_path):
    """Once built, a process imports the kernel by its stamp, without torch's build step: with
    two ninja versions on a machine (system and venv) that step recompiled the kernel at every
    switch between them, 70 s inside a training's time budget."""
    import os
    import subprocess
    import sys

    from mlpot.descriptors import _fused

    if not _fused.kernel_available():
        pytest.skip("fused kernel not built here (no compiler)")
    name, flags = _fused.kernel_name(), _fused._build_flags()[1]
    source = _fused._SOURCE_FILE.read_text()
    stamp = _fused.build_stamp(name, flags, source)
    assert stamp == (_fused.build_directory(name) / _fused.STAMP_FILE).read_text().strip()
    assert _fused.build_stamp(name, flags, source + " ") != stamp  # an edit rebuilds
    assert _fused.build_stamp(name, flags[:-1], source) != stamp  # so do other flags
    code = (
        "import warnings; warnings.simplefilter('error'); "
        "from mlpot.descriptors._fused import load_kernel; assert load_kernel() is not None"
    )
    env = {**os.environ, "PATH": str(tmp_path)}  # neither ninja nor a compiler on the path
    done = subprocess.run([sys.executable, "-c", code], env=env, timeout=120, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_damaged_fused_kernel_library_is_linked_again():
    """A library whose stamp matches but which no longer imports (here: not an ELF file) is
    removed and linked again, not silently replaced by the slower PyTorch path. (A link killed
    half-way leaves no stamp: the stamp is written after a build succeeds.)"""
    import subprocess
    import sys

    from mlpot.descriptors import _fused

    if not _fused.kernel_available():
        pytest.skip("fused kernel not built here (no compiler)")
    name = _fused.kernel_name()
    library = _fused._library_path(_fused.build_directory(name), name)
    # a new file, not the loaded one overwritten: this process keeps its mapping
    library.unlink()
    library.write_bytes(b"not a shared library\n")
    code = (
        "import warnings; warnings.simplefilter('error'); "
        "from mlpot.descriptors._fused import load_kernel; assert load_kernel() is not None"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=600, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert library.stat().st_size > 4096  # a real library again


def test_fused_kernel_power_of_two_zetas_equal_pytorch_path():
    """The forward fast path (every zeta a power of two: ladder of squares in registers)."""
    from mlpot.descriptors import _fused

    if not _fused.kernel_available():
        pytest.skip("fused kernel not built here (no compiler)")
    fs = []
    for eta in (0.01, 0.2, 0.7):  # three parts: one part left over in the 2-part blocks
        for zeta in (1.0, 2.0, 4.0, 8.0, 16.0, 32.0):  # six powers per lambda: blocks of 4 + 2
            for lam in (1.0, -1.0):
                fs.append(SymmetryFunction("G5", 8, (1, 8), 4.0, eta, 0.0, zeta, lam))
    fs.append(SymmetryFunction("G4", 1, (1, 8), 3.5, 0.05, 0.0, 4.0, -1.0))
    fs.append(SymmetryFunction("G2", 1, (8,), 4.0, 0.3, 1.0))
    acsf = ACSF(fs)
    tables = acsf._tables(torch.float64, torch.device("cpu"))
    assert tables["fused_ok"]
    potential = LinearFeaturePotential(acsf, seed=5)
    periodic = random_cell_structure([8, 1, 1, 8, 1, 1, 1], TRICLINIC, seed=22)
    assert_equals_brute_force(acsf, periodic, acsf.compute(periodic))
    batch = AtomsBatch.from_atoms([periodic])
    fused = compute_properties(potential, batch, forces=True, stress=True)
    with _fused.fused_kernel_enabled(False):
        plain = compute_properties(potential, batch, forces=True, stress=True)
    for key in fused:
        torch.testing.assert_close(fused[key], plain[key], rtol=1e-12, atol=1e-12)


def test_fused_kernel_float32_models_agree_with_float64():
    """A float32 model through the kernel (general and power-of-two paths): energy, forces and
    stress agree with the float64 model to single precision."""
    from mlpot.descriptors import _fused

    if not _fused.kernel_available():
        pytest.skip("fused kernel not built here (no compiler)")
    pow2 = [
        SymmetryFunction("G5", 8, (1, 8), 4.0, eta, 0.0, zeta, lam)
        for eta in (0.01, 0.2, 0.7)
        for zeta in (1.0, 2.0, 4.0, 16.0)
        for lam in (1.0, -1.0)
    ] + [SymmetryFunction("G2", 1, (8,), 4.0, 0.3, 1.0)]
    periodic = random_cell_structure([8, 1, 1, 8, 1, 1, 1], TRICLINIC, seed=23)
    for functions in (cosine_cutoff_set(), pow2):
        acsf = ACSF(functions)
        potential = LinearFeaturePotential(acsf, seed=7)
        double = compute_properties(
            potential, AtomsBatch.from_atoms([periodic]), forces=True, stress=True
        )
        single_potential = LinearFeaturePotential(ACSF(functions), seed=7).float()
        single = compute_properties(
            single_potential,
            AtomsBatch.from_atoms([periodic], dtype=torch.float32),
            forces=True,
            stress=True,
        )
        for key in ("energy", "forces", "stress"):
            assert single[key].dtype == torch.float32
            scale = float(double[key].abs().max())
            torch.testing.assert_close(
                single[key].double(), double[key], rtol=1e-4, atol=1e-5 * scale
            )


def test_default_sets_need_no_column_gather_and_any_order_is_exact():
    """The source layout follows the order in which shapes first appear: the default sets are
    laid out exactly as their functions (no gather after the kernel), and a set listing its
    (zeta, lambda) and parts in an arbitrary order still gives each function's own value, on
    both the fused and the PyTorch path (against the loop-based reference)."""
    from mlpot.descriptors import _fused

    for elements in (["Si"], ["Ti", "O"], ["H", "O", "Cu"]):
        tables = ACSF.default(elements, 5.0)._tables(torch.float64, torch.device("cpu"))
        assert tables["column_identity"], elements
    mixed = [
        SymmetryFunction("G5", 8, (1, 8), 4.0, 0.2, 0.0, 4.0, -1.0),
        SymmetryFunction("G2", 8, (1,), 4.0, 0.3, 1.0),
        SymmetryFunction("G5", 8, (1, 8), 4.0, 0.05, 0.0, 1.0, 1.0),
        SymmetryFunction("G4", 8, (1, 1), 3.8, 0.1, 0.0, 4.0, 1.0),
        SymmetryFunction("G5", 8, (1, 8), 4.0, 0.2, 0.0, 1.0, -1.0),
        SymmetryFunction("G5", 8, (8, 8), 4.0, 0.05, 0.0, 4.0, 1.0),
        SymmetryFunction("G5", 1, (1, 8), 4.0, 0.2, 0.0, 2.0, 1.0),
        SymmetryFunction("G2", 1, (8,), 4.0, 0.5, 0.0),
    ]
    acsf = ACSF(mixed)
    assert not acsf._tables(torch.float64, torch.device("cpu"))["column_identity"]
    atoms = random_cell_structure([8, 1, 1, 8, 1, 1, 1], TRICLINIC, seed=31)
    paths = [True, False] if _fused.kernel_available() else [False]
    for fused in paths:
        with _fused.fused_kernel_enabled(fused):
            assert_equals_brute_force(acsf, atoms, acsf.compute(atoms))
    silicon = bulk("Si", "diamond", a=5.43, cubic=True)
    silicon.rattle(0.1, seed=2)
    default = ACSF.default(["Si"], 5.0)
    np.testing.assert_allclose(
        default.compute(silicon),
        brute_force(silicon, default.functions_for(14)),
        rtol=1e-11,
        atol=1e-12,
    )
