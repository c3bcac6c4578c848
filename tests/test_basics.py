"""Neural-network basics (mlpot.basics): gates, XOR, backprop vs autograd, fits, invariance, CLI."""

import numpy as np
import pytest

from mlpot.basics import dimer, mlp, perceptron
from mlpot.basics.perceptron import BINARY_INPUTS, TRUTH_TABLES, truth_table

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Run ``mlpot basics TOPIC --out DIR`` once per topic through mlpot.cli.main.main, keeping
    the printed text, the folder and (by wrapping the demo function) the numbers behind them."""
    import mlpot.basics as basics
    from mlpot.cli.main import main

    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        for topic in ("gates", "xor", "mlp", "dimer"):
            demo_fn = getattr(basics, f"{topic}_demo")
            captured = {}

            def spy(out_dir, _fn=demo_fn, _captured=captured):
                _captured["demo"] = _fn(out_dir)
                return _captured["demo"]

            mp.setattr(basics, f"{topic}_demo", spy)
            out_dir = tmp_path_factory.mktemp(topic)
            with pytest.MonkeyPatch.context() as mp_out:
                import io
                import sys

                buffer = io.StringIO()
                mp_out.setattr(sys, "stdout", buffer)
                code = main(["basics", topic, "--out", str(out_dir)])
            runs[topic] = (code, buffer.getvalue(), out_dir, captured["demo"].results)
    return runs


# ---- perceptron gates and two-layer networks ---------------------------------------------------
@pytest.mark.parametrize("rule", ["strict", "inclusive"])
@pytest.mark.parametrize("name", ["AND", "OR", "NAND"])
def test_gate_truth_tables(name, rule):
    gate = perceptron.GATES[name].with_rule(rule)
    assert truth_table(gate) == TRUTH_TABLES[name]
    # weighted sums by hand: w·x
    w = perceptron.GATES[name].weights
    assert [gate.weighted_sum(x) for x in BINARY_INPUTS] == pytest.approx(
        [0.0, w[1], w[0], w[0] + w[1]]
    )


def test_exact_gate_parameters():
    assert (
        perceptron.GATES["AND"].weights == (0.3, 0.6) and perceptron.GATES["AND"].threshold == 0.8
    )
    assert perceptron.GATES["OR"].weights == (0.3, 0.6) and perceptron.GATES["OR"].threshold == 0.2
    assert perceptron.GATES["NAND"].weights == (-0.3, -0.2)
    assert perceptron.GATES["NAND"].threshold == -0.4


def test_given_two_layer_network_is_xnor_not_xor():
    net = perceptron.GIVEN_NETWORK.with_rule("inclusive")  # y = 1 if w·x >= θ
    assert [net.hidden_outputs(x) for x in BINARY_INPUTS] == [(1, 0), (0, 0), (0, 0), (0, 1)]
    assert truth_table(net) == (1, 0, 0, 1) == TRUTH_TABLES["XNOR"]
    assert truth_table(net) == tuple(1 - t for t in TRUTH_TABLES["XOR"])
    # with the strict rule s1 never fires on binary inputs (w·x <= 0 = θ) and it is AND
    strict = perceptron.GIVEN_NETWORK
    assert [strict.hidden_outputs(x)[0] for x in BINARY_INPUTS] == [0, 0, 0, 0]
    assert truth_table(strict) == TRUTH_TABLES["AND"]


@pytest.mark.parametrize("rule", ["strict", "inclusive"])
def test_two_layer_xor_from_nand_or_and(rule):
    net = perceptron.XOR_NETWORK.with_rule(rule)
    assert [net.hidden_outputs(x) for x in BINARY_INPUTS] == [(1, 0), (1, 1), (1, 1), (0, 1)]
    assert truth_table(net) == TRUTH_TABLES["XOR"]
    # XOR(x) = AND(NAND(x), OR(x)) against Python's own xor
    assert truth_table(net) == tuple(a ^ b for a, b in BINARY_INPUTS)


def test_perceptron_rule_never_learns_xor_but_learns_and_or():
    n_epochs = 2000
    run = perceptron.train_perceptron(TRUTH_TABLES["XOR"], epochs=n_epochs)
    assert len(run.errors_per_epoch) == n_epochs
    assert min(run.errors_per_epoch) > 0 and not run.converged
    for name in ("AND", "OR", "NAND"):
        run = perceptron.train_perceptron(TRUTH_TABLES[name], epochs=100)
        assert run.converged and len(run.errors_per_epoch) < 20
        assert truth_table(run.perceptron) == TRUTH_TABLES[name]


def test_xor_not_linearly_separable():
    for name in ("XOR", "XNOR"):
        assert perceptron.count_separating_parameters(TRUTH_TABLES[name])[0] == 0
        assert not perceptron.linearly_separable(TRUTH_TABLES[name])
    for name in ("AND", "OR", "NAND", "NOR"):
        assert perceptron.count_separating_parameters(TRUTH_TABLES[name])[0] > 1000
        assert perceptron.linearly_separable(TRUTH_TABLES[name])
    # every one of the 16 Boolean functions of 2 inputs except XOR and XNOR is separable
    tables = [tuple((k >> i) & 1 for i in range(4)) for k in range(16)]
    separable = [perceptron.linearly_separable(t) for t in tables]
    assert sum(separable) == 14


# ---- backpropagation ---------------------------------------------------------------------------
@pytest.mark.parametrize("hidden_act", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("output_act", ["sigmoid", "identity"])
def test_backprop_equals_autograd(hidden_act, output_act):
    rng = np.random.default_rng(3)
    net = mlp.MLP((3, 5, 4, 2), hidden_act, output_act, seed=7)
    for b in net.biases:
        b[:] = rng.normal(size=b.shape)
    x, t = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    loss, grads = net.loss_and_gradients(x, t)
    loss_t, grads_t = mlp.autograd_gradients(net, x, t)
    assert loss == pytest.approx(loss_t, abs=1e-12)
    assert len(grads) == len(grads_t) == 6
    for g, gt in zip(grads, grads_t, strict=True):
        assert g.shape == gt.shape
        np.testing.assert_allclose(g, gt, rtol=0, atol=1e-10)
        assert np.abs(gt).max() > 1e-6  # not trivially zero


def test_backprop_equals_finite_differences():
    net = mlp.MLP((2, 3, 1), "tanh", "sigmoid", seed=1)
    _, grads = net.loss_and_gradients(mlp.XOR_INPUTS, mlp.XOR_TARGETS)
    h = 1e-6
    for p, g in zip(net.parameters(), grads, strict=True):
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            up = net.loss_and_gradients(mlp.XOR_INPUTS, mlp.XOR_TARGETS)[0]
            flat[i] = old - h
            down = net.loss_and_gradients(mlp.XOR_INPUTS, mlp.XOR_TARGETS)[0]
            flat[i] = old
            assert gflat[i] == pytest.approx((up - down) / (2 * h), abs=1e-9)


def test_mlp_learns_xor(cli_runs):
    net, losses = cli_runs["mlp"][3]["xor_net"], cli_runs["mlp"][3]["xor_losses"]
    out = net(mlp.XOR_INPUTS).ravel()
    assert np.all((out > 0.5) == (mlp.XOR_TARGETS.ravel() == 1))
    assert losses[-1] < 0.01 < losses[0]


def test_sine_fit_rmse(cli_runs):
    fit = cli_runs["mlp"][3]["sine"]
    exact = np.sin(fit.x_test)
    assert fit.rmse_test == pytest.approx(np.sqrt(np.mean((fit.predict(fit.x_test) - exact) ** 2)))
    assert fit.rmse_test < 0.05
    assert np.sqrt(np.mean(np.sin(fit.x_test) ** 2)) > 0.5  # the bound is far below the signal


def test_bad_parameters():
    from mlpot.errors import ParameterError

    with pytest.raises(ParameterError, match="activation"):
        mlp.MLP((2, 1), "step")
    with pytest.raises(ParameterError, match="shape"):
        mlp.MLP((2, 3, 1))(np.zeros((4, 3)))
    with pytest.raises(ParameterError, match="rule"):
        perceptron.Perceptron((1.0,), 0.0, rule="sometimes")


# ---- toward a potential ------------------------------------------------------------------------
def test_lennard_jones_reference_points():
    eps, sigma = dimer.LJ_EPSILON, dimer.LJ_SIGMA
    assert dimer.lennard_jones(sigma) == pytest.approx(0.0, abs=1e-15)
    assert dimer.lennard_jones(2 ** (1 / 6) * sigma) == pytest.approx(-eps, rel=1e-12)


def test_lj_dimer_fit_on_held_out_distances(cli_runs):
    fit = cli_runs["dimer"][3]["fit"]
    exact = dimer.lennard_jones(fit.x_test)
    rmse = np.sqrt(np.mean((fit.predict(fit.x_test) - exact) ** 2))
    assert rmse == pytest.approx(fit.rmse_test)
    assert rmse < 0.05 * dimer.LJ_EPSILON  # < 0.52 meV
    assert not np.any(np.isin(fit.x_test, fit.x_train))


def test_written_out_symmetry_functions_match_acsf():
    from ase import Atoms

    from mlpot.descriptors.acsf import ACSF, SymmetryFunction

    functions = [
        SymmetryFunction("G2", 18, (18,), dimer.TRIMER_CUTOFF, eta=eta, r_shift=r_s)
        for eta, r_s in dimer.TRIMER_G2
    ] + [
        SymmetryFunction("G4", 18, (18, 18), dimer.TRIMER_CUTOFF, eta=eta, zeta=z, lambda_=lam)
        for eta, z, lam in dimer.TRIMER_G4
    ]
    acsf = ACSF(functions)
    for pos in dimer.random_trimers(3, seed=5):
        atoms = Atoms("Ar3", positions=pos)
        np.testing.assert_allclose(
            dimer.symmetry_functions(pos), acsf.compute(atoms), rtol=1e-10, atol=1e-12
        )


def test_raw_coordinates_break_invariance_descriptors_keep_it(cli_runs):
    report, models = cli_runs["dimer"][3]["report"], cli_runs["dimer"][3]["models"]
    rng = np.random.default_rng(11)
    probe = dimer.random_trimers(1, seed=12)[0]
    rotation = dimer.random_rotation(rng)
    rotated, swapped = probe @ rotation.T, probe[[1, 0, 2]]
    exact = dimer.trimer_energy(probe)
    assert dimer.trimer_energy(rotated) == pytest.approx(exact, abs=1e-14)
    raw, desc = models["raw"], models["descriptor"]
    assert abs(raw.energy(rotated) - raw.energy(probe)) > 1e-4  # eV
    assert abs(raw.energy(swapped) - raw.energy(probe)) > 1e-4
    assert abs(desc.energy(rotated) - desc.energy(probe)) < 1e-10
    assert abs(desc.energy(swapped) - desc.energy(probe)) < 1e-10
    # the printed demonstration shows the same, and both models actually learned something
    (e0, e_rot, e_swap) = report.energies["descriptor"]
    assert abs(e_rot - e0) < 1e-10 and abs(e_swap - e0) < 1e-10
    assert report.mean_rotation_change["raw"] > 1e-3
    assert report.mean_rotation_change["descriptor"] < 1e-10
    e_test = np.array([dimer.trimer_energy(p) for p in dimer.random_trimers(100, seed=1)])
    # the descriptor model learned the energies (held-out RMSE 1.4 meV, spread 5.8 meV); the
    # raw model, which must learn rotations from 200 examples, does worse than the mean (9 meV)
    assert report.test_rmse["descriptor"] < 0.3 * e_test.std()
    assert report.test_rmse["descriptor"] < 0.5 * report.test_rmse["raw"]


# ---- CLI ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "topic, pngs, phrase",
    [
        ("gates", ["gates.png"], "NAND: w = (-0.3, -0.2), theta = -0.4"),
        ("xor", ["perceptron_errors.png"], "it computes XNOR, the complement of XOR"),
        ("mlp", ["activations.png", "mlp_loss.png", "sin_fit.png"], "max |difference|"),
        ("dimer", ["lj_fit.png", "dimer_loss.png"], "raw-coordinate model changes"),
    ],
)
def test_cli_basics(cli_runs, topic, pngs, phrase):
    code, out, out_dir, _ = cli_runs[topic]
    assert code == 0
    assert phrase in out
    for name in pngs:
        data = (out_dir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"wrote {out_dir / name}" in out
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temp files left


def test_cli_printed_tables(cli_runs):
    xor_text = cli_runs["xor"][1]
    assert "computes XNOR" in xor_text and "computes AND" in xor_text and "computes XOR" in xor_text
    assert "-> never 0 (no convergence)" in xor_text
    gates_text = cli_runs["gates"][1]
    assert "   1  1 | +0.90 | 1" in gates_text and "   1  1 | -0.50 | 0" in gates_text


def test_cli_unwritable_out_folder(tmp_path, capsys):
    from mlpot.cli.main import main

    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    assert main(["basics", "gates", "--out", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "--out" in err


def test_cli_unknown_topic(capsys):
    from mlpot.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["basics", "quantum"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
