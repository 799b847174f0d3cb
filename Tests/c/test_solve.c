/*
 * test_solve.c: the one-shot solves (lancbio_solve_f64/_f32) and the per-thread message of
 * calls that have no handle (lancbio_last_error), through the C ABI only.
 *
 * The operator is A = tridiag(-1, 2 + shift, -1) of size N (SPD for shift > 0, with
 * eigenvalues shift + 2 - 2 cos(k pi / (N + 1))), applied by a callback that counts its
 * calls; references come from the Thomas algorithm in this file, and every residual the
 * library reports is recomputed here from one more product. The last line is
 * "N passed, M failed"; the exit status is non-zero if any check failed.
 */
#include "lancbio.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define N 60

#include "check.h"

/* The operator's state: its shift, the calls made, and a call after which it fails. */
typedef struct {
    double shift;
    int64_t calls;
    int64_t fail_at; /* 0: never */
} operator_t;

static void apply(const operator_t *op, const double *in, double *out, int64_t n)
{
    int64_t i;
    for (i = 0; i < n; i++) {
        double left = i > 0 ? in[i - 1] : 0.0, right = i + 1 < n ? in[i + 1] : 0.0;
        out[i] = (2.0 + op->shift) * in[i] - left - right;
    }
}

static int32_t hvp64(const double *in, double *out, int64_t n, void *user_data)
{
    operator_t *op = (operator_t *)user_data;
    op->calls++;
    if (op->fail_at != 0 && op->calls == op->fail_at)
        return 7;
    apply(op, in, out, n);
    return 0;
}

static int32_t hvp32(const float *in, float *out, int64_t n, void *user_data)
{
    operator_t *op = (operator_t *)user_data;
    double a[N] = {0}, b[N] = {0};
    int64_t i;
    op->calls++;
    for (i = 0; i < n; i++)
        a[i] = in[i];
    apply(op, a, b, n);
    for (i = 0; i < n; i++)
        out[i] = (float)b[i];
    return 0;
}

/* x = A^{-1} b by the Thomas algorithm (the reference). */
static void reference(double shift, const double *b, double *x)
{
    double c[N], d[N];
    int i;
    double diag = 2.0 + shift;
    c[0] = -1.0 / diag;
    d[0] = b[0] / diag;
    for (i = 1; i < N; i++) {
        double m = diag + c[i - 1];
        c[i] = -1.0 / m;
        d[i] = (b[i] + d[i - 1]) / m;
    }
    x[N - 1] = d[N - 1];
    for (i = N - 2; i >= 0; i--)
        x[i] = d[i] - c[i] * x[i + 1];
}

static double norm(const double *x, int n)
{
    double s = 0;
    int i;
    for (i = 0; i < n; i++)
        s += x[i] * x[i];
    return sqrt(s);
}

/* ||A x - b||, computed here. */
static double true_residual(double shift, const double *x, const double *b)
{
    operator_t op = {0};
    double ax[N];
    int i;
    op.shift = shift;
    apply(&op, x, ax, N);
    for (i = 0; i < N; i++)
        ax[i] -= b[i];
    return norm(ax, N);
}

static double relative_error(const double *x, const double *y)
{
    double d[N];
    int i;
    for (i = 0; i < N; i++)
        d[i] = x[i] - y[i];
    return norm(d, N) / norm(y, N);
}

static void fill_rhs(double *b)
{
    int i;
    for (i = 0; i < N; i++)
        b[i] = sin(0.37 * (i + 1)) + 0.5;
}

static lancbio_estimator_options_t options(int32_t method, double step_size)
{
    lancbio_estimator_options_t o;
    lancbio_estimator_options_init(&o, method);
    o.step_size = step_size;
    return o;
}

/* Every method converges to the dense reference, with a true residual that is the one
 * reported, and products that are the callback's calls. */
static void test_methods_converge(void)
{
    /* shift 1: eigenvalues in (1, 5); eta = 2 / (1 + 5) is the best gradient step. */
    struct {
        int32_t method;
        double step_size, tol;
        int64_t budget;
        const char *name;
    } cases[] = {
        {LANCBIO_METHOD_LANCZOS, 0, 1e-10, 0, "lanczos"},
        {LANCBIO_METHOD_CG, 0, 1e-10, 0, "cg"},
        {LANCBIO_METHOD_MINRES, 0, 1e-10, 0, "minres"},
        {LANCBIO_METHOD_GD, 1.0 / 3.0, 1e-8, 2000, "gd"},
        {LANCBIO_METHOD_NEUMANN, 1.0 / 3.0, 1e-8, 2000, "neumann"},
    };
    size_t c;
    double b[N], want[N];
    fill_rhs(b);
    reference(1.0, b, want);
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lancbio_estimator_options_t o = options(cases[c].method, cases[c].step_size);
        operator_t op = {1.0, 0, 0};
        lancbio_solve_result_t r;
        lancbio_step_info_t last;
        double x[N] = {0};
        int32_t s;
        r.struct_size = sizeof r;
        last.struct_size = sizeof last;
        s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, cases[c].tol, cases[c].budget, &r, &last);
        CHECK(s == LANCBIO_OK, "%s: status %d (%s)", cases[c].name, s, lancbio_last_error());
        CHECK(r.converged == 1, "%s: not converged", cases[c].name);
        CHECK(relative_error(x, want) < 100 * cases[c].tol * 5, "%s: relative error %.3g against the reference",
              cases[c].name, relative_error(x, want));
        CHECK(fabs(r.residual - true_residual(1.0, x, b)) <= 1e-12 * norm(b, N),
              "%s: reported residual %.6g, true %.6g", cases[c].name, r.residual, true_residual(1.0, x, b));
        CHECK(r.residual <= cases[c].tol * norm(b, N), "%s: residual %.3g above tol ||b||", cases[c].name, r.residual);
        CHECK(r.products == op.calls, "%s: %lld products reported, %lld calls made", cases[c].name,
              (long long)r.products, (long long)op.calls);
        CHECK(fabs(r.rhs_norm - norm(b, N)) <= 1e-14 * norm(b, N), "%s: rhs_norm %.17g", cases[c].name, r.rhs_norm);
        CHECK(strcmp(lancbio_last_error(), "") == 0, "%s: last error after success is \"%s\"", cases[c].name,
              lancbio_last_error());
    }
    {
        /* On this well-conditioned operator (kappa 5) Lanczos needs about as many products
         * as CG: at most the CG count plus its residual check and one restart. */
        lancbio_estimator_options_t lo = options(LANCBIO_METHOD_LANCZOS, 0), co = options(LANCBIO_METHOD_CG, 0);
        operator_t lop = {1.0, 0, 0}, cop = {1.0, 0, 0};
        lancbio_solve_result_t lr, cr;
        double x1[N] = {0}, x2[N] = {0};
        lr.struct_size = cr.struct_size = sizeof lr;
        lancbio_solve_f64(&lo, hvp64, &lop, b, x1, N, 1e-10, 0, &lr, NULL);
        lancbio_solve_f64(&co, hvp64, &cop, b, x2, N, 1e-10, 0, &cr, NULL);
        CHECK(lr.products <= cr.products + 2, "lanczos used %lld products, cg %lld", (long long)lr.products,
              (long long)cr.products);
    }
}

/* A budget too small for the tolerance: a usable x, BUDGET_REACHED, the true residual. */
static void test_budget(void)
{
    lancbio_estimator_options_t o = options(LANCBIO_METHOD_CG, 0);
    operator_t op = {0.01, 0, 0};
    lancbio_solve_result_t r;
    double b[N], x[N] = {0};
    int32_t s;
    fill_rhs(b);
    r.struct_size = sizeof r;
    s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, 1e-14, 3, &r, NULL);
    CHECK(s == LANCBIO_BUDGET_REACHED, "budget 3: status %d", s);
    CHECK(r.converged == 0 && r.iterations == 3, "budget 3: converged %d iterations %lld", r.converged,
          (long long)r.iterations);
    CHECK(fabs(r.residual - true_residual(0.01, x, b)) <= 1e-12 * norm(b, N), "budget 3: residual %.6g, true %.6g",
          r.residual, true_residual(0.01, x, b));
    CHECK(r.products == op.calls, "budget 3: %lld products, %lld calls", (long long)r.products, (long long)op.calls);
    {
        lancbio_estimator_options_t lo = options(LANCBIO_METHOD_LANCZOS, 0);
        operator_t lop = {0.01, 0, 0};
        double y[N] = {0};
        s = lancbio_solve_f64(&lo, hvp64, &lop, b, y, N, 1e-14, 5, &r, NULL);
        CHECK(s == LANCBIO_BUDGET_REACHED && r.products == lop.calls && r.products <= 6,
              "lanczos budget 5: status %d, %lld products, %lld calls", s, (long long)r.products,
              (long long)lop.calls);
        CHECK(fabs(r.residual - true_residual(0.01, y, b)) <= 1e-12 * norm(b, N),
              "lanczos budget 5: the residual is of the returned x (%.6g against %.6g)", r.residual,
              true_residual(0.01, y, b));
    }
}

/* x on entry is the initial guess: from the solution, Lanczos is done at once. */
static void test_warm_start(void)
{
    lancbio_estimator_options_t o = options(LANCBIO_METHOD_LANCZOS, 0);
    operator_t op = {1.0, 0, 0};
    lancbio_solve_result_t r;
    double b[N], x[N];
    int32_t s;
    fill_rhs(b);
    reference(1.0, b, x);
    r.struct_size = sizeof r;
    s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, 1e-8, 0, &r, NULL);
    CHECK(s == LANCBIO_OK && r.converged, "warm start: status %d", s);
    CHECK(r.products <= 3, "warm start from the solution used %lld products", (long long)r.products);
}

static void test_float32(void)
{
    lancbio_estimator_options_t o = options(LANCBIO_METHOD_LANCZOS, 0);
    operator_t op = {1.0, 0, 0};
    lancbio_solve_result_t r;
    float b[N], x[N] = {0};
    double bd[N], xd[N], want[N];
    int i;
    int32_t s;
    fill_rhs(bd);
    for (i = 0; i < N; i++)
        b[i] = (float)bd[i];
    for (i = 0; i < N; i++)
        bd[i] = b[i];
    reference(1.0, bd, want);
    o.precision = LANCBIO_FLOAT32;
    r.struct_size = sizeof r;
    s = lancbio_solve_f32(&o, hvp32, &op, b, x, N, 1e-5, 0, &r, NULL);
    for (i = 0; i < N; i++)
        xd[i] = x[i];
    CHECK(s == LANCBIO_OK && r.converged, "float32: status %d (%s)", s, lancbio_last_error());
    CHECK(relative_error(xd, want) < 1e-4, "float32: relative error %.3g", relative_error(xd, want));
}

/* Bad input and failures: a status, the reason in lancbio_last_error(), x unchanged. */
static void test_errors(void)
{
    double b[N], x[N], before[N];
    lancbio_solve_result_t r;
    lancbio_estimator_options_t o;
    operator_t op = {1.0, 0, 0};
    int32_t s;
    int i;
    fill_rhs(b);
    for (i = 0; i < N; i++)
        x[i] = before[i] = 0.25 * i;
    r.struct_size = sizeof r;

    o = options(LANCBIO_METHOD_SUBBIO, 0);
    o.theta0 = 0.1;
    s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, 1e-8, 0, &r, NULL);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT && strstr(lancbio_last_error(), "subbio") != NULL,
          "subbio: status %d, message \"%s\"", s, lancbio_last_error());

    o = options(LANCBIO_METHOD_NEUMANN, 1.0 / 3.0);
    s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, 1e-8, 0, &r, NULL);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT && strstr(lancbio_last_error(), "zero") != NULL,
          "neumann from a non-zero x: status %d, message \"%s\"", s, lancbio_last_error());

    o = options(LANCBIO_METHOD_GD, 0);
    s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, 1e-8, 0, &r, NULL);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT && strstr(lancbio_last_error(), "step_size") != NULL,
          "gd without a step size: status %d, message \"%s\"", s, lancbio_last_error());

    o = options(LANCBIO_METHOD_CG, 0);
    s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, -1.0, 0, &r, NULL);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT && strstr(lancbio_last_error(), "tolerance") != NULL,
          "negative tolerance: status %d, message \"%s\"", s, lancbio_last_error());
    s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, 1e-8, -1, &r, NULL);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT, "max_iterations -1: status %d", s);
    s = lancbio_solve_f64(&o, hvp64, &op, NULL, x, N, 1e-8, 0, &r, NULL);
    CHECK(s == LANCBIO_ERR_NULL_POINTER && strstr(lancbio_last_error(), "b") != NULL, "NULL b: status %d", s);
    s = lancbio_solve_f64(&o, NULL, &op, b, x, N, 1e-8, 0, &r, NULL);
    CHECK(s == LANCBIO_ERR_NULL_POINTER, "NULL hvp: status %d", s);
    s = lancbio_solve_f64(&o, hvp64, &op, b, x, 0, 1e-8, 0, &r, NULL);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT, "n = 0: status %d", s);
    {
        float bf[N] = {1}, xf[N] = {0};
        s = lancbio_solve_f32(&o, hvp32, &op, bf, xf, N, 1e-4, 0, &r, NULL);
        CHECK(s == LANCBIO_ERR_WRONG_PRECISION, "f32 solve with float64 options: status %d", s);
    }
    {
        lancbio_solve_result_t small;
        small.struct_size = 8;
        s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, 1e-8, 0, &small, NULL);
        CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT, "result.struct_size 8: status %d", s);
    }
    op.fail_at = 5;
    s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, 1e-12, 0, &r, NULL);
    CHECK(s == LANCBIO_ERR_CALLBACK && strstr(lancbio_last_error(), "returned 7") != NULL,
          "failing callback: status %d, message \"%s\"", s, lancbio_last_error());
    CHECK(memcmp(x, before, sizeof x) == 0, "x changed by failed solves");

    /* A call that succeeds clears the thread's message. */
    op.fail_at = 0;
    s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, 1e-8, 0, NULL, NULL);
    CHECK(s == LANCBIO_OK && strcmp(lancbio_last_error(), "") == 0, "success after failure: status %d, message \"%s\"",
          s, lancbio_last_error());
}

/* A product callback that makes a failing handle-less call of its own. */
static int32_t hvp_with_failing_call(const double *in, double *out, int64_t n, void *user_data)
{
    (void)lancbio_estimator_options_init(NULL, LANCBIO_METHOD_CG);
    return hvp64(in, out, n, user_data);
}

/* The message describes the last handle-less call itself, not calls made inside it; the
 * plain Lanczos variant, which would restart from b alone, is refused. */
static void test_message_scope(void)
{
    lancbio_estimator_options_t o = options(LANCBIO_METHOD_CG, 0);
    operator_t op = {1.0, 0, 0};
    double b[N], x[N] = {0};
    int32_t s;
    fill_rhs(b);
    s = lancbio_solve_f64(&o, hvp_with_failing_call, &op, b, x, N, 1e-8, 0, NULL, NULL);
    CHECK(s == LANCBIO_OK && strcmp(lancbio_last_error(), "") == 0,
          "a solve whose callback failed a call of its own: status %d, message \"%s\"", s, lancbio_last_error());
    o = options(LANCBIO_METHOD_LANCZOS, 0);
    o.variant = LANCBIO_VARIANT_PLAIN;
    s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, 1e-8, 0, NULL, NULL);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT && strstr(lancbio_last_error(), "residual variant") != NULL,
          "plain variant: status %d, message \"%s\"", s, lancbio_last_error());
}

/* Creation and options failures explain themselves through lancbio_last_error(). */
static void test_creation_messages(void)
{
    lancbio_estimator_options_t o;
    lancbio_estimator_t *h = NULL;
    int32_t s;
    s = lancbio_estimator_options_init(&o, 99);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT && strstr(lancbio_last_error(), "method") != NULL,
          "options_init(99): status %d, message \"%s\"", s, lancbio_last_error());
    lancbio_estimator_options_init(&o, LANCBIO_METHOD_LANCZOS);
    CHECK(strcmp(lancbio_last_error(), "") == 0, "options_init success leaves \"%s\"", lancbio_last_error());
    o.m0 = 9;
    o.m_max = 3;
    s = lancbio_estimator_create(10, &o, &h);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT && h == NULL && strstr(lancbio_last_error(), "m0") != NULL,
          "m0 > m_max: status %d, message \"%s\"", s, lancbio_last_error());
    o.m0 = 1;
    o.m_max = 4096;
    s = lancbio_estimator_create((int64_t)1 << 36, &o, &h);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT && strstr(lancbio_last_error(), "memory") != NULL,
          "a basis of 2^36 x 4097 doubles: status %d, message \"%s\"", s, lancbio_last_error());
    o.m_max = 80;
    s = lancbio_estimator_create(10, &o, &h);
    CHECK(s == LANCBIO_OK && strcmp(lancbio_last_error(), "") == 0, "create success: status %d, message \"%s\"", s,
          lancbio_last_error());
    lancbio_estimator_destroy(h);
    s = lancbio_estimator_create(0, &o, &h);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT && strstr(lancbio_last_error(), "n = 0") != NULL,
          "n = 0: status %d, message \"%s\"", s, lancbio_last_error());
    {
        lancbio_bilevel_options_t bo;
        lancbio_bilevel_t *bh = NULL;
        lancbio_bilevel_options_init(&bo);
        bo.lr_x = 0;
        s = lancbio_bilevel_create(3, 3, &bo, &o, &bh);
        CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT && bh == NULL && strstr(lancbio_last_error(), "lr_x") != NULL,
              "bilevel lr_x = 0: status %d, message \"%s\"", s, lancbio_last_error());
    }
}

int main(void)
{
    test_methods_converge();
    test_budget();
    test_warm_start();
    test_float32();
    test_errors();
    test_message_scope();
    test_creation_messages();
    return check_summary();
}
