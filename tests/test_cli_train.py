"""``mlpot train`` / ``mlpot evaluate`` end to end, the feature cache, and the sample_NNP path."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import torch
import yaml

import mlpot
from mlpot.cli.main import main
from mlpot.data.batch import REF_ENERGY, REF_FORCES, AtomsBatch
from mlpot.models.potential import compute_properties
from mlpot.training.config import Config

SMALL_ACSF = [
    {"kind": "G2", "center": "Si", "neighbors": ["Si"], "eta": eta, "r_cut": 4.5}
    for eta in (0.05, 0.3, 1.0, 3.0)
] + [
    {
        "kind": "G5",
        "center": "Si",
        "neighbors": ["Si", "Si"],
        "eta": 0.1,
        "zeta": z,
        "lambda_": lam,
        "r_cut": 4.5,
    }
    for z, lam in ((1, 1), (1, -1), (4, 1))
]


@pytest.fixture(scope="module")
def si_files(shared_data, tmp_path_factory):
    """Small training and test files (extxyz) cut from mlearn Si."""
    from mlpot.data.io import read_structures

    structures = read_structures(shared_data / "mlearn_Si" / "train.extxyz")
    small = sorted(structures, key=len)[:14]
    folder = tmp_path_factory.mktemp("si")
    for name, part in (("train", small[:10]), ("test", small[10:])):
        frames = []
        for atoms in part:
            a = atoms.copy()
            a.info = {"energy": atoms.info[REF_ENERGY]}
            del a.arrays[REF_FORCES]
            a.arrays["forces"] = atoms.arrays[REF_FORCES]
            frames.append(a)
        ase.io.write(folder / f"{name}.extxyz", frames, format="extxyz")
    config = {
        "model": {"cutoff": 4.5, "symmetry_functions": SMALL_ACSF, "hidden_layers": [8]},
        "training": {"max_epochs": 3, "batch_size": 3, "validation_fraction": 0.2},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_print_config_is_the_default_yaml(capsys):
    assert main(["train", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert Config.from_dict(printed) == Config()


def test_train_then_evaluate_metrics_match_recomputation(si_files, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--train",
        str(si_files / "train.extxyz"),
        "--test",
        str(si_files / "test.extxyz"),
        "--config",
        str(si_files / "config.yaml"),
        "--out",
        str(out),
        "--seed",
        "4",
    ]
    assert main(args) == 0
    for name in ("model.pt", "metrics.json", "log.csv", "parity.png", "learning_curve.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["n_structures"] == 8 and metrics["validation"]["n_structures"] == 2
    assert metrics["wall_time_s"] > 0
    model = mlpot.load(out / "model.pt")
    assert model.metadata["seed"] == 4
    # independent recomputation of the test metrics through the ASE calculator
    e_err, f_err = [], []
    for atoms in ase.io.read(si_files / "test.extxyz", ":"):
        ref_e, ref_f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = model.calculator()
        e_err.append((atoms.get_potential_energy() - ref_e) / len(atoms))
        f_err.append((atoms.get_forces() - ref_f).ravel())
    e_err, f_err = np.array(e_err), np.concatenate(f_err)
    test = metrics["test"]
    assert test["n_structures"] == 4
    assert test["energy_rmse_mev_per_atom"] == pytest.approx(1000 * np.sqrt(np.mean(e_err**2)))
    assert test["energy_mae_mev_per_atom"] == pytest.approx(1000 * np.mean(np.abs(e_err)))
    assert test["force_rmse_ev_per_angstrom"] == pytest.approx(np.sqrt(np.mean(f_err**2)))
    assert test["force_mae_ev_per_angstrom"] == pytest.approx(np.mean(np.abs(f_err)))
    # mlpot evaluate prints and writes the same numbers
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(out / "model.pt"),
                str(si_files / "test.extxyz"),
                "--json",
                str(tmp_path / "e.json"),
            ]
        )
        == 0
    )
    assert f"{test['energy_rmse_mev_per_atom']:.3f}" in capsys.readouterr().out
    written = json.loads((tmp_path / "e.json").read_text())["metrics"]
    assert written == pytest.approx(test)
    # running again on the finished folder resumes, trains nothing and gives the same metrics
    assert main(args) == 0
    assert json.loads((out / "metrics.json").read_text())["test"] == pytest.approx(test)


@pytest.mark.parametrize(
    "interaction", [None, {"channels": 6, "n_radial": 5, "cutoff": 4.0}], ids=["plain", "mp"]
)
def test_feature_cache_equals_autograd_through_the_descriptor(si_files, interaction):
    """Cached descriptors + Jacobians give the energies, forces and stress of plain autograd,
    and the same weight gradient of a force and stress loss (with messages too)."""
    from mlpot.training.feature_cache import FeatureEngine
    from mlpot.training.workflow import build_model, read_data

    config = Config.from_yaml(si_files / "config.yaml")
    config.model.interaction = interaction
    structures = read_data(si_files / "train.extxyz", config)[:3]
    model = build_model(config.model, [14], seed=1)
    model.fit_statistics(structures)
    engine = FeatureEngine(model, structures, torch.float64)
    assert engine.analytic  # the closed-form Jacobian was used (and its features checked)
    out, _ = engine.run([2, 0], forces=True, stress=True, create_graph=False)
    batch = AtomsBatch.from_atoms([structures[2], structures[0]])
    ref = compute_properties(model, batch, forces=True, stress=True)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(out[key], ref[key], rtol=1e-10, atol=1e-12)
    weights = torch.randn(ref["forces"].shape, generator=torch.Generator().manual_seed(5))
    grads = []
    for run in ("cache", "autograd"):
        model.zero_grad()
        if run == "cache":
            got, _ = engine.run([2, 0], forces=True, stress=True, create_graph=True)
        else:
            got = compute_properties(model, batch, forces=True, stress=True, create_graph=True)
        loss = (got["forces"] * weights.to(got["forces"].dtype)).sum() + got["stress"].sum()
        loss.backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0  # all but the output bias
    for cached, plain in zip(*grads, strict=True):
        torch.testing.assert_close(cached, plain, rtol=1e-9, atol=1e-12)

    # the gradient of a force loss with respect to the weights: the compiled contraction of
    # the cached Jacobians (and its adjoint) equals the PyTorch einsum path under autograd
    from mlpot.descriptors import _fused

    if not _fused.kernel_available():
        pytest.skip("the compiled kernel does not build here")
    grads = []
    for enabled in (True, False):
        with _fused.fused_kernel_enabled(enabled):
            model.zero_grad()
            out, _ = engine.run([2, 0, 1], forces=True, stress=False, create_graph=True)
            weights = torch.randn(out["forces"].shape, generator=torch.Generator().manual_seed(3))
            (out["forces"] * weights.to(out["forces"].dtype)).sum().backward()
            grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for kernel, plain in zip(*grads, strict=True):
        torch.testing.assert_close(kernel, plain, rtol=1e-10, atol=1e-13)


def test_missing_forces_and_unknown_element_give_clear_errors(si_files, tmp_path, capsys):
    frames = ase.io.read(si_files / "train.extxyz", ":")
    for a in frames:
        a.calc = None
        a.info["energy"] = -5.0 * len(a)
        for key in ("forces", REF_FORCES):
            a.arrays.pop(key, None)
    ase.io.write(tmp_path / "noforces.extxyz", frames, format="extxyz")
    code = main(
        ["train", "--train", str(tmp_path / "noforces.extxyz"), "--out", str(tmp_path / "x")]
    )
    assert code == 2
    assert "forces_weight: 0" in capsys.readouterr().err

    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--train",
                str(si_files / "train.extxyz"),
                "--config",
                str(si_files / "config.yaml"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    odd = ase.io.read(si_files / "test.extxyz", "0")
    odd.numbers[2] = 6
    ase.io.write(tmp_path / "carbon.extxyz", odd, format="extxyz")
    capsys.readouterr()
    assert main(["evaluate", str(out / "model.pt"), str(tmp_path / "carbon.extxyz")]) == 2
    assert "C" in capsys.readouterr().err.split("element")[1][:10]


def test_sample_nnp_path_learns_and_runs_on_the_fly(shared_data, tmp_path):
    dscribe = pytest.importorskip("dscribe.descriptors")
    from ase.build import bulk

    from mlpot.training.descriptor_net import SAMPLE_NNP_G2, SAMPLE_NNP_G4

    desc = np.load(shared_data / "sample_NNP" / "desc.npy")[:250]
    label = np.load(shared_data / "sample_NNP" / "label.npy")[:250]
    np.save(tmp_path / "desc.npy", desc)
    np.save(tmp_path / "label.npy", label)
    out = tmp_path / "snnp"
    assert (
        main(
            [
                "train",
                "--descriptors",
                str(tmp_path / "desc.npy"),
                "--labels",
                str(tmp_path / "label.npy"),
                "--out",
                str(out),
                "--epochs",
                "40",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n_structures"] == 50
    assert (
        metrics["test"]["energy_rmse_mev_per_atom"]
        < 0.3 * metrics["test_mean_predictor_rmse_mev_per_atom"]
    )
    model = mlpot.load(out / "model.pt")
    # a structure of the same kind, its features from DScribe itself
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=2)
    acsf = dscribe.ACSF(
        species=["Si"], r_cut=7.0, g2_params=SAMPLE_NNP_G2, g4_params=SAMPLE_NNP_G4, periodic=True
    )
    features = torch.as_tensor(acsf.create(atoms), dtype=torch.float64)
    net = model.networks["Si"]
    with torch.no_grad():
        direct = float(net(features, model.scaling, model.scaling_range).sum())
    on_the_fly = float(model.compute(atoms, forces=False)["energy"][0])
    assert on_the_fly == pytest.approx(direct, abs=1e-8 * len(atoms))


def test_polish_on_cached_features_reports_the_saved_models_loss(si_files, tmp_path):
    """training.polish_iterations on the HDNNP's feature cache (trained in float32, polished in
    float64): the saved model's validation loss, recomputed from its metrics, is the loss the
    polish reports, and it is no higher than the schedule's model's."""
    from mlpot.training.workflow import read_data, train_structures

    config = Config.from_yaml(si_files / "config.yaml")
    config.training.polish_iterations = 40
    config.training.polish_patience = 40
    structures = read_data(si_files / "train.extxyz", config)
    metrics = train_structures(structures, tmp_path, config=config, seed=0, log=lambda *a: None)
    report = metrics["polish"]
    assert report["iterations"] == 40 and report["loss_after"] <= report["loss_before"]
    validation = metrics["validation"]
    recomputed = (
        config.training.energy_weight_final * (validation["energy_rmse_mev_per_atom"] / 1000) ** 2
        + validation["force_rmse_ev_per_angstrom"] ** 2
    )
    # to the float32 rounding of the cached descriptors the polish started from
    assert recomputed == pytest.approx(report["loss_after"], rel=1e-4)
    assert json.loads((tmp_path / "metrics.json").read_text())["polish"] == report
