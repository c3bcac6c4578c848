"""A multilayer perceptron with backpropagation written out by hand in NumPy.

Layers: a_0 = x; z_l = a_{l−1} W_l + b_l; a_l = φ(z_l) (hidden activation φ; the last layer uses
the output activation). Loss L = (1/N) Σ_n ½ ‖y_n − t_n‖² over N samples. Backpropagation:
δ_L = ∂L/∂z_L = (y − t)/N · φ_out'(z_L); ∂L/∂W_l = a_{l−1}ᵀ δ_l; ∂L/∂b_l = Σ_n δ_l;
δ_{l−1} = (δ_l W_lᵀ) · φ'(z_{l−1}). Gradient descent: w ← w − η ∂L/∂w.
:func:`autograd_gradients` recomputes the same gradients with PyTorch autograd as a check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlpot.errors import ParameterError


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^−z), computed stably as ½(1 + tanh(z/2))."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0)


#: name -> (φ(z), φ'(z, a)) with a = φ(z) (cheap derivatives: σ' = a(1 − a), tanh' = 1 − a²);
#: φ'(0) of ReLU is taken as 0, as in PyTorch.
ACTIVATIONS = {
    "step": (lambda z: (z > 0).astype(float), lambda z, a: np.zeros_like(z)),
    "sigmoid": (sigmoid, lambda z, a: a * (1.0 - a)),
    "tanh": (np.tanh, lambda z, a: 1.0 - a * a),
    "relu": (relu, lambda z, a: (z > 0).astype(float)),
    "identity": (lambda z: z, lambda z, a: np.ones_like(z)),
}


def _check_activation(name: str) -> None:
    if name not in ACTIVATIONS or name == "step":
        usable = [a for a in ACTIVATIONS if a != "step"]
        raise ParameterError(f"unknown or non-differentiable activation {name!r}; use {usable}")


@dataclass
class ForwardCache:
    """Inputs a_{l−1}, pre-activations z_l and outputs a_l of every layer (for backward)."""

    inputs: list[np.ndarray]
    preactivations: list[np.ndarray]
    outputs: list[np.ndarray]


class MLP:
    """Fully connected network; weights[l] has shape (n_in, n_out), biases[l] (n_out,).

    Args:
        sizes: layer widths, e.g. (2, 4, 1).
        hidden_activation, output_activation: names in :data:`ACTIVATIONS`.
        seed: NumPy seed of the initial weights (normal, std 1/√n_in; biases zero).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        hidden_activation: str = "tanh",
        output_activation: str = "identity",
        seed: int = 0,
        weight_scale: float = 1.0,
    ):
        sizes = [int(n) for n in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ParameterError(f"an MLP needs at least two positive layer sizes, got {sizes}")
        _check_activation(hidden_activation)
        _check_activation(output_activation)
        rng = np.random.default_rng(seed)
        self.sizes = sizes
        self.hidden_activation = hidden_activation
        self.output_activation = output_activation
        self.weights = [
            rng.normal(0.0, weight_scale / np.sqrt(n_in), size=(n_in, n_out))
            for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
        ]
        self.biases = [np.zeros(n_out) for n_out in sizes[1:]]

    def parameters(self) -> list[np.ndarray]:
        """[W_1, b_1, W_2, b_2, ...] (the arrays themselves, not copies)."""
        return [p for wb in zip(self.weights, self.biases, strict=True) for p in wb]

    def _activation(self, layer: int) -> str:
        last = layer == len(self.weights) - 1
        return self.output_activation if last else self.hidden_activation

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, ForwardCache]:
        """Outputs (N, n_out) for inputs (N, n_in), and the cache for :meth:`backward`."""
        a = np.asarray(x, dtype=float)
        if a.ndim != 2 or a.shape[1] != self.sizes[0]:
            raise ParameterError(f"inputs must have shape (N, {self.sizes[0]}), got {a.shape}")
        cache = ForwardCache([], [], [])
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            z = a @ w + b
            cache.inputs.append(a)
            cache.preactivations.append(z)
            a = ACTIVATIONS[self._activation(layer)][0](z)
            cache.outputs.append(a)
        return a, cache

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[0]

    def backward(self, cache: ForwardCache, grad_output: np.ndarray) -> list[np.ndarray]:
        """∂L/∂[W_1, b_1, ...] given ∂L/∂y (N, n_out), by the chain rule layer by layer."""
        grads: list[np.ndarray] = []
        last = len(self.weights) - 1
        dphi = ACTIVATIONS[self._activation(last)][1]
        delta = grad_output * dphi(cache.preactivations[last], cache.outputs[last])
        for layer in reversed(range(len(self.weights))):
            grads = [cache.inputs[layer].T @ delta, delta.sum(axis=0)] + grads
            if layer > 0:
                dphi = ACTIVATIONS[self._activation(layer - 1)][1]
                delta = (delta @ self.weights[layer].T) * dphi(
                    cache.preactivations[layer - 1], cache.outputs[layer - 1]
                )
        return grads

    def loss_and_gradients(
        self, x: np.ndarray, targets: np.ndarray
    ) -> tuple[float, list[np.ndarray]]:
        """L = (1/N) Σ ½‖y − t‖² and its gradients (same order as :meth:`parameters`)."""
        y, cache = self.forward(x)
        t = np.asarray(targets, dtype=float).reshape(y.shape)
        n = y.shape[0]
        loss = 0.5 * float(np.sum((y - t) ** 2)) / n
        return loss, self.backward(cache, (y - t) / n)

    def step(self, grads: list[np.ndarray], learning_rate: float) -> None:
        """Gradient descent: w ← w − η ∂L/∂w, in place."""
        for p, g in zip(self.parameters(), grads, strict=True):
            p -= learning_rate * g

    def train(
        self, x: np.ndarray, targets: np.ndarray, learning_rate: float, epochs: int
    ) -> np.ndarray:
        """Full-batch gradient descent; returns the loss before each step (epochs,)."""
        if epochs < 1 or not learning_rate > 0:
            raise ParameterError("epochs must be >= 1 and learning_rate > 0")
        losses = np.empty(epochs)
        for epoch in range(epochs):
            losses[epoch], grads = self.loss_and_gradients(x, targets)
            self.step(grads, learning_rate)
        return losses


def autograd_gradients(
    mlp: MLP, x: np.ndarray, targets: np.ndarray
) -> tuple[float, list[np.ndarray]]:
    """The same loss and gradients from PyTorch autograd (float64), on copies of the weights."""
    import torch

    torch_act = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "identity": lambda z: z,
    }
    params = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in mlp.parameters()]
    a = torch.as_tensor(np.asarray(x, dtype=float))
    n_layers = len(mlp.weights)
    for layer in range(n_layers):
        w, b = params[2 * layer], params[2 * layer + 1]
        name = mlp.output_activation if layer == n_layers - 1 else mlp.hidden_activation
        a = torch_act[name](a @ w + b)
    t = torch.as_tensor(np.asarray(targets, dtype=float)).reshape(a.shape)
    loss = 0.5 * ((a - t) ** 2).sum() / a.shape[0]
    loss.backward()
    return float(loss.detach()), [p.grad.numpy().copy() for p in params]


# --------------------------------------------------------------------------------------------
XOR_INPUTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_TARGETS = np.array([[0.0], [1.0], [1.0], [0.0]])


def train_xor(
    hidden: int = 4, epochs: int = 5000, learning_rate: float = 2.0, seed: int = 0
) -> tuple[MLP, np.ndarray]:
    """A 2–hidden–1 sigmoid network trained on XOR by full-batch gradient descent."""
    mlp = MLP((2, hidden, 1), "sigmoid", "sigmoid", seed=seed, weight_scale=2.0)
    losses = mlp.train(XOR_INPUTS, XOR_TARGETS, learning_rate, epochs)
    return mlp, losses


@dataclass
class FitResult:
    """A 1D fit: the model, the loss curve, and RMSE on training and held-out points."""

    mlp: MLP
    losses: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    rmse_train: float
    rmse_test: float
    x_scale: tuple[float, float]  # input = (x − shift) / scale
    y_scale: tuple[float, float]  # output = shift + scale · net

    def predict(self, x: np.ndarray) -> np.ndarray:
        xs = (np.asarray(x, dtype=float).reshape(-1, 1) - self.x_scale[0]) / self.x_scale[1]
        return self.y_scale[0] + self.y_scale[1] * self.mlp(xs).ravel()


def fit_1d(
    fn,
    x_train: np.ndarray,
    x_test: np.ndarray,
    hidden: int = 16,
    activation: str = "tanh",
    epochs: int = 20000,
    learning_rate: float = 0.1,
    seed: int = 0,
) -> FitResult:
    """One-hidden-layer network fitted to y = fn(x) by gradient descent (inputs and outputs
    standardised); RMSE in the units of fn."""
    x_train = np.asarray(x_train, dtype=float)
    x_test = np.asarray(x_test, dtype=float)
    y_train, y_test = fn(x_train), fn(x_test)
    x_shift, x_scale = float(x_train.mean()), float(x_train.std())
    y_shift, y_scale = float(y_train.mean()), float(y_train.std())
    mlp = MLP((1, hidden, 1), activation, "identity", seed=seed)
    xs = ((x_train - x_shift) / x_scale).reshape(-1, 1)
    ys = ((y_train - y_shift) / y_scale).reshape(-1, 1)
    losses = mlp.train(xs, ys, learning_rate, epochs)
    result = FitResult(
        mlp,
        losses,
        x_train,
        y_train,
        x_test,
        y_test,
        0.0,
        0.0,
        (x_shift, x_scale),
        (y_shift, y_scale),
    )
    result.rmse_train = float(np.sqrt(np.mean((result.predict(x_train) - y_train) ** 2)))
    result.rmse_test = float(np.sqrt(np.mean((result.predict(x_test) - y_test) ** 2)))
    return result


def fit_sine(epochs: int = 20000, hidden: int = 16, seed: int = 0) -> FitResult:
    """sin(x) on [−π, π]: 41 training points, the 40 midpoints held out."""
    x_train = np.linspace(-np.pi, np.pi, 41)
    x_test = 0.5 * (x_train[1:] + x_train[:-1])
    return fit_1d(np.sin, x_train, x_test, hidden=hidden, epochs=epochs, seed=seed)
