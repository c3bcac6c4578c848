"""ACSF speed: mlpot (PyTorch, one thread) against DScribe, and scaling with system size.

Workload: 64-atom diamond Si (a = 5.43 Å, 2×2×2 conventional cells, rattled by 0.1 Å),
r_c = 6 Å, the 33-function set of sample_NNP's make_desc_large: G1; G2 with η ∈ {0.1, 0.5} Å⁻²
and R_s ∈ {2.2, 2.4, 2.6, 3.0, 3.4, 3.6, 4.0, 4.4} Å; G4 with η ∈ {0, 0.1} Å⁻², ζ ∈ {1, 2, 4, 16},
λ = ±1. Float64.

"values + forces" = features and the gradient of a fixed linear map of them with respect to the
positions (what a potential needs for forces), by autograd. Times are the best of several
repeats (wall clock, and CPU time of this process, which is robust on a busy machine).
The neighbour list (vesin) is timed separately. Scaling runs each size in a subprocess and
reports its peak resident memory (ru_maxrss).

    python benchmarks/acsf_speed.py                 # comparison + scaling 64..32768 atoms
    python benchmarks/acsf_speed.py --sizes 64 512  # fewer sizes
    python benchmarks/acsf_speed.py --water         # + 1080-atom water, n2p2 potential

The machine's load average is printed first: on a shared machine the times vary a lot.
Large temporaries are freed and re-faulted by glibc's malloc on every call (its trim
threshold); ``MALLOC_TRIM_THRESHOLD_=1000000000 MALLOC_MMAP_THRESHOLD_=1000000000`` in the
environment (or jemalloc/tcmalloc) removes that cost, which is part of the default numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

# idle OpenMP threads sleep instead of spinning (set before torch loads), as the CLI does
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from ase.build import bulk

from mlpot.data.batch import AtomsBatch
from mlpot.data.neighbors import neighbor_list, pair_vectors
from mlpot.descriptors import ACSF

R_CUT = 6.0
G2 = [(eta, rs) for eta in (0.1, 0.5) for rs in (2.2, 2.4, 2.6, 3.0, 3.4, 3.6, 4.0, 4.4)]
G4 = [(eta, zeta, lam) for eta in (0.0, 0.1) for zeta in (1, 2, 4, 16) for lam in (1, -1)]


def silicon(n_cells: tuple[int, int, int] = (2, 2, 2), seed: int = 0):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * n_cells
    atoms.rattle(0.1, seed=seed)
    return atoms


def best_time(function, repeats: int, min_total: float = 0.5) -> tuple[float, float]:
    """(best wall time, best CPU time) per call, seconds."""
    function()  # warm up
    walls, cpus = [], []
    start = time.perf_counter()
    while len(walls) < repeats or time.perf_counter() - start < min_total:
        w0, c0 = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        if len(walls) >= 10 * repeats:
            break
    return min(walls), min(cpus)


def measure_ours(atoms, repeats: int = 10) -> dict:
    torch.set_num_threads(1)
    acsf = ACSF.from_dscribe(["Si"], R_CUT, g2_params=G2, g4_params=G4)
    batch = AtomsBatch.from_atoms([atoms], dtype=torch.float64)
    weights = torch.randn(acsf.max_features, dtype=torch.float64)

    def nl():
        return neighbor_list(batch, acsf.cutoff)

    neighbors = nl()

    def values():
        with torch.no_grad():
            return acsf(batch, neighbors, pair_vectors(batch, neighbors))

    def values_forces():
        positions = batch.positions.detach().requires_grad_(True)
        vectors = pair_vectors(batch, neighbors, positions=positions)
        energy = (acsf(batch, neighbors, vectors) @ weights).sum()
        return torch.autograd.grad(energy, positions)[0]

    t_nl = best_time(nl, repeats)
    t_val = best_time(values, repeats)
    t_frc = best_time(values_forces, repeats)
    return {
        "n_atoms": len(atoms),
        "n_pairs": neighbors.n_pairs,
        "neighbor_list": t_nl,
        "values": t_val,
        "values_forces": t_frc,
    }


def measure_dscribe(atoms, derivative_centers: int = 2) -> dict | None:
    try:
        from dscribe.descriptors import ACSF as DScribeACSF
    except ImportError:
        return None
    descriptor = DScribeACSF(species=["Si"], r_cut=R_CUT, g2_params=G2, g4_params=G4, periodic=True)
    t_values = best_time(lambda: descriptor.create(atoms), 5)
    # DScribe differentiates ACSF numerically; time a few centres and scale to all atoms
    centers = list(range(derivative_centers))
    w0, c0 = time.perf_counter(), time.process_time()
    descriptor.derivatives(atoms, centers=centers, method="numerical", attach=True)
    scale = len(atoms) / derivative_centers
    t_derivatives = (
        (time.perf_counter() - w0) * scale,
        (time.process_time() - c0) * scale,
    )
    return {"values": t_values, "derivatives_per_frame": t_derivatives}


def child(n_atoms: int) -> None:
    """Run one size and print a JSON line (called in a subprocess)."""
    n = round((n_atoms / 8) ** (1 / 3))
    atoms = silicon((n, n, n))
    repeats = 5 if n_atoms <= 512 else 1
    result = measure_ours(atoms, repeats=repeats)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[64, 512, 4096, 32768])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-dscribe", action="store_true")
    parser.add_argument(
        "--water",
        action="store_true",
        help="also time the 1080-atom water structure with the n2p2 RPBE-D3 potential "
        "(needs ../shared/data)",
    )
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    atoms = silicon()
    print(f"load average (1, 5, 15 min): {os.getloadavg()} on {os.cpu_count()} CPUs")
    print(
        f"torch {torch.__version__}, 1 thread, float64; 64-atom Si, r_c = {R_CUT} Å, 33 functions"
    )
    ours = measure_ours(atoms, repeats=20)
    ms = 1e3
    print(f"pairs: {ours['n_pairs']}")
    print(f"{'':34s}{'wall ms':>10s}{'cpu ms':>10s}")
    print(
        f"{'neighbour list (vesin)':34s}{ours['neighbor_list'][0] * ms:10.2f}"
        f"{ours['neighbor_list'][1] * ms:10.2f}"
    )
    print(
        f"{'mlpot values':34s}{ours['values'][0] * ms:10.2f}{ours['values'][1] * ms:10.2f}"
        "   (target 2 ms)"
    )
    print(
        f"{'mlpot values + forces':34s}{ours['values_forces'][0] * ms:10.2f}"
        f"{ours['values_forces'][1] * ms:10.2f}   (target 6 ms)"
    )
    if not args.no_dscribe:
        ds = measure_dscribe(atoms)
        if ds is None:
            print("dscribe not installed: no comparison")
        else:
            print(f"{'DScribe values':34s}{ds['values'][0] * ms:10.2f}{ds['values'][1] * ms:10.2f}")
            print(
                f"{'DScribe derivatives (numerical)':34s}"
                f"{ds['derivatives_per_frame'][0] * ms:10.0f}"
                f"{ds['derivatives_per_frame'][1] * ms:10.0f}   (2 centres, scaled to 64)"
            )
            print(f"ratio DScribe/mlpot, values (cpu): {ds['values'][1] / ours['values'][1]:.2f}")
            print(
                "ratio DScribe derivatives / mlpot values+forces (cpu): "
                f"{ds['derivatives_per_frame'][1] / ours['values_forces'][1]:.0f}"
            )

    if args.sizes:
        print("\nscaling (each size in its own process; times exclude the neighbour list)")
        print(
            f"{'atoms':>7s}{'pairs':>10s}{'nl ms':>9s}{'values ms':>11s}{'+forces ms':>12s}"
            f"{'us/atom':>9s}{'peak RSS MB':>13s}"
        )
        for n in args.sizes:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", str(n)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                print(f"{n:7d}  failed: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{r['n_atoms']:7d}{r['n_pairs']:10d}{r['neighbor_list'][1] * ms:9.1f}"
                f"{r['values'][1] * ms:11.1f}{r['values_forces'][1] * ms:12.1f}"
                f"{r['values_forces'][1] / r['n_atoms'] * 1e6:9.1f}{r['max_rss_mb']:13.0f}"
            )

    if args.water:
        water()


def water() -> None:
    """Energy and energy + forces of n2p2's 1080-atom water example (60 functions)."""
    from pathlib import Path

    import mlpot
    from mlpot.interop.n2p2_data import read_n2p2_data
    from mlpot.models.potential import compute_properties

    torch.set_num_threads(1)
    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "n2p2" / "H2O_RPBE-D3"
    if not folder.is_dir():
        print(f"\nwater: {folder} not found, skipped")
        return
    potential = mlpot.load(folder, length_unit="bohr", energy_unit="hartree")
    atoms = read_n2p2_data(folder / "predict.input.data", "bohr", "hartree")[0]
    batch = AtomsBatch.from_atoms([atoms])
    nl = neighbor_list(batch, potential.cutoff)
    print(f"\nwater: {len(atoms)} atoms, {nl.n_pairs} pairs, cutoff {potential.cutoff:.3f} Å")
    for forces in (False, True):
        t = best_time(lambda f=forces: compute_properties(potential, batch, nl, forces=f), 1, 0)
        label = "energy + forces" if forces else "energy"
        print(f"{label:34s}{t[0] * 1e3:10.0f}{t[1] * 1e3:10.0f}   ms wall / cpu")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
