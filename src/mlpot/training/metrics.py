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


GROUP_BY_FORMULA = "formula"  # --by formula: group by reduced chemical formula (e.g. TiO2)


def group_labels(structures: Sequence[ase.Atoms], by: str) -> list[str]:
    """One label per structure: the value of ``atoms.info[by]`` or, for ``by="formula"``, the
    reduced formula, metals first (``Ti4O7`` for Ti8O14). Raises DataError naming the first
    structure without the key and the keys it has."""
    labels = []
    for i, atoms in enumerate(structures):
        if by == GROUP_BY_FORMULA:
            labels.append(atoms.get_chemical_formula(mode="metal", empirical=True))
        elif by in atoms.info:
            labels.append(str(atoms.info[by]))
        else:
            keys = ", ".join(sorted(k for k in atoms.info if not k.startswith("ref_"))) or "none"
            raise DataError(
                f"structure {i} has no info key {by!r} to group by (its keys: {keys}); "
                f"give one of those or {GROUP_BY_FORMULA!r}"
            )
    return labels


def _rows(values: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if values is None else values[rows]


def metrics_by_group(p: Predictions, labels: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """:func:`metrics_from_predictions` for each group of structures (``labels``: one per
    structure), sorted by label, each with ``energy_mean_error_mev_per_atom`` (model − reference;
    a group offset that a fit cannot remove points at its labels)."""
    labels = list(labels)
    if len(labels) != len(p.n_atoms):
        raise ValueError(f"{len(labels)} labels for {len(p.n_atoms)} structures")
    atom_starts = np.concatenate([[0], np.cumsum(p.n_atoms)])
    out = {}
    for label in sorted(set(labels)):
        index = np.array([i for i, x in enumerate(labels) if x == label])
        atoms = np.concatenate([np.arange(atom_starts[i], atom_starts[i + 1]) for i in index])
        part = Predictions(
            n_atoms=p.n_atoms[index],
            energy_ref=_rows(p.energy_ref, index),
            energy_pred=p.energy_pred[index],
            forces_ref=_rows(p.forces_ref, atoms),
            forces_pred=_rows(p.forces_pred, atoms),
            stress_ref=_rows(p.stress_ref, index),
            stress_pred=_rows(p.stress_pred, index),
        )
        metrics = metrics_from_predictions(part)
        if part.energy_ref is not None:
            err = (part.energy_pred - part.energy_ref) / part.n_atoms
            metrics["energy_mean_error_mev_per_atom"] = float(np.mean(err) * 1000)
        out[label] = metrics
    return out


def evaluate(
    potential: Potential, structures: Sequence[ase.Atoms], batch_size: int = 16
) -> tuple[dict[str, float | int], Predictions]:
    """Metrics and predictions of ``potential`` on ``structures`` (reference values REF_*)."""
    with torch.random.fork_rng():
        predictions = predict(potential, structures, batch_size=batch_size)
    return metrics_from_predictions(predictions), predictions


def format_metrics(metrics: dict[str, dict[str, float | int]], title: str = "set") -> str:
    """A small table: one row per data set (or group), with the mean energy error when given."""
    width = max(
        [11]
        + [
            len(str(k)) + 1
            for k, m in metrics.items()
            if isinstance(m, dict) and "n_structures" in m
        ]
    )
    mean = any(
        isinstance(m, dict) and "energy_mean_error_mev_per_atom" in m for m in metrics.values()
    )
    header = f"{title:<{width}}{'n':>6}{'E RMSE':>10}{'E MAE':>10}{'F RMSE':>10}{'F MAE':>10}"
    units = f"{'':<{width + 6}}{'meV/atom':>10}{'meV/atom':>10}{'eV/Å':>10}{'eV/Å':>10}"
    if mean:
        header += f"{'E mean':>10}"
        units += f"{'meV/atom':>10}"
    lines = [header, units]
    for name, m in metrics.items():
        if not isinstance(m, dict) or "n_structures" not in m:  # e.g. the polish's report
            continue

        def value(key, m=m):
            return f"{m[key]:10.3f}" if key in m else f"{'-':>10}"

        def signed(key, m=m):
            return f"{m[key]:+10.3f}" if key in m else f"{'-':>10}"

        lines.append(
            f"{name:<{width}}{m['n_structures']:>6}"
            + value("energy_rmse_mev_per_atom")
            + value("energy_mae_mev_per_atom")
            + value("force_rmse_ev_per_angstrom")
            + value("force_mae_ev_per_angstrom")
            + (signed("energy_mean_error_mev_per_atom") if mean else "")
        )
        if "stress_rmse_gpa" in m:
            lines[-1] += f"   stress RMSE {m['stress_rmse_gpa']:.3f} GPa"
    return "\n".join(lines)
