"""MD and relaxation: energy conservation (NVE), thermostat (NVT), relaxed lattice constant."""

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read

from mlpot.calculators.md import relax, run_md
from mlpot.errors import ParameterError
from mlpot.models import LennardJones

# Argon: epsilon 10.4 meV, sigma 3.40 Å. The LJ fcc minimum lies at a = 2^(2/3) sigma (nearest
# neighbours at 2^(1/6) sigma) corrected for the longer-range shells; ASE's LJ gives the reference.
LJ = dict(epsilon=0.0104, sigma=3.40, cutoff=8.0)


@pytest.fixture
def argon():
    return bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))


def test_nve_conserves_energy(argon, tmp_path):
    pot = LennardJones(**LJ)
    summary = run_md(
        pot,
        argon,
        ensemble="nve",
        temperature_k=40,
        timestep_fs=2.0,
        steps=200,
        trajectory=tmp_path / "t.extxyz",
        log=tmp_path / "t.csv",
        interval=20,
        progress=False,
    )
    # Bound: velocity Verlet at dt = 2 fs for Ar at 40 K keeps |ΔE_tot| far below k_B T per atom
    # (3.4 meV); we ask 0.05 meV/atom, while the kinetic energy fluctuates by ~1 meV/atom.
    assert summary.energy_drift_mev_per_atom(len(argon)) < 0.05
    assert np.ptp(summary.potential_energy_ev) / len(argon) > 1e-4  # there was real dynamics
    frames = read(tmp_path / "t.extxyz", ":")
    assert len(frames) == 200 // 20 + 1
    rows = (tmp_path / "t.csv").read_text().strip().splitlines()
    assert rows[0].startswith("time_fs,temperature_K") and len(rows) == 200 // 20 + 2


def test_nvt_reaches_target_temperature(argon):
    pot = LennardJones(**LJ)
    summary = run_md(
        pot,
        argon,
        ensemble="nvt",
        temperature_k=60,
        timestep_fs=5.0,
        steps=800,
        friction_per_fs=0.05,
        progress=False,
        seed=1,
    )
    # Langevin: the time average of T over the second half equals the target within the
    # statistical error of 32 atoms (relative std of T per frame ~ sqrt(2/(3N)) = 14 %).
    mean_t = summary.temperature_k[400:].mean()
    assert mean_t == pytest.approx(60, rel=0.1)


def test_relax_cell_finds_lj_lattice_constant(argon):
    from ase.calculators.lj import LennardJones as AseLJ

    pot = LennardJones(**LJ)
    start = argon.copy()
    start.rattle(0.05, seed=2)
    relaxed, converged = relax(pot, start, fmax=1e-3, steps=1000, relax_cell=True, progress=False)
    assert converged
    # independent reference: minimise ASE's LJ energy over the fcc lattice constant
    from scipy.optimize import minimize_scalar

    def energy(a):
        b = bulk("Ar", "fcc", a=a, cubic=True)
        b.calc = ref
        return b.get_potential_energy()

    ref = AseLJ(epsilon=LJ["epsilon"], sigma=LJ["sigma"], rc=LJ["cutoff"], smooth=False)
    a_ref = minimize_scalar(energy, bounds=(5.0, 5.6), method="bounded", options={"xatol": 1e-6}).x
    a_ours = relaxed.cell.cellpar()[0] / 2
    assert a_ours == pytest.approx(a_ref, abs=2e-3)


def test_bad_md_parameters(argon):
    pot = LennardJones(**LJ)
    with pytest.raises(ParameterError, match="unknown ensemble"):
        run_md(pot, argon, ensemble="npt", progress=False)
    with pytest.raises(ParameterError, match="timestep"):
        run_md(pot, argon, timestep_fs=-1, progress=False)


def test_md_and_relax_cli(argon, tmp_path):
    """`mlpot md` / `mlpot relax` on a saved model: files written, NVE conserves energy."""
    import csv

    from ase.io import write

    from mlpot.cli.main import main

    model = tmp_path / "lj.pt"
    LennardJones(**LJ).save(model)
    start = tmp_path / "start.extxyz"
    write(start, argon)
    traj = tmp_path / "md.extxyz"
    argv = ["md", str(model), str(start), "--ensemble", "nve", "--temperature", "40"]
    assert main(argv + ["--timestep", "2", "--steps", "40", "--out", str(traj)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "md.csv")))
    total = np.array([float(r["total_eV"]) for r in rows])
    assert len(read(traj, ":")) == 5 and np.ptp(total) / len(argon) < 5e-5
    relaxed = tmp_path / "relaxed.extxyz"
    assert main(["relax", str(model), str(start), "--out", str(relaxed), "--fmax", "1e-3"]) == 0
    assert np.abs(read(relaxed).get_forces()).max() < 1e-3
    assert main(["md", str(tmp_path / "missing.pt"), str(start)]) == 2
