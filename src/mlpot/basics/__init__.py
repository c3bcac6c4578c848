"""Neural-network basics for newcomers: perceptron gates, XOR, backpropagation, a first potential.

* :mod:`mlpot.basics.perceptron` — perceptrons, logic gates, the perceptron rule, two layers.
* :mod:`mlpot.basics.mlp` — an MLP with hand-written backpropagation in NumPy.
* :mod:`mlpot.basics.dimer` — a Lennard-Jones dimer fit; why potentials need descriptors.
* :mod:`mlpot.basics.demos` — the demonstrations behind ``mlpot basics``.
"""

from mlpot.basics.demos import Demo, dimer_demo, gates_demo, mlp_demo, xor_demo
from mlpot.basics.dimer import (
    fit_lj_dimer,
    invariance_demo,
    lennard_jones,
    symmetry_functions,
    train_trimer_model,
)
from mlpot.basics.mlp import MLP, autograd_gradients, fit_1d, fit_sine, train_xor
from mlpot.basics.perceptron import (
    GATES,
    GIVEN_NETWORK,
    XOR_NETWORK,
    Perceptron,
    TwoLayerNetwork,
    count_separating_parameters,
    linearly_separable,
    train_perceptron,
    truth_table,
)

__all__ = [
    "GATES",
    "GIVEN_NETWORK",
    "MLP",
    "XOR_NETWORK",
    "Demo",
    "Perceptron",
    "TwoLayerNetwork",
    "autograd_gradients",
    "count_separating_parameters",
    "dimer_demo",
    "fit_1d",
    "fit_lj_dimer",
    "fit_sine",
    "gates_demo",
    "invariance_demo",
    "lennard_jones",
    "linearly_separable",
    "mlp_demo",
    "symmetry_functions",
    "train_perceptron",
    "train_trimer_model",
    "train_xor",
    "truth_table",
    "xor_demo",
]
