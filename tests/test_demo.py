"""``mlpot demo``: its RDF analysis against diamond, and the quick demo end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk

import mlpot
from mlpot.datasets import BUNDLED_SI
from mlpot.demo import (
    DemoSettings,
    diamond_shells,
    peak_positions,
    radial_distribution,
    split_by_structure,
)
from mlpot.errors import ParameterError


def test_rdf_of_diamond_has_its_shells_and_coordination_numbers():
    lattice = 5.43
    atoms = bulk("Si", "diamond", a=lattice, cubic=True).repeat(2)
    r, g = radial_distribution([atoms], r_max=5.3, bin_width=0.01)
    rho = len(atoms) / atoms.get_volume()
    # Running coordination number Σ ρ g ΔV (ΔV the bin's shell volume): 4, 4 + 12, 4 + 12 + 12.
    shells = diamond_shells(lattice)
    np.testing.assert_allclose(shells, [2.3513, 3.8396, 4.5024], atol=1e-4)
    dr = r[1] - r[0]
    volume = 4.0 / 3.0 * np.pi * ((r + dr / 2) ** 3 - (r - dr / 2) ** 3)
    running = np.cumsum(rho * g * volume)
    for shell, expected in zip(shells, (4, 16, 28), strict=True):
        assert running[np.searchsorted(r, shell + 0.2)] == pytest.approx(expected, rel=1e-9)
    assert peak_positions(r, g) == pytest.approx(shells, abs=0.01)


def test_peak_positions_and_split():
    r = np.linspace(0.0, 6.0, 601)
    g = 3.0 * np.exp(-((r - 2.4) ** 2) / 0.01) + 1.5 * np.exp(-((r - 3.9) ** 2) / 0.05)
    assert peak_positions(r, g) == pytest.approx([2.4, 3.9], abs=0.011)
    rest, test = split_by_structure(50, 0.1, seed=3)
    assert len(test) == 5 and sorted(rest + test) == list(range(50))
    assert split_by_structure(50, 0.1, seed=3) == (rest, test)


def test_stratified_split_gives_each_group_its_share():
    """With group labels every group contributes test_fraction of its size (rounded by the
    largest remainders), whatever the seed; with one group it is the plain seeded split."""
    groups = ["crystal"] * 120 + ["liquid"] * 24 + ["defect"] * 30 + ["eos"] * 17
    rng = np.random.default_rng(5)
    groups = [groups[i] for i in rng.permutation(len(groups))]
    n = len(groups)
    tests = []
    for seed in range(6):
        rest, test = split_by_structure(n, 0.1, seed, groups)
        assert sorted(rest + test) == list(range(n)) and len(test) == round(0.1 * n)
        for g in set(groups):
            size = groups.count(g)
            count = sum(groups[i] == g for i in test)
            assert np.floor(0.1 * size) <= count <= np.ceil(0.1 * size), (seed, g, count)
        assert split_by_structure(n, 0.1, seed, groups) == (rest, test)
        tests.append(test)
    assert len({tuple(t) for t in tests}) == 6  # the seed picks the members
    # stable as the data grow: a group appended, or members appended to a group, leave the
    # other groups' test members in place (here no rounded share changes)
    for seed in range(6):
        _, test = split_by_structure(n, 0.1, seed, groups)
        grown = groups + ["new"] * 20
        _, with_new_group = split_by_structure(len(grown), 0.1, seed, grown)
        assert [i for i in with_new_group if i < n] == test
        assert sum(grown[i] == "new" for i in with_new_group) == 2
        more = groups + ["crystal"] * 10  # crystal's share 12 -> 13; the others stay
        _, with_more = split_by_structure(len(more), 0.1, seed, more)
        old = {i for i in test if groups[i] != "crystal"}
        assert {i for i in with_more if more[i] != "crystal"} == old
        # crystal's old members in test are still a prefix of the group's own order: its
        # old test members, fewer (newcomers took places) or one more (the extra place)
        old_crystal = {i for i in test if groups[i] == "crystal"}
        kept = {i for i in with_more if more[i] == "crystal" and i < n}
        assert kept <= old_crystal or old_crystal <= kept
        assert sum(more[i] == "crystal" for i in with_more) == 13
    with pytest.raises(ParameterError, match="49 group labels for 50 structures"):
        split_by_structure(50, 0.1, 3, ["all"] * 49)


@pytest.mark.skipif(not BUNDLED_SI.is_file(), reason="bundled Si data not generated")
def test_quick_demo_end_to_end(tmp_path, capsys):
    from mlpot.cli.main import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    for name in (
        "model.pt",
        "metrics.json",
        "log.csv",
        "parity.png",
        "learning_curve.png",
        "md.extxyz",
        "md_log.csv",
        "rdf.csv",
        "demo.json",
    ):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "demo.json").read_text())
    test = summary["metrics"]["test"]
    assert test["n_structures"] >= 3 and "stress_rmse_gpa" in test
    # Even the quick model must hold diamond at 1000 K: first RDF peak at the bond length.
    assert summary["rdf"]["peaks_A"][0] == pytest.approx(2.37, abs=0.08)
    printed = capsys.readouterr().out
    assert "next:" in printed and str(out / "model.pt") in printed
    # without --config the demo's cutoffs (7 Å radial, 6 Å angular), not the general 6 / 4.5
    model = mlpot.load(out / "model.pt")
    cutoffs = {f.kind: f.r_cut for f in model.descriptor.functions_for(14)}
    assert cutoffs == {"G2": DemoSettings().cutoff, "G5": DemoSettings().angular_cutoff}
    assert model.cutoff == DemoSettings().cutoff


def test_demo_config_sets_the_model_and_keeps_the_demo_settings(tmp_path):
    """`mlpot demo --config`: the model section reaches the saved model (here a 4-Å angular
    cutoff and one hidden layer of 8), while the demo's own budget and stress weight stay."""
    import yaml

    from mlpot.cli.main import main

    config = tmp_path / "demo.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"angular_cutoff": 4.0, "hidden_layers": [8]},
                "training": {"time_limit_s": 99999.0, "stress_weight": 0.0},
            }
        )
    )
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--config", str(config)]) == 0
    model = mlpot.load(out / "model.pt")
    cutoffs = {f.kind: f.r_cut for f in model.descriptor.functions_for(14)}
    assert cutoffs == {"G2": 6.0, "G5": 4.0}
    net = model.networks["Si"]
    linear = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == [8, 1]
    saved = model.metadata["config"]["training"]
    assert saved["time_limit_s"] == DemoSettings.quick().train_time_s
    assert saved["stress_weight"] == DemoSettings.quick().stress_weight
