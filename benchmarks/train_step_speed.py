"""Speed of one training step of the HDNNP on cached descriptors: compiled Jacobian contraction
against the PyTorch einsum path, in the same run.

    python benchmarks/train_step_speed.py [--structures 96] [--threads 1] [--repeats 5]

A step is what the trainer does per minibatch of 4 structures: networks, ∂E/∂G with a graph,
forces from the cached Jacobians, a loss on energies and forces, backward and an AdamW step.
Data: the first structures of ../shared/data/mlearn_Si/train.extxyz (default descriptor set).
Prints ms per step and µs per atom, best of ``--repeats`` passes over the structures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mlearn_Si" / "train.extxyz"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--structures", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mlpot.descriptors import _fused
    from mlpot.training.config import Config
    from mlpot.training.feature_cache import FeatureEngine
    from mlpot.training.workflow import build_model, read_data

    config = Config()
    frames = read_data(DATA, config)[: args.structures]
    potential = build_model(config.model, [14], 0)
    t0 = time.perf_counter()
    engine = FeatureEngine(potential, frames, torch.float32)
    setup = time.perf_counter() - t0
    potential.fit_statistics(frames, features=engine.features_per_structure())
    potential.to(torch.float32)
    optimizer = torch.optim.AdamW(potential.parameters(), 1e-3, weight_decay=0.01)
    batches = [list(range(i, min(i + 4, len(frames)))) for i in range(0, len(frames), 4)]
    atoms_per_batch = sum(len(a) for a in frames) / len(batches)

    def step(indices):
        out, batch = engine.run(indices, forces=True, stress=False, create_graph=True, train=True)
        energy = ((out["energy"] - batch.energy) / batch.n_atoms).pow(2).mean()
        loss = energy + (out["forces"] - batch.forces).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    print(
        f"{len(frames)} structures, {sum(len(a) for a in frames)} atoms, "
        f"{engine.n_features} features, set-up (descriptors + Jacobians) {setup:.1f} s, "
        f"{args.threads} thread(s)"
    )
    results = {}
    for label, enabled in (("compiled contraction", True), ("PyTorch einsum", False)):
        with _fused.fused_kernel_enabled(enabled):
            for indices in batches[:3]:
                step(indices)
            best = float("inf")
            for _ in range(args.repeats):
                t = time.perf_counter()
                for indices in batches:
                    step(indices)
                best = min(best, (time.perf_counter() - t) / len(batches))
        results[label] = best
        print(f"{label:22s} {1e3 * best:7.2f} ms/step  {1e6 * best / atoms_per_batch:7.1f} µs/atom")
    ratio = results["PyTorch einsum"] / results["compiled contraction"]
    print(f"speed-up {ratio:.2f}x")


if __name__ == "__main__":
    main()
