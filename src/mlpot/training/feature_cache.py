"""Precomputed descriptors and their derivatives for training descriptor potentials.

For an HDNNP the atomic energy is E_i = NN_Z(G_i) and the descriptor G does not change during
training. So, once per data set, we compute G (N, F) and J_p = ∂G_i/∂v_p (F, 3) for every
neighbour pair p = (i, j) with pair vector v_p = r_j − r_i + shift·cell (G_i depends only on
the pairs centred on i). Then for a minibatch

    ∂E/∂v_p = Σ_f (∂E_i/∂G_if) J_pf,
    F_j = −Σ_(p: neighbour j) ∂E/∂v_p + Σ_(p: centre j) ∂E/∂v_p,
    σ = (1/V) Σ_p v_p ⊗ ∂E/∂v_p,

exactly the forces and stress that autograd through the descriptor gives (checked in the
tests), at the cost of the networks only. Memory is P·F·3 numbers (P pairs, F features), stored
as (P, 3, F); the contraction is a compiled pass over them where the ACSF kernel builds
(:class:`mlpot.descriptors._fused.JacobianContract`), else a PyTorch einsum.
For G1/G2/G3/G5 sets J is computed in closed form (:func:`analytic_features_and_jacobian`,
its features checked against the descriptor's on the first structures); otherwise by batched
autograd.
"""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np
import torch

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


def _radial_and_derivative(function, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """R(r) of a radial function (or the per-leg radial factor of an angular one) and dR/dr."""
    from mlpot.descriptors.cutoffs import cutoff_function

    leaf = r.detach().requires_grad_(True)
    with torch.enable_grad():
        fc = cutoff_function(leaf, function.r_cut, function.cutoff_type, function.cutoff_alpha)
        if function.kind == "G1":
            value = fc
        elif function.kind == "G3":
            value = torch.cos(function.kappa * leaf) * fc
        else:  # G2, and the legs of G5: exp(-eta (r - rs)^2) fc(r)
            d = leaf - function.r_shift
            value = torch.exp(-function.eta * d * d) * fc
        (derivative,) = torch.autograd.grad(value.sum(), leaf)
    return value.detach(), derivative


def _triplets(centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair indices (first, second), first < second, of all pairs of pairs sharing a centre."""
    order = torch.argsort(centers, stable=True)
    c = centers[order]
    if c.numel() < 2:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty
    _, counts = torch.unique_consecutive(c, return_counts=True)
    group_end = torch.repeat_interleave(torch.cumsum(counts, 0), counts)
    local = torch.arange(c.numel())
    partners = group_end - local - 1
    first = torch.repeat_interleave(local, partners)
    block_start = torch.cumsum(partners, 0) - partners
    second = (
        first + 1 + torch.arange(first.numel()) - torch.repeat_interleave(block_start, partners)
    )
    return order[first], order[second]


def analytic_features_and_jacobian(
    descriptor, batch: AtomsBatch, nl, vectors: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Features (N, F) and J = ∂G/∂v (P, F, 3) in closed form for G1, G2, G3 and G5 sets.

    Returns None when the descriptor has other kinds (then autograd is used). The caller
    checks the features against the descriptor's own, so a convention mismatch cannot go
    unnoticed.
    """
    functions = {z: descriptor.functions_for(z) for z in descriptor.elements}
    kinds = {f.kind for fs in functions.values() for f in fs}
    if not kinds <= {"G1", "G2", "G3", "G5"}:
        return None
    v = vectors.detach()
    dtype = v.dtype
    r = torch.linalg.norm(v, dim=1)
    unit = v / r.clamp_min(1e-12)[:, None]
    centers, neighbors = nl.centers, nl.neighbors
    numbers = batch.numbers
    z_center, z_neighbor = numbers[centers], numbers[neighbors]
    n_atoms, n_pairs, n_features = numbers.shape[0], v.shape[0], descriptor.max_features
    features = torch.zeros((n_atoms, n_features), dtype=dtype)
    jac = torch.zeros((n_pairs, n_features, 3), dtype=dtype)
    if "G5" in kinds:
        first, second = _triplets(centers)
        r1, r2 = r[first], r[second]
        cos = (v[first] * v[second]).sum(1) / (r1 * r2)
        t_center = centers[first]
        z_t, z_1, z_2 = numbers[t_center], z_neighbor[first], z_neighbor[second]
    cache: dict = {}

    def leg(fn):
        key = (fn.kind, fn.eta, fn.r_shift, fn.kappa, fn.r_cut, fn.cutoff_type, fn.cutoff_alpha)
        if key not in cache:
            cache[key] = _radial_and_derivative(fn, r)
        return cache[key]

    groups: dict = {}
    for z, fs in functions.items():
        for column, fn in enumerate(fs):
            if fn.kind != "G5":
                radial, d_radial = leg(fn)
                m = torch.nonzero(
                    (z_center == z) & (z_neighbor == fn.neighbors[0]) & (r < fn.r_cut)
                ).squeeze(1)
                features[:, column].index_add_(0, centers[m], radial[m])
                jac[m, column] = d_radial[m, None] * unit[m]
            else:
                groups.setdefault((z, *fn.neighbors, fn.r_cut), []).append((column, fn))
    chunks = [  # at most 16 functions at a time keeps the (triplets, K, 3) temporaries small
        (key, members[i : i + 16])
        for key, members in groups.items()
        for i in range(0, len(members), 16)
    ]
    for (z, a, b, r_cut), members in chunks:
        m = torch.nonzero(
            (z_t == z)
            & (((z_1 == a) & (z_2 == b)) | ((z_1 == b) & (z_2 == a)))
            & (r1 < r_cut)
            & (r2 < r_cut)
        ).squeeze(1)
        if m.numel() == 0:
            continue
        columns = torch.tensor([c for c, _ in members])
        p1, p2 = first[m], second[m]
        radial = torch.stack([leg(fn)[0] for _, fn in members], dim=1)  # (P, K)
        d_radial = torch.stack([leg(fn)[1] for _, fn in members], dim=1)
        zeta = torch.tensor([fn.zeta for _, fn in members], dtype=dtype)
        lam = torch.tensor([fn.lambda_ for _, fn in members], dtype=dtype)
        norm = 2.0 ** (1.0 - zeta)
        c = cos[m][:, None]
        base = (1.0 + lam * c).clamp_min(0.0)  # (T, K)
        ang = norm * base**zeta
        d_ang = norm * zeta * lam * base ** (zeta - 1.0)
        R1, R2 = radial[p1], radial[p2]
        RR = R1 * R2
        value = ang * RR
        block = torch.zeros((n_atoms, len(members)), dtype=dtype)
        features[:, columns] += block.index_add_(0, t_center[m], value)
        # ∂cos/∂v1 = (u2 − cos u1)/r1 and ∂cos/∂v2 = (u1 − cos u2)/r2, so each leg's gradient
        # is (along its own unit vector) + (along the other leg's unit vector): the first part
        # is accumulated as a scalar per pair and multiplied by the pair's unit vector once
        b = RR * d_ang
        inv_r1, inv_r2 = (1.0 / r1[m])[:, None], (1.0 / r2[m])[:, None]
        along = torch.zeros((n_pairs, len(members)), dtype=dtype)
        along.index_add_(0, p1, ang * d_radial[p1] * R2 - b * c * inv_r1)
        along.index_add_(0, p2, ang * R1 * d_radial[p2] - b * c * inv_r2)
        block = along[:, :, None] * unit[:, None, :]
        block.index_add_(0, p1, (b * inv_r1)[:, :, None] * unit[p2][:, None, :])
        block.index_add_(0, p2, (b * inv_r2)[:, :, None] * unit[p1][:, None, :])
        jac[:, columns] += block
    return features, jac


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
        self.analytic: bool | None = None  # closed-form Jacobian used (None: not tried)
        self.n_checked = 0
        items = []
        descriptor = potential.descriptor
        for start in range(0, len(structures), chunk):
            part = structures[start : start + chunk]
            for offset, atoms in enumerate(part):
                # descriptors and Jacobians in float64 while the closed form is checked, then
                # in the training dtype; stored in the training dtype (float32 halves the
                # memory of the Jacobian cache, the largest array of a training)
                checked = self.analytic is True and self.n_checked >= 3
                compute_dtype = dtype if checked else torch.float64
                batch = AtomsBatch.from_atoms(atoms, dtype=compute_dtype)
                try:
                    potential.check_elements(batch)
                except DataError as exc:
                    message = str(exc).replace("structure 0", f"structure {start + offset}", 1)
                    raise DataError(message) from exc
                nl = neighbor_list(batch, potential.cutoff)
                vectors = pair_vectors(batch, nl).detach()
                jac = None
                if derivatives and self.analytic is not False:
                    closed = analytic_features_and_jacobian(descriptor, batch, nl, vectors)
                    if closed is not None and self.n_checked >= 3:
                        features, jac = closed
                    elif closed is not None:  # check the conventions on the first structures
                        with torch.no_grad():
                            features = descriptor(batch, nl, vectors)
                        scale = features.abs().max().clamp_min(1e-12)
                        if torch.allclose(closed[0], features, rtol=1e-6, atol=1e-9 * scale):
                            jac = closed[1]
                            self.analytic = True
                            self.n_checked += 1
                        else:
                            self.analytic = False
                    else:
                        self.analytic = False
                if jac is None:
                    with torch.enable_grad():
                        vectors.requires_grad_(derivatives)
                        features = descriptor(batch, nl, vectors)
                        jac = _descriptor_jacobian(features, vectors) if derivatives else None
                items.append(
                    {
                        "batch": AtomsBatch.from_atoms(atoms, dtype=dtype),
                        "features": features.detach().to(dtype),
                        "centers": nl.centers,
                        "neighbors": nl.neighbors,
                        "vectors": vectors.detach().to(dtype),
                        # (P, 3, F): rows of F contiguous numbers for the contraction
                        "jacobian": None
                        if jac is None
                        else jac.detach().to(dtype).transpose(1, 2).contiguous(),
                    }
                )
                del jac, features, vectors
        self.items = items
        self.n_features = items[0]["features"].shape[1] if items else 0

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def _message_pairs(item: dict, cutoff: float) -> torch.Tensor:
        """Indices of the item's pairs shorter than ``cutoff`` (Å), computed once."""
        key = ("message_pairs", float(cutoff))
        if key not in item:
            r = torch.linalg.norm(item["vectors"].double(), dim=1)
            item[key] = torch.nonzero(r < cutoff).squeeze(1)
        return item[key]

    def features_per_structure(self) -> list[torch.Tensor]:
        """The cached (unscaled) descriptors, one (n_atoms, F) tensor per structure."""
        return [item["features"] for item in self.items]

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
        centers = torch.cat(
            [p["centers"] + int(o) for p, o in zip(parts, atom_offsets[:-1], strict=True)]
        )
        neighbors = torch.cat(
            [p["neighbors"] + int(o) for p, o in zip(parts, atom_offsets[:-1], strict=True)]
        )
        interaction = getattr(self.potential, "interaction", None)
        interacting = interaction is not None
        pairs = None
        if interacting:
            # only the pairs inside the interaction's cutoff carry messages (f_c = 0 beyond)
            pair_offsets = np.concatenate([[0], np.cumsum([len(p["centers"]) for p in parts])])
            selected = torch.cat(
                [
                    self._message_pairs(p, interaction.cutoff) + int(o)
                    for p, o in zip(parts, pair_offsets[:-1], strict=True)
                ]
            )
            vectors = torch.cat([p["vectors"] for p in parts]).index_select(0, selected)
            if need_grad:
                vectors = vectors.detach().requires_grad_(True)
            pairs = (centers[selected], neighbors[selected], vectors)
        with torch.enable_grad() if (need_grad or train) else torch.no_grad():
            centers_, neighbors_, vectors_ = pairs if pairs is not None else (None,) * 3
            atomic = self.potential.atomic_energies(
                features, numbers, centers_, neighbors_, vectors_
            )
            energy = atomic.new_zeros(len(parts)).index_add(0, structure_index, atomic)
        out = {"energy": energy, "atomic_energies": atomic}
        if not need_grad:
            return out, batch
        if interacting:  # the messages depend on the pair vectors directly too
            d_features, d_explicit = torch.autograd.grad(
                atomic.sum(), (features, pairs[2]), create_graph=create_graph
            )
        else:
            (d_features,) = torch.autograd.grad(atomic.sum(), features, create_graph=create_graph)
        d_vectors = _contract_jacobians(parts, atom_offsets, d_features, centers)
        if interacting:
            d_vectors = d_vectors.index_add(0, selected, d_explicit)
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


def _contract_jacobians(
    parts, atom_offsets, d_features: torch.Tensor, centers: torch.Tensor
) -> torch.Tensor:
    """∂E/∂v (P, 3) = Σ_f ∂E/∂G[centre(p), f] J[p, :, f] over the pairs of ``parts``.

    ``centers`` are the pairs' centres in the minibatch's atom numbering.
    """
    from mlpot.descriptors import _fused

    jacobians = [p["jacobian"] for p in parts]
    if (
        d_features.device.type == "cpu"
        and jacobians[0].dtype == d_features.dtype
        and _fused.kernel_available()
    ):
        return _fused.JacobianContract.apply(
            d_features,
            jacobians,
            [p["centers"] for p in parts],
            [int(o) for o in atom_offsets[:-1]],
        )
    return torch.einsum("pf,pxf->px", d_features[centers], torch.cat(jacobians))


def has_stress(structures: Sequence[ase.Atoms]) -> bool:
    return any(REF_STRESS in a.info for a in structures)
