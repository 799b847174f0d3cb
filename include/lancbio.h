/*
 * lancbio: hyper-gradient estimators for bilevel optimization.
 *
 * Estimators of v = A^{-1} b where the symmetric matrix A (n x n) is available only
 * through products q -> A q (Hessian-vector products, "HVPs"): LancBiO's dynamic
 * Lanczos and the classic estimators it is compared with (SubBiO, CG, MINRES, gradient
 * steps, Neumann series). Each estimator is stateful: one step per outer iteration of a
 * bilevel method, warm-started from its previous estimate.
 *
 * Conventions
 * - Every fallible function returns an int32_t status: 0 success, > 0 success with a
 *   caveat (a usable result was written), < 0 error (nothing was written and the handle's
 *   state is exactly as before the call). See the LANCBIO_* status table below;
 *   lancbio_status_string() names each code. Codes are never renumbered.
 * - Error detail: lancbio_estimator_last_error(h) (lancbio_bilevel_last_error(h)), valid
 *   until the next call on h; for calls that have no handle (creation, options, one-shot
 *   solves, restores from checkpoints), lancbio_last_error(), per thread.
 * - Handles are opaque, created through an out-parameter, destroyed with
 *   lancbio_estimator_destroy() (NULL is accepted). Unknown or destroyed handles are
 *   detected and rejected with LANCBIO_ERR_INVALID_HANDLE, also after later creations
 *   (a handle is a value, not an address: a destroyed one's value comes back only after
 *   2^32 - 1 more handles have been created in its place).
 * - Buffers belong to the caller and are borrowed only for the duration of a call;
 *   the library keeps no pointer after a call returns. Sizes are int64_t counts of
 *   elements, never bytes, except the byte sizes of checkpoint buffers.
 * - Options and info structs start with a struct_size field: set it to sizeof(the struct)
 *   (the *_init functions do). Later versions only append fields, and the library reads
 *   or writes only the first struct_size bytes (fields a caller's struct does not reach
 *   take their defaults), so code compiled against an older header keeps working; a
 *   struct_size below the first published layout is rejected.
 * - Precision: a handle is created for float64 or float32; *_f64 functions take double
 *   buffers, *_f32 functions float buffers. Calling the other precision's function on a
 *   handle is an error (LANCBIO_ERR_WRONG_PRECISION). Float32 handles store vectors in
 *   float and accumulate every reduction in double.
 * - Memory: creation allocates all the storage a handle will ever use, a one-shot solve
 *   allocates for the call, and steps allocate nothing. When the system refuses memory
 *   (RLIMIT_AS, no overcommit, exhaustion), the call returns LANCBIO_ERR_OUT_OF_MEMORY with
 *   everything it had allocated released, instead of ending the process. Before
 *   allocating, the library maps the storage once with 2 MiB to spare: the spare covers
 *   each buffer's alignment, the allocator's bookkeeping and 1 to 3 KB of small runtime
 *   objects (the handle, the estimator, the method, its pass schedulers) whose allocation
 *   cannot report failure. Only memory that another thread takes between that check and
 *   the allocation, beyond the spare, can still abort the process. With overcommit,
 *   pages are committed when first written, so the system may still run out later, when
 *   a step writes them; no library can prevent that.
 * - Threads: one thread at a time per handle; independent handles may be used
 *   concurrently from different threads. A process may fork while other threads are
 *   inside library calls: the child can create handles and use them and those that no
 *   thread was using at the fork (one mid-call then is in an unspecified state).
 * - Names. An estimator has one name in every layer, for its linear algebra:
 *   "lanczos" (LANCBIO_METHOD_LANCZOS; Python DynamicLanczos; Swift .dynamicLanczos),
 *   "subbio", "cg", "minres", "gd", "neumann", "random-neumann" (lancbio.solve takes
 *   these). A bilevel method is named for the paper's algorithm, which is an estimator
 *   plus outer-loop settings (Python Bilevel(method=...)): "lancbio" (lanczos),
 *   "subbio", "amigo-cg" (cg), "amigo-gd" and "soba" (gd), "stocbio" (neumann), "ttsa"
 *   and "bsa" (random-neumann).
 * - Option names. C fields and Python keywords are spelled alike (m0, m_max, growth,
 *   grow_every, variant, reorthogonalize, theta0, steps, seed, lr_x, lr_y, lr_*_decay,
 *   lr_*_min, inner_steps) except where Python follows scipy and the papers:
 *     C max_iterations          = Python maxiter
 *     C tolerance               = Python tol
 *     C step_size               = Python eta
 *     C orthogonality_tolerance = Python orthogonality_tol
 *     C steps                   = Python steps (GD), terms (Neumann), max_terms
 *                                 (random Neumann)
 *   and Bilevel's v_steps (the paper's Q) sets max_iterations for CG, steps otherwise.
 *   The library's messages use the C names. Defaults are those of the *_options_init
 *   functions, documented at each field; Python's None means "the library's default".
 */
#ifndef LANCBIO_H
#define LANCBIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version of this header. Bumped only by incompatible changes. */
#define LANCBIO_ABI_VERSION 1

/* ---------------------------------------------------------------------------------
 * Status codes
 * -------------------------------------------------------------------------------*/
/** Success. */
#define LANCBIO_OK 0
/** An iterative solve used its whole iteration budget without meeting its tolerance.
 *  Not an error: truncated solves are what hyper-gradient estimators do. */
#define LANCBIO_BUDGET_REACHED 1
/** The Krylov space became invariant, or the residual was already zero: the estimate is
 *  exact for this operator (Lanczos restarts at the next step). */
#define LANCBIO_BREAKDOWN 2
/** Negative or zero curvature met: A is not positive definite on the explored subspace.
 *  A result was still written (see the method's documentation). */
#define LANCBIO_INDEFINITE 3
/** The projected system was singular to working precision: the estimate is a least-squares
 *  one (Lanczos: the minimum-norm solution of the projected system; MINRES: the last
 *  iterate before the singular direction), and the residual its least-squares minimum. */
#define LANCBIO_SINGULAR 4
/** Reverse communication only, not final: the request buffer holds a vector x; compute
 *  A x and pass it to the matching *_resume call. */
#define LANCBIO_NEED_PRODUCT 100
/** Reverse communication with reverse reductions only (lancbio_estimator_set_reverse_reduction),
 *  not final: copy the values to sum with lancbio_estimator_reduction_values, replace them by
 *  their sums over all processes, and pass those to lancbio_estimator_resume_reduction_*. */
#define LANCBIO_NEED_REDUCTION 101
/** A size, option or argument is out of range (details in the handle's message). */
#define LANCBIO_ERR_INVALID_ARGUMENT (-1)
/** A required pointer was NULL. */
#define LANCBIO_ERR_NULL_POINTER (-2)
/** b or a supplied estimate contains NaN or infinity. */
#define LANCBIO_ERR_NON_FINITE_INPUT (-3)
/** A product returned by the callback (or supplied to *_resume) contains NaN or infinity. */
#define LANCBIO_ERR_NON_FINITE_PRODUCT (-4)
/** The computed estimate overflowed. */
#define LANCBIO_ERR_NON_FINITE_RESULT (-5)
/** The callback returned non-zero, or 0 without writing its output (see lancbio_hvp_f64_t);
 *  lancbio_estimator_callback_status() gives its code. */
#define LANCBIO_ERR_CALLBACK (-6)
/** An *_f64 function was called on a float32 handle, or the reverse. */
#define LANCBIO_ERR_WRONG_PRECISION (-7)
/** The call does not fit the handle's state (e.g. *_resume with no step in progress). */
#define LANCBIO_ERR_INVALID_STATE (-8)
/** The handle is NULL, unknown, or already destroyed. */
#define LANCBIO_ERR_INVALID_HANDLE (-9)
/** The system refused the memory a creation (or a one-shot solve) needs: an address-space
 *  limit, no overcommit, or memory exhausted. Nothing stays allocated; steps never
 *  allocate, so they never return this. See "Memory" in the conventions. */
#define LANCBIO_ERR_OUT_OF_MEMORY (-10)
/** A checkpoint does not fit the caller's buffer: the size it needs is in *size and
 *  nothing was written (see lancbio_estimator_save). */
#define LANCBIO_ERR_BUFFER_TOO_SMALL (-11)
/** The bytes are not a checkpoint this library can read: not one at all, truncated,
 *  corrupted (checksum), of another format version or byte order, or inconsistent. */
#define LANCBIO_ERR_INVALID_CHECKPOINT (-12)

/* ---------------------------------------------------------------------------------
 * Enumerations (int32_t values)
 * -------------------------------------------------------------------------------*/
/** Estimators; docs/algorithms.md sections 3-5 give the mathematics. */
#define LANCBIO_METHOD_LANCZOS 1        /**< LancBiO dynamic Lanczos: 1 + 1/m products per step. */
#define LANCBIO_METHOD_SUBBIO 2         /**< Galerkin solve on span{b, v - theta0 A v}: 3 products. */
#define LANCBIO_METHOD_CG 3             /**< Warm-started conjugate gradients (AmIGO-CG). */
#define LANCBIO_METHOD_MINRES 4         /**< Warm-started MINRES, for symmetric indefinite A. */
#define LANCBIO_METHOD_GD 5             /**< Gradient steps v <- v - eta (A v - b) (AmIGO-GD, SOBA). */
#define LANCBIO_METHOD_NEUMANN 6        /**< Truncated Neumann series from zero (stocBiO). */
#define LANCBIO_METHOD_RANDOM_NEUMANN 7 /**< Random truncation then gradient steps (TTSA, BSA). */

#define LANCBIO_FLOAT64 1
#define LANCBIO_FLOAT32 2

/** Lanczos variants. */
#define LANCBIO_VARIANT_RESIDUAL 0 /**< The paper's: anchored at the last estimate (default). */
#define LANCBIO_VARIANT_PLAIN 1    /**< No anchor: q_1 = b / ||b||. */

/** Meaning of lancbio_step_info_t.residual. */
#define LANCBIO_RESIDUAL_UNAVAILABLE 0 /**< Not computed (Neumann series). */
#define LANCBIO_RESIDUAL_EXACT 1       /**< ||A v - b|| from this step's products. */
#define LANCBIO_RESIDUAL_RECURRENCE 2  /**< CG/MINRES recurrence: ||A v - b|| in exact arithmetic (a convergence
                                            it claims below the bound on its rounding is checked with one more
                                            product, EXACT; see residual_uncertain). */
#define LANCBIO_RESIDUAL_ESTIMATE 3    /**< Lanczos beta_j |e_j^T s|: exact only for a fixed A and b (see
                                            lancbio_step_info_t.residual_uncertain). */
#define LANCBIO_RESIDUAL_PREVIOUS 4    /**< ||A v - b|| at the iterate before the last gradient step. */

/* ---------------------------------------------------------------------------------
 * Types
 * -------------------------------------------------------------------------------*/
/** Opaque estimator handle. */
typedef struct lancbio_estimator lancbio_estimator_t;

/**
 * Product callbacks: write A * in into out (both n elements) and return 0.
 * Contract: in and out do not alias; out must be fully written; both buffers are valid
 * only during the call and must not be kept; in must not be modified. A non-zero return
 * aborts the step: the library returns LANCBIO_ERR_CALLBACK, keeps the code (see
 * lancbio_estimator_callback_status) and leaves the estimator as before the call.
 * Before each call the library stores a marker (a NaN with a payload arithmetic never
 * produces) in out[0]; a callback that returns 0 with the marker still there has written
 * nothing, and aborts the step the same way (LANCBIO_ERR_CALLBACK, callback status 0).
 * This catches a callback that never ran although its caller saw 0, as a Python ctypes
 * callback interrupted on entry (KeyboardInterrupt) returns.
 */
typedef int32_t (*lancbio_hvp_f64_t)(const double *in, double *out, int64_t n, void *user_data);
typedef int32_t (*lancbio_hvp_f32_t)(const float *in, float *out, int64_t n, void *user_data);

/** Estimator options. Fill with lancbio_estimator_options_init(), then change fields.
 *  Fields that do not apply to the chosen method are ignored. */
typedef struct lancbio_estimator_options {
    int64_t struct_size;      /**< sizeof(lancbio_estimator_options_t). */
    int32_t method;           /**< LANCBIO_METHOD_*. */
    int32_t precision;        /**< LANCBIO_FLOAT64 (default) or LANCBIO_FLOAT32. */
    /* Lanczos */
    int64_t m0;               /**< Initial restart period, 1 <= m0 <= m_max (default 1). */
    int64_t m_max;            /**< Largest period, 1..4096 (default 80); the basis holds m_max + 1 vectors. */
    double growth;            /**< Period growth factor in [1, 1e6] (default 1.1). */
    int64_t grow_every;       /**< Grow the period every this many steps, >= 1 (default 20). */
    int32_t variant;          /**< LANCBIO_VARIANT_* (default RESIDUAL). */
    int32_t reorthogonalize;  /**< Non-zero: full re-orthogonalisation (default 0). */
    /* SubBiO */
    double theta0;            /**< > 0, units of 1/eigenvalue of A. No default: 0 until set (the paper uses 1/kappa). */
    /* CG, MINRES */
    int64_t max_iterations;   /**< >= 0 (default 5, the paper's Q). */
    double tolerance;         /**< Stop when ||r|| <= tolerance ||b||, >= 0 (default 0: run max_iterations). */
    /* GD, Neumann, random Neumann */
    double step_size;         /**< eta > 0, below 2 / lambda_max(A) to converge. No default: 0 until set. */
    int64_t steps;            /**< GD: steps >= 1 (default 5); Neumann: terms >= 0 (default 10);
                                   random Neumann: maximal truncation and gradient steps >= 1 (default 10). */
    uint64_t seed;            /**< Random Neumann's generator seed (default 0). */
    /* Appended fields: a caller whose struct_size ends before one gets its default. */
    double orthogonality_tolerance; /**< Lanczos: restart a cycle early when the newest basis vector has lost
                                         orthogonality, max_i |q_i . q_{j+1}| > this; > 0 (from 1 up it never
                                         fires; INFINITY skips the check; default 1e-2). A drifting A erodes orthogonality; without this
                                         check (or reorthogonalize) long cycles can make the estimate diverge. */
    int32_t exact_residual;   /**< Lanczos: non-zero reports ||A v - b|| of each step's estimate (residual_kind
                                   EXACT) from one more product per step, instead of the estimate
                                   beta_j |e_j^T s|, which is exact only while A and b stay fixed
                                   (docs/algorithms.md section 3.6); default 0. One-shot solves ignore it. */
    int32_t reserved;         /**< Zero. */
} lancbio_estimator_options_t;

/** Diagnostics of one step. Set struct_size before passing it in. */
typedef struct lancbio_step_info {
    int64_t struct_size;      /**< sizeof(lancbio_step_info_t). */
    int32_t status;           /**< Outcome of the step: LANCBIO_OK .. LANCBIO_SINGULAR. */
    int32_t residual_kind;    /**< LANCBIO_RESIDUAL_*: what `residual` means. */
    int64_t products;         /**< Products (HVPs) used by this step. */
    int64_t total_products;   /**< Products since creation or reset. */
    int64_t iterations;       /**< Inner iterations (Lanczos: 1). */
    int64_t dimension;        /**< Lanczos: subspace dimension j; SubBiO: 1 or 2; others 0. */
    int64_t period;           /**< Lanczos: restart period m in force; others 0. */
    int64_t restarts;         /**< Lanczos: restarts since creation or reset. */
    int32_t restarted;        /**< Lanczos: 1 if this step restarted the basis. */
    int32_t breakdown;        /**< 1 if the Krylov space became invariant. */
    int32_t indefinite;       /**< 1 if non-positive curvature was met. */
    int32_t singular_fallback;/**< 1 if the least-squares fallback replaced a singular solve. */
    int32_t zero_residual;    /**< 1 if b was zero, or the residual at restart zero to working precision. */
    int32_t reserved;         /**< Zero. */
    double residual;          /**< See residual_kind (units of b). */
    double ritz_min;          /**< Smallest / largest eigenvalue of the projected matrix: */
    double ritz_max;          /**< estimates of A's extreme eigenvalues; 0 when dimension == 0. */
    /* Appended fields: written only when struct_size covers them. */
    double orthogonality_loss;     /**< Lanczos: max_i |q_i . q_{j+1}| measured this step (0 if not measured). */
    int32_t orthogonality_restart; /**< Lanczos: 1 if that loss exceeded the tolerance: the next step restarts. */
    int32_t reserved2;             /**< Zero. */
    int32_t residual_uncertain;    /**< 1 if `residual` is likely too optimistic: a CG/MINRES RECURRENCE below the
                                        bound on its rounding (docs/algorithms.md sections 5, 9), or a part of
                                        A v - b a Lanczos step measures (rounding, b outside the basis, the
                                        basis' loss of orthogonality, A's drift) above the ESTIMATE (section
                                        3.6; exact_residual gives the true figure). Never 1 for EXACT. */
    int32_t reserved3;             /**< Zero. */
    int64_t reductions;            /**< Calls of the reduction callback this step made (0 without one; see
                                        lancbio_estimator_set_reduction and docs/algorithms.md section 13). */
} lancbio_step_info_t;

/* ---------------------------------------------------------------------------------
 * Library
 * -------------------------------------------------------------------------------*/
/** The library's ABI version; equals LANCBIO_ABI_VERSION of the header it was built with. */
int32_t lancbio_abi_version(void);
/** The package version, e.g. "0.1.0" (static string). */
const char *lancbio_version(void);
/** A static description of a status code ("unknown status" for others). */
const char *lancbio_status_string(int32_t status);
/** The message of the last failed call on this thread that has no handle to hold it:
 *  lancbio_estimator_options_init, lancbio_estimator_create, lancbio_bilevel_options_init,
 *  lancbio_bilevel_create, lancbio_solve_f64, lancbio_solve_f32, lancbio_solve_reduced_f64,
 *  lancbio_solve_reduced_f32, lancbio_estimator_restore
 *  and lancbio_bilevel_restore. "" when the last
 *  such call on this thread succeeded (or there was none). Owned by the library (one
 *  buffer per thread), valid until the thread's next such call. */
const char *lancbio_last_error(void);

/* ---------------------------------------------------------------------------------
 * Estimators
 * -------------------------------------------------------------------------------*/
/**
 * Fills *options with the defaults of `method` and struct_size = sizeof(*options).
 * @param[out] options  Written.
 * @param[in]  method   LANCBIO_METHOD_*.
 * @return LANCBIO_OK, LANCBIO_ERR_NULL_POINTER, LANCBIO_ERR_INVALID_ARGUMENT (unknown method).
 */
int32_t lancbio_estimator_options_init(lancbio_estimator_options_t *options, int32_t method);

/**
 * Creates an estimator of dimension n with the estimate v = 0. All storage is allocated
 * here (Lanczos: about (m_max + 7) n values plus (m_max + 1)^2 doubles for the small
 * projected system); if it cannot be, creation fails with LANCBIO_ERR_OUT_OF_MEMORY
 * instead of aborting (see "Memory" above).
 * @param[in]  n        Dimension, >= 1.
 * @param[in]  options  Options (struct_size set); read during the call only.
 * @param[out] out      Receives the handle (NULL on failure).
 * @return LANCBIO_OK, LANCBIO_ERR_NULL_POINTER, LANCBIO_ERR_INVALID_ARGUMENT (including
 *         storage beyond 2^46 bytes), LANCBIO_ERR_OUT_OF_MEMORY.
 */
int32_t lancbio_estimator_create(int64_t n, const lancbio_estimator_options_t *options, lancbio_estimator_t **out);

/** Destroys a handle; NULL and unknown handles are ignored. */
void lancbio_estimator_destroy(lancbio_estimator_t *h);

/** Back to the state after creation: v = 0, counters zero, schedules and seeds restarted.
 *  @return LANCBIO_OK or LANCBIO_ERR_INVALID_HANDLE. */
int32_t lancbio_estimator_reset(lancbio_estimator_t *h);

/** Message describing the last error on h ("" if the last call succeeded). Owned by the
 *  handle, valid until the next call on h. A static message for an invalid handle. */
const char *lancbio_estimator_last_error(const lancbio_estimator_t *h);

/** The non-zero code returned by the callback that aborted the last call on h, else 0. */
int32_t lancbio_estimator_callback_status(const lancbio_estimator_t *h);

/**
 * A reduction callback: replaces values[0 .. count) by their sums over all processes (an
 * all-reduce with a sum, e.g. MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE,
 * MPI_SUM, comm)) and returns 0. Non-zero aborts the step like a product callback's
 * (LANCBIO_ERR_CALLBACK, the code in lancbio_estimator_callback_status). The buffer is
 * valid only during the call.
 */
typedef int32_t (*lancbio_reduce_t)(double *values, int64_t count, void *user_data);

/**
 * Makes the handle's vectors this process's slice of vectors held across processes (its
 * n the local length; slices may differ), with `reduce` summing over all of them; NULL
 * goes back to one process. Collective: every process calls it, and from then on every
 * process makes the same calls (steps, resumes, set_estimate) on its handle.
 *
 * Each step computes its inner products and norms as local partial sums and reduces them
 * in as few calls as the algebra allows: Lanczos 2 per step (alpha, with b's norm and
 * finiteness riding along; then beta, the projection and orthogonality sums fused; 1 more
 * at a restart, with exact_residual, or per re-orthogonalisation pass); the other methods
 * 1 for b, then CG 1 plus 2 per iteration, GD 1 per step, Neumann 1 per term plus 1. A b
 * that is not finite on some process fails the step on every process (for Lanczos after
 * its first product). info.reductions counts
 * them. Every decision (restart, breakdown, convergence, the projected solve) is made from
 * reduced values, so all processes hold bitwise the same scalars. Norms stay overflow-safe
 * (a reduced sum of squares out of range is redone with two more reductions at a common
 * scale). A product callback failing on one process makes every process's step fail at
 * its next reduction (that process returns its own error, the others
 * LANCBIO_ERR_CALLBACK), each handle as before the step: each reduction carries, as one
 * more value, the number of processes whose product failed. In reverse communication a
 * process whose product failed writes NaN into it and resumes: every process then fails
 * with LANCBIO_ERR_NON_FINITE_PRODUCT.
 *
 * This call reduces once itself (the slices' lengths: a Krylov space has at most their
 * sum of dimensions). user_data is passed to every call and must stay valid while the
 * callback is set (the only caller pointer the library keeps, by the caller's choice).
 * @return LANCBIO_OK, LANCBIO_ERR_INVALID_HANDLE, LANCBIO_ERR_INVALID_ARGUMENT (SubBiO and
 *         MINRES do not support it), LANCBIO_ERR_INVALID_STATE (during a step),
 *         LANCBIO_ERR_CALLBACK (the reduction failed), LANCBIO_ERR_OUT_OF_MEMORY; on an
 *         error the handle is unchanged.
 */
int32_t lancbio_estimator_set_reduction(lancbio_estimator_t *h, lancbio_reduce_t reduce, void *user_data);

/**
 * The reductions of lancbio_estimator_set_reduction by reverse communication, for a
 * collective that cannot be called from inside the library (an asynchronous all-reduce, a
 * GPU stream, an event loop): the vectors are this process's slices as there, and
 * lancbio_estimator_begin_* and lancbio_estimator_resume_* (and
 * lancbio_estimator_resume_reduction_*) may return LANCBIO_NEED_REDUCTION. The caller then
 * copies the values with lancbio_estimator_reduction_values, sums each over all processes
 * (as MPI_Allreduce with MPI_SUM), and passes the sums to lancbio_estimator_resume_reduction_*,
 * which continues the step: it returns LANCBIO_NEED_PRODUCT (the request buffer given to
 * it holds the vector to multiply), LANCBIO_NEED_REDUCTION again, or the step's outcome.
 * The reductions are the same, in the same order, as with a callback, so every process
 * sees the same sequence of statuses. lancbio_estimator_set_v_* checks v on this process
 * only in this mode (no reduction to hand back outside a step): call it alike everywhere.
 * lancbio_estimator_cancel abandons the step, pending reduction included, and so does
 * lancbio_estimator_destroy; in a forked child the pending reduction can only be cancelled
 * (its step stayed with the parent's thread). The callback-driven lancbio_estimator_step_* is refused
 * (LANCBIO_ERR_INVALID_STATE), and so is every call but the reduction ones, cancel and the
 * read-only ones while a reduction is pending.
 *
 * @param total_n  the sum of the slices' lengths over all processes (>= n), which
 *                 lancbio_estimator_set_reduction would have reduced itself.
 * Starts a thread on which this handle's begin and resume then run (the caller waits for
 * it: one thread runs at a time), so that a reduction deep inside a step can return to
 * the caller and resume there later; it ends with the handle. Not collective.
 * @return LANCBIO_OK, LANCBIO_ERR_INVALID_HANDLE, LANCBIO_ERR_INVALID_ARGUMENT (total_n < n;
 *         SubBiO and MINRES), LANCBIO_ERR_INVALID_STATE (during a step),
 *         LANCBIO_ERR_OUT_OF_MEMORY (the thread could not be started); on an error the
 *         handle is unchanged.
 */
int32_t lancbio_estimator_set_reverse_reduction(lancbio_estimator_t *h, int64_t total_n);

/**
 * On LANCBIO_NEED_REDUCTION: copies this process's values to sum into `values` (capacity
 * at least the count; 2 m_max + 5 always suffices) and stores their count in *count.
 * @return LANCBIO_OK, LANCBIO_ERR_INVALID_HANDLE, LANCBIO_ERR_NULL_POINTER,
 *         LANCBIO_ERR_INVALID_ARGUMENT (capacity too small), LANCBIO_ERR_INVALID_STATE (no
 *         reduction pending).
 */
int32_t lancbio_estimator_reduction_values(lancbio_estimator_t *h, double *values, int64_t capacity, int64_t *count);

/**
 * Continues the step with `sums` (count values: the pending reduction's values summed over
 * all processes); `request` (n values) receives the next vector on LANCBIO_NEED_PRODUCT.
 * @return as lancbio_estimator_resume_f64; LANCBIO_ERR_INVALID_STATE (no reduction
 *         pending), LANCBIO_ERR_INVALID_ARGUMENT (a count that is not the pending one: the
 *         reduction stays pending).
 */
int32_t lancbio_estimator_resume_reduction_f64(lancbio_estimator_t *h, const double *sums, int64_t count,
                                               double *request, int64_t n);
int32_t lancbio_estimator_resume_reduction_f32(lancbio_estimator_t *h, const double *sums, int64_t count,
                                               float *request, int64_t n);

/**
 * Reads the handle's fixed properties. Any output pointer may be NULL.
 * @param[out] n          Dimension.
 * @param[out] method     LANCBIO_METHOD_*.
 * @param[out] precision  LANCBIO_FLOAT64 or LANCBIO_FLOAT32.
 * @return LANCBIO_OK or LANCBIO_ERR_INVALID_HANDLE.
 */
int32_t lancbio_estimator_properties(const lancbio_estimator_t *h, int64_t *n, int32_t *method, int32_t *precision);

/** Copies the diagnostics of the last completed step (all zero before the first).
 *  @return LANCBIO_OK, LANCBIO_ERR_INVALID_HANDLE, LANCBIO_ERR_NULL_POINTER,
 *  LANCBIO_ERR_INVALID_ARGUMENT (struct_size too small). */
int32_t lancbio_estimator_info(const lancbio_estimator_t *h, lancbio_step_info_t *info);

/**
 * One step with products from a callback: computes the new estimate v_{k+1} of A^{-1} b,
 * commits it, and copies it into v.
 * @param[in]  hvp        Product callback (see lancbio_hvp_f64_t).
 * @param[in]  user_data  Passed to hvp unchanged.
 * @param[in]  b          Right-hand side, n values, finite. Read in place while the step
 *                        runs (not copied): nothing (the callback, another thread) may
 *                        change it until the call returns.
 * @param[out] v          Receives the estimate, n values; may alias b (written last).
 * @param[in]  n          Must equal the handle's dimension.
 * @param[out] info       Step diagnostics, or NULL.
 * @return The step's outcome (LANCBIO_OK .. LANCBIO_SINGULAR), or an error: then v and
 *         info are untouched and the estimator is as before the call.
 */
int32_t lancbio_estimator_step_f64(lancbio_estimator_t *h, lancbio_hvp_f64_t hvp, void *user_data,
                                   const double *b, double *v, int64_t n, lancbio_step_info_t *info);
int32_t lancbio_estimator_step_f32(lancbio_estimator_t *h, lancbio_hvp_f32_t hvp, void *user_data,
                                   const float *b, float *v, int64_t n, lancbio_step_info_t *info);

/**
 * Reverse communication: starts a step with right-hand side b (copied).
 * @param[in]  b        n values, finite.
 * @param[out] request  n values: on LANCBIO_NEED_PRODUCT, the vector x whose product A x
 *                      must be passed to *_resume.
 * @return LANCBIO_NEED_PRODUCT; a final outcome (>= 0, the step completed without any
 *         product, e.g. b = 0); or an error, after which the handle is as before the call
 *         (LANCBIO_ERR_INVALID_STATE if a step is already in progress: that step goes on).
 */
int32_t lancbio_estimator_begin_f64(lancbio_estimator_t *h, const double *b, double *request, int64_t n);
int32_t lancbio_estimator_begin_f32(lancbio_estimator_t *h, const float *b, float *request, int64_t n);

/**
 * Reverse communication: continues the step with product = A x for the last request.
 * @param[in]  product  n values; may be the request buffer itself (an in-place product):
 *                      the product is read before the next request is written.
 * @param[out] request  n values: on LANCBIO_NEED_PRODUCT, the next vector to multiply.
 * @return LANCBIO_NEED_PRODUCT; a final outcome (the estimate is committed: read it with
 *         *_get_v and the diagnostics with lancbio_estimator_info); or an error. Argument
 *         errors (NULL pointers, wrong n, wrong precision) change nothing: the step stays in
 *         progress and can be resumed correctly. Any other error (a non-finite product,
 *         overflow) abandons the step: the estimator is as before *_begin.
 */
int32_t lancbio_estimator_resume_f64(lancbio_estimator_t *h, const double *product, double *request, int64_t n);
int32_t lancbio_estimator_resume_f32(lancbio_estimator_t *h, const float *product, float *request, int64_t n);

/** Abandons a reverse-communication step in progress (no effect if none).
 *  @return LANCBIO_OK or LANCBIO_ERR_INVALID_HANDLE. */
int32_t lancbio_estimator_cancel(lancbio_estimator_t *h);

/** Copies the committed estimate into v (n values).
 *  @return LANCBIO_OK or an error. */
int32_t lancbio_estimator_get_v_f64(const lancbio_estimator_t *h, double *v, int64_t n);
int32_t lancbio_estimator_get_v_f32(const lancbio_estimator_t *h, float *v, int64_t n);

/** Replaces the committed estimate (a warm start; Lanczos restarts from it at its next step).
 *  @return LANCBIO_OK or an error (LANCBIO_ERR_NON_FINITE_INPUT, ..._INVALID_STATE during a step). */
int32_t lancbio_estimator_set_v_f64(lancbio_estimator_t *h, const double *v, int64_t n);
int32_t lancbio_estimator_set_v_f32(lancbio_estimator_t *h, const float *v, int64_t n);


/* ---------------------------------------------------------------------------------
 * One-shot solves
 *
 * A x = b for a fixed symmetric A, to a tolerance, with the loop in the library: the
 * method run until ||A x - b|| <= tolerance ||b|| or the budget is spent, and the answer
 * checked with one more product (the true residual, never a recurrence's). Lanczos runs
 * the short-recurrence (D-Lanczos) form: no stored basis, O(n) memory, CG's products;
 * it checks the truth whenever its estimate meets the tolerance and restarts from the
 * current x if the check fails (with reorthogonalize it keeps a basis of
 * min(max_iterations, n, 4096) columns instead). CG and MINRES run one step of
 * max_iterations iterations; GD and Neumann take max_iterations steps or terms. The
 * answer is the best checked iterate (x0 = 0 included).
 * -------------------------------------------------------------------------------*/
/** How a one-shot solve went. */
typedef struct lancbio_solve_result {
    int64_t struct_size;  /**< sizeof(lancbio_solve_result_t). */
    int32_t converged;    /**< 1 when ||A x - b|| <= tolerance ||b|| for the returned x. */
    int32_t reserved;     /**< Zero. */
    int64_t products;     /**< Products used, the residual checks included. */
    int64_t iterations;   /**< Lanczos steps, CG/MINRES iterations, gradient steps or Neumann terms. */
    double residual;      /**< ||A x - b|| of the returned x, from one product (units of b). */
    double rhs_norm;      /**< ||b||. */
    /* Appended fields: written only when struct_size covers them. */
    int64_t reductions;   /**< Calls of the reduction callback (lancbio_solve_reduced_*; 0 without one). */
} lancbio_solve_result_t;

/**
 * Solves A x = b (n x n, symmetric, by products) with one method. Allocates for the call
 * (Lanczos: eight n-vectors; the others: the estimator's storage and three n-vectors) and
 * frees before returning.
 * @param[in]     options         LANCBIO_METHOD_LANCZOS (reorthogonalize, and with it
 *                                orthogonality_tolerance, are used; the variant must be
 *                                LANCBIO_VARIANT_RESIDUAL, as restarts must keep the
 *                                progress made), _CG, _MINRES, _GD or
 *                                _NEUMANN (step_size is used, and must be set); the
 *                                budget and tolerance fields are replaced by the arguments
 *                                below; precision must match the function. SubBiO and the
 *                                random Neumann series are rejected. Read during the call.
 * @param[in]     hvp             Product callback, as for lancbio_estimator_step_f64.
 * @param[in]     user_data       Passed to hvp.
 * @param[in]     b               n values, finite.
 * @param[in,out] x               n values: the initial guess on entry (zero for Neumann),
 *                                the solution on success; unchanged on error.
 * @param[in]     n               Dimension, >= 1.
 * @param[in]     tolerance       Relative tolerance, finite, >= 0 (scipy's rtol).
 * @param[in]     max_iterations  Budget, 1 .. 2^30, or 0 for the default 10 n: CG/MINRES
 *                                iterations, gradient steps or Neumann terms, or for
 *                                Lanczos products (it stops at the first step whose
 *                                products reach the budget, a restart's anchor product
 *                                included); the final residual check adds one product,
 *                                and CG/MINRES one more for their initial residual
 *                                (scipy's maxiter).
 * @param[out]    result          Written on success (may be NULL); the caller sets its
 *                                struct_size, as for every output struct.
 * @param[out]    last_step       The estimator's last step info (may be NULL).
 * @return LANCBIO_OK (converged), LANCBIO_BUDGET_REACHED (a usable x that misses the
 *         tolerance), LANCBIO_INDEFINITE or LANCBIO_SINGULAR (not converged, and the last
 *         step met that), or an error (LANCBIO_ERR_OUT_OF_MEMORY when the storage cannot be
 *         allocated: hvp is then never called); lancbio_last_error() says why.
 */
int32_t lancbio_solve_f64(const lancbio_estimator_options_t *options, lancbio_hvp_f64_t hvp, void *user_data,
                          const double *b, double *x, int64_t n, double tolerance, int64_t max_iterations,
                          lancbio_solve_result_t *result, lancbio_step_info_t *last_step);
int32_t lancbio_solve_f32(const lancbio_estimator_options_t *options, lancbio_hvp_f32_t hvp, void *user_data,
                          const float *b, float *x, int64_t n, double tolerance, int64_t max_iterations,
                          lancbio_solve_result_t *result, lancbio_step_info_t *last_step);

/**
 * lancbio_solve_f64 / _f32 with b, x and the products this process's slices (n its local
 * length, >= 1; slices may differ) of vectors held across processes, and `reduce` summing
 * values over all of them (as for lancbio_estimator_set_reduction). Collective: every
 * process calls it with the same options, tolerance and max_iterations.
 *
 * Every norm and inner product is reduced, every decision (convergence, restart,
 * breakdown, zero pivot, the best iterate) taken on reduced values, so every process takes
 * the same branches and gets bitwise the same result and last_step. Reductions: 1 for the
 * setup (the slices' lengths, ||b|| and b's finiteness, x0's finiteness and whether it is
 * zero everywhere), then Lanczos 2 per step (alpha; beta) and 1 per residual check; the
 * other methods 1 more for their setup, their estimator steps' own (last_step->reductions)
 * and 1 per check; 2 more for each norm whose reduced sum of squares is out of range
 * (docs/algorithms.md section 13). result->reductions counts them. max_iterations 0 is
 * 10 N for the total dimension N, and with reorthogonalize the basis has min(budget, N,
 * 4096) columns of n values. MINRES is not supported (LANCBIO_ERR_INVALID_ARGUMENT,
 * before any reduction).
 *
 * A product callback failing on one process (or an allocation the system refuses) fails
 * the call on every process at the next reduction: that process returns its own error,
 * the others LANCBIO_ERR_CALLBACK; x is unchanged everywhere. A failing reduce aborts with
 * LANCBIO_ERR_CALLBACK (lancbio_last_error() gives its code).
 * @param[in] reduce       Reduction callback; not NULL.
 * @param[in] reduce_data  Passed to reduce; used during the call only.
 * The other parameters and the return value are lancbio_solve_f64's.
 */
int32_t lancbio_solve_reduced_f64(const lancbio_estimator_options_t *options, lancbio_hvp_f64_t hvp, void *user_data,
                                  lancbio_reduce_t reduce, void *reduce_data, const double *b, double *x, int64_t n,
                                  double tolerance, int64_t max_iterations, lancbio_solve_result_t *result,
                                  lancbio_step_info_t *last_step);
int32_t lancbio_solve_reduced_f32(const lancbio_estimator_options_t *options, lancbio_hvp_f32_t hvp, void *user_data,
                                  lancbio_reduce_t reduce, void *reduce_data, const float *b, float *x, int64_t n,
                                  double tolerance, int64_t max_iterations, lancbio_solve_result_t *result,
                                  lancbio_step_info_t *last_step);


/* ---------------------------------------------------------------------------------
 * Bilevel optimizers (float64)
 *
 * The outer loop of every method: T inner steps on y, v from an estimator, then
 *   x <- x - lambda_k (grad_x f(x, y) - grad^2_xy g(x, y) v).
 * The method is the estimator (LANCBIO_METHOD_LANCZOS for LancBiO, _SUBBIO, _CG for
 * AmIGO-CG, _GD for AmIGO-GD and SOBA, _NEUMANN for stocBiO, _RANDOM_NEUMANN for TTSA and
 * BSA) plus these options.
 * -------------------------------------------------------------------------------*/
/** Opaque bilevel optimizer handle. */
typedef struct lancbio_bilevel lancbio_bilevel_t;

/** A gradient callback: writes a gradient evaluated at (x, y) into out (dx or dy values,
 *  see lancbio_problem_f64_t) and returns 0. Same contract as lancbio_hvp_f64_t: no
 *  aliasing, out fully written (out[0] is checked against the marker), buffers valid only
 *  during the call, non-zero aborts. */
typedef int32_t (*lancbio_gradient_f64_t)(const double *x, int64_t dx, const double *y, int64_t dy,
                                          double *out, void *user_data);
/** A product callback: writes a second-derivative product with v (dy values) at (x, y)
 *  into out, and returns 0. */
typedef int32_t (*lancbio_product_f64_t)(const double *x, int64_t dx, const double *y, int64_t dy,
                                         const double *v, double *out, void *user_data);

/** A bilevel problem min_x f(x, y*(x)), y*(x) = argmin_y g(x, y): five callbacks sharing
 *  one user_data. Passed to every step; never kept by the library. */
typedef struct lancbio_problem_f64 {
    int64_t struct_size;               /**< sizeof(lancbio_problem_f64_t). */
    void *user_data;                   /**< Passed to every callback. */
    lancbio_gradient_f64_t grad_y_g;   /**< grad_y g(x, y): dy values. */
    lancbio_gradient_f64_t grad_x_f;   /**< grad_x f(x, y): dx values. */
    lancbio_gradient_f64_t grad_y_f;   /**< grad_y f(x, y): dy values. */
    lancbio_product_f64_t hvp_yy_g;    /**< grad^2_yy g(x, y) v: dy values. */
    lancbio_product_f64_t jvp_xy_g;    /**< grad^2_xy g(x, y) v: dx values. */
} lancbio_problem_f64_t;

/** Outer-loop options; fill with lancbio_bilevel_options_init(). At iteration k = 1, 2, ...
 *  lambda_k = max(lr_x_min, lr_x / k^lr_x_decay), theta_k = max(lr_y_min, lr_y / k^lr_y_decay),
 *  or with lr_y_auto theta_k = 1 / (an estimate of lambda_max of grad^2_yy g). */
typedef struct lancbio_bilevel_options {
    int64_t struct_size;   /**< sizeof(lancbio_bilevel_options_t). */
    double lr_x;           /**< lambda > 0. No default: 0 until set. */
    double lr_y;           /**< theta > 0. No default: 0 until set (may stay 0 with lr_y_auto). */
    double lr_x_decay;     /**< b >= 0 (default 0: constant). */
    double lr_x_min;       /**< >= 0 (default 0). */
    double lr_y_decay;     /**< a >= 0 (default 0). */
    double lr_y_min;       /**< >= 0 (default 0). */
    int64_t inner_steps;   /**< T >= 0 (default 5). */
    int64_t lr_y_auto;     /**< Non-zero: theta_k = 1 / lambda, lambda the largest Ritz value of the estimator's
                                steps since creation or reset (a lower bound of lambda_max), raised to 2 / theta
                                when an inner step makes ||grad_y g|| grow (that step is then retaken with the
                                halved theta); lr_y, lr_y_decay and lr_y_min are ignored. Iteration 1 makes no
                                inner step (no estimate yet). Needs LANCBIO_METHOD_LANCZOS or _SUBBIO. Default 0. */
} lancbio_bilevel_options_t;

/** Diagnostics of one outer iteration. Set struct_size before passing it in. */
typedef struct lancbio_bilevel_info {
    int64_t struct_size;          /**< sizeof(lancbio_bilevel_info_t). */
    int64_t iteration;            /**< Outer iterations completed, including this one. */
    int64_t products;             /**< HVPs used by this iteration. */
    int64_t total_products;       /**< HVPs since creation or reset. */
    int64_t gradient_evaluations; /**< T + 2 (grad_y g T times, grad_y f, grad_x f). */
    int64_t cross_products;       /**< J v products (1). */
    double hypergradient_norm;    /**< ||grad_x f - J v|| of this iteration. */
    double lr_x;                  /**< lambda_k used. */
    double lr_y;                  /**< theta_k used. */
    int32_t estimator_status;     /**< The estimator's outcome (LANCBIO_OK .. LANCBIO_SINGULAR). */
    int32_t reserved;             /**< Zero. */
    double curvature;             /**< With lr_y_auto: the estimate of lambda_max of grad^2_yy g after this
                                       iteration (the next theta is 1 / curvature); 0 otherwise. */
} lancbio_bilevel_info_t;

/** Fills *options with the defaults (lr_x = lr_y = 0: must be set).
 *  @return LANCBIO_OK or LANCBIO_ERR_NULL_POINTER. */
int32_t lancbio_bilevel_options_init(lancbio_bilevel_options_t *options);

/** lambda_k and theta_k of outer iteration k >= 1 under `options` (the schedule above;
 *  theta_k = 0 with lr_y_auto, whose theta comes from the estimator's curvature), for
 *  outer loops written outside the library that follow its schedule.
 *  @return LANCBIO_OK, LANCBIO_ERR_NULL_POINTER, LANCBIO_ERR_INVALID_ARGUMENT (options out of
 *          range, k < 1; see lancbio_last_error()). */
int32_t lancbio_bilevel_step_sizes(const lancbio_bilevel_options_t *options, int64_t iteration, double *lr_x,
                                   double *lr_y);

/**
 * Creates a bilevel optimizer with v = 0, allocating all its storage (the estimator's,
 * and three vectors each of dx and dy values).
 * @param[in]  dx, dy     Dimensions of x and y, >= 1.
 * @param[in]  options    Outer-loop options.
 * @param[in]  estimator  The estimator of v (precision must be LANCBIO_FLOAT64).
 * @param[out] out        Receives the handle (NULL on failure).
 * @return LANCBIO_OK, LANCBIO_ERR_NULL_POINTER, LANCBIO_ERR_INVALID_ARGUMENT,
 *         LANCBIO_ERR_OUT_OF_MEMORY.
 */
int32_t lancbio_bilevel_create(int64_t dx, int64_t dy, const lancbio_bilevel_options_t *options,
                               const lancbio_estimator_options_t *estimator, lancbio_bilevel_t **out);

/** Destroys a handle; NULL and unknown handles are ignored. */
void lancbio_bilevel_destroy(lancbio_bilevel_t *h);

/** Back to the state after creation (v = 0, counters zero).
 *  @return LANCBIO_OK or LANCBIO_ERR_INVALID_HANDLE. */
int32_t lancbio_bilevel_reset(lancbio_bilevel_t *h);

/** Message of the last error on h ("" after a success); valid until the next call on h. */
const char *lancbio_bilevel_last_error(const lancbio_bilevel_t *h);

/** The non-zero code returned by the callback that aborted the last call on h, else 0. */
int32_t lancbio_bilevel_callback_status(const lancbio_bilevel_t *h);

/**
 * One outer iteration on the caller's x and y, updated in place.
 * @param[in]     problem  The callbacks (struct_size set).
 * @param[in,out] x        dx values, finite.
 * @param[in,out] y        dy values, finite.
 * @param[out]    info     Diagnostics, or NULL.
 * @return LANCBIO_OK or the estimator's caveat (> 0), or an error: then x, y, info and the
 *         optimizer are exactly as before the call. A callback returning non-zero, or 0
 *         without writing out (see lancbio_hvp_f64_t), gives LANCBIO_ERR_CALLBACK (its code,
 *         0 for an unwritten output, in lancbio_bilevel_callback_status, its name in the
 *         message); NaN or infinity from a callback gives LANCBIO_ERR_NON_FINITE_PRODUCT.
 */
int32_t lancbio_bilevel_step_f64(lancbio_bilevel_t *h, const lancbio_problem_f64_t *problem,
                                 double *x, int64_t dx, double *y, int64_t dy, lancbio_bilevel_info_t *info);

/** Diagnostics of the last iteration (all zero before the first).
 *  @return LANCBIO_OK or an error. */
int32_t lancbio_bilevel_info(const lancbio_bilevel_t *h, lancbio_bilevel_info_t *info);

/** The estimator's diagnostics for the last iteration's v. @return LANCBIO_OK or an error. */
int32_t lancbio_bilevel_estimator_info(const lancbio_bilevel_t *h, lancbio_step_info_t *info);

/** Copies the last v (dy values). @return LANCBIO_OK or an error. */
int32_t lancbio_bilevel_get_v_f64(const lancbio_bilevel_t *h, double *v, int64_t dy);

/** Replaces v (a warm start for the next iteration). @return LANCBIO_OK or an error. */
int32_t lancbio_bilevel_set_v_f64(lancbio_bilevel_t *h, const double *v, int64_t dy);

/** Copies the last hyper-gradient estimate grad_x f - J v (dx values). @return LANCBIO_OK or an error. */
int32_t lancbio_bilevel_get_hypergradient_f64(const lancbio_bilevel_t *h, double *g, int64_t dx);

/**
 * Slices y across processes, x replicated (docs/algorithms.md section 13): dy, y, v and
 * what the y-side callbacks (grad_y_g, grad_y_f, hvp_yy_g) read and write are this
 * process's slice (slices may differ in length), x and grad_x_f's and jvp_xy_g's outputs
 * have dx values, the latter two this process's contributions to sums. The callbacks do
 * their own communication. Each iteration reduces, through `reduce` (NULL removes it;
 * the same callback type as lancbio_estimator_set_reduction): once to agree that every
 * process's inner steps, b and grad_x f succeeded, then the estimator's reductions (it
 * gets the same callback), then once the dx contributions grad_x f - J v to the
 * hyper-gradient with the failure count. Every process makes the same callback calls in
 * the same order whatever fails locally; a callback failing (non-zero, NaN) on one
 * process fails the iteration on every process, each optimizer, x and y as before it
 * (that process returns its own error, the others LANCBIO_ERR_CALLBACK). Collective, like
 * every later step: this call reduces once (the estimator's lengths). Not with
 * lr_y_auto. user_data must stay valid while the callback is set.
 * @return LANCBIO_OK, LANCBIO_ERR_INVALID_HANDLE, LANCBIO_ERR_INVALID_ARGUMENT (lr_y_auto, or
 *         an estimator method without reductions: SubBiO), LANCBIO_ERR_INVALID_STATE (during
 *         a step), LANCBIO_ERR_CALLBACK, LANCBIO_ERR_OUT_OF_MEMORY; on an error the handle is
 *         unchanged.
 */
int32_t lancbio_bilevel_set_reduction(lancbio_bilevel_t *h, lancbio_reduce_t reduce, void *user_data);

/* ---------------------------------------------------------------------------------
 * Checkpoints
 *
 * The committed state of a handle as bytes, to resume a long run later, elsewhere in the
 * process or in another process on a machine of the same byte order. A handle restored
 * from a checkpoint (or loaded with one) takes bitwise the steps the saved handle would
 * have taken next: the same estimates, diagnostics and products requested.
 *
 * What is saved: the dimension(s), the method and every option (so that *_restore needs
 * nothing else), the committed estimate v, the counters and the last step's diagnostics,
 * and each method's own state: for Lanczos the restart schedule's position (step count,
 * period, restarts, restart flag) and, unless the next step restarts anyway, the live
 * cycle (alpha, beta, the Ritz bounds, q_1 .. q_{j+1}, the anchor and its product); for
 * random Neumann the generator's position; CG, MINRES, GD, Neumann and SubBiO carry
 * nothing between steps beyond v. A bilevel checkpoint adds the iteration count, the
 * totals, the last iteration's diagnostics and the hyper-gradient; x and y stay the
 * caller's (each step updates them in place): save them alongside. Only committed state
 * is saved: save and load refuse a handle with a reverse-communication step in progress
 * (LANCBIO_ERR_INVALID_STATE; finish or cancel it first), and so does every call from
 * inside the handle's own callbacks.
 *
 * Format (version 1; docs/algorithms.md section 12): 8-byte fields in the byte order of
 * the machine that wrote them: the magic "LBIOCKPT", a byte-order mark, the format
 * version, the total size, the kind (estimator or bilevel), the precision, the
 * configuration (n or dx and dy, the method and its options), the state, and a 64-bit
 * checksum (FNV-1a in four byte lanes) of every byte before it. Loading checks, in order,
 * the magic, byte order, version, exact size and checksum, then every recorded value's
 * range, before anything is allocated or changed: any truncation, any single corrupted
 * byte, another version or byte order gives LANCBIO_ERR_INVALID_CHECKPOINT with a message
 * saying which. Dimensions are bounded by the bytes present, and a restore allocates what
 * *_create would for the recorded dimensions and options. Costs are linear in the bytes.
 * -------------------------------------------------------------------------------*/
/**
 * Writes a checkpoint of the estimator's committed state into buffer.
 * The size depends on the state (Lanczos: on the current subspace dimension): a call with
 * buffer = NULL and capacity = 0 asks for it without writing anything.
 * @param[out] buffer    capacity bytes, any alignment; or NULL with capacity 0 (a query).
 * @param[in]  capacity  Bytes available at buffer, >= 0.
 * @param[out] size      Receives the checkpoint's size in bytes: written on LANCBIO_OK
 *                       (bytes written, or needed for a query) and on
 *                       LANCBIO_ERR_BUFFER_TOO_SMALL (bytes needed).
 * @return LANCBIO_OK; LANCBIO_ERR_BUFFER_TOO_SMALL (capacity < the size: nothing written);
 *         LANCBIO_ERR_INVALID_STATE (a step is in progress); LANCBIO_ERR_NULL_POINTER
 *         (size NULL, or buffer NULL with capacity > 0); LANCBIO_ERR_INVALID_ARGUMENT
 *         (capacity < 0); LANCBIO_ERR_INVALID_HANDLE. The handle never changes.
 */
int32_t lancbio_estimator_save(const lancbio_estimator_t *h, void *buffer, int64_t capacity, int64_t *size);

/**
 * Creates an estimator from a checkpoint: the dimension, method, options and precision
 * recorded in it, in the recorded state.
 * @param[in]  buffer  The size bytes lancbio_estimator_save wrote; read during the call only.
 * @param[in]  size    Exactly the checkpoint's size in bytes.
 * @param[out] out     Receives the handle (NULL on failure).
 * @return LANCBIO_OK; LANCBIO_ERR_INVALID_CHECKPOINT; LANCBIO_ERR_INVALID_ARGUMENT (size < 0,
 *         a bilevel checkpoint, or its storage cannot be allocated); LANCBIO_ERR_NULL_POINTER.
 *         lancbio_last_error() says why.
 */
int32_t lancbio_estimator_restore(const void *buffer, int64_t size, lancbio_estimator_t **out);

/**
 * Replaces the estimator's state with a checkpoint's. The checkpoint must be of this
 * handle's precision, dimension and method with the same options (a checkpoint of this
 * very handle always is). On any error the handle is exactly as before.
 * @param[in] buffer  The size bytes lancbio_estimator_save wrote; read during the call only.
 * @param[in] size    Exactly the checkpoint's size in bytes.
 * @return LANCBIO_OK; LANCBIO_ERR_INVALID_CHECKPOINT; LANCBIO_ERR_WRONG_PRECISION;
 *         LANCBIO_ERR_INVALID_ARGUMENT (size < 0, another dimension, method or options, a
 *         bilevel checkpoint); LANCBIO_ERR_INVALID_STATE (a step is in progress);
 *         LANCBIO_ERR_NULL_POINTER; LANCBIO_ERR_INVALID_HANDLE.
 */
int32_t lancbio_estimator_load(lancbio_estimator_t *h, const void *buffer, int64_t size);

/** lancbio_estimator_save for a bilevel optimizer: the outer loop's state and its
 *  estimator's (x and y are the caller's). Same arguments and statuses. */
int32_t lancbio_bilevel_save(const lancbio_bilevel_t *h, void *buffer, int64_t capacity, int64_t *size);

/** lancbio_estimator_restore for a bilevel optimizer: dx, dy, the outer-loop options and
 *  the estimator's from the checkpoint. Same statuses (an estimator's checkpoint is
 *  LANCBIO_ERR_INVALID_ARGUMENT). */
int32_t lancbio_bilevel_restore(const void *buffer, int64_t size, lancbio_bilevel_t **out);

/** lancbio_estimator_load for a bilevel optimizer: the checkpoint must have this handle's
 *  dx, dy, outer-loop options and estimator options. Same statuses; on any error the
 *  handle is exactly as before. */
int32_t lancbio_bilevel_load(lancbio_bilevel_t *h, const void *buffer, int64_t size);

#ifdef __cplusplus
}
#endif

#endif /* LANCBIO_H */
