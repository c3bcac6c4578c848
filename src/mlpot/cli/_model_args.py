"""The MODEL argument shared by subcommands that use a potential (md, relax, export)."""

from __future__ import annotations


def add_model_arguments(parser) -> None:
    """Add the positional MODEL and the units of an n2p2 potential directory."""
    parser.add_argument("model", help="mlpot model file (model.pt) or n2p2 potential directory")
    parser.add_argument(
        "--length-unit",
        default="angstrom",
        help="length unit of MODEL when it is an n2p2 directory (angstrom, bohr)",
    )
    parser.add_argument(
        "--energy-unit",
        default="ev",
        help="energy unit of MODEL when it is an n2p2 directory (ev, hartree)",
    )


def load_model(args):
    """The potential named by ``args.model`` (see :func:`mlpot.load`)."""
    import mlpot

    return mlpot.load(args.model, length_unit=args.length_unit, energy_unit=args.energy_unit)
