"""The base of every handle-owning class refuses copies and pickles, so that a class that
does not make real copies of its own (the estimators and Bilevel do, through checkpoints:
test_checkpoint) cannot be copied into a second owner of its native handle, which would
step the original and, once collected, destroy the original's handle. Each refusal is a
TypeError saying why, and leaves the original's handle alive."""

import copy
import ctypes
import gc
import pickle

import pytest

from lancbio import _ffi, _options
from lancbio._ffi import lib
from lancbio._handle import Handle

ATTEMPTS = {
    "copy.copy": copy.copy,
    "copy.deepcopy": copy.deepcopy,
    **{f"pickle protocol {p}": (lambda obj, p=p: pickle.dumps(obj, protocol=p))
       for p in range(pickle.HIGHEST_PROTOCOL + 1)},
}


class Bare(Handle):
    """A handle owner with nothing but what Handle gives: an estimator's native handle."""

    _destroy_function = lib.lancbio_estimator_destroy
    _last_error_function = lib.lancbio_estimator_last_error

    def __init__(self, n):
        options = _options.estimator_options(_ffi.METHOD_CG)
        self._create(lib.lancbio_estimator_create, n, ctypes.byref(options), context="Bare")

    def dimension(self) -> int:
        n = ctypes.c_int64()
        self._call(lib.lancbio_estimator_properties, ctypes.byref(n), None, None, what="dimension()")
        return n.value


@pytest.mark.parametrize("attempt", sorted(ATTEMPTS))
def test_a_handle_owner_without_copies_of_its_own_refuses_and_keeps_its_handle(attempt):
    owner = Bare(7)
    with pytest.raises(TypeError, match=r"^Bare objects cannot be (copied|pickled).*share the native handle"):
        ATTEMPTS[attempt](owner)
    gc.collect()  # a half-made copy, if there were one, would destroy the handle here
    assert owner.dimension() == 7 and not owner.closed
    owner.close()


def test_the_refusal_says_what_to_do_instead():
    with pytest.raises(TypeError, match=r"^Bare objects cannot be copied \(copy\.copy\).*Create a new Bare"):
        copy.copy(Bare(3))


def test_the_estimators_and_bilevel_override_all_three_with_real_copies():
    import lancbio
    from lancbio.estimators import _Estimator

    for cls in (_Estimator, lancbio.Bilevel):
        for name in ("__copy__", "__deepcopy__", "__reduce_ex__"):
            assert getattr(cls, name) is not getattr(Handle, name), (cls.__name__, name)
