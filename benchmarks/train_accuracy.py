"""Accuracy of `mlpot train` with default settings on the reference data sets.

    python benchmarks/train_accuracy.py mlearn_si [--out DIR] [--seed 0] [--threads 2]
    python benchmarks/train_accuracy.py tio2 | water | cu2s | sample_nnp

Prints the test (or validation) errors, wall time and peak memory (max RSS) of the process.
Data are read from ../shared/data (never copied into the repository).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", choices=["mlearn_si", "tio2", "water", "cu2s", "sample_nnp"])
    parser.add_argument("--out", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--force-scale",
        type=float,
        default=1.0,
        help="multiply the reference forces of the tio2 file by this (see README: the file's "
        "forces are 27.2x too large for its energies; 1/27.211 = 0.036749 makes them consistent)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one default, e.g. --set training.forces_weight=0.1 (YAML value syntax)",
    )
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mlpot.training.config import Config
    from mlpot.training.workflow import train_from_files

    out = Path(args.out or tempfile.mkdtemp(prefix=f"mlpot_{args.dataset}_"))
    t0 = time.perf_counter()
    config = Config()
    for item in args.set:
        import yaml

        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        target = getattr(config, section)
        if not hasattr(target, name):
            parser.error(f"--set {item}: no option {key}")
        setattr(target, name, yaml.safe_load(value))
    if args.dataset == "mlearn_si":
        metrics = train_from_files(
            DATA / "mlearn_Si" / "train.extxyz",
            out,
            DATA / "mlearn_Si" / "test.extxyz",
            config=config,
            seed=args.seed,
        )
    elif args.dataset == "tio2":
        import ase.io

        frames = ase.io.read(DATA / "aenet_TiO2" / "TiO2_1000.extxyz", ":")
        if args.force_scale != 1.0:
            from ase.calculators.singlepoint import SinglePointCalculator

            for atoms in frames:
                calc = atoms.calc
                atoms.calc = SinglePointCalculator(
                    atoms,
                    energy=calc.get_potential_energy(),
                    forces=calc.get_forces() * args.force_scale,
                )
        order = np.random.default_rng(args.seed).permutation(len(frames))
        n_test = len(frames) // 10
        out.mkdir(parents=True, exist_ok=True)
        ase.io.write(out / "test.extxyz", [frames[i] for i in order[:n_test]])
        ase.io.write(out / "train.extxyz", [frames[i] for i in order[n_test:]])
        metrics = train_from_files(
            out / "train.extxyz", out, out / "test.extxyz", config=config, seed=args.seed
        )
    elif args.dataset in ("water", "cu2s"):
        folder = "H2O_RPBE-D3" if args.dataset == "water" else "Cu2S_PBE"
        if args.dataset == "water":
            config.data.length_unit, config.data.energy_unit = "bohr", "hartree"
        metrics = train_from_files(
            DATA / "n2p2" / folder / "train.input.data", out, config=config, seed=args.seed
        )
    else:
        from mlpot.training.descriptor_net import DescriptorTrainingConfig, train_sample_nnp

        _, metrics = train_sample_nnp(
            DATA / "sample_NNP" / "desc.npy",
            DATA / "sample_NNP" / "label.npy",
            out,
            DescriptorTrainingConfig(seed=args.seed),
        )
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {
        "dataset": args.dataset,
        "seed": args.seed,
        "out": str(out),
        "wall_time_s": round(wall, 1),
        "peak_rss_mb": round(peak_mb),
        "metrics": metrics,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
