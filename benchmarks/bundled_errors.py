"""Energy errors of a model on every structure of the bundled Si set, by group and k-mesh.

A fitting error scatters about zero; an error that is the same on a group's training and
held-out structures points at the labels instead (docs/datasets.md: the defect cells' k-point
errors were found this way). For each group, the structures of the demo's test split and the
rest (training + validation) separately, and, where the frames record it, each k-mesh:
count, r.m.s., MAE and mean of E_model − E_DFT (meV/atom) and the force errors (eV/Å),
through ``mlpot.training.metrics.metrics_by_group``.

    python benchmarks/bundled_errors.py RUN/model.pt
    python benchmarks/bundled_errors.py RUN/model.pt --data data_generation/si_gpaw.partial.extxyz

``--data`` reads another file of the same structures (the generator's working file records the
mesh of every frame; structures it does not hold yet are taken from the bundle); ``--seed``
is the demo's split seed (0).
"""

from __future__ import annotations

import argparse

import mlpot
from mlpot.data.io import read_structures
from mlpot.datasets import load_bundled_si
from mlpot.demo import DemoSettings, demo_test_split
from mlpot.training.metrics import format_metrics, metrics_by_group, predict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--data", default=None, help="extxyz of the bundled structures")
    parser.add_argument("--seed", type=int, default=0, help="the demo's split seed")
    args = parser.parse_args(argv)

    frames = load_bundled_si()
    if args.data:
        by_index = {int(a.info["index"]): a for a in read_structures(args.data, format="extxyz")}
        frames = [by_index.get(int(a.info["index"]), a) for a in frames]  # missing: bundled
    _, test = demo_test_split(frames, DemoSettings().test_fraction, args.seed)
    test = set(int(i) for i in test)
    p = predict(mlpot.load(args.model), frames, stress=False)
    labels = [
        f"{atoms.info['group']} {'test' if i in test else 'rest'} {atoms.info.get('kpts', '-')}"
        for i, atoms in enumerate(frames)
    ]
    print(format_metrics(metrics_by_group(p, labels), title="group split k-mesh"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
