"""Data sets: the bundled GPAW silicon set and a registry of public training sets.

- :func:`bundled_si_path` / :func:`load_bundled_si` — the DFT (GPAW, PBE) silicon data set shipped
  with mlpot (``si_gpaw.extxyz.gz``, provenance in ``si_gpaw.json``), when present.
- :data:`REGISTRY`, :func:`fetch_dataset` — public data sets (mlearn, rMD17, n2p2 examples)
  downloaded on demand into the user's cache folder, checksum verified.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlpot.datasets.fetch import default_cache_dir, fetch_dataset, sha256_of
from mlpot.datasets.registry import REGISTRY, Dataset, DatasetFile, get_dataset
from mlpot.errors import MlpotError

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_SI = PACKAGE_DIR / "si_gpaw.extxyz.gz"
BUNDLED_SI_PROVENANCE = PACKAGE_DIR / "si_gpaw.json"


def bundled_si_path() -> Path:
    """Path of the bundled GPAW Si data set (MlpotError if this installation lacks it)."""
    if not BUNDLED_SI.is_file():
        raise MlpotError(
            f"the bundled Si data set {BUNDLED_SI} is absent from this installation; "
            "generate it with scripts/make_si_dataset.py (see docs/datasets.md)"
        )
    return BUNDLED_SI


def bundled_si_provenance() -> dict:
    """The provenance record (``si_gpaw.json``) of the bundled Si data set."""
    bundled_si_path()
    with open(BUNDLED_SI_PROVENANCE, encoding="utf-8") as handle:
        return json.load(handle)


def load_bundled_si() -> list:
    """The bundled Si structures as ``ase.Atoms`` with mlpot's reference keys.

    Energies under ``info["ref_energy"]`` (eV), forces under ``arrays["ref_forces"]`` (eV/Å),
    stress under ``info["ref_stress"]`` (3×3, eV/Å³); ``info["group"]`` names how the structure
    was made.
    """
    from mlpot.data.io import read_structures

    return read_structures(bundled_si_path(), format="extxyz")


__all__ = [
    "BUNDLED_SI",
    "BUNDLED_SI_PROVENANCE",
    "REGISTRY",
    "Dataset",
    "DatasetFile",
    "bundled_si_path",
    "bundled_si_provenance",
    "default_cache_dir",
    "fetch_dataset",
    "get_dataset",
    "load_bundled_si",
    "sha256_of",
]
