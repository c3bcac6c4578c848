"""``mlpot info``: counts on the reference data, options, and bad input (exit code 2)."""

import subprocess
import sys

import pytest

from mlpot.cli.main import main


def count_extxyz(path):
    """(frames, atoms) from the atom-count lines of an extxyz file, without ASE."""
    lines = path.read_text().splitlines()
    frames = atoms = k = 0
    while k < len(lines):
        n = int(lines[k])
        frames += 1
        atoms += n
        k += n + 2
    return frames, atoms


@pytest.mark.parametrize(
    "relative, structures",
    [
        ("mlearn_Si/train.extxyz", 214),
        ("mlearn_Si/test.extxyz", 25),
        ("aenet_TiO2/TiO2_1000.extxyz", 1000),
    ],
)
def test_info_counts(shared_data, capsys, relative, structures):
    path = shared_data / relative
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    frames, atoms = count_extxyz(path)
    assert frames == structures
    assert f"structures: {structures}\n" in out
    assert f"atoms: {atoms} in total" in out
    assert f"energy: {structures} of {structures} structures" in out
    assert f"forces: {structures} of {structures} structures" in out


def test_info_tio2_elements(shared_data, capsys):
    path = shared_data / "aenet_TiO2/TiO2_1000.extxyz"
    text = path.read_text().splitlines()
    n_ti = sum(1 for line in text if line.startswith("Ti "))
    n_o = sum(1 for line in text if line.startswith("O "))
    assert main(["info", str(path)]) == 0
    assert f"elements: O {n_o}, Ti {n_ti}" in capsys.readouterr().out


def test_info_n2p2_units(shared_data, capsys):
    path = shared_data / "n2p2/H2O_RPBE-D3/train.input.data"
    args = ["info", str(path), "--length-unit", "bohr", "--energy-unit", "hartree"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "structures: 20\n" in out and "elements: H 1376, O 688" in out
    # energies per atom from the file's own numbers (Hartree) times ase.units.Hartree
    from ase.units import Hartree

    blocks, n = [], 0
    for line in path.read_text().splitlines():
        words = line.split()
        if words and words[0] == "begin":
            n = 0
        elif words and words[0] == "atom":
            n += 1
        elif words and words[0] == "energy":
            blocks.append(float(words[1]) * Hartree / n)
    assert f"{min(blocks):.6f} to {max(blocks):.6f} eV/atom" in out


def test_info_quip_keys(tmp_path, capsys):
    import ase
    import ase.io
    import numpy as np

    atoms = ase.Atoms("Si2", positions=[[0, 0, 0], [1.4, 1.4, 1.4]], cell=[5.4] * 3, pbc=True)
    atoms.info["dft_energy"] = -10.0
    atoms.arrays["dft_forces"] = np.ones((2, 3))
    atoms.info["dft_virial"] = np.eye(3)
    ase.io.write(tmp_path / "q.xyz", [atoms, atoms])
    args = ["info", str(tmp_path / "q.xyz"), "--energy-key", "dft_energy"]
    args += ["--forces-key", "dft_forces", "--stress-key", "dft_virial", "--format", "extxyz"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "energy: 2 of 2" in out and "forces: 2 of 2" in out and "stress: 2 of 2" in out
    assert "-5.000000 to -5.000000 eV/atom" in out


def test_info_bad_input_in_process(tmp_path, capsys):
    missing = tmp_path / "missing.extxyz"
    assert main(["info", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and "Traceback" not in err
    bad = tmp_path / "input.data"
    bad.write_text("begin\natom 1 2 3 H 0 0\nend\n")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad} line 2: expected 'atom x y z element charge energy fx fy fz'" in err


def test_info_bad_input_exit_code(tmp_path):
    bad = tmp_path / "broken.extxyz"
    bad.write_text("2\nProperties=species:S:1:pos:R:3 energy=1.0\nH 0 0 0\n")
    result = subprocess.run(
        [sys.executable, "-m", "mlpot.cli.main", "info", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("mlpot info: error: ") and str(bad) in result.stderr
    assert result.stderr.count("\n") == 1
