"""Toward a potential: an MLP fitted to a Lennard-Jones dimer, and why descriptors are needed.

Energies in eV, distances in Å. The 3-atom part trains two small models on Lennard-Jones
trimer energies: one reads the raw Cartesian coordinates (centred at the centroid), one is a
Behler–Parrinello sum of atomic energies over symmetry functions (G2 and G4, written out below
with the definitions of :mod:`mlpot.descriptors.acsf`). Only the second is invariant under
rotations and under swapping like atoms, by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlpot.basics.mlp import MLP, FitResult, fit_1d
from mlpot.errors import ParameterError

#: Argon-like Lennard-Jones parameters: ε in eV, σ in Å.
LJ_EPSILON = 0.0104
LJ_SIGMA = 3.40


def lennard_jones(
    r: np.ndarray, epsilon: float = LJ_EPSILON, sigma: float = LJ_SIGMA
) -> np.ndarray:
    """E(r) = 4ε[(σ/r)¹² − (σ/r)⁶] in eV for r in Å."""
    r = np.asarray(r, dtype=float)
    if np.any(r <= 0):
        raise ParameterError("Lennard-Jones distances must be positive (Å)")
    s6 = (sigma / r) ** 6
    return 4.0 * epsilon * (s6 * s6 - s6)


def fit_lj_dimer(
    r_min: float = 3.2, r_max: float = 8.0, n_train: int = 49, epochs: int = 20000, seed: int = 0
) -> FitResult:
    """The 1D MLP of :func:`mlpot.basics.mlp.fit_1d` fitted to E(r); held out: the midpoints."""
    if not 0 < r_min < r_max:
        raise ParameterError(f"need 0 < r_min < r_max (Å), got {r_min}, {r_max}")
    r_train = np.linspace(r_min, r_max, n_train)
    r_test = 0.5 * (r_train[1:] + r_train[:-1])
    return fit_1d(lennard_jones, r_train, r_test, hidden=16, epochs=epochs, seed=seed)


# --------------------------------------------------------------------------------------------
#: Symmetry functions of the trimer models: G2 (η Å⁻², R_s Å) and G4 (η Å⁻², ζ, λ), cutoff r_c.
TRIMER_CUTOFF = 7.0
TRIMER_G2 = ((0.5, 3.5), (0.5, 4.5), (0.5, 5.5))
TRIMER_G4 = ((0.01, 1.0, 1.0), (0.01, 1.0, -1.0))


def cosine_cutoff(r: np.ndarray, r_cut: float) -> np.ndarray:
    """f_c(r) = ½[cos(πr/r_c) + 1] for r < r_c, else 0."""
    return np.where(r < r_cut, 0.5 * (np.cos(np.pi * r / r_cut) + 1.0), 0.0)


def symmetry_functions(
    positions: np.ndarray,
    g2: tuple = TRIMER_G2,
    g4: tuple = TRIMER_G4,
    r_cut: float = TRIMER_CUTOFF,
) -> np.ndarray:
    """Per-atom features (n_atoms, len(g2) + len(g4)) of a single-element cluster (Å, no cell).

    G2_i = Σ_{j≠i} exp(−η (R_ij − R_s)²) f_c(R_ij);
    G4_i = 2^(1−ζ) Σ_{j<k} (1 + λ cos θ_ijk)^ζ exp(−η (R_ij² + R_ik² + R_jk²)) f_c f_c f_c.
    Only distances and angles enter, so the features are unchanged by rotations, translations
    and a swap of like atoms (which only permutes the rows).
    """
    pos = np.asarray(positions, dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ParameterError(f"positions must have shape (n_atoms, 3) in Å, got {pos.shape}")
    n = len(pos)
    vec = pos[None, :, :] - pos[:, None, :]  # vec[i, j] = r_j − r_i
    dist = np.linalg.norm(vec, axis=-1)
    fc = cosine_cutoff(dist, r_cut)
    np.fill_diagonal(fc, 0.0)
    features = np.zeros((n, len(g2) + len(g4)))
    for col, (eta, r_s) in enumerate(g2):
        features[:, col] = np.sum(np.exp(-eta * (dist - r_s) ** 2) * fc, axis=1)
    for col, (eta, zeta, lam) in enumerate(g4, start=len(g2)):
        for i in range(n):
            for j in range(n):
                for k in range(j + 1, n):
                    if i in (j, k):
                        continue
                    cos_t = vec[i, j] @ vec[i, k] / (dist[i, j] * dist[i, k])
                    radial = np.exp(-eta * (dist[i, j] ** 2 + dist[i, k] ** 2 + dist[j, k] ** 2))
                    features[i, col] += (
                        2.0 ** (1.0 - zeta)
                        * (1.0 + lam * cos_t) ** zeta
                        * radial
                        * fc[i, j]
                        * fc[i, k]
                        * fc[j, k]
                    )
    return features


def trimer_energy(positions: np.ndarray) -> float:
    """Exact Lennard-Jones energy (eV) of a cluster: the sum over pairs."""
    pos = np.asarray(positions, dtype=float)
    i, j = np.triu_indices(len(pos), k=1)
    return float(lennard_jones(np.linalg.norm(pos[j] - pos[i], axis=1)).sum())


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation matrix (QR of a Gaussian matrix, det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def random_trimers(n: int, seed: int = 0, d_min: float = 3.3, d_max: float = 5.5) -> np.ndarray:
    """n random 3-atom clusters (n, 3, 3) in Å, all pair distances in [d_min, d_max], centred at
    the centroid and randomly oriented."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        pos = rng.uniform(-d_max, d_max, size=(3, 3))
        d = np.linalg.norm(pos[[0, 0, 1]] - pos[[1, 2, 2]], axis=1)
        if d.min() >= d_min and d.max() <= d_max:
            pos -= pos.mean(axis=0)
            out.append(pos @ random_rotation(rng).T)
    return np.array(out)


@dataclass
class TrimerModel:
    """A trained trimer model: ``kind`` "raw" (MLP on the 9 centred coordinates) or
    "descriptor" (sum over atoms of an MLP on standardised symmetry functions)."""

    kind: str
    mlp: MLP
    feature_shift: np.ndarray
    feature_scale: np.ndarray
    energy_shift: float  # eV per atom
    energy_scale: float  # eV per atom
    losses: np.ndarray

    def _inputs(self, positions: np.ndarray) -> np.ndarray:
        pos = np.asarray(positions, dtype=float)
        if self.kind == "raw":
            x = (pos - pos.mean(axis=-2, keepdims=True)).reshape(*pos.shape[:-2], -1)
        else:
            x = (
                symmetry_functions(pos)
                if pos.ndim == 2
                else np.array([symmetry_functions(p) for p in pos])
            )
        return (x - self.feature_shift) / self.feature_scale

    def energy(self, positions: np.ndarray) -> float:
        """Predicted energy (eV) of one cluster (3, 3) in Å."""
        x = self._inputs(positions)
        n_atoms = len(positions)
        if self.kind == "raw":
            return float(
                n_atoms * (self.energy_shift + self.energy_scale * self.mlp(x[None])[0, 0])
            )
        atomic = self.energy_shift + self.energy_scale * self.mlp(x)[:, 0]
        return float(atomic.sum())


def train_trimer_model(
    kind: str,
    positions: np.ndarray,
    energies: np.ndarray,
    hidden: int = 16,
    epochs: int = 3000,
    learning_rate: float = 0.1,
    seed: int = 0,
) -> TrimerModel:
    """Fit a raw-coordinate or a descriptor model to cluster energies (eV) by gradient descent
    on L = (1/S) Σ_s ½ (ê_s − e_s)², e_s the standardised energy per atom."""
    if kind not in ("raw", "descriptor"):
        raise ParameterError(f"trimer model kind must be 'raw' or 'descriptor', got {kind!r}")
    pos = np.asarray(positions, dtype=float)
    n_struct, n_atoms = pos.shape[:2]
    per_atom = np.asarray(energies, dtype=float) / n_atoms
    e_shift, e_scale = float(per_atom.mean()), float(per_atom.std())
    target = (per_atom - e_shift) / e_scale
    if kind == "raw":
        x = (pos - pos.mean(axis=1, keepdims=True)).reshape(n_struct, -1)
    else:
        x = np.array([symmetry_functions(p) for p in pos]).reshape(n_struct * n_atoms, -1)
    f_shift, f_scale = x.mean(axis=0), x.std(axis=0) + 1e-12
    if kind == "raw":  # one scale for all coordinates (a per-axis one would be arbitrary)
        f_shift, f_scale = np.zeros(x.shape[1]), np.full(x.shape[1], x.std())
    xs = (x - f_shift) / f_scale
    mlp = MLP((xs.shape[1], hidden, 1), "tanh", "identity", seed=seed)
    losses = np.empty(epochs)
    for epoch in range(epochs):
        out, cache = mlp.forward(xs)
        pred = out[:, 0] if kind == "raw" else out[:, 0].reshape(n_struct, n_atoms).mean(axis=1)
        residual = pred - target
        losses[epoch] = 0.5 * float(np.mean(residual**2))
        grad_pred = residual / n_struct
        grad_out = grad_pred if kind == "raw" else np.repeat(grad_pred / n_atoms, n_atoms)
        mlp.step(mlp.backward(cache, grad_out[:, None]), learning_rate)
    return TrimerModel(kind, mlp, f_shift, f_scale, e_shift, e_scale, losses)


@dataclass
class InvarianceReport:
    """Energies (eV) of one cluster, rotated and with two atoms swapped, per model."""

    energies: dict[str, tuple[float, float, float]]  # name -> (original, rotated, swapped)
    test_rmse: dict[str, float]  # eV per cluster, held-out clusters
    mean_rotation_change: dict[str, float]  # eV, mean |E(R x) − E(x)| over held-out clusters

    def format(self) -> str:
        lines = [
            "Energy of one Ar3 cluster (eV): original / rotated / atoms 0,1 swapped",
            f"  {'model':<12} {'original':>11} {'rotated':>11} {'swapped':>11} "
            f"{'|dE| rot':>9} {'|dE| swap':>9}",
        ]
        for name, (e0, e_rot, e_swap) in self.energies.items():
            lines.append(
                f"  {name:<12} {e0:11.6f} {e_rot:11.6f} {e_swap:11.6f} "
                f"{abs(e_rot - e0):9.2e} {abs(e_swap - e0):9.2e}"
            )
        for name, rmse in self.test_rmse.items():
            lines.append(
                f"  {name}: held-out RMSE {rmse * 1000:.3f} meV, mean |dE| under a random "
                f"rotation {self.mean_rotation_change[name] * 1000:.3f} meV"
            )
        return "\n".join(lines)


def invariance_demo(n_train: int = 200, n_test: int = 100, epochs: int = 3000, seed: int = 0):
    """Train both trimer models on LJ Ar3 energies and compare them under rotation and swap.

    Returns (InvarianceReport, {name: TrimerModel}).
    """
    train = random_trimers(n_train, seed=seed)
    test = random_trimers(n_test, seed=seed + 1)
    e_train = np.array([trimer_energy(p) for p in train])
    e_test = np.array([trimer_energy(p) for p in test])
    models = {
        kind: train_trimer_model(kind, train, e_train, epochs=epochs, seed=seed)
        for kind in ("raw", "descriptor")
    }
    rng = np.random.default_rng(seed + 2)
    rotations = [random_rotation(rng) for _ in test]
    probe = test[0]
    rotation = rotations[0]
    rotated = probe @ rotation.T
    swapped = probe[[1, 0, 2]]
    energies = {"exact LJ": (trimer_energy(probe), trimer_energy(rotated), trimer_energy(swapped))}
    rmse, change = {}, {}
    for kind, model in models.items():
        energies[kind] = (model.energy(probe), model.energy(rotated), model.energy(swapped))
        pred = np.array([model.energy(p) for p in test])
        rmse[kind] = float(np.sqrt(np.mean((pred - e_test) ** 2)))
        pred_rot = np.array([model.energy(p @ q.T) for p, q in zip(test, rotations, strict=True)])
        change[kind] = float(np.mean(np.abs(pred_rot - pred)))
    return InvarianceReport(energies, rmse, change), models
