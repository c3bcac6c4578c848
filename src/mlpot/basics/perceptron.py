"""Perceptrons, logic gates, the perceptron learning rule and two-layer networks.

A perceptron with weights w and threshold θ outputs y = 1 if w·x > θ else 0 (``rule="strict"``,
the default) or y = 1 if w·x ≥ θ else 0 (``rule="inclusive"``). The two rules differ only when
w·x equals θ exactly, which matters for one textbook network (see :data:`GIVEN_NETWORK`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mlpot.errors import ParameterError

#: The four binary inputs, in truth-table order.
BINARY_INPUTS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (1, 0), (1, 1))

#: Reference truth tables (outputs for BINARY_INPUTS).
TRUTH_TABLES: dict[str, tuple[int, ...]] = {
    "AND": (0, 0, 0, 1),
    "OR": (0, 1, 1, 1),
    "NAND": (1, 1, 1, 0),
    "NOR": (1, 0, 0, 0),
    "XOR": (0, 1, 1, 0),
    "XNOR": (1, 0, 0, 1),
}

RULES = ("strict", "inclusive")


@dataclass(frozen=True)
class Perceptron:
    """y = step(w·x − θ): 1 if w·x > θ (strict rule) or w·x ≥ θ (inclusive rule), else 0."""

    weights: tuple[float, ...]
    threshold: float
    rule: str = "strict"

    def __post_init__(self):
        if self.rule not in RULES:
            raise ParameterError(f"perceptron rule must be one of {RULES}, got {self.rule!r}")
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        object.__setattr__(self, "threshold", float(self.threshold))

    def weighted_sum(self, x: Sequence[float]) -> float:
        """w·x (before comparison with θ)."""
        if len(x) != len(self.weights):
            raise ParameterError(f"perceptron has {len(self.weights)} inputs, got {len(x)}")
        return float(sum(w * xi for w, xi in zip(self.weights, x, strict=True)))

    def __call__(self, x: Sequence[float]) -> int:
        s = self.weighted_sum(x)
        fires = s > self.threshold if self.rule == "strict" else s >= self.threshold
        return int(fires)

    def with_rule(self, rule: str) -> Perceptron:
        return Perceptron(self.weights, self.threshold, rule)


#: The classic gates with the course's parameters.
GATES: dict[str, Perceptron] = {
    "AND": Perceptron((0.3, 0.6), 0.8),
    "OR": Perceptron((0.3, 0.6), 0.2),
    "NAND": Perceptron((-0.3, -0.2), -0.4),
}


@dataclass(frozen=True)
class TwoLayerNetwork:
    """Hidden perceptrons s1, s2, ... feeding one output perceptron."""

    hidden: tuple[Perceptron, ...]
    output: Perceptron

    def hidden_outputs(self, x: Sequence[float]) -> tuple[int, ...]:
        return tuple(p(x) for p in self.hidden)

    def __call__(self, x: Sequence[float]) -> int:
        return self.output(self.hidden_outputs(x))

    def with_rule(self, rule: str) -> TwoLayerNetwork:
        return TwoLayerNetwork(
            tuple(p.with_rule(rule) for p in self.hidden), self.output.with_rule(rule)
        )


#: The course's two-layer network: s1 w=(−0.5, −0.5) θ=0; s2 w=(0.5, 0.5) θ=0.8; output
#: w=(0.4, 0.6) θ=0.3. It is *not* XOR. With the inclusive rule (w·x ≥ θ) s1 fires only at
#: (0,0) (where w·x = 0 = θ) and the network computes XNOR, the complement of XOR. With the
#: strict rule (w·x > θ) s1 never fires on binary inputs and the network computes AND.
GIVEN_NETWORK = TwoLayerNetwork(
    hidden=(Perceptron((-0.5, -0.5), 0.0), Perceptron((0.5, 0.5), 0.8)),
    output=Perceptron((0.4, 0.6), 0.3),
)

#: XOR = AND(NAND(x), OR(x)), from the gates above.
XOR_NETWORK = TwoLayerNetwork(hidden=(GATES["NAND"], GATES["OR"]), output=GATES["AND"])


def truth_table(fn: Callable[[Sequence[float]], int]) -> tuple[int, ...]:
    """Outputs of ``fn`` for the four binary inputs (BINARY_INPUTS order)."""
    return tuple(int(fn(x)) for x in BINARY_INPUTS)


def gate_name(outputs: Sequence[int]) -> str:
    """The name of the two-input Boolean function with these outputs, or '?'."""
    for name, table in TRUTH_TABLES.items():
        if tuple(outputs) == table:
            return name
    return "?"


def format_gate_table(name: str, p: Perceptron) -> str:
    """Truth table of one perceptron with its weighted sums w·x."""
    w = ", ".join(f"{v:g}" for v in p.weights)
    op = ">" if p.rule == "strict" else ">="
    lines = [
        f"{name}: w = ({w}), theta = {p.threshold:g}, y = 1 if w.x {op} theta",
        "  x1 x2 |  w.x  | y",
    ]
    for x in BINARY_INPUTS:
        lines.append(f"   {x[0]}  {x[1]} | {p.weighted_sum(x):+.2f} | {p(x)}")
    return "\n".join(lines)


def format_network_table(name: str, net: TwoLayerNetwork) -> str:
    """Truth table of a two-layer network with the hidden outputs s1, s2, ..."""
    n = len(net.hidden)
    head = " ".join(f"s{i + 1}" for i in range(n))
    lines = [f"{name} (rule: {net.output.rule})", f"  x1 x2 | {head} | y"]
    for x in BINARY_INPUTS:
        s = " ".join(f"{v:2d}" for v in net.hidden_outputs(x))
        lines.append(f"   {x[0]}  {x[1]} | {s} | {net(x)}")
    lines.append(f"  -> computes {gate_name(truth_table(net))}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
@dataclass
class PerceptronTraining:
    """Result of the perceptron learning rule: final perceptron and misclassifications per epoch."""

    perceptron: Perceptron
    errors_per_epoch: list[int]

    @property
    def converged(self) -> bool:
        return bool(self.errors_per_epoch) and self.errors_per_epoch[-1] == 0


def train_perceptron(
    targets: Sequence[int],
    epochs: int = 100,
    learning_rate: float = 0.1,
    weights: Sequence[float] = (0.0, 0.0),
    threshold: float = 0.0,
) -> PerceptronTraining:
    """Rosenblatt's rule on the four binary inputs: w ← w + η(t − y)x, θ ← θ − η(t − y).

    Inputs are visited in BINARY_INPUTS order; training stops after the first epoch with no
    error (or after ``epochs`` epochs).
    """
    if len(targets) != len(BINARY_INPUTS):
        raise ParameterError(f"need 4 targets (one per binary input), got {len(targets)}")
    if epochs < 1 or not learning_rate > 0:
        raise ParameterError("epochs must be >= 1 and learning_rate > 0")
    w = np.array(weights, dtype=float)
    theta = float(threshold)
    errors: list[int] = []
    for _ in range(epochs):
        n_wrong = 0
        for x, t in zip(BINARY_INPUTS, targets, strict=True):
            y = int(np.dot(w, x) > theta)
            if y != t:
                n_wrong += 1
                w += learning_rate * (t - y) * np.asarray(x, dtype=float)
                theta -= learning_rate * (t - y)
        errors.append(n_wrong)
        if n_wrong == 0:
            break
    return PerceptronTraining(Perceptron(tuple(w), theta), errors)


def count_separating_parameters(
    targets: Sequence[int], limit: float = 1.0, step: float = 0.02
) -> tuple[int, int]:
    """How many (w1, w2, θ) on a grid [−limit, limit]³ make one perceptron reproduce ``targets``.

    Returns (number that separate, number tried). Zero for XOR and XNOR, many for AND/OR/NAND.
    """
    values = np.arange(-limit, limit + step / 2, step)
    w1, w2, theta = np.meshgrid(values, values, values, indexing="ij")
    ok = np.ones(w1.shape, dtype=bool)
    for (x1, x2), t in zip(BINARY_INPUTS, targets, strict=True):
        fires = w1 * x1 + w2 * x2 > theta
        ok &= fires == bool(t)
    return int(ok.sum()), int(ok.size)


def linearly_separable(targets: Sequence[int]) -> bool:
    """Exact test (a linear programme): is there (w, θ) with w·x ≥ θ + 1 for t = 1 and w·x ≤ θ − 1
    for t = 0? (Any strict separator can be rescaled to margin 1, so this is exact.)"""
    from scipy.optimize import linprog

    rows, rhs = [], []
    for (x1, x2), t in zip(BINARY_INPUTS, targets, strict=True):
        sign = -1.0 if t else 1.0  # t=1: −(w·x − θ) ≤ −1 ; t=0: (w·x − θ) ≤ −1
        rows.append([sign * x1, sign * x2, -sign])
        rhs.append(-1.0)
    res = linprog(np.zeros(3), A_ub=rows, b_ub=rhs, bounds=[(None, None)] * 3, method="highs")
    return res.status == 0
