"""Entry point of the ``mlpot`` command.

Each subcommand lives in its own module under ``mlpot.cli`` and provides ``add_parser(sub)``
(registering its arguments and a ``func``). User errors (:class:`MlpotError`, missing files)
print one clear line and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Idle OpenMP threads sleep rather than spin (set before torch loads; override by exporting it).
# On a machine shared with other jobs, spinning threads make small torch ops 10-30x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mlpot._version import __version__
from mlpot.errors import MlpotError

SUBCOMMANDS = ["demo", "info", "md", "relax", "export", "train", "evaluate", "datasets", "basics"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlpot",
        description="Machine-learning interatomic potentials: data, ACSF descriptors, HDNNP "
        "training, ASE calculator and MD, n2p2 interoperability.",
    )
    parser.add_argument("--version", action="version", version=f"mlpot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"mlpot.cli.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except MlpotError as exc:
        print(f"mlpot {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"mlpot {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mlpot {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
