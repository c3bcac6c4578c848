"""The one idea of a potential in mlpot.

A :class:`Potential` is a ``torch.nn.Module`` whose ``forward(batch, nl, vectors)`` returns
per-atom energies (eV) for a batch of structures. Everything else is shared:

* :func:`compute_properties` sums atomic energies per structure, and gets forces (−∂E/∂R) and
  stress ((1/V) ∂E/∂ε for a homogeneous strain ε of positions and cell) by autograd;
* :meth:`Potential.save` / :func:`load_potential` store any potential in one file format
  (``{"format": "mlpot", "kind", "config", "state_dict", ...}``);
* ``potential.calculator()`` serves any potential to ASE.

Subclasses implement ``forward``, ``get_config`` and ``from_config`` and register themselves
with :func:`register_potential`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase
import torch

from mlpot._atomic import atomic_output
from mlpot._version import __version__
from mlpot.data.batch import AtomsBatch
from mlpot.data.neighbors import NeighborList, neighbor_list, pair_vectors
from mlpot.descriptors._fused import fused_kernel_enabled
from mlpot.errors import DataError, ModelFileError

_REGISTRY: dict[str, type[Potential]] = {}


def register_potential(cls: type[Potential]) -> type[Potential]:
    """Class decorator: make a Potential subclass loadable by its class name."""
    _REGISTRY[cls.__name__] = cls
    return cls


class Potential(torch.nn.Module):
    """Base class: maps a batch of structures to per-atom energies.

    Attributes:
        cutoff: interaction cutoff, Å (the neighbour list is built with it).
        elements: atomic numbers the potential knows, sorted.
        accepts_longer_neighbor_lists: pairs beyond ``cutoff`` in the list change nothing (the
            calculator may then reuse a list built with a skin).
    """

    accepts_longer_neighbor_lists: bool = False

    def __init__(self, cutoff: float, elements: Sequence[int]):
        super().__init__()
        self.cutoff = float(cutoff)
        self.elements = sorted(int(z) for z in elements)

    def forward(
        self, batch: AtomsBatch, nl: NeighborList, vectors: torch.Tensor
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """Per-atom energies (N,), eV. ``vectors`` are the (P, 3) pair vectors r_j − r_i, Å."""
        raise NotImplementedError

    def fit_statistics(self, structures: Sequence[ase.Atoms]) -> None:
        """Fit data statistics (scalings, reference energies) before training; default: none."""
        return None

    # --- checks -------------------------------------------------------------------------
    def check_elements(self, batch: AtomsBatch) -> None:
        """Raise a clear error if the batch has an element the potential was not made for."""
        unknown, first = batch.unknown_elements(self.elements)
        if unknown:
            from ase.data import chemical_symbols

            bad = ", ".join(chemical_symbols[z] for z in unknown)
            known = ", ".join(chemical_symbols[z] for z in self.elements)
            raise DataError(
                f"structure {first}: element(s) {bad} not covered by this potential "
                f"(it knows {known}); train a model that includes them"
            )

    # --- persistence --------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """Plain-Python constructor arguments (JSON/YAML-able) that rebuild this potential."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Potential:
        return cls(**config)

    def save(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
        """Write a self-contained model file atomically (temporary file + rename)."""
        payload = {
            "format": "mlpot",
            "mlpot_version": __version__,
            "kind": type(self).__name__,
            "units": {"length": "angstrom", "energy": "eV"},
            "config": self.get_config(),
            "dtype": str(next(self.parameters(), torch.zeros((), dtype=torch.float64)).dtype),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "extra": extra or {},
        }
        atomic_torch_save(payload, path)

    # --- use ----------------------------------------------------------------------------
    def compute(
        self,
        structures: ase.Atoms | Sequence[ase.Atoms] | AtomsBatch,
        forces: bool = True,
        stress: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Energy (and forces/stress) of ``ase.Atoms`` or a batch (see compute_properties)."""
        if isinstance(structures, AtomsBatch):
            batch = structures
        else:
            batch = AtomsBatch.from_atoms(structures, dtype=self.dtype)
        return compute_properties(self, batch, forces=forces, stress=stress)

    @property
    def dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        for b in self.buffers():
            if b.is_floating_point():
                return b.dtype
        return torch.float64

    def calculator(self, **kwargs):
        """An ASE calculator serving this potential (energy, forces, stress, energies)."""
        from mlpot.calculators.ase_calculator import MlpotCalculator

        return MlpotCalculator(self, **kwargs)


def compute_properties(
    potential: Potential,
    batch: AtomsBatch,
    nl: NeighborList | None = None,
    forces: bool = True,
    stress: bool = False,
    create_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """Evaluate a potential on a batch.

    Returns a dict with ``energy`` (S,), ``atomic_energies`` (N,), and when asked ``forces``
    (N, 3) = −∂E/∂R and ``stress`` (S, 3, 3) = (1/V) ∂E/∂ε (eV/Å³, ASE sign; NaN for structures
    without a periodic cell). ``create_graph=True`` keeps the graph for training on forces.
    """
    potential.check_elements(batch)
    if nl is None:
        nl = neighbor_list(batch, potential.cutoff)
    need_grad = forces or stress
    leaf_positions = batch.positions.detach().requires_grad_(forces)
    positions, cell = leaf_positions, batch.cell
    strain = None
    if stress:
        strain = torch.zeros(
            (batch.n_structures, 3, 3), dtype=positions.dtype, device=positions.device
        ).requires_grad_(True)
        deformation = torch.eye(3, dtype=positions.dtype, device=positions.device) + strain
        positions = torch.einsum("ax,axy->ay", positions, deformation[batch.structure_index])
        cell = torch.einsum("six,sxy->siy", cell, deformation)
    # the fused ACSF kernel has a first derivative only: training on forces needs the PyTorch path
    fused = contextlib.nullcontext() if not create_graph else fused_kernel_enabled(False)
    with torch.enable_grad() if need_grad else torch.no_grad(), fused:
        vectors = pair_vectors(batch, nl, positions, cell)
        atomic = potential(batch.replace(positions=positions, cell=cell), nl, vectors)
        energy = torch.zeros(batch.n_structures, dtype=atomic.dtype, device=atomic.device)
        energy = energy.index_add(0, batch.structure_index, atomic)
    out = {"energy": energy, "atomic_energies": atomic}
    if not need_grad:
        return out
    wrt = ([leaf_positions] if forces else []) + ([strain] if stress else [])
    grads = torch.autograd.grad(energy.sum(), wrt, create_graph=create_graph, allow_unused=True)
    grads = [torch.zeros_like(w) if g is None else g for g, w in zip(grads, wrt, strict=True)]
    if forces:
        out["forces"] = -grads[0]
    if stress:
        volume = torch.linalg.det(batch.cell).abs()
        periodic = batch.pbc.all(dim=1) & (volume > 0)
        safe_volume = torch.where(periodic, volume, torch.ones_like(volume))
        s = grads[-1] / safe_volume[:, None, None]
        out["stress"] = torch.where(periodic[:, None, None], s, torch.full_like(s, torch.nan))
    if not create_graph:
        out = {k: v.detach() for k, v in out.items()}
    return out


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, then rename: never a half file."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def load_potential(path: str | os.PathLike, **kwargs) -> Potential:
    """Load a potential saved by :meth:`Potential.save`."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"{path}: not a readable mlpot model file ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != "mlpot":
        raise ModelFileError(f"{path}: not an mlpot model file (no 'format: mlpot' record)")
    kind = payload["kind"]
    _import_all_models()
    if kind not in _REGISTRY:
        raise ModelFileError(
            f"{path}: unknown potential kind {kind!r} (known: {sorted(_REGISTRY)})"
        )
    potential = _REGISTRY[kind].from_config(payload["config"])
    dtype = getattr(torch, payload.get("dtype", "torch.float64").replace("torch.", ""))
    potential = potential.to(dtype)
    potential.load_state_dict(payload["state_dict"])
    potential.metadata = payload.get("extra", {})
    return potential


def _import_all_models() -> None:
    """Import the modules that define potentials so the registry is filled."""
    import importlib

    for name in ("mlpot.models.hdnnp",):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            pass
