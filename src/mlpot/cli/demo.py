"""``mlpot demo [--out DIR] [--quick] [--config FILE]``: train on the bundled Si data, run MD."""

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
    p.add_argument(
        "--config",
        default=None,
        help="YAML with model/training sections to start from (as for mlpot train); the demo "
        "sets its own time budget, stress weight and validation fraction",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from mlpot.demo import DemoSettings, run_demo
    from mlpot.training.config import Config

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    config = Config.from_yaml(args.config) if args.config else None
    run_demo(args.out, settings=settings, seed=args.seed, config=config)
    return 0
