"""Data sets: checksum-verified fetching, the generator's bookkeeping, the bundled GPAW Si set."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import socket
import sys
from pathlib import Path

import ase.geometry
import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from mlpot.cli.main import main as cli_main
from mlpot.datasets import (
    BUNDLED_SI,
    BUNDLED_SI_PROVENANCE,
    REGISTRY,
    Dataset,
    DatasetFile,
    default_cache_dir,
    fetch_dataset,
)
from mlpot.errors import MlpotError

REPO = Path(__file__).resolve().parents[1]


def _registry(url: str, sha256: str | None) -> dict[str, Dataset]:
    entry = DatasetFile("toy.xyz", url, sha256)
    dataset = Dataset("toy", "a toy data set", (entry,), "CC0-1.0", "nobody", "file://")
    return {"toy": dataset}


@pytest.fixture
def source(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "source" / "toy.xyz"
    path.parent.mkdir()
    payload = b'1\nLattice="3 0 0 0 3 0 0 0 3" energy=-1.5 pbc="T T T"\nSi 0 0 0\n' * 50
    path.write_bytes(payload)
    return path, hashlib.sha256(payload).hexdigest()


def test_fetch_with_correct_checksum_lands_in_cache(tmp_path, source):
    path, checksum = source
    cache = tmp_path / "cache"
    messages: list[str] = []
    (fetched,) = fetch_dataset(
        "toy", cache_dir=cache, registry=_registry(path.as_uri(), checksum), log=messages.append
    )
    assert fetched == cache / "toy" / "toy.xyz"
    assert fetched.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in (cache / "toy").iterdir()) == ["toy.xyz"]
    assert "sha256 verified" in messages[-1]
    # A second fetch uses the cache: the changed source is not downloaded again.
    path.write_bytes(b"changed")
    (again,) = fetch_dataset("toy", cache_dir=cache, registry=_registry(path.as_uri(), checksum))
    assert hashlib.sha256(again.read_bytes()).hexdigest() == checksum


def test_fetch_with_wrong_checksum_leaves_nothing(tmp_path, source):
    path, checksum = source
    wrong = "0" * 64
    cache = tmp_path / "cache"
    with pytest.raises(MlpotError, match=f"got sha256 {checksum}, expected {wrong}"):
        fetch_dataset("toy", cache_dir=cache, registry=_registry(path.as_uri(), wrong))
    leftovers = [p for p in cache.rglob("*") if p.is_file()]
    assert leftovers == []


def test_fetch_without_recorded_checksum_warns_with_computed_one(tmp_path, source):
    path, checksum = source
    messages: list[str] = []
    (fetched,) = fetch_dataset(
        "toy",
        cache_dir=tmp_path / "c",
        registry=_registry(path.as_uri(), None),
        log=messages.append,
    )
    assert fetched.is_file()
    warning = [m for m in messages if "no recorded checksum; computed" in m]
    assert len(warning) == 1 and checksum in warning[0]


def test_fetch_unreachable_gives_offline_message(tmp_path):
    missing = (tmp_path / "nowhere" / "toy.xyz").as_uri()
    cache = tmp_path / "cache"
    with pytest.raises(MlpotError, match="offline\\? download .* by hand and put it at"):
        fetch_dataset("toy", cache_dir=cache, registry=_registry(missing, None))
    # A closed port on the loopback interface: connection refused, same message with the host.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/toy.xyz"
    with pytest.raises(MlpotError) as error:
        fetch_dataset("toy", cache_dir=cache, registry=_registry(url, None), timeout=5)
    message = str(error.value)
    assert message.startswith(f"cannot reach 127.0.0.1:{port}")
    assert f"download {url} by hand and put it at {cache / 'toy' / 'toy.xyz'}" in message
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_unknown_dataset_and_cache_folder(monkeypatch, tmp_path):
    with pytest.raises(MlpotError, match="unknown data set 'nope'; known data sets: .*mlearn-Si"):
        fetch_dataset("nope", cache_dir=tmp_path)
    monkeypatch.delenv("MLPOT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mlpot"
    monkeypatch.setenv("MLPOT_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


def test_registry_entries_are_complete():
    expected = {f"mlearn-{el}" for el in ("Si", "Ge", "Mo", "Li", "Cu", "Ni")} | {"rmd17"}
    assert expected <= set(REGISTRY)
    assert any(name.startswith("n2p2-") for name in REGISTRY)
    for dataset in REGISTRY.values():
        assert dataset.license and dataset.citation and dataset.files
        for entry in dataset.files:
            assert entry.url.startswith("https://")
            assert entry.sha256 is None or (len(entry.sha256) == 64 and int(entry.sha256, 16) >= 0)
    si = REGISTRY["mlearn-Si"]
    assert [f.url.rsplit("/", 2)[-2:] for f in si.files] == [
        ["Si", "training.json"],
        ["Si", "test.json"],
    ]
    assert si.license == "BSD-3-Clause" and "124, 731" in si.citation


def test_cli_list_and_fetch_errors(capsys, tmp_path):
    assert cli_main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert "mlearn-Ni" in out and "rmd17" in out and "si-gpaw" in out
    assert cli_main(["datasets", "fetch", "nope", "--cache", str(tmp_path)]) == 2
    assert "unknown data set 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The generator script (no DFT: candidate building, resume bookkeeping, finalize)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location(
        "make_si_dataset", REPO / "scripts" / "make_si_dataset.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_si_dataset"] = module
    spec.loader.exec_module(module)
    # no MD-sampled liquid: neither a working file (data_generation/ may hold one) nor the
    # kept positions of the bundled ones (test_kept_liquid_candidates_match_the_bundle)
    module.LIQUID_FILES = {
        group: (
            REPO / "no-such-dir" / f"si_{group}_candidates.extxyz",
            REPO / "no-such-dir" / f"si_{group}_candidates.extxyz.gz",
        )
        for group in module.APPENDED_GROUPS
    }
    return module


def _use_working_file(generator, monkeypatch, group, path):
    """Make ``path`` the working file of liquid round ``group`` (kept file unchanged)."""
    _, kept = generator.LIQUID_FILES[group]
    monkeypatch.setitem(generator.LIQUID_FILES, group, (path, kept))


def test_candidates_deterministic_balanced_and_physical(generator):
    first = generator.build_candidates(7)
    second = generator.build_candidates(7)
    other = generator.build_candidates(8)
    assert 300 <= len(first) <= 500
    for a, b in zip(first, second, strict=True):
        assert a.info == b.info
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell[:], b.cell[:])
    assert not np.allclose(first[0].positions, other[0].positions)
    assert [a.info["index"] for a in first] == list(range(len(first)))
    # The first groups are interleaved in proportion to their size (every prefix of 40 holds
    # each of them); groups added later follow them, so that earlier indices stay.
    groups = set(generator.GROUP_DESCRIPTIONS)
    appended = set(generator.APPENDED_GROUPS)
    base = [a for a in first if a.info["group"] not in appended]
    assert {a.info["group"] for a in first[:40]} == groups - appended
    counts = {g: sum(a.info["group"] == g for a in base) for g in groups - appended}
    for g in counts:
        in_prefix = sum(a.info["group"] == g for a in first[:100])
        assert abs(in_prefix - 100 * counts[g] / len(base)) <= 1.5
    # Without MD samples for this seed (none on a clean checkout) the appended group is empty.
    assert generator.build_appended_groups(7) == {g: [] for g in generator.APPENDED_GROUPS}
    # Physical sanity: no two atoms closer than 1.7 Å (Si dimer bond 2.25 Å), defects right.
    for atoms in first:
        if len(atoms) > 1:
            d = atoms.get_all_distances(mic=True)
            assert d[np.triu_indices(len(atoms), 1)].min() > 1.7, atoms.info
    sizes = {g: {len(a) for a in first if a.info["group"] == g} for g in groups}
    assert sizes["vacancy"] == {7, 15} and sizes["interstitial"] == {9, 17}
    assert sizes["eos"] == {8}
    # One k-set for every crystalline cell: all are built on the 8-atom cube, and the density's
    # mesh times the cell's repeat of the cube is the cube's 4x4x4 (the 2x2x2 primitive
    # supercell's 3x3x3 sat 9.3 meV/atom above it, docs/datasets.md).
    from ase.calculators.calculator import kptdensity2monkhorstpack

    density = generator.SETTINGS["kpts_density_per_inv_angstrom"]
    for atoms in first:
        if atoms.info["group"] == "liquid":  # metallic: denser than the density's mesh
            assert atoms.info["kpts_fixed"] == {8: "8x8x8", 16: "6x6x6"}[len(atoms)]
            continue
        fixed = atoms.info.get("kpts_fixed")
        mesh = (
            [int(k) for k in fixed.split("x")]
            if fixed
            else list(kptdensity2monkhorstpack(atoms, density, even=False))
        )
        repeats = np.rint(atoms.cell.lengths() / generator.SI_LATTICE)
        if atoms.info["group"] == "eos":
            repeats = np.ones(3)
        # cells with a point defect: 6x6x6 per cube (4x4x4 leaves 5-11 meV/atom, see docs)
        per_cube = 6 if atoms.info["group"] in ("vacancy", "interstitial") else 4
        assert list(np.asarray(mesh) * repeats) == [per_cube] * 3, (atoms.info, mesh)
    # Harmonic amplitude: σ² = kB T / (m ω_E²), ω_E = kB Θ_E / ħ; 300 K, Θ_E = 500 K, m = 28.0855 u
    kb, hbar, amu = 1.380649e-23, 1.054571817e-34, 1.66053906660e-27
    omega = kb * 500.0 / hbar
    expected = np.sqrt(kb * 300.0 / (28.0855 * amu * omega**2)) * 1e10
    assert generator.harmonic_sigma(300.0) == pytest.approx(expected, rel=1e-6)


def test_liquid_sampler_appends_md_snapshots(generator, tmp_path, monkeypatch):
    """--sample-liquid: a sampler trained once (reused while its data stay the same) drives NVT
    MD; snapshots after the equilibration, snapshot-major, become ``liquid_md`` candidates
    appended after the first ones, on their fixed k-mesh, without moving the earlier ones."""
    import mlpot.demo
    from mlpot.models.pair import LennardJones

    seed = generator.DEFAULT_SEED
    base = generator.build_candidates(seed)
    output = tmp_path / "work.extxyz"
    rng = np.random.default_rng(0)
    for atoms in base[:2]:
        generator.append_frame(output, generator.result_atoms(atoms, _fake_result(atoms, rng)))
    monkeypatch.setattr(generator, "build_base_candidates", lambda seed: base[:2])
    _use_working_file(generator, monkeypatch, "liquid_md", tmp_path / "liquid_md.extxyz")
    md = dict(generator.LIQUID_MD, trajectories=2, equilibration_fs=40, interval_fs=20)
    monkeypatch.setattr(generator, "LIQUID_MD", md)
    trainings = []

    def fake_training(out_dir, structures, seed, **kwargs):  # a stand-in sampler: LJ "Si"
        # a checkpoint left by a sampler of other data would be resumed, not retrained
        assert not (Path(out_dir) / "checkpoint.pt").exists()
        trainings.append(len(structures))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "checkpoint.pt").write_text("stand-in")
        LennardJones(0.3, 2.1, 5.0, elements=(14,)).save(Path(out_dir) / "model.pt")

    monkeypatch.setattr(mlpot.demo, "run_demo", fake_training)
    args = ["--sample-liquid", "--output", str(output)]
    assert generator.main(args) == 0
    assert generator.main(args) == 0
    assert trainings == [2]  # trained on the computed frames once, then reused

    samples = ase.io.read(tmp_path / "liquid_md.extxyz", ":", format="extxyz")
    keys = [(a.info["time_fs"], a.info["trajectory"]) for a in samples]
    assert keys == [(60.0, 0), (60.0, 1), (80.0, 0), (80.0, 1)]
    model_sha = hashlib.sha256((tmp_path / "liquid_sampler" / "model" / "model.pt").read_bytes())
    for atoms in samples:
        assert atoms.info["sampler_sha256"] == model_sha.hexdigest()
        assert len(atoms) == md["atoms"]
        mass_g = len(atoms) * 28.0855 * 1.66053906660e-24
        density = mass_g / (atoms.get_volume() * 1e-24)
        assert density == pytest.approx(atoms.info["density_g_cm3"], rel=1e-6)
        d = atoms.get_all_distances(mic=True)
        assert d[np.triu_indices(len(atoms), 1)].min() >= md["min_distance_A"]
    # the two snapshots of one trajectory are 20 fs of MD apart: moved, not re-drawn
    moved = ase.geometry.find_mic(samples[2].positions - samples[0].positions, samples[0].cell)[1]
    assert 0.005 < moved.mean() < 0.5
    # other computed data (one more structure): the old sampler and its checkpoint go
    generator.append_frame(output, generator.result_atoms(base[2], _fake_result(base[2], rng)))
    monkeypatch.setattr(generator, "build_base_candidates", lambda seed: base[:3])
    assert generator.main(args) == 0
    assert trainings == [2, 3]

    monkeypatch.undo()
    _use_working_file(generator, monkeypatch, "liquid_md", tmp_path / "liquid_md.extxyz")
    candidates = generator.build_candidates(seed)
    assert len(candidates) == len(base) + len(samples)
    assert candidates[: len(base)] == base
    for index, (atoms, sample) in enumerate(zip(candidates[len(base) :], samples, strict=True)):
        assert atoms.info["index"] == len(base) + index and atoms.info["group"] == "liquid_md"
        assert atoms.info["kpts_fixed"] == generator.LIQUID_MD["kpts"]
        np.testing.assert_allclose(atoms.positions, sample.positions, atol=1e-12)
    # another seed's samples: none
    assert generator.build_appended_groups(seed + 1) == {g: [] for g in generator.APPENDED_GROUPS}


def test_second_liquid_round_is_sampled_by_a_model_of_everything_before_it(
    generator, tmp_path, monkeypatch
):
    """--sample-liquid --liquid-group liquid_md2: refused until liquid_md is sampled and
    computed; then its sampler trains on the interleaved candidates and liquid_md, and its
    snapshots (another random stream) are appended after liquid_md without moving it."""
    import mlpot.demo
    from mlpot.models.pair import LennardJones

    seed = generator.DEFAULT_SEED
    full = generator.build_groups(seed)
    tiny = {"rattle8": full["rattle8"][:2], "eos": full["eos"][:1]}
    monkeypatch.setattr(generator, "build_groups", lambda seed: tiny)
    _use_working_file(generator, monkeypatch, "liquid_md", tmp_path / "round1.extxyz")
    _use_working_file(generator, monkeypatch, "liquid_md2", tmp_path / "round2.extxyz")
    md = dict(generator.LIQUID_MD, trajectories=2, equilibration_fs=40, interval_fs=20)
    monkeypatch.setattr(generator, "LIQUID_MD", md)
    trainings = []

    def fake_training(out_dir, structures, seed, **kwargs):  # a stand-in sampler: LJ "Si"
        trainings.append(len(structures))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        LennardJones(0.3, 2.1, 5.0, elements=(14,)).save(Path(out_dir) / "model.pt")

    monkeypatch.setattr(mlpot.demo, "run_demo", fake_training)
    output = tmp_path / "work.extxyz"
    rng = np.random.default_rng(2)

    def compute_all():
        done = {int(a.info["index"]) for a in generator.read_done(output)}
        for atoms in generator.build_candidates(seed):
            if atoms.info["index"] not in done:
                frame = generator.result_atoms(atoms, _fake_result(atoms, rng))
                generator.append_frame(output, frame)

    round2 = ["--sample-liquid", "--liquid-group", "liquid_md2", "--output", str(output)]
    compute_all()
    with pytest.raises(SystemExit, match="sample and compute liquid_md first"):
        generator.main(round2)
    assert generator.main(["--sample-liquid", "--output", str(output)]) == 0
    first = generator.build_candidates(seed)
    assert [a.info["group"] for a in first[3:]] == ["liquid_md"] * 4
    compute_all()
    assert generator.main(round2) == 0
    assert trainings == [3, 7]  # round 1 on the 3 interleaved, round 2 on those and round 1
    both = generator.build_candidates(seed)
    assert [a.info["group"] for a in both] == [a.info["group"] for a in first] + ["liquid_md2"] * 4
    assert [a.info["index"] for a in both] == list(range(11))
    for a, b in zip(first, both, strict=False):  # round 1 and the rest stay where they were
        np.testing.assert_array_equal(a.positions, b.positions)
    for a, b in zip(both[3:7], both[7:], strict=True):  # other starting packings
        assert not np.allclose(a.positions, b.positions)
    assert all(a.info["kpts_fixed"] == md["kpts"] for a in both[7:])
    # a third round: its sampler trains on everything before it, its snapshots go last
    _use_working_file(generator, monkeypatch, "liquid_md3", tmp_path / "round3.extxyz")
    round3 = ["--sample-liquid", "--liquid-group", "liquid_md3", "--output", str(output)]
    with pytest.raises(SystemExit, match="7 of the first 11 candidates computed"):
        generator.main(round3)  # round 2 sampled, not computed yet
    compute_all()
    assert generator.main(round3) == 0
    assert trainings == [3, 7, 11]
    three = generator.build_candidates(seed)
    assert [a.info["group"] for a in three[11:]] == ["liquid_md3"] * 4
    for a, b in zip(both, three, strict=False):
        np.testing.assert_array_equal(a.positions, b.positions)
    assert not np.allclose(three[7].positions, three[11].positions)
    # without round 1's samples, later rounds are left out too (their samplers saw them)
    _use_working_file(generator, monkeypatch, "liquid_md", tmp_path / "absent.extxyz")
    assert [len(v) for v in generator.build_appended_groups(seed).values()] == [0] * len(
        generator.APPENDED_GROUPS
    )


def test_kept_liquid_candidates_match_the_bundle(generator, monkeypatch):
    """On a clean checkout the generator's candidates are the bundle's structures, the
    MD-sampled liquid included (its positions come from the sampler's MD, kept in
    scripts/liquid_md/): the bundle can be extended or recomputed from there."""
    if not BUNDLED_SI.is_file():
        pytest.skip("no bundled data set")
    for group in generator.APPENDED_GROUPS:  # the fixture hid the kept files: restore them
        working, _ = generator.LIQUID_FILES[group]
        kept = generator.KEPT_LIQUID_DIR / f"si_{group}_candidates.extxyz.gz"
        monkeypatch.setitem(generator.LIQUID_FILES, group, (working, kept))
    candidates = generator.build_candidates(generator.DEFAULT_SEED)
    record = json.loads(BUNDLED_SI_PROVENANCE.read_text())
    assert len(candidates) == record["n_candidates"] == record["n_structures"]
    frames = ase.io.read(BUNDLED_SI, ":", format="extxyz")
    generator.check_against_candidates(frames, candidates, BUNDLED_SI)  # raises on a mismatch
    liquid = [a for a in candidates if a.info["group"].startswith("liquid_md")]
    bundled_liquid = [g for g in record["groups"] if g.startswith("liquid_md")]
    assert len(liquid) == sum(record["groups"][g]["n_structures"] for g in bundled_liquid) > 0
    for atoms in liquid:
        frame = frames[atoms.info["index"]]
        np.testing.assert_allclose(frame.positions, atoms.positions, atol=1e-6)


def test_a_frame_computed_on_another_k_mesh_counts_as_changed(generator):
    """A working frame records the mesh it was computed with; when the candidate asks for
    another one (the defect cells moved from 4x4x4 to 6x6x6 per cube), it is recomputed.
    Frames that record no mesh (bundles before 2026-12-01) had the density's 4x4x4."""
    candidates = generator.build_candidates(generator.DEFAULT_SEED)
    defect = next(a for a in candidates if a.info["group"] == "vacancy" and len(a) == 7)
    assert defect.info["kpts_fixed"] == "6x6x6"
    index = int(defect.info["index"])
    rng = np.random.default_rng(1)
    frame = generator.result_atoms(defect, dict(_fake_result(defect, rng), kpts=[6, 6, 6]))
    assert generator.changed_candidates([frame], candidates) == []
    old_mesh = generator.result_atoms(defect, dict(_fake_result(defect, rng), kpts=[4, 4, 4]))
    assert generator.changed_candidates([old_mesh], candidates) == [index]
    bundled = defect.copy()
    bundled.info = {"index": index, "group": "vacancy"}
    assert generator.changed_candidates([bundled], candidates) == [index]
    bundled.info["kpts"] = "6x6x6"
    assert generator.changed_candidates([bundled], candidates) == []
    eos = next(a for a in candidates if a.info["group"] == "eos")  # fixed mesh = density's
    bare = eos.copy()
    bare.info = {"index": eos.info["index"], "group": "eos"}
    assert generator.changed_candidates([bare], candidates) == []
    # a frame past the end of a shortened candidate list counts as changed (it used to crash)
    beyond = bare.copy()
    beyond.info = {"index": len(candidates), "group": "liquid_md"}
    assert generator.changed_candidates([beyond], candidates) == [len(candidates)]


def _fake_result(atoms, rng):
    return {
        "energy": -5.4 * len(atoms) + rng.normal(),
        "forces": rng.normal(size=(len(atoms), 3)),
        "stress": rng.normal(size=6) * 1e-3,
        "wall_s": 1.5,
        "cpu_s": 2.5,
        "kpts": [int(k) for k in atoms.info.get("kpts_fixed", "4x4x4").split("x")],
    }


def test_resume_and_finalize_partial(generator, tmp_path):
    rng = np.random.default_rng(0)
    candidates = generator.build_candidates(generator.DEFAULT_SEED)
    output = tmp_path / "work" / "si.partial.extxyz"
    output.parent.mkdir()
    written = []
    for index in (0, 3, 1):
        atoms = generator.result_atoms(candidates[index], _fake_result(candidates[index], rng))
        generator.append_frame(output, atoms)
        written.append(atoms)
    # A crash in the middle of a frame: the next read cuts it off and keeps the three others.
    text = generator.frame_text(written[0])
    with open(output, "a") as handle:
        handle.write(text[: len(text) // 2])
    done = generator.read_done(output)
    assert sorted(int(a.info["index"]) for a in done) == [0, 1, 3]
    assert output.read_text().count("Lattice=") == 3
    for atoms, reread in zip(written, done, strict=True):
        np.testing.assert_allclose(reread.get_forces(), atoms.get_forces(), atol=1e-7)
        assert reread.get_potential_energy() == pytest.approx(atoms.get_potential_energy())

    # Resuming with another seed (another candidate list) is refused, not mixed in.
    with pytest.raises(SystemExit, match="index 0 differs from candidate 0"):
        generator.main(["--output", str(output), "--seed", "1", "--limit", "0"])
    # After a generator update, --recompute-changed drops only the frames that differ.
    moved = written[2].copy()
    moved.info = dict(written[2].info)
    moved.calc = written[2].calc
    moved.positions[0] += 0.1
    stale = tmp_path / "stale.extxyz"
    for atoms in (written[0], moved, written[1]):
        generator.append_frame(stale, atoms)
    with pytest.raises(SystemExit, match="1 of 3 frames differ"):
        generator.main(["--output", str(stale), "--limit", "0"])
    assert generator.main(["--output", str(stale), "--limit", "0", "--recompute-changed"]) == 0
    assert sorted(int(a.info["index"]) for a in generator.read_done(stale)) == [0, 3]

    bundle = tmp_path / "bundle"
    assert (
        generator.main(
            [
                "--finalize",
                "--output",
                str(output),
                "--bundle-dir",
                str(bundle),
                "--convergence",
                str(tmp_path / "none.json"),
            ]
        )
        == 0
    )
    data = (bundle / "si_gpaw.extxyz.gz").read_bytes()
    record = json.loads((bundle / "si_gpaw.json").read_text())
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["partial"] is True and record["n_structures"] == 3
    assert record["n_candidates"] == len(candidates)
    assert sum(g["n_structures"] for g in record["groups"].values()) == 3
    assert record["wall_s_total"] == pytest.approx(3 * 1.5)
    for group in record["groups"].values():
        assert group["cpu_s_per_structure"] == (2.5 if group["n_structures"] else None)
    frames = ase.io.read(io.StringIO(gzip.decompress(data).decode()), ":", format="extxyz")
    assert [int(a.info["index"]) for a in frames] == [0, 1, 3]
    by_index = {int(a.info["index"]): a for a in written}
    for frame in frames:
        original = by_index[int(frame.info["index"])]
        assert frame.info["group"] == original.info["group"]
        assert frame.info["kpts"] == original.info["kpts"]  # the mesh travels with the frame
        np.testing.assert_allclose(frame.get_stress(), original.get_stress(), atol=1e-10)
        np.testing.assert_allclose(frame.positions, original.positions, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# The bundled data set (skips only while the file does not exist)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled():
    if not BUNDLED_SI.is_file():
        pytest.skip(f"{BUNDLED_SI.name} not generated yet (scripts/make_si_dataset.py)")
    record = json.loads(BUNDLED_SI_PROVENANCE.read_text())
    text = gzip.decompress(BUNDLED_SI.read_bytes()).decode()
    frames = ase.io.read(io.StringIO(text), ":", format="extxyz")
    return record, frames


def test_bundled_file_matches_provenance(bundled):
    record, frames = bundled
    assert hashlib.sha256(BUNDLED_SI.read_bytes()).hexdigest() == record["sha256"]
    assert len(frames) == record["n_structures"]
    counts = {}
    for atoms in frames:
        assert isinstance(atoms.calc, SinglePointCalculator)
        results = atoms.calc.results
        assert np.isfinite(results["energy"])
        assert results["forces"].shape == (len(atoms), 3)
        assert np.asarray(results["stress"]).size in (6, 9)
        assert set(atoms.get_chemical_symbols()) == {"Si"}
        # Translation invariance: the net force on a periodic cell vanishes (PAW: to ~0.05 eV/Å).
        assert np.abs(results["forces"].sum(axis=0)).max() < 0.05 * len(atoms) ** 0.5
        counts[atoms.info["group"]] = counts.get(atoms.info["group"], 0) + 1
    assert counts == {
        g: v["n_structures"] for g, v in record["groups"].items() if v["n_structures"]
    }


def test_bundled_physics(bundled):
    record, frames = bundled
    energies = np.array([a.get_potential_energy() / len(a) for a in frames])
    # Bulk Si PBE cohesive scale: energies per atom within a few eV of each other.
    assert energies.max() - energies.min() < 3.0
    eos = [a for a in frames if a.info["group"] == "eos"]
    if len(eos) >= 5:
        volume = np.array([a.get_volume() / len(a) for a in eos])
        energy = np.array([a.get_potential_energy() / len(a) for a in eos])
        # Perfect diamond: forces vanish by symmetry; minimum near the PBE volume 20.4 Å³/atom.
        for atoms in eos:
            assert np.abs(atoms.get_forces()).max() < 1e-3
        order = np.argsort(volume)
        if volume.min() < 19.5 and volume.max() > 21.5:
            assert 19.5 < volume[np.argmin(energy)] < 21.5
        elif volume.max() < 20.0:  # a partial set, all compressed: E falls towards V0
            assert np.all(np.diff(energy[order]) < 0)
        # Pressure -dE/dV from the E(V) points agrees with the DFT stress (-trace/3).
        order = np.argsort(volume)
        dE_dV = np.gradient(energy[order], volume[order])
        pressure = np.array([-np.trace(eos[i].get_stress(voigt=False)) / 3 for i in order])
        inner = slice(1, -1)
        np.testing.assert_allclose(-dE_dV[inner], pressure[inner], atol=5e-3)
