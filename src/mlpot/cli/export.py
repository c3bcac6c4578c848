"""``mlpot export MODEL --format n2p2|torchscript OUTPUT``: write a model in another format."""

from __future__ import annotations

from mlpot.cli._model_args import add_model_arguments, load_model


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a model to another code's format (n2p2 directory, TorchScript file)",
        description="Write an mlpot model as an n2p2 potential directory (input.nn, "
        "scaling.data, weights.NNN.data; Å and eV) for n2p2's tools and LAMMPS pair_style "
        "hdnnp, or as a TorchScript file (energy, forces, virial; runs with libtorch alone, "
        "see docs/compiled.md).",
    )
    add_model_arguments(p)
    p.add_argument(
        "directory",
        metavar="OUTPUT",
        help="output directory (n2p2, created if needed) or file (torchscript)",
    )
    p.add_argument(
        "--format", default="n2p2", choices=["n2p2", "torchscript"], help="output format"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    model = load_model(args)
    if args.format == "torchscript":
        from mlpot.calculators.compiled import save_compiled

        path = save_compiled(model, args.directory)
        print(
            f"wrote TorchScript model (Å, eV; cutoff {model.cutoff:g} Å, full neighbour list) "
            f"to {path}"
        )
        return 0
    from mlpot.interop.n2p2 import export_n2p2

    directory = export_n2p2(model, args.directory, comment=f"exported from {args.model}")
    print(f"wrote n2p2 potential (Å, eV) to {directory}")
    return 0
