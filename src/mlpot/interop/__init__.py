"""Interoperability with other codes: n2p2 files, DScribe feature order, sample_NNP arrays."""
