"""``mlpot info FILE``: what a data file holds."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="summarise a structure data file")
    p.add_argument("file", help="any file ASE reads (extxyz, OUTCAR, ...) or n2p2 input.data")
    p.add_argument("--format", default=None, help="file format (default: guess)")
    p.add_argument("--energy-key", default=None, help="info key of reference energies")
    p.add_argument("--forces-key", default=None, help="array key of reference forces")
    p.add_argument("--stress-key", default=None, help="info key of reference stress")
    p.set_defaults(func=run)


def run(args) -> int:
    from mlpot.data.io import read_structures, summarize

    structures = read_structures(
        args.file,
        format=args.format,
        energy_key=args.energy_key,
        forces_key=args.forces_key,
        stress_key=args.stress_key,
    )
    print(summarize(structures, source=args.file))
    return 0
