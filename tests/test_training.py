"""The trainer: it learns, resumes exactly, reports honest metrics, rejects bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mlpot.data.batch import REF_ENERGY, REF_FORCES, AtomsBatch
from mlpot.data.neighbors import NeighborList
from mlpot.errors import DataError, ParameterError
from mlpot.models.potential import Potential, load_potential, register_potential
from mlpot.training.config import Config, TrainerConfig
from mlpot.training.metrics import evaluate
from mlpot.training.trainer import Trainer, split_structures


@register_potential
class RadialToy(Potential):
    """A small trainable potential: per-element offset + learnable Gaussian pair terms."""

    def __init__(self, elements=(14,), cutoff: float = 4.5, n_basis: int = 8, seed: int = 0):
        super().__init__(cutoff, elements)
        self.n_basis = n_basis
        self.seed = seed
        g = torch.Generator().manual_seed(seed)
        self.weights = torch.nn.Parameter(
            0.01 * torch.randn(n_basis, generator=g, dtype=torch.float64)
        )
        self.offset = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.register_buffer("centers", torch.linspace(1.8, cutoff, n_basis, dtype=torch.float64))

    def fit_statistics(self, structures):
        e = np.array([a.info[REF_ENERGY] / len(a) for a in structures])
        with torch.no_grad():
            self.offset.fill_(float(e.mean()))

    def forward(self, batch: AtomsBatch, nl: NeighborList, vectors: torch.Tensor) -> torch.Tensor:
        r = torch.linalg.norm(vectors, dim=1)
        fc = 0.5 * (torch.cos(math.pi * r / self.cutoff) + 1) * (r < self.cutoff)
        basis = torch.exp(-4.0 * (r[:, None] - self.centers) ** 2) * fc[:, None]
        pair = basis @ self.weights
        atomic = self.offset.expand(batch.positions.shape[0]).clone()
        return atomic.index_add(0, nl.centers, 0.5 * pair)

    def get_config(self):
        return {
            "elements": self.elements,
            "cutoff": self.cutoff,
            "n_basis": self.n_basis,
            "seed": self.seed,
        }


@pytest.fixture(scope="module")
def si_small(shared_data):
    from mlpot.data.io import read_structures

    structures = read_structures(shared_data / "mlearn_Si" / "train.extxyz")
    small = [a for a in structures if len(a) <= 64]
    rng = np.random.default_rng(1)
    return [small[i] for i in rng.choice(len(small), 24, replace=False)]


def _config(**changes) -> TrainerConfig:
    base = dict(
        max_epochs=6,
        batch_size=4,
        learning_rate=0.02,
        forces_weight=0.01,
        validation_fraction=0.25,
        warmup_epochs=0,
        seed=3,
        early_stopping_patience=None,
        polish_iterations=0,  # the polish has its own test
    )
    base.update(changes)
    return TrainerConfig(**base)


def test_split_is_seeded_and_disjoint():
    items = list(range(40))
    a = split_structures(items, 0.2, seed=5)
    b = split_structures(items, 0.2, seed=5)
    c = split_structures(items, 0.2, seed=6)
    assert a == b and a != c
    train, val = a
    assert len(val) == 8 and not set(train) & set(val) and sorted(train + val) == items


def test_short_training_beats_mean_predictor(si_small):
    trainer = Trainer(RadialToy(), _config(max_epochs=15, forces_weight=1.0), log=lambda s: None)
    train_idx, val_idx = split_structures(si_small, 0.25, seed=3)
    result = trainer.fit(si_small)
    val = [si_small[i] for i in val_idx]
    train = [si_small[i] for i in train_idx]
    # bound: predicting the mean training energy per atom for every validation structure
    mean_e = np.mean([a.info[REF_ENERGY] / len(a) for a in train])
    baseline_mev = 1000 * np.sqrt(
        np.mean([(a.info[REF_ENERGY] / len(a) - mean_e) ** 2 for a in val])
    )
    baseline_force = np.sqrt(
        np.mean(np.concatenate([a.arrays[REF_FORCES].ravel() for a in val]) ** 2)
    )
    metrics, _ = evaluate(result.potential, val)
    assert metrics["energy_rmse_mev_per_atom"] < 0.5 * baseline_mev
    assert metrics["force_rmse_ev_per_angstrom"] < 0.8 * baseline_force
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]


def test_epoch_loop_runs_on_the_configured_threads_and_restores_torchs(si_small):
    """training.threads applies to the epoch loop only; torch's setting is back afterwards."""
    seen = []

    def log(line: str) -> None:
        if line.startswith("epoch"):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        Trainer(RadialToy(), _config(max_epochs=3, threads=1), log=log).fit(si_small[:8])
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
        seen.clear()
        Trainer(RadialToy(), _config(max_epochs=2, threads=None), log=log).fit(si_small[:8])
        assert seen and set(seen) == {2}
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ParameterError, match="training.threads"):
        TrainerConfig(threads=0).validate()


def test_kill_and_resume_gives_identical_weights(si_small, tmp_path):
    data = si_small[:12]
    config = _config(max_epochs=5)
    uninterrupted = Trainer(RadialToy(), config, out_dir=tmp_path / "a", log=lambda s: None)
    ref = uninterrupted.fit(data)
    interrupted = Trainer(RadialToy(), config, out_dir=tmp_path / "b", log=lambda s: None)
    partial = interrupted.fit(data, stop_after_epochs=2)
    assert not partial.finished and partial.epochs_run == 2
    # a fresh process: new potential object, resumes from checkpoint.pt
    resumed = Trainer(RadialToy(seed=99), config, out_dir=tmp_path / "b", log=lambda s: None).fit(
        data
    )
    assert resumed.finished and resumed.epochs_run == 5
    for (name, a), (_, b) in zip(
        ref.potential.state_dict().items(), resumed.potential.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert [r["val_loss"] for r in ref.history] == [r["val_loss"] for r in resumed.history]
    # a checkpoint from other settings is refused with a clear message naming them
    with pytest.raises(
        ParameterError,
        match=r"different training settings \(training.max_epochs: 5 in the checkpoint, 7 now\)",
    ):
        Trainer(RadialToy(), _config(max_epochs=7), out_dir=tmp_path / "b", log=lambda s: None).fit(
            data
        )
    # ... and so is one trained on other structures (or other reference values): resuming it
    # would hand back a model of the old data
    changed = [a.copy() for a in data]
    changed[3].info[REF_ENERGY] += 0.01
    with pytest.raises(ParameterError, match="different training or validation structures"):
        Trainer(RadialToy(), config, out_dir=tmp_path / "b", log=lambda s: None).fit(changed)
    with pytest.raises(ParameterError, match="different training or validation structures"):
        Trainer(RadialToy(), config, out_dir=tmp_path / "b", log=lambda s: None).fit(data[:11])
    # and one written by an mlpot version without a setting of today's
    checkpoint = tmp_path / "b" / "checkpoint.pt"
    saved = torch.load(checkpoint, weights_only=False)
    del saved["trainer_config"]["stage_select_after"]
    torch.save(saved, checkpoint)
    with pytest.raises(ParameterError, match=r"stage_select_after: missing in the checkpoint"):
        Trainer(RadialToy(), config, out_dir=tmp_path / "b", log=lambda s: None).fit(data)


def test_missing_forces_with_force_weight_is_a_clear_error(si_small):
    data = [a.copy() for a in si_small[:6]]
    for a in data:
        a.info[REF_ENERGY] = a.info[REF_ENERGY] if REF_ENERGY in a.info else 0.0
    del data[2].arrays[REF_FORCES]
    with pytest.raises(DataError, match="forces_weight: 0"):
        Trainer(RadialToy(), _config(), log=lambda s: None).fit(data, validation=[])
    # energy-only mode trains fine
    result = Trainer(RadialToy(), _config(forces_weight=0.0, max_epochs=2), log=lambda s: None).fit(
        data, validation=[]
    )
    assert result.finished


def test_unknown_element_in_evaluation_names_it(si_small):
    atoms = si_small[0].copy()
    atoms.numbers[3] = 8
    with pytest.raises(DataError, match=r"\bO\b"):
        evaluate(RadialToy(), [atoms])


def test_config_roundtrip_and_rejects_unknown_keys(tmp_path):
    text = Config().to_yaml()
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert Config.from_yaml(path) == Config()
    path.write_text("training:\n  learning_rat: 0.1\n")
    with pytest.raises(ParameterError, match="learning_rat"):
        Config.from_yaml(path)
    assert TrainerConfig(batch_size=4, target_steps=1000, min_auto_epochs=1).epochs_for(40) == 100


def test_model_angular_cutoff_reaches_the_default_set(tmp_path):
    """model.angular_cutoff (YAML) sets the cutoff of the default set's angular functions only;
    left out, it is 0.75 of model.cutoff; beyond model.cutoff it is refused by name."""
    from mlpot.training.workflow import build_model

    def cutoffs(yaml_text):
        path = tmp_path / "c.yaml"
        path.write_text(yaml_text)
        functions = build_model(Config.from_yaml(path).model, [14], seed=0).descriptor.functions
        return (
            {f.r_cut for f in functions if not f.is_angular},
            {f.r_cut for f in functions if f.is_angular},
        )

    assert cutoffs("model:\n  cutoff: 5.0\n") == ({5.0}, {3.75})
    assert cutoffs("model:\n  cutoff: 5.0\n  angular_cutoff: 4.2\n") == ({5.0}, {4.2})
    with pytest.raises(ParameterError, match="angular_cutoff"):
        cutoffs("model:\n  cutoff: 5.0\n  angular_cutoff: 5.5\n")


def test_saved_model_metrics_equal_recomputation(si_small, tmp_path):
    result = Trainer(RadialToy(), _config(max_epochs=3), log=lambda s: None).fit(si_small[:10])
    path = tmp_path / "m.pt"
    result.potential.save(path)
    loaded = load_potential(path)
    metrics, _ = evaluate(loaded, si_small[10:16])
    # independent recomputation with plain ASE calculator calls
    e_err, f_err = [], []
    for atoms in si_small[10:16]:
        a = atoms.copy()
        a.calc = loaded.calculator()
        e_err.append((a.get_potential_energy() - atoms.info[REF_ENERGY]) / len(a))
        f_err.append((a.get_forces() - atoms.arrays[REF_FORCES]).ravel())
    f_err = np.concatenate(f_err)
    # the model is float32: the calculator sums its atomic energies in float64, evaluate() in
    # float32, so the energies agree to single precision (the errors to ~1e-5 relative)
    assert metrics["energy_rmse_mev_per_atom"] == pytest.approx(
        1000 * np.sqrt(np.mean(np.square(e_err))), rel=2e-5
    )
    assert metrics["energy_mae_mev_per_atom"] == pytest.approx(
        1000 * np.mean(np.abs(e_err)), rel=2e-5
    )
    assert metrics["force_rmse_ev_per_angstrom"] == pytest.approx(np.sqrt(np.mean(f_err**2)))
    assert metrics["force_mae_ev_per_angstrom"] == pytest.approx(np.mean(np.abs(f_err)))
    json.dumps(metrics)


def test_time_budget_compresses_the_schedule_and_stops(si_small):
    """With a time budget far shorter than max_epochs, training stops on time with a decayed lr."""
    config = _config(max_epochs=100000, time_limit_s=1.0, learning_rate=0.01)
    result = Trainer(RadialToy(), config, log=lambda s: None).fit(si_small[:8])
    assert result.finished and result.stopped_because == "time_limit"
    assert result.epochs_run < 100000
    lrs = [row["lr"] for row in result.history]
    if len(lrs) > 1:  # the cosine decay runs on elapsed / budget, not epoch / 100000
        assert lrs[-1] < 0.99 * lrs[0]
    # the budget binds: at most one epoch past it (the set-up is far under 0.75 s here)
    assert result.wall_time_s < 1.0 + 2 * max(row["epoch_time_s"] for row in result.history)


def test_cached_features_give_the_descriptor_statistics(si_small):
    """fit_statistics from a feature cache equals the descriptor pass; the spread floor binds."""
    from mlpot.descriptors.acsf import ACSF
    from mlpot.models.hdnnp import HDNNP
    from mlpot.training.feature_cache import FeatureEngine

    data = si_small[:3]
    descriptor = ACSF.default([14], r_cut=4.0)
    plain = HDNNP(descriptor, hidden_layers=(4,), scaling="standard", seed=0)
    plain.fit_statistics(data)
    engine = FeatureEngine(plain, data, torch.float64, derivatives=False)
    cached = HDNNP(descriptor, hidden_layers=(4,), scaling="standard", seed=0)
    cached.fit_statistics(data, features=engine.features_per_structure())
    for a, b in zip(plain.state_dict().values(), cached.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    floored = HDNNP(descriptor, hidden_layers=(4,), scaling="standard", seed=0)
    floored.fit_statistics(data, features=engine.features_per_structure(), min_relative_spread=0.1)
    sigma, ref = floored.networks["Si"].feature_sigma, plain.networks["Si"].feature_sigma
    assert torch.all(sigma >= 0.1 * ref.max() - 1e-12)
    assert torch.equal(sigma[ref >= 0.1 * ref.max()], ref[ref >= 0.1 * ref.max()])
    assert (ref < 0.1 * ref.max()).any()  # the default set has such features on Si


def test_best_model_is_chosen_in_the_late_schedule_and_restored(si_small):
    """select_best_after: the restored weights are those of the lowest validation loss among
    the epochs past that fraction of the schedule, never an earlier one."""
    config = _config(
        max_epochs=10, select_best_after=0.5, learning_rate=0.05, energy_weight_final=None
    )
    result = Trainer(RadialToy(), config, log=lambda s: None).fit(si_small)
    losses = [row["val_loss"] for row in result.history]
    best = min(range(4, 10), key=lambda i: losses[i])  # epochs 5..10: progress 0.5..1.0
    assert result.best_epoch == best + 1
    # the restored potential has that epoch's validation errors
    _, val_idx = split_structures(si_small, 0.25, seed=3)
    metrics, _ = evaluate(result.potential, [si_small[i] for i in val_idx])
    row = result.history[best]
    assert metrics["energy_rmse_mev_per_atom"] == pytest.approx(row["val_energy_rmse"], rel=1e-4)
    assert metrics["force_rmse_ev_per_angstrom"] == pytest.approx(row["val_force_rmse"], rel=1e-4)
    # select_best_after = 0: every epoch competes (seeded: the same history)
    config = _config(
        max_epochs=10, select_best_after=0.0, learning_rate=0.05, energy_weight_final=None
    )
    again = Trainer(RadialToy(), config, log=lambda s: None).fit(si_small)
    assert [row["val_loss"] for row in again.history] == pytest.approx(losses, rel=1e-6)
    assert again.best_epoch == int(np.argmin(losses)) + 1
    with pytest.raises(ParameterError, match="select_best_after"):
        TrainerConfig(select_best_after=1.5).validate()


def test_weight_average_follows_the_optimiser_steps(si_small, tmp_path, monkeypatch):
    """EMA of the weights: recomputed from the recorded raw weights of every optimiser step."""
    initial, raw_steps = [], []
    optimizer_class = torch.optim.AdamW  # the default optimizer
    original_init, original_step = optimizer_class.__init__, optimizer_class.step

    def recording_init(self, params, *args, **kwargs):
        params = list(params)
        initial.extend(p.detach().clone() for p in params)
        original_init(self, params, *args, **kwargs)

    def recording_step(self, *args, **kwargs):
        out = original_step(self, *args, **kwargs)
        raw_steps.append([p.detach().clone() for g in self.param_groups for p in g["params"]])
        return out

    monkeypatch.setattr(optimizer_class, "__init__", recording_init)
    monkeypatch.setattr(optimizer_class, "step", recording_step)
    config = _config(max_epochs=3, ema_decay=0.8, select_best_after=0.0, dtype="float64")
    result = Trainer(RadialToy(), config, out_dir=tmp_path, log=lambda s: None).fit(si_small[:12])
    expected, by_step = initial, []
    for n, step in enumerate(raw_steps, start=1):
        decay = min(0.8, (1.0 + n) / (10.0 + n))
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, step, strict=True)]
        by_step.append(expected)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert len(raw_steps) == 3 * 3  # 9 training structures in batches of 4, 3 epochs
    for average, reference in zip(saved["ema"], expected, strict=True):
        torch.testing.assert_close(average, reference, rtol=1e-13, atol=1e-15)
    # the average is not the raw weights; the model returned is the best epoch's average
    assert any(not torch.allclose(a, w) for a, w in zip(saved["ema"], raw_steps[-1], strict=True))
    best_average = by_step[3 * result.best_epoch - 1]  # three steps per epoch
    for param, average in zip(result.potential.parameters(), best_average, strict=True):
        torch.testing.assert_close(param.detach(), average, rtol=1e-13, atol=1e-15)
    with pytest.raises(ParameterError, match="ema_decay"):
        _config(ema_decay=1.0).validate()


def test_early_stopping_waits_for_the_energy_stage_and_counts_afresh(si_small, monkeypatch):
    """A validation loss that only rises: without an energy stage training stops after
    ``patience`` epochs past the first selectable one; with one (last 25 % of 16 epochs:
    epochs 13-16) the best model is chosen within the stage (its second half by default) and
    stopping counts from there."""
    from mlpot.training import trainer as trainer_module

    calls = []

    def rising(self, engine, weights):
        calls.append(weights)
        rising_error = float(len(calls))  # squared energy error of the whole set, rising
        return trainer_module._Sums(rising_error, 1, 1.0, 1, loss=rising_error, n_batches=1)

    monkeypatch.setattr(Trainer, "_evaluate", rising)
    common = dict(max_epochs=16, select_best_after=0.0, early_stopping_patience=2)
    plain = _config(energy_weight_final=None, **common)
    result = Trainer(RadialToy(), plain, log=lambda s: None).fit(si_small[:12])
    assert (result.stopped_because, len(result.history), result.best_epoch) == (
        "early_stopping",
        3,
        1,
    )
    calls.clear()
    staged = _config(
        energy_weight_final=100.0, final_phase_fraction=0.25, stage_select_after=0.0, **common
    )
    result = Trainer(RadialToy(), staged, log=lambda s: None).fit(si_small[:12])
    # epochs 1-12 run in full although the loss never improves; the stage starts at epoch 13
    # (progress 0.75), whose model is the best of the stage; two more epochs exhaust patience
    assert result.stopped_because == "early_stopping"
    assert len(result.history) == 15
    assert result.best_epoch == 13
    # stage_select_after = 0.5 (default): only the stage's second half competes (epochs
    # 14-16, progress >= 1 - 0.25 * 0.5 = 0.875), so the best is epoch 14, not the stage's
    # first epoch 13, and patience is counted from it
    calls.clear()
    staged = _config(energy_weight_final=100.0, final_phase_fraction=0.25, **common)
    result = Trainer(RadialToy(), staged, log=lambda s: None).fit(si_small[:12])
    assert (result.stopped_because, len(result.history), result.best_epoch) == (
        "early_stopping",
        16,
        14,
    )
    with pytest.raises(ParameterError, match="stage_select_after"):
        TrainerConfig(stage_select_after=1.0).validate()


def _toy_frames(n: int = 6) -> list:
    """Rattled 8-atom Si cells labelled by a RadialToy with other weights, two config types."""
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator

    reference = RadialToy(seed=11)
    frames = []
    for i in range(n):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        if i % 2:
            atoms = atoms.repeat((2, 1, 1))
        atoms.rattle(0.05 + 0.02 * i, seed=i)
        atoms.calc = reference.calculator()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        atoms.info["config_type"] = "small" if i % 2 == 0 else "large"
        frames.append(atoms)
    return frames


def test_metrics_by_group_equal_each_group_evaluated_alone(tmp_path, capsys):
    """`mlpot evaluate --by KEY`: each group's row equals evaluating that group's file alone."""
    import ase.io

    from mlpot.cli.main import main
    from mlpot.data.io import read_structures
    from mlpot.training.metrics import group_labels, metrics_by_group

    frames = _toy_frames()
    model = RadialToy(seed=5)
    with torch.no_grad():
        model.offset.fill_(0.004)  # eV/atom: errors of a few meV/atom
    path = tmp_path / "toy.pt"
    model.save(path)
    ase.io.write(tmp_path / "all.extxyz", frames)
    _, predictions = evaluate(model, read_structures(tmp_path / "all.extxyz"))
    labels = [a.info["config_type"] for a in frames]
    groups = metrics_by_group(predictions, labels)
    assert sorted(groups) == ["large", "small"]
    for name in ("small", "large"):
        part = [a for a in frames if a.info["config_type"] == name]
        ase.io.write(tmp_path / f"{name}.extxyz", part)
        assert (
            main(
                [
                    "evaluate",
                    str(path),
                    str(tmp_path / f"{name}.extxyz"),
                    "--json",
                    str(tmp_path / f"{name}.json"),
                ]
            )
            == 0
        )
        alone = json.loads((tmp_path / f"{name}.json").read_text())["metrics"]
        for key, value in alone.items():
            assert groups[name][key] == pytest.approx(value, rel=1e-9), (name, key)
        # the signed mean, recomputed from the per-structure predictions
        errors = [
            (model.calculator().get_potential_energy(a) - a.get_potential_energy()) / len(a)
            for a in part
        ]
        assert groups[name]["energy_mean_error_mev_per_atom"] == pytest.approx(
            1000 * np.mean(errors), rel=1e-6
        )
    # the CLI prints one row per group and writes them to the JSON file
    capsys.readouterr()
    out_json = tmp_path / "groups.json"
    args = ["evaluate", str(path), str(tmp_path / "all.extxyz"), "--by", "config_type"]
    assert main([*args, "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "E mean" in printed and "small" in printed and "large" in printed
    written = json.loads(out_json.read_text())
    assert written["group_by"] == "config_type"
    assert written["groups"]["large"] == pytest.approx(groups["large"])
    # grouping by formula: the 8- and 16-atom cells are both Si
    assert group_labels(frames, "formula") == ["Si"] * len(frames)
    # a key the structures lack: exit 2 and a message naming the file, structure and keys
    assert main([*args[:-1], "phase"]) == 2
    err = capsys.readouterr().err
    assert "all.extxyz" in err and "structure 0" in err and "config_type" in err
    with pytest.raises(DataError, match="structure 0 has no info key 'phase'"):
        group_labels(frames, "phase")


def _lj_labelled_si(n: int, seed: int) -> list:
    """Rattled, strained 8-atom Si cells of 6-11 atoms (vacancies) with Lennard-Jones
    energies, forces and stress as reference values (only the loss bookkeeping is tested)."""
    from ase.build import bulk
    from ase.calculators.lj import LennardJones

    from mlpot.data.batch import REF_STRESS

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        del atoms[rng.choice(8, int(rng.integers(0, 3)), replace=False).tolist()]
        atoms.set_cell(atoms.cell[:] * (1 + 0.03 * rng.standard_normal()), scale_atoms=True)
        atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape)
        atoms.calc = LennardJones(sigma=2.1, epsilon=0.1, rc=4.5, smooth=True)
        atoms.info[REF_ENERGY] = atoms.get_potential_energy()
        atoms.arrays[REF_FORCES] = atoms.get_forces()
        atoms.info[REF_STRESS] = atoms.get_stress(voigt=False)
        atoms.calc = None
        out.append(atoms)
    return out


def test_validation_loss_is_the_loss_of_the_whole_set_not_a_mean_over_batches():
    """The monitored validation loss (model selection, early stopping) weighs every structure
    alike: 17 validation structures are evaluated in batches of 16 and 1, and the lone last
    structure must not count as much as the other sixteen together."""
    from mlpot.training.metrics import predict

    train, val = _lj_labelled_si(12, seed=0), _lj_labelled_si(17, seed=1)
    weights = (2.0, 0.5, 10.0)
    config = _config(
        max_epochs=1,
        ema_decay=0.0,
        energy_weight=weights[0],
        energy_weight_final=None,
        forces_weight=weights[1],
        stress_weight=weights[2],
        select_best_after=0.0,
        dtype="float64",
    )
    result = Trainer(RadialToy(), config, log=lambda s: None).fit(train, val)
    p = predict(result.potential, val, stress=True)
    expected = (
        weights[0] * np.mean(((p.energy_pred - p.energy_ref) / p.n_atoms) ** 2)
        + weights[1] * np.mean((p.forces_pred - p.forces_ref) ** 2)
        + weights[2] * np.mean((p.stress_pred - p.stress_ref) ** 2)
    )
    assert result.history[0]["val_loss"] == pytest.approx(expected, rel=1e-9)


def test_polish_keeps_the_best_iterate_and_repeats_exactly_on_resume(si_small, tmp_path):
    """training.polish_iterations: full-batch L-BFGS after the schedule. The training loss of
    the whole set falls, the model kept is the iterate with the lowest validation loss (never
    worse than the schedule's model), and a run resumed after the schedule repeats the polish
    to the bit."""
    data = si_small[:12]
    train_idx, val_idx = split_structures(data, 0.25, seed=3)
    train, val = [data[i] for i in train_idx], [data[i] for i in val_idx]

    def loss(potential, structures):  # the last stage's loss, from the metrics alone
        m, _ = evaluate(potential, structures)
        return 100 * (m["energy_rmse_mev_per_atom"] / 1000) ** 2 + 0.01 * (
            m["force_rmse_ev_per_angstrom"] ** 2
        )

    plain = Trainer(RadialToy(), _config(max_epochs=3), log=lambda s: None).fit(data)
    assert plain.polish is None
    config = _config(max_epochs=3, polish_iterations=60, polish_patience=60)
    lines: list[str] = []
    polished = Trainer(RadialToy(), config, out_dir=tmp_path / "a", log=lines.append).fit(data)
    report = polished.polish
    assert report["iterations"] == 60
    assert report["loss_before"] == pytest.approx(loss(plain.potential, val), rel=1e-4)
    assert report["loss_after"] == pytest.approx(loss(polished.potential, val), rel=1e-4)
    assert report["loss_after"] <= report["loss_before"]
    logged = [float(line.split("loss ")[1].split()[0]) for line in lines if "/60" in line]
    assert len(logged) == 3 and min(logged) == pytest.approx(report["loss_after"], rel=1e-4)
    assert loss(polished.potential, train) < 0.5 * loss(plain.potential, train)
    # a fresh process on the finished checkpoint polishes the same model again: same weights
    again = Trainer(RadialToy(seed=7), config, out_dir=tmp_path / "a", log=lambda s: None)
    resumed = again.fit(data)
    for (name, a), (_, b) in zip(
        polished.potential.state_dict().items(),
        resumed.potential.state_dict().items(),
        strict=True,
    ):
        assert torch.equal(a, b), name
    # without validation structures nothing guards the polish against the noise: skipped
    lines.clear()
    unguarded = _config(max_epochs=3, polish_iterations=60, validation_fraction=0.0)
    result = Trainer(RadialToy(), unguarded, log=lines.append).fit(data)
    assert result.polish is None and any("polish skipped: no validation" in x for x in lines)
    for bad in (-1, 2.5, True):
        with pytest.raises(ParameterError, match="training.polish_iterations"):
            TrainerConfig(polish_iterations=bad).validate()
