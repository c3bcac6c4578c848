"""Descriptors: invariant per-atom feature vectors (ACSF), differentiable PyTorch code."""
