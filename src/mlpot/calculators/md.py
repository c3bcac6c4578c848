"""Molecular dynamics and relaxation with any mlpot potential (ASE integrators and optimisers).

Trajectories are appended frame by frame to an extxyz file (flushed after each frame), so a killed
run keeps everything it computed. A log (CSV) records time (fs), temperature (K), potential, kinetic
and total energy (eV) and pressure (GPa, periodic cells only).
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import ase
import numpy as np
from ase import units
from ase.io import write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from mlpot.errors import ParameterError
from mlpot.models.potential import Potential

ENSEMBLES = ("nve", "nvt", "nvt-nose-hoover")


@dataclass
class MDSummary:
    """What an MD run measured: per-step arrays (fs, K, eV) and where files went."""

    time_fs: np.ndarray
    temperature_k: np.ndarray
    potential_energy_ev: np.ndarray
    total_energy_ev: np.ndarray
    trajectory: Path | None
    log: Path | None

    def energy_drift_mev_per_atom(self, n_atoms: int) -> float:
        """max |E_tot(t) − E_tot(0)| per atom, meV."""
        return float(np.max(np.abs(self.total_energy_ev - self.total_energy_ev[0])) / n_atoms * 1e3)


class _Progress:
    """A one-line progress bar with ETA on stderr."""

    def __init__(self, total: int, label: str, stream=None, enabled: bool = True):
        # sys.stderr looked up now, not at import: a caller (pytest, Jupyter) may replace it
        stream = sys.stderr if stream is None else stream
        self.total, self.label, self.stream, self.enabled = total, label, stream, enabled
        self.start = time.perf_counter()

    def update(self, done: int, extra: str = "") -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.total - done) if done else float("nan")
        width = 30
        filled = int(width * done / max(self.total, 1))
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
            f"{elapsed:6.1f}s ETA {eta:6.1f}s {extra}"
        )
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def _maxwell_boltzmann(atoms: ase.Atoms, temperature_k: float, rng) -> None:
    try:
        from ase.md.velocitydistribution import thermalize_momenta
    except ImportError:  # older ASE
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta
    thermalize_momenta(atoms, temperature_K=temperature_k, rng=rng)


def run_md(
    potential: Potential,
    atoms: ase.Atoms,
    ensemble: str = "nvt",
    temperature_k: float = 300.0,
    timestep_fs: float = 1.0,
    steps: int = 1000,
    trajectory: str | Path | None = None,
    log: str | Path | None = None,
    interval: int = 10,
    friction_per_fs: float = 0.01,
    thermostat_time_fs: float = 100.0,
    seed: int = 0,
    initialize_velocities: bool = True,
    progress: bool = True,
) -> MDSummary:
    """Run MD of ``atoms`` with ``potential``.

    Args:
        ensemble: "nve" (velocity Verlet), "nvt" (Langevin, ``friction_per_fs``) or
            "nvt-nose-hoover" (ASE's Nosé–Hoover chain, ``thermostat_time_fs``).
        temperature_k: initial (Maxwell–Boltzmann) and, for NVT, target temperature, K.
        timestep_fs: time step, fs. ``steps``: number of steps.
        trajectory: extxyz file appended every ``interval`` steps (and at step 0).
        log: CSV file written every ``interval`` steps.
    """
    if ensemble not in ENSEMBLES:
        raise ParameterError(f"unknown ensemble {ensemble!r}; choose one of {', '.join(ENSEMBLES)}")
    if not (timestep_fs > 0 and steps >= 0 and temperature_k >= 0 and interval >= 1):
        raise ParameterError("timestep must be > 0, steps >= 0, temperature >= 0, interval >= 1")
    atoms = atoms.copy()
    atoms.calc = potential.calculator()
    rng = np.random.default_rng(seed)
    if initialize_velocities:
        _maxwell_boltzmann(atoms, temperature_k, rng)
        Stationary(atoms)
        if not atoms.pbc.any():
            ZeroRotation(atoms)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        dyn = VelocityVerlet(atoms, timestep=dt)
    elif ensemble == "nvt":
        dyn = Langevin(
            atoms,
            timestep=dt,
            temperature_K=temperature_k,
            friction=friction_per_fs / units.fs,
            rng=rng,
            fixcm=False,
        )
        if not atoms.constraints:
            from ase.constraints import FixCom

            atoms.set_constraint(FixCom())
    else:
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        dyn = NoseHooverChainNVT(
            atoms, timestep=dt, temperature_K=temperature_k, tdamp=thermostat_time_fs * units.fs
        )

    trajectory = Path(trajectory) if trajectory else None
    log = Path(log) if log else None
    if trajectory is not None:
        trajectory.parent.mkdir(parents=True, exist_ok=True)
        trajectory.write_text("")  # a fresh file; frames are appended as they come
    log_file = writer = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log, "w", newline="")
        writer = csv.writer(log_file)
        writer.writerow(
            ["time_fs", "temperature_K", "potential_eV", "kinetic_eV", "total_eV", "pressure_GPa"]
        )
    times, temps, epots, etots = [], [], [], []
    bar = _Progress(steps, f"MD {ensemble}", enabled=progress)
    periodic = bool(atoms.pbc.all())

    def record():
        step = dyn.nsteps
        epot = atoms.get_potential_energy()
        ekin = atoms.get_kinetic_energy()
        temp = atoms.get_temperature()
        times.append(step * timestep_fs)
        temps.append(temp)
        epots.append(epot)
        etots.append(epot + ekin)
        if step % interval == 0:
            if writer is not None:
                pressure = (
                    -np.trace(atoms.get_stress(voigt=False)) / 3 / units.GPa
                    if periodic
                    else float("nan")
                )
                writer.writerow([step * timestep_fs, temp, epot, ekin, epot + ekin, pressure])
                log_file.flush()
            if trajectory is not None:
                frame = atoms.copy()
                frame.calc = None
                frame.info.update({"time_fs": step * timestep_fs, "energy_pot": epot})
                frame.arrays["forces_pot"] = atoms.get_forces()
                write(trajectory, frame, format="extxyz", append=True)
            bar.update(step, f"T={temp:7.1f} K")

    dyn.attach(record, interval=1)
    try:
        dyn.run(steps)  # ASE calls the observers at step 0 too
        bar.update(steps, f"T={temps[-1]:7.1f} K")
    finally:
        if log_file is not None:
            log_file.close()
    return MDSummary(
        time_fs=np.array(times),
        temperature_k=np.array(temps),
        potential_energy_ev=np.array(epots),
        total_energy_ev=np.array(etots),
        trajectory=trajectory,
        log=log,
    )


def relax(
    potential: Potential,
    atoms: ase.Atoms,
    fmax: float = 0.01,
    steps: int = 500,
    relax_cell: bool = False,
    trajectory: str | Path | None = None,
    progress: bool = True,
) -> tuple[ase.Atoms, bool]:
    """Relax positions (and the cell with ``relax_cell``) with FIRE until max force < ``fmax`` eV/Å.

    Returns the relaxed structure (with its calculator) and whether it converged.
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    if relax_cell and not atoms.pbc.all():
        raise ParameterError("--cell needs a structure periodic in all three directions")
    atoms = atoms.copy()
    atoms.calc = potential.calculator()
    target = FrechetCellFilter(atoms) if relax_cell else atoms
    opt = FIRE(target, logfile=None)
    bar = _Progress(steps, "relax", enabled=progress)
    if trajectory:
        Path(trajectory).write_text("")

    def report():
        fmax_now = float(np.sqrt((target.get_forces() ** 2).sum(axis=1)).max())
        bar.update(
            min(opt.nsteps, steps), f"E={atoms.get_potential_energy():.6f} eV fmax={fmax_now:.4f}"
        )
        if trajectory:
            frame = atoms.copy()
            frame.calc = None
            frame.info["energy_pot"] = atoms.get_potential_energy()
            write(trajectory, frame, format="extxyz", append=True)

    opt.attach(report, interval=1)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    if progress:
        sys.stderr.write("\n")
    return atoms, converged
