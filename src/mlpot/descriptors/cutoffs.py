"""Cutoff functions f_c(r) of n2p2 (``CutoffFunction``), in differentiable PyTorch.

With the inner cutoff r_ci = α r_c and x = (r − r_ci)/(r_c − r_ci):

====== ===== =============================================================
name   n2p2  f_c(r) for r_ci ≤ r < r_c (1 below r_ci, 0 from r_c on)
====== ===== =============================================================
hard   0     1
cos    1     ½ [cos(π x) + 1]
tanhu  2     tanh³(1 − r/r_c)                  (α ignored, as in n2p2)
tanh   3     tanh³(1 − r/r_c) / tanh³(1)       (α ignored; f_c(0) = 1)
exp    4     exp(1 − 1/(1 − x²))
poly1  5     (2x − 3) x² + 1
poly2  6     ((15 − 6x) x − 10) x³ + 1
poly3  7     (x (x (20x − 70) + 84) − 35) x⁴ + 1
poly4  8     (x (x ((315 − 70x) x − 540) + 420) − 126) x⁵ + 1
====== ===== =============================================================

Distances r in Å. The functions are safe for autograd everywhere (no NaN gradient at or beyond
r_c, also for second derivatives).
"""

from __future__ import annotations

import math

import torch

from mlpot.errors import ParameterError

#: n2p2's cutoff type numbers by name.
CUTOFF_TYPES: dict[str, int] = {
    "hard": 0,
    "cos": 1,
    "tanhu": 2,
    "tanh": 3,
    "exp": 4,
    "poly1": 5,
    "poly2": 6,
    "poly3": 7,
    "poly4": 8,
}
CUTOFF_NAMES: dict[int, str] = {v: k for k, v in CUTOFF_TYPES.items()}

#: n2p2's normalisation of the "tanh" cutoff, 1/tanh³(1).
TANH_PREFACTOR = ((math.e + 1 / math.e) / (math.e - 1 / math.e)) ** 3

# types for which the inner cutoff alpha applies (n2p2 ignores it for hard, tanhu and tanh)
_USES_ALPHA = {"cos", "exp", "poly1", "poly2", "poly3", "poly4"}


def cutoff_type_name(cutoff_type: str | int) -> str:
    """Normalise a cutoff type given by name or n2p2 number to its name."""
    if isinstance(cutoff_type, str) and cutoff_type.strip().isdigit():
        cutoff_type = int(cutoff_type)
    if isinstance(cutoff_type, bool):
        raise ParameterError(f"cutoff type must be a name or n2p2 number, got {cutoff_type!r}")
    if isinstance(cutoff_type, int):
        if cutoff_type not in CUTOFF_NAMES:
            raise ParameterError(
                f"unknown n2p2 cutoff type {cutoff_type}; known: "
                + ", ".join(f"{n}={k}" for k, n in CUTOFF_TYPES.items())
            )
        return CUTOFF_NAMES[cutoff_type]
    name = str(cutoff_type).strip().lower()
    if name not in CUTOFF_TYPES:
        raise ParameterError(
            f"unknown cutoff type {cutoff_type!r}; known: {', '.join(CUTOFF_TYPES)} "
            "(or their n2p2 numbers 0-8)"
        )
    return name


def _core(name: str, x: torch.Tensor) -> torch.Tensor:
    """The core f(x) on 0 ≤ x < 1 of the types that use the inner cutoff."""
    if name == "cos":
        return 0.5 * (torch.cos(math.pi * x) + 1.0)
    if name == "exp":
        return torch.exp(1.0 - 1.0 / (1.0 - x * x))
    if name == "poly1":
        return (2.0 * x - 3.0) * x * x + 1.0
    if name == "poly2":
        return ((15.0 - 6.0 * x) * x - 10.0) * x * x * x + 1.0
    x2 = x * x
    if name == "poly3":
        return (x * (x * (20.0 * x - 70.0) + 84.0) - 35.0) * x2 * x2 + 1.0
    if name == "poly4":
        return (x * (x * ((315.0 - 70.0 * x) * x - 540.0) + 420.0) - 126.0) * x2 * x2 * x + 1.0
    raise ParameterError(f"cutoff type {name!r} has no core function")  # pragma: no cover


def cutoff_function(
    r: torch.Tensor, r_cut: float, cutoff_type: str | int = "cos", alpha: float = 0.0
) -> torch.Tensor:
    """f_c(r) of n2p2's ``cutoff_type`` with cutoff ``r_cut`` (Å) and inner fraction ``alpha``.

    Zero for r ≥ r_cut, one for r < alpha·r_cut (types cos, exp, poly1-4). Differentiable, with
    finite first and second derivatives everywhere.
    """
    name = cutoff_type_name(cutoff_type)
    if not r_cut > 0:
        raise ParameterError(f"cutoff radius must be positive, got {r_cut}")
    if not 0.0 <= alpha < 1.0:
        raise ParameterError(f"cutoff_alpha must satisfy 0 <= alpha < 1, got {alpha}")
    inside = r < r_cut
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    if name == "hard":
        return torch.where(inside, torch.ones_like(r), zero)
    if name in ("tanhu", "tanh"):
        # tanh(1 - r/rc) vanishes at r_c with its first two derivatives; no inner cutoff.
        t = torch.tanh(1.0 - torch.where(inside, r, zero) / r_cut)
        f = t * t * t
        if name == "tanh":
            f = TANH_PREFACTOR * f
        return torch.where(inside, f, zero)
    r_inner = alpha * r_cut
    if name == "cos" and alpha == 0.0:
        # fast path of the common case
        return torch.where(inside, 0.5 * (torch.cos((math.pi / r_cut) * r) + 1.0), zero)
    active = inside & (r >= r_inner)
    x = (r - r_inner) / (r_cut - r_inner)
    x_safe = torch.where(active, x, torch.full_like(x, 0.5))
    f = _core(name, x_safe)
    one = torch.ones((), dtype=r.dtype, device=r.device)
    return torch.where(active, f, torch.where(inside, one, zero))
