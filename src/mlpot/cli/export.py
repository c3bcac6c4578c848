"""``mlpot export MODEL --format n2p2 DIR``: write a model in another code's format."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to another code's format (n2p2 potential directory)",
        description="Write an mlpot HDNNP as an n2p2 potential directory (input.nn, "
        "scaling.data, weights.NNN.data; Å and eV) for n2p2's tools and LAMMPS pair_style "
        "hdnnp.",
    )
    p.add_argument("model", help="mlpot model file (or an n2p2 potential directory)")
    p.add_argument("directory", help="output directory (created if needed)")
    p.add_argument("--format", default="n2p2", choices=["n2p2"], help="output format")
    p.add_argument(
        "--length-unit",
        default="angstrom",
        help="length unit of MODEL when it is an n2p2 directory (angstrom, bohr)",
    )
    p.add_argument(
        "--energy-unit",
        default="ev",
        help="energy unit of MODEL when it is an n2p2 directory (ev, hartree)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import mlpot
    from mlpot.interop.n2p2 import export_n2p2

    model = mlpot.load(args.model, length_unit=args.length_unit, energy_unit=args.energy_unit)
    directory = export_n2p2(model, args.directory, comment=f"exported from {args.model}")
    print(f"wrote n2p2 potential (Å, eV) to {directory}")
    return 0
