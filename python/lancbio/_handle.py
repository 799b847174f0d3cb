"""Native handles owned by Python objects, and the one check of a C status.

:func:`check` turns a negative status into its :mod:`lancbio.errors` exception with the
library's own message. :class:`Handle` is the base of every Python object that owns a
native handle (the estimators, :class:`lancbio.Bilevel`): creation with the library's
message on a rejection, the guard that admits one thread at a time, an idempotent
``close()``, ``closed``, the context manager, a ``__del__`` safe at interpreter shutdown,
``_call``, and the refusal to be copied or pickled.

The guard. The library allows one thread at a time per handle, and so does the Python
state around it (buffers, the callbacks' error slot, the message read after a failure), so
every method that touches either takes the guard first, atomically:
``guard.setdefault(0, token)`` claims it for a fresh per-call token, and a call that finds
another token there is either another thread's (refused with InvalidStateError: nothing is
touched) or, when the token holds the caller's own thread id, one made from inside a
running call of its thread (an operator or callback calling back: the subclass's
``_reentered`` decides, the library answering -8 where it must). Only calls that run the
caller's code put their thread id in the token (``[get_ident()]``); the others use
``[None]``, as nothing of theirs can call back. The guard is released by deleting the
token. A check of a flag followed by setting it would let two threads through between
the check and the set.

Asynchronous exceptions (KeyboardInterrupt from Ctrl-C, or any signal handler that raises)
can strike between any two calls made by Python code, so the guard is written inline in
each method: the claim is the first call inside the ``try``, and the ``finally`` releases
with subscripts and ``del`` only, which run no Python code and check for no pending signal
before the release (a method call there could be interrupted first and leave the object
claimed for ever). Whether the token is still ours is read from the guard itself, never
from a local set after the claim, so an interrupt just after the claim is released too.
"""

from __future__ import annotations

import ctypes
from _thread import get_ident

from ._ffi import lib
from .errors import InvalidHandleError, InvalidStateError, LancbioError, error_class

__all__ = ["Handle", "check", "error", "status_string", "get_ident"]


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
    globals, they are still there when ``__del__`` runs at interpreter shutdown; and
    ``_kind``, what the object is called in messages ("estimator", "optimizer").

    Methods that use the handle claim the guard inline (see the module docstring):

        token = [None]  # [get_ident()] where the call runs the caller's code
        guard = self._guard
        try:
            owner = guard.setdefault(0, token)
            if owner is not token:
                self._refuse(owner, "what")
            handle = self._live()
            ...
        finally:
            try:
                if guard[0] is token:
                    del guard[0]
            except KeyError:
                pass
    """

    _handle = None  # a class default, so that __del__ is safe when __init__ failed early
    _destroy_function = None
    _last_error_function = None
    _kind = "object"

    def _create(self, create, *arguments, context: str) -> None:
        """Calls ``create(*arguments, &handle)`` and takes ownership of the handle; on a
        rejection raises with the library's message (lancbio_last_error) after ``context``."""
        self._guard = {}
        handle = ctypes.c_void_p()
        status = create(*arguments, ctypes.byref(handle))
        if status < 0:
            raise error(status, lib.lancbio_last_error(), context)
        self._handle = handle

    # -- the guard ------------------------------------------------------------------------
    def _refuse(self, owner: list, what: str) -> None:
        """Called with the guard held by the token ``owner``: raises for another thread's
        call; for a call of this thread's own (made from inside a running call), returns
        if ``_reentered`` allows it."""
        if owner[0] != get_ident():
            raise InvalidStateError(
                f"{type(self).__name__}.{what} was called while another thread is using this {self._kind}: "
                f"one thread at a time per object (give each thread its own {self._kind})", -8)
        self._reentered(what)

    def _reentered(self, what: str) -> None:
        """Decides a call made from inside a running call on this object, in its thread:
        return to let it through (the library refuses what it must with -8), or raise."""

    def _live(self):
        """The handle; InvalidHandleError once the object is closed."""
        handle = self._handle
        if handle is None:
            raise InvalidHandleError(f"this {type(self).__name__} is closed; create a new one", -9)
        return handle

    def _check(self, status: int) -> int:
        """:func:`check` with this handle's last error as the message (read while the guard
        is held: the next call on the handle replaces it)."""
        if status >= 0:
            return status
        raise error(status, self._last_error_function(self._handle))

    def _call(self, function, *arguments, what: str) -> int:
        """``function(handle, *arguments)``, checked, under the guard; ``what`` names the
        method in messages."""
        token = [None]
        guard = self._guard
        try:
            owner = guard.setdefault(0, token)
            if owner is not token:
                self._refuse(owner, what)
            status = function(self._live(), *arguments)
            if status < 0:
                self._check(status)
            return status
        finally:
            try:
                if guard[0] is token:
                    del guard[0]
            except KeyError:
                pass

    # -- lifetime ---------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._handle is None

    def close(self) -> None:
        """Destroys the native handle. Idempotent; later calls other than close raise
        InvalidHandleError. Refused (InvalidStateError) while another thread uses the object."""
        if self._handle is None:
            return
        token = [None]
        guard = self._guard
        try:
            owner = guard.setdefault(0, token)
            if owner is not token:
                self._refuse(owner, "close()")
            handle = self._handle
            if handle is not None:
                self._handle = None
                self._destroy_function(handle)
        finally:
            try:
                if guard[0] is token:
                    del guard[0]
            except KeyError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        # Nothing else can be running: a running call holds a reference to the object.
        handle = self._handle
        if handle is not None:
            self._handle = None
            try:
                self._destroy_function(handle)
            except Exception:  # noqa: BLE001 - nothing can be reported from __del__
                pass

    # -- copies -----------------------------------------------------------------------------
    # A copy would share the native handle: stepping it would step the original, and
    # collecting it would destroy the original's handle. Refused until the library can
    # copy a handle's state (subclasses override these three to do that).
    def _not_copyable(self, how: str) -> TypeError:
        name = type(self).__name__
        return TypeError(f"{name} objects cannot be {how}: a copy would share the native handle with the "
                         f"original. Create a new {name} with the same arguments instead")

    def __copy__(self):
        raise self._not_copyable("copied (copy.copy)")

    def __deepcopy__(self, memo):
        raise self._not_copyable("copied (copy.deepcopy)")

    def __reduce_ex__(self, protocol):
        raise self._not_copyable("pickled")
