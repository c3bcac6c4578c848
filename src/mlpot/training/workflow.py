"""The library functions behind ``mlpot train`` and ``mlpot evaluate``.

:func:`train_from_files` reads the data, builds an HDNNP with defaults (elements from the data,
``ACSF.default`` symmetry functions, a moderate network), trains it with :class:`Trainer` and
writes into ``out_dir``: ``model.pt`` (best model, loadable with ``mlpot.load``),
``metrics.json``, ``log.csv``, ``parity.png``, ``learning_curve.png`` and ``checkpoint.pt``
(a later call with the same ``out_dir`` resumes from it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase
from ase.data import atomic_numbers, chemical_symbols

from mlpot.errors import DataError, ParameterError
from mlpot.training.config import Config, ModelConfig
from mlpot.training.metrics import evaluate, format_metrics, group_labels, metrics_by_group
from mlpot.training.trainer import Trainer, check_training_data, split_structures, write_json


def read_data(path: str | os.PathLike, config: Config) -> list[ase.Atoms]:
    """Read a structure file with the data section of ``config`` (energies required)."""
    from mlpot.data.io import read_structures

    d = config.data
    return read_structures(
        path,
        format=d.format,
        energy_key=d.energy_key,
        forces_key=d.forces_key,
        stress_key=d.stress_key,
        length_unit=d.length_unit,
        energy_unit=d.energy_unit,
        require_energy=True,
    )


def _element_numbers(symbols: Sequence[Any]) -> list[int]:
    out = []
    for s in symbols:
        if isinstance(s, int):
            out.append(s)
        elif str(s) in atomic_numbers:
            out.append(atomic_numbers[str(s)])
        else:
            raise ParameterError(f"model.elements: {s!r} is not a chemical symbol")
    return sorted(set(out))


def build_descriptor(model: ModelConfig, elements: Sequence[int]):
    """The ACSF of the model section: ``default`` or an explicit list of functions."""
    from mlpot.descriptors.acsf import ACSF, SymmetryFunction

    spec = model.symmetry_functions
    if spec in (None, "default"):
        return ACSF.default(list(elements), r_cut=model.cutoff, angular_cutoff=model.angular_cutoff)
    if isinstance(spec, dict) and "functions" in spec:
        return ACSF.from_config(spec)
    if not isinstance(spec, list):
        raise ParameterError(
            "model.symmetry_functions must be 'default' or a list of functions "
            "(mappings with kind, center, neighbors, r_cut, eta, ...)"
        )
    functions = []
    for i, item in enumerate(spec):
        item = dict(item)
        try:
            item["center"] = _element_numbers([item["center"]])[0]
            item["neighbors"] = tuple(_element_numbers([n])[0] for n in item["neighbors"])
            item.setdefault("r_cut", model.cutoff)
            functions.append(SymmetryFunction(**item))
        except (KeyError, TypeError) as exc:
            raise ParameterError(f"model.symmetry_functions[{i}]: {exc}") from exc
    return ACSF(functions, elements=list(elements))


def build_model(model: ModelConfig, elements: Sequence[int], seed: int):
    """An untrained HDNNP for ``elements`` (atomic numbers) from the model section."""
    from mlpot.models.hdnnp import HDNNP

    if model.elements:
        elements = _element_numbers(model.elements)
    descriptor = build_descriptor(model, elements)
    return HDNNP(
        descriptor,
        hidden_layers=list(model.hidden_layers),
        activation=model.activation,
        scaling=model.scaling,
        seed=seed,
        interaction=model.interaction,
    )


def train_from_files(
    train_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    test_path: str | os.PathLike | None = None,
    config: Config | None = None,
    seed: int | None = None,
    log=print,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """Train an HDNNP on ``train_path`` and write model, metrics, log and plots to ``out_dir``.

    Returns the metrics dict (as written to ``metrics.json``), or {} when stopped early by
    ``stop_after_epochs`` (checkpoint kept for resumption).
    """
    t_start = time.perf_counter()
    config = config or Config()
    train_all = read_data(train_path, config)
    test = read_data(test_path, config) if test_path is not None else None
    return train_structures(
        train_all,
        out_dir,
        test=test,
        config=config,
        seed=seed,
        log=log,
        stop_after_epochs=stop_after_epochs,
        source=str(train_path),
        extra={
            "train_data": str(Path(train_path).resolve()),
            "test_data": str(Path(test_path).resolve()) if test_path else None,
        },
        t_start=t_start,
    )


def train_structures(
    train_all: Sequence[ase.Atoms],
    out_dir: str | os.PathLike,
    test: Sequence[ase.Atoms] | None = None,
    config: Config | None = None,
    seed: int | None = None,
    log=print,
    stop_after_epochs: int | None = None,
    source: str = "training data",
    epoch_log_interval_s: float = 0.0,
    extra: dict[str, Any] | None = None,
    t_start: float | None = None,
) -> dict[str, Any]:
    """:func:`train_from_files` on structures in memory (reference values under REF_* keys).

    The validation split (``config.training.validation_fraction``) is taken from ``train_all``;
    ``test`` is only evaluated. ``extra`` is stored in ``model.pt`` beside the metrics.
    """
    t_start = time.perf_counter() if t_start is None else t_start
    config = config or Config()
    if seed is not None:
        config.training.seed = int(seed)
    config.training.validate()
    out_dir = Path(out_dir)
    train_all = list(train_all)
    check_training_data(train_all, config.training, source)
    elements = sorted({int(z) for a in train_all for z in a.numbers})
    c = config.training
    train_idx, val_idx = split_structures(train_all, c.validation_fraction, c.seed)
    train = [train_all[i] for i in train_idx]
    validation = [train_all[i] for i in val_idx]

    potential = build_model(config.model, elements, c.seed)
    angular = [f.r_cut for f in potential.descriptor.functions if f.is_angular]
    cutoffs = f"cutoff {potential.cutoff:g} Å" + (
        f", angular {max(angular):g} Å" if angular and max(angular) < potential.cutoff else ""
    )
    log(
        f"model: HDNNP for {', '.join(chemical_symbols[z] for z in potential.elements)}, "
        f"{potential.descriptor.max_features} symmetry functions ({cutoffs}), "
        f"hidden layers {list(config.model.hidden_layers)} {config.model.activation}"
    )
    trainer = Trainer(
        potential, c, out_dir=out_dir, log=log, epoch_log_interval_s=epoch_log_interval_s
    )
    result = trainer.fit(train, validation, stop_after_epochs=stop_after_epochs)
    if not result.finished:
        return {}
    return write_outputs(
        result,
        out_dir,
        {"train": train, "validation": validation, **({"test": list(test)} if test else {})},
        extra={
            **(extra or {}),
            "seed": c.seed,
            "config": config.to_dict(),
            "validation_indices": val_idx,
        },
        wall_time_s=result.elapsed_before_s + (time.perf_counter() - t_start),
        log=log,
    )


def write_outputs(
    result,
    out_dir: Path,
    data_sets: dict[str, list[ase.Atoms]],
    extra: dict[str, Any],
    wall_time_s: float,
    log=print,
) -> dict[str, Any]:
    """metrics.json, model.pt, parity.png and learning_curve.png of a finished training."""
    from mlpot.training.plots import learning_curve, parity_plot
    from mlpot.training.trainer import write_log_csv

    potential = result.potential
    metrics: dict[str, Any] = {}
    predictions = {}
    for name, structures in data_sets.items():
        if structures:
            metrics[name], predictions[name] = evaluate(potential, structures)
    metrics["wall_time_s"] = wall_time_s
    metrics["epochs"] = result.epochs_run
    metrics["best_epoch"] = result.best_epoch
    metrics["stopped_because"] = result.stopped_because
    if result.polish is not None:
        metrics["polish"] = result.polish
    potential.save(out_dir / "model.pt", extra={**extra, "metrics": metrics})
    write_json(out_dir / "metrics.json", metrics)
    write_log_csv(out_dir / "log.csv", result.history)
    parity_plot(predictions, out_dir / "parity.png")
    if result.history:
        learning_curve(result.history, out_dir / "learning_curve.png")
    log(format_metrics(metrics))
    log(f"wrote {out_dir / 'model.pt'}, metrics.json, log.csv, parity.png, learning_curve.png")
    return metrics


def evaluate_file(
    model_path: str | os.PathLike,
    data_path: str | os.PathLike,
    json_path: str | os.PathLike | None = None,
    config: Config | None = None,
    group_by: str | None = None,
) -> dict[str, Any]:
    """Metrics of a saved model on a data file; optionally written to ``json_path``.

    ``group_by``: an ``info`` key of the structures (e.g. ``config_type``) or ``"formula"``;
    then ``result["groups"]`` holds the metrics of each group, with the mean energy error.
    """
    import mlpot

    config = config or Config()
    potential = mlpot.load(model_path)
    structures = read_data(data_path, config)
    labels = None
    if group_by is not None:
        try:
            labels = group_labels(structures, group_by)
        except DataError as exc:
            raise DataError(f"{data_path}: {exc}") from exc
    metrics, predictions = evaluate(potential, structures)
    result = {"model": str(model_path), "data": str(data_path), "metrics": metrics}
    if labels is not None:
        result["group_by"] = group_by
        result["groups"] = metrics_by_group(predictions, labels)
    if json_path is not None:
        write_json(json_path, result)
    return result
