"""Training on precomputed descriptors: the sample_NNP path.

sample_NNP (eminamitani/sample_NNP) stores DScribe ACSF features of equal-size structures,
``desc.npy`` (S, A, F), and the energy per atom of each structure, ``label.npy`` (S,). No
coordinates survive, but the network maps features, so we train the element's MLP directly on
the arrays (energy per atom = mean over atoms of the atomic energy) and place it into an HDNNP
whose descriptor is ``ACSF.from_dscribe(species, r_cut, g2_params, g4_params)`` with the same
parameters. The result runs on-the-fly (ASE calculator, MD) like any trained model.

Defaults are sample_NNP's descriptor (Si, r_cut 7 Å, G1 + 6 G2 + 4 G4, see
:data:`SAMPLE_NNP_G2` and :data:`SAMPLE_NNP_G4`), standardised features, a 2×32 tanh network,
Adam with a cosine schedule and the best model on a validation split.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from mlpot.errors import DataError, ParameterError

SAMPLE_NNP_G2 = [[0.025, 0.0], [0.05, 0.0], [0.1, 0.0], [0.2, 0.0], [0.4, 0.0], [0.8, 0.0]]
SAMPLE_NNP_G4 = [[0.1, 1, 1], [0.1, 4, 1], [0.1, 1, -1], [0.1, 4, -1]]


@dataclass
class DescriptorTrainingConfig:
    """Settings of :func:`train_on_descriptors` (eV/atom for energies)."""

    species: str = "Si"
    r_cut: float = 7.0
    g2_params: list = field(default_factory=lambda: [list(p) for p in SAMPLE_NNP_G2])
    g4_params: list = field(default_factory=lambda: [list(p) for p in SAMPLE_NNP_G4])
    hidden_layers: list[int] = field(default_factory=lambda: [32, 32])
    activation: str = "tanh"
    test_fraction: float = 0.2
    validation_fraction: float = 0.1
    epochs: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-3
    min_lr_factor: float = 0.003
    warmup_epochs: int = 5
    seed: int = 0
    time_limit_s: float | None = None


def _split(n: int, test_fraction: float, validation_fraction: float, seed: int):
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    rest = order[n_test:]
    n_val = int(round(validation_fraction * len(rest)))
    return np.sort(rest[n_val:]), np.sort(rest[:n_val]), np.sort(order[:n_test])


def build_sample_nnp_hdnnp(config: DescriptorTrainingConfig, seed: int = 0):
    """The untrained HDNNP whose descriptor is DScribe's ACSF with the config's parameters."""
    from mlpot.descriptors.acsf import ACSF
    from mlpot.models.hdnnp import HDNNP

    if config.species not in atomic_numbers:
        raise ParameterError(f"species {config.species!r} is not a chemical symbol")
    descriptor = ACSF.from_dscribe(
        [config.species],
        config.r_cut,
        g2_params=config.g2_params or None,
        g4_params=config.g4_params or None,
    )
    return HDNNP(
        descriptor,
        hidden_layers=config.hidden_layers,
        activation=config.activation,
        scaling="standard",
        seed=seed,
    )


def train_on_descriptors(
    descriptors: np.ndarray,
    energy_per_atom: np.ndarray,
    config: DescriptorTrainingConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    log=print,
) -> tuple[Any, dict[str, Any]]:
    """Train an HDNNP's network on precomputed features (S, A, F) and energies per atom (S,).

    Returns (HDNNP, metrics). With ``out_dir`` writes model.pt, metrics.json, log.csv,
    parity.png and learning_curve.png there.
    """
    config = config or DescriptorTrainingConfig()
    t_start = time.perf_counter()
    descriptors = np.asarray(descriptors, dtype=np.float64)
    energy_per_atom = np.asarray(energy_per_atom, dtype=np.float64).reshape(-1)
    if descriptors.ndim != 3 or descriptors.shape[0] != energy_per_atom.shape[0]:
        raise DataError(
            f"descriptors must be (structures, atoms, features) with one energy per structure; "
            f"got {descriptors.shape} and {energy_per_atom.shape}"
        )
    torch.manual_seed(config.seed)
    potential = build_sample_nnp_hdnnp(config, seed=config.seed)
    z = atomic_numbers[config.species]
    n_features = potential.descriptor.n_features[z]
    if descriptors.shape[2] != n_features:
        raise DataError(
            f"the descriptors have {descriptors.shape[2]} features per atom but the ACSF with "
            f"species {config.species}, r_cut {config.r_cut}, g2 {config.g2_params}, "
            f"g4 {config.g4_params} has {n_features}; give the parameters the descriptors were "
            "computed with"
        )
    n = descriptors.shape[0]
    train_idx, val_idx, test_idx = _split(
        n, config.test_fraction, config.validation_fraction, config.seed
    )
    if len(train_idx) == 0:
        raise DataError(f"only {n} structures: nothing left to train on after the splits")

    net = potential.networks[chemical_symbols[z]]
    x_all = torch.as_tensor(descriptors)
    y_all = torch.as_tensor(energy_per_atom)
    # statistics of the training features and energies (as HDNNP.fit_statistics would)
    with torch.no_grad():
        g = x_all[train_idx].reshape(-1, n_features)
        sigma = g.std(0, unbiased=False)
        net.feature_mean.copy_(g.mean(0))
        net.feature_sigma.copy_(torch.where(sigma > 1e-12, sigma, torch.ones_like(sigma)))
        net.feature_min.copy_(g.min(0).values)
        net.feature_max.copy_(torch.maximum(g.max(0).values, g.min(0).values + 1e-12))
        y = y_all[train_idx]
        net.reference_energy.fill_(float(y.mean()))
        net.energy_shift.fill_(0.0)
        net.energy_scale.fill_(float(y.std()) if float(y.std()) > 1e-9 else 1.0)

    def predict(index) -> torch.Tensor:
        x = x_all[index]
        e = net(x.reshape(-1, n_features), potential.scaling, potential.scaling_range)
        return e.reshape(len(index), -1).mean(1)

    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    best = (math.inf, None, -1)
    t_loop = time.perf_counter()
    train_t = torch.as_tensor(train_idx)
    monitor_idx = val_idx if len(val_idx) else train_idx
    for epoch in range(config.epochs):
        if epoch < config.warmup_epochs:
            lr = config.learning_rate * (epoch + 1) / (config.warmup_epochs + 1)
        else:
            t = (epoch - config.warmup_epochs) / max(1, config.epochs - config.warmup_epochs)
            f = config.min_lr_factor
            lr = config.learning_rate * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * t)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        order = train_t[torch.randperm(len(train_t), generator=generator)]
        se = 0.0
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            err = predict(index) - y_all[index]
            loss = (err**2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            se += float((err.detach() ** 2).sum())
        with torch.no_grad():
            val_rmse = float(((predict(monitor_idx) - y_all[monitor_idx]) ** 2).mean().sqrt())
        row = {
            "epoch": epoch + 1,
            "train_energy_rmse": 1000 * math.sqrt(se / len(train_idx)),
            "val_energy_rmse": 1000 * val_rmse,
            "lr": lr,
            "elapsed_s": time.perf_counter() - t_loop,
        }
        history.append(row)
        if val_rmse < best[0]:
            best = (val_rmse, {k: v.clone() for k, v in net.state_dict().items()}, epoch + 1)
        if (epoch + 1) % max(1, config.epochs // 20) == 0 or epoch == 0:
            log(
                f"epoch {epoch + 1:5d}/{config.epochs}  train {row['train_energy_rmse']:7.3f}  "
                f"val {row['val_energy_rmse']:7.3f} meV/atom  lr {lr:.2e}  "
                f"{row['elapsed_s']:.0f} s"
            )
        if config.time_limit_s is not None and row["elapsed_s"] > config.time_limit_s:
            log(f"time limit {config.time_limit_s} s reached after {epoch + 1} epochs")
            break
    net.load_state_dict(best[1])
    potential.eval()

    metrics: dict[str, Any] = {}
    predictions = {}
    with torch.no_grad():
        for name, index in (("train", train_idx), ("validation", val_idx), ("test", test_idx)):
            if len(index) == 0:
                continue
            pred = predict(index).numpy()
            err = pred - energy_per_atom[index]
            metrics[name] = {
                "n_structures": int(len(index)),
                "energy_rmse_mev_per_atom": float(np.sqrt(np.mean(err**2)) * 1000),
                "energy_mae_mev_per_atom": float(np.mean(np.abs(err)) * 1000),
            }
            predictions[name] = (energy_per_atom[index], pred)
    metrics["wall_time_s"] = time.perf_counter() - t_start
    metrics["epochs"] = len(history)
    metrics["best_epoch"] = best[2]
    baseline = energy_per_atom[test_idx] - energy_per_atom[train_idx].mean()
    if len(test_idx):
        metrics["test_mean_predictor_rmse_mev_per_atom"] = float(
            np.sqrt(np.mean(baseline**2)) * 1000
        )
    if out_dir is not None:
        _write(out_dir, potential, metrics, history, predictions, config)
    log(
        "  ".join(
            f"{name} {m['energy_rmse_mev_per_atom']:.3f} meV/atom"
            for name, m in metrics.items()
            if isinstance(m, dict)
        )
    )
    return potential, metrics


def _write(out_dir, potential, metrics, history, predictions, config) -> None:
    from dataclasses import asdict

    from mlpot.training.metrics import Predictions
    from mlpot.training.plots import learning_curve, parity_plot
    from mlpot.training.trainer import write_json, write_log_csv

    out_dir = Path(out_dir)
    potential.save(
        out_dir / "model.pt",
        extra={"source": "precomputed descriptors", "config": asdict(config), "metrics": metrics},
    )
    write_json(out_dir / "metrics.json", metrics)
    write_log_csv(out_dir / "log.csv", history)
    parity_plot(
        {
            name: Predictions(
                n_atoms=np.ones(len(ref)),
                energy_ref=ref,
                energy_pred=pred,
                forces_ref=None,
                forces_pred=None,
                stress_ref=None,
                stress_pred=None,
            )
            for name, (ref, pred) in predictions.items()
        },
        out_dir / "parity.png",
    )
    learning_curve(history, out_dir / "learning_curve.png")


def train_sample_nnp(
    desc_path: str | os.PathLike,
    label_path: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    config: DescriptorTrainingConfig | None = None,
    log=print,
):
    """Load sample_NNP's desc.npy / label.npy and run :func:`train_on_descriptors`."""
    from mlpot.interop.sample_nnp import load_sample_nnp

    descriptors, labels = load_sample_nnp(desc_path, label_path)
    return train_on_descriptors(descriptors, labels, config=config, out_dir=out_dir, log=log)
