"""The check every array argument gets before its values are used: numpy.ma masked arrays
are refused.

A masked array is an ndarray subclass whose masked entries still hold values (whatever
was there before masking), and ``numpy.asarray`` or the buffer protocol hand those values
over without the mask. Accepting one would silently compute with data the caller marked
invalid, so the caller must say what the masked entries mean.
"""

from __future__ import annotations

import numpy as np

__all__ = ["masked_error", "reject_masked"]

_MaskedArray = np.ma.MaskedArray


def masked_error(arr, name: str) -> TypeError | None:
    """The TypeError for ``arr`` if it is a numpy.ma masked array, else None; ``name``
    ("b", "x0", "the operator's result") is what the message calls it."""
    if not isinstance(arr, _MaskedArray):
        return None
    return TypeError(f"{name} is a numpy.ma masked array: its masked entries would be used as data. "
                     f"Pass {name if name.isidentifier() else 'it'}.filled(value), with the value the masked "
                     "entries stand for, or leave them out of the problem")


def reject_masked(arr, name: str) -> None:
    """Raises :func:`masked_error`'s TypeError for a masked array."""
    problem = masked_error(arr, name)
    if problem is not None:
        raise problem
