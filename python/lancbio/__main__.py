"""``python3 -m lancbio {demo,hyperclean,bench}``: the package's experiments.

``demo`` compares every method on the paper's synthetic problem, ``hyperclean`` on data
hyper-cleaning of scikit-learn's digits, and ``bench`` runs the performance benchmark of
``lancbio.bench`` when that module is installed.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCH_MODULE = "lancbio.bench"


def find_bench():
    """``lancbio.bench.main``, or None when the benchmark module is not installed.

    Only the absence of the module itself counts as "unavailable": if the module exists
    but one of its own imports fails, that error propagates, so it is not mistaken for a
    missing benchmark.
    """
    try:
        module = importlib.import_module(BENCH_MODULE)
    except ModuleNotFoundError as error:
        if error.name in (BENCH_MODULE, None):
            return None
        raise
    entry = getattr(module, "main", None)
    return entry if callable(entry) else None


def _bench(argv: list[str]) -> int:
    entry = find_bench()
    if entry is None:
        print("python3 -m lancbio bench: the benchmark is unavailable (the module lancbio.bench "
              "is not installed)", file=sys.stderr)
        return 2
    status = entry(argv)
    return status if isinstance(status, int) else 0


def build_parser() -> argparse.ArgumentParser:
    from .cli import demo, hyperclean

    parser = argparse.ArgumentParser(
        prog="python3 -m lancbio",
        description="Experiments of lancbio, hyper-gradients for bilevel optimization.")
    commands = parser.add_subparsers(dest="command", metavar="{demo,hyperclean,bench}")
    commands.required = True
    demo.build_parser(commands.add_parser(
        "demo", help="every method on the paper's synthetic problem: table and figure"))
    hyperclean.build_parser(commands.add_parser(
        "hyperclean", help="data hyper-cleaning on scikit-learn's digits: table and figure"))
    # Listed for --help only: its arguments belong to lancbio.bench, so main() hands them
    # over before argparse sees them.
    commands.add_parser("bench", add_help=False,
                        help="the performance benchmark (lancbio.bench; arguments passed through)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return _bench(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .cli import demo
        return demo.run(args)
    from .cli import hyperclean
    return hyperclean.run(args)


if __name__ == "__main__":
    sys.exit(main())
