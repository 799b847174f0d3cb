"""Figures of the command-line experiments (matplotlib, optional)."""

from __future__ import annotations

import os
import sys
from typing import Callable

__all__ = ["hyperclean_figure", "method_colors", "save_figure", "synthetic_figure"]


def save_figure(path: str, draw: Callable) -> bool:
    """Calls ``draw(pyplot)`` to build a figure and writes it to ``path`` as PNG.

    matplotlib is optional: without it the figure is skipped with a message and False is
    returned, so the experiment's table is still produced.
    """
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is not installed: figure {path} skipped (pip install matplotlib)",
              file=sys.stderr)
        return False
    # A file-only backend: the experiments must run without a display.
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    figure = draw(pyplot)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=120, format="png")
    pyplot.close(figure)
    return True


def method_colors(methods: list[str]) -> dict[str, str]:
    """One fixed colour per method (the same in every experiment's figures)."""
    from lancbio import METHODS

    palette = ["tab:red", "tab:orange", "tab:blue", "tab:cyan", "tab:green", "tab:purple",
               "tab:brown", "tab:gray", "tab:pink", "tab:olive"]
    order = list(METHODS) + [m for m in methods if m not in METHODS]
    return {name: palette[order.index(name) % len(palette)] for name in methods}


def synthetic_figure(plt, runs, title):
    """The demo's four panels, as in the paper's figures: ||grad phi|| and the residual
    against optimizer time and against HVPs, log scale, one line per method."""
    colors = method_colors([r.method for r in runs])
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    panels = [("grad_phi", "time", "||grad phi(x)|| (exact)", "optimizer time (s)"),
              ("grad_phi", "hvps", "||grad phi(x)|| (exact)", "Hessian-vector products"),
              ("residual", "time", "residual ||A v - b||", "optimizer time (s)"),
              ("residual", "hvps", "residual ||A v - b||", "Hessian-vector products")]
    for axis, (metric, along, ylabel, xlabel) in zip(axes.flat, panels):
        for r in runs:
            xs, ys = r.series(metric, along)
            positive = [(a, b) for a, b in zip(xs, ys) if b > 0]
            if positive:
                axis.plot(*zip(*positive), marker=".", markersize=3, linewidth=1.4,
                          color=colors[r.method], label=r.method + ("" if r.diverged_at is None else " (diverged)"))
        axis.set_yscale("log")
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(True, which="major", alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=2)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def hyperclean_figure(plt, runs, title, seconds):
    """Test accuracy and validation loss against optimizer time (top) and against
    Hessian-vector products (bottom), one line per method, as the paper's figures."""
    colors = method_colors([r.method for r in runs])
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    metrics = [("test_accuracy", "test accuracy"), ("validation_loss", "validation loss")]
    for row, along in enumerate(("time", "hvps")):
        for axis, (metric, ylabel) in zip(axes[row], metrics):
            for r in runs:
                xs, ys = r.series(metric, along)
                axis.plot(xs, ys, marker=".", markersize=3, linewidth=1.4, color=colors[r.method],
                          label=r.method + ("" if r.diverged_at is None else " (diverged)"))
            if along == "time":
                # Most of the progress happens in the first tenth of the budget.
                axis.set_xscale("symlog", linthresh=seconds / 100)
                axis.set_xlabel("optimizer time (s), linear below 1% of the budget, logarithmic above")
            else:
                # The methods' products per iteration differ by 10x: a log axis shows them all.
                axis.set_xscale("symlog", linthresh=10)
                axis.set_xlabel("Hessian-vector products, linear below 10, logarithmic above")
            axis.set_ylabel(ylabel)
            axis.grid(True, which="major", alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=2)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
