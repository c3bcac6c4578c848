"""The compiled (TorchScript) artefact reproduces the potential without the mlpot package."""

import json
import subprocess
import sys

import numpy as np
import pytest
from ase.build import bulk

from mlpot.calculators.compiled import save_compiled
from mlpot.data import AtomsBatch, neighbor_list
from mlpot.models import LennardJones

RUNNER = r"""
import sys, json
sys.modules["mlpot"] = None          # any import of mlpot now fails
import numpy as np, torch
m = torch.jit.load(sys.argv[1])
d = np.load(sys.argv[2])
t = lambda k: torch.from_numpy(d[k])
e, atomic, forces, virial = m(t("positions"), t("numbers"), t("cell"), t("centers"),
                              t("neighbors"), t("shifts"))
json.dump({"energy": float(e), "forces": forces.tolist(), "virial": virial.tolist()}, sys.stdout)
"""


def run_without_mlpot(model_path, atoms, cutoff, tmp_path):
    batch = AtomsBatch.from_atoms([atoms])
    nl = neighbor_list(batch, cutoff)
    np.savez(
        tmp_path / "inp.npz", positions=batch.positions.numpy(), numbers=batch.numbers.numpy(),
        cell=batch.cell[0].numpy(), centers=nl.centers.numpy(), neighbors=nl.neighbors.numpy(),
        shifts=nl.shifts.numpy(),
    )
    (tmp_path / "run.py").write_text(RUNNER)
    out = subprocess.run(
        [sys.executable, str(tmp_path / "run.py"), str(model_path), str(tmp_path / "inp.npz")],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )
    return json.loads(out.stdout)


def check_against_potential(pot, atoms, tmp_path):
    path = save_compiled(pot, tmp_path / "model.ts")
    got = run_without_mlpot(path, atoms, pot.cutoff, tmp_path)
    ref = pot.compute(atoms, forces=True, stress=True)
    volume = atoms.get_volume()
    assert got["energy"] == pytest.approx(float(ref["energy"][0]), rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(got["forces"], ref["forces"].detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(
        -np.array(got["virial"]) / volume, ref["stress"][0].detach().numpy(), atol=1e-10
    )


def test_compiled_lennard_jones_matches_on_other_sizes(tmp_path):
    pot = LennardJones(epsilon=0.0104, sigma=3.4, cutoff=8.0)
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True).repeat((3, 2, 2))  # not the tracing example
    atoms.rattle(0.1, seed=4)
    check_against_potential(pot, atoms, tmp_path)
