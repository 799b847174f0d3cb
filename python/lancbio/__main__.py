"""``python3 -m lancbio {demo,hyperclean}``: the package's experiments.

``demo`` compares every method on the paper's synthetic problem, ``hyperclean`` on data
hyper-cleaning of scikit-learn's digits. (The performance benchmark is not part of the
package: it lives in the repository's bench/, run by ``make bench``.)
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from .cli import demo, hyperclean

    parser = argparse.ArgumentParser(
        prog="python3 -m lancbio",
        description="Experiments of lancbio, hyper-gradients for bilevel optimization.")
    commands = parser.add_subparsers(dest="command", metavar="{demo,hyperclean}")
    commands.required = True
    demo.build_parser(commands.add_parser(
        "demo", help="every method on the paper's synthetic problem: table and figure"))
    hyperclean.build_parser(commands.add_parser(
        "hyperclean", help="data hyper-cleaning on scikit-learn's digits: table and figure"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs a command; from the command line (``argv`` None) with its BLAS thread count in
    force even without threadpoolctl (the process may restart itself for that)."""
    command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if command_line:
        from .cli import restart_for_threads
        restart_for_threads(args.threads, argv)
    if args.command == "demo":
        from .cli import demo
        return demo.run(args)
    from .cli import hyperclean
    return hyperclean.run(args)


if __name__ == "__main__":
    sys.exit(main())
