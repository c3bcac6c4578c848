"""Train any :class:`~mlpot.models.potential.Potential` on energies, forces and stress.

The loss of a minibatch of structures is

    L = w_E · mean_s((E_s^pred − E_s^ref) / n_s)²  +  w_F · mean_(a,x)(F_ax^pred − F_ax^ref)²
        + w_S · mean_(s,i,j)(σ_sij^pred − σ_sij^ref)²

(energy per atom in eV, forces in eV/Å, stress in eV/Å³; the stress term only over structures
with a reference stress). The validation loss that picks the best model and drives early
stopping is the same expression with the means taken over the whole validation set (every
structure counts alike, however the set is cut into evaluation batches). Neighbour lists of the
training and validation structures are built once. For descriptor potentials (an ``HDNNP``:
``potential.descriptor`` plus ``potential.atomic_energies``) the descriptors and
their derivatives with respect to the pair vectors are also computed once
(:mod:`mlpot.training.feature_cache`), so an epoch costs only the networks; other potentials run
through autograd every step.

Every epoch writes ``checkpoint.pt`` (model, optimiser, scheduler, random states, history,
best model so far) atomically; :meth:`Trainer.fit` with the same ``out_dir`` resumes from it and
ends with the same weights as a run that was never interrupted. The checkpoint records the
training settings and a SHA-256 of the training and validation structures with their reference
values (:func:`data_fingerprint`); one made with other settings or other data is refused, not
resumed.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import ase
import numpy as np
import torch

from mlpot._atomic import atomic_write_text
from mlpot.data.batch import REF_ENERGY, REF_FORCES, REF_STRESS, AtomsBatch
from mlpot.data.neighbors import NeighborList, neighbor_list, pair_vectors
from mlpot.errors import DataError, ParameterError
from mlpot.models.potential import Potential, atomic_torch_save, compute_properties
from mlpot.training.config import TrainerConfig

CHECKPOINT = "checkpoint.pt"
# floor of a feature's spread (sigma, max − min) relative to the largest of its element: a
# feature that barely varies in the training data (a narrow radial function centred below the
# shortest bond has sigma 1e-14 on mlearn Si) would otherwise be blown up by the scaling and
# turn a test structure with a slightly shorter bond into a wild extrapolation
FEATURE_SPREAD_FLOOR = 1e-2
LOG_COLUMNS = [
    "epoch",
    "train_loss",
    "train_energy_rmse",
    "train_force_rmse",
    "val_loss",
    "val_energy_rmse",
    "val_force_rmse",
    "lr",
    "epoch_time_s",
    "elapsed_s",
]


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def split_structures(
    structures: Sequence[ase.Atoms], validation_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Seeded split by structure: (train indices, validation indices), both sorted."""
    n = len(structures)
    n_val = int(round(validation_fraction * n))
    if validation_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def check_training_data(
    structures: Sequence[ase.Atoms], config: TrainerConfig, source: str = "training data"
) -> None:
    """Clear errors for data the loss cannot use (missing energies, forces, stress)."""
    if not structures:
        raise DataError(f"{source}: no structures")
    for i, atoms in enumerate(structures):
        if config.energy_weight > 0 and REF_ENERGY not in atoms.info:
            raise DataError(
                f"{source}: structure {i} has no reference energy; every training structure "
                "needs one (or set training.energy_weight: 0)"
            )
        if config.forces_weight > 0 and REF_FORCES not in atoms.arrays:
            raise DataError(
                f"{source}: structure {i} has no reference forces but training.forces_weight is "
                f"{config.forces_weight}; set forces_weight: 0 in the training section of the "
                "config (energy-only mode) or give data with forces"
            )
    if config.stress_weight > 0 and not any(REF_STRESS in a.info for a in structures):
        raise DataError(
            f"{source}: no structure has a reference stress but training.stress_weight is "
            f"{config.stress_weight}; set stress_weight: 0"
        )


def _collate(parts: Sequence[tuple[AtomsBatch, NeighborList]]) -> tuple[AtomsBatch, NeighborList]:
    """Concatenate single-structure batches and their neighbour lists."""
    batches = [b for b, _ in parts]
    offsets = np.concatenate([[0], np.cumsum([int(b.positions.shape[0]) for b in batches])])

    def cat(name):
        values = [getattr(b, name) for b in batches]
        return None if any(v is None for v in values) else torch.cat(values)

    batch = AtomsBatch(
        positions=cat("positions"),
        numbers=cat("numbers"),
        cell=cat("cell"),
        pbc=cat("pbc"),
        structure_index=torch.cat(
            [torch.full_like(b.structure_index, s) for s, b in enumerate(batches)]
        ),
        n_atoms=cat("n_atoms"),
        energy=cat("energy"),
        forces=cat("forces"),
        stress=cat("stress"),
    )
    nl = NeighborList(
        centers=torch.cat(
            [nl.centers + int(o) for (_, nl), o in zip(parts, offsets[:-1], strict=True)]
        ),
        neighbors=torch.cat(
            [nl.neighbors + int(o) for (_, nl), o in zip(parts, offsets[:-1], strict=True)]
        ),
        shifts=torch.cat([nl.shifts for _, nl in parts]),
        cutoff=parts[0][1].cutoff,
    )
    return batch, nl


class GraphEngine:
    """Generic engine: cached neighbour lists, autograd through the potential every step."""

    def __init__(self, potential: Potential, structures: Sequence[ase.Atoms], dtype: torch.dtype):
        self.potential = potential
        self.has_forces = all(REF_FORCES in a.arrays for a in structures)
        self.items = []
        for i, atoms in enumerate(structures):
            batch = AtomsBatch.from_atoms(atoms, dtype=dtype)
            try:
                potential.check_elements(batch)
            except DataError as exc:
                raise DataError(str(exc).replace("structure 0", f"structure {i}", 1)) from exc
            self.items.append((batch, neighbor_list(batch, potential.cutoff)))

    def __len__(self) -> int:
        return len(self.items)

    def run(
        self,
        indices: Sequence[int],
        forces: bool,
        stress: bool,
        create_graph: bool,
        train: bool = False,
    ) -> tuple[dict[str, torch.Tensor], AtomsBatch]:
        batch, nl = _collate([self.items[i] for i in indices])
        stress = stress and bool(batch.pbc.all())
        if not (forces or stress):  # energies only; keep the graph when training
            with torch.enable_grad() if train else torch.no_grad():
                self.potential.check_elements(batch)
                atomic = self.potential(batch, nl, pair_vectors(batch, nl))
                energy = atomic.new_zeros(batch.n_structures).index_add(
                    0, batch.structure_index, atomic
                )
            return {"energy": energy, "atomic_energies": atomic}, batch
        out = compute_properties(
            self.potential, batch, nl, forces=forces, stress=stress, create_graph=create_graph
        )
        return out, batch


def _make_engine(potential, structures, dtype, cache_features, derivatives=True):
    if cache_features in ("auto", True):
        from mlpot.training.feature_cache import FeatureEngine, supports_feature_cache

        if supports_feature_cache(potential):
            return FeatureEngine(potential, structures, dtype, derivatives=derivatives)
        if cache_features is True:
            raise ParameterError(
                f"training.cache_features: {type(potential).__name__} has no descriptor to cache"
            )
    return GraphEngine(potential, structures, dtype)


# --------------------------------------------------------------------------------------------
# loss
# --------------------------------------------------------------------------------------------
@dataclass
class _Sums:
    """Running sums of squared errors (for RMSE over an epoch)."""

    energy_se: float = 0.0
    n_energy: int = 0
    force_se: float = 0.0
    n_force: int = 0
    stress_se: float = 0.0
    n_stress: int = 0
    loss: float = 0.0
    n_batches: int = 0

    def energy_rmse_mev(self) -> float:
        return 1000 * math.sqrt(self.energy_se / self.n_energy) if self.n_energy else math.nan

    def force_rmse(self) -> float:
        return math.sqrt(self.force_se / self.n_force) if self.n_force else math.nan

    def loss_over_set(self, weights: tuple[float, float, float]) -> float:
        """The loss of the whole set: weighted mean squared errors over all its structures.

        Not the mean of the batch losses, which would weigh a short last batch (one structure
        of 33 in batches of 16) as much as a full one and make model selection noisy.
        """
        w_e, w_f, w_s = weights
        loss = 0.0
        if w_e > 0 and self.n_energy:
            loss += w_e * self.energy_se / self.n_energy
        if w_f > 0 and self.n_force:
            loss += w_f * self.force_se / self.n_force
        if w_s > 0 and self.n_stress:
            loss += w_s * self.stress_se / self.n_stress
        return loss


def _loss(
    out: dict[str, torch.Tensor],
    batch: AtomsBatch,
    weights: tuple[float, float, float],
    sums: _Sums,
    totals: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """Weighted mean squared errors of a batch, added to ``sums``.

    ``totals`` (the whole set's numbers of energies, force components and stress components)
    replace the batch's counts as denominators, so the batches' losses add up to the set's
    loss (the full-batch L-BFGS polish).
    """
    w_e, w_f, w_s = weights
    loss = out["energy"].new_zeros(())
    if batch.energy is not None:
        err = (out["energy"] - batch.energy) / batch.n_atoms.to(out["energy"].dtype)
        se = (err**2).sum()
        if w_e > 0:
            loss = loss + w_e * se / (err.numel() if totals is None else totals[0])
        sums.energy_se += float(se.detach())
        sums.n_energy += err.numel()
    if "forces" in out and batch.forces is not None:
        err = out["forces"] - batch.forces
        se = (err**2).sum()
        if w_f > 0:
            loss = loss + w_f * se / (err.numel() if totals is None else totals[1])
        sums.force_se += float(se.detach())
        sums.n_force += err.numel()
    if w_s > 0 and "stress" in out and batch.stress is not None:
        err = out["stress"] - batch.stress
        mask = torch.isfinite(err)
        if mask.any():
            se = (err[mask] ** 2).sum()
            loss = loss + w_s * se / (mask.sum() if totals is None else totals[2])
            sums.stress_se += float(se.detach())
            sums.n_stress += int(mask.sum())
    sums.loss += float(loss.detach())
    sums.n_batches += 1
    return loss


def _training_pass(engine, indices: Sequence[int], weights: tuple[float, float, float]):
    """Predictions of ``indices`` with the graph kept for the loss of ``weights``."""
    return engine.run(
        indices,
        forces=weights[1] > 0,
        stress=weights[2] > 0,
        create_graph=weights[1] > 0 or weights[2] > 0,
        train=True,
    )


def _to_float64(value):
    """Floating tensors in ``value`` (a tensor, AtomsBatch, dict or tuple) as float64."""
    if isinstance(value, torch.Tensor):
        return value.to(torch.float64) if value.is_floating_point() else value
    if isinstance(value, AtomsBatch):
        return dataclasses.replace(
            value, **{f.name: _to_float64(getattr(value, f.name)) for f in fields(value)}
        )
    if isinstance(value, dict):
        return {key: _to_float64(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_to_float64(item) for item in value)
    return value


# --------------------------------------------------------------------------------------------
# trainer
# --------------------------------------------------------------------------------------------
@dataclass
class TrainingResult:
    """What :meth:`Trainer.fit` returns."""

    potential: Potential
    history: list[dict[str, float]]
    best_epoch: int
    best_validation_loss: float
    epochs_run: int
    finished: bool
    wall_time_s: float
    stopped_because: str
    elapsed_before_s: float = 0.0  # training time of earlier (interrupted) calls
    polish: dict[str, Any] | None = None  # what the L-BFGS polish did (None: not run)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_log_csv(path: str | Path, history: Sequence[dict]) -> None:
    """Write the per-epoch log atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def data_fingerprint(structures: Sequence[ase.Atoms]) -> str:
    """SHA-256 of the structures and their reference values, in order (for checkpoints)."""
    digest = hashlib.sha256()
    for atoms in structures:
        parts = [
            atoms.numbers.astype(np.int64),
            np.asarray(atoms.positions, dtype=np.float64),
            np.asarray(atoms.cell[:], dtype=np.float64),
            np.asarray(atoms.pbc, dtype=np.int8),
            np.asarray(atoms.info.get(REF_ENERGY, np.nan), dtype=np.float64),
            np.asarray(atoms.arrays.get(REF_FORCES, np.empty(0)), dtype=np.float64),
            np.asarray(atoms.info.get(REF_STRESS, np.empty(0)), dtype=np.float64),
        ]
        for part in parts:
            digest.update(np.ascontiguousarray(part).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def _format_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Trainer:
    """Minibatch training of one potential with Adam/AdamW, schedule, early stopping.

    Args:
        potential: any Potential; ``potential.fit_statistics(train)`` is called before training.
        config: loss weights, optimiser, schedule, stopping (:class:`TrainerConfig`).
        out_dir: where ``checkpoint.pt`` and ``log.csv`` go (resumes when a checkpoint is there);
            None trains in memory only.
        log: called with one line per epoch (default: print to stdout).
        progress: draw a progress bar with ETA on stderr (default: when stderr is a terminal).
        epoch_log_interval_s: write an epoch line at most this often (seconds; the first, the
            last and every epoch of ``log.csv`` are kept regardless); 0 = every epoch.
    """

    def __init__(
        self,
        potential: Potential,
        config: TrainerConfig | None = None,
        out_dir: str | Path | None = None,
        log: Callable[[str], None] | None = None,
        progress: bool | None = None,
        epoch_log_interval_s: float = 0.0,
    ):
        self.config = config or TrainerConfig()
        self.config.validate()
        self.dtype = torch.float32 if self.config.dtype == "float32" else torch.float64
        self.potential = potential.to(self.dtype)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.log = log if log is not None else (lambda line: print(line, flush=True))
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.epoch_log_interval_s = float(epoch_log_interval_s)
        self._last_epoch_line = -float("inf")

    # --- schedule -----------------------------------------------------------------------
    def _lr(self, epoch: int, max_epochs: int, time_fraction: float = 0.0) -> float:
        """Learning rate of an epoch; ``time_fraction`` (elapsed / time_limit_s) moves the
        cosine/exponential decay forward when the time budget, not the epoch count, binds."""
        c = self.config
        base = c.learning_rate
        if c.scheduler in ("plateau", "constant"):
            return base
        if epoch < c.warmup_epochs:
            return base * (epoch + 1) / (c.warmup_epochs + 1)
        span = max(1, max_epochs - c.warmup_epochs)
        t = min(1.0, max((epoch - c.warmup_epochs) / span, time_fraction))
        if c.scheduler == "cosine":
            return base * (
                c.min_lr_factor + (1 - c.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * t))
            )
        return base * c.min_lr_factor**t  # exponential

    def _weights(
        self, epoch: int, max_epochs: int, time_fraction: float = 0.0
    ) -> tuple[float, float, float]:
        c = self.config
        w_e = c.energy_weight
        progress = _schedule_progress(epoch, max_epochs, time_fraction)
        if c.energy_weight_final is not None and progress >= 1 - c.final_phase_fraction:
            w_e = c.energy_weight_final
        return w_e, c.forces_weight, c.stress_weight

    def _selection_weights(self) -> tuple[float, float, float]:
        c = self.config
        w_e = c.energy_weight if c.energy_weight_final is None else c.energy_weight_final
        return w_e, c.forces_weight, c.stress_weight

    # --- evaluation ---------------------------------------------------------------------
    def _evaluate(self, engine, weights) -> _Sums:
        sums = _Sums()
        c = self.config
        forces = c.forces_weight > 0 or engine_has_forces(engine)
        stress = c.stress_weight > 0
        size = max(c.batch_size, 16)
        for start in range(0, len(engine), size):
            indices = list(range(start, min(len(engine), start + size)))
            out, batch = engine.run(indices, forces=forces, stress=stress, create_graph=False)
            _loss(out, batch, weights, sums)
        return sums

    # --- the loop -----------------------------------------------------------------------
    def fit(
        self,
        train: Sequence[ase.Atoms],
        validation: Sequence[ase.Atoms] | None = None,
        stop_after_epochs: int | None = None,
    ) -> TrainingResult:
        """Train; returns the best model (lowest validation loss) loaded into the potential.

        ``validation=None`` splits ``config.validation_fraction`` of ``train`` off (seeded, by
        structure). ``stop_after_epochs`` stops after that many epochs *in this call* as if the
        process were killed (for tests of resumption); the checkpoint stays.
        """
        c = self.config
        train = list(train)
        if validation is None:
            train_idx, val_idx = split_structures(train, c.validation_fraction, c.seed)
            validation = [train[i] for i in val_idx]
            train = [train[i] for i in train_idx]
        validation = list(validation)
        check_training_data(train, c, "training data")
        if validation:
            check_training_data(validation, c, "validation data")

        _seed_everything(c.seed)
        t_setup = time.perf_counter()
        train_derivatives = c.forces_weight > 0 or c.stress_weight > 0
        train_engine = _make_engine(
            self.potential, train, self.dtype, c.cache_features, train_derivatives
        )
        val_derivatives = train_derivatives or all(REF_FORCES in a.arrays for a in validation)
        val_engine = (
            _make_engine(self.potential, validation, self.dtype, c.cache_features, val_derivatives)
            if validation
            else None
        )
        fit_statistics = getattr(self.potential, "fit_statistics", None)
        if fit_statistics is not None:
            cached = getattr(train_engine, "features_per_structure", None)
            if cached is not None:  # reuse the cached descriptors: no second descriptor pass
                fit_statistics(train, features=cached(), min_relative_spread=FEATURE_SPREAD_FLOOR)
            else:
                fit_statistics(train)
        self.potential.to(self.dtype)
        setup_s = time.perf_counter() - t_setup

        max_epochs = c.epochs_for(len(train))
        patience = c.patience_for(max_epochs)
        params = [p for p in self.potential.parameters() if p.requires_grad]
        opt_class = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        try:  # one fused kernel per step instead of a loop of small ops (same update rule)
            optimizer = opt_class(
                params, lr=c.learning_rate, weight_decay=c.weight_decay, fused=True
            )
        except (RuntimeError, TypeError, ValueError):
            optimizer = opt_class(params, lr=c.learning_rate, weight_decay=c.weight_decay)
        plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=c.plateau_factor, patience=c.plateau_patience
            )
            if c.scheduler == "plateau"
            else None
        )
        generator = torch.Generator().manual_seed(c.seed)

        # exponential moving average of the trained weights (None: off)
        ema = [p.detach().clone() for p in params] if c.ema_decay > 0 else None
        state = {
            "epoch": 0,
            "steps": 0,
            "history": [],
            "best_loss": math.inf,
            "best_epoch": -1,
            "best_state": None,
            "since_best": 0,
            "elapsed_s": 0.0,
            "finished": False,
            "stopped_because": "",
        }
        checkpoint_path = self.out_dir / CHECKPOINT if self.out_dir else None
        data_sha256 = (  # what a checkpoint must match to be resumed
            data_fingerprint([*train, *validation]) + f":{len(train)}"
            if checkpoint_path is not None
            else None
        )
        if checkpoint_path is not None and checkpoint_path.exists():
            saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
            if saved.get("trainer_config") != asdict(c):
                raise ParameterError(
                    f"{checkpoint_path}: this checkpoint was made with different training "
                    f"settings ({_settings_difference(saved.get('trainer_config'), asdict(c))}); "
                    "use a new --out folder or delete the checkpoint to start over"
                )
            if saved.get("data_sha256", data_sha256) != data_sha256:
                raise ParameterError(
                    f"{checkpoint_path}: this checkpoint was made with different training or "
                    "validation structures; use a new --out folder or delete the checkpoint "
                    "to start over"
                )
            self.potential.load_state_dict(saved["model_state"])
            optimizer.load_state_dict(saved["optimizer"])
            if plateau is not None and saved.get("plateau") is not None:
                plateau.load_state_dict(saved["plateau"])
            generator.set_state(saved["generator"])
            torch.set_rng_state(saved["torch_rng"])
            np.random.set_state(saved["numpy_rng"])
            random.setstate(saved["python_rng"])
            if ema is not None:
                for average, value in zip(ema, saved["ema"], strict=True):
                    average.copy_(value)
            state.update({k: saved[k] for k in state})
            self.log(f"resuming from {checkpoint_path} after epoch {state['epoch']}")
        else:
            self.log(
                f"training on {len(train)} structures ({sum(len(a) for a in train)} atoms), "
                f"validating on {len(validation)}; {max_epochs} epochs at most, batch size "
                f"{c.batch_size}, {sum(p.numel() for p in params)} parameters, "
                f"{type(train_engine).__name__} set up in {setup_s:.1f} s"
            )

        selection = self._selection_weights()
        # the time budget covers set-up and epochs, but the epochs get at least a quarter of it
        training_budget_s = (
            max(c.time_limit_s - setup_s, 0.25 * c.time_limit_s) if c.time_limit_s else None
        )
        epochs_this_call = 0
        t_call = time.perf_counter()
        elapsed_before = state["elapsed_s"]
        # the epoch loop on training.threads intra-op threads (see TrainerConfig)
        threads_before = torch.get_num_threads()
        if c.threads is not None:
            torch.set_num_threads(c.threads)
        try:
            while not state["finished"]:
                epoch = state["epoch"]
                if epoch >= max_epochs:
                    state["finished"], state["stopped_because"] = True, "max_epochs"
                    break
                if stop_after_epochs is not None and epochs_this_call >= stop_after_epochs:
                    break
                t0 = time.perf_counter()
                # the schedule follows elapsed / budget only when the budget binds (the epochs at
                # the pace so far would not fit in it), so unhurried runs stay reproducible
                time_fraction = 0.0
                if training_budget_s is not None and epoch > 0:
                    projected_s = state["elapsed_s"] / epoch * max_epochs
                    if projected_s > training_budget_s:
                        time_fraction = state["elapsed_s"] / training_budget_s
                lr = (
                    self._lr(epoch, max_epochs, time_fraction)
                    if plateau is None
                    else optimizer.param_groups[0]["lr"]
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                weights = self._weights(epoch, max_epochs, time_fraction)
                self.potential.train()
                sums = _Sums()
                order = torch.randperm(len(train_engine), generator=generator).tolist()
                n_batches = -(-len(order) // c.batch_size)
                for b in range(n_batches):
                    indices = order[b * c.batch_size : (b + 1) * c.batch_size]
                    out, batch = _training_pass(train_engine, indices, weights)
                    loss = _loss(out, batch, weights, sums)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    state["steps"] += 1
                    if ema is not None:
                        n = state["steps"]
                        decay = min(c.ema_decay, (1.0 + n) / (10.0 + n))
                        with torch.no_grad():
                            for average, param in zip(ema, params, strict=True):
                                average.lerp_(param, 1.0 - decay)
                    if self.progress:
                        self._draw_progress(
                            epoch, max_epochs, b + 1, n_batches, state, t0, training_budget_s
                        )
                self.potential.eval()
                raw = _swap_weights(params, ema) if ema is not None else None  # evaluate the EMA
                val = self._evaluate(val_engine, selection) if val_engine is not None else None
                monitored = (
                    val.loss_over_set(selection) if val is not None else sums.loss / sums.n_batches
                )
                if plateau is not None:
                    plateau.step(monitored)
                epoch_time = time.perf_counter() - t0
                state["elapsed_s"] = elapsed_before + time.perf_counter() - t_call
                row = {
                    "epoch": epoch + 1,
                    "train_loss": sums.loss / sums.n_batches,
                    "train_energy_rmse": sums.energy_rmse_mev(),
                    "train_force_rmse": sums.force_rmse(),
                    "val_loss": monitored if val is not None else math.nan,
                    "val_energy_rmse": val.energy_rmse_mev() if val is not None else math.nan,
                    "val_force_rmse": val.force_rmse() if val is not None else math.nan,
                    "lr": lr,
                    "epoch_time_s": epoch_time,
                    "elapsed_s": state["elapsed_s"],
                }
                state["history"].append(row)
                state["epoch"] = epoch + 1
                # best model and early stopping only in the late part of the schedule: early
                # epochs at a high learning rate can score well on a small validation set whose
                # loss one unusual structure dominates, yet be far from trained
                time_done = state["elapsed_s"] / training_budget_s if time_fraction > 0 else 0.0
                # with an energy stage the model is chosen within it (before it the energies are not
                # refined yet, and a flat validation loss can make an earlier epoch win by noise);
                # early stopping counts only selectable epochs, so it too acts within the stage
                # (only its later part: its first epochs' weight average still holds the
                # previous stage's weights, and on mlearn Si seed 1 the stage's start won by a
                # validation loss the stage's forces raised more than its energies lowered,
                # testing at 4.85 meV/atom where the stage's end tested at 3.31)
                progress = _schedule_progress(epoch + 1, max_epochs, time_done)
                staged = c.energy_weight_final not in (None, c.energy_weight)
                in_stage = not staged or (
                    weights[0] != c.energy_weight
                    and progress >= 1 - c.final_phase_fraction * (1 - c.stage_select_after)
                )
                selecting = progress >= c.select_best_after and in_stage
                improved = selecting and monitored < state["best_loss"]
                if improved:
                    state["best_loss"] = monitored
                    state["best_epoch"] = epoch + 1
                    state["best_state"] = copy.deepcopy(self.potential.state_dict())
                    state["since_best"] = 0
                elif selecting:
                    state["since_best"] += 1
                if raw is not None:  # back to the raw weights for the optimiser
                    _swap_weights(params, raw)
                remaining = (
                    (max_epochs - state["epoch"]) * state["elapsed_s"] / max(1, state["epoch"])
                )
                if training_budget_s is not None:
                    remaining = max(0.0, min(remaining, training_budget_s - state["elapsed_s"]))
                now = time.perf_counter()
                if (
                    now - self._last_epoch_line >= self.epoch_log_interval_s
                    or remaining <= epoch_time
                    or epoch == 0
                ):
                    self._last_epoch_line = now
                    if self.progress:
                        sys.stderr.write("\r\033[K")
                    self.log(
                        f"epoch {epoch + 1:4d}/{max_epochs}  train E "
                        f"{row['train_energy_rmse']:8.3f} meV/atom  F "
                        f"{row['train_force_rmse']:7.4f} eV/Å | val E "
                        f"{row['val_energy_rmse']:8.3f}  F {row['val_force_rmse']:7.4f} | "
                        f"lr {lr:.2e} "
                        f"| {epoch_time:5.1f} s  ETA {_format_time(remaining)}"
                        + ("  *" if improved else "")
                    )
                if patience is not None and state["since_best"] >= patience:
                    state["finished"], state["stopped_because"] = True, "early_stopping"
                elif training_budget_s is not None and (
                    state["elapsed_s"] + epoch_time >= training_budget_s
                ):  # the next epoch would overrun the budget
                    state["finished"], state["stopped_because"] = True, "time_limit"
                elif state["epoch"] >= max_epochs:
                    state["finished"], state["stopped_because"] = True, "max_epochs"
                epochs_this_call += 1
                if self.out_dir is not None:
                    self._write_checkpoint(
                        checkpoint_path, state, optimizer, plateau, generator, ema, data_sha256
                    )
                    write_log_csv(self.out_dir / "log.csv", state["history"])
        finally:
            torch.set_num_threads(threads_before)

        if state["finished"] and state["best_state"] is None and state["history"]:
            # no epoch could be chosen (a run too short to reach its energy stage): the last one
            if ema is not None:
                _swap_weights(params, ema)
            state["best_state"] = copy.deepcopy(self.potential.state_dict())
            state["best_epoch"] = state["epoch"]
            state["best_loss"] = state["history"][-1]["val_loss"]
        polish = None
        if state["finished"] and state["best_state"] is not None:
            self.potential.load_state_dict(state["best_state"])
            self.log(
                f"stopped ({state['stopped_because']}) after {state['epoch']} epochs; best "
                f"epoch {state['best_epoch']}, validation loss {state['best_loss']:.4g}"
            )
            left_s = (
                None
                if training_budget_s is None
                else training_budget_s - (elapsed_before + time.perf_counter() - t_call)
            )
            if c.polish_iterations > 0 and val_engine is None:
                # the validation loss is what keeps the polish from fitting noise
                self.log("polish skipped: no validation structures to choose its iterate by")
            elif c.polish_iterations > 0 and left_s is not None and left_s <= 0:
                self.log("polish skipped: the time budget (training.time_limit_s) is spent")
            elif c.polish_iterations > 0:
                if c.threads is not None:
                    torch.set_num_threads(c.threads)
                try:
                    polish = self._polish(train_engine, val_engine, params, left_s)
                finally:
                    torch.set_num_threads(threads_before)
            self.potential.to(torch.float64)  # the model is used (and saved) in float64
        self.potential.eval()
        return TrainingResult(
            potential=self.potential,
            history=state["history"],
            best_epoch=state["best_epoch"],
            best_validation_loss=state["best_loss"],
            epochs_run=state["epoch"],
            finished=state["finished"],
            wall_time_s=state["elapsed_s"],
            stopped_because=state["stopped_because"],
            elapsed_before_s=elapsed_before,
            polish=polish,
        )

    def _polish(self, train_engine, val_engine, params, budget_s: float | None) -> dict:
        """Full-batch L-BFGS from the loaded model on the last stage's loss (see
        ``TrainerConfig.polish_iterations``); loads the iterate with the lowest validation
        loss and says what it did."""
        c = self.config
        weights = self._selection_weights()
        chunk = max(c.batch_size, 16)
        t0 = time.perf_counter()
        # in float64: in float32 the line search stalls once the loss changes by less than its
        # rounding (TiO2: after ~170 iterations at 3.03 meV/atom; in float64 2.56 after 540)
        self.potential.to(torch.float64)
        for engine in (train_engine, val_engine):
            if engine is not None:
                for i, item in enumerate(engine.items):  # one at a time: no second full copy
                    engine.items[i] = _to_float64(item)

        def set_loss(engine) -> float:
            return self._evaluate(engine, weights).loss_over_set(weights)

        counts = self._evaluate(train_engine, weights)  # the number of values of each kind
        totals = (counts.n_energy, counts.n_force, counts.n_stress)
        best_loss, best_iteration = set_loss(val_engine), 0
        best_state = copy.deepcopy(self.potential.state_dict())
        start_loss = best_loss
        step = 20  # iterations between validations
        optimizer = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=step,
            history_size=50,
            line_search_fn="strong_wolfe",
            tolerance_grad=0.0,  # stop on the iteration count, patience or budget only
            tolerance_change=0.0,
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=False)
            sums = _Sums()
            for start in range(0, len(train_engine), chunk):
                indices = list(range(start, min(len(train_engine), start + chunk)))
                out, batch = _training_pass(train_engine, indices, weights)
                _loss(out, batch, weights, sums, totals).backward()
            return torch.tensor(sums.loss, dtype=torch.float64)

        done, stopped = 0, "iterations"
        self.potential.train()
        while done < c.polish_iterations:
            optimizer.param_groups[0]["max_iter"] = min(step, c.polish_iterations - done)
            optimizer.step(closure)
            done += optimizer.param_groups[0]["max_iter"]
            self.potential.eval()
            loss = set_loss(val_engine)
            self.potential.train()
            improved = math.isfinite(loss) and loss < best_loss
            if improved:
                best_loss, best_iteration = loss, done
                best_state = copy.deepcopy(self.potential.state_dict())
            self.log(
                f"polish (L-BFGS) {done:5d}/{c.polish_iterations}  validation loss {loss:.5g}"
                + ("  *" if improved else "")
            )
            if not math.isfinite(loss):
                stopped = "non_finite"
                break
            if done - best_iteration >= c.polish_patience:
                stopped = "patience"
                break
            elapsed = time.perf_counter() - t0
            if budget_s is not None and elapsed * (done + step) / done > budget_s:
                stopped = "time_limit"
                break
        self.potential.load_state_dict(best_state)
        self.potential.eval()
        self.log(
            f"polish: {done} iterations ({stopped}); best at {best_iteration}, "
            f"loss {start_loss:.5g} -> {best_loss:.5g}"
        )
        return {
            "iterations": done,
            "best_iteration": best_iteration,
            "stopped_because": stopped,
            "loss_before": start_loss,
            "loss_after": best_loss,
            "wall_time_s": time.perf_counter() - t0,
        }

    def _write_checkpoint(
        self, path, state, optimizer, plateau, generator, ema=None, data_sha256=None
    ) -> None:
        payload = dict(state)
        payload.update(
            {
                "ema": [t.detach().clone() for t in ema] if ema is not None else None,
                "trainer_config": asdict(self.config),
                "data_sha256": data_sha256,
                "model_kind": type(self.potential).__name__,
                "model_config": self.potential.get_config(),
                "model_state": self.potential.state_dict(),
                "optimizer": optimizer.state_dict(),
                "plateau": plateau.state_dict() if plateau is not None else None,
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(),
                "python_rng": random.getstate(),
            }
        )
        atomic_torch_save(payload, path)

    def _draw_progress(self, epoch, max_epochs, done, total, state, t0, budget_s=None) -> None:
        """One line on stderr: overall progress (epochs or time budget) and the ETA."""
        this = time.perf_counter() - t0
        elapsed = state["elapsed_s"] + this
        per_epoch = state["elapsed_s"] / state["epoch"] if state["epoch"] else this * total / done
        remaining = per_epoch * (max_epochs - epoch) - this
        fraction = (epoch + done / total) / max_epochs
        if budget_s:
            remaining = min(remaining, budget_s - elapsed)
            fraction = max(fraction, elapsed / budget_s)
        width = 24
        filled = min(width, int(width * fraction))
        sys.stderr.write(
            f"\r\033[Ktraining [{'#' * filled}{'.' * (width - filled)}] epoch "
            f"{epoch + 1}/{max_epochs} batch {done}/{total}  ETA {_format_time(max(remaining, 0))}"
        )
        sys.stderr.flush()


def _swap_weights(params: list[torch.Tensor], values: list[torch.Tensor]) -> list[torch.Tensor]:
    """Put ``values`` into ``params`` in place; returns the previous values."""
    previous = [p.detach().clone() for p in params]
    with torch.no_grad():
        for param, value in zip(params, values, strict=True):
            param.copy_(value)
    return previous


def _settings_difference(saved: dict | None, current: dict, most: int = 4) -> str:
    """The settings that differ, as ``key: checkpoint → now`` (``missing`` where a checkpoint
    of another mlpot version lacks one), at most ``most`` of them named."""
    saved = saved or {}

    def show(settings: dict, key: str) -> str:
        return repr(settings[key]) if key in settings else "missing"

    keys = sorted(k for k in set(saved) | set(current) if saved.get(k, ...) != current.get(k, ...))
    shown = [
        f"training.{k}: {show(saved, k)} in the checkpoint, {show(current, k)} now"
        for k in keys[:most]
    ]
    if len(keys) > most:
        shown.append(f"{len(keys) - most} more")
    return "; ".join(shown)


def _schedule_progress(epoch: int, max_epochs: int, time_fraction: float) -> float:
    """How far through the schedule: epochs done / max_epochs, or the time-budget fraction
    when the budget binds (whichever is further)."""
    return max(epoch / max(1, max_epochs), time_fraction)


def engine_has_forces(engine) -> bool:
    """Whether every structure behind an engine has reference forces."""
    return bool(getattr(engine, "has_forces", False))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
