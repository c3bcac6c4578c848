"""``mlpot evaluate MODEL FILE [--json OUT] [--by KEY]``: errors of a model on a data file."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="errors of a model on a data file (meV/atom, eV/Å)")
    p.add_argument("model", help="model.pt written by mlpot train (or an n2p2 folder)")
    p.add_argument("file", help="structures with reference energies (and forces)")
    p.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    p.add_argument("--config", default=None, help="YAML whose data section says how to read FILE")
    p.add_argument(
        "--by",
        default=None,
        metavar="KEY",
        help="also one row per group of structures: an info key of FILE (e.g. config_type) or "
        "'formula'; adds each group's mean energy error (model - reference)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from mlpot.training.config import Config
    from mlpot.training.metrics import format_metrics
    from mlpot.training.workflow import evaluate_file

    config = Config.from_yaml(args.config) if args.config else Config()
    result = evaluate_file(
        args.model, args.file, json_path=args.json, config=config, group_by=args.by
    )
    print(format_metrics({"data": result["metrics"]}))
    if "groups" in result:
        print()
        print(format_metrics(result["groups"], title=args.by))
    return 0
