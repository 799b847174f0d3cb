"""The reduction callback of ``comm=``: the library's sums across processes through a
communicator's ``Allreduce`` (mpi4py's, or anything with ``Allreduce(sendbuf, recvbuf)``
that sums, as MPI_SUM does by default).

Per call it allocates no array: the library passes the same buffer on every call (its
address is fixed once the reduction is set), so the numpy views of it and of the send
buffer are made once per count and reused. An exception from ``Allreduce`` makes the
callback return non-zero (the library then abandons the step) and is kept, for the
estimator to raise in place of the library's LANCBIO_ERR_CALLBACK."""

from __future__ import annotations

import ctypes

import numpy as np

from . import _ffi


class Reducer:
    """The callback for one handle and communicator ``comm``."""

    def __init__(self, comm):
        if not callable(getattr(comm, "Allreduce", None)):
            raise TypeError(f"comm must have an Allreduce method (an mpi4py communicator), got {type(comm).__name__}")
        self.comm = comm
        self.error = None
        # (address, count) -> (the library's values, the send buffer), as numpy views.
        self._views = {}
        self._send = np.empty(0)
        allreduce = comm.Allreduce
        views = self._views

        def reduce(values, count, user_data):
            try:
                pair = views.get((values, count))
                if pair is None:
                    pair = self._make_views(values, count)
                received, send = pair
                send[...] = received
                allreduce(send, received)
                return 0
            except BaseException as exc:  # noqa: BLE001 - returned to C, raised by the caller
                self.error = exc
                return 1

        self.callback = _ffi.REDUCE_CALLBACK(reduce)

    def _make_views(self, address: int, count: int):
        if self._send.size < count:
            self._send = np.empty(max(count, 2 * self._send.size))
            # The old send views are stale: drop them.
            self._views.clear()
        received = np.ctypeslib.as_array(ctypes.cast(address, ctypes.POINTER(ctypes.c_double)), shape=(count,))
        pair = (received, self._send[:count])
        self._views[(address, count)] = pair
        return pair

    def take_error(self):
        """The exception of the last failed call, once."""
        error, self.error = self.error, None
        return error


def refuse_copy(owner) -> None:
    """Raises TypeError for a copy or pickle of an object sliced across processes: the copy
    would hold this process's slice with no communicator, and its steps would treat the
    slice as the whole vector."""
    if owner._reducer is not None:
        raise TypeError(f"a {type(owner).__name__} with comm= cannot be copied or pickled: the copy would hold this "
                        "process's slice without the communicator (create another with comm= on every process)")


class Sliced:
    """For the handle owners that take ``comm=``: their reducer (None on one process), and
    status checks that raise a failed Allreduce as itself rather than as the library's
    callback error (and never leave it over for a later failure). Mixed in before Handle."""

    _reducer = None

    def _check(self, status: int) -> int:
        if status < 0 and self._reducer is not None:
            error = self._reducer.take_error()
            if error is not None:
                raise error
        return super()._check(status)
