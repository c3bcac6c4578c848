"""``mlpot md MODEL STRUCTURE``: molecular dynamics with a trained potential."""

from __future__ import annotations

from mlpot.cli._model_args import add_model_arguments, load_model


def add_parser(sub) -> None:
    p = sub.add_parser("md", help="run molecular dynamics (ASE integrators) with a potential")
    add_model_arguments(p)
    p.add_argument("structure", help="starting structure (any file ASE reads; last frame used)")
    p.add_argument(
        "--ensemble",
        choices=["nve", "nvt", "nvt-nose-hoover"],
        default="nvt",
        help="nve: velocity Verlet; nvt: Langevin; nvt-nose-hoover: Nosé–Hoover chain",
    )
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--timestep", type=float, default=1.0, help="fs (default 1)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--interval", type=int, default=10, help="write/log every N steps")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="traj.extxyz", help="trajectory (extxyz, appended as it runs)")
    p.add_argument("--log", default=None, help="CSV log (default: OUT with .csv)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from mlpot.calculators.md import run_md
    from mlpot.data.io import read_structures

    potential = load_model(args)
    atoms = read_structures(args.structure, index="-1")[0]
    log = args.log or str(Path(args.out).with_suffix(".csv"))
    summary = run_md(
        potential,
        atoms,
        ensemble=args.ensemble,
        temperature_k=args.temperature,
        timestep_fs=args.timestep,
        steps=args.steps,
        trajectory=args.out,
        log=log,
        interval=args.interval,
        friction_per_fs=args.friction,
        seed=args.seed,
    )
    n = len(atoms)
    print(
        f"mean temperature {summary.temperature_k[len(summary.temperature_k) // 2 :].mean():.1f} K "
        f"(second half); total-energy drift {summary.energy_drift_mev_per_atom(n):.3f} meV/atom"
    )
    print(f"trajectory: {args.out}\nlog: {log}")
    return 0
