"""mlpot: machine-learning interatomic potentials.

Data → neighbour list → descriptors → per-atom energies → total energy → forces and stress by
autograd → trainer / calculator. See ARCHITECTURE.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlpot._version import __version__
from mlpot.errors import MlpotError


def load(path: str | os.PathLike, length_unit: str = "angstrom", energy_unit: str = "ev"):
    """Load a potential: an mlpot model file, or an n2p2 potential directory.

    n2p2 files do not state their units: say them with ``length_unit`` ("angstrom"/"bohr") and
    ``energy_unit`` ("ev"/"hartree"). The returned potential always works in eV and Å.
    """
    path = Path(path)
    if path.is_dir():
        from mlpot.interop.n2p2 import load_n2p2_potential

        return load_n2p2_potential(path, length_unit=length_unit, energy_unit=energy_unit)
    from mlpot.models.potential import load_potential

    return load_potential(path)


__all__ = ["__version__", "load", "MlpotError"]
