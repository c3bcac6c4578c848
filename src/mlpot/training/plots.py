"""Parity plots and learning curves (matplotlib, Agg backend), written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlpot._atomic import atomic_output
from mlpot.training.metrics import Predictions


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save_atomic(fig, path: Path) -> None:
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")


def parity_plot(predictions: dict[str, Predictions], path: str | Path) -> None:
    """Energy-per-atom and force-component parity plots, one colour per data set."""
    plt = _figure()
    with_forces = any(
        p.forces_ref is not None and p.forces_pred is not None for p in predictions.values()
    )
    fig, axes = plt.subplots(1, 2 if with_forces else 1, figsize=(10 if with_forces else 5, 4.6))
    axes = np.atleast_1d(axes)
    for name, p in predictions.items():
        if p.energy_ref is not None:
            axes[0].scatter(
                p.energy_ref / p.n_atoms, p.energy_pred / p.n_atoms, s=8, alpha=0.6, label=name
            )
        if with_forces and p.forces_ref is not None and p.forces_pred is not None:
            axes[1].scatter(p.forces_ref.ravel(), p.forces_pred.ravel(), s=2, alpha=0.3, label=name)
    titles = [("energy, eV/atom", axes[0])] + (
        [("force component, eV/Å", axes[1])] if with_forces else []
    )
    for title, ax in titles:
        lo, hi = ax.get_xlim()
        lo2, hi2 = ax.get_ylim()
        lo, hi = min(lo, lo2), max(hi, hi2)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"reference {title}")
        ax.set_ylabel(f"predicted {title}")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    _save_atomic(fig, Path(path))
    plt.close(fig)


def learning_curve(history: Sequence[dict], path: str | Path) -> None:
    """Train/validation energy and force RMSE against epoch (log scale)."""
    plt = _figure()
    epochs = [row["epoch"] for row in history]
    has_forces = any(np.isfinite(row.get("train_force_rmse", np.nan)) for row in history)
    fig, axes = plt.subplots(1, 2 if has_forces else 1, figsize=(10 if has_forces else 5, 4))
    axes = np.atleast_1d(axes)
    for key, label in [("train_energy_rmse", "train"), ("val_energy_rmse", "validation")]:
        values = [row.get(key, np.nan) for row in history]
        if np.isfinite(values).any():
            axes[0].plot(epochs, values, label=label)
    axes[0].set_ylabel("energy RMSE, meV/atom")
    if has_forces:
        for key, label in [("train_force_rmse", "train"), ("val_force_rmse", "validation")]:
            values = [row.get(key, np.nan) for row in history]
            if np.isfinite(values).any():
                axes[1].plot(epochs, values, label=label)
        axes[1].set_ylabel("force RMSE, eV/Å")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    _save_atomic(fig, Path(path))
    plt.close(fig)
