"""Checkpoints of native handles as Python bytes: what pickling and copying an estimator or
a :class:`lancbio.Bilevel` go through.

The library writes and checks the bytes (include/lancbio.h, "Checkpoints";
docs/algorithms.md section 12): :func:`save` asks it for the size, then for the bytes;
:func:`restore` hands them back and takes ownership of the new handle. The Python-side
state of an object (its options as given, v0, a Bilevel's problem and x, y) travels next
to the bytes, in the pickle or the copy.
"""

from __future__ import annotations

import ctypes
import pickle

__all__ = ["save", "restore", "check_picklable"]


def save(owner, function) -> bytes:
    """The checkpoint of ``owner``'s handle (a :class:`._handle.Handle`), written by the
    library's ``lancbio_*_save`` ``function``. Raises as the library says: a closed handle,
    a step in progress (InvalidStateError), another thread using the object (likewise).
    Both calls (the size, then the bytes) run under one claim of the owner's guard, so
    that no other thread's step comes between them."""
    token = [None]
    guard = owner._guard
    try:
        holder = guard.setdefault(0, token)
        if holder is not token:
            owner._refuse(holder, "save")
        handle = owner._live()
        size = ctypes.c_int64()
        owner._check(function(handle, None, 0, ctypes.byref(size)))
        buffer = ctypes.create_string_buffer(size.value)
        owner._check(function(handle, buffer, size.value, ctypes.byref(size)))
        return buffer.raw[: size.value]
    finally:
        try:
            if guard[0] is token:
                del guard[0]
        except KeyError:
            pass


def restore(owner, function, data, context: str) -> None:
    """Makes ``owner`` (a Handle not yet created) own the handle that the library's
    ``lancbio_*_restore`` ``function`` makes from ``data`` (bytes-like). A damaged
    checkpoint raises InvalidCheckpointError with the library's reason after ``context``."""
    if not isinstance(data, bytes):
        try:
            data = bytes(memoryview(data))
        except TypeError:
            raise TypeError(f"a checkpoint is bytes, got {type(data).__name__}") from None
    owner._create(function, data, len(data), context=context)


class _Discard:
    """A file that forgets what is written to it."""

    def write(self, data) -> int:
        return len(data)


def check_picklable(value, protocol: int, what: str) -> None:
    """Raises TypeError naming ``what`` when ``value`` cannot be pickled. It is pickled once
    into nothing: the pickler's own error, raised later from inside the enclosing object's
    pickle, would name neither the object nor the part at fault."""
    try:
        pickle.Pickler(_Discard(), protocol).dump(value)
    except Exception as error:  # noqa: BLE001 - any failure to pickle is the answer
        raise TypeError(f"{what} ({type(value).__qualname__}) cannot be pickled: {error}") from error
