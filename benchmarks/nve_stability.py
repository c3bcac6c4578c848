"""NVE energy conservation of a potential: 64-atom diamond Si near 1000 K, 1 fs, 10 ps.

Setup: 2×2×2 conventional cells of diamond Si (a = 5.431 Å, 64 atoms, periodic), velocities drawn
from a Maxwell–Boltzmann distribution at twice the target temperature (2000 K; equipartition
brings the crystal to ~1000 K within a few hundred fs), centre-of-mass motion removed, then
velocity Verlet (``mlpot.calculators.md.run_md``, ensemble "nve"), 1 fs steps, 10000 steps.
``--nvt-steps N`` instead thermalises with N Langevin NVT steps at the target temperature first
and starts NVE from that state.

Reported: max |E_tot(t) − E_tot(0)| per atom (meV/atom; target < 1), the slope of a linear fit of
E_tot(t)/N (meV/atom/ps), the RMS of E_tot/N about that line (meV/atom: the Verlet fluctuation),
the mean temperature of the second half, and the speed (µs/atom/step, whole MD loop).

    python benchmarks/nve_stability.py MODEL.pt
    python benchmarks/nve_stability.py /work/shared/data/mlearn_Si/n2p2_potential \\
        --length-unit bohr --energy-unit hartree
    python benchmarks/nve_stability.py MODEL.pt --steps 2000 --log nve.csv --json nve.json
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET_MEV_PER_ATOM = 1.0


def silicon(cells: int, lattice_a: float):
    from ase.build import bulk

    return bulk("Si", "diamond", a=lattice_a, cubic=True) * (cells, cells, cells)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src/mlpot"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return out + (" (+ local changes in src/mlpot)" if dirty else "")


def drift_statistics(time_fs: np.ndarray, total_ev: np.ndarray, n_atoms: int) -> dict:
    """Max deviation, linear drift and fluctuation of the total energy per atom (meV, ps)."""
    per_atom_mev = (total_ev - total_ev[0]) / n_atoms * 1e3
    time_ps = time_fs / 1e3
    if len(time_ps) >= 2 and time_ps[-1] > time_ps[0]:
        slope, intercept = np.polyfit(time_ps, per_atom_mev, 1)
        residual = per_atom_mev - (slope * time_ps + intercept)
    else:
        slope, residual = 0.0, per_atom_mev
    return {
        "max_abs_deviation_mev_per_atom": float(np.max(np.abs(per_atom_mev))),
        "drift_slope_mev_per_atom_per_ps": float(slope),
        "rms_fluctuation_mev_per_atom": float(np.sqrt(np.mean(residual**2))),
        "final_deviation_mev_per_atom": float(per_atom_mev[-1]),
    }


def thermalise_nvt(potential, atoms, args):
    """Langevin NVT at the target temperature; returns the last state with its momenta."""
    from ase.io import read

    from mlpot.calculators.md import run_md

    with tempfile.TemporaryDirectory(prefix="nve_stability_") as tmp:
        trajectory = Path(tmp) / "nvt.extxyz"
        run_md(
            potential,
            atoms,
            ensemble="nvt",
            temperature_k=args.temperature,
            timestep_fs=args.timestep,
            steps=args.nvt_steps,
            trajectory=trajectory,
            interval=args.nvt_steps,
            seed=args.seed,
            progress=not args.quiet,
        )
        last = read(trajectory, index=-1)
    if "momenta" not in last.arrays:
        raise SystemExit("the NVT trajectory holds no momenta; cannot start NVE from it")
    last.calc = None
    for key in ("forces_pot",):
        last.arrays.pop(key, None)
    return last


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="mlpot model file or n2p2 potential directory")
    parser.add_argument("--length-unit", default="angstrom", help="n2p2 directory: angstrom/bohr")
    parser.add_argument("--energy-unit", default="ev", help="n2p2 directory: ev/hartree")
    parser.add_argument("--temperature", type=float, default=1000.0, help="target T, K (1000)")
    parser.add_argument(
        "--initial-temperature",
        type=float,
        help="Maxwell–Boltzmann temperature of the start, K (default: 2 × target; with "
        "--nvt-steps: the target)",
    )
    parser.add_argument(
        "--nvt-steps", type=int, default=0, help="Langevin NVT steps before NVE (0: none)"
    )
    parser.add_argument("--steps", type=int, default=10000, help="NVE steps (10000)")
    parser.add_argument("--timestep", type=float, default=1.0, help="fs (1.0)")
    parser.add_argument("--cells", type=int, default=2, help="conventional cells per side (2)")
    parser.add_argument("--lattice", type=float, default=5.431, help="Å (5.431)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument("--log", help="CSV of every step: time_fs, T_K, E_pot, E_tot (eV)")
    parser.add_argument("--json", help="write the summary to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    import torch

    import mlpot
    from mlpot.calculators.md import run_md
    from mlpot.errors import MlpotError

    torch.set_num_threads(args.threads)
    try:
        potential = mlpot.load(
            args.model, length_unit=args.length_unit, energy_unit=args.energy_unit
        )
    except MlpotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    atoms = silicon(args.cells, args.lattice)
    n_atoms = len(atoms)
    started = datetime.datetime.now().astimezone()
    header = {
        "date": f"{started:%Y-%m-%d %H:%M %Z}",
        "commit": git_commit(),
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "mlpot_from": str(Path(mlpot.__file__).parent),
        "model": str(args.model),
        "units": f"{args.length_unit}/{args.energy_unit}",
        "atoms": n_atoms,
        "cutoff_angstrom": potential.cutoff,
        "timestep_fs": args.timestep,
        "steps": args.steps,
    }

    if args.nvt_steps > 0:
        start_temperature = args.initial_temperature or args.temperature
        start = thermalise_nvt(potential, atoms, args)
        header["start"] = (
            f"{args.nvt_steps} Langevin NVT steps at {args.temperature:g} K (friction 0.01/fs), "
            "then NVE from that state"
        )
        initialize = False
    else:
        start_temperature = args.initial_temperature or 2 * args.temperature
        start = atoms
        header["start"] = (
            f"Maxwell–Boltzmann at {start_temperature:g} K (seed {args.seed}), no thermostat"
        )
        initialize = True
    for key, value in header.items():
        print(f"{key}: {value}", flush=True)

    wall = time.perf_counter()
    summary = run_md(
        potential,
        start,
        ensemble="nve",
        temperature_k=start_temperature,
        timestep_fs=args.timestep,
        steps=args.steps,
        seed=args.seed,
        initialize_velocities=initialize,
        interval=max(1, args.steps // 100),
        progress=not args.quiet,
    )
    wall = time.perf_counter() - wall

    stats = drift_statistics(summary.time_fs, summary.total_energy_ev, n_atoms)
    half = len(summary.temperature_k) // 2
    stats.update(
        {
            "mean_temperature_k_second_half": float(np.mean(summary.temperature_k[half:])),
            "std_temperature_k_second_half": float(np.std(summary.temperature_k[half:])),
            "simulated_ps": float(summary.time_fs[-1] / 1e3),
            "wall_s": wall,
            "us_per_atom_per_step": wall / max(args.steps, 1) / n_atoms * 1e6,
            "target_mev_per_atom": TARGET_MEV_PER_ATOM,
            "passed": stats["max_abs_deviation_mev_per_atom"] < TARGET_MEV_PER_ATOM,
        }
    )
    print()
    print(
        f"simulated: {stats['simulated_ps']:.2f} ps NVE, {n_atoms} atoms, wall {wall:.0f} s "
        f"({stats['us_per_atom_per_step']:.0f} µs/atom/step)"
    )
    print(
        f"temperature, second half: {stats['mean_temperature_k_second_half']:.0f} ± "
        f"{stats['std_temperature_k_second_half']:.0f} K"
    )
    print(
        f"max |E_tot(t) - E_tot(0)|: {stats['max_abs_deviation_mev_per_atom']:.3f} meV/atom "
        f"(target < {TARGET_MEV_PER_ATOM:g}: {'PASS' if stats['passed'] else 'FAIL'})"
    )
    print(
        f"linear drift: {stats['drift_slope_mev_per_atom_per_ps']:+.4f} meV/atom/ps; "
        f"final {stats['final_deviation_mev_per_atom']:+.3f} meV/atom; "
        f"RMS about the line {stats['rms_fluctuation_mev_per_atom']:.3f} meV/atom"
    )

    if args.log:
        _write_atomic(args.log, lambda handle: _write_log(handle, summary))
    if args.json:
        _write_atomic(args.json, lambda handle: json.dump({**header, **stats}, handle, indent=1))
    return 0 if np.all(np.isfinite(summary.total_energy_ev)) else 1


def _write_log(handle, summary) -> None:
    writer = csv.writer(handle)
    writer.writerow(["time_fs", "temperature_K", "potential_eV", "total_eV"])
    for row in zip(
        summary.time_fs,
        summary.temperature_k,
        summary.potential_energy_ev,
        summary.total_energy_ev,
        strict=True,
    ):
        writer.writerow([f"{row[0]:g}", f"{row[1]:.3f}", f"{row[2]:.8f}", f"{row[3]:.8f}"])


def _write_atomic(path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


if __name__ == "__main__":
    sys.exit(main())
