"""Descriptors: invariant per-atom feature vectors (ACSF), differentiable PyTorch code."""

from mlpot.descriptors.acsf import ACSF, SymmetryFunction

__all__ = ["ACSF", "SymmetryFunction"]
