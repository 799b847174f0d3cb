/*
 * Steps allocate nothing: all storage is allocated when a handle is created.
 *
 * This program defines malloc, calloc, realloc and posix_memalign itself. The dynamic
 * linker binds every caller in the process to these, liblancbio and the Swift runtime
 * included, so the counters see every heap allocation a step makes. After one warm-up
 * step per handle (lazy runtime caches may fill once), later steps must allocate zero
 * times, for every method, both precisions, callbacks and reverse communication, and for
 * bilevel steps.
 */
#define _GNU_SOURCE
#include "lancbio.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

/* ---- counting allocator: forwards to glibc's own entry points ---- */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static volatile long allocations = 0;

void *malloc(size_t size) { allocations++; return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { allocations++; return __libc_calloc(count, size); }
void *realloc(void *p, size_t size) { allocations++; return __libc_realloc(p, size); }
int posix_memalign(void **out, size_t alignment, size_t size) {
    allocations++;
    *out = __libc_memalign(alignment, size);
    return *out ? 0 : 12; /* ENOMEM */
}
void *aligned_alloc(size_t alignment, size_t size) { allocations++; return __libc_memalign(alignment, size); }

/* ---- a fixed SPD operator: tridiagonal (2 + i/n, -0.5) ---- */
#define N 64
static int32_t hvp64(const double *in, double *out, int64_t n, void *ud) {
    (void)ud;
    for (int64_t i = 0; i < n; i++) {
        double s = (2.0 + (double)i / (double)n) * in[i];
        if (i > 0) s -= 0.5 * in[i - 1];
        if (i + 1 < n) s -= 0.5 * in[i + 1];
        out[i] = s;
    }
    return 0;
}
static int32_t hvp32(const float *in, float *out, int64_t n, void *ud) {
    (void)ud;
    for (int64_t i = 0; i < n; i++) {
        float s = (2.0f + (float)i / (float)n) * in[i];
        if (i > 0) s -= 0.5f * in[i - 1];
        if (i + 1 < n) s -= 0.5f * in[i + 1];
        out[i] = s;
    }
    return 0;
}

/* Every check here is made by this one function: its message, not its line, says which. */
static void check(int ok, const char *what, long count) {
    if (ok) check_pass(); else check_fail(0, "%s: %ld allocations", what, count);
}

static const char *method_name(int32_t m) {
    static const char *names[] = {"?", "lanczos", "subbio", "cg", "minres", "gd", "neumann", "random-neumann"};
    return names[m];
}

/* checked: Lanczos with the orthogonality check and exact_residual (one more product per
 * step), CG and MINRES to a tolerance their recurrences reach only below the bound on its
 * rounding, so that each convergence is checked with a product and the recurrence restarts. */
static void estimator_steps(int32_t method, int32_t precision, int checked) {
    lancbio_estimator_options_t o;
    lancbio_estimator_options_init(&o, method);
    o.precision = precision;
    o.theta0 = 0.1; o.step_size = 0.1; o.m_max = 8; o.growth = 1.5; o.grow_every = 3;
    o.reorthogonalize = method == LANCBIO_METHOD_LANCZOS && !checked;
    o.exact_residual = checked;
    if (checked) { o.tolerance = precision == LANCBIO_FLOAT64 ? 1e-15 : 1e-7; o.max_iterations = 4 * N; }
    lancbio_estimator_t *h = NULL;
    if (lancbio_estimator_create(N, &o, &h) != LANCBIO_OK) { check(0, "create", 0); return; }
    double b[N], v[N], request[N], product[N];
    float bf[N], vf[N];
    for (int i = 0; i < N; i++) { b[i] = sin(i + 1.0); bf[i] = (float)b[i]; }
    lancbio_step_info_t info; info.struct_size = sizeof info;
    /* warm-up */
    if (precision == LANCBIO_FLOAT64) lancbio_estimator_step_f64(h, hvp64, NULL, b, v, N, &info);
    else lancbio_estimator_step_f32(h, hvp32, NULL, bf, vf, N, &info);

    long before = allocations;
    for (int k = 0; k < 50; k++) {   /* crosses several restarts and period growths */
        b[k % N] += 0.01; bf[k % N] += 0.01f;
        int32_t s = precision == LANCBIO_FLOAT64 ? lancbio_estimator_step_f64(h, hvp64, NULL, b, v, N, &info)
                                                 : lancbio_estimator_step_f32(h, hvp32, NULL, bf, vf, N, &info);
        if (s < 0) { check(0, "step status", s); break; }
    }
    long used = allocations - before;
    char what[96];
    snprintf(what, sizeof what, "%s %s%s: 50 callback steps", method_name(method),
             precision == LANCBIO_FLOAT64 ? "f64" : "f32", checked ? " (checked residuals)" : "");
    check(used == 0, what, used);

    if (precision == LANCBIO_FLOAT64) {
        before = allocations;
        for (int k = 0; k < 20; k++) {
            int32_t s = lancbio_estimator_begin_f64(h, b, request, N);
            while (s == LANCBIO_NEED_PRODUCT) {
                hvp64(request, product, N, NULL);
                s = lancbio_estimator_resume_f64(h, product, request, N);
            }
        }
        used = allocations - before;
        snprintf(what, sizeof what, "%s f64%s: 20 reverse-communication steps", method_name(method),
                 checked ? " (checked residuals)" : "");
        check(used == 0, what, used);
    }
    lancbio_estimator_destroy(h);
}

/* ---- a tiny bilevel problem: g = 0.5 y^T A y - y^T x, f = 0.5 |y - 1|^2 + 0.5 |x|^2 ---- */
static int32_t grad_y_g(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud) {
    (void)dx; hvp64(y, out, dy, ud); for (int64_t i = 0; i < dy; i++) out[i] -= x[i]; return 0;
}
static int32_t grad_x_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud) {
    (void)y; (void)dy; (void)ud; memcpy(out, x, (size_t)dx * sizeof *out); return 0;
}
static int32_t grad_y_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud) {
    (void)x; (void)dx; (void)ud; for (int64_t i = 0; i < dy; i++) out[i] = y[i] - 1.0; return 0;
}
static int32_t hvp_yy(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *ud) {
    (void)x; (void)dx; (void)y; return hvp64(v, out, dy, ud);
}
static int32_t jvp_xy(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *ud) {
    (void)x; (void)y; (void)dy; (void)ud; for (int64_t i = 0; i < dx; i++) out[i] = -v[i]; return 0;
}

static void bilevel_steps(int32_t method) {
    lancbio_estimator_options_t e;
    lancbio_estimator_options_init(&e, method);
    e.theta0 = 0.1; e.step_size = 0.1; e.m_max = 8; e.growth = 1.5; e.grow_every = 3;
    lancbio_bilevel_options_t o;
    lancbio_bilevel_options_init(&o);
    o.lr_x = 0.1; o.lr_y = 0.1; o.lr_x_decay = 0.5; o.lr_x_min = 0.01;
    lancbio_bilevel_t *h = NULL;
    if (lancbio_bilevel_create(N, N, &o, &e, &h) != LANCBIO_OK) { check(0, "bilevel create", 0); return; }
    lancbio_problem_f64_t p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.grad_y_g = grad_y_g; p.grad_x_f = grad_x_f; p.grad_y_f = grad_y_f; p.hvp_yy_g = hvp_yy; p.jvp_xy_g = jvp_xy;
    double x[N], y[N];
    for (int i = 0; i < N; i++) { x[i] = cos(i + 1.0); y[i] = 0.0; }
    lancbio_bilevel_info_t info; info.struct_size = sizeof info;
    lancbio_bilevel_step_f64(h, &p, x, N, y, N, &info);
    long before = allocations;
    for (int k = 0; k < 30; k++) {
        if (lancbio_bilevel_step_f64(h, &p, x, N, y, N, &info) < 0) { check(0, "bilevel step status", 0); break; }
    }
    long used = allocations - before;
    char what[96];
    snprintf(what, sizeof what, "bilevel with %s: 30 outer iterations", method_name(method));
    check(used == 0, what, used);
    lancbio_bilevel_destroy(h);
}

int main(void) {
    for (int32_t m = LANCBIO_METHOD_LANCZOS; m <= LANCBIO_METHOD_RANDOM_NEUMANN; m++) {
        estimator_steps(m, LANCBIO_FLOAT64, 0);
        estimator_steps(m, LANCBIO_FLOAT32, 0);
        if (m == LANCBIO_METHOD_LANCZOS || m == LANCBIO_METHOD_CG || m == LANCBIO_METHOD_MINRES) {
            estimator_steps(m, LANCBIO_FLOAT64, 1);
            estimator_steps(m, LANCBIO_FLOAT32, 1);
        }
        bilevel_steps(m);
    }
    /* The counter must see the library's allocations at all, or the test proves nothing. */
    long before = allocations;
    lancbio_estimator_options_t o;
    lancbio_estimator_options_init(&o, LANCBIO_METHOD_LANCZOS);
    lancbio_estimator_t *h = NULL;
    lancbio_estimator_create(N, &o, &h);
    lancbio_estimator_destroy(h);
    check(allocations > before, "the counter sees lancbio_estimator_create's allocations (sanity)", allocations - before);
    return check_summary();
}
