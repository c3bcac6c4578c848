"""The four tutorial demonstrations behind ``mlpot basics gates|xor|mlp|dimer``.

Each returns the text it prints and writes its PNG figures into ``out_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlpot.basics import dimer, mlp, perceptron, plots


@dataclass
class Demo:
    """Printed text, written files and the numbers behind them."""

    text: str
    files: list[Path] = field(default_factory=list)
    results: dict = field(default_factory=dict)


def gates_demo(out_dir: str | Path) -> Demo:
    """Truth tables with weighted sums of AND/OR/NAND; the perceptron rule learning AND and OR."""
    out = Path(out_dir)
    parts = ["== Perceptron gates: y = 1 if w.x > theta else 0 =="]
    for name, p in perceptron.GATES.items():
        parts.append(perceptron.format_gate_table(name, p))
    parts.append(
        "== Perceptron learning rule: w <- w + eta (t - y) x, theta <- theta - eta (t - y)"
        " (eta = 0.1, start w = 0, theta = 0) =="
    )
    runs = {}
    for name in ("AND", "OR", "NAND"):
        run = perceptron.train_perceptron(perceptron.TRUTH_TABLES[name], epochs=100)
        runs[name] = run
        w = ", ".join(f"{v:.2f}" for v in run.perceptron.weights)
        parts.append(
            f"{name}: errors per epoch {run.errors_per_epoch} -> converged after "
            f"{len(run.errors_per_epoch)} epochs, w = ({w}), "
            f"theta = {run.perceptron.threshold:.2f}, "
            f"truth table {perceptron.truth_table(run.perceptron)}"
        )
    files = [plots.plot_gates(perceptron.GATES, out / "gates.png")]
    return Demo("\n".join(parts), files, {"runs": runs})


def xor_demo(out_dir: str | Path, epochs: int = 1000) -> Demo:
    """XOR defeats one perceptron (the rule never converges; not linearly separable); two layers
    do it."""
    out = Path(out_dir)
    xor = perceptron.TRUTH_TABLES["XOR"]
    run = perceptron.train_perceptron(xor, epochs=epochs)
    parts = [
        "== One perceptron cannot compute XOR ==",
        f"Perceptron rule on XOR for {epochs} epochs: errors per epoch min "
        f"{min(run.errors_per_epoch)}, max {max(run.errors_per_epoch)}, last 8 "
        f"{run.errors_per_epoch[-8:]} -> never 0 (no convergence)",
    ]
    for name in ("AND", "OR", "NAND", "XOR", "XNOR"):
        n_ok, n_tried = perceptron.count_separating_parameters(perceptron.TRUTH_TABLES[name])
        separable = perceptron.linearly_separable(perceptron.TRUTH_TABLES[name])
        parts.append(
            f"  {name:<4}: (w1, w2, theta) on a 0.02 grid in [-1, 1]^3 that work: {n_ok:6d} of "
            f"{n_tried}; linearly separable (exact LP): {separable}"
        )
    parts.append(
        "== The given two-layer network: s1 w=(-0.5,-0.5) theta=0; s2 w=(0.5,0.5) "
        "theta=0.8; out w=(0.4,0.6) theta=0.3 =="
    )
    given_strict = perceptron.GIVEN_NETWORK
    given_incl = perceptron.GIVEN_NETWORK.with_rule("inclusive")
    parts.append(
        perceptron.format_network_table("given network, y = 1 if w.x >= theta", given_incl)
    )
    parts.append(
        "NOTE: this network outputs 1 for (0,0) and (1,1): it computes XNOR, the complement of "
        "XOR, not XOR.\nIt needs the rule w.x >= theta: s1 fires at (0,0) only because "
        "w.x = 0 = theta there. With the strict rule w.x > theta, s1 never fires and the "
        "network computes AND:"
    )
    parts.append(
        perceptron.format_network_table("given network, y = 1 if w.x > theta", given_strict)
    )
    parts.append("== A two-layer XOR: XOR(x) = AND(NAND(x), OR(x)), s1 = NAND, s2 = OR ==")
    parts.append(perceptron.format_network_table("XOR network", perceptron.XOR_NETWORK))
    runs = {
        name: perceptron.train_perceptron(perceptron.TRUTH_TABLES[name], epochs=epochs)
        for name in ("AND", "OR")
    }
    runs["XOR"] = run
    files = [
        plots.plot_errors_per_epoch(
            {k: v.errors_per_epoch for k, v in runs.items()}, out / "perceptron_errors.png"
        )
    ]
    return Demo("\n".join(parts), files, {"xor_run": run})


def mlp_demo(out_dir: str | Path) -> Demo:
    """Backpropagation in NumPy on XOR (checked against autograd) and a sin(x) fit."""
    out = Path(out_dir)
    parts = ["== From steps to gradients: sigmoid, tanh, ReLU replace the step =="]
    check = mlp.MLP((2, 3, 1), "sigmoid", "sigmoid", seed=1)
    loss, grads = check.loss_and_gradients(mlp.XOR_INPUTS, mlp.XOR_TARGETS)
    loss_t, grads_t = mlp.autograd_gradients(check, mlp.XOR_INPUTS, mlp.XOR_TARGETS)
    names = [f"{k}{i + 1}" for i in range(len(check.weights)) for k in ("W", "b")]
    parts.append("Hand-written backprop vs PyTorch autograd (float64), 2-3-1 sigmoid network:")
    parts.append(f"  loss {loss:.12f} vs {loss_t:.12f}")
    for name, g, gt in zip(names, grads, grads_t, strict=True):
        parts.append(f"  dL/d{name}: max |difference| {np.max(np.abs(g - gt)):.1e}")
    net, xor_losses = mlp.train_xor()
    outputs = net(mlp.XOR_INPUTS).ravel()
    parts.append("XOR learned by a 2-4-1 sigmoid MLP (5000 epochs of gradient descent, eta = 2):")
    parts.append("  x1 x2 | output | target")
    for x, y, t in zip(mlp.XOR_INPUTS, outputs, mlp.XOR_TARGETS.ravel(), strict=True):
        parts.append(f"   {x[0]:.0f}  {x[1]:.0f} | {y:.4f} | {t:.0f}")
    parts.append(f"  loss {xor_losses[0]:.4f} -> {xor_losses[-1]:.2e}")
    sine = mlp.fit_sine()
    parts.append(
        "sin(x) on [-pi, pi], 1-16-1 tanh network, 20000 epochs: "
        f"RMSE train {sine.rmse_train:.4f}, "
        f"held out {sine.rmse_test:.4f}"
    )
    files = [
        plots.plot_activations(out / "activations.png"),
        plots.plot_loss(
            {"XOR": xor_losses, "sin": sine.losses},
            out / "mlp_loss.png",
            "gradient descent: loss per epoch",
        ),
        plots.plot_fit(sine, np.sin, out / "sin_fit.png", "x", "sin(x)", "1-16-1 tanh fit"),
    ]
    return Demo("\n".join(parts), files, {"xor_net": net, "xor_losses": xor_losses, "sine": sine})


def dimer_demo(out_dir: str | Path) -> Demo:
    """An MLP fitted to the Lennard-Jones dimer; raw coordinates vs symmetry functions on Ar3."""
    out = Path(out_dir)
    eps, sigma = dimer.LJ_EPSILON, dimer.LJ_SIGMA
    fit = dimer.fit_lj_dimer()
    parts = [
        f"== Lennard-Jones dimer, epsilon = {eps} eV, sigma = {sigma} A, r in [3.2, 8.0] A ==",
        f"1-16-1 tanh network, 49 training distances, 48 held out: RMSE train "
        f"{fit.rmse_train * 1000:.4f} meV, held out {fit.rmse_test * 1000:.4f} meV "
        f"({fit.rmse_test / eps:.4f} epsilon)",
        "== Why descriptors: two models of Ar3 (LJ energies, 200 training clusters) ==",
    ]
    report, models = dimer.invariance_demo()
    parts.append(report.format())
    parts.append(
        "The raw-coordinate model changes its energy under a rotation and under a swap of "
        "two identical atoms; the symmetry-function model cannot."
    )
    files = [
        plots.plot_fit(
            fit,
            dimer.lennard_jones,
            out / "lj_fit.png",
            "r (A)",
            "E (eV)",
            "LJ dimer fit",
            ylim=(-1.5 * eps, 3.0 * eps),
        ),
        plots.plot_loss(
            {
                "LJ dimer": fit.losses,
                "Ar3 raw": models["raw"].losses,
                "Ar3 descriptor": models["descriptor"].losses,
            },
            out / "dimer_loss.png",
            "gradient descent: loss per epoch",
        ),
    ]
    return Demo("\n".join(parts), files, {"fit": fit, "report": report, "models": models})
