"""Benchmark bilevel problems of the LancBiO paper, in pure numpy.

Each problem exposes ``dx``, ``dy``, ``f``, ``g``, ``grad_x_f``, ``grad_y_f``,
``grad_y_g``, ``hvp_yy_g``, ``jvp_xy_g`` and ``initial_point``; these are the callbacks
the optimizers call.  Nothing here uses the native library.
"""

from .hypercleaning import HyperCleaning
from .synthetic import Synthetic

__all__ = ["HyperCleaning", "Synthetic"]
