"""``mlpot train``: fit an HDNNP to structure data, or to sample_NNP's precomputed descriptors.

    mlpot train --train train.extxyz [--test test.extxyz] [--config FILE.yaml] --out DIR [--seed N]
    mlpot train --descriptors desc.npy --labels label.npy --out DIR [--seed N]
    mlpot train --print-config

Everything has a default (elements from the data, ``ACSF.default`` symmetry functions, a 2×64
tanh network trained in float32, Adam with a cosine schedule, a seeded 10 % validation split,
the epoch count scaled by the data size, a 720 s wall-clock budget for set-up and training);
the YAML keys are documented in :mod:`mlpot.training.config`.
``--out DIR`` holding a ``checkpoint.pt`` from an interrupted run resumes it.
"""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train an HDNNP (writes model.pt, metrics.json, log.csv, plots)",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--train", help="training structures (extxyz, n2p2 input.data, ...)")
    p.add_argument("--test", help="test structures, evaluated at the end")
    p.add_argument("--config", help="YAML file with data/model/training sections")
    p.add_argument("--out", help="output folder (resumes from its checkpoint.pt)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--descriptors", help="sample_NNP-style desc.npy (structures×atoms×features)")
    p.add_argument("--labels", help="sample_NNP-style label.npy (energy per atom, eV)")
    p.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    p.add_argument(
        "--print-config", action="store_true", help="print the default configuration as YAML"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from mlpot.errors import ParameterError
    from mlpot.training.config import Config

    if args.print_config:
        sys.stdout.write(Config().to_yaml())
        return 0
    if not args.out:
        raise ParameterError("give an output folder with --out DIR")
    if args.descriptors or args.labels:
        if not (args.descriptors and args.labels):
            raise ParameterError("the descriptor path needs both --descriptors and --labels")
        from mlpot.training.descriptor_net import DescriptorTrainingConfig, train_sample_nnp

        config = DescriptorTrainingConfig()
        if args.seed is not None:
            config.seed = args.seed
        if args.epochs is not None:
            config.epochs = args.epochs
        train_sample_nnp(args.descriptors, args.labels, out_dir=args.out, config=config)
        return 0
    if not args.train:
        raise ParameterError("give training data with --train FILE (or --descriptors/--labels)")
    from mlpot.training.workflow import train_from_files

    config = Config.from_yaml(args.config) if args.config else Config()
    if args.epochs is not None:
        config.training.max_epochs = args.epochs
    train_from_files(args.train, args.out, test_path=args.test, config=config, seed=args.seed)
    return 0
