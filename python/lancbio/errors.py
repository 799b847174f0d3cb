"""Exceptions raised by lancbio, one per negative status code of the C ABI.

Every exception derives from :class:`LancbioError` and from the builtin exception a
Python caller would naturally catch for that failure (``ValueError`` for bad values,
``TypeError`` for the wrong precision, ``RuntimeError`` for misuse of an estimator's
state, ``MemoryError`` when the storage cannot be allocated), so both
``except lancbio.InvalidArgumentError`` and ``except ValueError`` work.

After any error the estimator is exactly as it was before the failed call (the library
guarantees it), so the call can be retried with corrected input.
"""

from __future__ import annotations

__all__ = [
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
    "error_class",
]


class LancbioError(Exception):
    """Base class of every error reported by the native library.

    Attributes:
        status: the negative ``LANCBIO_ERR_*`` status code (int).
        message: the library's explanation (str).
    """

    status: int = 0

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __reduce__(self):
        # Exceptions with extra constructor arguments must say how to pickle themselves
        # (multiprocessing sends exceptions between processes).
        return (type(self), (self.message, self.status))


class InvalidArgumentError(LancbioError, ValueError):
    """LANCBIO_ERR_INVALID_ARGUMENT (-1): a size, option or argument is out of range."""

    status = -1


class NullPointerError(LancbioError, ValueError):
    """LANCBIO_ERR_NULL_POINTER (-2): a required pointer was NULL."""

    status = -2


class NonFiniteInputError(LancbioError, ValueError):
    """LANCBIO_ERR_NON_FINITE_INPUT (-3): b or a supplied estimate holds NaN or infinity."""

    status = -3


class NonFiniteProductError(LancbioError, ValueError):
    """LANCBIO_ERR_NON_FINITE_PRODUCT (-4): the operator returned NaN or infinity."""

    status = -4


class NonFiniteResultError(LancbioError, OverflowError):
    """LANCBIO_ERR_NON_FINITE_RESULT (-5): the computed estimate overflowed."""

    status = -5


class CallbackError(LancbioError, RuntimeError):
    """LANCBIO_ERR_CALLBACK (-6): the product callback reported a failure.

    The Python wrapper re-raises the operator's own exception instead; this class is
    raised only when the callback failed without one.
    """

    status = -6


class WrongPrecisionError(LancbioError, TypeError):
    """LANCBIO_ERR_WRONG_PRECISION (-7): a float64 call on a float32 handle or the reverse."""

    status = -7


class InvalidStateError(LancbioError, RuntimeError):
    """LANCBIO_ERR_INVALID_STATE (-8): the call does not fit the estimator's state
    (for example ``resume`` with no step in progress, or ``step`` while one is)."""

    status = -8


class InvalidHandleError(LancbioError, RuntimeError):
    """LANCBIO_ERR_INVALID_HANDLE (-9): the handle is NULL, unknown or destroyed
    (in Python: the estimator was closed)."""

    status = -9


class OutOfMemoryError(LancbioError, MemoryError):
    """LANCBIO_ERR_OUT_OF_MEMORY (-10): the system refused the memory that creating an
    estimator or optimizer (or a one-shot solve) needs: an address-space limit, no
    overcommit, or memory exhausted. Nothing stays allocated."""

    status = -10


class BufferTooSmallError(LancbioError, ValueError):
    """LANCBIO_ERR_BUFFER_TOO_SMALL (-11): a checkpoint does not fit the buffer given to save
    (the wrapper sizes its buffers itself, so this means a bug)."""

    status = -11


class InvalidCheckpointError(LancbioError, ValueError):
    """LANCBIO_ERR_INVALID_CHECKPOINT (-12): the bytes are not a checkpoint this library can
    read: truncated, corrupted, of another format version or byte order, or inconsistent
    (``pickle.loads`` of a damaged pickle of an estimator or a Bilevel raises it)."""

    status = -12


_BY_STATUS = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        NullPointerError,
        NonFiniteInputError,
        NonFiniteProductError,
        NonFiniteResultError,
        CallbackError,
        WrongPrecisionError,
        InvalidStateError,
        InvalidHandleError,
        OutOfMemoryError,
        BufferTooSmallError,
        InvalidCheckpointError,
    )
}


def error_class(status: int) -> type[LancbioError]:
    """The exception class for a negative status code (``LancbioError`` for unknown codes)."""
    return _BY_STATUS.get(status, LancbioError)
