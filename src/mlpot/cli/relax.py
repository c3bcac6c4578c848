"""``mlpot relax MODEL STRUCTURE``: relax positions (and the cell) with a potential."""

from __future__ import annotations

from mlpot.cli._model_args import add_model_arguments, load_model


def add_parser(sub) -> None:
    p = sub.add_parser("relax", help="relax a structure (FIRE), optionally with the cell")
    add_model_arguments(p)
    p.add_argument("structure", help="structure file (any file ASE reads; last frame used)")
    p.add_argument("--cell", action="store_true", help="relax the cell too")
    p.add_argument("--fmax", type=float, default=0.01, help="force criterion, eV/Å")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--out", default="relaxed.extxyz", help="relaxed structure (extxyz)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mlpot.calculators.md import relax
    from mlpot.data.io import read_structures, write_structures

    potential = load_model(args)
    atoms = read_structures(args.structure, index="-1")[0]
    relaxed, converged = relax(
        potential, atoms, fmax=args.fmax, steps=args.steps, relax_cell=args.cell
    )
    energy = relaxed.get_potential_energy()
    relaxed.info["ref_energy"] = energy
    relaxed.arrays["ref_forces"] = relaxed.get_forces()
    relaxed.calc = None
    write_structures([relaxed], args.out)
    state = "converged" if converged else f"NOT converged in {args.steps} steps"
    print(f"{state}: E = {energy:.6f} eV ({energy / len(relaxed):.6f} eV/atom); written {args.out}")
    return 0 if converged else 1
