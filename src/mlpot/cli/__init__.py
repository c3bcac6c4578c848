"""The ``mlpot`` command line: thin wrappers around public library functions."""
