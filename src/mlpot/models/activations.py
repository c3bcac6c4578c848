"""Activation functions of the atomic networks, by name, including all of n2p2's.

Names and n2p2's one-letter codes (``global_activation_short`` in ``input.nn``):

============================  ====  ============================================
name                          n2p2  f(x)
============================  ====  ============================================
``linear``                    l     x
``tanh``                      t     tanh x
``sigmoid``                   s     1 / (1 + e^−x)
``softplus``                  p     ln(1 + e^x)
``relu``                      r     max(0, x)
``gaussian``                  g     exp(−x²/2)
``cos``                       c     cos x
``reverse_sigmoid``           S     1 − 1 / (1 + e^−x)
``negative_exp``              e     exp(−x)
``harmonic``                  h     x²
``silu``                      –     x / (1 + e^−x)
``shifted_softplus``          –     ln(1 + e^x) − ln 2
============================  ====  ============================================

n2p2's softplus and sigmoid switch to their asymptotes for |x| > 35; so does this module
(the difference to the exact function is below 1e-15 there).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mlpot.errors import ParameterError

_EXP_LIMIT = 35.0  # n2p2's EXP_LIMIT


def _softplus(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x, beta=1.0, threshold=_EXP_LIMIT)


def _shifted_softplus(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x, beta=1.0, threshold=_EXP_LIMIT) - math.log(2.0)


def _reverse_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(-x)


def _gaussian(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * x * x)


def _negative_exp(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-x)


def _harmonic(x: torch.Tensor) -> torch.Tensor:
    return x * x


def _linear(x: torch.Tensor) -> torch.Tensor:
    return x


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": _linear,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": _softplus,
    "relu": torch.relu,
    "gaussian": _gaussian,
    "cos": torch.cos,
    "reverse_sigmoid": _reverse_sigmoid,
    "negative_exp": _negative_exp,
    "harmonic": _harmonic,
    "silu": F.silu,
    "shifted_softplus": _shifted_softplus,
}

#: n2p2 one-letter code -> mlpot name
N2P2_CODES: dict[str, str] = {
    "l": "linear",
    "t": "tanh",
    "s": "sigmoid",
    "p": "softplus",
    "r": "relu",
    "g": "gaussian",
    "c": "cos",
    "S": "reverse_sigmoid",
    "e": "negative_exp",
    "h": "harmonic",
}

#: mlpot name -> n2p2 one-letter code (only the ones n2p2 has)
N2P2_LETTERS: dict[str, str] = {name: code for code, name in N2P2_CODES.items()}

_ALIASES = {
    "identity": "linear",
    "none": "linear",
    "logistic": "sigmoid",
    "swish": "silu",
    "ssp": "shifted_softplus",
}


def canonical_activation(name: str) -> str:
    """The canonical name of an activation (accepts aliases); ParameterError if unknown."""
    key = str(name).strip()
    if key in N2P2_CODES and len(key) == 1:
        return N2P2_CODES[key]
    key = key.lower()
    key = _ALIASES.get(key, key)
    if key not in ACTIVATIONS:
        raise ParameterError(
            f"unknown activation {name!r}; use one of {sorted(ACTIVATIONS)} "
            f"(or an n2p2 letter {sorted(N2P2_CODES)})"
        )
    return key


class Activation(torch.nn.Module):
    """An activation function as a module (no parameters)."""

    def __init__(self, name: str):
        super().__init__()
        self.name = canonical_activation(name)
        self._function = ACTIVATIONS[self.name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._function(x)

    def extra_repr(self) -> str:
        return self.name
