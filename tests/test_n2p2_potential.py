"""n2p2 potentials: exact import against n2p2's own predictions, export round trip, errors."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
import torch
from ase.units import Bohr, Hartree

import mlpot
from mlpot.data.batch import AtomsBatch
from mlpot.data.io import read_structures
from mlpot.data.neighbors import neighbor_list, pair_vectors
from mlpot.descriptors.acsf import ACSF, SymmetryFunction
from mlpot.errors import ModelFileError, ParameterError
from mlpot.interop.n2p2 import export_n2p2, load_n2p2_potential
from mlpot.models.hdnnp import HDNNP
from mlpot.models.potential import compute_properties

ENERGY_RTOL = 1e-8  # relative, energies
FORCE_ATOL = 1e-7  # absolute, force components in the potential's units


def _check_against_reference(folder: Path, length_unit: str, energy_unit: str) -> None:
    length = Bohr if length_unit == "bohr" else 1.0
    energy = Hartree if energy_unit == "hartree" else 1.0
    model = mlpot.load(folder, length_unit=length_unit, energy_unit=energy_unit)
    atoms = read_structures(
        folder / "predict.input.data",
        format="n2p2",
        length_unit=length_unit,
        energy_unit=energy_unit,
    )
    assert len(atoms) == 1
    reference = json.loads((folder / "reference_prediction.json").read_text())
    out = model.compute(atoms[0])
    e = float(out["energy"][0]) / energy
    forces = out["forces"].detach().numpy() * length / energy
    ref_forces = np.array(reference["forces"])
    assert forces.shape == ref_forces.shape
    e_dev = abs(e - reference["energy"]) / abs(reference["energy"])
    f_dev = np.abs(forces - ref_forces).max()
    print(f"{folder.name}: energy rel. dev {e_dev:.2e}, max force dev {f_dev:.2e}")
    assert e_dev < ENERGY_RTOL
    assert f_dev < FORCE_ATOL


def test_water_rpbe_d3_matches_n2p2(shared_data):
    """1080-atom water, Bohr/Hartree, normalised potential (mean_energy/conv_*), tanhu cutoff."""
    _check_against_reference(shared_data / "n2p2" / "H2O_RPBE-D3", "bohr", "hartree")


def test_cu2s_matches_n2p2(shared_data):
    """Cu2S, Å/eV, types 2/3/9 with the rs column, poly2 cutoff, scalesigma, softplus."""
    _check_against_reference(shared_data / "n2p2" / "Cu2S_PBE", "angstrom", "ev")


def _forces_n2p2_self_image_convention(model, batch: AtomsBatch) -> torch.Tensor:
    """Forces as n2p2 computes them: an atom's own periodic images held fixed.

    n2p2 (Mode::calculateForces) skips the derivative terms of G_i that belong to periodic
    images of atom i itself, which exist when a cell is shorter than the cutoff; the result
    is then not exactly −∇E. Here the pair vector from i to its own image is made to depend on
    −r_i only, which reproduces that convention.
    """
    nl = neighbor_list(batch, model.cutoff)
    positions = batch.positions.detach().clone().requires_grad_(True)
    vectors = pair_vectors(batch, nl, positions)
    own_image = (nl.centers == nl.neighbors)[:, None]
    centre = positions[nl.centers]
    vectors = torch.where(own_image, vectors + centre.detach() - centre, vectors)
    energy = model(batch.replace(positions=positions), nl, vectors).sum()
    return -torch.autograd.grad(energy, positions)[0]


def test_mlearn_si_matches_n2p2_on_all_test_structures(shared_data):
    folder = shared_data / "mlearn_Si" / "n2p2_potential"
    model = load_n2p2_potential(folder, length_unit="bohr", energy_unit="hartree")
    frames = ase.io.read(shared_data / "mlearn_Si" / "test.extxyz", ":")
    predictions = json.loads((folder / "reference_predictions_test.json").read_text())
    predictions = predictions["predictions"]
    assert len(frames) == len(predictions) == 25
    batch = AtomsBatch.from_atoms(frames)
    nl = neighbor_list(batch, model.cutoff)
    out = compute_properties(model, batch, nl)
    own_image = nl.centers[nl.centers == nl.neighbors]
    has_own_image = set(batch.structure_index[own_image].tolist())
    assert has_own_image == {8}  # the 24-atom surface cell, 5.47 Å < 5.5 Å cutoff
    n2p2_style = {
        s: _forces_n2p2_self_image_convention(model, AtomsBatch.from_atoms(frames[s]))
        .detach()
        .numpy()
        for s in has_own_image
    }

    to_ha, to_ha_per_bohr = 1 / Hartree, Bohr / Hartree
    offsets = np.concatenate([[0], np.cumsum(batch.n_atoms.numpy())])
    worst_e = worst_f = worst_f_exact = 0.0
    for s, prediction in enumerate(predictions):
        assert prediction["index"] == s
        e = float(out["energy"][s]) * to_ha
        e_ref = prediction["energy_eV"] * to_ha
        worst_e = max(worst_e, abs(e - e_ref) / abs(e_ref))
        ref_forces = np.array(prediction["forces_eV_per_A"]) * to_ha_per_bohr
        lo, hi = offsets[s], offsets[s + 1]
        exact = out["forces"][lo:hi].detach().numpy() * to_ha_per_bohr
        if s in has_own_image:  # n2p2 holds own images fixed; so does n2p2_style
            ours = n2p2_style[s] * to_ha_per_bohr
        else:  # here our exact −∇E is n2p2's force
            ours = exact
            worst_f_exact = max(worst_f_exact, np.abs(exact - ref_forces).max())
        worst_f = max(worst_f, np.abs(ours - ref_forces).max())
    print(
        f"mlearn Si: energy rel. dev {worst_e:.2e}, max force dev {worst_f:.2e} "
        f"(exact forces on the 24 structures without own images: {worst_f_exact:.2e})"
    )
    assert worst_e < ENERGY_RTOL
    assert worst_f < FORCE_ATOL
    assert worst_f_exact < FORCE_ATOL


def test_forces_are_exact_gradient_where_cell_is_shorter_than_cutoff(shared_data):
    """On the small surface cell our forces are −∇E (finite differences), unlike n2p2's."""
    folder = shared_data / "mlearn_Si" / "n2p2_potential"
    model = load_n2p2_potential(folder, length_unit="bohr", energy_unit="hartree")
    atoms = ase.io.read(shared_data / "mlearn_Si" / "test.extxyz", 8)
    forces = model.compute(atoms)["forces"].detach().numpy()
    h = 1e-4
    for atom, axis in [(0, 0), (1, 0), (11, 2)]:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            energies.append(float(model.compute(moved, forces=False)["energy"][0]))
        fd = -(energies[0] - energies[1]) / (2 * h)
        assert abs(fd - forces[atom, axis]) < 1e-6


def _copy_potential(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("input.nn", "scaling.data"):
        shutil.copy(source / name, target / name)
    for path in source.glob("weights.*.data"):
        shutil.copy(path, target / path.name)
    return target


def test_line_formats_and_order_do_not_matter(shared_data, tmp_path):
    """Angular lines without the rs column, and shuffled lines, give the same model (n2p2
    sorts the functions of each element)."""
    source = shared_data / "n2p2" / "Cu2S_PBE"
    target = _copy_potential(source, tmp_path / "cu2s")
    lines = (source / "input.nn").read_text().splitlines()
    sf = [line for line in lines if line.startswith("symfunction_short")]
    other = [line for line in lines if not line.startswith("symfunction_short")]
    rewritten = []
    for line in sf:
        tokens = line.split()
        if tokens[2] in ("3", "9"):
            assert len(tokens) == 10 and float(tokens[9]) == 0.0
            tokens = tokens[:9]  # old format: no rs column
        rewritten.append(" ".join(tokens))
    random.Random(3).shuffle(rewritten)
    (target / "input.nn").write_text("\n".join(other + rewritten) + "\n")
    original = load_n2p2_potential(source)
    changed = load_n2p2_potential(target)
    for z in original.elements:
        assert original.descriptor.functions_for(z) == changed.descriptor.functions_for(z)
    a, b = original.state_dict(), changed.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_missing_weights_file_names_the_file(shared_data, tmp_path):
    target = _copy_potential(shared_data / "n2p2" / "Cu2S_PBE", tmp_path / "pot")
    (target / "weights.029.data").unlink()
    with pytest.raises(ModelFileError, match=r"weights\.029\.data.*Cu"):
        mlpot.load(target)


def test_unknown_symmetry_function_type_names_file_and_line(shared_data, tmp_path):
    target = _copy_potential(shared_data / "n2p2" / "Cu2S_PBE", tmp_path / "pot")
    lines = (target / "input.nn").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("symfunction_short"))
    lines[index] = "symfunction_short S 7 S 2.0 1.5 6.0"
    (target / "input.nn").write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelFileError, match=rf"input\.nn, line {index + 1}: unknown symmetry"):
        mlpot.load(target)
    lines[index] = "symfunction_short S 2 S two 1.5 6.0"
    (target / "input.nn").write_text("\n".join(lines) + "\n")
    with pytest.raises(ModelFileError, match=rf"input\.nn, line {index + 1}: cannot read 'eta'"):
        mlpot.load(target)


def test_truncated_weights_and_scaling_files_are_reported(shared_data, tmp_path):
    target = _copy_potential(shared_data / "n2p2" / "Cu2S_PBE", tmp_path / "pot")
    weights = (target / "weights.016.data").read_text().splitlines()
    (target / "weights.016.data").write_text("\n".join(weights[:-3]) + "\n")
    with pytest.raises(ModelFileError, match=r"weights\.016\.data: \d+ weights.*needs"):
        mlpot.load(target)
    shutil.copy(shared_data / "n2p2" / "Cu2S_PBE" / "weights.016.data", target)
    scaling = (target / "scaling.data").read_text().splitlines()
    (target / "scaling.data").write_text("\n".join(scaling[:-1]) + "\n")
    with pytest.raises(ModelFileError, match=r"scaling\.data"):
        mlpot.load(target)


def test_missing_directory_and_unknown_units(tmp_path):
    with pytest.raises(ModelFileError, match="input.nn"):
        load_n2p2_potential(tmp_path)
    with pytest.raises(ParameterError, match="length unit"):
        load_n2p2_potential(tmp_path, length_unit="parsec")


# --- export -------------------------------------------------------------------------------
def _two_element_structure() -> ase.Atoms:
    rng = np.random.default_rng(7)
    cell = np.array([[4.6, 0.0, 0.0], [0.9, 4.3, 0.0], [-0.6, 0.5, 4.9]])
    frac = rng.random((8, 3))
    atoms = ase.Atoms(numbers=[8, 1, 1, 8, 1, 1, 8, 1], scaled_positions=frac, cell=cell, pbc=True)
    return atoms


def _exportable_model(activation=("tanh", "shifted_softplus"), scaling="standard") -> HDNNP:
    common = {"r_cut": 3.6, "cutoff_type": "poly2", "cutoff_alpha": 0.1}
    functions = [
        SymmetryFunction("G5", 8, (1, 1), eta=0.3, zeta=2.0, lambda_=-1.0, **common),
        SymmetryFunction("G2", 8, (1,), eta=0.5, r_shift=0.9, **common),
        SymmetryFunction("G4", 8, (8, 1), eta=0.1, zeta=1.0, lambda_=1.0, **common),
        SymmetryFunction("G2", 8, (8,), eta=0.2, **common),
        SymmetryFunction("G1", 8, (1,), **common),
        SymmetryFunction("G2", 1, (8,), eta=1.2, r_shift=1.0, **common),
        SymmetryFunction("G4", 1, (1, 8), eta=0.05, zeta=4.0, lambda_=-1.0, r_shift=0.2, **common),
        SymmetryFunction("G2", 1, (1,), eta=0.4, **common),
        SymmetryFunction("G5", 1, (8, 8), eta=0.02, zeta=1.0, lambda_=1.0, **common),
    ]
    model = HDNNP(
        ACSF(functions),
        hidden_layers={"O": (6, 5), "H": (4, 5)},
        activation=list(activation),
        scaling=scaling,
        seed=11,
    )
    structures = []
    rng = np.random.default_rng(1)
    for _ in range(3):
        atoms = _two_element_structure()
        atoms.rattle(0.2, seed=int(rng.integers(1000)))
        atoms.info["ref_energy"] = float(rng.normal()) - 10.0
        structures.append(atoms)
    model.fit_statistics(structures)
    with torch.no_grad():
        for net in model.networks.values():
            for layer in net.layers:
                layer.bias.uniform_(-0.5, 0.5)
    return model


def _predict(model, atoms):
    out = model.compute(atoms)
    return out["energy"].detach().numpy(), out["forces"].detach().numpy()


@pytest.mark.parametrize(
    "scaling,activation",
    [
        ("standard", ("tanh", "shifted_softplus")),
        ("minmax", ("tanh", "shifted_softplus")),
        ("scale_center", ("tanh", "shifted_softplus")),
        ("center", ("tanh", "shifted_softplus")),
        ("none", ("tanh", "shifted_softplus")),
        ("standard", ("shifted_softplus", "shifted_softplus")),  # the training default
    ],
)
def test_export_then_import_gives_identical_predictions(tmp_path, scaling, activation):
    model = _exportable_model(activation=activation, scaling=scaling)
    export_n2p2(model, tmp_path / "exported")
    assert {p.name for p in (tmp_path / "exported").iterdir()} == {
        "input.nn",
        "scaling.data",
        "weights.001.data",
        "weights.008.data",
    }
    again = mlpot.load(tmp_path / "exported")
    atoms = _two_element_structure()
    e0, f0 = _predict(model, atoms)
    e1, f1 = _predict(again, atoms)
    assert abs(e1[0] - e0[0]) <= 1e-10 * max(1.0, abs(e0[0]))
    assert np.abs(f1 - f0).max() < 1e-10
    # n2p2 sorts the functions: the exported order is already n2p2's, so a re-export is stable
    export_n2p2(again, tmp_path / "twice")
    for name in ("input.nn", "scaling.data", "weights.001.data", "weights.008.data"):
        first = (tmp_path / "exported" / name).read_text().splitlines()
        second = (tmp_path / "twice" / name).read_text().splitlines()
        assert [x for x in first if "#" not in x] == [x for x in second if "#" not in x]


def test_export_of_imported_n2p2_potential_round_trips(shared_data, tmp_path):
    source = shared_data / "n2p2" / "H2O_RPBE-D3"
    model = load_n2p2_potential(source, length_unit="bohr", energy_unit="hartree")
    export_n2p2(model, tmp_path / "water_in_angstrom")
    again = load_n2p2_potential(tmp_path / "water_in_angstrom")
    atoms = ase.Atoms(
        "OH2OH2",
        positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [3, 0, 0], [3.9, 0.3, 0], [3, 1, 0]],
    )
    e0, f0 = _predict(model, atoms)
    e1, f1 = _predict(again, atoms)
    assert abs(e1[0] - e0[0]) <= 1e-10 * abs(e0[0])
    assert np.abs(f1 - f0).max() < 1e-10


def test_export_rejects_what_n2p2_cannot_represent(tmp_path):
    with pytest.raises(ParameterError, match="silu"):
        export_n2p2(_exportable_model(activation=("tanh", "silu")), tmp_path / "a")
    g3 = ACSF(
        [
            SymmetryFunction("G2", 14, (14,), r_cut=4.0, eta=0.5),
            SymmetryFunction("G3", 14, (14,), r_cut=4.0, kappa=1.0),
        ]
    )
    with pytest.raises(ParameterError, match="G3"):
        export_n2p2(HDNNP(g3, hidden_layers=(3,)), tmp_path / "b")
    mixed = ACSF(
        [
            SymmetryFunction("G2", 14, (14,), r_cut=4.0, eta=0.5, cutoff_type="cos"),
            SymmetryFunction("G2", 14, (14,), r_cut=4.0, eta=0.5, cutoff_type="tanh"),
        ]
    )
    with pytest.raises(ParameterError, match="one cutoff function type"):
        export_n2p2(HDNNP(mixed, hidden_layers=(3,)), tmp_path / "c")
    radial = ACSF([SymmetryFunction("G2", 14, (14,), r_cut=4.0, eta=0.5)])
    messages = HDNNP(radial, hidden_layers=(3,), interaction={})
    with pytest.raises(ParameterError, match="message-passing"):
        export_n2p2(messages, tmp_path / "d")
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_cli_export(tmp_path):
    from mlpot.cli.main import main

    model = _exportable_model()
    model.save(tmp_path / "model.pt")
    assert (
        main(["export", str(tmp_path / "model.pt"), "--format", "n2p2", str(tmp_path / "d")]) == 0
    )
    again = mlpot.load(tmp_path / "d")
    atoms = _two_element_structure()
    e0, _ = _predict(model, atoms)
    e1, _ = _predict(again, atoms)
    assert abs(e1[0] - e0[0]) < 1e-10 * max(1.0, abs(e0[0]))
    assert (
        main(["export", str(tmp_path / "missing.pt"), "--format", "n2p2", str(tmp_path / "e")]) == 2
    )
