/*
 * test_abi.c: end-to-end checks of the lancbio C ABI, compiled against include/lancbio.h
 * and linked against liblancbio.so (`make test-c`).
 *
 * Groups (one function each, one output line each): versions, defaults, results,
 * float32, reverse communication, callback failure atomicity, bad input, struct forward
 * compatibility, handle independence / reset / cancel, properties. Each check names the
 * property it tests; a failure prints the line and the values involved. The last line is
 * "N passed, M failed" and the exit status is non-zero if any check failed.
 *
 * The operator is a dense SPD matrix A = Q diag(1..12) Q^T (Q a product of two
 * Householder reflections) applied by the callbacks below; reference solutions come from
 * Gaussian elimination in this file. Only the header's API is used; every handle created
 * is destroyed (the program is also run under valgrind).
 */
#if defined(__unix__) || defined(__APPLE__)
#define _POSIX_C_SOURCE 200809L /* fork, waitpid, setrlimit: the allocation-failure check */
#define HAVE_POSIX 1
#endif

#include "lancbio.h"

/* Sizes of the first published (ABI version 1) layouts: structs of an older header. The
 * library must accept them, giving appended fields their defaults, and reject anything
 * smaller. */
#define OPTIONS_V1_SIZE ((int64_t)offsetof(lancbio_estimator_options_t, orthogonality_tolerance))
#define INFO_V1_SIZE ((int64_t)offsetof(lancbio_step_info_t, orthogonality_loss))
/* The layouts published before exact_residual and residual_uncertain were appended. */
#define OPTIONS_V2_SIZE ((int64_t)offsetof(lancbio_estimator_options_t, exact_residual))
#define INFO_V2_SIZE ((int64_t)offsetof(lancbio_step_info_t, residual_uncertain))


#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef HAVE_POSIX
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#define N 12   /* dimension of the test operator */
#define SEQ 5  /* length of the step sequences compared bitwise */

#define CHECK_GROUP_WIDTH 26
#include "check.h"

static const char *method_name(int32_t m)
{
    static const char *names[] = {"?", "lanczos", "subbio", "cg", "minres", "gd", "neumann", "random-neumann"};
    return (m >= 1 && m <= 7) ? names[m] : "?";
}

static int nonempty(const char *s) { return s != NULL && s[0] != '\0'; }

/* ------------------------------------------------------------------------------------
 * The test operator and its callbacks
 * ----------------------------------------------------------------------------------*/
enum { FAIL_CODE = 1, FAIL_NAN = 2, FAIL_INF = 3 };

typedef struct {
    int64_t n;
    double a[N * N];  /* row-major, symmetric */
    long calls;       /* products since last cleared */
    long fail_call;   /* 1-based call that misbehaves (0: none) */
    int fail_kind;    /* FAIL_CODE: return fail_code; FAIL_NAN / FAIL_INF: write one bad value */
    int32_t fail_code;
    int contract_violations; /* wrong n, NULL or aliased buffers passed to the callback */
} op_t;

static op_t OP;
static double B0[N];     /* fixed right-hand side */
static double XSTAR[N];  /* A^{-1} B0 by Gaussian elimination */

static void apply(const double *x, double *y)
{
    int i, j;
    for (i = 0; i < N; i++) {
        double s = 0;
        for (j = 0; j < N; j++) s += OP.a[i * N + j] * x[j];
        y[i] = s;
    }
}

static int32_t hvp_f64(const double *in, double *out, int64_t n, void *user_data)
{
    op_t *op = (op_t *)user_data;
    op->calls++;
    if (op != &OP || n != op->n || in == NULL || out == NULL || (const double *)out == in) {
        op->contract_violations++;
        return -1;
    }
    if (op->calls == op->fail_call && op->fail_kind == FAIL_CODE) return op->fail_code;
    apply(in, out);
    if (op->calls == op->fail_call && op->fail_kind == FAIL_NAN) out[3] = NAN;
    if (op->calls == op->fail_call && op->fail_kind == FAIL_INF) out[0] = INFINITY;
    return 0;
}

static int32_t hvp_f32(const float *in, float *out, int64_t n, void *user_data)
{
    op_t *op = (op_t *)user_data;
    double x[N], y[N];
    int i;
    op->calls++;
    if (op != &OP || n != op->n || in == NULL || out == NULL || (const float *)out == in) {
        op->contract_violations++;
        return -1;
    }
    if (op->calls == op->fail_call && op->fail_kind == FAIL_CODE) return op->fail_code;
    for (i = 0; i < N; i++) x[i] = in[i];
    apply(x, y);
    for (i = 0; i < N; i++) out[i] = (float)y[i];
    if (op->calls == op->fail_call && op->fail_kind == FAIL_NAN) out[3] = NAN;
    if (op->calls == op->fail_call && op->fail_kind == FAIL_INF) out[0] = INFINITY;
    return 0;
}

static void op_clear(void)
{
    OP.calls = 0;
    OP.fail_call = 0;
    OP.fail_kind = 0;
    OP.fail_code = 0;
}

/* ------------------------------------------------------------------------------------
 * Dense linear algebra
 * ----------------------------------------------------------------------------------*/
static double norm(const double *x)
{
    double s = 0;
    int i;
    for (i = 0; i < N; i++) s += x[i] * x[i];
    return sqrt(s);
}

static double dist(const double *x, const double *y)
{
    double s = 0;
    int i;
    for (i = 0; i < N; i++) s += (x[i] - y[i]) * (x[i] - y[i]);
    return sqrt(s);
}

/* ||A v - b||. */
static double residual(const double *v, const double *b)
{
    double y[N];
    int i;
    apply(v, y);
    for (i = 0; i < N; i++) y[i] -= b[i];
    return norm(y);
}

/* Gaussian elimination with partial pivoting: x = a^{-1} b (a is n x n row-major). */
static void dense_solve(const double *a, const double *b, double *x)
{
    double m[N * N], r[N];
    int i, j, k;
    memcpy(m, a, sizeof m);
    memcpy(r, b, sizeof r);
    for (k = 0; k < N; k++) {
        int p = k;
        for (i = k + 1; i < N; i++)
            if (fabs(m[i * N + k]) > fabs(m[p * N + k])) p = i;
        if (p != k) {
            double t;
            for (j = 0; j < N; j++) {
                t = m[k * N + j]; m[k * N + j] = m[p * N + j]; m[p * N + j] = t;
            }
            t = r[k]; r[k] = r[p]; r[p] = t;
        }
        for (i = k + 1; i < N; i++) {
            double f = m[i * N + k] / m[k * N + k];
            for (j = k; j < N; j++) m[i * N + j] -= f * m[k * N + j];
            r[i] -= f * r[k];
        }
    }
    for (i = N - 1; i >= 0; i--) {
        double s = r[i];
        for (j = i + 1; j < N; j++) s -= m[i * N + j] * x[j];
        x[i] = s / m[i * N + i];
    }
}

/* M <- (I - 2 u u^T / u^T u) M. */
static void reflect(const double *u, double *m)
{
    double uu = 0;
    int i, j;
    for (i = 0; i < N; i++) uu += u[i] * u[i];
    for (j = 0; j < N; j++) {
        double s = 0;
        for (i = 0; i < N; i++) s += u[i] * m[i * N + j];
        for (i = 0; i < N; i++) m[i * N + j] -= 2 * u[i] * s / uu;
    }
}

/* A = Q diag(1..12) Q^T with Q = H2 H1; b; x* = A^{-1} b. */
static void build_problem(void)
{
    double q[N * N], u1[N], u2[N];
    int i, j, k;
    memset(&OP, 0, sizeof OP);
    OP.n = N;
    for (i = 0; i < N; i++) {
        u1[i] = sin(1.0 + i) + 0.3;
        u2[i] = cos(0.7 * i) - 0.2;
        for (j = 0; j < N; j++) q[i * N + j] = (i == j);
    }
    reflect(u1, q);
    reflect(u2, q);
    for (i = 0; i < N; i++)
        for (j = 0; j <= i; j++) {
            double s = 0;
            for (k = 0; k < N; k++) s += q[i * N + k] * (k + 1) * q[j * N + k];
            OP.a[i * N + j] = OP.a[j * N + i] = s;
        }
    for (i = 0; i < N; i++) B0[i] = 1.0 + 0.5 * sin(2.0 * i + 0.3);
    dense_solve(OP.a, B0, XSTAR);
}

/* Right-hand side of step k of a sequence: drifts between steps, like a bilevel run. */
static void rhs_for_step(int k, double *b)
{
    int i;
    for (i = 0; i < N; i++) b[i] = B0[i] + 0.1 * k * cos(0.5 * i + k);
}

/* ------------------------------------------------------------------------------------
 * Estimator helpers
 * ----------------------------------------------------------------------------------*/
enum { CFG_RESULTS, CFG_SEQUENCE };

/* CFG_RESULTS: Lanczos m0 = m_max = n, CG/MINRES n iterations to 1e-12.
 * CFG_SEQUENCE: settings that exercise restarts, period growth and truncated solves. */
static void options_for(lancbio_estimator_options_t *o, int32_t method, int32_t precision, int cfg)
{
    lancbio_estimator_options_init(o, method);
    o->precision = precision;
    o->theta0 = 0.05;
    o->step_size = 0.05;
    if (cfg == CFG_RESULTS) {
        o->m0 = N;
        o->m_max = N;
        o->growth = 1.0;
        o->max_iterations = N;
        o->tolerance = 1e-12;
    } else {
        o->m0 = 2;
        o->m_max = 4;
        o->growth = 2.0;
        o->grow_every = 3;
        o->max_iterations = 3;
        o->tolerance = 0;
        o->seed = 42;
    }
}

static lancbio_estimator_t *create_for(int32_t method, int32_t precision, int cfg)
{
    lancbio_estimator_options_t o;
    lancbio_estimator_t *h = NULL;
    int32_t s;
    options_for(&o, method, precision, cfg);
    s = lancbio_estimator_create(N, &o, &h);
    CHECK(s == LANCBIO_OK && h != NULL, "create(%s, precision %d) returned %d", method_name(method), precision, s);
    return h;
}

static void info_init(lancbio_step_info_t *info)
{
    memset(info, 0, sizeof *info);
    info->struct_size = (int64_t)sizeof *info;
}

static int info_equal(const lancbio_step_info_t *a, const lancbio_step_info_t *b)
{
    return a->status == b->status && a->residual_kind == b->residual_kind && a->products == b->products &&
           a->total_products == b->total_products && a->iterations == b->iterations &&
           a->dimension == b->dimension && a->period == b->period && a->restarts == b->restarts &&
           a->restarted == b->restarted && a->breakdown == b->breakdown && a->indefinite == b->indefinite &&
           a->singular_fallback == b->singular_fallback && a->zero_residual == b->zero_residual &&
           memcmp(&a->residual, &b->residual, sizeof(double)) == 0 &&
           memcmp(&a->ritz_min, &b->ritz_min, sizeof(double)) == 0 &&
           memcmp(&a->ritz_max, &b->ritz_max, sizeof(double)) == 0;
}

/* Every field after struct_size is zero (the info of a handle that has not stepped). */
static int info_is_zero(const lancbio_step_info_t *a)
{
    lancbio_step_info_t z;
    info_init(&z);
    return info_equal(a, &z) && a->reserved == 0;
}

static int32_t step_cb(lancbio_estimator_t *h, const double *b, double *v, lancbio_step_info_t *info)
{
    op_clear();
    if (info) info_init(info);
    return lancbio_estimator_step_f64(h, hvp_f64, &OP, b, v, N, info);
}

/* One step by reverse communication; on a final outcome v and info are read back. */
static int32_t step_rc(lancbio_estimator_t *h, const double *b, double *v, lancbio_step_info_t *info)
{
    double request[N], product[N];
    int guard = 0;
    int32_t s = lancbio_estimator_begin_f64(h, b, request, N);
    while (s == LANCBIO_NEED_PRODUCT && guard++ < 100000) {
        apply(request, product);
        s = lancbio_estimator_resume_f64(h, product, request, N);
    }
    if (s >= 0 && s != LANCBIO_NEED_PRODUCT) {
        int32_t g = lancbio_estimator_get_v_f64(h, v, N);
        int32_t i;
        info_init(info);
        i = lancbio_estimator_info(h, info);
        CHECK(g == LANCBIO_OK && i == LANCBIO_OK, "get_v / info after a reverse-communication step: %d %d", g, i);
    }
    return s;
}

typedef struct {
    int32_t status[SEQ];
    double v[SEQ][N];
    lancbio_step_info_t info[SEQ];
} seq_t;

/* Steps from..to-1 of the standard sequence, by callback or by reverse communication. */
static void run_seq(lancbio_estimator_t *h, int from, int to, seq_t *s, int reverse)
{
    int k;
    for (k = from; k < to; k++) {
        double b[N];
        rhs_for_step(k, b);
        s->status[k] = reverse ? step_rc(h, b, s->v[k], &s->info[k]) : step_cb(h, b, s->v[k], &s->info[k]);
    }
}

static void compare_seq(const seq_t *want, const seq_t *got, int from, int to, const char *what, int32_t method)
{
    int k;
    for (k = from; k < to; k++) {
        CHECK(want->status[k] >= 0 && want->status[k] == got->status[k], "%s (%s): step %d status %d vs %d", what,
              method_name(method), k, want->status[k], got->status[k]);
        CHECK(memcmp(want->v[k], got->v[k], sizeof want->v[k]) == 0, "%s (%s): step %d v differs bitwise", what,
              method_name(method), k);
        CHECK(info_equal(&want->info[k], &got->info[k]), "%s (%s): step %d info differs", what, method_name(method), k);
    }
}

/* ------------------------------------------------------------------------------------
 * versions
 * ----------------------------------------------------------------------------------*/
static void test_versions(void)
{
    static const int32_t codes[] = {
        LANCBIO_OK, LANCBIO_BUDGET_REACHED, LANCBIO_BREAKDOWN, LANCBIO_INDEFINITE, LANCBIO_SINGULAR,
        LANCBIO_NEED_PRODUCT, LANCBIO_ERR_INVALID_ARGUMENT, LANCBIO_ERR_NULL_POINTER,
        LANCBIO_ERR_NON_FINITE_INPUT, LANCBIO_ERR_NON_FINITE_PRODUCT, LANCBIO_ERR_NON_FINITE_RESULT,
        LANCBIO_ERR_CALLBACK, LANCBIO_ERR_WRONG_PRECISION, LANCBIO_ERR_INVALID_STATE, LANCBIO_ERR_INVALID_HANDLE,
        LANCBIO_ERR_OUT_OF_MEMORY, LANCBIO_ERR_BUFFER_TOO_SMALL, LANCBIO_ERR_INVALID_CHECKPOINT};
    const int count = (int)(sizeof codes / sizeof codes[0]);
    const char *unknown = lancbio_status_string(12345);
    const char *version = lancbio_version();
    int i, j;

    CHECK(lancbio_abi_version() == LANCBIO_ABI_VERSION, "lancbio_abi_version() = %d, header says %d",
          lancbio_abi_version(), LANCBIO_ABI_VERSION);
    CHECK(nonempty(version), "lancbio_version() is NULL or empty");
    CHECK(nonempty(unknown), "status string of an unknown code is NULL or empty");
    CHECK(unknown && strcmp(unknown, "unknown status") == 0, "status string of 12345 is \"%s\", header says \"unknown status\"",
          unknown ? unknown : "(null)");
    CHECK(unknown && lancbio_status_string(-13) && strcmp(lancbio_status_string(-13), unknown) == 0 &&
              lancbio_status_string(5) && strcmp(lancbio_status_string(5), unknown) == 0,
          "codes -13 and 5 are not reported as unknown");
    for (i = 0; i < count; i++) {
        const char *s = lancbio_status_string(codes[i]);
        CHECK(nonempty(s) && unknown && strcmp(s, unknown) != 0, "status string of documented code %d is empty or \"unknown\"",
              codes[i]);
        for (j = 0; j < i; j++) {
            const char *t = lancbio_status_string(codes[j]);
            CHECK(s && t && strcmp(s, t) != 0, "codes %d and %d share the status string \"%s\"", codes[i], codes[j],
                  s ? s : "(null)");
        }
    }
}

/* ------------------------------------------------------------------------------------
 * defaults: lancbio_estimator_options_init writes the documented defaults
 * ----------------------------------------------------------------------------------*/
static void test_defaults(void)
{
    int32_t m;
    for (m = LANCBIO_METHOD_LANCZOS; m <= LANCBIO_METHOD_RANDOM_NEUMANN; m++) {
        lancbio_estimator_options_t o;
        int64_t steps = m == LANCBIO_METHOD_GD ? 5 : 10;
        int32_t s;
        memset(&o, 0xA5, sizeof o);
        s = lancbio_estimator_options_init(&o, m);
        CHECK(s == LANCBIO_OK, "options_init(%s) returned %d", method_name(m), s);
        CHECK(o.struct_size == (int64_t)sizeof o && o.method == m && o.precision == LANCBIO_FLOAT64,
              "options_init(%s): struct_size %lld method %d precision %d", method_name(m), (long long)o.struct_size,
              o.method, o.precision);
        CHECK(o.m0 == 1 && o.m_max == 80 && o.growth == 1.1 && o.grow_every == 20 &&
                  o.variant == LANCBIO_VARIANT_RESIDUAL && o.reorthogonalize == 0,
              "options_init(%s): Lanczos defaults differ from the header", method_name(m));
        CHECK(o.theta0 == 0 && o.max_iterations == 5 && o.tolerance == 0 && o.step_size == 0 && o.steps == steps &&
                  o.seed == 0,
              "options_init(%s): theta0 %g max_iterations %lld tolerance %g step_size %g steps %lld seed %llu",
              method_name(m), o.theta0, (long long)o.max_iterations, o.tolerance, o.step_size, (long long)o.steps,
              (unsigned long long)o.seed);
    }
}

/* ------------------------------------------------------------------------------------
 * results: every method against the dense solution
 * ----------------------------------------------------------------------------------*/
static void check_ritz(const lancbio_step_info_t *info, const char *what, int k)
{
    /* Ritz values of an SPD matrix lie in [lambda_min, lambda_max] = [1, 12]. */
    CHECK(info->ritz_min >= 1 - 1e-9 && info->ritz_min <= info->ritz_max && info->ritz_max <= N + 1e-9,
          "%s step %d: Ritz values [%g, %g] outside [1, %d]", what, k, info->ritz_min, info->ritz_max, N);
}

static void results_lanczos(void)
{
    lancbio_estimator_t *h = create_for(LANCBIO_METHOD_LANCZOS, LANCBIO_FLOAT64, CFG_RESULTS);
    double v[N], bnorm = norm(B0);
    lancbio_step_info_t info;
    int k;
    for (k = 1; k <= N; k++) {
        int32_t s = step_cb(h, B0, v, &info);
        double r = residual(v, B0);
        CHECK(s == LANCBIO_OK || (k == N && s == LANCBIO_BREAKDOWN), "lanczos step %d status %d", k, s);
        CHECK(info.status == s, "lanczos step %d: info.status %d != returned %d", k, info.status, s);
        CHECK(info.products == (k == 1 ? 2 : 1) && OP.calls == info.products,
              "lanczos step %d: products %lld (callback saw %ld), expected %d", k, (long long)info.products, OP.calls,
              k == 1 ? 2 : 1);
        CHECK(info.total_products == k + 1, "lanczos step %d: total_products %lld, expected %d", k,
              (long long)info.total_products, k + 1);
        CHECK(info.dimension == k && info.period == N && info.iterations == 1 && info.restarted == (k == 1) &&
                  info.restarts == 1,
              "lanczos step %d: dimension %lld period %lld iterations %lld restarted %d restarts %lld", k,
              (long long)info.dimension, (long long)info.period, (long long)info.iterations, info.restarted,
              (long long)info.restarts);
        CHECK(info.residual_kind == LANCBIO_RESIDUAL_ESTIMATE, "lanczos step %d: residual_kind %d", k, info.residual_kind);
        /* For a fixed operator the estimate beta_j |e_j^T s| is ||A v - b||. */
        CHECK(fabs(info.residual - r) <= 1e-9 * bnorm + 1e-6 * r, "lanczos step %d: residual estimate %.3e vs ||Av-b|| %.3e",
              k, info.residual, r);
        check_ritz(&info, "lanczos", k);
    }
    CHECK(dist(v, XSTAR) <= 1e-8 * norm(XSTAR), "lanczos after n steps: relative error %.3e > 1e-8",
          dist(v, XSTAR) / norm(XSTAR));
    CHECK(fabs(info.ritz_min - 1) <= 1e-6 && fabs(info.ritz_max - N) <= 1e-6,
          "lanczos after n steps: Ritz values %.9g %.9g, expected 1 and %d", info.ritz_min, info.ritz_max, N);
    /* Step n+1 restarts the basis (the period is full) and stays at the solution. */
    step_cb(h, B0, v, &info);
    CHECK(info.restarted == 1 && info.restarts == 2, "lanczos step n+1: restarted %d restarts %lld", info.restarted,
          (long long)info.restarts);
    CHECK(dist(v, XSTAR) <= 1e-8 * norm(XSTAR), "lanczos step n+1: relative error %.3e", dist(v, XSTAR) / norm(XSTAR));
    lancbio_estimator_destroy(h);
}

/* exact_residual: while b moves, each step reports ||A v - b|| of its estimate (one more
 * product), and the estimates are those of the same estimator without the option. */
static void results_exact_residual(void)
{
    lancbio_estimator_options_t o;
    lancbio_estimator_t *plain = NULL, *exact = NULL;
    double b[N], vp[N], ve[N];
    lancbio_step_info_t ip, ie;
    int k;
    options_for(&o, LANCBIO_METHOD_LANCZOS, LANCBIO_FLOAT64, CFG_SEQUENCE);
    CHECK(o.exact_residual == 0, "exact_residual defaults to %d", o.exact_residual);
    CHECK(lancbio_estimator_create(N, &o, &plain) == LANCBIO_OK, "create lanczos");
    o.exact_residual = 1;
    CHECK(lancbio_estimator_create(N, &o, &exact) == LANCBIO_OK, "create lanczos with exact_residual");
    for (k = 0; k < SEQ && plain && exact; k++) {
        double r;
        rhs_for_step(k, b);
        info_init(&ip);
        info_init(&ie);
        lancbio_estimator_step_f64(plain, hvp_f64, &OP, b, vp, N, &ip);
        op_clear();
        lancbio_estimator_step_f64(exact, hvp_f64, &OP, b, ve, N, &ie);
        r = residual(ve, b);
        CHECK(memcmp(vp, ve, sizeof vp) == 0, "exact_residual step %d changed the estimate", k);
        CHECK(ie.products == ip.products + 1 && OP.calls == ie.products, "exact_residual step %d: products %lld vs %lld",
              k, (long long)ie.products, (long long)ip.products);
        CHECK(ie.residual_kind == LANCBIO_RESIDUAL_EXACT && ie.residual_uncertain == 0 &&
                  fabs(ie.residual - r) <= 1e-12 * (norm(b) + r),
              "exact_residual step %d: kind %d uncertain %d residual %.15e vs ||Av-b|| %.15e", k, ie.residual_kind,
              ie.residual_uncertain, ie.residual, r);
        CHECK(ip.residual_kind == LANCBIO_RESIDUAL_ESTIMATE, "step %d without exact_residual: kind %d", k,
              ip.residual_kind);
    }
    lancbio_estimator_destroy(plain);
    lancbio_estimator_destroy(exact);
}

static void results_subbio(void)
{
    lancbio_estimator_t *h = create_for(LANCBIO_METHOD_SUBBIO, LANCBIO_FLOAT64, CFG_RESULTS);
    double v[N];
    lancbio_step_info_t info;
    int k;
    for (k = 1; k <= 8; k++) {
        int32_t s = step_cb(h, B0, v, &info);
        double r = residual(v, B0);
        CHECK(s == LANCBIO_OK && info.status == s, "subbio step %d status %d", k, s);
        CHECK(info.products == 3 && OP.calls == 3 && info.total_products == 3 * k,
              "subbio step %d: products %lld total %lld", k, (long long)info.products, (long long)info.total_products);
        /* v_0 = 0 makes v - theta0 A v vanish: the first subspace is span{b}. */
        CHECK(info.dimension == (k == 1 ? 1 : 2) && info.period == 0, "subbio step %d: dimension %lld period %lld", k,
              (long long)info.dimension, (long long)info.period);
        CHECK(info.residual_kind == LANCBIO_RESIDUAL_EXACT, "subbio step %d: residual_kind %d", k, info.residual_kind);
        CHECK(fabs(info.residual - r) <= 1e-9 * r, "subbio step %d: info.residual %.15e vs ||Av-b|| %.15e", k,
              info.residual, r);
        check_ritz(&info, "subbio", k);
    }
    CHECK(residual(v, B0) < norm(B0), "subbio: residual %.3e not below ||b|| %.3e", residual(v, B0), norm(B0));
    lancbio_estimator_destroy(h);
}

static void results_krylov(int32_t method)
{
    lancbio_estimator_t *h = create_for(method, LANCBIO_FLOAT64, CFG_RESULTS);
    lancbio_estimator_options_t o;
    double v[N], r;
    lancbio_step_info_t info;
    const char *name = method_name(method);
    int32_t s = step_cb(h, B0, v, &info), checked;
    r = residual(v, B0);
    CHECK(s == LANCBIO_OK || s == LANCBIO_BUDGET_REACHED || (method == LANCBIO_METHOD_MINRES && s == LANCBIO_BREAKDOWN),
          "%s: status %d", name, s);
    CHECK(dist(v, XSTAR) <= 1e-8 * norm(XSTAR), "%s: relative error %.3e after one step", name,
          dist(v, XSTAR) / norm(XSTAR));
    /* A convergence the recurrence claims below the bound on its rounding is checked with
     * one more product, and the residual is then EXACT (docs/algorithms.md section 9). */
    checked = info.residual_kind == LANCBIO_RESIDUAL_EXACT;
    CHECK(info.products == info.iterations + 1 + checked && info.products <= N + 2 && OP.calls == info.products,
          "%s: products %lld, iterations %lld (max_iterations %d)", name, (long long)info.products,
          (long long)info.iterations, N);
    CHECK(s != LANCBIO_BUDGET_REACHED || info.iterations == N, "%s: budget reached after %lld iterations, expected %d",
          name, (long long)info.iterations, N);
    CHECK((checked || info.residual_kind == LANCBIO_RESIDUAL_RECURRENCE) && !info.residual_uncertain &&
          info.dimension == 0 && info.period == 0,
          "%s: residual_kind %d uncertain %d dimension %lld period %lld", name, info.residual_kind,
          info.residual_uncertain, (long long)info.dimension, (long long)info.period);
    CHECK(fabs(info.residual - r) <= 1e-9 * norm(B0), "%s: recurrence residual %.3e vs ||Av-b|| %.3e", name,
          info.residual, r);
    lancbio_estimator_destroy(h);

    /* A truncated solve: max_iterations = 3 uses exactly 4 products and says so. */
    options_for(&o, method, LANCBIO_FLOAT64, CFG_RESULTS);
    o.max_iterations = 3;
    h = NULL;
    s = lancbio_estimator_create(N, &o, &h);
    CHECK(s == LANCBIO_OK, "%s: create with max_iterations 3: %d", name, s);
    s = step_cb(h, B0, v, &info);
    CHECK(s == LANCBIO_BUDGET_REACHED && info.products == 4 && info.iterations == 3,
          "%s max_iterations 3: status %d products %lld iterations %lld", name, s, (long long)info.products,
          (long long)info.iterations);
    CHECK(residual(v, B0) < norm(B0), "%s max_iterations 3: residual not below ||b||", name);
    lancbio_estimator_destroy(h);
}

static void results_gd(void)
{
    lancbio_estimator_t *h = create_for(LANCBIO_METHOD_GD, LANCBIO_FLOAT64, CFG_RESULTS);
    lancbio_estimator_options_t o;
    double v[N], previous = norm(B0), prev_v[N];
    lancbio_step_info_t info;
    int k;
    for (k = 1; k <= 6; k++) {
        int32_t s = step_cb(h, B0, v, &info);
        double r = residual(v, B0);
        CHECK(s == LANCBIO_OK, "gd step %d status %d", k, s);
        CHECK(info.products == 5 && info.iterations == 5 && info.total_products == 5 * k && info.dimension == 0,
              "gd step %d: products %lld iterations %lld dimension %lld", k, (long long)info.products,
              (long long)info.iterations, (long long)info.dimension);
        CHECK(info.residual_kind == LANCBIO_RESIDUAL_PREVIOUS, "gd step %d: residual_kind %d", k, info.residual_kind);
        CHECK(r < previous && r < info.residual, "gd step %d: residual %.6e did not decrease (previous %.6e, info %.6e)", k,
              r, previous, info.residual);
        previous = r;
    }
    lancbio_estimator_destroy(h);

    /* steps = 1 (SOBA): info.residual is exactly the residual of the previous estimate. */
    options_for(&o, LANCBIO_METHOD_GD, LANCBIO_FLOAT64, CFG_RESULTS);
    o.steps = 1;
    h = NULL;
    lancbio_estimator_create(N, &o, &h);
    memset(prev_v, 0, sizeof prev_v);
    for (k = 1; k <= 3; k++) {
        double want = residual(prev_v, B0);
        step_cb(h, B0, v, &info);
        CHECK(info.products == 1 && fabs(info.residual - want) <= 1e-12 * want,
              "gd steps=1, step %d: products %lld residual %.15e vs ||A v_prev - b|| %.15e", k, (long long)info.products,
              info.residual, want);
        memcpy(prev_v, v, sizeof v);
    }
    lancbio_estimator_destroy(h);
}

/* v = eta sum_{i=0..terms} (I - eta A)^i b, computed here. */
static void neumann_reference(int terms, double eta, double *v)
{
    double p[N], ap[N];
    int i, t;
    memcpy(p, B0, sizeof p);
    memcpy(v, B0, sizeof p);
    for (t = 0; t < terms; t++) {
        apply(p, ap);
        for (i = 0; i < N; i++) {
            p[i] -= eta * ap[i];
            v[i] += p[i];
        }
    }
    for (i = 0; i < N; i++) v[i] *= eta;
}

static void results_neumann(void)
{
    double residuals[2];
    int terms[2] = {10, 40}, t;
    for (t = 0; t < 2; t++) {
        lancbio_estimator_options_t o;
        lancbio_estimator_t *h = NULL;
        double v[N], want[N];
        lancbio_step_info_t info;
        int32_t s;
        options_for(&o, LANCBIO_METHOD_NEUMANN, LANCBIO_FLOAT64, CFG_RESULTS);
        o.steps = terms[t];
        lancbio_estimator_create(N, &o, &h);
        s = step_cb(h, B0, v, &info);
        neumann_reference(terms[t], 0.05, want);
        CHECK(s == LANCBIO_OK && info.products == terms[t] && info.iterations == terms[t] && OP.calls == terms[t],
              "neumann %d terms: status %d products %lld iterations %lld", terms[t], s, (long long)info.products,
              (long long)info.iterations);
        CHECK(info.residual_kind == LANCBIO_RESIDUAL_UNAVAILABLE && info.dimension == 0,
              "neumann: residual_kind %d dimension %lld", info.residual_kind, (long long)info.dimension);
        CHECK(dist(v, want) <= 1e-12 * norm(want), "neumann %d terms: differs from the series computed in C by %.3e",
              terms[t], dist(v, want) / norm(want));
        residuals[t] = residual(v, B0);
        lancbio_estimator_destroy(h);
    }
    CHECK(residuals[1] < residuals[0] && residuals[0] < norm(B0),
          "neumann: residual does not decrease with the number of terms (%.3e, %.3e, ||b|| %.3e)", residuals[0],
          residuals[1], norm(B0));
}

static void results_random_neumann(void)
{
    lancbio_estimator_t *h = create_for(LANCBIO_METHOD_RANDOM_NEUMANN, LANCBIO_FLOAT64, CFG_RESULTS);
    double v[N];
    lancbio_step_info_t info;
    int64_t total = 0;
    int k;
    for (k = 1; k <= 4; k++) {
        int32_t s = step_cb(h, B0, v, &info);
        double r = residual(v, B0);
        total += info.products;
        CHECK(s == LANCBIO_OK, "random-neumann step %d status %d", k, s);
        /* p in 0..steps-1 powers, then `steps` gradient steps. */
        CHECK(info.products >= 10 && info.products <= 19 && info.iterations == info.products &&
                  info.total_products == total,
              "random-neumann step %d: products %lld iterations %lld total %lld", k, (long long)info.products,
              (long long)info.iterations, (long long)info.total_products);
        CHECK(info.residual_kind == LANCBIO_RESIDUAL_PREVIOUS, "random-neumann: residual_kind %d", info.residual_kind);
        CHECK(r < info.residual && r < norm(B0), "random-neumann step %d: residual %.3e (before last step %.3e, ||b|| %.3e)",
              k, r, info.residual, norm(B0));
    }
    lancbio_estimator_destroy(h);
}

static void test_results(void)
{
    double bcopy[N], v[N];
    lancbio_step_info_t info;
    lancbio_estimator_t *h;
    CHECK(residual(XSTAR, B0) <= 1e-12 * norm(B0), "the dense reference solve is inaccurate");
    results_lanczos();
    results_exact_residual();
    results_subbio();
    results_krylov(LANCBIO_METHOD_CG);
    results_krylov(LANCBIO_METHOD_MINRES);
    results_gd();
    results_neumann();
    results_random_neumann();
    /* v may alias b: same result as separate buffers. */
    h = create_for(LANCBIO_METHOD_CG, LANCBIO_FLOAT64, CFG_RESULTS);
    memcpy(bcopy, B0, sizeof bcopy);
    step_cb(h, bcopy, bcopy, &info);
    lancbio_estimator_reset(h);
    step_cb(h, B0, v, &info);
    CHECK(memcmp(bcopy, v, sizeof v) == 0, "cg with v aliasing b differs from separate buffers");
    lancbio_estimator_destroy(h);
    CHECK(OP.contract_violations == 0, "the library broke the callback contract %d times (wrong n, NULL or aliased buffers)",
          OP.contract_violations);
}

/* ------------------------------------------------------------------------------------
 * float32
 * ----------------------------------------------------------------------------------*/
static void test_float32(void)
{
    lancbio_estimator_t *h64 = create_for(LANCBIO_METHOD_LANCZOS, LANCBIO_FLOAT64, CFG_RESULTS);
    lancbio_estimator_t *h32 = create_for(LANCBIO_METHOD_LANCZOS, LANCBIO_FLOAT32, CFG_RESULTS);
    float b32[N], v32[N], got32[N];
    double v64[N], v32d[N];
    lancbio_step_info_t i64, i32;
    int k, i;
    for (i = 0; i < N; i++) b32[i] = (float)B0[i];
    for (k = 1; k <= N; k++) {
        int32_t s64 = step_cb(h64, B0, v64, &i64), s32;
        op_clear();
        info_init(&i32);
        s32 = lancbio_estimator_step_f32(h32, hvp_f32, &OP, b32, v32, N, &i32);
        for (i = 0; i < N; i++) v32d[i] = v32[i];
        CHECK(s32 >= 0 && s32 == i32.status, "float32 lanczos step %d: status %d", k, s32);
        CHECK(i32.products == i64.products && i32.dimension == i64.dimension, "float32 step %d: products %lld dimension %lld",
              k, (long long)i32.products, (long long)i32.dimension);
        CHECK(dist(v32d, v64) <= 1e-4 * norm(v64), "float32 lanczos step %d: relative difference from float64 %.3e", k,
              dist(v32d, v64) / norm(v64));
        (void)s64;
    }
    CHECK(lancbio_estimator_get_v_f32(h32, got32, N) == LANCBIO_OK && memcmp(got32, v32, sizeof v32) == 0,
          "float32 get_v differs from the step's output");
    CHECK(dist(v32d, XSTAR) <= 1e-4 * norm(XSTAR), "float32 lanczos after n steps: relative error %.3e",
          dist(v32d, XSTAR) / norm(XSTAR));
    lancbio_estimator_destroy(h64);
    lancbio_estimator_destroy(h32);
}

/* ------------------------------------------------------------------------------------
 * reverse communication
 * ----------------------------------------------------------------------------------*/
static void rc_f32_compare(int32_t method)
{
    lancbio_estimator_t *a = create_for(method, LANCBIO_FLOAT32, CFG_SEQUENCE);
    lancbio_estimator_t *b = create_for(method, LANCBIO_FLOAT32, CFG_SEQUENCE);
    int k, i, same = 1;
    for (k = 0; k < SEQ; k++) {
        double bd[N];
        float rhs[N], va[N], vb[N], request[N], product[N];
        lancbio_step_info_t ia, ib;
        int32_t sa, sb, guard = 0;
        rhs_for_step(k, bd);
        for (i = 0; i < N; i++) rhs[i] = (float)bd[i];
        op_clear();
        info_init(&ia);
        sa = lancbio_estimator_step_f32(a, hvp_f32, &OP, rhs, va, N, &ia);
        sb = lancbio_estimator_begin_f32(b, rhs, request, N);
        while (sb == LANCBIO_NEED_PRODUCT && guard++ < 100000) {
            OP.calls = 0;
            hvp_f32(request, product, N, &OP);
            sb = lancbio_estimator_resume_f32(b, product, request, N);
        }
        info_init(&ib);
        lancbio_estimator_info(b, &ib);
        lancbio_estimator_get_v_f32(b, vb, N);
        same = same && sa >= 0 && sa == sb && memcmp(va, vb, sizeof va) == 0 && info_equal(&ia, &ib);
    }
    CHECK(same, "float32 %s: begin/resume differs from step_f32", method_name(method));
    lancbio_estimator_destroy(a);
    lancbio_estimator_destroy(b);
}

static void test_reverse(void)
{
    int32_t m;
    /* Callback and reverse communication drive the same state machine: bitwise equal. */
    for (m = LANCBIO_METHOD_LANCZOS; m <= LANCBIO_METHOD_RANDOM_NEUMANN; m++) {
        lancbio_estimator_t *a = create_for(m, LANCBIO_FLOAT64, CFG_SEQUENCE);
        lancbio_estimator_t *b = create_for(m, LANCBIO_FLOAT64, CFG_SEQUENCE);
        seq_t sa, sb;
        run_seq(a, 0, SEQ, &sa, 0);
        run_seq(b, 0, SEQ, &sb, 1);
        compare_seq(&sa, &sb, 0, SEQ, "reverse communication vs step_f64", m);
        lancbio_estimator_destroy(a);
        lancbio_estimator_destroy(b);
    }
    /* The converging runs of the results group, too (Lanczos over n steps, CG). */
    {
        int32_t methods[2] = {LANCBIO_METHOD_LANCZOS, LANCBIO_METHOD_CG};
        int t, k;
        for (t = 0; t < 2; t++) {
            lancbio_estimator_t *a = create_for(methods[t], LANCBIO_FLOAT64, CFG_RESULTS);
            lancbio_estimator_t *b = create_for(methods[t], LANCBIO_FLOAT64, CFG_RESULTS);
            int same = 1;
            for (k = 0; k < N + 1; k++) {
                double va[N], vb[N];
                lancbio_step_info_t ia, ib;
                int32_t sa = step_cb(a, B0, va, &ia), sb = step_rc(b, B0, vb, &ib);
                same = same && sa >= 0 && sa == sb && memcmp(va, vb, sizeof va) == 0 && info_equal(&ia, &ib);
            }
            CHECK(same, "%s (results settings, %d steps): reverse communication differs from step_f64",
                  method_name(methods[t]), N + 1);
            lancbio_estimator_destroy(a);
            lancbio_estimator_destroy(b);
        }
    }
    rc_f32_compare(LANCBIO_METHOD_LANCZOS);
    rc_f32_compare(LANCBIO_METHOD_CG);

    /* One buffer for b, the requests and the products (each call reads before it writes). */
    for (m = LANCBIO_METHOD_LANCZOS; m <= LANCBIO_METHOD_RANDOM_NEUMANN; m++) {
        lancbio_estimator_t *a = create_for(m, LANCBIO_FLOAT64, CFG_SEQUENCE);
        lancbio_estimator_t *b = create_for(m, LANCBIO_FLOAT64, CFG_SEQUENCE);
        seq_t sa, sb;
        int k, guard;
        run_seq(a, 0, SEQ, &sa, 0);
        for (k = 0; k < SEQ; k++) {
            double buf[N], product[N];
            int32_t s;
            rhs_for_step(k, buf);
            s = lancbio_estimator_begin_f64(b, buf, buf, N);
            guard = 0;
            while (s == LANCBIO_NEED_PRODUCT && guard++ < 100000) {
                apply(buf, product);
                memcpy(buf, product, sizeof buf);
                s = lancbio_estimator_resume_f64(b, buf, buf, N);
            }
            sb.status[k] = s;
            lancbio_estimator_get_v_f64(b, sb.v[k], N);
            info_init(&sb.info[k]);
            lancbio_estimator_info(b, &sb.info[k]);
        }
        compare_seq(&sa, &sb, 0, SEQ, "reverse communication in one buffer", m);
        lancbio_estimator_destroy(a);
        lancbio_estimator_destroy(b);
    }

    /* A step that needs no product finishes at begin. */
    {
        lancbio_estimator_options_t o;
        lancbio_estimator_t *h = NULL;
        double request[N], v[N], zero[N];
        int i, ok = 1;
        int32_t s;
        options_for(&o, LANCBIO_METHOD_NEUMANN, LANCBIO_FLOAT64, CFG_RESULTS);
        o.steps = 0;
        s = lancbio_estimator_create(N, &o, &h);
        CHECK(s == LANCBIO_OK, "neumann with 0 terms: create returned %d", s);
        s = lancbio_estimator_begin_f64(h, B0, request, N);
        lancbio_estimator_get_v_f64(h, v, N);
        for (i = 0; i < N; i++) ok = ok && fabs(v[i] - 0.05 * B0[i]) <= 1e-15;
        CHECK(s == LANCBIO_OK && ok, "neumann with 0 terms: begin returned %d (expected a final 0) or v != eta b", s);
        lancbio_estimator_destroy(h);

        h = create_for(LANCBIO_METHOD_SUBBIO, LANCBIO_FLOAT64, CFG_RESULTS);
        memset(zero, 0, sizeof zero);
        s = lancbio_estimator_begin_f64(h, zero, request, N);
        lancbio_estimator_get_v_f64(h, v, N);
        CHECK(s >= 0 && s != LANCBIO_NEED_PRODUCT && memcmp(v, zero, sizeof v) == 0,
              "subbio with b = 0: begin returned %d, expected a final outcome with v = 0", s);
        lancbio_estimator_destroy(h);
    }

    /* A non-finite product passed to resume abandons the step: state as before begin. */
    for (m = LANCBIO_METHOD_LANCZOS; m <= LANCBIO_METHOD_RANDOM_NEUMANN; m++) {
        lancbio_estimator_t *ref = create_for(m, LANCBIO_FLOAT64, CFG_SEQUENCE);
        lancbio_estimator_t *h = create_for(m, LANCBIO_FLOAT64, CFG_SEQUENCE);
        seq_t sr, sh;
        double b[N], request[N], product[N];
        int32_t s;
        run_seq(ref, 0, SEQ, &sr, 0);
        run_seq(h, 0, 2, &sh, 1);
        rhs_for_step(2, b);
        s = lancbio_estimator_begin_f64(h, b, request, N);
        CHECK(s == LANCBIO_NEED_PRODUCT, "%s: begin returned %d", method_name(m), s);
        apply(request, product);
        product[5] = NAN;
        s = lancbio_estimator_resume_f64(h, product, request, N);
        CHECK(s == LANCBIO_ERR_NON_FINITE_PRODUCT && nonempty(lancbio_estimator_last_error(h)),
              "%s: resume with a NaN product returned %d", method_name(m), s);
        s = lancbio_estimator_resume_f64(h, product, request, N);
        CHECK(s == LANCBIO_ERR_INVALID_STATE, "%s: the step was not abandoned after a NaN product (resume returned %d)",
              method_name(m), s);
        run_seq(h, 2, SEQ, &sh, 1);
        compare_seq(&sr, &sh, 0, SEQ, "after a NaN product in resume", m);
        lancbio_estimator_destroy(ref);
        lancbio_estimator_destroy(h);
    }
}

/* ------------------------------------------------------------------------------------
 * callback failure atomicity
 * ----------------------------------------------------------------------------------*/
static void atomicity_case(int32_t method, int fail_kind, int32_t fail_code, int fail_step)
{
    lancbio_estimator_t *ref = create_for(method, LANCBIO_FLOAT64, CFG_SEQUENCE);
    lancbio_estimator_t *h = create_for(method, LANCBIO_FLOAT64, CFG_SEQUENCE);
    const char *kind = fail_kind == FAIL_CODE ? "callback code" : fail_kind == FAIL_NAN ? "NaN product" : "Inf product";
    const char *name = method_name(method);
    int32_t expected = fail_kind == FAIL_CODE ? LANCBIO_ERR_CALLBACK : LANCBIO_ERR_NON_FINITE_PRODUCT;
    seq_t sr, sh;
    int k;
    run_seq(ref, 0, SEQ, &sr, 0);
    for (k = 0; k < SEQ; k++) {
        double b[N];
        rhs_for_step(k, b);
        if (k == fail_step) {
            double v[N], v_before[N], committed[N], want[N];
            lancbio_step_info_t info, info_before, last;
            int32_t s;
            int i;
            for (i = 0; i < N; i++) v[i] = 777.0 + i;
            memcpy(v_before, v, sizeof v);
            memset(&info, 0x5A, sizeof info);
            info.struct_size = (int64_t)sizeof info;
            info_before = info;
            /* The 2nd product of the step, or its only one (a Lanczos step without restart). */
            long fail_call = sr.info[k].products >= 2 ? 2 : 1;
            op_clear();
            OP.fail_call = fail_call;
            OP.fail_kind = fail_kind;
            OP.fail_code = fail_code;
            s = lancbio_estimator_step_f64(h, hvp_f64, &OP, b, v, N, &info);
            CHECK(s == expected, "%s, %s at step %d: step returned %d, expected %d", name, kind, k, s, expected);
            CHECK(OP.calls == fail_call, "%s, %s: the step went on after the failing call (%ld calls)", name, kind,
                  OP.calls);
            CHECK(lancbio_estimator_callback_status(h) == (fail_kind == FAIL_CODE ? fail_code : 0),
                  "%s, %s: callback_status %d", name, kind, lancbio_estimator_callback_status(h));
            CHECK(nonempty(lancbio_estimator_last_error(h)), "%s, %s: last_error is empty", name, kind);
            CHECK(memcmp(v, v_before, sizeof v) == 0, "%s, %s: v was written by a failed step", name, kind);
            CHECK(memcmp(&info, &info_before, sizeof info) == 0, "%s, %s: info was written by a failed step", name, kind);
            /* The committed estimate and diagnostics are those before the failed call. */
            if (k == 0) memset(want, 0, sizeof want);
            else memcpy(want, sr.v[k - 1], sizeof want);
            info_init(&last);
            lancbio_estimator_get_v_f64(h, committed, N);
            lancbio_estimator_info(h, &last);
            CHECK(memcmp(committed, want, sizeof want) == 0, "%s, %s: committed estimate changed", name, kind);
            CHECK(k == 0 ? info_is_zero(&last) : info_equal(&last, &sr.info[k - 1]),
                  "%s, %s: lancbio_estimator_info changed by a failed step", name, kind);
        }
        sh.status[k] = step_cb(h, b, sh.v[k], &sh.info[k]);
    }
    compare_seq(&sr, &sh, 0, SEQ, kind, method);
    CHECK(lancbio_estimator_callback_status(h) == 0 && lancbio_estimator_last_error(h) &&
              lancbio_estimator_last_error(h)[0] == '\0',
          "%s, %s: callback_status / last_error not cleared by a successful step", name, kind);
    lancbio_estimator_destroy(ref);
    lancbio_estimator_destroy(h);
}

static void test_atomicity(void)
{
    int32_t m;
    for (m = LANCBIO_METHOD_LANCZOS; m <= LANCBIO_METHOD_RANDOM_NEUMANN; m++) {
        atomicity_case(m, FAIL_CODE, 7, 0);
        atomicity_case(m, FAIL_CODE, 7, 2);
        atomicity_case(m, FAIL_NAN, 0, 0);
        atomicity_case(m, FAIL_NAN, 0, 3);
        atomicity_case(m, FAIL_INF, 0, 2);
    }
    /* A negative callback code is kept as it is, not confused with a status. */
    atomicity_case(LANCBIO_METHOD_LANCZOS, FAIL_CODE, -3, 1);
    /* The same through the float32 callback. */
    {
        lancbio_estimator_t *h = create_for(LANCBIO_METHOD_LANCZOS, LANCBIO_FLOAT32, CFG_SEQUENCE);
        float b[N], v[N], v_before[N];
        int32_t s;
        int i;
        for (i = 0; i < N; i++) {
            b[i] = (float)B0[i];
            v[i] = v_before[i] = -1.0f;
        }
        op_clear();
        OP.fail_call = 2;
        OP.fail_kind = FAIL_CODE;
        OP.fail_code = 7;
        s = lancbio_estimator_step_f32(h, hvp_f32, &OP, b, v, N, NULL);
        CHECK(s == LANCBIO_ERR_CALLBACK && lancbio_estimator_callback_status(h) == 7 &&
                  memcmp(v, v_before, sizeof v) == 0,
              "float32 callback failure: status %d callback_status %d", s, lancbio_estimator_callback_status(h));
        op_clear();
        OP.fail_call = 1;
        OP.fail_kind = FAIL_NAN;
        s = lancbio_estimator_step_f32(h, hvp_f32, &OP, b, v, N, NULL);
        CHECK(s == LANCBIO_ERR_NON_FINITE_PRODUCT && memcmp(v, v_before, sizeof v) == 0,
              "float32 NaN product: status %d", s);
        lancbio_estimator_destroy(h);
    }
    op_clear();
}

/* ------------------------------------------------------------------------------------
 * bad input
 * ----------------------------------------------------------------------------------*/
static int sentinel_object;
#define SENTINEL_HANDLE ((lancbio_estimator_t *)(void *)&sentinel_object)

/* Every function taking a handle answers LANCBIO_ERR_INVALID_HANDLE for h. */
static void expect_invalid_handle(lancbio_estimator_t *h, const char *what)
{
    double b[N], v[N], v_before[N];
    float bf[N], vf[N];
    lancbio_step_info_t info;
    int64_t n = -1;
    int32_t method = -1, precision = -1;
    int i;
    for (i = 0; i < N; i++) {
        b[i] = B0[i];
        v[i] = v_before[i] = 3.0;
        bf[i] = (float)B0[i];
        vf[i] = 3.0f;
    }
    info_init(&info);
    op_clear();
#define EXPECT_INVALID(call)                                                                                        \
    do {                                                                                                            \
        int32_t s_ = (call);                                                                                        \
        CHECK(s_ == LANCBIO_ERR_INVALID_HANDLE, "%s handle: %s returned %d", what, #call, s_);                     \
    } while (0)
    EXPECT_INVALID(lancbio_estimator_reset(h));
    EXPECT_INVALID(lancbio_estimator_properties(h, &n, &method, &precision));
    EXPECT_INVALID(lancbio_estimator_info(h, &info));
    EXPECT_INVALID(lancbio_estimator_step_f64(h, hvp_f64, &OP, b, v, N, &info));
    EXPECT_INVALID(lancbio_estimator_step_f32(h, hvp_f32, &OP, bf, vf, N, &info));
    EXPECT_INVALID(lancbio_estimator_begin_f64(h, b, v, N));
    EXPECT_INVALID(lancbio_estimator_begin_f32(h, bf, vf, N));
    EXPECT_INVALID(lancbio_estimator_resume_f64(h, b, v, N));
    EXPECT_INVALID(lancbio_estimator_resume_f32(h, bf, vf, N));
    EXPECT_INVALID(lancbio_estimator_cancel(h));
    EXPECT_INVALID(lancbio_estimator_get_v_f64(h, v, N));
    EXPECT_INVALID(lancbio_estimator_get_v_f32(h, vf, N));
    EXPECT_INVALID(lancbio_estimator_set_v_f64(h, b, N));
    EXPECT_INVALID(lancbio_estimator_set_v_f32(h, bf, N));
#undef EXPECT_INVALID
    CHECK(nonempty(lancbio_estimator_last_error(h)), "%s handle: last_error is NULL or empty", what);
    CHECK(lancbio_estimator_callback_status(h) == 0, "%s handle: callback_status %d", what,
          lancbio_estimator_callback_status(h));
    CHECK(OP.calls == 0 && memcmp(v, v_before, sizeof v) == 0 && n == -1 && method == -1 && precision == -1 &&
              info_is_zero(&info),
          "%s handle: a rejected call ran the callback or wrote an output", what);
}

/* create must fail with `expected` and set *out to NULL. */
static void expect_create_fails(int64_t n, const lancbio_estimator_options_t *o, int32_t expected, const char *what)
{
    lancbio_estimator_t *h = SENTINEL_HANDLE;
    int32_t s = lancbio_estimator_create(n, o, &h);
    CHECK(s == expected, "create with %s returned %d, expected %d", what, s, expected);
    CHECK(h == NULL, "create with %s left *out non-NULL", what);
    if (h != NULL && h != SENTINEL_HANDLE) lancbio_estimator_destroy(h);
}

/* A handle call must return `expected` with a non-empty message. */
#define EXPECT_ERR(h, call, expected)                                                                               \
    do {                                                                                                            \
        int32_t s_ = (call);                                                                                        \
        CHECK(s_ == (expected), "%s returned %d, expected %d", #call, s_, (int)(expected));                        \
        CHECK(nonempty(lancbio_estimator_last_error(h)), "%s: last_error empty after status %d", #call, s_);      \
    } while (0)

/* A dimension within the library's size cap that no allocator will satisfy here: create
 * must answer LANCBIO_ERR_OUT_OF_MEMORY, not end the process.
 * Run in a child process whose address space is limited to 8 GiB, so that a crash is
 * reported as a failed check and a machine with enough memory is not exhausted. The child
 * reports through a pipe (under valgrind its exit status is valgrind's). */
static void check_allocation_failure(int32_t method, int64_t n)
{
#ifdef HAVE_POSIX
    pid_t pid;
    int status = 0, fds[2];
    char verdict = 0;
    if (pipe(fds) != 0) {
        CHECK(0, "pipe failed");
        return;
    }
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        lancbio_estimator_options_t o;
        lancbio_estimator_t *h = SENTINEL_HANDLE;
        struct rlimit limit;
        int32_t s;
        int devnull = open("/dev/null", O_WRONLY);
        close(fds[0]);
        if (devnull >= 0) dup2(devnull, 2); /* the Swift runtime's crash report */
        limit.rlim_cur = limit.rlim_max = (rlim_t)8 << 30;
        setrlimit(RLIMIT_AS, &limit);
        options_for(&o, method, LANCBIO_FLOAT64, CFG_RESULTS);
        o.m_max = 4096;
        s = lancbio_estimator_create(n, &o, &h);
        verdict = s == LANCBIO_ERR_OUT_OF_MEMORY && h == NULL ? 'y' : s == LANCBIO_OK ? 'c' : 's';
        if (s == LANCBIO_OK) lancbio_estimator_destroy(h);
        if (write(fds[1], &verdict, 1) != 1) _exit(2);
        _exit(0);
    }
    close(fds[1]);
    CHECK(pid > 0, "fork failed");
    if (pid > 0) {
        if (read(fds[0], &verdict, 1) != 1) verdict = 0;
        waitpid(pid, &status, 0);
        CHECK(verdict != 0, "create(%s, n = %lld) whose allocation fails killed the process (%s %d)", method_name(method),
              (long long)n, WIFSIGNALED(status) ? "signal" : "exit status",
              WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        CHECK(verdict == 0 || verdict == 'y', "create(%s, n = %lld) whose allocation fails %s", method_name(method),
              (long long)n, verdict == 'c' ? "succeeded within an 8 GiB address space" : "returned another status");
    }
    close(fds[0]);
#else
    (void)method;
    (void)n;
#endif
}

static void test_bad_input(void)
{
    lancbio_estimator_options_t o;
    lancbio_estimator_t *h, *h32, *dead = NULL;
    double b[N], v[N], v_before[N], request[N], product[N], nanb[N];
    float bf[N], vf[N], requestf[N];
    lancbio_step_info_t info;
    int32_t s;
    int i;

    /* NULL, destroyed and never-created handles. */
    expect_invalid_handle(NULL, "NULL");
    lancbio_estimator_destroy(NULL);
    CHECK(1, "destroy(NULL) returned");
    options_for(&o, LANCBIO_METHOD_CG, LANCBIO_FLOAT64, CFG_RESULTS);
    s = lancbio_estimator_create(N, &o, &dead);
    CHECK(s == LANCBIO_OK && dead != NULL, "create for the destroy test returned %d", s);
    lancbio_estimator_destroy(dead);
    expect_invalid_handle(dead, "destroyed");
    lancbio_estimator_destroy(dead); /* twice: ignored */
    CHECK(1, "destroying twice returned");
    expect_invalid_handle(SENTINEL_HANDLE, "never created");

    /* create: NULL pointers, sizes and options out of range. */
    options_for(&o, LANCBIO_METHOD_LANCZOS, LANCBIO_FLOAT64, CFG_RESULTS);
    expect_create_fails(N, NULL, LANCBIO_ERR_NULL_POINTER, "options NULL");
    s = lancbio_estimator_create(N, &o, NULL);
    CHECK(s == LANCBIO_ERR_NULL_POINTER, "create with out NULL returned %d", s);
    CHECK(lancbio_estimator_options_init(NULL, LANCBIO_METHOD_CG) == LANCBIO_ERR_NULL_POINTER,
          "options_init(NULL) is not LANCBIO_ERR_NULL_POINTER");
    {
        lancbio_estimator_options_t tmp;
        CHECK(lancbio_estimator_options_init(&tmp, 99) == LANCBIO_ERR_INVALID_ARGUMENT &&
                  lancbio_estimator_options_init(&tmp, 0) == LANCBIO_ERR_INVALID_ARGUMENT,
              "options_init with an unknown method is not LANCBIO_ERR_INVALID_ARGUMENT");
    }
    expect_create_fails(0, &o, LANCBIO_ERR_INVALID_ARGUMENT, "n = 0");
    expect_create_fails(-3, &o, LANCBIO_ERR_INVALID_ARGUMENT, "n = -3");
    expect_create_fails(INT64_MAX, &o, LANCBIO_ERR_INVALID_ARGUMENT, "n = INT64_MAX");
    check_allocation_failure(LANCBIO_METHOD_CG, (int64_t)1 << 33);        /* 10 vectors of 64 GiB */
    check_allocation_failure(LANCBIO_METHOD_LANCZOS, (int64_t)1 << 24);   /* a 512 GiB basis */
    {
        lancbio_estimator_options_t bad;
        bad = o; bad.m_max = 0;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "m_max = 0");
        bad = o; bad.m_max = 5000;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "m_max = 5000");
        bad = o; bad.m0 = 5; bad.m_max = 4;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "m0 > m_max");
        bad = o; bad.m0 = 0;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "m0 = 0");
        bad = o; bad.growth = 0.5;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "growth = 0.5");
        bad = o; bad.growth = NAN;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "growth = NaN");
        bad = o; bad.grow_every = 0;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "grow_every = 0");
        bad = o; bad.variant = 7;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "variant = 7");
        bad = o; bad.method = 99;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "method = 99");
        bad = o; bad.method = 0;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "method = 0");
        bad = o; bad.precision = 3;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "precision = 3");
        bad = o; bad.precision = 0;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "precision = 0");
        bad = o; bad.struct_size = OPTIONS_V1_SIZE - 8;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "struct_size below the first published layout");
        bad = o; bad.struct_size = 0;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "struct_size = 0");
        options_for(&bad, LANCBIO_METHOD_CG, LANCBIO_FLOAT64, CFG_RESULTS);
        bad.tolerance = -1e-8;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "CG tolerance < 0");
        bad.tolerance = 0; bad.max_iterations = -1;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "CG max_iterations = -1");
        options_for(&bad, LANCBIO_METHOD_MINRES, LANCBIO_FLOAT64, CFG_RESULTS);
        bad.tolerance = -1;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "MINRES tolerance < 0");
        lancbio_estimator_options_init(&bad, LANCBIO_METHOD_GD);
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "GD step_size unset");
        bad.step_size = -0.1;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "GD step_size < 0");
        bad.step_size = 0.05; bad.steps = 0;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "GD steps = 0");
        lancbio_estimator_options_init(&bad, LANCBIO_METHOD_NEUMANN);
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "Neumann step_size unset");
        lancbio_estimator_options_init(&bad, LANCBIO_METHOD_RANDOM_NEUMANN);
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "random Neumann step_size unset");
        lancbio_estimator_options_init(&bad, LANCBIO_METHOD_SUBBIO);
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "SubBiO theta0 unset");
        bad.theta0 = INFINITY;
        expect_create_fails(N, &bad, LANCBIO_ERR_INVALID_ARGUMENT, "SubBiO theta0 = inf");
    }

    /* Calls on a live float64 handle. */
    h = create_for(LANCBIO_METHOD_LANCZOS, LANCBIO_FLOAT64, CFG_SEQUENCE);
    h32 = create_for(LANCBIO_METHOD_LANCZOS, LANCBIO_FLOAT32, CFG_SEQUENCE);
    for (i = 0; i < N; i++) {
        b[i] = B0[i];
        v[i] = v_before[i] = 5.0;
        bf[i] = (float)B0[i];
        vf[i] = 5.0f;
        nanb[i] = B0[i];
    }
    op_clear();
    info_init(&info);
    EXPECT_ERR(h, lancbio_estimator_step_f64(h, NULL, &OP, b, v, N, &info), LANCBIO_ERR_NULL_POINTER);
    EXPECT_ERR(h, lancbio_estimator_step_f64(h, hvp_f64, &OP, NULL, v, N, &info), LANCBIO_ERR_NULL_POINTER);
    EXPECT_ERR(h, lancbio_estimator_step_f64(h, hvp_f64, &OP, b, NULL, N, &info), LANCBIO_ERR_NULL_POINTER);
    EXPECT_ERR(h32, lancbio_estimator_step_f32(h32, NULL, &OP, bf, vf, N, NULL), LANCBIO_ERR_NULL_POINTER);
    EXPECT_ERR(h32, lancbio_estimator_step_f32(h32, hvp_f32, &OP, NULL, vf, N, NULL), LANCBIO_ERR_NULL_POINTER);
    EXPECT_ERR(h, lancbio_estimator_begin_f64(h, NULL, request, N), LANCBIO_ERR_NULL_POINTER);
    EXPECT_ERR(h, lancbio_estimator_begin_f64(h, b, NULL, N), LANCBIO_ERR_NULL_POINTER);
    EXPECT_ERR(h, lancbio_estimator_get_v_f64(h, NULL, N), LANCBIO_ERR_NULL_POINTER);
    EXPECT_ERR(h, lancbio_estimator_set_v_f64(h, NULL, N), LANCBIO_ERR_NULL_POINTER);
    EXPECT_ERR(h, lancbio_estimator_info(h, NULL), LANCBIO_ERR_NULL_POINTER);

    /* n mismatch. */
    EXPECT_ERR(h, lancbio_estimator_step_f64(h, hvp_f64, &OP, b, v, N - 1, &info), LANCBIO_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(h, lancbio_estimator_step_f64(h, hvp_f64, &OP, b, v, N + 1, &info), LANCBIO_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(h, lancbio_estimator_step_f64(h, hvp_f64, &OP, b, v, 0, &info), LANCBIO_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(h, lancbio_estimator_step_f64(h, hvp_f64, &OP, b, v, -1, &info), LANCBIO_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(h, lancbio_estimator_step_f64(h, hvp_f64, &OP, b, v, INT64_MIN, &info), LANCBIO_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(h, lancbio_estimator_begin_f64(h, b, request, N + 1), LANCBIO_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(h, lancbio_estimator_get_v_f64(h, v, N - 1), LANCBIO_ERR_INVALID_ARGUMENT);
    EXPECT_ERR(h, lancbio_estimator_set_v_f64(h, b, N + 1), LANCBIO_ERR_INVALID_ARGUMENT);

    /* Non-finite input. */
    nanb[4] = NAN;
    EXPECT_ERR(h, lancbio_estimator_step_f64(h, hvp_f64, &OP, nanb, v, N, &info), LANCBIO_ERR_NON_FINITE_INPUT);
    EXPECT_ERR(h, lancbio_estimator_begin_f64(h, nanb, request, N), LANCBIO_ERR_NON_FINITE_INPUT);
    EXPECT_ERR(h, lancbio_estimator_set_v_f64(h, nanb, N), LANCBIO_ERR_NON_FINITE_INPUT);
    nanb[4] = -INFINITY;
    EXPECT_ERR(h, lancbio_estimator_step_f64(h, hvp_f64, &OP, nanb, v, N, &info), LANCBIO_ERR_NON_FINITE_INPUT);
    bf[2] = NAN;
    EXPECT_ERR(h32, lancbio_estimator_step_f32(h32, hvp_f32, &OP, bf, vf, N, NULL), LANCBIO_ERR_NON_FINITE_INPUT);
    bf[2] = (float)B0[2];

    /* Wrong precision, both ways. */
    EXPECT_ERR(h, lancbio_estimator_step_f32(h, hvp_f32, &OP, bf, vf, N, NULL), LANCBIO_ERR_WRONG_PRECISION);
    EXPECT_ERR(h, lancbio_estimator_begin_f32(h, bf, requestf, N), LANCBIO_ERR_WRONG_PRECISION);
    EXPECT_ERR(h, lancbio_estimator_resume_f32(h, bf, requestf, N), LANCBIO_ERR_WRONG_PRECISION);
    EXPECT_ERR(h, lancbio_estimator_get_v_f32(h, vf, N), LANCBIO_ERR_WRONG_PRECISION);
    EXPECT_ERR(h, lancbio_estimator_set_v_f32(h, bf, N), LANCBIO_ERR_WRONG_PRECISION);
    EXPECT_ERR(h32, lancbio_estimator_step_f64(h32, hvp_f64, &OP, b, v, N, NULL), LANCBIO_ERR_WRONG_PRECISION);
    EXPECT_ERR(h32, lancbio_estimator_begin_f64(h32, b, request, N), LANCBIO_ERR_WRONG_PRECISION);
    EXPECT_ERR(h32, lancbio_estimator_get_v_f64(h32, v, N), LANCBIO_ERR_WRONG_PRECISION);
    EXPECT_ERR(h32, lancbio_estimator_set_v_f64(h32, b, N), LANCBIO_ERR_WRONG_PRECISION);

    CHECK(OP.calls == 0, "rejected calls ran the callback %ld times", OP.calls);
    CHECK(memcmp(v, v_before, sizeof v) == 0 && info_is_zero(&info), "rejected calls wrote v or info");

    /* State errors. */
    EXPECT_ERR(h, lancbio_estimator_resume_f64(h, b, request, N), LANCBIO_ERR_INVALID_STATE);
    s = lancbio_estimator_begin_f64(h, b, request, N);
    CHECK(s == LANCBIO_NEED_PRODUCT, "begin returned %d", s);
    EXPECT_ERR(h, lancbio_estimator_begin_f64(h, b, request, N), LANCBIO_ERR_INVALID_STATE);
    EXPECT_ERR(h, lancbio_estimator_set_v_f64(h, b, N), LANCBIO_ERR_INVALID_STATE);
    EXPECT_ERR(h, lancbio_estimator_step_f64(h, hvp_f64, &OP, b, v, N, NULL), LANCBIO_ERR_INVALID_STATE);
    /* NULL and size errors during a step (whether they also abandon the step is checked
     * nowhere: the header's general rule and resume's own paragraph disagree). */
    EXPECT_ERR(h, lancbio_estimator_resume_f64(h, NULL, request, N), LANCBIO_ERR_NULL_POINTER);
    EXPECT_ERR(h, lancbio_estimator_resume_f64(h, product, NULL, N), LANCBIO_ERR_NULL_POINTER);
    EXPECT_ERR(h, lancbio_estimator_resume_f64(h, product, request, N - 1), LANCBIO_ERR_INVALID_ARGUMENT);
    CHECK(lancbio_estimator_cancel(h) == LANCBIO_OK, "cancel failed");
    CHECK(lancbio_estimator_cancel(h) == LANCBIO_OK, "cancel with no step in progress failed");

    /* The message is cleared on entry of the next successful call. */
    EXPECT_ERR(h, lancbio_estimator_get_v_f64(h, NULL, N), LANCBIO_ERR_NULL_POINTER);
    s = lancbio_estimator_get_v_f64(h, v, N);
    CHECK(s == LANCBIO_OK && lancbio_estimator_last_error(h) != NULL && lancbio_estimator_last_error(h)[0] == '\0',
          "last_error not \"\" after a successful call that followed a failed one (\"%s\")",
          lancbio_estimator_last_error(h) ? lancbio_estimator_last_error(h) : "(null)");
    for (i = 0; i < N; i++) CHECK(v[i] == 0.0, "the estimate after rejected calls is not 0 (v[%d] = %g)", i, v[i]);

    /* After all this the handle behaves exactly like a fresh one. */
    {
        lancbio_estimator_t *fresh = create_for(LANCBIO_METHOD_LANCZOS, LANCBIO_FLOAT64, CFG_SEQUENCE);
        seq_t sf, sh;
        run_seq(fresh, 0, SEQ, &sf, 0);
        run_seq(h, 0, SEQ, &sh, 0);
        compare_seq(&sf, &sh, 0, SEQ, "after rejected calls", LANCBIO_METHOD_LANCZOS);
        lancbio_estimator_destroy(fresh);
    }
    (void)product;
    lancbio_estimator_destroy(h);
    lancbio_estimator_destroy(h32);
}

/* ------------------------------------------------------------------------------------
 * struct forward compatibility
 * ----------------------------------------------------------------------------------*/
#define EXTRA 16
typedef union {
    lancbio_estimator_options_t o;
    unsigned char bytes[sizeof(lancbio_estimator_options_t) + EXTRA];
} big_options_t;

typedef union {
    lancbio_step_info_t i;
    unsigned char bytes[sizeof(lancbio_step_info_t) + EXTRA];
} big_info_t;

static void test_forward(void)
{
    big_options_t big;
    big_info_t bi;
    lancbio_estimator_t *h = NULL;
    lancbio_step_info_t small;
    double v[N], zero[N];
    int32_t s;
    int i, trailing_kept;

    /* Options from a newer header: trailing zero bytes are accepted... */
    memset(&big, 0, sizeof big);
    options_for(&big.o, LANCBIO_METHOD_CG, LANCBIO_FLOAT64, CFG_RESULTS);
    big.o.struct_size = (int64_t)(sizeof(lancbio_estimator_options_t) + EXTRA);
    s = lancbio_estimator_create(N, &big.o, &h);
    CHECK(s == LANCBIO_OK && h != NULL, "options with %d trailing zero bytes rejected (%d)", EXTRA, s);
    if (h) {
        step_cb(h, B0, v, NULL);
        CHECK(dist(v, XSTAR) <= 1e-8 * norm(XSTAR), "options with trailing zero bytes: the options were misread");
    }
    lancbio_estimator_destroy(h);
    /* ...a non-zero one is not (a field this library cannot honour). */
    big.bytes[sizeof(lancbio_estimator_options_t) + 5] = 1;
    expect_create_fails(N, &big.o, LANCBIO_ERR_INVALID_ARGUMENT, "a non-zero trailing byte");
    big.bytes[sizeof(lancbio_estimator_options_t) + 5] = 0;
    big.bytes[sizeof(lancbio_estimator_options_t) + EXTRA - 1] = 0x80;
    expect_create_fails(N, &big.o, LANCBIO_ERR_INVALID_ARGUMENT, "a non-zero last trailing byte");

    /* An older caller: options and info of an earlier published size. The appended options
     * take their defaults (the bytes after struct_size are garbage and must not be read:
     * exact_residual would add a product to each step), and info is written only up to the
     * caller's struct_size. */
    {
        static const int64_t option_sizes[] = {OPTIONS_V1_SIZE, OPTIONS_V2_SIZE};
        static const int64_t info_sizes[] = {INFO_V1_SIZE, INFO_V2_SIZE};
        int version;
        for (version = 0; version < 2; version++) {
            lancbio_estimator_options_t full, old;
            lancbio_estimator_t *a = NULL, *b = NULL;
            lancbio_step_info_t ia, oi;
            double va[N], vb[N];
            int32_t sa, sb;
            int64_t osize = option_sizes[version], isize = info_sizes[version];
            lancbio_estimator_options_init(&full, LANCBIO_METHOD_LANCZOS);
            old = full;
            old.struct_size = osize;
            memset((char *)&old + osize, 0xFF, sizeof old - (size_t)osize);
            CHECK(lancbio_estimator_create(N, &full, &a) == LANCBIO_OK, "create with the full options");
            CHECK(lancbio_estimator_create(N, &old, &b) == LANCBIO_OK, "create with options of size %lld",
                  (long long)osize);
            memset(&oi, 0xA5, sizeof oi);
            oi.struct_size = isize;
            info_init(&ia);
            for (i = 0; i < 30 && a && b; i++) {
                sa = lancbio_estimator_step_f64(a, hvp_f64, &OP, B0, va, N, &ia);
                sb = lancbio_estimator_step_f64(b, hvp_f64, &OP, B0, vb, N, &oi);
                CHECK(sa == sb && memcmp(va, vb, sizeof va) == 0 && ia.products == oi.products,
                      "step %d: options of size %lld differ from the defaults", (int)i, (long long)osize);
            }
            CHECK(oi.struct_size == isize && ((unsigned char *)&oi)[isize] == 0xA5,
                  "info of size %lld: written past its struct_size", (long long)isize);
            lancbio_estimator_destroy(a);
            lancbio_estimator_destroy(b);
        }
    }

    /* Info: too small is rejected, nothing written and no step taken. */
    h = create_for(LANCBIO_METHOD_CG, LANCBIO_FLOAT64, CFG_RESULTS);
    info_init(&small);
    small.struct_size = INFO_V1_SIZE - 8;
    small.status = 99;
    EXPECT_ERR(h, lancbio_estimator_info(h, &small), LANCBIO_ERR_INVALID_ARGUMENT);
    small.struct_size = 0;
    EXPECT_ERR(h, lancbio_estimator_info(h, &small), LANCBIO_ERR_INVALID_ARGUMENT);
    small.struct_size = INFO_V1_SIZE - 8;
    op_clear();
    for (i = 0; i < N; i++) v[i] = 9.0;
    EXPECT_ERR(h, lancbio_estimator_step_f64(h, hvp_f64, &OP, B0, v, N, &small), LANCBIO_ERR_INVALID_ARGUMENT);
    CHECK(OP.calls == 0 && v[0] == 9.0 && small.status == 99, "a step with a too-small info struct ran or wrote");
    memset(zero, 0, sizeof zero);
    lancbio_estimator_get_v_f64(h, v, N);
    CHECK(memcmp(v, zero, sizeof v) == 0, "a rejected step changed the estimate");

    /* Info: a larger struct (newer header) gets the known fields; the rest is untouched. */
    memset(&bi, 0xA5, sizeof bi);
    bi.i.struct_size = (int64_t)(sizeof(lancbio_step_info_t) + EXTRA);
    s = lancbio_estimator_info(h, &bi.i);
    trailing_kept = 1;
    for (i = 0; i < EXTRA; i++) trailing_kept = trailing_kept && bi.bytes[sizeof(lancbio_step_info_t) + i] == 0xA5;
    CHECK(s == LANCBIO_OK && info_is_zero(&bi.i), "info into a larger struct: status %d, fields not all zero", s);
    CHECK(bi.i.struct_size == (int64_t)(sizeof(lancbio_step_info_t) + EXTRA) && trailing_kept,
          "info into a larger struct: struct_size or trailing bytes overwritten");
    memset(&bi, 0xA5, sizeof bi);
    bi.i.struct_size = (int64_t)(sizeof(lancbio_step_info_t) + EXTRA);
    op_clear();
    s = lancbio_estimator_step_f64(h, hvp_f64, &OP, B0, v, N, &bi.i);
    trailing_kept = 1;
    for (i = 0; i < EXTRA; i++) trailing_kept = trailing_kept && bi.bytes[sizeof(lancbio_step_info_t) + i] == 0xA5;
    CHECK(s >= 0 && bi.i.status == s && bi.i.products == OP.calls && trailing_kept &&
              bi.i.struct_size == (int64_t)(sizeof(lancbio_step_info_t) + EXTRA),
          "step into a larger info struct: status %d, products %lld, trailing bytes kept %d", s,
          (long long)bi.i.products, trailing_kept);
    lancbio_estimator_destroy(h);
}

/* ------------------------------------------------------------------------------------
 * handles: independence, reset, cancel
 * ----------------------------------------------------------------------------------*/
static void test_handles(void)
{
    int32_t m;
    /* Two handles interleaved (callback steps, then reverse-communication steps whose
     * begin/resume calls alternate) give the results of each run alone. */
    {
        lancbio_estimator_t *a = create_for(LANCBIO_METHOD_LANCZOS, LANCBIO_FLOAT64, CFG_SEQUENCE);
        lancbio_estimator_t *c = create_for(LANCBIO_METHOD_CG, LANCBIO_FLOAT64, CFG_SEQUENCE);
        lancbio_estimator_t *a2 = create_for(LANCBIO_METHOD_LANCZOS, LANCBIO_FLOAT64, CFG_SEQUENCE);
        lancbio_estimator_t *c2 = create_for(LANCBIO_METHOD_CG, LANCBIO_FLOAT64, CFG_SEQUENCE);
        seq_t sa, sc, ia, ic;
        int k;
        run_seq(a, 0, SEQ, &sa, 0);
        run_seq(c, 0, SEQ, &sc, 0);
        for (k = 0; k < SEQ; k++) {
            run_seq(a2, k, k + 1, &ia, 0);
            run_seq(c2, k, k + 1, &ic, 0);
        }
        compare_seq(&sa, &ia, 0, SEQ, "interleaved callback steps", LANCBIO_METHOD_LANCZOS);
        compare_seq(&sc, &ic, 0, SEQ, "interleaved callback steps", LANCBIO_METHOD_CG);
        lancbio_estimator_reset(a2);
        lancbio_estimator_reset(c2);
        for (k = 0; k < SEQ; k++) {
            double b[N], ra[N], rc[N], pa[N], pc[N];
            int32_t s1, s2;
            int guard = 0;
            rhs_for_step(k, b);
            s1 = lancbio_estimator_begin_f64(a2, b, ra, N);
            s2 = lancbio_estimator_begin_f64(c2, b, rc, N);
            while ((s1 == LANCBIO_NEED_PRODUCT || s2 == LANCBIO_NEED_PRODUCT) && guard++ < 10000) {
                if (s1 == LANCBIO_NEED_PRODUCT) {
                    apply(ra, pa);
                    s1 = lancbio_estimator_resume_f64(a2, pa, ra, N);
                }
                if (s2 == LANCBIO_NEED_PRODUCT) {
                    apply(rc, pc);
                    s2 = lancbio_estimator_resume_f64(c2, pc, rc, N);
                }
            }
            ia.status[k] = s1;
            ic.status[k] = s2;
            lancbio_estimator_get_v_f64(a2, ia.v[k], N);
            lancbio_estimator_get_v_f64(c2, ic.v[k], N);
            info_init(&ia.info[k]);
            info_init(&ic.info[k]);
            lancbio_estimator_info(a2, &ia.info[k]);
            lancbio_estimator_info(c2, &ic.info[k]);
        }
        compare_seq(&sa, &ia, 0, SEQ, "interleaved reverse communication", LANCBIO_METHOD_LANCZOS);
        compare_seq(&sc, &ic, 0, SEQ, "interleaved reverse communication", LANCBIO_METHOD_CG);
        lancbio_estimator_destroy(a);
        lancbio_estimator_destroy(c);
        lancbio_estimator_destroy(a2);
        lancbio_estimator_destroy(c2);
    }

    for (m = LANCBIO_METHOD_LANCZOS; m <= LANCBIO_METHOD_RANDOM_NEUMANN; m++) {
        lancbio_estimator_t *ref = create_for(m, LANCBIO_FLOAT64, CFG_SEQUENCE);
        lancbio_estimator_t *h = create_for(m, LANCBIO_FLOAT64, CFG_SEQUENCE);
        seq_t sr, sh;
        double v[N], zero[N], b[N], request[N], product[N];
        lancbio_step_info_t info;
        int32_t s;
        run_seq(ref, 0, SEQ, &sr, 0);

        /* reset: back to the state of a fresh handle. */
        run_seq(h, 0, 3, &sh, 0);
        CHECK(lancbio_estimator_reset(h) == LANCBIO_OK, "%s: reset failed", method_name(m));
        memset(zero, 0, sizeof zero);
        lancbio_estimator_get_v_f64(h, v, N);
        info_init(&info);
        lancbio_estimator_info(h, &info);
        CHECK(memcmp(v, zero, sizeof v) == 0 && info_is_zero(&info), "%s: after reset v or info is not zero",
              method_name(m));
        run_seq(h, 0, SEQ, &sh, 0);
        compare_seq(&sr, &sh, 0, SEQ, "after reset", m);

        /* reset during a reverse-communication step ends the step. */
        rhs_for_step(0, b);
        lancbio_estimator_begin_f64(h, b, request, N);
        lancbio_estimator_reset(h);
        apply(request, product);
        s = lancbio_estimator_resume_f64(h, product, request, N);
        CHECK(s == LANCBIO_ERR_INVALID_STATE, "%s: resume after reset returned %d", method_name(m), s);
        run_seq(h, 0, SEQ, &sh, 0);
        compare_seq(&sr, &sh, 0, SEQ, "reset during a step", m);

        /* cancel mid-step: the state is as before begin. */
        lancbio_estimator_reset(h);
        run_seq(h, 0, 2, &sh, 1);
        rhs_for_step(2, b);
        s = lancbio_estimator_begin_f64(h, b, request, N);
        if (s == LANCBIO_NEED_PRODUCT) {
            apply(request, product);
            s = lancbio_estimator_resume_f64(h, product, request, N);
        }
        CHECK(s == LANCBIO_NEED_PRODUCT, "%s: the step did not need two products (status %d)", method_name(m), s);
        CHECK(lancbio_estimator_cancel(h) == LANCBIO_OK, "%s: cancel failed", method_name(m));
        lancbio_estimator_get_v_f64(h, v, N);
        info_init(&info);
        lancbio_estimator_info(h, &info);
        CHECK(memcmp(v, sr.v[1], sizeof v) == 0 && info_equal(&info, &sr.info[1]),
              "%s: after cancel the estimate or info is not that of the last completed step", method_name(m));
        s = lancbio_estimator_resume_f64(h, product, request, N);
        CHECK(s == LANCBIO_ERR_INVALID_STATE, "%s: resume after cancel returned %d", method_name(m), s);
        run_seq(h, 2, SEQ, &sh, 1);
        compare_seq(&sr, &sh, 0, SEQ, "cancel mid-step", m);
        lancbio_estimator_destroy(ref);
        lancbio_estimator_destroy(h);
    }

    /* set_v then get_v round-trips; the next step warm-starts from it. */
    {
        lancbio_estimator_t *h = create_for(LANCBIO_METHOD_CG, LANCBIO_FLOAT64, CFG_RESULTS);
        double v[N];
        lancbio_step_info_t info;
        CHECK(lancbio_estimator_set_v_f64(h, XSTAR, N) == LANCBIO_OK, "set_v failed");
        lancbio_estimator_get_v_f64(h, v, N);
        CHECK(memcmp(v, XSTAR, sizeof v) == 0, "get_v after set_v differs");
        step_cb(h, B0, v, &info);
        CHECK(info.products == 1 && info.iterations == 0, "cg from the exact solution used %lld products",
              (long long)info.products);
        lancbio_estimator_destroy(h);
    }
}

/* ------------------------------------------------------------------------------------
 * properties
 * ----------------------------------------------------------------------------------*/
static void test_properties(void)
{
    int32_t m, p;
    for (m = LANCBIO_METHOD_LANCZOS; m <= LANCBIO_METHOD_RANDOM_NEUMANN; m++)
        for (p = LANCBIO_FLOAT64; p <= LANCBIO_FLOAT32; p++) {
            lancbio_estimator_options_t o;
            lancbio_estimator_t *h = NULL;
            int64_t n = 0;
            int32_t method = 0, precision = 0, s;
            options_for(&o, m, p, CFG_SEQUENCE);
            s = lancbio_estimator_create(7 + m, &o, &h);
            CHECK(s == LANCBIO_OK, "create(%s, precision %d) returned %d", method_name(m), p, s);
            s = lancbio_estimator_properties(h, &n, &method, &precision);
            CHECK(s == LANCBIO_OK && n == 7 + m && method == m && precision == p,
                  "properties of (%s, precision %d, n %d): status %d n %lld method %d precision %d", method_name(m), p,
                  7 + m, s, (long long)n, method, precision);
            CHECK(lancbio_estimator_properties(h, NULL, NULL, NULL) == LANCBIO_OK,
                  "properties with NULL outputs failed");
            lancbio_estimator_destroy(h);
        }
}

/* lancbio_bilevel_step_sizes: the header's schedule, lambda_k = max(lr_x_min, lr_x / k^b),
 * theta_k likewise, theta 0 with lr_y_auto; bad options and k < 1 refused. */
static void test_step_sizes(void)
{
    lancbio_bilevel_options_t o;
    double lx = -1.0, ly = -1.0;
    int64_t k;
    lancbio_bilevel_options_init(&o);
    o.lr_x = 0.8;
    o.lr_y = 0.3;
    o.lr_x_decay = 0.5;
    o.lr_x_min = 0.1;
    for (k = 1; k <= 100; k *= 3) {
        double expected = 0.8 / sqrt((double)k);
        if (expected < 0.1) expected = 0.1;
        CHECK(lancbio_bilevel_step_sizes(&o, k, &lx, &ly) == LANCBIO_OK, "step sizes at k = %lld", (long long)k);
        CHECK(fabs(lx - expected) <= 1e-15 * expected && ly == 0.3, "k = %lld: lr_x %.17g (expected %.17g), lr_y %.17g",
              (long long)k, lx, expected, ly);
    }
    o.lr_y_auto = 1;
    CHECK(lancbio_bilevel_step_sizes(&o, 2, &lx, &ly) == LANCBIO_OK && ly == 0.0, "lr_y_auto: theta %g", ly);
    CHECK(lancbio_bilevel_step_sizes(&o, 0, &lx, &ly) == LANCBIO_ERR_INVALID_ARGUMENT, "k = 0 refused");
    o.lr_x = -1.0;
    CHECK(lancbio_bilevel_step_sizes(&o, 1, &lx, &ly) == LANCBIO_ERR_INVALID_ARGUMENT, "lr_x < 0 refused: %s",
          lancbio_last_error());
    CHECK(lancbio_bilevel_step_sizes(NULL, 1, &lx, &ly) == LANCBIO_ERR_NULL_POINTER, "NULL options");
    CHECK(lancbio_bilevel_step_sizes(&o, 1, NULL, &ly) == LANCBIO_ERR_NULL_POINTER, "NULL lr_x");
}

int main(void)
{
    build_problem();
    run_group("versions", test_versions);
    run_group("defaults", test_defaults);
    run_group("results", test_results);
    run_group("float32", test_float32);
    run_group("reverse communication", test_reverse);
    run_group("callback atomicity", test_atomicity);
    run_group("bad input", test_bad_input);
    run_group("forward compatibility", test_forward);
    run_group("handles", test_handles);
    run_group("properties", test_properties);
    run_group("step sizes", test_step_sizes);
    return check_summary();
}
