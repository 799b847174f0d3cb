"""lancbio: hyper-gradient estimators for bilevel optimization.

Estimators of v = A^{-1} b for a symmetric A known only through products v -> A v
(Hessian-vector products): LancBiO's dynamic Lanczos and the classic estimators it is
compared with, running in the native library liblancbio.so through a thin ctypes layer.

    >>> import numpy as np, lancbio
    >>> A = np.diag([1.0, 2.0, 4.0]); b = np.ones(3)
    >>> est = lancbio.DynamicLanczos(3, m0=3, m_max=3)
    >>> for _ in range(3):
    ...     v = est.step(A, b)
    >>> np.allclose(v, [1.0, 0.5, 0.25])
    True
"""

from ._ffi import lib as _lib
from .bilevel import METHODS, Bilevel, BilevelInfo
from .errors import (
    BufferTooSmallError,
    CallbackError,
    InvalidArgumentError,
    InvalidCheckpointError,
    InvalidHandleError,
    InvalidStateError,
    LancbioError,
    NonFiniteInputError,
    NonFiniteProductError,
    NonFiniteResultError,
    NullPointerError,
    OutOfMemoryError,
    WrongPrecisionError,
)
from . import estimators as _estimators
from .estimators import *  # noqa: F403 - one class per method, listed once in estimators.__all__
from .history import History
from .info import StepInfo
from .operators import as_operator
from .solve import SolveInfo, solve

#: The native library's version (lancbio_version()); the package is versioned with it.
__version__ = _lib.lancbio_version().decode()
#: Path of the loaded liblancbio.so.
library_path = _lib._lancbio_path

__all__ = [
    "__version__",
    "library_path",
    *_estimators.__all__,
    "StepInfo",
    "SolveInfo",
    "solve",
    "as_operator",
    "LancbioError",
    "InvalidArgumentError",
    "NullPointerError",
    "NonFiniteInputError",
    "NonFiniteProductError",
    "NonFiniteResultError",
    "CallbackError",
    "WrongPrecisionError",
    "InvalidStateError",
    "InvalidHandleError",
    "OutOfMemoryError",
    "BufferTooSmallError",
    "InvalidCheckpointError",
    "Bilevel",
    "BilevelInfo",
    "History",
    "METHODS",
]
