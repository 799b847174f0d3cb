"""Native handles owned by Python objects, and the one check of a C status.

:func:`check` turns a negative status into its :mod:`lancbio.errors` exception with the
library's own message. :class:`Handle` is the base of every Python object that owns a
native handle (the estimators, :class:`lancbio.Bilevel`): creation with the library's
message on a rejection, an idempotent ``close()``, ``closed``, the context manager, a
``__del__`` safe at interpreter shutdown, ``_live()`` and ``_check(status)``.
"""

from __future__ import annotations

import ctypes

from ._ffi import lib
from .errors import InvalidHandleError, LancbioError, error_class

__all__ = ["Handle", "check", "error", "status_string"]


def status_string(status: int) -> str:
    """The library's static description of a status code."""
    text = lib.lancbio_status_string(status)
    return text.decode() if text else "unknown status"


def error(status: int, detail: bytes | str | None = None, context: str = "") -> LancbioError:
    """The exception for a negative ``status``.

    Args:
        detail: the library's message for the failure (from a ``*_last_error`` function,
            read right after the failed call: it is valid only until the next one).
        context: what the caller was doing, put before the message.
    """
    if isinstance(detail, bytes):
        detail = detail.decode(errors="replace")
    summary = status_string(status)
    message = f"{detail} ({summary})" if detail and detail != summary else summary
    if context:
        message = f"{context}: {message}"
    return error_class(status)(message, status)


def check(status: int, detail: bytes | str | None = None, context: str = "") -> int:
    """Returns a non-negative ``status``; raises the matching LancbioError for a negative
    one (see :func:`error` for ``detail`` and ``context``)."""
    if status >= 0:
        return status
    raise error(status, detail, context)


class Handle:
    """Owns one native handle.

    Subclasses set ``_destroy_function`` and ``_last_error_function`` (the library's
    ``lancbio_*_destroy`` and ``lancbio_*_last_error``) as class attributes: unlike module
    globals, they are still there when ``__del__`` runs at interpreter shutdown.
    """

    _handle = None  # a class default, so that __del__ is safe when __init__ failed early
    _destroy_function = None
    _last_error_function = None

    def _create(self, create, *arguments, context: str) -> None:
        """Calls ``create(*arguments, &handle)`` and takes ownership of the handle; on a
        rejection raises with the library's message (lancbio_last_error) after ``context``."""
        handle = ctypes.c_void_p()
        status = create(*arguments, ctypes.byref(handle))
        if status < 0:
            raise error(status, lib.lancbio_last_error(), context)
        self._handle = handle

    def _live(self):
        """The handle; InvalidHandleError once the object is closed."""
        handle = self._handle
        if handle is None:
            raise InvalidHandleError(f"this {type(self).__name__} is closed; create a new one", -9)
        return handle

    def _check(self, status: int) -> int:
        """:func:`check` with this handle's last error as the message."""
        if status >= 0:
            return status
        raise error(status, self._last_error_function(self._handle))

    def _call(self, function, *arguments) -> int:
        """``function(handle, *arguments)``, checked."""
        return self._check(function(self._live(), *arguments))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._handle is None

    def close(self) -> None:
        """Destroys the native handle. Idempotent; later calls other than close raise
        InvalidHandleError."""
        handle = self._handle
        if handle is not None:
            self._handle = None
            self._destroy_function(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        handle = self._handle
        if handle is not None:
            self._handle = None
            try:
                self._destroy_function(handle)
            except Exception:  # noqa: BLE001 - nothing can be reported from __del__
                pass
