"""``mlpot basics gates|xor|mlp|dimer``: the neural-network basics tutorial (docs/basics.md)."""

from __future__ import annotations

TOPICS = ("gates", "xor", "mlp", "dimer")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "basics", help="neural-network basics: perceptron gates, XOR, backpropagation, LJ dimer"
    )
    p.add_argument("topic", choices=TOPICS, help="which demonstration to run")
    p.add_argument("--out", default="mlpot_basics", help="folder for the PNG plots")
    p.set_defaults(func=run)


def run(args) -> int:
    import mlpot.basics as basics

    demo = getattr(basics, f"{args.topic}_demo")(args.out)
    print(demo.text)
    for path in demo.files:
        print(f"wrote {path}")
    return 0
