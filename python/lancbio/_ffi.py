"""The C ABI of include/lancbio.h as ctypes declarations: constants, struct mirrors, the
callback prototypes and the one table of function prototypes, loaded by :mod:`._library`.
Nothing here calls the library: checking statuses is :mod:`._handle`'s, callbacks are
:mod:`._trampoline`'s.

Pointer arguments of the product callback are declared ``c_void_p``: ctypes then hands
the trampoline plain ints, which is cheaper than building POINTER objects
on every product.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_char_p, c_double, c_float, c_int32, c_int64, c_uint64, c_void_p

from . import _library

# -- constants (values from include/lancbio.h; codes are never renumbered) ----------------
#: LANCBIO_ABI_VERSION of the header this wrapper mirrors; the loader requires it.
ABI_VERSION = 1

OK = 0
BUDGET_REACHED = 1
BREAKDOWN = 2
INDEFINITE = 3
SINGULAR = 4
NEED_PRODUCT = 100
NEED_REDUCTION = 101
ERR_INVALID_ARGUMENT = -1
ERR_NULL_POINTER = -2
ERR_NON_FINITE_INPUT = -3
ERR_NON_FINITE_PRODUCT = -4
ERR_NON_FINITE_RESULT = -5
ERR_CALLBACK = -6
ERR_WRONG_PRECISION = -7
ERR_INVALID_STATE = -8
ERR_INVALID_HANDLE = -9
ERR_OUT_OF_MEMORY = -10
ERR_BUFFER_TOO_SMALL = -11
ERR_INVALID_CHECKPOINT = -12

METHOD_LANCZOS = 1
METHOD_SUBBIO = 2
METHOD_CG = 3
METHOD_MINRES = 4
METHOD_GD = 5
METHOD_NEUMANN = 6
METHOD_RANDOM_NEUMANN = 7

FLOAT64 = 1
FLOAT32 = 2

VARIANT_RESIDUAL = 0
VARIANT_PLAIN = 1

RESIDUAL_UNAVAILABLE = 0
RESIDUAL_EXACT = 1
RESIDUAL_RECURRENCE = 2
RESIDUAL_ESTIMATE = 3
RESIDUAL_PREVIOUS = 4


# -- structs --------------------------------------------------------------------------
class EstimatorOptions(ctypes.Structure):
    """Mirror of lancbio_estimator_options_t (field order and types as in the header)."""

    _fields_ = [
        ("struct_size", c_int64),
        ("method", c_int32),
        ("precision", c_int32),
        ("m0", c_int64),
        ("m_max", c_int64),
        ("growth", c_double),
        ("grow_every", c_int64),
        ("variant", c_int32),
        ("reorthogonalize", c_int32),
        ("theta0", c_double),
        ("max_iterations", c_int64),
        ("tolerance", c_double),
        ("step_size", c_double),
        ("steps", c_int64),
        ("seed", c_uint64),
        ("orthogonality_tolerance", c_double),
        ("exact_residual", c_int32),
        ("reserved", c_int32),
    ]


class StepInfoStruct(ctypes.Structure):
    """Mirror of lancbio_step_info_t (field order and types as in the header)."""

    _fields_ = [
        ("struct_size", c_int64),
        ("status", c_int32),
        ("residual_kind", c_int32),
        ("products", c_int64),
        ("total_products", c_int64),
        ("iterations", c_int64),
        ("dimension", c_int64),
        ("period", c_int64),
        ("restarts", c_int64),
        ("restarted", c_int32),
        ("breakdown", c_int32),
        ("indefinite", c_int32),
        ("singular_fallback", c_int32),
        ("zero_residual", c_int32),
        ("reserved", c_int32),
        ("residual", c_double),
        ("ritz_min", c_double),
        ("ritz_max", c_double),
        ("orthogonality_loss", c_double),
        ("orthogonality_restart", c_int32),
        ("reserved2", c_int32),
        ("residual_uncertain", c_int32),
        ("reserved3", c_int32),
        ("reductions", c_int64),
    ]


# The library reads and writes exactly struct_size bytes: a layout slip here would corrupt
# fields silently, so pin the sizes and a few offsets of the x86-64/aarch64 LP64 layout.
assert ctypes.sizeof(EstimatorOptions) == 120, ctypes.sizeof(EstimatorOptions)
assert EstimatorOptions.theta0.offset == 56 and EstimatorOptions.seed.offset == 96
assert ctypes.sizeof(StepInfoStruct) == 144, ctypes.sizeof(StepInfoStruct)
assert StepInfoStruct.restarted.offset == 64 and StepInfoStruct.residual.offset == 88


class BilevelOptions(ctypes.Structure):
    """Mirror of lancbio_bilevel_options_t."""

    _fields_ = [
        ("struct_size", c_int64),
        ("lr_x", c_double),
        ("lr_y", c_double),
        ("lr_x_decay", c_double),
        ("lr_x_min", c_double),
        ("lr_y_decay", c_double),
        ("lr_y_min", c_double),
        ("inner_steps", c_int64),
        ("lr_y_auto", c_int64),
    ]


class BilevelInfoStruct(ctypes.Structure):
    """Mirror of lancbio_bilevel_info_t."""

    _fields_ = [
        ("struct_size", c_int64),
        ("iteration", c_int64),
        ("products", c_int64),
        ("total_products", c_int64),
        ("gradient_evaluations", c_int64),
        ("cross_products", c_int64),
        ("hypergradient_norm", c_double),
        ("lr_x", c_double),
        ("lr_y", c_double),
        ("estimator_status", c_int32),
        ("reserved", c_int32),
        ("curvature", c_double),
    ]


# int32_t (*)(const T *in, T *out, int64_t n, void *user_data), for both precisions.
HVP_CALLBACK = ctypes.CFUNCTYPE(c_int32, c_void_p, c_void_p, c_int64, c_void_p)
REDUCE_CALLBACK = ctypes.CFUNCTYPE(c_int32, c_void_p, c_int64, c_void_p)
# lancbio_gradient_f64_t: (const double *x, int64_t dx, const double *y, int64_t dy,
#                          double *out, void *user_data)
GRADIENT_CALLBACK = ctypes.CFUNCTYPE(c_int32, c_void_p, c_int64, c_void_p, c_int64, c_void_p, c_void_p)
# lancbio_product_f64_t: (const double *x, int64_t dx, const double *y, int64_t dy,
#                         const double *v, double *out, void *user_data)
PRODUCT_CALLBACK = ctypes.CFUNCTYPE(c_int32, c_void_p, c_int64, c_void_p, c_int64, c_void_p, c_void_p, c_void_p)


class ProblemStruct(ctypes.Structure):
    """Mirror of lancbio_problem_f64_t: the five callbacks of a bilevel problem."""

    _fields_ = [
        ("struct_size", c_int64),
        ("user_data", c_void_p),
        ("grad_y_g", GRADIENT_CALLBACK),
        ("grad_x_f", GRADIENT_CALLBACK),
        ("grad_y_f", GRADIENT_CALLBACK),
        ("hvp_yy_g", PRODUCT_CALLBACK),
        ("jvp_xy_g", PRODUCT_CALLBACK),
    ]


class SolveResultStruct(ctypes.Structure):
    """Mirror of lancbio_solve_result_t."""

    _fields_ = [
        ("struct_size", c_int64),
        ("converged", c_int32),
        ("reserved", c_int32),
        ("products", c_int64),
        ("iterations", c_int64),
        ("residual", c_double),
        ("rhs_norm", c_double),
        ("reductions", c_int64),
    ]


assert ctypes.sizeof(SolveResultStruct) == 56, ctypes.sizeof(SolveResultStruct)
assert ctypes.sizeof(BilevelOptions) == 72, ctypes.sizeof(BilevelOptions)
assert ctypes.sizeof(BilevelInfoStruct) == 88, ctypes.sizeof(BilevelInfoStruct)
assert ctypes.sizeof(ProblemStruct) == 56, ctypes.sizeof(ProblemStruct)

_handle = c_void_p
#: Pointer types of the float64 / float32 buffer arguments (pass ``arr.ctypes.data_as(F64P)``).
F64P = POINTER(c_double)
F32P = POINTER(c_float)
_f64p, _f32p = F64P, F32P

# -- the table: every function of the header, {name: (restype, argtypes)} ------------
FUNCTIONS = {
    "lancbio_abi_version": (c_int32, []),
    "lancbio_version": (c_char_p, []),
    "lancbio_status_string": (c_char_p, [c_int32]),
    "lancbio_last_error": (c_char_p, []),
    "lancbio_estimator_options_init": (c_int32, [POINTER(EstimatorOptions), c_int32]),
    "lancbio_estimator_create": (c_int32, [c_int64, POINTER(EstimatorOptions), POINTER(_handle)]),
    "lancbio_estimator_destroy": (None, [_handle]),
    "lancbio_estimator_reset": (c_int32, [_handle]),
    "lancbio_estimator_last_error": (c_char_p, [_handle]),
    "lancbio_estimator_callback_status": (c_int32, [_handle]),
    "lancbio_estimator_set_reduction": (c_int32, [_handle, REDUCE_CALLBACK, c_void_p]),
    "lancbio_estimator_set_reverse_reduction": (c_int32, [_handle, c_int64]),
    "lancbio_estimator_reduction_values": (c_int32, [_handle, _f64p, c_int64, ctypes.POINTER(c_int64)]),
    "lancbio_estimator_resume_reduction_f64": (c_int32, [_handle, _f64p, c_int64, _f64p, c_int64]),
    "lancbio_estimator_resume_reduction_f32": (c_int32, [_handle, _f64p, c_int64, _f32p, c_int64]),
    "lancbio_estimator_properties": (c_int32, [_handle, POINTER(c_int64), POINTER(c_int32), POINTER(c_int32)]),
    "lancbio_estimator_info": (c_int32, [_handle, POINTER(StepInfoStruct)]),
    "lancbio_estimator_step_f64": (c_int32, [_handle, HVP_CALLBACK, c_void_p, _f64p, _f64p, c_int64, POINTER(StepInfoStruct)]),
    "lancbio_estimator_step_f32": (c_int32, [_handle, HVP_CALLBACK, c_void_p, _f32p, _f32p, c_int64, POINTER(StepInfoStruct)]),
    "lancbio_estimator_begin_f64": (c_int32, [_handle, _f64p, _f64p, c_int64]),
    "lancbio_estimator_begin_f32": (c_int32, [_handle, _f32p, _f32p, c_int64]),
    "lancbio_estimator_resume_f64": (c_int32, [_handle, _f64p, _f64p, c_int64]),
    "lancbio_estimator_resume_f32": (c_int32, [_handle, _f32p, _f32p, c_int64]),
    "lancbio_estimator_cancel": (c_int32, [_handle]),
    "lancbio_estimator_get_v_f64": (c_int32, [_handle, _f64p, c_int64]),
    "lancbio_estimator_get_v_f32": (c_int32, [_handle, _f32p, c_int64]),
    "lancbio_estimator_set_v_f64": (c_int32, [_handle, _f64p, c_int64]),
    "lancbio_estimator_set_v_f32": (c_int32, [_handle, _f32p, c_int64]),
    "lancbio_solve_f64": (c_int32, [POINTER(EstimatorOptions), HVP_CALLBACK, c_void_p, _f64p, _f64p, c_int64, c_double,
                                    c_int64, POINTER(SolveResultStruct), POINTER(StepInfoStruct)]),
    "lancbio_solve_f32": (c_int32, [POINTER(EstimatorOptions), HVP_CALLBACK, c_void_p, _f32p, _f32p, c_int64, c_double,
                                    c_int64, POINTER(SolveResultStruct), POINTER(StepInfoStruct)]),
    "lancbio_solve_reduced_f64": (c_int32, [POINTER(EstimatorOptions), HVP_CALLBACK, c_void_p, REDUCE_CALLBACK, c_void_p,
                                            _f64p, _f64p, c_int64, c_double, c_int64, POINTER(SolveResultStruct),
                                            POINTER(StepInfoStruct)]),
    "lancbio_solve_reduced_f32": (c_int32, [POINTER(EstimatorOptions), HVP_CALLBACK, c_void_p, REDUCE_CALLBACK, c_void_p,
                                            _f32p, _f32p, c_int64, c_double, c_int64, POINTER(SolveResultStruct),
                                            POINTER(StepInfoStruct)]),
    "lancbio_bilevel_options_init": (c_int32, [POINTER(BilevelOptions)]),
    "lancbio_bilevel_create": (c_int32, [c_int64, c_int64, POINTER(BilevelOptions), POINTER(EstimatorOptions), POINTER(_handle)]),
    "lancbio_bilevel_destroy": (None, [_handle]),
    "lancbio_bilevel_reset": (c_int32, [_handle]),
    "lancbio_bilevel_last_error": (c_char_p, [_handle]),
    "lancbio_bilevel_callback_status": (c_int32, [_handle]),
    "lancbio_bilevel_step_f64": (c_int32, [_handle, POINTER(ProblemStruct), _f64p, c_int64, _f64p, c_int64, POINTER(BilevelInfoStruct)]),
    "lancbio_bilevel_info": (c_int32, [_handle, POINTER(BilevelInfoStruct)]),
    "lancbio_bilevel_estimator_info": (c_int32, [_handle, POINTER(StepInfoStruct)]),
    "lancbio_bilevel_get_v_f64": (c_int32, [_handle, _f64p, c_int64]),
    "lancbio_bilevel_set_v_f64": (c_int32, [_handle, _f64p, c_int64]),
    "lancbio_bilevel_get_hypergradient_f64": (c_int32, [_handle, _f64p, c_int64]),
    "lancbio_bilevel_set_reduction": (c_int32, [_handle, REDUCE_CALLBACK, c_void_p]),
    "lancbio_bilevel_step_sizes": (c_int32, [POINTER(BilevelOptions), c_int64, ctypes.POINTER(ctypes.c_double),
                                             ctypes.POINTER(ctypes.c_double)]),
    "lancbio_estimator_save": (c_int32, [_handle, c_void_p, c_int64, POINTER(c_int64)]),
    "lancbio_estimator_restore": (c_int32, [c_void_p, c_int64, POINTER(_handle)]),
    "lancbio_estimator_load": (c_int32, [_handle, c_void_p, c_int64]),
    "lancbio_bilevel_save": (c_int32, [_handle, c_void_p, c_int64, POINTER(c_int64)]),
    "lancbio_bilevel_restore": (c_int32, [c_void_p, c_int64, POINTER(_handle)]),
    "lancbio_bilevel_load": (c_int32, [_handle, c_void_p, c_int64]),
}

lib = _library.load(FUNCTIONS, ABI_VERSION)


def undeclared(name: str):
    """A second function object for ``name`` that has no argtypes and returns int32.

    Reverse communication makes one C call per product, and the per-argument conversion
    of declared argtypes is a large share of such a call at small n. Callers must pass
    ctypes objects of exactly the header's types (c_void_p or ``byref`` for pointers,
    c_int64 for lengths): nothing is converted or checked here.
    """
    function = lib[name]  # a new object: the declared one in ``lib`` keeps its argtypes
    function.argtypes = None
    function.restype = c_int32
    return function
