"""Error metrics of a potential against reference data.

Energies are compared per atom (meV/atom), forces per Cartesian component (eV/Å), stress per
component (GPa). RMSE = sqrt(mean(err²)), MAE = mean(|err|), over structures for energy and
stress and over all force components for forces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ase
import numpy as np
import torch
from ase.units import GPa

from mlpot.data.batch import REF_ENERGY, REF_FORCES, REF_STRESS, AtomsBatch
from mlpot.errors import DataError
from mlpot.models.potential import Potential, compute_properties


@dataclass
class Predictions:
    """Reference and predicted values of a data set (eV, eV/Å, eV/Å³), flattened for plots."""

    n_atoms: np.ndarray  # (S,)
    energy_ref: np.ndarray | None  # (S,) eV
    energy_pred: np.ndarray  # (S,) eV
    forces_ref: np.ndarray | None  # (N, 3)
    forces_pred: np.ndarray | None  # (N, 3)
    stress_ref: np.ndarray | None  # (S, 3, 3), NaN where absent
    stress_pred: np.ndarray | None  # (S, 3, 3)


def predict(
    potential: Potential,
    structures: Sequence[ase.Atoms],
    batch_size: int = 16,
    forces: bool = True,
    stress: bool | None = None,
) -> Predictions:
    """Predict energies (and forces, stress) of ``structures`` batch by batch.

    ``stress=None`` predicts stress when some structure has a reference stress.
    """
    structures = list(structures)
    if not structures:
        raise DataError("no structures to evaluate")
    if stress is None:
        stress = any(REF_STRESS in a.info for a in structures) and all(
            a.pbc.all() for a in structures
        )
    potential = potential.eval()
    e_pred, f_pred, s_pred = [], [], []
    for start in range(0, len(structures), batch_size):
        chunk = structures[start : start + batch_size]
        batch = AtomsBatch.from_atoms(chunk, dtype=potential.dtype)
        try:
            out = compute_properties(potential, batch, forces=forces, stress=stress)
        except DataError as exc:
            # name the structure in the whole data set, not in the chunk
            raise DataError(f"{exc} (structures {start}..{start + len(chunk) - 1})") from exc
        e_pred.append(out["energy"].detach().double().numpy())
        if forces:
            f_pred.append(out["forces"].detach().double().numpy())
        if stress:
            s_pred.append(out["stress"].detach().double().numpy())
    has_e = all(REF_ENERGY in a.info for a in structures)
    has_f = all(REF_FORCES in a.arrays for a in structures)
    has_s = any(REF_STRESS in a.info for a in structures)
    return Predictions(
        n_atoms=np.array([len(a) for a in structures]),
        energy_ref=np.array([a.info[REF_ENERGY] for a in structures], float) if has_e else None,
        energy_pred=np.concatenate(e_pred),
        forces_ref=np.concatenate([a.arrays[REF_FORCES] for a in structures]) if has_f else None,
        forces_pred=np.concatenate(f_pred) if forces else None,
        stress_ref=np.stack(
            [
                np.asarray(a.info[REF_STRESS], float).reshape(3, 3)
                if REF_STRESS in a.info
                else np.full((3, 3), np.nan)
                for a in structures
            ]
        )
        if has_s
        else None,
        stress_pred=np.concatenate(s_pred) if stress else None,
    )


def metrics_from_predictions(p: Predictions) -> dict[str, float | int]:
    """The metrics dict: n_structures, energy RMSE/MAE (meV/atom), force RMSE/MAE (eV/Å), ..."""
    out: dict[str, float | int] = {"n_structures": int(len(p.n_atoms))}
    if p.energy_ref is not None:
        err = (p.energy_pred - p.energy_ref) / p.n_atoms
        out["energy_rmse_mev_per_atom"] = float(np.sqrt(np.mean(err**2)) * 1000)
        out["energy_mae_mev_per_atom"] = float(np.mean(np.abs(err)) * 1000)
    if p.forces_ref is not None and p.forces_pred is not None:
        err = (p.forces_pred - p.forces_ref).ravel()
        out["force_rmse_ev_per_angstrom"] = float(np.sqrt(np.mean(err**2)))
        out["force_mae_ev_per_angstrom"] = float(np.mean(np.abs(err)))
    if p.stress_ref is not None and p.stress_pred is not None:
        err = (p.stress_pred - p.stress_ref).ravel()
        err = err[np.isfinite(err)]
        if err.size:
            out["stress_rmse_gpa"] = float(np.sqrt(np.mean(err**2)) / GPa)
            out["stress_mae_gpa"] = float(np.mean(np.abs(err)) / GPa)
    return out


def evaluate(
    potential: Potential, structures: Sequence[ase.Atoms], batch_size: int = 16
) -> tuple[dict[str, float | int], Predictions]:
    """Metrics and predictions of ``potential`` on ``structures`` (reference values REF_*)."""
    with torch.random.fork_rng():
        predictions = predict(potential, structures, batch_size=batch_size)
    return metrics_from_predictions(predictions), predictions


def format_metrics(metrics: dict[str, dict[str, float | int]]) -> str:
    """A small table: one row per data set."""
    header = f"{'set':<11}{'n':>6}{'E RMSE':>10}{'E MAE':>10}{'F RMSE':>10}{'F MAE':>10}"
    lines = [header, f"{'':<17}{'meV/atom':>10}{'meV/atom':>10}{'eV/Å':>10}{'eV/Å':>10}"]
    for name, m in metrics.items():
        if not isinstance(m, dict):
            continue

        def value(key, m=m):
            return f"{m[key]:10.3f}" if key in m else f"{'-':>10}"

        lines.append(
            f"{name:<11}{m['n_structures']:>6}"
            + value("energy_rmse_mev_per_atom")
            + value("energy_mae_mev_per_atom")
            + value("force_rmse_ev_per_angstrom")
            + value("force_mae_ev_per_angstrom")
        )
        if "stress_rmse_gpa" in m:
            lines[-1] += f"   stress RMSE {m['stress_rmse_gpa']:.3f} GPa"
    return "\n".join(lines)
