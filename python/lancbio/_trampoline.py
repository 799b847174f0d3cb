"""The callbacks C calls: a Python function behind a CFUNCTYPE, for every callback of the
header Python passes (the solve's product ``(in, out, n, user_data)``, the bilevel
problem's gradients ``(x, dx, y, dy, out, user_data)`` and products ``(x, dx, y, dy, v,
out, user_data)``), all made by :func:`make_callback`. Estimators step by reverse
communication instead (see :meth:`lancbio.DynamicLanczos.step`), which needs none.

Each callback
- hands the function private copies of its input vectors, never views of the library's
  memory. The copy goes into a buffer reused from call to call while nobody else holds it:
  a fresh copy per call would allocate and free the vector each time, and glibc returns
  such freed blocks to the system (heap trimming), so every call would page-fault its
  memory back in (measured: 6x the cost of a product at n = 1e5). A function that keeps
  its input (or a view of it), or changes its shape, dtype or writeability, makes the
  buffer its own: the next call gets another;
- wraps the library's buffers as numpy views cached by address (the library's buffers
  live as long as the handle), and drops its own references to them before returning or
  raising, so that no view escapes, not even through a traceback;
- validates the result (shape, a real floating or integer dtype, cast to the buffer's
  dtype; finiteness is the library's check) and writes it into the output buffer;
- on any exception, KeyboardInterrupt included, stores it in ``state[ERROR]`` and returns
  1: the library abandons the call, and the wrapper re-raises the exception, with its own
  traceback, after C returns.

An exception can also escape a callback before its first statement: one raised by a
signal handler (KeyboardInterrupt), which runs on entry to the Python function, or a
RecursionError from the call itself. ctypes then hands it to ``sys.unraisablehook`` (by
default printing "Exception ignored on calling ctypes callback function") and returns to
the library without writing the return value, so the library sees whatever the stack
slot held, usually the 0 of the previous call. The library catches that case itself: it
stores a marker in out[0] before each call and fails the call (LANCBIO_ERR_CALLBACK)
when the marker is still there. To re-raise the exception itself rather than lose it,
wrappers run the native call between :func:`install_capture` and :func:`remove_capture`,
whose hook puts an exception escaping one of these callbacks into its ``state[ERROR]``
(and lets every other unraisable exception through to the hook it replaced);
:func:`escaped` is what a wrapper raises when a callback failed without leaving any
exception there.
"""

from __future__ import annotations

import ctypes
import functools
import linecache
import sys

import numpy as np

from ._arrays import masked_error

__all__ = ["OPERATOR", "ERROR", "new_state", "make_callback", "result_error", "SOLE_REFERENCE_COUNT",
           "install_capture", "remove_capture", "escaped"]

#: Indices of a callback state list: the function to call when the callback has none of
#: its own (the solve's operator), and the exception of the last failed call.
OPERATOR, ERROR = 0, 1

# Caps each cache of buffer views: the library's buffers number at most m_max + 10 per
# handle, but SubBiO's first product is of the caller's own b (read in place by step),
# whose address changes from call to call.
_MAX_CACHED_VIEWS = 8192
_ACCEPTED_KINDS = frozenset("fiu")


def new_state() -> list:
    """A fresh ``[operator, error]`` state for the callbacks of one handle."""
    return [None, None]


def _sole_reference_count() -> int:
    # What sys.getrefcount reports for an object held by one local variable only: 2 up to
    # CPython 3.13, 1 from 3.14 (locals are passed as borrowed references).
    probe = np.empty(0)
    return sys.getrefcount(probe)


#: sys.getrefcount of an array held by one local variable only.
SOLE_REFERENCE_COUNT = _sole_reference_count()


def result_error(result, n: int, what: str) -> Exception | None:
    """Why ``result`` cannot be the n-vector ``what`` ("the operator's result"), or None
    (then ``np.asarray(result)`` is usable).

    None, a string or another non-numeric object in place of the array is a TypeError;
    a number or an array-like of the wrong shape (bytes included: a wrong length) is a
    ValueError, and so is a ragged list, which numpy itself rejects.
    """
    masked = masked_error(result, what)
    if masked is not None:
        return masked
    try:
        arr = np.asarray(result)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the function's fault
        return TypeError(f"{what} must be an array of shape ({n},); got {type(result).__name__}, "
                         f"which numpy cannot convert: {exc}")
    not_an_array = arr.ndim == 0 and arr.dtype.kind in "OU"
    if arr.shape != (n,) and not not_an_array:
        return ValueError(f"{what} must be an array of shape ({n},), got shape {arr.shape}")
    if arr.dtype.kind not in _ACCEPTED_KINDS:
        return TypeError(f"{what} must be a real floating or integer array of shape ({n},); "
                         f"got {type(result).__name__} with dtype {arr.dtype}")
    return None


def _usable(result, n: int, what: str) -> np.ndarray:
    problem = result_error(result, n, what)
    if problem is not None:
        raise problem
    return np.asarray(result)


# The body of every callback, generated once per layout of the C parameters (one copy
# stanza per input vector) so that the hot path is straight-line code: a loop over the
# inputs costs about 0.3 us a call on CPython 3.11, a quarter of the callback's own cost.
_MAKER = '''
def make(function, state, dtype, view, usable, name, out_views, out_vector, out_shape, {input_names}):
    ndarray = np.ndarray
    getrefcount = sys.getrefcount
    accepted = ACCEPTED_KINDS
    alone = SOLE_REFERENCE_COUNT
    spare = [None] * {count}

    def callback({parameters}):
        source = target = None
        try:{copies}
            source = None
            result = {call}({arrays})
            if type(result) is not ndarray or result.shape != out_shape or result.dtype.kind not in accepted:
                result = usable(result, out_shape[0], name)
            target = out_views.get(out)
            if target is None:
                target = view(out_views, out_vector, out)
            target[:] = result
            result = target = None{recycling}
            return 0
        except BaseException as exc:  # noqa: BLE001 - re-raised by the wrapper after C returns
            source = target = None
            state[1] = exc
            return 1

    return callback
'''
_COPY = '''
            source = views{i}.get(in{i})
            if source is None:
                source = view(views{i}, vector{i}, in{i})
            x{i} = spare[{i}]
            if x{i} is None:
                x{i} = source.copy()
            else:
                spare[{i}] = None
                x{i}[:] = source'''
_RECYCLE = '''
            if (getrefcount(x{i}) == alone and x{i}.flags.writeable and x{i}.dtype is dtype
                    and x{i}.shape == shape{i}):
                spare[{i}] = x{i}'''


@functools.lru_cache(maxsize=None)
def _maker(layout: tuple, own_function: bool):
    """The function that builds callbacks of one layout (a tuple with "in", "out" or None
    per C parameter)."""
    count = layout.count("in")
    parameters, inputs = [], 0
    for position, role in enumerate(layout):
        if role == "in":
            parameters.append(f"in{inputs}")
            inputs += 1
        else:
            parameters.append("out" if role == "out" else f"_{position}")
    source = _MAKER.format(
        count=count, parameters=", ".join(parameters),
        input_names=", ".join(f"views{i}, vector{i}, shape{i}" for i in range(count)),
        copies="".join(_COPY.format(i=i) for i in range(count)),
        call="function" if own_function else "state[0]",
        arrays=", ".join(f"x{i}" for i in range(count)),
        recycling="".join(_RECYCLE.format(i=i) for i in range(count)))
    filename = f"<lancbio callback {'-'.join(role or '_' for role in layout)}>"
    # Registered so that tracebacks through a callback show its lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"np": np, "sys": sys, "ACCEPTED_KINDS": _ACCEPTED_KINDS,
                 "SOLE_REFERENCE_COUNT": SOLE_REFERENCE_COUNT}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own template
    return namespace["make"]


# numpy dtypes of the ctypes element types. Passing the ctypes type itself to numpy would
# run numpy's Python-level ctypes check, which turns any exception raised in it (an
# interrupt arriving there) into "not a ctypes type", hence an object dtype and a
# ValueError in place of the interrupt.
_DTYPES = {ctypes.c_double: np.dtype(np.float64), ctypes.c_float: np.dtype(np.float32)}


def _view(views: dict, vector_type, address: int) -> np.ndarray:
    if len(views) >= _MAX_CACHED_VIEWS:
        views.clear()
    view = views[address] = np.frombuffer(vector_type.from_address(address), dtype=_DTYPES[vector_type._type_])
    return view


def make_callback(prototype, parameters, dtype, state, name: str, function=None):
    """A C callback of type ``prototype`` that calls ``function`` (or, without one,
    ``state[OPERATOR]`` as it is at each call) with private copies of its input vectors.

    Args:
        prototype: the ctypes.CFUNCTYPE of the callback.
        parameters: per C parameter, ``("in", length)`` for an input vector (passed to the
            function in this order), ``("out", length)`` for the output vector, or None
            for anything else (lengths, user_data), which is ignored.
        dtype: numpy.float64 or numpy.float32, the dtype of every vector.
        state: the list from :func:`new_state` that receives the exception of a failed call.
        name: what the function's result is called in messages ("the operator's result").
        function: the callable, or None to call ``state[OPERATOR]``.

    Returns:
        The CFUNCTYPE object; keep it alive as long as C may call it.
    """
    dtype = np.dtype(dtype)
    ctype = np.ctypeslib.as_ctypes_type(dtype)
    layout = tuple(None if p is None else p[0] for p in parameters)
    if layout.count("out") != 1 or not layout.count("in"):
        raise ValueError(f"a callback needs one output and at least one input, got {layout}")
    inputs = []
    for parameter in parameters:
        if parameter is not None and parameter[0] == "in":
            inputs += [{}, ctype * parameter[1], (parameter[1],)]
    out_length = next(p[1] for p in parameters if p is not None and p[0] == "out")
    make = _maker(layout, function is not None)
    callback = make(function, state, dtype, _view, _usable, name, {}, ctype * out_length, (out_length,), *inputs)
    callback._lancbio_state = state  # where install_capture's hook puts an exception that escaped it
    return prototype(callback)


# -- exceptions that escape a callback before its first statement --------------------------
# The hook that install_capture replaced, to which _capture passes every other unraisable
# exception.
_hook_replaced = None


def _callback_state(unraisable):
    """The state list of the lancbio callback an unraisable exception escaped, or None."""
    # The callable is the hook's object up to Python 3.12; from 3.13 ctypes names it in
    # the message only, but the exception's traceback ends in the callback's own frame.
    try:
        state = getattr(unraisable.object, "_lancbio_state", None)
    except Exception:  # noqa: BLE001 - someone else's object, whatever its __getattr__ does
        state = None
    if state is None and unraisable.exc_traceback is not None:
        tb = unraisable.exc_traceback
        while tb.tb_next is not None:
            tb = tb.tb_next
        if tb.tb_frame.f_code.co_filename.startswith("<lancbio callback"):
            state = tb.tb_frame.f_locals.get("state")
    return state if type(state) is list else None


def _capture(unraisable) -> None:
    state = _callback_state(unraisable)
    if state is not None and unraisable.exc_value is not None:
        if state[ERROR] is None:
            state[ERROR] = unraisable.exc_value
        return
    (_hook_replaced or sys.__unraisablehook__)(unraisable)


def install_capture():
    """Makes an exception that escapes one of these callbacks before its ``try`` land in
    the callback's ``state[ERROR]`` instead of being printed and lost, until
    :func:`remove_capture` is given what this returns. Call it just before the native call
    that runs the callbacks, and remove_capture in its ``finally``.

    Installing is not counted: with calls on several threads at once, the first to finish
    puts the previous hook back, and a callback of another that escapes later is reported
    as before (printed) and raised as :func:`escaped`. The hook left installed when
    remove_capture does not run (an interrupt in a ``finally``) only passes exceptions on.
    """
    global _hook_replaced
    current = sys.unraisablehook
    if current is _capture:
        return None  # nested, or another thread's: that call removes it
    _hook_replaced = current
    sys.unraisablehook = _capture
    return current


def remove_capture(previous) -> None:
    """Undoes :func:`install_capture` (given its result)."""
    if previous is not None and sys.unraisablehook is _capture:
        sys.unraisablehook = previous


def escaped(what: str) -> BaseException:
    """What to raise when a callback failed but left no exception behind: it was
    interrupted before it ran (its exception was printed, not captured)."""
    return KeyboardInterrupt(f"{what} was interrupted before its first statement ran; the exception raised "
                             "there was reported as 'Exception ignored' above")
