"""sample_NNP's desc.npy / label.npy layout."""

import numpy as np
import pytest

from mlpot.errors import DataError
from mlpot.interop.sample_nnp import load_sample_nnp


def test_load_reference_arrays(shared_data):
    desc_path = shared_data / "sample_NNP/desc.npy"
    label_path = shared_data / "sample_NNP/label.npy"
    descriptors, energy_per_atom = load_sample_nnp(desc_path, label_path)
    assert descriptors.shape == (1250, 64, 11) and descriptors.dtype == np.float64
    assert energy_per_atom.shape == (1250,) and energy_per_atom.dtype == np.float64
    raw_desc, raw_label = np.load(desc_path), np.load(label_path)
    np.testing.assert_array_equal(descriptors, raw_desc.astype(np.float64))
    np.testing.assert_array_equal(energy_per_atom, raw_label.reshape(-1).astype(np.float64))
    # crystalline Si from PBE-type DFT: about -5.4 eV/atom; G1 (first column) is a positive sum
    assert -6.5 < energy_per_atom.min() < energy_per_atom.max() < -5.0
    assert (descriptors[:, :, 0] > 0).all()


def test_mismatched_pair(shared_data, tmp_path):
    short = tmp_path / "label.npy"
    np.save(short, np.load(shared_data / "sample_NNP/label.npy")[:1000])
    with pytest.raises(DataError) as error:
        load_sample_nnp(shared_data / "sample_NNP/desc.npy", short)
    message = str(error.value)
    assert "has 1000 energies" in message and "1250 structures" in message
    assert str(short) in message


def test_bad_arrays(tmp_path):
    desc, label = tmp_path / "desc.npy", tmp_path / "label.npy"
    np.save(label, np.zeros(4))
    np.save(desc, np.zeros((4, 11)))
    with pytest.raises(DataError, match=r"desc.npy: descriptors must have 3 dimensions"):
        load_sample_nnp(desc, label)
    values = np.zeros((4, 2, 3))
    values[2, 1, 0] = np.nan
    np.save(desc, values)
    with pytest.raises(DataError, match=r"desc.npy: 1 descriptor value\(s\) are NaN or inf.*"
                       r"structure 2, 0-based"):  # fmt: skip
        load_sample_nnp(desc, label)
    np.save(desc, np.zeros((4, 2, 3)))
    np.save(label, np.array([0.0, np.inf, 0.0, 0.0]))
    with pytest.raises(DataError, match=r"label.npy: 1 energy value\(s\) are NaN or inf"):
        load_sample_nnp(desc, label)
    with pytest.raises(DataError, match=r"missing.npy: no such file"):
        load_sample_nnp(tmp_path / "missing.npy", label)
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(DataError, match=r"text.npy: cannot read it as a .npy array"):
        load_sample_nnp(desc, tmp_path / "text.npy")
