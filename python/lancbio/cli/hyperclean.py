"""``python3 -m lancbio hyperclean``: data hyper-cleaning (paper section 4.2) on digits.

A linear softmax classifier is trained on partly mislabelled samples; the upper level
learns one weight sigmoid(x_i) per training sample so that the classifier does well on a
clean validation set (docs/algorithms.md section 7). Data: scikit-learn's bundled 8x8 digits
via :meth:`lancbio.problems.HyperCleaning.digits` (600 training, 600 validation, 597 test
samples), so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from . import (format_table, limit_threads, method_list, nonnegative_float, positive_float,
               positive_int, run_method)
from .figures import hyperclean_figure, save_figure

DESCRIPTION = """\
Data hyper-cleaning (LancBiO paper, section 4.2; docs/algorithms.md section 7) on scikit-learn's
8x8 digits: a fraction of the training labels is replaced by a wrong class, and every
method learns per-sample weights sigmoid(x_i) from x0 = 0, y0 = 0, with the same budget of
optimizer time. At checkpoints outside that budget it records the validation loss and
the test accuracy; it prints a table (with how many corrupted and how many clean samples
ended with weight sigmoid(x_i) < 0.5) and writes a figure of test accuracy and validation
loss against time.

Settings: LancBiO uses the paper's T = 5, m0 = 1 growing by 1.3 every 50 iterations up
to m_max = 10; every other method keeps its defaults from lancbio.METHODS (T, Q, and the
decaying outer step of TTSA and BSA). All share --lr-x, --lr-y, and v-step eta = lr-y.

Back ends: numpy (default) runs lancbio.Bilevel, the library's outer loop, on the
problem's closed-form products; torch runs lancbio.torch.Bilevel, the same loop and
settings in PyTorch with autograd products, on the linear model (the same iterates as
numpy to rounding) or an MLP with one hidden tanh layer of 64 (--model mlp), full batch or
with fresh mini-batches (--batch 256 is the paper's stochastic setting: grad_y f, the
Hessian products and the cross term each from their own batch).

Why --lr-x 500: it is the paper's MNIST value and it is stable for every method on
digits. The hyper-gradient entries scale like 1/N (N = 600 here, 5000 in the paper), so
500 is already a larger effective step than the paper's; up to about 5000 all methods
still end at the same validation loss, faster for the slow ones (stocbio, ttsa, bsa),
while from about 2e4 the x steps of the first iterations saturate many weights and
lancbio, subbio and amigo-cg settle at visibly worse validation losses.
"""

EPILOG = """\
examples:
  python3 -m lancbio hyperclean                      # corruption 0.5, every method
  python3 -m lancbio hyperclean --corruption 0.8 --output clean80.png
  python3 -m lancbio hyperclean --methods lancbio,soba --seconds 1
  python3 -m lancbio hyperclean --backend torch --model mlp --batch 256
"""


def _fraction(text: str) -> float:
    value = nonnegative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in [0, 1]")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corruption", type=_fraction, default=0.5,
                        help="fraction of training labels replaced by a wrong class, in [0, 1] "
                             "(default 0.5; the paper also uses 0.8)")
    parser.add_argument("--seconds", type=positive_float, default=3.0,
                        help="optimizer-time budget of each method in seconds (default 3)")
    parser.add_argument("--methods", type=method_list, default=None,
                        help="comma-separated methods to run, or 'all' (default all)")
    parser.add_argument("--seed", type=_seed, default=0,
                        help="seed of the train/validation/test split and of the corruption "
                             "(default 0)")
    parser.add_argument("--output", default="lancbio-hyperclean.png",
                        help="path of the PNG figure (default lancbio-hyperclean.png in the "
                             "current directory; skipped without matplotlib)")
    parser.add_argument("--lr-x", type=positive_float, default=500.0,
                        help="outer step lambda on the sample weights (default 500, the paper's "
                             "MNIST value; see above)")
    parser.add_argument("--lr-y", type=positive_float, default=0.1,
                        help="inner step theta on the classifier, also the v-step eta of the "
                             "gradient and Neumann baselines (default 0.1, the paper's)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="BLAS threads for numpy (default 1, for reproducible timing)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress lines on stderr (the table is still printed)")
    parser.add_argument("--backend", choices=("numpy", "torch"), default="numpy",
                        help="numpy: the library's outer loop with the problem's closed-form "
                             "products (default); torch: lancbio.torch's loop with autograd "
                             "products (needs PyTorch)")
    parser.add_argument("--model", choices=("linear", "mlp"), default="linear",
                        help="the lower-level classifier with --backend torch: linear (the "
                             "paper's, default) or mlp (one hidden tanh layer of 64)")
    parser.add_argument("--batch", type=positive_int, default=None,
                        help="with --backend torch: mini-batches of this size, drawn afresh for "
                             "each loss and each use (the paper's stochastic variant uses 256); "
                             "default full batches")


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    if parser is None:
        parser = argparse.ArgumentParser(prog="python3 -m lancbio hyperclean")
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_arguments(parser)
    return parser


# The paper's LancBiO schedule for the hyper-cleaning tasks (docs/algorithms.md section 3).
LANCBIO_HYPERCLEAN = {"inner_steps": 5, "m0": 1, "growth": 1.3, "grow_every": 50, "m_max": 10}


def method_options(method: str, lr_x: float, lr_y: float) -> dict:
    options = {"lr_x": lr_x, "lr_y": lr_y}
    if method == "lancbio":
        options.update(LANCBIO_HYPERCLEAN)
    return options


def run(args: argparse.Namespace) -> int:
    """Runs the experiment described by parsed ``args``; returns the exit status."""
    if args.backend == "numpy" and (args.model != "linear" or args.batch is not None):
        print("python3 -m lancbio hyperclean: --model mlp and --batch need --backend torch", file=sys.stderr)
        return 2
    with limit_threads(args.threads) as threads:
        return _run(args, threads)


def _torch_backend(args: argparse.Namespace):
    """(factory, evaluate, None) of the torch back end for run_method, or (None, None,
    the message) where PyTorch is missing."""
    try:
        import torch

        from lancbio.torch.bilevel import Bilevel
        from lancbio.torch.hypercleaning import HyperCleaningModel
    except ImportError as error:
        return None, None, str(error)
    torch.set_num_threads(args.threads)

    def factory(problem, method, x0, y0, **options):
        model = HyperCleaningModel(problem, model=args.model, batch=args.batch, seed=args.seed)
        with torch.no_grad():  # the common start (x0, y0 = 0 for the linear model)
            model.x.copy_(torch.as_tensor(x0))
            if args.model == "linear":
                model.params[0].copy_(torch.as_tensor(y0).view(model.params[0].shape))
        optimizer = Bilevel(model.params, [model.x], model.inner_loss, model.outer_loss, method,
                            hessian_loss=model.hessian_loss if args.batch is not None else None, **options)
        optimizer.model = model
        return optimizer

    def evaluate(optimizer) -> dict:
        model = optimizer.model
        report = model.cleaning_report()
        return {"validation_loss": model.validation_loss(), "test_accuracy": model.test_accuracy(),
                "corrupted_flagged": report["corrupted_flagged"], "clean_flagged": report["clean_flagged"]}

    return factory, evaluate, None


def _run(args: argparse.Namespace, threads: str) -> int:
    from lancbio import METHODS
    from lancbio.problems import HyperCleaning

    methods = args.methods or list(METHODS)
    wall_start = time.perf_counter()
    try:
        problem = HyperCleaning.digits(corruption=args.corruption, seed=args.seed)
    except ImportError as error:
        print(f"python3 -m lancbio hyperclean: {error}", file=sys.stderr)
        return 2
    x0, y0 = problem.initial_point()
    corrupted = int(problem.corrupted_mask.sum())
    if not args.quiet:
        print(f"digits: {problem.dx} training samples ({corrupted} corrupted), "
              f"{problem.val_labels.size} validation, {problem.test_labels.size} test; {threads}; "
              f"{args.seconds:g} s per method", file=sys.stderr, flush=True)

    def evaluate(optimizer) -> dict:
        y = optimizer.y
        report = problem.cleaning_report(optimizer.x)
        return {"validation_loss": problem.validation_loss(y), "test_accuracy": problem.test_accuracy(y),
                "corrupted_flagged": report["corrupted_flagged"], "clean_flagged": report["clean_flagged"]}

    factory = None
    if args.backend == "torch":
        factory, evaluate, error = _torch_backend(args)
        if error is not None:
            print(f"python3 -m lancbio hyperclean --backend torch: {error}", file=sys.stderr)
            return 2

    def describe(point) -> str:
        return (f"validation loss {point['validation_loss']:.4f}  test accuracy "
                f"{point['test_accuracy']:.4f}")

    if factory is None:
        start = evaluate(_Start(x0, y0))
    else:
        first = factory(problem, methods[0], x0, y0, **method_options(methods[0], args.lr_x, args.lr_y))
        start = evaluate(first)
        first.step()  # PyTorch's one-time setup, kept out of the first method's timing
        first.close()
    runs = []
    for index, method in enumerate(methods, 1):
        runs.append(run_method(problem, method, x0, y0, method_options(method, args.lr_x, args.lr_y),
                               args.seconds, evaluate, start, describe,
                               label=f"[{index}/{len(methods)}] ", quiet=args.quiet, factory=factory))

    clean = problem.dx - corrupted
    headers = ["method", "iterations", "HVPs", "time (s)", "val. loss", "test acc.",
               f"corrupted w<0.5 (of {corrupted})", f"clean w<0.5 (of {clean})", "status"]
    rows = []
    for r in runs:
        loss, accuracy = r.final("validation_loss"), r.final("test_accuracy")
        rows.append([r.method, r.iterations, r.hvps, f"{r.time:.2f}",
                     "nan" if not math.isfinite(loss) else f"{loss:.4f}",
                     "nan" if not math.isfinite(accuracy) else f"{accuracy:.4f}",
                     _count(r.final("corrupted_flagged")), _count(r.final("clean_flagged")), r.status])
    backend = "" if args.backend == "numpy" else (
        f"torch back end, {args.model} model, " + (f"batch {args.batch}, " if args.batch else "full batch, "))
    print(f"data hyper-cleaning on digits: {backend}corruption {args.corruption:g}, seed {args.seed}, "
          f"lr_x {args.lr_x:g}, lr_y {args.lr_y:g}; {args.seconds:g} s of optimizer time per method "
          f"(evaluation excluded)")
    print(f"start (x = 0, y = {'0' if args.model == 'linear' else 'y0'}): validation loss {start['validation_loss']:.4f}, "
          f"test accuracy {start['test_accuracy']:.4f}")
    print(format_table(headers, rows))

    title = (f"data hyper-cleaning, digits, corruption {args.corruption:g}, lr_x {args.lr_x:g}, "
             f"lr_y {args.lr_y:g}, {args.seconds:g} s per method")
    if save_figure(args.output, lambda plt: hyperclean_figure(plt, runs, title, args.seconds)):
        print(f"figure: {args.output}")
    print(f"total run time {time.perf_counter() - wall_start:.1f} s")
    return 0


def _count(value: float) -> str:
    return "nan" if not math.isfinite(value) else str(int(value))


class _Start:
    """The common starting point, shaped like an optimizer for ``evaluate``."""

    def __init__(self, x0, y0):
        self.x, self.y = x0, y0
