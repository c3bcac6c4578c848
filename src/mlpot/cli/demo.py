"""``mlpot demo [--out DIR] [--quick]``: train on the bundled DFT Si data, run MD, show errors."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole workflow on bundled DFT silicon data: train, errors, MD, RDF (~5 min)",
    )
    p.add_argument("--out", default="mlpot-demo", help="output folder (default mlpot-demo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits, weights and MD")
    p.add_argument(
        "--quick", action="store_true", help="a small, fast setting of the same path (~1 min)"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from mlpot.demo import DemoSettings, run_demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    run_demo(args.out, settings=settings, seed=args.seed)
    return 0
