"""``mlpot info FILE``: what a data file holds."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="summarise a structure data file")
    p.add_argument("file", help="any file ASE reads (extxyz, OUTCAR, ...) or n2p2 input.data")
    p.add_argument(
        "--format", default=None, help="file format, e.g. extxyz or n2p2 (default: guess)"
    )
    p.add_argument("--energy-key", default=None, help="info key of reference energies (eV)")
    p.add_argument("--forces-key", default=None, help="array key of reference forces (eV/Å)")
    p.add_argument(
        "--stress-key",
        default=None,
        help="info key of reference stress (eV/Å³); a key containing 'virial' is read as a virial",
    )
    p.add_argument(
        "--length-unit",
        default="angstrom",
        choices=["angstrom", "bohr"],
        help="length unit of the file (default angstrom)",
    )
    p.add_argument(
        "--energy-unit",
        default="ev",
        choices=["ev", "hartree"],
        help="energy unit of the file (default ev)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from mlpot.data.io import read_structures, summarize

    structures = read_structures(
        args.file,
        format=args.format,
        energy_key=args.energy_key,
        forces_key=args.forces_key,
        stress_key=args.stress_key,
        length_unit=args.length_unit,
        energy_unit=args.energy_unit,
    )
    print(summarize(structures, source=args.file))
    return 0
