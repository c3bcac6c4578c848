"""The array layout of sample_NNP's teaching data (eminamitani/sample_NNP).

``desc.npy`` holds descriptors of shape (structures, atoms, features) and ``label.npy`` the
energy per atom (eV/atom) of each structure, shape (structures,). No coordinates are stored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mlpot.errors import DataError


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: no such file; give the path of sample_NNP's {what}")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/OSError/EOFError on bad files
        raise DataError(
            f"{path}: cannot read it as a .npy array ({type(exc).__name__}: {exc}); "
            f"give sample_NNP's {what}"
        ) from exc
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: expected a numeric array ({what}), got dtype {array.dtype}")
    return array


def load_sample_nnp(
    desc_path: str | os.PathLike, label_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Load sample_NNP's ``desc.npy`` and ``label.npy``.

    Returns:
        descriptors: (S, A, F) float64 array (structures × atoms × features).
        energy_per_atom: (S,) float64 array, eV/atom.

    Raises DataError naming the file when shapes disagree or values are not finite.
    """
    desc_path, label_path = Path(desc_path), Path(label_path)
    descriptors = _load_array(desc_path, "descriptors (structures × atoms × features)")
    labels = _load_array(label_path, "energies per atom (one per structure)")
    if descriptors.ndim != 3:
        raise DataError(
            f"{desc_path}: descriptors must have 3 dimensions (structures, atoms, features), "
            f"got shape {descriptors.shape}"
        )
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(
            f"{label_path}: energies per atom must have shape (structures,), got {labels.shape}"
        )
    if labels.shape[0] != descriptors.shape[0]:
        raise DataError(
            f"{label_path} has {labels.shape[0]} energies but {desc_path} has "
            f"{descriptors.shape[0]} structures (shape {descriptors.shape}); give matching files"
        )
    if descriptors.shape[0] == 0:
        raise DataError(f"{desc_path}: empty data set (no structures)")
    for path, array, what in (
        (desc_path, descriptors, "descriptor"),
        (label_path, labels, "energy"),
    ):
        bad = ~np.isfinite(array)
        if bad.any():
            first = np.argwhere(bad)[0].tolist()
            raise DataError(
                f"{path}: {int(bad.sum())} {what} value(s) are NaN or inf, the first at index "
                f"{first} (structure {first[0]}, 0-based); fix or remove those structures"
            )
    return descriptors.astype(np.float64), labels.astype(np.float64)
