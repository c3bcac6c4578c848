"""``mlpot datasets list`` and ``mlpot datasets fetch NAME``: public training sets."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("datasets", help="list or download public training data sets")
    actions = p.add_subparsers(dest="datasets_command", metavar="ACTION")
    listing = actions.add_parser("list", help="known data sets (and the bundled GPAW Si set)")
    listing.add_argument("--verbose", "-v", action="store_true", help="URLs, licence, citation")
    listing.set_defaults(func=run_list)
    fetch = actions.add_parser("fetch", help="download a data set into the cache folder")
    fetch.add_argument("name", help="data set name from `mlpot datasets list`")
    fetch.add_argument(
        "--cache",
        default=None,
        help="cache folder (default $MLPOT_CACHE, else $XDG_CACHE_HOME/mlpot or ~/.cache/mlpot)",
    )
    fetch.add_argument("--timeout", type=float, default=60.0, help="network timeout (s)")
    fetch.set_defaults(func=run_fetch)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def run_list(args) -> int:
    from mlpot.datasets import BUNDLED_SI, REGISTRY, default_cache_dir

    if BUNDLED_SI.is_file():
        from mlpot.datasets import bundled_si_provenance

        record = bundled_si_provenance()
        partial = " (partial)" if record.get("partial") else ""
        print(
            f"bundled  si-gpaw: {record['n_structures']} Si structures{partial}, GPAW "
            f"{record['code']['gpaw']} PBE, at {BUNDLED_SI}"
        )
    else:
        print("bundled  si-gpaw: absent from this installation (scripts/make_si_dataset.py)")
    width = max(len(name) for name in REGISTRY)
    for name, dataset in REGISTRY.items():
        print(f"{name:<{width}}  {dataset.license:<17}  {dataset.description}")
        if args.verbose:
            for entry in dataset.files:
                checksum = entry.sha256 or "no recorded checksum"
                print(f"{'':<{width}}    {entry.url}  sha256: {checksum}")
            print(f"{'':<{width}}    cite: {dataset.citation}")
    print(f"cache folder: {default_cache_dir()}")
    return 0


def run_fetch(args) -> int:
    from mlpot.datasets import fetch_dataset

    for path in fetch_dataset(args.name, cache_dir=args.cache, timeout=args.timeout):
        print(path)
    return 0
