"""Turns the usual representations of a symmetric n x n matrix A into a product v -> A v."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._arrays import reject_masked

__all__ = ["as_operator"]


def _is_scipy_sparse(op) -> bool:
    # Decided from the type's module so that scipy is never imported just to ask.
    module = type(op).__module__ or ""
    return module.startswith("scipy.sparse") and hasattr(op, "shape") and not hasattr(op, "matvec")


def _check_square(shape, n, what: str) -> None:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{what} must be square (n x n), got shape {tuple(shape)}")
    if n is not None and shape[0] != n:
        raise ValueError(f"{what} has shape {tuple(shape)} but the estimator needs {n} x {n}")


def as_operator(op, n: int | None = None, dtype=None) -> Callable[[np.ndarray], np.ndarray]:
    """The product v -> A v for ``op``.

    Args:
        op: one of
            - a 2-D numpy array (or array subclass such as numpy.matrix), shape (n, n);
            - a scipy.sparse matrix or array, shape (n, n) (converted to CSR once);
            - an object with ``.matvec`` (scipy.sparse.linalg.LinearOperator), whose
              ``.shape``, if present, is checked;
            - any callable taking v (shape (n,)) and returning A v (shape (n,)).
        n: the dimension the caller needs; checked against the shape when it is known.
        dtype: the estimator's dtype (numpy.float64 or numpy.float32); informative only:
            results of another real dtype are cast by the estimator.

    Returns:
        A callable mapping a 1-D array of length n to an array of shape (n,).

    Raises:
        ValueError: a matrix that is not square, or not n x n.
        TypeError: a numpy.ma masked matrix, or anything else (with the list of accepted kinds).
    """
    if isinstance(op, np.ndarray):
        reject_masked(op, "the matrix")
        matrix = np.asarray(op)  # a plain ndarray: numpy.matrix @ v would be (1, n)
        if matrix.ndim != 2:
            raise ValueError(f"a matrix operator must be 2-D (n x n), got {matrix.ndim}-D with shape {matrix.shape}")
        if matrix.dtype.kind not in "fiu":
            raise TypeError(f"a matrix operator must have a real floating or integer dtype, got {matrix.dtype}")
        _check_square(matrix.shape, n, "the matrix")
        return matrix.__matmul__
    if _is_scipy_sparse(op):
        _check_square(op.shape, n, "the sparse matrix")
        matrix = op.tocsr() if hasattr(op, "tocsr") else op
        return matrix.__matmul__
    matvec = getattr(op, "matvec", None)
    if callable(matvec):
        shape = getattr(op, "shape", None)
        if shape is not None:
            _check_square(shape, n, "the linear operator")
        return matvec
    if callable(op):
        return op
    raise TypeError(
        "the operator must be a callable v -> A v, an object with .matvec (e.g. "
        "scipy.sparse.linalg.LinearOperator), a 2-D numpy array or a scipy.sparse matrix; "
        f"got {type(op).__name__}"
    )
