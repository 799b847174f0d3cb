"""Python keywords and the fields of the C options structs they set: conversion only.

The defaults are the library's (what ``lancbio_*_options_init`` writes; a keyword given as
None leaves its field so) and so are the valid ranges (``lancbio_*_create`` rejects a value
out of range with a message, which :meth:`_handle.Handle._create` raises). Both are
documented once, in include/lancbio.h. What stays here is what a C struct cannot say:
that a count is an integer and not a float or a bool, that a step size is a real number,
the names of the Lanczos variants, and that an integer fits its C field.
"""

from __future__ import annotations

import ctypes
import numbers
import operator

import numpy as np

from . import _ffi
from ._ffi import lib
from ._handle import check
from .errors import InvalidArgumentError

__all__ = ["ESTIMATOR", "OUTER", "VARIANTS", "to_int", "to_float", "estimator_options", "bilevel_options",
           "fill", "read"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

#: The Lanczos variants by name.
VARIANTS = {"residual": _ffi.VARIANT_RESIDUAL, "plain": _ffi.VARIANT_PLAIN}
_VARIANT_NAMES = {code: name for name, code in VARIANTS.items()}


def _integer(value, name: str) -> int:
    """An int or numpy integer, not a bool or a float."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None


def to_int(value, name: str) -> int:
    """An integer option that fits int64."""
    value = _integer(value, name)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise InvalidArgumentError(f"{name} = {value} does not fit in int64", -1)
    return value


def to_float(value, name: str) -> float:
    """A real-number option (not a bool, a string or a complex)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def _to_seed(value, name: str) -> int:
    value = _integer(value, name)
    if not 0 <= value < 2**64:
        raise InvalidArgumentError(f"{name} must be an integer in [0, 2**64), got {value!r}", -1)
    return value


def _to_variant(value, name: str) -> int:
    if value not in VARIANTS:
        raise ValueError(f"{name} must be one of {list(VARIANTS)}, got {value!r}")
    return VARIANTS[value]


def _to_flag(value, name: str) -> int:
    return 1 if value else 0


# keyword: (field, Python -> C, C -> Python). Several keywords may set one field (the
# estimators' own names for ``steps``: terms, max_terms).
ESTIMATOR = {
    "m0": ("m0", to_int, int),
    "m_max": ("m_max", to_int, int),
    "growth": ("growth", to_float, float),
    "grow_every": ("grow_every", to_int, int),
    "variant": ("variant", _to_variant, _VARIANT_NAMES.get),
    "reorthogonalize": ("reorthogonalize", _to_flag, bool),
    "orthogonality_tol": ("orthogonality_tolerance", to_float, float),
    "exact_residual": ("exact_residual", _to_flag, bool),
    "theta0": ("theta0", to_float, float),
    "maxiter": ("max_iterations", to_int, int),
    "tol": ("tolerance", to_float, float),
    "eta": ("step_size", to_float, float),
    "steps": ("steps", to_int, int),
    "terms": ("steps", to_int, int),
    "max_terms": ("steps", to_int, int),
    "seed": ("seed", _to_seed, int),
}
OUTER = {name: (name, to_float, float) for name in ("lr_x", "lr_y", "lr_x_decay", "lr_x_min", "lr_y_decay",
                                                     "lr_y_min")}
OUTER["inner_steps"] = ("inner_steps", to_int, int)


def estimator_options(method: int) -> _ffi.EstimatorOptions:
    """A lancbio_estimator_options_t with the library's defaults for ``method``."""
    options = _ffi.EstimatorOptions()
    status = lib.lancbio_estimator_options_init(ctypes.byref(options), method)
    check(status, lib.lancbio_last_error() if status < 0 else None)
    return options


def bilevel_options() -> _ffi.BilevelOptions:
    """A lancbio_bilevel_options_t with the library's defaults."""
    options = _ffi.BilevelOptions()
    status = lib.lancbio_bilevel_options_init(ctypes.byref(options))
    check(status, lib.lancbio_last_error() if status < 0 else None)
    return options


def fill(struct, table: dict, values: dict) -> None:
    """Sets the field of every keyword in ``values`` whose value is not None (converted
    by ``table``); None leaves the library's default."""
    for name, value in values.items():
        if value is not None:
            field, to_c, _ = table[name]
            setattr(struct, field, to_c(value, name))


def read(struct, table: dict, names) -> dict:
    """{keyword: value} of ``struct`` for ``names``, as Python values."""
    settings = {}
    for name in names:
        field, _, from_c = table[name]
        settings[name] = from_c(getattr(struct, field))
    return settings
