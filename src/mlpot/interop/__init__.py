"""Interoperability with other codes' layouts: n2p2 files, DScribe feature order, sample_NNP arrays."""
