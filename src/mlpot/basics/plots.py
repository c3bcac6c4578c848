"""PNG figures of the basics tutorial (matplotlib Agg backend), written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from mlpot.errors import MlpotError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG through a temporary file in the same folder + os.replace; close it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    except OSError as exc:
        _pyplot().close(fig)
        raise MlpotError(
            f"cannot write {path}: {exc.strerror or exc}; choose another folder with --out"
        ) from exc
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _pyplot().close(fig)
    return path


def plot_gates(gates: dict, path: str | Path) -> Path:
    """The four inputs and each gate's decision line w·x = θ."""
    from mlpot.basics.perceptron import BINARY_INPUTS

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(gates), figsize=(3.6 * len(gates), 3.6))
    xs = np.linspace(-0.5, 1.5, 50)
    for ax, (name, p) in zip(np.atleast_1d(axes), gates.items(), strict=True):
        for x in BINARY_INPUTS:
            y = p(x)
            ax.scatter(*x, s=120, c="tab:red" if y else "white", edgecolors="k", zorder=3)
        w1, w2 = p.weights
        ax.plot(xs, (p.threshold - w1 * xs) / w2, "k--", lw=1)
        ax.set(
            xlim=(-0.5, 1.5),
            ylim=(-0.5, 1.5),
            xlabel="x1",
            ylabel="x2",
            title=f"{name}: {w1:g}x1 + {w2:g}x2 = {p.threshold:g}",
        )
    fig.tight_layout()
    return save_figure(fig, path)


def plot_errors_per_epoch(runs: dict[str, list[int]], path: str | Path) -> Path:
    """Misclassified inputs per epoch of the perceptron learning rule."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, errors in runs.items():
        ax.plot(np.arange(1, len(errors) + 1), errors, marker=".", label=name)
    ax.set(
        xscale="log",
        xlabel="epoch",
        ylabel="errors in the epoch (of 4)",
        ylim=(-0.2, 4.2),
        title="perceptron rule: AND/OR converge, XOR never does",
    )
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_activations(path: str | Path) -> Path:
    """Step, sigmoid, tanh and ReLU."""
    from mlpot.basics.mlp import ACTIVATIONS

    plt = _pyplot()
    z = np.linspace(-4, 4, 401)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name in ("step", "sigmoid", "tanh", "relu"):
        ax.plot(z, ACTIVATIONS[name][0](z), label=name)
    ax.set(xlabel="z", ylabel="phi(z)", ylim=(-1.2, 2.2), title="activation functions")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_loss(curves: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """Loss against epoch (log scale)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, losses in curves.items():
        ax.plot(np.arange(1, len(losses) + 1), losses, label=name)
    ax.set(xscale="log", yscale="log", xlabel="epoch", ylabel="loss", title=title)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


def plot_fit(
    fit,
    fn,
    path: str | Path,
    xlabel: str,
    ylabel: str,
    title: str = "",
    ylim: tuple[float, float] | None = None,
) -> Path:
    """Reference curve, training points, held-out points and the network's prediction."""
    plt = _pyplot()
    x = np.linspace(fit.x_train.min(), fit.x_train.max(), 500)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(x, fn(x), "k-", lw=1, label="exact")
    ax.plot(x, fit.predict(x), "tab:red", lw=1.5, ls="--", label="network")
    ax.scatter(fit.x_train, fit.y_train, s=12, label="training points")
    ax.scatter(fit.x_test, fit.y_test, s=12, marker="x", label="held out")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if ylim:
        ax.set_ylim(*ylim)
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)
