"""HDNNP model: gradients by finite differences, invariances, persistence, statistics."""

from __future__ import annotations

import math

import ase
import numpy as np
import pytest
import torch

import mlpot
from mlpot.data.batch import AtomsBatch
from mlpot.descriptors.acsf import ACSF, SymmetryFunction
from mlpot.errors import DataError, ParameterError
from mlpot.models.activations import ACTIVATIONS, N2P2_CODES, Activation
from mlpot.models.hdnnp import HDNNP
from mlpot.models.potential import compute_properties

R_CUT = 3.5


def _descriptor() -> ACSF:
    functions = []
    for center in (6, 1):
        for neighbor in (6, 1):
            for eta, rs in ((0.3, 0.0), (1.0, 1.2)):
                functions.append(SymmetryFunction("G2", center, (neighbor,), R_CUT, eta, rs))
        functions.append(SymmetryFunction("G4", center, (1, 6), R_CUT, eta=0.1, zeta=2.0))
        functions.append(
            SymmetryFunction("G5", center, (6, 6), R_CUT, eta=0.05, zeta=1.0, lambda_=-1.0)
        )
    functions.append(SymmetryFunction("G4", 6, (1, 1), R_CUT, eta=0.2, zeta=4.0, lambda_=-1))
    return ACSF(functions)


def _structure(seed: int = 0) -> ase.Atoms:
    """Periodic triclinic C/H structure, 7 atoms."""
    rng = np.random.default_rng(seed)
    cell = np.array([[4.2, 0.0, 0.0], [0.8, 3.9, 0.0], [-0.5, 0.6, 4.4]])
    atoms = ase.Atoms(
        numbers=[6, 6, 1, 1, 1, 6, 1], scaled_positions=rng.random((7, 3)), cell=cell, pbc=True
    )
    # keep atoms apart (no pair closer than 0.9 Å)
    for _ in range(200):
        d = atoms.get_all_distances(mic=True) + np.eye(len(atoms)) * 10
        if d.min() > 0.9:
            break
        i = np.unravel_index(d.argmin(), d.shape)[0]
        atoms.positions[i] += rng.normal(scale=0.5, size=3)
    return atoms


INTERACTION = {"channels": 5, "n_radial": 4, "cutoff": 3.2}


@pytest.fixture(scope="module", params=[None, INTERACTION], ids=["plain", "interaction"])
def model(request) -> HDNNP:
    torch.manual_seed(0)
    m = HDNNP(
        _descriptor(),
        hidden_layers=(8, 6),
        activation=["tanh", "softplus"],
        seed=3,
        interaction=request.param,
    )
    structures = []
    for seed in range(4):
        atoms = _structure(seed)
        atoms.info["ref_energy"] = -3.0 * seed
        structures.append(atoms)
    m.fit_statistics(structures)
    with torch.no_grad():  # random, non-trivial outputs
        for net in m.networks.values():
            for layer in net.layers:
                layer.bias.uniform_(-0.3, 0.3)
            net.energy_scale.fill_(0.7)
        if m.interaction is not None:
            for layer in [*m.interaction.embed.values(), m.interaction.filter]:
                layer.bias.uniform_(-0.3, 0.3)
    return m


def _energy(model, atoms) -> float:
    return float(model.compute(atoms, forces=False)["energy"][0])


def test_forces_are_minus_energy_gradient(model):
    atoms = _structure(11)
    forces = model.compute(atoms)["forces"].detach().numpy()
    assert np.abs(forces).max() > 1e-3  # not trivially zero
    h = 1e-5
    fd = np.zeros_like(forces)
    for i in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            fd[i, k] = -(_energy(model, plus) - _energy(model, minus)) / (2 * h)
    assert np.abs(fd - forces).max() < 1e-7


def test_stress_is_strain_derivative(model):
    atoms = _structure(12)
    stress = model.compute(atoms, stress=True)["stress"][0].detach().numpy()
    volume = atoms.get_volume()
    h = 1e-5
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1, -1):
                deformation = np.eye(3)
                deformation[a, b] += sign * h
                strained = atoms.copy()
                strained.set_cell(atoms.cell[:] @ deformation, scale_atoms=False)
                strained.positions = atoms.positions @ deformation
                energies.append(_energy(model, strained))
            fd[a, b] = (energies[0] - energies[1]) / (2 * h) / volume
    assert np.abs(stress).max() > 1e-5
    assert np.abs(fd - stress).max() < 1e-8


def test_invariances(model):
    atoms = _structure(13)
    e0 = _energy(model, atoms)
    # translation
    moved = atoms.copy()
    moved.positions += [0.37, -1.2, 2.5]
    assert _energy(model, moved) == pytest.approx(e0, abs=1e-10)
    # rotation of cell and positions together
    rotated = atoms.copy()
    rotated.rotate(37.0, (1.0, 2.0, -0.5), rotate_cell=True)
    assert _energy(model, rotated) == pytest.approx(e0, abs=1e-10)
    # permutation of like atoms (and any reordering)
    order = [5, 1, 6, 2, 0, 4, 3]
    permuted = atoms[order]
    assert _energy(model, permuted) == pytest.approx(e0, abs=1e-10)
    f0 = model.compute(atoms)["forces"].detach().numpy()
    fp = model.compute(permuted)["forces"].detach().numpy()
    np.testing.assert_allclose(fp, f0[order], atol=1e-10)


def test_extensive(model):
    atoms = _structure(14)
    out = model.compute(atoms)
    big = atoms.repeat((2, 2, 2))
    out_big = model.compute(big)
    assert float(out_big["energy"][0]) == pytest.approx(8 * float(out["energy"][0]), rel=1e-12)
    forces = out["forces"].detach().numpy()
    np.testing.assert_allclose(
        out_big["forces"].detach().numpy(), np.tile(forces, (8, 1)), atol=1e-10
    )


def test_batch_equals_single_structures(model):
    structures = [_structure(s) for s in (20, 21, 22)]
    batched = model.compute(structures)["energy"].detach().numpy()
    single = [_energy(model, a) for a in structures]
    np.testing.assert_allclose(batched, single, rtol=1e-12)


def test_save_and_load_give_same_predictions(model, tmp_path):
    model.save(tmp_path / "hdnnp.pt")
    loaded = mlpot.load(tmp_path / "hdnnp.pt")
    assert isinstance(loaded, HDNNP)
    atoms = _structure(15)
    a, b = model.compute(atoms, stress=True), loaded.compute(atoms, stress=True)
    for key in ("energy", "forces", "stress"):
        assert torch.equal(a[key], b[key]), key
    # float32 copy: same physics to single precision
    model32 = mlpot.load(tmp_path / "hdnnp.pt").to(torch.float32)
    assert model32.dtype == torch.float32
    e32 = float(model32.compute(atoms, forces=False)["energy"][0])
    assert e32 == pytest.approx(float(a["energy"][0]), rel=1e-5)
    model32.save(tmp_path / "hdnnp32.pt")
    assert mlpot.load(tmp_path / "hdnnp32.pt").dtype == torch.float32


def test_unknown_element_is_a_clear_error(model):
    atoms = _structure(16)
    atoms.numbers[2] = 8
    with pytest.raises(DataError, match=r"\bO\b"):
        model.compute(atoms)
    # in a batch: the first structure holding the element is named
    with pytest.raises(DataError, match=r"structure 1: element\(s\) O not covered"):
        model.compute([_structure(16), atoms, atoms])


def test_fit_statistics_recovers_reference_energies():
    references = {6: -155.25, 1: -13.5}
    rng = np.random.default_rng(5)
    structures = []
    for _ in range(6):
        n_c, n_h = int(rng.integers(1, 5)), int(rng.integers(1, 7))
        atoms = ase.Atoms(
            numbers=[6] * n_c + [1] * n_h,
            positions=rng.random((n_c + n_h, 3)) * 6.0,
            cell=np.eye(3) * 6.0,
            pbc=True,
        )
        atoms.info["ref_energy"] = n_c * references[6] + n_h * references[1]
        structures.append(atoms)
    model = HDNNP(_descriptor(), hidden_layers=(4,), seed=0)
    model.fit_statistics(structures)
    fitted = model.reference_energies()
    assert fitted[6] == pytest.approx(references[6], abs=1e-9)
    assert fitted[1] == pytest.approx(references[1], abs=1e-9)
    # feature statistics agree with the descriptor's own NumPy output
    features = model.descriptor.compute(structures)
    for z in (6, 1):
        net = model.networks[{6: "C", 1: "H"}[z]]
        g = np.concatenate([f[a.numbers == z] for f, a in zip(features, structures, strict=True)])
        g = g[:, : net.n_features]
        np.testing.assert_allclose(net.feature_mean.numpy(), g.mean(0), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(net.feature_sigma.numpy(), g.std(0), rtol=1e-9)
        np.testing.assert_allclose(net.feature_min.numpy(), g.min(0), rtol=1e-12)
        np.testing.assert_allclose(net.feature_max.numpy(), g.max(0), rtol=1e-12)


def test_scaling_modes_follow_their_formulas():
    model = HDNNP(_descriptor(), hidden_layers=(3,), seed=1, scaling_range=(-1.0, 2.0))
    net = model.networks["C"]
    rng = np.random.default_rng(2)
    n = net.n_features
    g_min, g_max = rng.random(n), rng.random(n) + 1.0
    mean, sigma = rng.random(n) + 0.2, rng.random(n) + 0.1
    for buffer, value in zip(
        (net.feature_min, net.feature_max, net.feature_mean, net.feature_sigma),
        (g_min, g_max, mean, sigma),
        strict=True,
    ):
        buffer.copy_(torch.from_numpy(value))
    g = rng.random((5, n)) * 2
    expected = {
        "none": g,
        "center": g - mean,
        "minmax": -1.0 + 3.0 * (g - g_min) / (g_max - g_min),
        "scale_center": -1.0 + 3.0 * (g - mean) / (g_max - g_min),
        "scalesigma": -1.0 + 3.0 * (g - mean) / sigma,
        "standard": (g - mean) / sigma,
    }
    for mode, value in expected.items():
        scaled = net.scale_features(torch.from_numpy(g), mode, (-1.0, 2.0)).numpy()
        np.testing.assert_allclose(scaled, value, rtol=1e-13, err_msg=mode)
    with pytest.raises(ParameterError):
        HDNNP(_descriptor(), scaling="zscore-ish")


def test_activations_match_their_definitions():
    x = torch.linspace(-40.0, 40.0, 801, dtype=torch.float64)
    xs = x.numpy()
    softplus = np.logaddexp(0.0, xs)
    sigmoid = 1.0 / (1.0 + np.exp(-xs))
    expected = {
        "linear": xs,
        "tanh": np.tanh(xs),
        "sigmoid": sigmoid,
        "softplus": softplus,
        "relu": np.maximum(xs, 0.0),
        "gaussian": np.exp(-0.5 * xs**2),
        "cos": np.cos(xs),
        "reverse_sigmoid": 1.0 - sigmoid,
        "negative_exp": np.exp(-xs),
        "harmonic": xs**2,
        "silu": xs * sigmoid,
        "shifted_softplus": softplus - math.log(2.0),
    }
    assert set(expected) == set(ACTIVATIONS)
    for name, value in expected.items():
        np.testing.assert_allclose(
            Activation(name)(x).numpy(), value, rtol=1e-13, atol=1e-14, err_msg=name
        )
    assert {Activation(code).name for code in N2P2_CODES} == set(N2P2_CODES.values())
    with pytest.raises(ParameterError, match="unknown activation"):
        Activation("mish-ish")


def test_bad_configurations_are_parameter_errors():
    with pytest.raises(ParameterError, match="activations given"):
        HDNNP(_descriptor(), hidden_layers=(4, 4), activation=["tanh"])
    with pytest.raises(ParameterError, match="same number of hidden layers"):
        HDNNP(_descriptor(), hidden_layers={"C": (4, 4), "H": (4,)})
    with pytest.raises(ParameterError, match="not cover"):
        HDNNP(_descriptor(), reference_energies={"O": -400.0})


def test_config_is_plain_and_rebuilds(model):
    import json

    config = json.loads(json.dumps(model.get_config()))
    rebuilt = HDNNP.from_config(config)
    rebuilt.load_state_dict(model.state_dict())
    batch = AtomsBatch.from_atoms(_structure(17))
    a = compute_properties(model, batch)["energy"]
    b = compute_properties(rebuilt, batch)["energy"]
    assert torch.equal(a, b)


@pytest.mark.parametrize("model", [INTERACTION], indirect=True, ids=["interaction"])
def test_interaction_messages_follow_their_formula(model):
    """m_i = (1/n̄) Σ_j W b(r_ij) f_c(r_ij) ⊙ ssp(A_Zj x_j + a_Zj), written out pair by pair."""
    from mlpot.data.neighbors import neighbor_list, pair_vectors

    layer = model.interaction
    atoms = _structure(18)
    batch = AtomsBatch.from_atoms(atoms)
    nl = neighbor_list(batch, model.cutoff)
    vectors = pair_vectors(batch, nl)
    features = model.descriptor(batch, nl, vectors)
    expected = np.zeros((len(atoms), layer.channels))
    for p in range(len(nl.centers)):
        i, j = int(nl.centers[p]), int(nl.neighbors[p])
        r = float(torch.linalg.norm(vectors[p]))
        if r >= layer.cutoff:
            continue
        fc = 0.5 * (math.cos(math.pi * r / layer.cutoff) + 1.0)
        centres = np.linspace(0.0, layer.cutoff, layer.n_radial)
        width = layer.cutoff / (layer.n_radial - 1)
        basis = np.exp(-0.5 * ((r - centres) / width) ** 2)
        w = layer.filter.weight.detach().numpy() @ basis + layer.filter.bias.detach().numpy()
        symbol = ase.data.chemical_symbols[int(atoms.numbers[j])]
        net = model.networks[symbol]
        x = net.scale_features(features[j : j + 1, : net.n_features], "minmax", (0.0, 1.0))
        linear = layer.embed[symbol]
        a = (linear.weight @ x[0] + linear.bias).detach().numpy()
        h = np.logaddexp(0.0, a) - math.log(2.0)
        expected[i] += w * fc * h
    expected *= float(layer.inverse_mean_neighbors)
    embedded = torch.zeros((len(atoms), layer.channels), dtype=torch.float64)
    for z in model.elements:
        index = torch.nonzero(batch.numbers == z).squeeze(1)
        net = model.networks[ase.data.chemical_symbols[z]]
        x = net.scale_features(features[index, : net.n_features], "minmax", (0.0, 1.0))
        embedded[index] = layer.activation(layer.embed[ase.data.chemical_symbols[z]](x))
    got = layer(embedded, nl.centers, nl.neighbors, vectors).detach().numpy()
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    # n̄ is the training atoms' mean Σ_j f_c(r_ij): 1/n̄ is finite and positive
    assert 0 < float(layer.inverse_mean_neighbors) < 10


def test_interaction_changes_the_energy_of_an_atom_through_its_neighbours(model):
    """With messages an atom's energy depends on atoms beyond its own descriptor's reach;
    without them it does not."""
    # a chain: atom 0 -- atom 1 (1.5 Å) -- atom 2 (2.5 Å further); 0 and 2 are 4 Å apart,
    # beyond the 3.5-Å descriptor cutoff
    atoms = ase.Atoms("CCC", positions=[[0, 0, 0], [1.5, 0, 0], [4.0, 0, 0]], cell=[20] * 3)
    moved = atoms.copy()
    moved.positions[2, 0] -= 0.3  # 3.7 Å from atom 0: changes atom 1's descriptor, not 0's
    e_atoms = model.compute(atoms, forces=False)["atomic_energies"].detach().numpy()
    e_moved = model.compute(moved, forces=False)["atomic_energies"].detach().numpy()
    assert abs(e_moved[1] - e_atoms[1]) > 1e-6
    if model.interaction is None:
        assert e_moved[0] == e_atoms[0]
    else:
        assert abs(e_moved[0] - e_atoms[0]) > 1e-6


def test_interaction_settings_are_checked():
    with pytest.raises(ParameterError, match="exceeds the descriptor's cutoff"):
        HDNNP(_descriptor(), interaction={"cutoff": R_CUT + 1.0})
    with pytest.raises(ParameterError, match="unknown setting"):
        HDNNP(_descriptor(), interaction={"channel": 8})
    with pytest.raises(ParameterError, match="channels >= 1"):
        HDNNP(_descriptor(), interaction={"channels": 0})
