"""The compiled (TorchScript) artefact reproduces the potential without the mlpot package."""

import json
import subprocess
import sys

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from mlpot.calculators.compiled import save_compiled
from mlpot.data import AtomsBatch, neighbor_list
from mlpot.descriptors import ACSF, SymmetryFunction
from mlpot.models import LennardJones
from mlpot.models.hdnnp import HDNNP

RUNNER = r"""
import sys, json
sys.modules["mlpot"] = None          # any import of mlpot now fails
import numpy as np, torch
m = torch.jit.load(sys.argv[1])
results = []
for path in sys.argv[2:]:
    d = np.load(path)
    t = lambda k: torch.from_numpy(d[k])
    e, atomic, forces, virial = m(t("positions"), t("numbers"), t("cell"), t("centers"),
                                  t("neighbors"), t("shifts"))
    results.append({"energy": float(e), "atomic": atomic.tolist(), "forces": forces.tolist(),
                    "virial": virial.tolist()})
json.dump(results, sys.stdout)
"""


def run_without_mlpot(model_path, structures, cutoff, tmp_path):
    """Evaluate the saved module on each structure in a fresh interpreter without mlpot."""
    inputs = []
    for n, atoms in enumerate(structures):
        batch = AtomsBatch.from_atoms([atoms])
        nl = neighbor_list(batch, cutoff)
        path = tmp_path / f"inp{n}.npz"
        np.savez(
            path,
            positions=batch.positions.numpy(),
            numbers=batch.numbers.numpy(),
            cell=batch.cell[0].numpy(),
            centers=nl.centers.numpy(),
            neighbors=nl.neighbors.numpy(),
            shifts=nl.shifts.numpy(),
        )
        inputs.append(str(path))
    (tmp_path / "run.py").write_text(RUNNER)
    out = subprocess.run(
        [sys.executable, str(tmp_path / "run.py"), str(model_path), *inputs],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    return json.loads(out.stdout)


def check_against_potential(pot, structures, tmp_path, example=None):
    path = save_compiled(pot, tmp_path / "model.ts", example=example)
    results = run_without_mlpot(path, structures, pot.cutoff, tmp_path)
    for atoms, got in zip(structures, results, strict=True):
        ref = pot.compute(atoms, forces=True, stress=True)
        volume = atoms.get_volume()
        assert got["energy"] == pytest.approx(float(ref["energy"][0]), rel=1e-12, abs=1e-10)
        np.testing.assert_allclose(got["atomic"], ref["atomic_energies"].numpy(), atol=1e-10)
        np.testing.assert_allclose(got["forces"], ref["forces"].numpy(), atol=1e-10)
        np.testing.assert_allclose(
            -np.array(got["virial"]) / volume, ref["stress"][0].numpy(), atol=1e-10
        )
        # a physical check independent of the reference: forces sum to zero
        np.testing.assert_allclose(np.sum(got["forces"], axis=0), 0.0, atol=1e-9)
    return results


def test_compiled_lennard_jones_matches_on_other_sizes(tmp_path):
    pot = LennardJones(epsilon=0.0104, sigma=3.4, cutoff=8.0)
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True).repeat((3, 2, 2))  # not the tracing example
    atoms.rattle(0.1, seed=4)
    check_against_potential(pot, [atoms], tmp_path)


def test_cli_export_torchscript(tmp_path, capsys):
    from mlpot.cli.main import main

    pot = LennardJones(epsilon=0.0104, sigma=3.4, cutoff=7.0)
    pot.save(tmp_path / "lj.pt")
    out = tmp_path / "lj.ts"
    assert main(["export", str(tmp_path / "lj.pt"), "--format", "torchscript", str(out)]) == 0
    assert "TorchScript" in capsys.readouterr().out
    extra = {"mlpot.json": ""}
    torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["mlpot.json"])
    assert meta["cutoff_angstrom"] == 7.0 and meta["units"]["energy"] == "eV"
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.1, seed=2)
    (got,) = run_without_mlpot(out, [atoms], pot.cutoff, tmp_path)
    ref = pot.compute(atoms, forces=True)
    assert got["energy"] == pytest.approx(float(ref["energy"][0]), rel=1e-12)
    np.testing.assert_allclose(got["forces"], ref["forces"].numpy(), atol=1e-12)


def si_o_potential(interaction=None):
    """A 2-element HDNNP with random weights on G2, G4 and G5 functions."""
    functions = ACSF.default(["Si", "O"], r_cut=4.5).functions
    for center in (8, 14):
        functions += [
            SymmetryFunction("G4", center, (8, 14), 4.5, 0.05, 0.0, 2.0, -1.0),
            SymmetryFunction("G4", center, (14, 14), 4.2, 0.02, 0.5, 1.5, 1.0, cutoff_type="poly2"),
            SymmetryFunction("G4", center, (8, 8), 4.0, 0.0, zeta=4.0, cutoff_type="tanh"),
        ]
    pot = HDNNP(
        ACSF(functions), hidden_layers=(10, 7), activation="tanh", seed=3, interaction=interaction
    )
    rng = np.random.default_rng(5)
    for net in pot.networks.values():  # non-trivial scaling statistics
        n = net.n_features
        net.feature_min.copy_(torch.from_numpy(-rng.random(n)))
        net.feature_max.copy_(torch.from_numpy(1.0 + 10 * rng.random(n)))
        net.energy_scale.fill_(0.7)
        net.reference_energy.fill_(-3.1 if net.n_features else 0.0)
    return pot


def random_structure(numbers, cell, seed, min_distance=1.3):
    rng = np.random.default_rng(seed)
    atoms = Atoms(numbers=numbers, cell=cell, pbc=True)
    positions = []
    inverse = np.linalg.inv(cell)
    while len(positions) < len(numbers):
        p = rng.random(3) @ cell
        ok = True
        for q in positions:
            d = (p - q) @ inverse
            d -= np.round(d)
            if np.linalg.norm(d @ cell) < min_distance:
                ok = False
                break
        if ok:
            positions.append(p)
    atoms.positions = positions
    return atoms


@pytest.mark.parametrize("interaction", [None, {"channels": 4, "cutoff": 4.0}], ids=["plain", "mp"])
def test_compiled_hdnnp_matches_on_other_structures(tmp_path, interaction):
    pot = si_o_potential(interaction)
    example = bulk("Si", "diamond", a=5.43, cubic=True)  # traced on 8 atoms, Si and O
    example.numbers[::4] = 8
    example.rattle(0.05, seed=1)
    triclinic = np.array([[7.1, 0.0, 0.0], [1.3, 6.8, 0.0], [-0.9, 0.6, 7.4]])
    structures = [
        random_structure([14, 8, 8] * 10, triclinic, seed=2),  # more atoms, another cell
        bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 1, 1)),  # Si only
        random_structure([8] * 6 + [14] * 2, np.diag([4.0, 4.6, 5.1]), seed=3),  # small cell
    ]
    structures[1].rattle(0.1, seed=6)
    results = check_against_potential(
        pot, structures, tmp_path, example=AtomsBatch.from_atoms([example])
    )
    assert len({round(r["energy"], 6) for r in results}) == 3


def test_compiled_n2p2_mlearn_si_matches(shared_data, tmp_path):
    from ase.units import Bohr, Hartree

    from mlpot.interop.n2p2 import load_n2p2_potential

    folder = shared_data / "mlearn_Si" / "n2p2_potential"
    pot = load_n2p2_potential(folder, length_unit="bohr", energy_unit="hartree")
    frames = ase.io.read(shared_data / "mlearn_Si" / "test.extxyz", ":")
    chosen = [0, 8, 20]  # 8: a 24-atom surface cell whose atoms see their own images
    results = check_against_potential(pot, [frames[i] for i in chosen], tmp_path)
    # and n2p2's own prediction (nnp-predict), in n2p2's units
    predictions = json.loads((folder / "reference_predictions_test.json").read_text())
    for s, got in zip(chosen, results, strict=True):
        prediction = predictions["predictions"][s]
        assert got["energy"] / Hartree == pytest.approx(prediction["energy_eV"] / Hartree, rel=1e-8)
        if s != 8:  # n2p2 holds own images fixed (see test_n2p2_potential)
            np.testing.assert_allclose(
                np.array(got["forces"]) * Bohr / Hartree,
                np.array(prediction["forces_eV_per_A"]) * Bohr / Hartree,
                atol=1e-7,
            )
