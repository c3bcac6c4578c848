"""Training configuration: every knob of ``mlpot train`` with a default that works.

A YAML file given with ``mlpot train --config FILE.yaml`` has up to three sections; any key left
out keeps its default (``mlpot train --print-config`` prints them all):

``data:``
    ``format`` (ASE format name or ``n2p2``; default: guess from the file), ``energy_key``,
    ``forces_key``, ``stress_key`` (names of the reference values in the file; default: guess),
    ``length_unit`` (``angstrom``/``bohr``) and ``energy_unit`` (``ev``/``hartree``) of the file
    (converted to Å and eV on reading).

``model:`` (an HDNNP on ACSF descriptors)
    ``elements`` (chemical symbols; default: those in the training data), ``cutoff`` (Å, 6.0),
    ``angular_cutoff`` (Å, of the default set's angular functions; ``null`` = 0.75 ``cutoff``),
    ``symmetry_functions`` (``default`` = ``ACSF.default(elements, cutoff, angular_cutoff)``,
    or a list of mappings with the fields of
    :class:`~mlpot.descriptors.acsf.SymmetryFunction` where ``center``/``neighbors`` may be
    symbols), ``hidden_layers`` ([64, 64]), ``activation`` (``shifted_softplus``,
    ln(1 + eˣ) − ln 2 as in SchNet; on mlearn Si, TiO2 and n2p2's water and Cu2S it gave lower
    energy and force errors than ``tanh``, see benchmarks/README.md, session 7), ``scaling``
    (feature scaling, ``standard``), ``interaction`` (``null``: the plain HDNNP; or
    ``{channels: 16, n_radial: 8, cutoff: 6.0}``: one message-passing step,
    :class:`~mlpot.models.hdnnp.EnvironmentMessages`, that feeds each atom's network with its
    neighbours' embedded descriptors as well; not exportable to n2p2; benchmarks/README.md,
    session 20).

``training:``
    ``seed`` (0), ``dtype`` (``float32`` or ``float64``), ``energy_weight`` (1.0, on the MSE of
    energy per atom, (eV/atom)²), ``forces_weight`` (on the MSE of force components, (eV/Å)²;
    0 = energy-only training), ``stress_weight`` (on the MSE of stress components, (eV/Å³)²,
    used only for structures that have a reference stress), ``batch_size`` (structures per
    minibatch), ``optimizer`` (``adamw``, or ``adam``), ``learning_rate``, ``weight_decay``
    (0.01: AdamW's decoupled decay w ← w − lr·wd·w, PyTorch's default for AdamW; it keeps the
    weights small and the fit smooth where the data are sparse: on mlearn Si the test force
    error of a long schedule went from 0.157 to 0.131 eV/Å; with ``adam`` it is Adam's L2
    term instead, so set 0 for plain Adam),
    ``scheduler`` (``cosine``: linear warm-up then cosine decay to ``learning_rate *
    min_lr_factor``; ``plateau``: ReduceLROnPlateau on the validation loss; ``exponential``;
    ``constant``), ``warmup_epochs``, ``min_lr_factor``, ``plateau_patience``,
    ``plateau_factor``, ``max_epochs`` (``auto``: enough epochs for ``target_steps`` optimiser
    steps, clamped to [``min_auto_epochs``, ``max_auto_epochs``]), ``target_steps``,
    ``early_stopping_patience`` (epochs without improvement of the validation loss; ``auto`` =
    a quarter of ``max_epochs``, at least 20; ``null`` = never; with an energy stage
    (``energy_weight_final``) it acts only within that stage, counted from the stage's first
    selectable epoch (``stage_select_after``), so the stage always runs; the best model is then
    chosen within the stage too),
    ``select_best_after`` (0.5:
    the best model by validation loss is chosen, and early stopping counts, only once this
    fraction of the schedule (epochs or time budget) has passed; before it the learning rate is
    high and a small validation set can favour an untrained model), ``stage_select_after``
    (0.5: with an energy stage, the best model is chosen, and early stopping counts, only in the
    stage's part after this fraction of it; at its start the weight average still holds the
    earlier weights, and a validation loss that the stage's forces raise more than its energies
    lower picked that start on mlearn Si seed 1: 4.85 meV/atom on the test set where the
    stage's end gave 3.31), ``validation_fraction`` (seeded
    split by structure, 0.1), ``time_limit_s`` (wall-clock budget of the fit, set-up
    included, 720 s; the epochs get at least a quarter of it: the cosine decay is compressed
    to end within it and training stops cleanly; ``null`` = no budget),
    ``cache_features`` (``auto``: for descriptor potentials, precompute descriptors and their
    derivatives once instead of every epoch), ``energy_weight_final`` (energy weight in the last
    ``final_phase_fraction`` of the epochs, a MACE-like second stage that sharpens energies,
    100 by default since forces (weight 1.0) dominate the loss before it;
    ``null`` = keep ``energy_weight``), ``ema_decay`` (0.99: validation, best-model selection
    and the saved model use an exponential moving average of the weights over optimiser steps,
    w_ema ← d w_ema + (1 − d) w with d = min(ema_decay, (1 + n) / (10 + n)) after n steps, as
    NequIP and MACE do; it smooths the noise of small minibatches; 0 = the raw weights),
    ``threads`` (intra-op threads of the epoch loop, 1; set-up and evaluation keep torch's
    setting; ``null`` = torch's setting: the ops of a minibatch of a few small structures are
    too small to share, and with idle OpenMP threads waiting passively, as the ``mlpot``
    command sets, two threads made an mlearn Si training step slower than one (12.5 against
    10.5 ms) and the demo's epochs 1.6-2x slower; for minibatches of thousands of atoms on
    many cores raise it), ``polish_iterations`` (1000; 0 = off: after the schedule, refine
    the chosen model by full-batch L-BFGS (strong-Wolfe line search, float64) on the last
    stage's loss for up to this many iterations, keeping the iterate with the lowest
    validation loss, the schedule's model included, so where nothing beats it the model is
    unchanged; skipped without validation structures; it counts against ``time_limit_s``,
    and a resumed run repeats it from the same model to the same result. Adam's minibatch
    noise leaves the energies short of the minimum: on TiO2 the test error went from 3.78
    to 2.67 meV/atom (forces 0.095 to 0.093 eV/Å), on mlearn Si seed 0 from 4.13 to 3.45
    and seed 1 from 3.33 to 3.78 (forces 0.118 to 0.121 and 0.114 to 0.116); on n2p2's
    water and Cu2S and the demo's Si set nothing beat the schedule's model;
    benchmarks/README.md, session 18),
    ``polish_patience`` (stop the polish after this many iterations without a lower
    validation loss, 100).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlpot.errors import ParameterError


@dataclass
class DataConfig:
    """How to read the structure files (see module docstring)."""

    format: str | None = None
    energy_key: str | None = None
    forces_key: str | None = None
    stress_key: str | None = None
    length_unit: str = "angstrom"
    energy_unit: str = "ev"


@dataclass
class ModelConfig:
    """The HDNNP that ``mlpot train`` builds (see module docstring)."""

    elements: list[str] | None = None
    cutoff: float = 6.0
    angular_cutoff: float | None = None
    symmetry_functions: Any = "default"
    hidden_layers: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "shifted_softplus"
    scaling: str = "standard"
    interaction: dict | None = None


@dataclass
class TrainerConfig:
    """Loss weights, optimiser, schedule and stopping (see module docstring)."""

    seed: int = 0
    dtype: str = "float32"
    energy_weight: float = 1.0
    forces_weight: float = 1.0
    stress_weight: float = 0.0
    energy_weight_final: float | None = 100.0
    final_phase_fraction: float = 0.2
    batch_size: int = 4
    optimizer: str = "adamw"
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    scheduler: str = "cosine"
    warmup_epochs: int = 2
    min_lr_factor: float = 0.01
    plateau_patience: int = 10
    plateau_factor: float = 0.5
    max_epochs: int | str = "auto"
    target_steps: int = 60000
    min_auto_epochs: int = 30
    max_auto_epochs: int = 2000
    early_stopping_patience: int | str | None = "auto"
    select_best_after: float = 0.5
    stage_select_after: float = 0.5
    validation_fraction: float = 0.1
    time_limit_s: float | None = 720.0
    cache_features: bool | str = "auto"
    ema_decay: float = 0.99
    threads: int | None = 1
    polish_iterations: int = 1000
    polish_patience: int = 100

    def validate(self) -> None:
        """Raise ParameterError on a value that cannot work."""
        if self.dtype not in ("float32", "float64"):
            raise ParameterError(f"training.dtype must be float32 or float64, got {self.dtype!r}")
        for name in ("energy_weight", "forces_weight", "stress_weight"):
            if getattr(self, name) < 0:
                raise ParameterError(f"training.{name} must be >= 0, got {getattr(self, name)}")
        if self.energy_weight == 0 and self.forces_weight == 0 and self.stress_weight == 0:
            raise ParameterError("all loss weights are zero: set training.energy_weight > 0")
        if self.batch_size < 1:
            raise ParameterError(f"training.batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.validation_fraction < 1:
            raise ParameterError(
                f"training.validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.optimizer not in ("adam", "adamw"):
            raise ParameterError(
                f"training.optimizer must be adam or adamw, got {self.optimizer!r}"
            )
        if self.scheduler not in ("cosine", "plateau", "exponential", "constant"):
            raise ParameterError(
                "training.scheduler must be cosine, plateau, exponential or constant, "
                f"got {self.scheduler!r}"
            )
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ParameterError(f"training.threads must be >= 1 or null, got {self.threads!r}")
        if not 0 <= self.ema_decay < 1:
            raise ParameterError(f"training.ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("polish_iterations", "polish_patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ParameterError(f"training.{name} must be an integer >= 0, got {value!r}")
        if not 0 <= self.stage_select_after < 1:
            raise ParameterError(
                f"training.stage_select_after must be in [0, 1), got {self.stage_select_after}"
            )
        if not 0 <= self.select_best_after <= 1:
            raise ParameterError(
                f"training.select_best_after must be in [0, 1], got {self.select_best_after}"
            )
        if not self.learning_rate > 0:
            raise ParameterError(f"training.learning_rate must be > 0, got {self.learning_rate}")
        if self.max_epochs != "auto" and (
            not isinstance(self.max_epochs, int) or self.max_epochs < 1
        ):
            raise ParameterError(
                f"training.max_epochs must be 'auto' or >= 1, got {self.max_epochs}"
            )

    def epochs_for(self, n_train_structures: int) -> int:
        """The number of epochs: ``max_epochs`` or, when auto, scaled by the data size."""
        if self.max_epochs != "auto":
            return int(self.max_epochs)
        batches = max(1, -(-n_train_structures // self.batch_size))
        epochs = -(-self.target_steps // batches)
        return int(min(self.max_auto_epochs, max(self.min_auto_epochs, epochs)))

    def patience_for(self, max_epochs: int) -> int | None:
        if self.early_stopping_patience is None:
            return None
        if self.early_stopping_patience == "auto":
            return max(20, max_epochs // 4)
        return int(self.early_stopping_patience)


@dataclass
class Config:
    """All of ``mlpot train``'s settings: data, model and training sections."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, source: str = "config") -> Config:
        raw = raw or {}
        if not isinstance(raw, dict):
            raise ParameterError(f"{source}: expected a mapping with data/model/training sections")
        sections = {"data": DataConfig, "model": ModelConfig, "training": TrainerConfig}
        unknown = set(raw) - set(sections)
        if unknown:
            raise ParameterError(
                f"{source}: unknown section(s) {sorted(unknown)}; use {sorted(sections)}"
            )
        built = {}
        for name, kind in sections.items():
            values = raw.get(name) or {}
            if not isinstance(values, dict):
                raise ParameterError(f"{source}: section {name!r} must be a mapping")
            known = {f.name for f in dataclasses.fields(kind)}
            bad = set(values) - known
            if bad:
                raise ParameterError(
                    f"{source}: unknown key(s) {sorted(bad)} in section {name!r}; "
                    f"known keys: {sorted(known)}"
                )
            built[name] = kind(**values)
        config = cls(**built)
        config.training.validate()
        return config

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        path = Path(path)
        if not path.exists():
            raise ParameterError(f"{path}: no such config file")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ParameterError(f"{path}: not valid YAML ({exc})") from exc
        return cls.from_dict(raw, source=str(path))
