/*
 * test_unwritten_output.c: a callback that returns 0 without writing its output is a
 * failed callback, not a product. Every entry point that takes callbacks (the estimator
 * step in both precisions and every method, the one-shot solve, and each of the five
 * bilevel callbacks) must answer LANCBIO_ERR_CALLBACK with callback status 0 and a message
 * saying so, leave the handle (or the solve's x) exactly as before the call, and then step
 * on exactly as an untouched twin does.
 *
 * This is what a Python ctypes callback interrupted on entry (KeyboardInterrupt) looks like
 * to the library: no code of the callback ran, and its return value is whatever was left
 * in the return slot, usually the 0 of the previous call. The forgetful callbacks here
 * leave out[] as they found it, which is the library's own buffer, holding the previous
 * call's values. The last line is "N passed, M failed"; the exit status is non-zero if
 * any check failed.
 */
#include "lancbio.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define N 12

#include "check.h"

static const char *method_names[] = {"", "lanczos", "subbio", "cg", "minres", "gd", "neumann", "random-neumann"};

/* Which call (1-based, counted from the last reset of `calls`) returns 0 without writing. */
typedef struct {
    long calls;
    long forget_at; /* 0: never */
} operator_t;

/* A = tridiag(-1, 3, -1): SPD, eigenvalues in (1, 5). */
static void apply(const double *in, double *out, int64_t n)
{
    int64_t i;
    for (i = 0; i < n; i++) out[i] = 3.0 * in[i] - (i > 0 ? in[i - 1] : 0.0) - (i + 1 < n ? in[i + 1] : 0.0);
}

static int forgets(operator_t *op)
{
    op->calls++;
    return op->forget_at != 0 && op->calls == op->forget_at;
}

static int32_t hvp64(const double *in, double *out, int64_t n, void *user_data)
{
    if (forgets((operator_t *)user_data)) return 0;
    apply(in, out, n);
    return 0;
}

static int32_t hvp32(const float *in, float *out, int64_t n, void *user_data)
{
    double x[N], y[N];
    int i;
    (void)n;
    if (forgets((operator_t *)user_data)) return 0;
    for (i = 0; i < N; i++) x[i] = in[i];
    apply(x, y, N);
    for (i = 0; i < N; i++) out[i] = (float)y[i];
    return 0;
}

static void rhs(int k, double *b)
{
    int i;
    for (i = 0; i < N; i++) b[i] = cos(0.7 * i + 0.3 * k) + 0.1 * k;
}

static lancbio_estimator_t *create(int32_t method, int32_t precision)
{
    lancbio_estimator_options_t o;
    lancbio_estimator_t *h = NULL;
    int32_t s;
    lancbio_estimator_options_init(&o, method);
    o.precision = precision;
    o.theta0 = 0.2;
    o.step_size = 0.2;
    o.m0 = 2;
    o.m_max = 4;
    o.max_iterations = 3;
    o.steps = 3;
    s = lancbio_estimator_create(N, &o, &h);
    CHECK(s == LANCBIO_OK, "create(%s) returned %d", method_names[method], s);
    return h;
}

static int32_t step(lancbio_estimator_t *h, int32_t precision, operator_t *op, const double *b, double *v,
                    lancbio_step_info_t *info)
{
    float bf[N], vf[N];
    int32_t s;
    int i;
    if (precision == LANCBIO_FLOAT64) return lancbio_estimator_step_f64(h, hvp64, op, b, v, N, info);
    for (i = 0; i < N; i++) {
        bf[i] = (float)b[i];
        vf[i] = (float)v[i];
    }
    s = lancbio_estimator_step_f32(h, hvp32, op, bf, vf, N, info);
    for (i = 0; i < N; i++) v[i] = vf[i];
    return s;
}

static void get_v(lancbio_estimator_t *h, int32_t precision, double *v)
{
    float vf[N];
    int i;
    if (precision == LANCBIO_FLOAT64) {
        lancbio_estimator_get_v_f64(h, v, N);
        return;
    }
    lancbio_estimator_get_v_f32(h, vf, N);
    for (i = 0; i < N; i++) v[i] = vf[i];
}

static void info_init(lancbio_step_info_t *info)
{
    memset(info, 0, sizeof *info);
    info->struct_size = (int64_t)sizeof *info;
}

/* Estimator step: the forgetful call is the first or the second product of step 2. */
static void estimator_case(int32_t method, int32_t precision, long forget_call)
{
    const char *name = method_names[method];
    lancbio_estimator_t *h = create(method, precision), *twin = create(method, precision);
    operator_t op = {0, 0}, good = {0, 0};
    double b[N], v[N], w[N], before[N];
    lancbio_step_info_t info, twin_info;
    int32_t s;
    int k, i;
    for (k = 0; k < 2; k++) {
        rhs(k, b);
        step(h, precision, &good, b, v, NULL);
        step(twin, precision, &good, b, w, NULL);
    }
    rhs(2, b);
    for (i = 0; i < N; i++) v[i] = before[i] = 100.0 + i;
    op.calls = 0;
    op.forget_at = forget_call;
    s = step(h, precision, &op, b, v, NULL);
    if (op.calls < forget_call) {  /* a step with fewer products than that: nothing to test */
        lancbio_estimator_destroy(h);
        lancbio_estimator_destroy(twin);
        return;
    }
    CHECK(s == LANCBIO_ERR_CALLBACK, "%s (precision %d): product %ld left unwritten: step returned %d, expected %d",
          name, precision, forget_call, s, LANCBIO_ERR_CALLBACK);
    CHECK(op.calls == forget_call, "%s: the step went on after the unwritten product (%ld calls)", name, op.calls);
    CHECK(lancbio_estimator_callback_status(h) == 0, "%s: callback status %d, expected 0", name,
          lancbio_estimator_callback_status(h));
    CHECK(strstr(lancbio_estimator_last_error(h), "without writing") != NULL, "%s: message \"%s\"", name,
          lancbio_estimator_last_error(h));
    CHECK(memcmp(v, before, sizeof v) == 0, "%s: the failed step wrote v", name);
    get_v(h, precision, v);
    get_v(twin, precision, w);
    CHECK(memcmp(v, w, sizeof v) == 0, "%s: the committed estimate changed", name);
    info_init(&info);
    info_init(&twin_info);
    lancbio_estimator_info(h, &info);
    lancbio_estimator_info(twin, &twin_info);
    CHECK(memcmp(&info, &twin_info, sizeof info) == 0, "%s: the diagnostics changed", name);
    for (k = 2; k < 5; k++) {
        rhs(k, b);
        step(h, precision, &good, b, v, &info);
        step(twin, precision, &good, b, w, &twin_info);
        CHECK(memcmp(v, w, sizeof v) == 0 && memcmp(&info, &twin_info, sizeof info) == 0,
              "%s: step %d after the failed one differs from the twin's", name, k);
    }
    lancbio_estimator_destroy(h);
    lancbio_estimator_destroy(twin);
}

static void solve_case(long forget_call)
{
    lancbio_estimator_options_t o;
    lancbio_solve_result_t result;
    operator_t op = {0, forget_call};
    double b[N], x[N], before[N];
    int32_t s;
    int i;
    lancbio_estimator_options_init(&o, LANCBIO_METHOD_CG);
    rhs(0, b);
    for (i = 0; i < N; i++) x[i] = before[i] = 0.5 * i;
    memset(&result, 0, sizeof result);
    result.struct_size = (int64_t)sizeof result;
    s = lancbio_solve_f64(&o, hvp64, &op, b, x, N, 1e-10, 0, &result, NULL);
    CHECK(s == LANCBIO_ERR_CALLBACK && strstr(lancbio_last_error(), "without writing") != NULL,
          "solve with product %ld left unwritten: status %d, message \"%s\"", forget_call, s, lancbio_last_error());
    CHECK(memcmp(x, before, sizeof x) == 0, "solve with an unwritten product changed x");
}

/* ---- bilevel: g = 0.5 y^T A y - x^T y, f = 0.5 |y - 1|^2 + 0.5 |x|^2 (dx = dy = N) ---- */
enum { GRAD_Y_G, GRAD_X_F, GRAD_Y_F, HVP_YY_G, JVP_XY_G, CALLBACKS };
static const char *callback_names[] = {"grad_y_g", "grad_x_f", "grad_y_f", "hvp_yy_g", "jvp_xy_g"};

typedef struct {
    long calls[CALLBACKS];
    int forget; /* the callback that forgets once, at its call number forget_at; -1: none */
    long forget_at;
} problem_t;

static int problem_forgets(void *ud, int which)
{
    problem_t *p = (problem_t *)ud;
    p->calls[which]++;
    return which == p->forget && p->calls[which] == p->forget_at;
}

static int32_t grad_y_g(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    int64_t i;
    (void)dx;
    if (problem_forgets(ud, GRAD_Y_G)) return 0;
    apply(y, out, dy);
    for (i = 0; i < dy; i++) out[i] -= x[i];
    return 0;
}

static int32_t grad_x_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    (void)y;
    (void)dy;
    if (problem_forgets(ud, GRAD_X_F)) return 0;
    memcpy(out, x, (size_t)dx * sizeof *out);
    return 0;
}

static int32_t grad_y_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    int64_t i;
    (void)x;
    (void)dx;
    if (problem_forgets(ud, GRAD_Y_F)) return 0;
    for (i = 0; i < dy; i++) out[i] = y[i] - 1.0;
    return 0;
}

static int32_t hvp_yy_g(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out,
                        void *ud)
{
    (void)x;
    (void)dx;
    (void)y;
    if (problem_forgets(ud, HVP_YY_G)) return 0;
    apply(v, out, dy);
    return 0;
}

static int32_t jvp_xy_g(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out,
                        void *ud)
{
    int64_t i;
    (void)x;
    (void)y;
    (void)dy;
    if (problem_forgets(ud, JVP_XY_G)) return 0;
    for (i = 0; i < dx; i++) out[i] = -v[i];
    return 0;
}

static lancbio_bilevel_t *create_bilevel(void)
{
    lancbio_estimator_options_t e;
    lancbio_bilevel_options_t o;
    lancbio_bilevel_t *h = NULL;
    int32_t s;
    lancbio_estimator_options_init(&e, LANCBIO_METHOD_LANCZOS);
    e.m0 = 2;
    e.m_max = 4;
    lancbio_bilevel_options_init(&o);
    o.lr_x = 0.1;
    o.lr_y = 0.2;
    o.inner_steps = 2;
    s = lancbio_bilevel_create(N, N, &o, &e, &h);
    CHECK(s == LANCBIO_OK, "bilevel create returned %d", s);
    return h;
}

static void bilevel_case(int which)
{
    lancbio_bilevel_t *h = create_bilevel(), *twin = create_bilevel();
    problem_t p, good;
    lancbio_problem_f64_t callbacks, good_callbacks;
    lancbio_bilevel_info_t info, twin_info;
    double x[N], y[N], tx[N], ty[N], x_before[N], y_before[N], v[N], tv[N];
    int32_t s;
    int k, i;
    memset(&p, 0, sizeof p);
    memset(&good, 0, sizeof good);
    p.forget = which;
    good.forget = -1;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.struct_size = (int64_t)sizeof callbacks;
    callbacks.grad_y_g = grad_y_g;
    callbacks.grad_x_f = grad_x_f;
    callbacks.grad_y_f = grad_y_f;
    callbacks.hvp_yy_g = hvp_yy_g;
    callbacks.jvp_xy_g = jvp_xy_g;
    good_callbacks = callbacks;
    callbacks.user_data = &p;
    good_callbacks.user_data = &good;
    for (i = 0; i < N; i++) {
        x[i] = tx[i] = sin(i + 1.0);
        y[i] = ty[i] = 0.0;
    }
    lancbio_bilevel_step_f64(h, &good_callbacks, x, N, y, N, NULL);
    lancbio_bilevel_step_f64(twin, &good_callbacks, tx, N, ty, N, NULL);
    memcpy(x_before, x, sizeof x);
    memcpy(y_before, y, sizeof y);
    p.forget_at = 1; /* the first call of that callback in the second iteration */
    s = lancbio_bilevel_step_f64(h, &callbacks, x, N, y, N, NULL);
    CHECK(s == LANCBIO_ERR_CALLBACK, "bilevel, %s left unwritten: step returned %d", callback_names[which], s);
    CHECK(lancbio_bilevel_callback_status(h) == 0, "bilevel, %s: callback status %d", callback_names[which],
          lancbio_bilevel_callback_status(h));
    CHECK(strstr(lancbio_bilevel_last_error(h), callback_names[which]) != NULL &&
              strstr(lancbio_bilevel_last_error(h), "without writing") != NULL,
          "bilevel, %s: message \"%s\"", callback_names[which], lancbio_bilevel_last_error(h));
    CHECK(memcmp(x, x_before, sizeof x) == 0 && memcmp(y, y_before, sizeof y) == 0,
          "bilevel, %s: the failed iteration changed x or y", callback_names[which]);
    memset(&info, 0, sizeof info);
    memset(&twin_info, 0, sizeof twin_info);
    info.struct_size = twin_info.struct_size = (int64_t)sizeof info;
    lancbio_bilevel_info(h, &info);
    lancbio_bilevel_info(twin, &twin_info);
    lancbio_bilevel_get_v_f64(h, v, N);
    lancbio_bilevel_get_v_f64(twin, tv, N);
    CHECK(memcmp(&info, &twin_info, sizeof info) == 0 && memcmp(v, tv, sizeof v) == 0,
          "bilevel, %s: the failed iteration changed v or the diagnostics", callback_names[which]);
    for (k = 0; k < 3; k++) {
        lancbio_bilevel_step_f64(h, &good_callbacks, x, N, y, N, NULL);
        lancbio_bilevel_step_f64(twin, &good_callbacks, tx, N, ty, N, NULL);
    }
    CHECK(memcmp(x, tx, sizeof x) == 0 && memcmp(y, ty, sizeof y) == 0,
          "bilevel, %s: the iterations after the failed one differ from the twin's", callback_names[which]);
    lancbio_bilevel_destroy(h);
    lancbio_bilevel_destroy(twin);
}

int main(void)
{
    int32_t m;
    int c;
    for (m = LANCBIO_METHOD_LANCZOS; m <= LANCBIO_METHOD_RANDOM_NEUMANN; m++) {
        estimator_case(m, LANCBIO_FLOAT64, 1);
        estimator_case(m, LANCBIO_FLOAT64, 2);
        estimator_case(m, LANCBIO_FLOAT32, 1);
    }
    solve_case(1);
    solve_case(3);
    for (c = 0; c < CALLBACKS; c++) bilevel_case(c);
    return check_summary();
}
