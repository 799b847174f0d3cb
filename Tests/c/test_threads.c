/*
 * test_threads.c: independent handles used concurrently from several threads
 * (`make test-threads`; also run under sanitizers and valgrind by `make check`).
 *
 * THREADS worker threads each own HANDLES estimator handles (all seven methods, both
 * precisions, different dimensions and operators) and one bilevel handle. After a
 * barrier they create their handles and step them, interleaved, by callback and by reverse
 * communication, on deterministic drifting problems. Meanwhile a provoker thread creates,
 * fails and destroys handles of its own as fast as it can: failing callbacks (error codes,
 * NaN, Inf), NULL pointers, wrong sizes, the wrong precision, resume without begin, NULL /
 * destroyed / garbage handles, out-of-range options.
 *
 * Properties checked:
 *   - every worker result (status, v, step diagnostics; bilevel x, y, v, hyper-gradient)
 *     is bitwise identical to the same sequence run alone on the main thread first;
 *   - after every worker call, that handle's last_error is "" and its callback_status 0:
 *     errors provoked on other handles never leak into them;
 *   - the provoker's own calls get the documented error codes and leave its handles
 *     unchanged.
 * The last line is "N passed, M failed"; the exit status is non-zero if any check failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "lancbio.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 8
#define HANDLES 4
#define STEPS 400
#define NMAX 40
#define DX 6
#define DY 10
#define BSTEPS 200

#define CHECK_THREAD_SAFE
#define CHECK_PRINTED_FAILURES 40
#include "check.h"

static const char *method_name(int32_t m)
{
    static const char *names[] = {"?", "lanczos", "subbio", "cg", "minres", "gd", "neumann", "random-neumann"};
    return (m >= 1 && m <= 7) ? names[m] : "?";
}

static int empty_message(const char *s) { return s != NULL && s[0] == '\0'; }

/* ------------------------------------------------------------------------------------
 * Deterministic problems
 * ----------------------------------------------------------------------------------*/
/* A_k = (1 + 0.02 sin k) (diag(d) + 0.5 u u^T + 0.25 w w^T), eigenvalues in about [1, 12]. */
typedef struct {
    int64_t n;
    int k; /* the step being taken: the operator drifts with it */
    double d[NMAX], u[NMAX], w[NMAX], b0[NMAX];
    int32_t fail_code; /* provoker only: the callback's misbehaviour */
    int fail_nan;
    long calls;
} op_t;

static void op_build(op_t *op, int64_t n, int seed)
{
    int64_t i;
    memset(op, 0, sizeof *op);
    op->n = n;
    for (i = 0; i < n; i++) {
        op->d[i] = 1.0 + 9.0 * (0.5 + 0.5 * sin(1.3 * (double)i + 0.7 * seed));
        op->u[i] = 0.4 * cos(0.9 * (double)i + seed) / sqrt((double)n) * 3;
        op->w[i] = 0.3 * sin(2.1 * (double)i - seed) / sqrt((double)n) * 3;
        op->b0[i] = 1.0 + 0.5 * sin(0.37 * (double)i * (seed + 1));
    }
}

static void op_apply(const op_t *op, const double *x, double *y)
{
    double cu = 0, cw = 0, scale = 1.0 + 0.02 * sin((double)op->k);
    int64_t i;
    for (i = 0; i < op->n; i++) {
        cu += op->u[i] * x[i];
        cw += op->w[i] * x[i];
    }
    for (i = 0; i < op->n; i++) y[i] = scale * (op->d[i] * x[i] + 0.5 * op->u[i] * cu + 0.25 * op->w[i] * cw);
}

static void rhs(const op_t *op, int k, double *b)
{
    int64_t i;
    for (i = 0; i < op->n; i++) b[i] = op->b0[i] + 0.1 * cos(0.05 * k + 0.3 * (double)i) + 0.01 * k;
}

static int32_t hvp64(const double *in, double *out, int64_t n, void *user_data)
{
    op_t *op = (op_t *)user_data;
    op->calls++;
    if (n != op->n || n < 1 || n > NMAX) return -100;
    if (op->fail_code) return op->fail_code;
    op_apply(op, in, out);
    if (op->fail_nan) out[n / 2] = op->fail_nan == 1 ? NAN : -INFINITY;
    return 0;
}

static int32_t hvp32(const float *in, float *out, int64_t n, void *user_data)
{
    op_t *op = (op_t *)user_data;
    double x[NMAX] = {0}, y[NMAX];
    int64_t i;
    op->calls++;
    if (n != op->n || n < 1 || n > NMAX) return -100;
    if (op->fail_code) return op->fail_code;
    for (i = 0; i < n; i++) x[i] = in[i];
    op_apply(op, x, y);
    for (i = 0; i < n; i++) out[i] = (float)y[i];
    if (op->fail_nan) out[n / 2] = op->fail_nan == 1 ? NAN : -INFINITY;
    return 0;
}

static void options_for(lancbio_estimator_options_t *o, int32_t method, int32_t precision, int seed)
{
    lancbio_estimator_options_init(o, method);
    o->precision = precision;
    o->m0 = 2;
    o->m_max = 6;
    o->growth = 1.5;
    o->grow_every = 4;
    o->variant = seed % 2 ? LANCBIO_VARIANT_PLAIN : LANCBIO_VARIANT_RESIDUAL;
    o->reorthogonalize = seed % 3 == 0;
    o->theta0 = 0.05;
    o->max_iterations = 4;
    o->step_size = 0.05;
    o->steps = method == LANCBIO_METHOD_GD ? 3 : 8;
    o->seed = (uint64_t)seed * 7919u;
}

/* ------------------------------------------------------------------------------------
 * Estimator jobs
 * ----------------------------------------------------------------------------------*/
typedef struct {
    int32_t status[STEPS];
    double v[STEPS][NMAX];
    lancbio_step_info_t info[STEPS];
} trace_t;

typedef struct {
    int32_t method, precision;
    int64_t n;
    int seed;
    op_t op;
    lancbio_estimator_t *h;
    trace_t *out;
} job_t;

static trace_t REF[THREADS * HANDLES], RUN[THREADS * HANDLES];
static job_t JOBS[THREADS * HANDLES];

static void job_init(job_t *j, int index)
{
    memset(j, 0, sizeof *j);
    j->method = 1 + index % 7;
    j->precision = (index / 7) % 2 ? LANCBIO_FLOAT32 : LANCBIO_FLOAT64;
    j->n = 16 + (index * 5) % 25;
    j->seed = index;
    op_build(&j->op, j->n, index);
}

static void job_create(job_t *j)
{
    lancbio_estimator_options_t o;
    int32_t s;
    options_for(&o, j->method, j->precision, j->seed);
    j->h = NULL;
    s = lancbio_estimator_create(j->n, &o, &j->h);
    CHECK(s == LANCBIO_OK && j->h != NULL, "create(%s, precision %d, n %lld) returned %d", method_name(j->method),
          j->precision, (long long)j->n, s);
}

/* One step k of job j, by callback or (every third step) by reverse communication. */
static void job_step(job_t *j, int k)
{
    double b[NMAX], v[NMAX];
    float bf[NMAX], vf[NMAX];
    lancbio_step_info_t info;
    int64_t i, n = j->n;
    int32_t s;
    int reverse = k % 3 == 2;
    const char *msg;
    rhs(&j->op, k, b);
    for (i = 0; i < n; i++) bf[i] = (float)b[i];
    j->op.k = k;
    memset(&info, 0, sizeof info);
    info.struct_size = (int64_t)sizeof info;
    if (!reverse) {
        s = j->precision == LANCBIO_FLOAT64 ? lancbio_estimator_step_f64(j->h, hvp64, &j->op, b, v, n, &info)
                                            : lancbio_estimator_step_f32(j->h, hvp32, &j->op, bf, vf, n, &info);
    } else if (j->precision == LANCBIO_FLOAT64) {
        double req[NMAX], prod[NMAX];
        int guard = 0;
        s = lancbio_estimator_begin_f64(j->h, b, req, n);
        while (s == LANCBIO_NEED_PRODUCT && guard++ < 1000) {
            op_apply(&j->op, req, prod);
            s = lancbio_estimator_resume_f64(j->h, prod, req, n);
        }
        lancbio_estimator_get_v_f64(j->h, v, n);
        lancbio_estimator_info(j->h, &info);
    } else {
        float req[NMAX], prod[NMAX];
        int guard = 0;
        s = lancbio_estimator_begin_f32(j->h, bf, req, n);
        while (s == LANCBIO_NEED_PRODUCT && guard++ < 1000) {
            hvp32(req, prod, n, &j->op);
            s = lancbio_estimator_resume_f32(j->h, prod, req, n);
        }
        lancbio_estimator_get_v_f32(j->h, vf, n);
        lancbio_estimator_info(j->h, &info);
    }
    if (j->precision == LANCBIO_FLOAT32)
        for (i = 0; i < n; i++) v[i] = vf[i];
    msg = lancbio_estimator_last_error(j->h);
    CHECK(s >= 0 && s <= LANCBIO_SINGULAR && empty_message(msg) && lancbio_estimator_callback_status(j->h) == 0,
          "%s (precision %d) step %d: status %d, last_error \"%s\", callback_status %d", method_name(j->method),
          j->precision, k, s, msg ? msg : "(null)", lancbio_estimator_callback_status(j->h));
    {
        int finite = 1;
        for (i = 0; i < n; i++) finite = finite && isfinite(v[i]);
        CHECK(finite, "%s (precision %d) step %d: v is not finite", method_name(j->method), j->precision, k);
    }
    j->out->status[k] = s;
    memcpy(j->out->v[k], v, sizeof v[0] * (size_t)n);
    j->out->info[k] = info;
}

static int info_equal(const lancbio_step_info_t *a, const lancbio_step_info_t *b)
{
    return memcmp((const char *)a + 8, (const char *)b + 8, sizeof *a - 8) == 0;
}

/* ------------------------------------------------------------------------------------
 * Bilevel jobs: g = 1/2 y^T H y - y^T C x, f = 1/2 |y - y0|^2 + mu/2 |x|^2
 * ----------------------------------------------------------------------------------*/
typedef struct {
    double h[DY], c[DY][DX], y0[DY], mu;
    int32_t fail_code; /* provoker only */
    int fail_nan;
} bproblem_t;

typedef struct {
    int32_t status[BSTEPS];
    double x[BSTEPS][DX], y[BSTEPS][DY], v[BSTEPS][DY], g[BSTEPS][DX];
} btrace_t;

typedef struct {
    int32_t method;
    int seed;
    bproblem_t pb;
    lancbio_bilevel_t *h;
    double x[DX], y[DY];
    btrace_t *out;
} bjob_t;

static btrace_t BREF[THREADS], BRUN[THREADS];
static bjob_t BJOBS[THREADS];

static int32_t b_grad_y_g(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    const bproblem_t *p = (const bproblem_t *)ud;
    int64_t i, j;
    if (p->fail_code) return p->fail_code;
    for (i = 0; i < dy; i++) {
        double t = p->h[i] * y[i];
        for (j = 0; j < dx; j++) t -= p->c[i][j] * x[j];
        out[i] = t;
    }
    if (p->fail_nan) out[0] = NAN;
    return 0;
}
static int32_t b_grad_x_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    const bproblem_t *p = (const bproblem_t *)ud;
    int64_t j;
    (void)y;
    (void)dy;
    for (j = 0; j < dx; j++) out[j] = p->mu * x[j];
    return 0;
}
static int32_t b_grad_y_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    const bproblem_t *p = (const bproblem_t *)ud;
    int64_t i;
    (void)x;
    (void)dx;
    for (i = 0; i < dy; i++) out[i] = y[i] - p->y0[i];
    return 0;
}
static int32_t b_hvp(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *ud)
{
    const bproblem_t *p = (const bproblem_t *)ud;
    int64_t i;
    (void)x;
    (void)dx;
    (void)y;
    for (i = 0; i < dy; i++) out[i] = p->h[i] * v[i];
    return 0;
}
static int32_t b_jvp(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *ud)
{
    const bproblem_t *p = (const bproblem_t *)ud;
    int64_t i, j;
    (void)x;
    (void)y;
    for (j = 0; j < dx; j++) {
        double t = 0;
        for (i = 0; i < dy; i++) t -= p->c[i][j] * v[i];
        out[j] = t;
    }
    return 0;
}

static void bproblem_build(bproblem_t *p, int seed)
{
    int i, j;
    memset(p, 0, sizeof *p);
    p->mu = 0.5;
    for (i = 0; i < DY; i++) {
        p->h[i] = 1.0 + 4.0 * (0.5 + 0.5 * sin(1.1 * i + seed));
        p->y0[i] = cos(0.7 * i + seed);
        for (j = 0; j < DX; j++) p->c[i][j] = 0.3 * sin(0.5 * i + 1.7 * j + seed);
    }
}

static void problem_for(lancbio_problem_f64_t *pr, bproblem_t *p)
{
    pr->struct_size = (int64_t)sizeof *pr;
    pr->user_data = p;
    pr->grad_y_g = b_grad_y_g;
    pr->grad_x_f = b_grad_x_f;
    pr->grad_y_f = b_grad_y_f;
    pr->hvp_yy_g = b_hvp;
    pr->jvp_xy_g = b_jvp;
}

static void bjob_init(bjob_t *b, int index)
{
    int i;
    memset(b, 0, sizeof *b);
    b->method = 1 + index % 7;
    b->seed = index;
    bproblem_build(&b->pb, index);
    for (i = 0; i < DX; i++) b->x[i] = 0.5 * sin(i + index);
    for (i = 0; i < DY; i++) b->y[i] = 0.0;
}

static void bjob_create(bjob_t *b)
{
    lancbio_bilevel_options_t bo;
    lancbio_estimator_options_t eo;
    int32_t s;
    lancbio_bilevel_options_init(&bo);
    bo.lr_x = 0.1;
    bo.lr_y = 0.15;
    bo.lr_x_decay = 0.1;
    bo.inner_steps = 3;
    options_for(&eo, b->method, LANCBIO_FLOAT64, b->seed);
    b->h = NULL;
    s = lancbio_bilevel_create(DX, DY, &bo, &eo, &b->h);
    CHECK(s == LANCBIO_OK && b->h != NULL, "bilevel_create(%s) returned %d", method_name(b->method), s);
}

static void bjob_step(bjob_t *b, int k)
{
    lancbio_problem_f64_t pr;
    int32_t s;
    const char *msg;
    problem_for(&pr, &b->pb);
    s = lancbio_bilevel_step_f64(b->h, &pr, b->x, DX, b->y, DY, NULL);
    msg = lancbio_bilevel_last_error(b->h);
    CHECK(s >= 0 && s <= LANCBIO_SINGULAR && empty_message(msg) && lancbio_bilevel_callback_status(b->h) == 0,
          "bilevel %s step %d: status %d, last_error \"%s\"", method_name(b->method), k, s, msg ? msg : "(null)");
    b->out->status[k] = s;
    memcpy(b->out->x[k], b->x, sizeof b->x);
    memcpy(b->out->y[k], b->y, sizeof b->y);
    CHECK(lancbio_bilevel_get_v_f64(b->h, b->out->v[k], DY) == LANCBIO_OK &&
              lancbio_bilevel_get_hypergradient_f64(b->h, b->out->g[k], DX) == LANCBIO_OK,
          "bilevel getters failed");
}

/* ------------------------------------------------------------------------------------
 * Threads
 * ----------------------------------------------------------------------------------*/
static pthread_barrier_t start_barrier;
static volatile int workers_running;
static pthread_mutex_t running_lock = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg)
{
    int t = (int)(size_t)arg, j, k;
    pthread_barrier_wait(&start_barrier);
    for (j = 0; j < HANDLES; j++) job_create(&JOBS[t * HANDLES + j]);
    bjob_create(&BJOBS[t]);
    for (k = 0; k < STEPS; k++) {
        for (j = 0; j < HANDLES; j++) job_step(&JOBS[t * HANDLES + j], k);
        if (k < BSTEPS) bjob_step(&BJOBS[t], k);
    }
    for (j = 0; j < HANDLES; j++) lancbio_estimator_destroy(JOBS[t * HANDLES + j].h);
    lancbio_bilevel_destroy(BJOBS[t].h);
    pthread_mutex_lock(&running_lock);
    workers_running--;
    pthread_mutex_unlock(&running_lock);
    return NULL;
}

static int still_running(void)
{
    int r;
    pthread_mutex_lock(&running_lock);
    r = workers_running;
    pthread_mutex_unlock(&running_lock);
    return r > 0;
}

static long provoked;

/* Expects status `want` and a non-empty message from a call on the provoker's handle h. */
#define PROVOKE(h, call, want)                                                                                  \
    do {                                                                                                        \
        int32_t s_ = (call);                                                                                    \
        const char *m_ = lancbio_estimator_last_error(h);                                                      \
        CHECK(s_ == (want) && m_ && m_[0], "provoker: %s returned %d, expected %d", #call, s_, (int)(want));   \
        provoked++;                                                                                             \
    } while (0)

/* One round of errors on a fresh handle of method m and precision p. */
static void provoke_round(int round)
{
    static int garbage[8];
    int32_t m = 1 + round % 7, p = round % 2 ? LANCBIO_FLOAT32 : LANCBIO_FLOAT64, s;
    int64_t n = 8 + round % 13, i;
    lancbio_estimator_options_t o;
    lancbio_estimator_t *h = NULL, *dead = NULL;
    op_t op;
    double b[NMAX], v[NMAX], before[NMAX], after[NMAX];
    float bf[NMAX], vf[NMAX];
    op_build(&op, n, 1000 + round);
    options_for(&o, m, p, round);
    s = lancbio_estimator_create(n, &o, &h);
    CHECK(s == LANCBIO_OK, "provoker: create returned %d", s);
    if (s != LANCBIO_OK) return;
    rhs(&op, 0, b);
    for (i = 0; i < n; i++) bf[i] = (float)b[i];
    /* one good step so that the estimate is not zero */
    s = p == LANCBIO_FLOAT64 ? lancbio_estimator_step_f64(h, hvp64, &op, b, v, n, NULL)
                             : lancbio_estimator_step_f32(h, hvp32, &op, bf, vf, n, NULL);
    CHECK(s >= 0, "provoker: first step returned %d", s);
    if (p == LANCBIO_FLOAT64) lancbio_estimator_get_v_f64(h, before, n);
    else {
        lancbio_estimator_get_v_f32(h, vf, n);
        for (i = 0; i < n; i++) before[i] = vf[i];
    }
    /* failing callbacks */
    op.fail_code = 3 + round % 5;
    PROVOKE(h, p == LANCBIO_FLOAT64 ? lancbio_estimator_step_f64(h, hvp64, &op, b, v, n, NULL)
                                    : lancbio_estimator_step_f32(h, hvp32, &op, bf, vf, n, NULL),
            LANCBIO_ERR_CALLBACK);
    CHECK(lancbio_estimator_callback_status(h) == 3 + round % 5, "provoker: callback_status %d",
          lancbio_estimator_callback_status(h));
    op.fail_code = 0;
    op.fail_nan = 1 + round % 2;
    PROVOKE(h, p == LANCBIO_FLOAT64 ? lancbio_estimator_step_f64(h, hvp64, &op, b, v, n, NULL)
                                    : lancbio_estimator_step_f32(h, hvp32, &op, bf, vf, n, NULL),
            LANCBIO_ERR_NON_FINITE_PRODUCT);
    op.fail_nan = 0;
    /* bad arguments */
    if (p == LANCBIO_FLOAT64) {
        PROVOKE(h, lancbio_estimator_step_f64(h, hvp64, &op, NULL, v, n, NULL), LANCBIO_ERR_NULL_POINTER);
        PROVOKE(h, lancbio_estimator_step_f64(h, hvp64, &op, b, v, n + 1, NULL), LANCBIO_ERR_INVALID_ARGUMENT);
        PROVOKE(h, lancbio_estimator_step_f32(h, hvp32, &op, bf, vf, n, NULL), LANCBIO_ERR_WRONG_PRECISION);
        PROVOKE(h, lancbio_estimator_resume_f64(h, b, v, n), LANCBIO_ERR_INVALID_STATE);
        b[1] = NAN;
        PROVOKE(h, lancbio_estimator_set_v_f64(h, b, n), LANCBIO_ERR_NON_FINITE_INPUT);
        PROVOKE(h, lancbio_estimator_begin_f64(h, b, v, n), LANCBIO_ERR_NON_FINITE_INPUT);
        b[1] = 1;
        PROVOKE(h, lancbio_estimator_get_v_f64(h, NULL, n), LANCBIO_ERR_NULL_POINTER);
        lancbio_estimator_get_v_f64(h, after, n);
    } else {
        PROVOKE(h, lancbio_estimator_step_f32(h, hvp32, &op, NULL, vf, n, NULL), LANCBIO_ERR_NULL_POINTER);
        PROVOKE(h, lancbio_estimator_step_f32(h, hvp32, &op, bf, vf, -n, NULL), LANCBIO_ERR_INVALID_ARGUMENT);
        PROVOKE(h, lancbio_estimator_step_f64(h, hvp64, &op, b, v, n, NULL), LANCBIO_ERR_WRONG_PRECISION);
        PROVOKE(h, lancbio_estimator_resume_f32(h, bf, vf, n), LANCBIO_ERR_INVALID_STATE);
        bf[1] = INFINITY;
        PROVOKE(h, lancbio_estimator_set_v_f32(h, bf, n), LANCBIO_ERR_NON_FINITE_INPUT);
        bf[1] = 1;
        PROVOKE(h, lancbio_estimator_get_v_f32(h, vf, n - 1), LANCBIO_ERR_INVALID_ARGUMENT);
        lancbio_estimator_get_v_f32(h, vf, n);
        for (i = 0; i < n; i++) after[i] = vf[i];
    }
    CHECK(memcmp(before, after, sizeof before[0] * (size_t)n) == 0, "provoker: a failed call changed the estimate (%s)",
          method_name(m));
    /* a step left in progress, then destroyed with it */
    if (p == LANCBIO_FLOAT64) s = lancbio_estimator_begin_f64(h, b, v, n);
    else s = lancbio_estimator_begin_f32(h, bf, vf, n);
    CHECK(s == LANCBIO_NEED_PRODUCT || (s >= 0 && s <= LANCBIO_SINGULAR), "provoker: begin returned %d", s);
    /* invalid options and handles */
    o.m_max = 5000;
    o.step_size = -1;
    o.theta0 = NAN;
    o.max_iterations = -2;
    o.method = round % 2 ? LANCBIO_METHOD_LANCZOS : LANCBIO_METHOD_GD;
    s = lancbio_estimator_create(n, &o, &dead);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT && dead == NULL, "provoker: create with invalid options returned %d", s);
    /* Destroyed with a step in progress. Its address is not used again here: another
     * thread's new handle may be given the same address. */
    lancbio_estimator_destroy(h);
    CHECK(lancbio_estimator_reset(NULL) == LANCBIO_ERR_INVALID_HANDLE, "provoker: reset(NULL)");
    CHECK(lancbio_estimator_get_v_f64((lancbio_estimator_t *)(void *)garbage, v, 1) == LANCBIO_ERR_INVALID_HANDLE,
          "provoker: get_v of a garbage handle");
    CHECK(lancbio_bilevel_reset((lancbio_bilevel_t *)(void *)garbage) == LANCBIO_ERR_INVALID_HANDLE,
          "provoker: bilevel reset of a garbage handle");
    lancbio_estimator_destroy((lancbio_estimator_t *)(void *)garbage);
    lancbio_estimator_destroy(NULL);
    provoked += 4;
}

/* Bilevel errors: failing and NaN callbacks, bad arguments. */
static void provoke_bilevel(int round)
{
    bjob_t b;
    lancbio_problem_f64_t pr;
    double x0[DX], y0[DY], v0[DY], v1[DY];
    int32_t s;
    bjob_init(&b, 100 + round);
    bjob_create(&b);
    if (!b.h) return;
    problem_for(&pr, &b.pb);
    s = lancbio_bilevel_step_f64(b.h, &pr, b.x, DX, b.y, DY, NULL);
    CHECK(s >= 0, "provoker: bilevel step returned %d", s);
    memcpy(x0, b.x, sizeof x0);
    memcpy(y0, b.y, sizeof y0);
    lancbio_bilevel_get_v_f64(b.h, v0, DY);
    b.pb.fail_code = 9;
    s = lancbio_bilevel_step_f64(b.h, &pr, b.x, DX, b.y, DY, NULL);
    CHECK(s == LANCBIO_ERR_CALLBACK && lancbio_bilevel_callback_status(b.h) == 9 && lancbio_bilevel_last_error(b.h)[0],
          "provoker: failing bilevel callback: status %d", s);
    b.pb.fail_code = 0;
    b.pb.fail_nan = 1;
    s = lancbio_bilevel_step_f64(b.h, &pr, b.x, DX, b.y, DY, NULL);
    CHECK(s == LANCBIO_ERR_NON_FINITE_PRODUCT, "provoker: NaN bilevel callback: status %d", s);
    s = lancbio_bilevel_step_f64(b.h, NULL, b.x, DX, b.y, DY, NULL);
    CHECK(s == LANCBIO_ERR_NULL_POINTER, "provoker: bilevel step with problem NULL: %d", s);
    s = lancbio_bilevel_step_f64(b.h, &pr, b.x, DX + 1, b.y, DY, NULL);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT, "provoker: bilevel step with dx + 1: %d", s);
    lancbio_bilevel_get_v_f64(b.h, v1, DY);
    CHECK(memcmp(x0, b.x, sizeof x0) == 0 && memcmp(y0, b.y, sizeof y0) == 0 && memcmp(v0, v1, sizeof v0) == 0,
          "provoker: failed bilevel steps changed x, y or v");
    lancbio_bilevel_destroy(b.h);
    provoked += 5;
}

static void *provoker(void *arg)
{
    int round = 0;
    (void)arg;
    pthread_barrier_wait(&start_barrier);
    while (still_running() || round < 20) {
        provoke_round(round);
        if (round % 4 == 0) provoke_bilevel(round);
        round++;
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------
 * Main: sequential reference, concurrent run, comparison
 * ----------------------------------------------------------------------------------*/
int main(void)
{
    pthread_t threads[THREADS + 1];
    int t, j, k, mismatches = 0, bmismatches = 0;
    long before_failed;

    /* 1. Every job alone, on this thread. */
    for (t = 0; t < THREADS * HANDLES; t++) {
        job_init(&JOBS[t], t);
        JOBS[t].out = &REF[t];
        job_create(&JOBS[t]);
        for (k = 0; k < STEPS; k++) job_step(&JOBS[t], k);
        lancbio_estimator_destroy(JOBS[t].h);
    }
    for (t = 0; t < THREADS; t++) {
        bjob_init(&BJOBS[t], t);
        BJOBS[t].out = &BREF[t];
        bjob_create(&BJOBS[t]);
        for (k = 0; k < BSTEPS; k++) bjob_step(&BJOBS[t], k);
        lancbio_bilevel_destroy(BJOBS[t].h);
    }
    before_failed = failed_total;
    printf("[%s] sequential reference: %d estimator handles x %d steps, %d bilevel handles x %d steps\n",
           before_failed ? "FAIL" : "ok", THREADS * HANDLES, STEPS, THREADS, BSTEPS);

    /* 2. The same jobs concurrently, with the provoker. */
    for (t = 0; t < THREADS * HANDLES; t++) {
        job_init(&JOBS[t], t);
        JOBS[t].out = &RUN[t];
    }
    for (t = 0; t < THREADS; t++) {
        bjob_init(&BJOBS[t], t);
        BJOBS[t].out = &BRUN[t];
    }
    workers_running = THREADS;
    if (pthread_barrier_init(&start_barrier, NULL, THREADS + 1) != 0) {
        printf("pthread_barrier_init failed\n");
        return 2;
    }
    for (t = 0; t < THREADS; t++)
        if (pthread_create(&threads[t], NULL, worker, (void *)(size_t)t) != 0) {
            printf("pthread_create failed\n");
            return 2;
        }
    if (pthread_create(&threads[THREADS], NULL, provoker, NULL) != 0) {
        printf("pthread_create failed\n");
        return 2;
    }
    for (t = 0; t <= THREADS; t++) pthread_join(threads[t], NULL);
    pthread_barrier_destroy(&start_barrier);
    printf("[%s] concurrent run: %d worker threads x %d handles + 1 bilevel each, provoker made %ld failing calls\n",
           failed_total > before_failed ? "FAIL" : "ok", THREADS, HANDLES, provoked);

    /* 3. Bitwise comparison. */
    for (t = 0; t < THREADS * HANDLES; t++) {
        const job_t *jb = &JOBS[t];
        int same = 1;
        for (k = 0; k < STEPS; k++) {
            if (REF[t].status[k] != RUN[t].status[k] ||
                memcmp(REF[t].v[k], RUN[t].v[k], sizeof(double) * (size_t)jb->n) != 0 ||
                !info_equal(&REF[t].info[k], &RUN[t].info[k])) {
                same = 0;
                CHECK(0, "job %d (%s, precision %d, n %lld): step %d differs from the sequential run (status %d vs %d)", t,
                      method_name(jb->method), jb->precision, (long long)jb->n, k, REF[t].status[k], RUN[t].status[k]);
                break;
            }
        }
        if (same) check_pass();
        else mismatches++;
    }
    for (t = 0; t < THREADS; t++) {
        int same = memcmp(&BREF[t], &BRUN[t], sizeof BREF[t]) == 0;
        CHECK(same, "bilevel job %d (%s) differs from the sequential run", t, method_name(BJOBS[t].method));
        if (!same) bmismatches++;
    }
    j = THREADS * HANDLES;
    printf("[%s] results bitwise equal to the sequential run: %d of %d estimator handles, %d of %d bilevel handles\n",
           mismatches || bmismatches ? "FAIL" : "ok", j - mismatches, j, THREADS - bmismatches, THREADS);
    return check_summary();
}
