"""Energy errors of a model on every structure of the bundled Si set, by group and k-mesh.

A fitting error scatters about zero; an error that is the same on a group's training and
held-out structures points at the labels instead (docs/datasets.md: the defect cells' k-point
errors were found this way). For each group, the structures of the demo's test split and the
rest (training + validation) separately, and, where the frames record it, each k-mesh:
count, mean and r.m.s. of E_model − E_DFT (meV/atom) and the force r.m.s. (eV/Å).

    python benchmarks/bundled_errors.py RUN/model.pt
    python benchmarks/bundled_errors.py RUN/model.pt --data data_generation/si_gpaw.partial.extxyz

``--data`` reads another file of the same structures (the generator's working file records the
mesh of every frame); ``--seed`` is the demo's split seed (0).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

import mlpot
from mlpot.data.io import read_structures
from mlpot.datasets import load_bundled_si
from mlpot.demo import DemoSettings, split_by_structure
from mlpot.training.metrics import predict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--data", default=None, help="extxyz of the bundled structures")
    parser.add_argument("--seed", type=int, default=0, help="the demo's split seed")
    args = parser.parse_args(argv)

    frames = load_bundled_si()
    if args.data:
        by_index = {int(a.info["index"]): a for a in read_structures(args.data, format="extxyz")}
        frames = [by_index[int(a.info["index"])] for a in frames]
    _, test = split_by_structure(len(frames), DemoSettings().test_fraction, args.seed)
    test = set(int(i) for i in test)
    p = predict(mlpot.load(args.model), frames, stress=False)
    energy_errors = (p.energy_pred - p.energy_ref) / p.n_atoms * 1000.0
    atom_starts = np.concatenate([[0], np.cumsum(p.n_atoms)])
    rows: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    for position, atoms in enumerate(frames):
        own = slice(atom_starts[position], atom_starts[position + 1])
        force = np.sqrt(np.mean((p.forces_pred[own] - p.forces_ref[own]) ** 2))
        split = "test" if position in test else "rest"
        mesh = str(atoms.info.get("kpts", "-"))
        rows[(atoms.info["group"], split, mesh)].append((energy_errors[position], float(force)))
    print(
        f"{'group':13s} {'split':5s} {'k-mesh':7s} {'n':>3s} {'mean':>7s} {'rms':>7s} {'F rms':>7s}"
    )
    for (group, split, mesh), values in sorted(rows.items()):
        energy = np.array([v[0] for v in values])
        force = np.array([v[1] for v in values])
        print(
            f"{group:13s} {split:5s} {mesh:7s} {len(values):3d} {energy.mean():7.2f} "
            f"{np.sqrt(np.mean(energy**2)):7.2f} {np.sqrt(np.mean(force**2)):7.3f}"
        )
    print("energies in meV/atom (model - DFT), forces in eV/Å")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
