"""Precomputed descriptors and their derivatives for training descriptor potentials.

For an HDNNP the atomic energy is E_i = NN_Z(G_i) and the descriptor G does not change during
training. So, once per data set, we compute G (N, F) and J_p = ∂G_i/∂v_p (F, 3) for every
neighbour pair p = (i, j) with pair vector v_p = r_j − r_i + shift·cell (G_i depends only on
the pairs centred on i). Then for a minibatch

    ∂E/∂v_p = Σ_f (∂E_i/∂G_if) J_pf,          F_j = −Σ_(p: neighbour j) ∂E/∂v_p + Σ_(p: centre j) ∂E/∂v_p,
    σ = (1/V) Σ_p v_p ⊗ ∂E/∂v_p,

exactly the forces and stress that autograd through the descriptor gives (checked in the
tests), at the cost of the networks only. Memory is P·F·3 numbers (P pairs, F features).
"""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np
import torch
from ase.data import chemical_symbols

from mlpot.data.batch import REF_FORCES, REF_STRESS, AtomsBatch
from mlpot.data.neighbors import neighbor_list, pair_vectors
from mlpot.errors import DataError


def supports_feature_cache(potential) -> bool:
    """Whether ``potential`` is an HDNNP (descriptor + per-element networks on its features)."""
    try:
        from mlpot.models.hdnnp import HDNNP
    except ImportError:  # pragma: no cover
        return False
    return isinstance(potential, HDNNP)


def atomic_energies_from_features(
    potential, numbers: torch.Tensor, features: torch.Tensor, element_index: dict | None = None
) -> torch.Tensor:
    """Per-atom energies (N,), eV, of an HDNNP from its unscaled features (N, F)."""
    energies = features.new_zeros(features.shape[0])
    for z in potential.elements:
        index = element_index[z] if element_index is not None else None
        if index is None:
            index = torch.nonzero(numbers == z).squeeze(1)
        if index.numel() == 0:
            continue
        net = potential.networks[chemical_symbols[z]]
        x = features.index_select(0, index)[:, : net.n_features]
        energies = energies.index_copy(0, index, net(x, potential.scaling, potential.scaling_range))
    return energies


def _descriptor_jacobian(features: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """(P, F, 3): ∂features[centre(p), f]/∂vectors[p]."""
    n_features = features.shape[1]
    if vectors.shape[0] == 0:
        return vectors.new_zeros((0, n_features, 3))
    eye = torch.eye(n_features, dtype=features.dtype)
    grad_outputs = eye[:, None, :].expand(n_features, features.shape[0], n_features)
    try:
        (jac,) = torch.autograd.grad(
            features,
            vectors,
            grad_outputs=grad_outputs,
            is_grads_batched=True,
            retain_graph=True,
            allow_unused=True,
        )
    except RuntimeError:  # operations without a batching rule: one backward pass per feature
        rows = []
        for f in range(n_features):
            (g,) = torch.autograd.grad(
                features[:, f].sum(), vectors, retain_graph=True, allow_unused=True
            )
            rows.append(torch.zeros_like(vectors) if g is None else g)
        jac = torch.stack(rows)
    if jac is None:
        return vectors.new_zeros((vectors.shape[0], n_features, 3))
    return jac.permute(1, 0, 2).contiguous()


class FeatureEngine:
    """Training data of an HDNNP as cached features (and Jacobians when forces are trained)."""

    def __init__(
        self,
        potential,
        structures: Sequence[ase.Atoms],
        dtype: torch.dtype,
        derivatives: bool = True,
        chunk: int = 8,
    ):
        self.potential = potential
        self.has_forces = derivatives and all(REF_FORCES in a.arrays for a in structures)
        self.derivatives = derivatives
        items = []
        descriptor = potential.descriptor
        for start in range(0, len(structures), chunk):
            part = structures[start : start + chunk]
            for offset, atoms in enumerate(part):
                batch = AtomsBatch.from_atoms(atoms, dtype=dtype)
                try:
                    potential.check_elements(batch)
                except DataError as exc:
                    message = str(exc).replace("structure 0", f"structure {start + offset}", 1)
                    raise DataError(message) from exc
                nl = neighbor_list(batch, potential.cutoff)
                vectors = pair_vectors(batch, nl).detach()
                with torch.enable_grad():
                    vectors.requires_grad_(derivatives)
                    features = descriptor(batch, nl, vectors)
                    jac = _descriptor_jacobian(features, vectors) if derivatives else None
                items.append(
                    {
                        "batch": batch,
                        "features": features.detach(),
                        "centers": nl.centers,
                        "neighbors": nl.neighbors,
                        "vectors": vectors.detach(),
                        "jacobian": None if jac is None else jac.detach(),
                    }
                )
        self.items = items
        self.n_features = items[0]["features"].shape[1] if items else 0

    def __len__(self) -> int:
        return len(self.items)

    def memory_bytes(self) -> int:
        total = 0
        for item in self.items:
            for key in ("features", "vectors", "jacobian"):
                if item[key] is not None:
                    total += item[key].numel() * item[key].element_size()
        return total

    def run(
        self,
        indices: Sequence[int],
        forces: bool,
        stress: bool,
        create_graph: bool,
        train: bool = False,
    ) -> tuple[dict[str, torch.Tensor], AtomsBatch]:
        parts = [self.items[i] for i in indices]
        batches = [p["batch"] for p in parts]
        atom_offsets = np.concatenate([[0], np.cumsum([b.positions.shape[0] for b in batches])])
        numbers = torch.cat([b.numbers for b in batches])
        structure_index = torch.cat(
            [torch.full_like(b.structure_index, s) for s, b in enumerate(batches)]
        )

        def cat(name):
            values = [getattr(b, name) for b in batches]
            return None if any(v is None for v in values) else torch.cat(values)

        batch = AtomsBatch(
            positions=cat("positions"),
            numbers=numbers,
            cell=cat("cell"),
            pbc=cat("pbc"),
            structure_index=structure_index,
            n_atoms=cat("n_atoms"),
            energy=cat("energy"),
            forces=cat("forces"),
            stress=cat("stress"),
        )
        need_grad = (forces or stress) and self.derivatives
        features = torch.cat([p["features"] for p in parts])
        if need_grad:
            features = features.detach().requires_grad_(True)
        with torch.enable_grad() if (need_grad or train) else torch.no_grad():
            atomic = atomic_energies_from_features(self.potential, numbers, features)
            energy = atomic.new_zeros(len(parts)).index_add(0, structure_index, atomic)
        out = {"energy": energy, "atomic_energies": atomic}
        if not need_grad:
            return out, batch
        (d_features,) = torch.autograd.grad(atomic.sum(), features, create_graph=create_graph)
        centers = torch.cat(
            [p["centers"] + int(o) for p, o in zip(parts, atom_offsets[:-1], strict=True)]
        )
        neighbors = torch.cat(
            [p["neighbors"] + int(o) for p, o in zip(parts, atom_offsets[:-1], strict=True)]
        )
        jacobian = torch.cat([p["jacobian"] for p in parts])
        d_vectors = torch.einsum("pf,pfx->px", d_features[centers], jacobian)
        if forces:
            grad_positions = torch.zeros_like(batch.positions).index_add(0, neighbors, d_vectors)
            grad_positions = grad_positions.index_add(0, centers, -d_vectors)
            out["forces"] = -grad_positions
        if stress:
            vectors = torch.cat([p["vectors"] for p in parts])
            pair_structure = structure_index[centers]
            virial = torch.zeros((len(parts), 3, 3), dtype=d_vectors.dtype).index_add(
                0, pair_structure, vectors[:, :, None] * d_vectors[:, None, :]
            )
            volume = torch.linalg.det(batch.cell).abs()
            periodic = batch.pbc.all(dim=1) & (volume > 0)
            safe = torch.where(periodic, volume, torch.ones_like(volume))
            s = virial / safe[:, None, None]
            out["stress"] = torch.where(periodic[:, None, None], s, torch.full_like(s, torch.nan))
        return out, batch


def has_stress(structures: Sequence[ase.Atoms]) -> bool:
    return any(REF_STRESS in a.info for a in structures)
