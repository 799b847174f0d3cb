"""The record of a :meth:`lancbio.Bilevel.run`: one dict per outer iteration."""

from __future__ import annotations

import math
import numbers
import sys
import time

import numpy as np

from ._options import to_float, to_int

__all__ = ["History", "record_run"]


class History:
    """Per-iteration records of ``Bilevel.run``: a list of dicts with at least
    ``iteration``, ``time`` (seconds of optimizer work since the run started, excluding
    the user's callback), ``hvps`` and ``gradient_evaluations`` (totals), ``cross_products``,
    ``hypergradient_norm``, ``residual`` and ``residual_kind`` (the estimator's own report),
    ``lr_x``, ``lr_y``, plus whatever the callback added.

    ``history[k]`` is the k-th record (a dict; slices give lists), ``history["time"]`` a
    column as a numpy array, ``history.plot()`` a figure of one column against another.
    """

    def __init__(self):
        self.records: list[dict] = []

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._values(key)
        return self.records[key]

    def __iter__(self):
        return iter(self.records)

    @property
    def columns(self) -> list[str]:
        """The field names, in the order they first appear."""
        names: dict[str, None] = {}
        for record in self.records:
            names.update(dict.fromkeys(record))
        return list(names)

    def __repr__(self) -> str:
        count = len(self.records)
        text = f"History({count} record{'' if count == 1 else 's'}"
        if count:
            last = ", ".join(f"{name}={_short(value)}" for name, value in self.records[-1].items())
            text += f"; columns: {', '.join(self.columns)}; last: {last}"
        return text + ")"

    def _values(self, name: str) -> np.ndarray:
        """One field over all records: a numeric array (NaN where a record lacks the field)
        for numbers, else an array of the values (None where a record lacks it)."""
        if not any(name in record for record in self.records):
            raise KeyError(f"no column {name!r} in this History; its columns are {self.columns}")
        values = [record.get(name) for record in self.records]
        if all(value is None or _is_number(value) for value in values):
            if any(value is None for value in values):
                return np.array([math.nan if value is None else value for value in values], dtype=float)
            return np.array(values)
        return np.array(values, dtype=object if any(value is None for value in values) else None)

    def column(self, name: str) -> np.ndarray:
        """One field over all records as a float array (NaN where a record lacks it)."""
        return np.array([r.get(name, math.nan) for r in self.records], dtype=float)

    def to_dict(self) -> dict:
        """{field: list of values}, one entry per record (None where a record lacks it)."""
        return {name: [r.get(name) for r in self.records] for name in self.columns}

    def to_dataframe(self):
        """The records as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as error:
            raise ImportError("History.to_dataframe needs pandas: pip install pandas") from error
        return pd.DataFrame.from_records(self.records)

    def plot(self, x: str = "hvps", y: str = "hypergradient_norm", ax=None, label: str | None = None, **kwargs):
        """Plots column ``y`` against column ``x`` with matplotlib and returns the axes.

        Args:
            x: "hvps" (default), "time" or "iteration" (any numeric column works).
            y: the column to plot, by default "hypergradient_norm"; on a log scale when
                every value is positive.
            ax: the matplotlib axes to draw on; default a new figure's.
            label: the line's legend label.
            **kwargs: passed to ``ax.plot`` (color, linestyle, ...).
        """
        if not self.records:
            raise ValueError("this History has no records to plot")
        for name in (x, y):
            self._values(name)  # a KeyError naming the columns, for an unknown name
        xs, ys = self.column(x), self.column(y)
        if ax is None:
            try:
                import matplotlib.pyplot as plt
            except ImportError as error:
                raise ImportError("History.plot needs matplotlib: pip install matplotlib") from error
            _, ax = plt.subplots()
        ax.plot(xs, ys, label=label, **kwargs)
        ax.set_xlabel({"hvps": "HVPs", "time": "time (s)"}.get(x, x))
        ax.set_ylabel(y)
        if np.all(ys > 0):
            ax.set_yscale("log")
        if label is not None:
            ax.legend()
        return ax


def _is_number(value) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_, complex))


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value) if isinstance(value, str) else str(value)


def record_run(optimizer, step, iterations=None, seconds=None, callback=None, progress: bool = True,
               progress_every: float = 2.0, name: str = "") -> History:
    """The loop of ``Bilevel.run`` (numpy and torch): calls ``step()``, which makes one
    outer iteration and returns its record (a dict with ``iteration``, ``hvps`` and
    ``hypergradient_norm`` at least), until ``iterations`` more iterations or ``seconds``
    of time inside ``step`` have passed; adds ``time`` (that total) to each record, runs
    ``callback(optimizer, record)`` outside the timed region (a dict it returns is merged
    into the record, False stops), and with ``progress`` prints a line to stderr about
    every ``progress_every`` seconds. A step that raises propagates, with the history so
    far attached as ``error.history``."""
    if iterations is None and seconds is None:
        raise ValueError("give iterations=, seconds=, or both")
    if iterations is not None:
        iterations = to_int(iterations, "iterations")
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
    if seconds is not None:
        seconds = to_float(seconds, "seconds")
        if not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
    history = History()
    elapsed = 0.0
    last_print = time.perf_counter()
    done = 0
    try:
        while (iterations is None or done < iterations) and (seconds is None or elapsed < seconds):
            start = time.perf_counter()
            record = step()
            elapsed += time.perf_counter() - start
            done += 1
            record = {"iteration": record["iteration"], "time": elapsed, **record}
            # Recorded before the callback runs: if it raises, the history still matches
            # the iterations the optimizer reflects.
            history.records.append(record)
            if callback is not None:
                extra = callback(optimizer, record)
                if extra is False:
                    break
                if extra:
                    record.update(extra)
            now = time.perf_counter()
            if progress and now - last_print >= progress_every:
                last_print = now
                total = f"/{iterations}" if iterations is not None else ""
                print(f"{name}: iteration {record['iteration']}{total}, {elapsed:.1f} s, "
                      f"{record['hvps']} HVPs, ||hypergradient|| {record['hypergradient_norm']:.3e}",
                      file=sys.stderr, flush=True)
    except BaseException as error:
        error.history = history
        raise
    return history
