/*
 * synthetic_lancbio.c: LancBiO through the lancbio C ABI on the synthetic bilevel problem
 * of the LancBiO paper (docs/algorithms.md section 6), written entirely in C.
 *
 * What it shows:
 *   - describing a bilevel problem to the library: five derivative callbacks in a
 *     lancbio_problem_f64_t, all sharing one user_data (the problem's data and scratch);
 *   - configuring LancBiO (dynamic Lanczos estimator + outer-loop options), stepping it,
 *     reading the per-iteration diagnostics, and checking every status;
 *   - measuring the result honestly: the TRUE hyper-gradient ||grad phi(x)||, computed
 *     here with the same callbacks (Newton-CG for y*(x), CG for v*);
 *   - (--check, run by `make test-c`) a self-test: the callbacks against finite
 *     differences, convergence, agreement with AmIGO-CG, and the failure contract (a
 *     failing callback leaves x and y untouched).
 *
 * Build and run from the repository root:
 *   swift build -c release --product lancbio
 *   mkdir -p .build/c
 *   cc -std=c99 -Wall -Wextra -Werror -pedantic -O2 -Iinclude examples/synthetic_lancbio.c \
 *      -o .build/c/synthetic_lancbio -L.build/release -llancbio \
 *      -Wl,-rpath,$PWD/.build/release -lm
 *   .build/c/synthetic_lancbio [--n 300] [--iterations 500] [--kappa 1e3] [--gamma 0.5]
 *                              [--seed 42] [--check]
 */
#include "lancbio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PI 3.14159265358979323846

/* ---------------------------------------------------------------------------------
 * A small deterministic generator, so every run (and every platform) sees the same data.
 * -------------------------------------------------------------------------------*/
typedef struct rng {
    uint64_t state;
    int has_spare;
    double spare;
} rng_t;

static uint64_t splitmix64(rng_t *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(rng_t *r) { return (double)(splitmix64(r) >> 11) * (1.0 / 9007199254740992.0); }

static double rng_range(rng_t *r, double lo, double hi) { return lo + (hi - lo) * rng_uniform(r); }

/* Box-Muller; 1 - u keeps the logarithm's argument in (0, 1]. */
static double rng_normal(rng_t *r) {
    double radius, angle;
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    radius = sqrt(-2.0 * log(1.0 - rng_uniform(r)));
    angle = 2.0 * PI * rng_uniform(r);
    r->spare = radius * sin(angle);
    r->has_spare = 1;
    return radius * cos(angle);
}

/* ---------------------------------------------------------------------------------
 * Small dense kernels.
 * -------------------------------------------------------------------------------*/
static double dot(const double *u, const double *v, int64_t n) {
    double s = 0.0;
    int64_t i;
    for (i = 0; i < n; ++i) s += u[i] * v[i];
    return s;
}

static double norm2(const double *v, int64_t n) { return sqrt(dot(v, v, n)); }

/* out = M v for a dense row-major n x n matrix. */
static void matvec(const double *M, const double *v, double *out, int64_t n) {
    int64_t i;
    for (i = 0; i < n; ++i) out[i] = dot(M + i * n, v, n);
}

/* ---------------------------------------------------------------------------------
 * The synthetic problem (docs/algorithms.md section 6), dx = dy = n:
 *   f(x, y) = 0.1 cos(x^T (a*y)) + 0.5 ||c*x - y||^2
 *   g(x, y) = gamma sum sin(x_i + y_i) + log sum exp(x_i y_i) + 0.5 y^T diag(d) y + 0.5 y^T G y
 * -------------------------------------------------------------------------------*/
typedef struct synthetic {
    int64_t n;
    double gamma;
    double kappa;
    double *a, *c, *d; /* n values each */
    double *G;         /* n x n, row-major, symmetric with eigenvalues linspace(1, kappa, n) */
    /* Scratch, allocated once: the library may call a callback thousands of times. */
    double *w;         /* softmax weights e / S at the (x, y) of the current call */
    /* Fault injection for the failure-contract demonstration: when positive, the flaky
     * HVP callback counts it down and fails on the call that reaches zero. */
    int64_t fail_countdown;
} synthetic_t;

/* w = exp(x*y) / sum exp(x*y). The maximum is subtracted first: exp(x_i y_i) alone
 * overflows for large coordinates, and the ratio does not change. */
static void softmax_weights(const double *x, const double *y, int64_t n, double *w) {
    double top = x[0] * y[0], total = 0.0;
    int64_t i;
    for (i = 1; i < n; ++i)
        if (x[i] * y[i] > top) top = x[i] * y[i];
    for (i = 0; i < n; ++i) {
        w[i] = exp(x[i] * y[i] - top);
        total += w[i];
    }
    for (i = 0; i < n; ++i) w[i] /= total;
}

/* grad_y g = gamma cos(x+y) + p + d*y + G y,  with p = x*w. */
static int32_t grad_y_g(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *user_data) {
    synthetic_t *P = (synthetic_t *)user_data;
    int64_t i;
    (void)dx;
    softmax_weights(x, y, dy, P->w);
    matvec(P->G, y, out, dy);
    for (i = 0; i < dy; ++i) out[i] += P->gamma * cos(x[i] + y[i]) + x[i] * P->w[i] + P->d[i] * y[i];
    return 0;
}

/* grad_x f = -0.1 sin(s) a*y + c*(c*x - y),  s = x^T (a*y). */
static int32_t grad_x_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *user_data) {
    const synthetic_t *P = (const synthetic_t *)user_data;
    double s = 0.0, sin_s;
    int64_t i;
    (void)dy;
    for (i = 0; i < dx; ++i) s += x[i] * P->a[i] * y[i];
    sin_s = sin(s);
    for (i = 0; i < dx; ++i) out[i] = -0.1 * sin_s * P->a[i] * y[i] + P->c[i] * (P->c[i] * x[i] - y[i]);
    return 0;
}

/* grad_y f = -0.1 sin(s) a*x - (c*x - y). */
static int32_t grad_y_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *user_data) {
    const synthetic_t *P = (const synthetic_t *)user_data;
    double s = 0.0, sin_s;
    int64_t i;
    (void)dx;
    for (i = 0; i < dy; ++i) s += x[i] * P->a[i] * y[i];
    sin_s = sin(s);
    for (i = 0; i < dy; ++i) out[i] = -0.1 * sin_s * P->a[i] * x[i] - (P->c[i] * x[i] - y[i]);
    return 0;
}

/* A v = -gamma sin(x+y)*v + (x*x*w)*v - (p^T v) p + d*v + G v. */
static int32_t hvp_yy_g(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out,
                        void *user_data) {
    synthetic_t *P = (synthetic_t *)user_data;
    double pv = 0.0;
    int64_t i;
    (void)dx;
    softmax_weights(x, y, dy, P->w);
    for (i = 0; i < dy; ++i) pv += x[i] * P->w[i] * v[i];
    matvec(P->G, v, out, dy);
    for (i = 0; i < dy; ++i) {
        double p = x[i] * P->w[i];
        out[i] += (-P->gamma * sin(x[i] + y[i]) + x[i] * p + P->d[i]) * v[i] - pv * p;
    }
    return 0;
}

/* J v = -gamma sin(x+y)*v + ((1 + x*y)*w)*v - (p^T v) (y*w). */
static int32_t jvp_xy_g(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out,
                        void *user_data) {
    synthetic_t *P = (synthetic_t *)user_data;
    double pv = 0.0;
    int64_t i;
    softmax_weights(x, y, dy, P->w);
    for (i = 0; i < dy; ++i) pv += x[i] * P->w[i] * v[i];
    for (i = 0; i < dx; ++i)
        out[i] = (-P->gamma * sin(x[i] + y[i]) + (1.0 + x[i] * y[i]) * P->w[i]) * v[i] - pv * y[i] * P->w[i];
    return 0;
}

/* The HVP with a fault: any non-zero return value aborts the library's step. */
static int32_t hvp_yy_g_flaky(const double *x, int64_t dx, const double *y, int64_t dy, const double *v,
                              double *out, void *user_data) {
    synthetic_t *P = (synthetic_t *)user_data;
    if (P->fail_countdown > 0 && --P->fail_countdown == 0) return 5;
    return hvp_yy_g(x, dx, y, dy, v, out, user_data);
}

static lancbio_problem_f64_t problem_callbacks(synthetic_t *P) {
    lancbio_problem_f64_t problem;
    memset(&problem, 0, sizeof problem);
    problem.struct_size = (int64_t)sizeof problem; /* lets the library evolve the struct */
    problem.user_data = P;
    problem.grad_y_g = grad_y_g;
    problem.grad_x_f = grad_x_f;
    problem.grad_y_f = grad_y_f;
    problem.hvp_yy_g = hvp_yy_g;
    problem.jvp_xy_g = jvp_xy_g;
    return problem;
}

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes);
    if (p == NULL) {
        fprintf(stderr, "out of memory (%lu bytes)\n", (unsigned long)bytes);
        exit(1);
    }
    return p;
}

static double *new_vector(int64_t n) { return (double *)xmalloc((size_t)n * sizeof(double)); }

/* G = U diag(linspace(1, kappa, n)) U^T. U comes from modified Gram-Schmidt on the rows
 * of a Gaussian matrix (orthonormal rows make an orthogonal matrix; working on rows keeps
 * every inner loop contiguous in row-major storage). */
static void build_G(synthetic_t *P, rng_t *r) {
    const int64_t n = P->n;
    double *Q = new_vector(n * n);
    int64_t i, j, k;
    for (i = 0; i < n * n; ++i) Q[i] = rng_normal(r);
    for (i = 0; i < n; ++i) {
        double *qi = Q + i * n;
        double len = norm2(qi, n);
        for (k = 0; k < n; ++k) qi[k] /= len;
        for (j = i + 1; j < n; ++j) {
            double *qj = Q + j * n;
            double proj = dot(qi, qj, n);
            for (k = 0; k < n; ++k) qj[k] -= proj * qi[k];
        }
    }
    /* G_ij = sum_k lambda_k Q_ki Q_kj; the upper triangle, then mirrored. */
    memset(P->G, 0, (size_t)(n * n) * sizeof(double));
    for (k = 0; k < n; ++k) {
        const double *qk = Q + k * n;
        double lambda = n > 1 ? 1.0 + (P->kappa - 1.0) * (double)k / (double)(n - 1) : 1.0;
        for (i = 0; i < n; ++i) {
            double t = lambda * qk[i];
            double *Gi = P->G + i * n;
            for (j = i; j < n; ++j) Gi[j] += t * qk[j];
        }
    }
    for (i = 0; i < n; ++i)
        for (j = 0; j < i; ++j) P->G[i * n + j] = P->G[j * n + i];
    free(Q);
}

static void synthetic_init(synthetic_t *P, int64_t n, double kappa, double gamma, rng_t *r) {
    int64_t i;
    P->n = n;
    P->kappa = kappa;
    P->gamma = gamma;
    P->a = new_vector(n);
    P->c = new_vector(n);
    P->d = new_vector(n);
    P->G = new_vector(n * n);
    P->w = new_vector(n);
    P->fail_countdown = 0;
    for (i = 0; i < n; ++i) P->a[i] = rng_range(r, -5.0, 5.0);
    for (i = 0; i < n; ++i) P->c[i] = rng_range(r, 0.1, 1.1);
    for (i = 0; i < n; ++i) P->d[i] = rng_range(r, 0.0, gamma);
    build_G(P, r);
}

static void synthetic_free(synthetic_t *P) {
    free(P->a);
    free(P->c);
    free(P->d);
    free(P->G);
    free(P->w);
}

/* ---------------------------------------------------------------------------------
 * The true hyper-gradient grad phi(x) = grad_x f(x, y*) - J(x, y*) v*,  v* = A^{-1} grad_y f,
 * computed with the same callbacks the library uses. That makes it a test of the method,
 * not of the callbacks: a wrong derivative would be wrong in the reference too, which is
 * why --check also compares every callback with finite differences of f and g.
 * -------------------------------------------------------------------------------*/
typedef struct workspace {
    double *y, *g, *step, *v, *r, *p, *Ap, *b, *gx, *Jv;
} workspace_t;

static void workspace_init(workspace_t *W, int64_t n) {
    W->y = new_vector(n);
    W->g = new_vector(n);
    W->step = new_vector(n);
    W->v = new_vector(n);
    W->r = new_vector(n);
    W->p = new_vector(n);
    W->Ap = new_vector(n);
    W->b = new_vector(n);
    W->gx = new_vector(n);
    W->Jv = new_vector(n);
}

static void workspace_free(workspace_t *W) {
    free(W->y); free(W->g); free(W->step); free(W->v); free(W->r);
    free(W->p); free(W->Ap); free(W->b); free(W->gx); free(W->Jv);
}

/* Conjugate gradients from v = 0 on A(x, y) v = b until ||r|| <= tol ||b||.
 * A is positive definite here (G >= I dominates -gamma sin), so plain CG is safe. */
static int64_t cg_solve(synthetic_t *P, const double *x, const double *y, const double *b, double *v,
                        double tol, int64_t max_iterations, workspace_t *W) {
    const int64_t n = P->n;
    double rr, target = tol * norm2(b, n);
    int64_t i, it;
    for (i = 0; i < n; ++i) {
        v[i] = 0.0;
        W->r[i] = b[i];
        W->p[i] = b[i];
    }
    rr = dot(W->r, W->r, n);
    for (it = 0; it < max_iterations && sqrt(rr) > target; ++it) {
        double alpha, rr_new;
        hvp_yy_g(x, n, y, n, W->p, W->Ap, P);
        alpha = rr / dot(W->p, W->Ap, n);
        for (i = 0; i < n; ++i) {
            v[i] += alpha * W->p[i];
            W->r[i] -= alpha * W->Ap[i];
        }
        rr_new = dot(W->r, W->r, n);
        for (i = 0; i < n; ++i) W->p[i] = W->r[i] + (rr_new / rr) * W->p[i];
        rr = rr_new;
    }
    return it;
}

/* ||grad phi(x)||, starting y*(x)'s search from y_start. Newton-CG rather than gradient
 * steps: gradient descent needs O(kappa) iterations, Newton-CG O(sqrt(kappa)) HVPs per
 * Newton step and a handful of steps, because g is a strongly convex quadratic plus
 * bounded smooth terms. */
static double true_hypergradient_norm(synthetic_t *P, const double *x, const double *y_start, workspace_t *W) {
    const int64_t n = P->n;
    double gnorm;
    int64_t i, newton;
    memcpy(W->y, y_start, (size_t)n * sizeof(double));
    grad_y_g(x, n, W->y, n, W->g, P);
    gnorm = norm2(W->g, n);
    for (newton = 0; newton < 100 && gnorm >= 1e-10; ++newton) {
        double t = 1.0, trial = gnorm;
        cg_solve(P, x, W->y, W->g, W->step, 1e-12, 10 * n, W);
        /* Backtrack on ||grad||: a safeguard for starting points far from y*. */
        for (; t > 1e-6; t *= 0.5) {
            for (i = 0; i < n; ++i) W->v[i] = W->y[i] - t * W->step[i];
            grad_y_g(x, n, W->v, n, W->b, P);
            trial = norm2(W->b, n);
            if (trial < gnorm) break;
        }
        if (!(trial < gnorm)) break; /* rounding floor reached */
        memcpy(W->y, W->v, (size_t)n * sizeof(double));
        memcpy(W->g, W->b, (size_t)n * sizeof(double));
        gnorm = trial;
    }
    if (gnorm >= 1e-10) fprintf(stderr, "note: y*(x) solved to ||grad_y g|| = %.2e only\n", gnorm);

    grad_y_f(x, n, W->y, n, W->b, P);
    cg_solve(P, x, W->y, W->b, W->v, 1e-10, 10 * n, W);
    grad_x_f(x, n, W->y, n, W->gx, P);
    jvp_xy_g(x, n, W->y, n, W->v, W->Jv, P);
    for (i = 0; i < n; ++i) W->gx[i] -= W->Jv[i];
    return norm2(W->gx, n);
}

/* ---------------------------------------------------------------------------------
 * Driving the library.
 * -------------------------------------------------------------------------------*/
/* Errors (< 0) end the program with the library's own explanation; caveats (> 0, e.g.
 * LANCBIO_BUDGET_REACHED from a truncated CG solve) are normal results. Before a handle
 * exists (options, create) only the status code is available. */
static void require_ok(int32_t status, const lancbio_bilevel_t *h, const char *what) {
    if (status >= 0) return;
    fprintf(stderr, "%s failed: %s (%d): %s\n", what, lancbio_status_string(status), (int)status,
            h != NULL ? lancbio_bilevel_last_error(h) : "(no handle, no detail)");
    exit(1);
}

typedef struct run_config {
    int32_t method;     /* LANCBIO_METHOD_LANCZOS or LANCBIO_METHOD_CG */
    double lr_x, lr_y;  /* lambda and theta */
    int64_t iterations; /* K */
    int64_t print_every;/* 0: silent */
} run_config_t;

static lancbio_bilevel_t *create_optimizer(int64_t n, const run_config_t *cfg) {
    lancbio_estimator_options_t est;
    lancbio_bilevel_options_t opt;
    lancbio_bilevel_t *h = NULL;

    /* The *_init functions set struct_size and every default; then override fields. */
    require_ok(lancbio_estimator_options_init(&est, cfg->method), NULL, "lancbio_estimator_options_init");
    if (cfg->method == LANCBIO_METHOD_LANCZOS) {
        /* The paper's dynamic schedule: the restart period m grows from 1 by 10% every 20
         * outer iterations, up to 80, so early cycles adapt fast to the moving A_k. */
        est.m0 = 1;
        est.growth = 1.1;
        est.grow_every = 20;
        est.m_max = 80;
    } else if (cfg->method == LANCBIO_METHOD_CG) {
        est.max_iterations = 5; /* AmIGO-CG's Q */
    }
    require_ok(lancbio_bilevel_options_init(&opt), NULL, "lancbio_bilevel_options_init");
    opt.lr_x = cfg->lr_x; /* no defaults: the step sizes depend on the problem's scaling */
    opt.lr_y = cfg->lr_y;
    opt.inner_steps = 5;
    require_ok(lancbio_bilevel_create(n, n, &opt, &est, &h), NULL, "lancbio_bilevel_create");
    return h;
}

/* K outer iterations from (x, y), updated in place. */
static void run_optimizer(lancbio_bilevel_t *h, synthetic_t *P, const run_config_t *cfg, double *x, double *y) {
    const lancbio_problem_f64_t problem = problem_callbacks(P);
    lancbio_bilevel_info_t info;
    lancbio_step_info_t est_info;
    int64_t k;

    memset(&info, 0, sizeof info);
    info.struct_size = (int64_t)sizeof info;
    memset(&est_info, 0, sizeof est_info);
    est_info.struct_size = (int64_t)sizeof est_info;

    if (cfg->print_every > 0)
        printf("%9s %8s %14s %14s %6s\n", "iteration", "HVPs", "||hypergrad||", "residual est.", "m");
    for (k = 1; k <= cfg->iterations; ++k) {
        require_ok(lancbio_bilevel_step_f64(h, &problem, x, P->n, y, P->n, &info), h, "lancbio_bilevel_step_f64");
        if (cfg->print_every > 0 && (k % cfg->print_every == 0 || k == cfg->iterations)) {
            require_ok(lancbio_bilevel_estimator_info(h, &est_info), h, "lancbio_bilevel_estimator_info");
            /* For Lanczos the residual is beta_j |e_j^T s| (LANCBIO_RESIDUAL_ESTIMATE): exact
             * only for a fixed A, while here A_k moves with (x_k, y_k). */
            printf("%9lld %8lld %14.6e %14.6e %6lld\n", (long long)info.iteration, (long long)info.total_products,
                   info.hypergradient_norm, est_info.residual, (long long)est_info.period);
        }
    }
}

static void random_start(rng_t *r, double *x, double *y, int64_t n) {
    int64_t i;
    for (i = 0; i < n; ++i) x[i] = rng_normal(r);
    for (i = 0; i < n; ++i) y[i] = rng_normal(r);
}

/* ---------------------------------------------------------------------------------
 * --check: the self-test run by `make test`.
 * -------------------------------------------------------------------------------*/
static int passed = 0, failed = 0;

static void expect(int ok, const char *what) {
    printf("[%s] %s\n", ok ? "PASS" : "FAIL", what);
    if (ok) ++passed; else ++failed;
}

/* f and g themselves, only to check the callbacks against finite differences. */
static double f_value(const synthetic_t *P, const double *x, const double *y) {
    double s = 0.0, q = 0.0;
    int64_t i;
    for (i = 0; i < P->n; ++i) {
        s += x[i] * P->a[i] * y[i];
        q += (P->c[i] * x[i] - y[i]) * (P->c[i] * x[i] - y[i]);
    }
    return 0.1 * cos(s) + 0.5 * q;
}

static double g_value(const synthetic_t *P, const double *x, const double *y, double *scratch) {
    double top = x[0] * y[0], total = 0.0, value = 0.0;
    int64_t i;
    for (i = 1; i < P->n; ++i)
        if (x[i] * y[i] > top) top = x[i] * y[i];
    for (i = 0; i < P->n; ++i) total += exp(x[i] * y[i] - top);
    matvec(P->G, y, scratch, P->n);
    for (i = 0; i < P->n; ++i)
        value += P->gamma * sin(x[i] + y[i]) + 0.5 * P->d[i] * y[i] * y[i] + 0.5 * y[i] * scratch[i];
    return value + top + log(total);
}

/* Passes when a central difference and the callback's exact value agree to 1e-7. The
 * differences are accurate to about 1e-8 here, while the smallest term (the softmax part
 * of A) is 1e-5 of the whole: a wrong sign or a missing term stands out. */
static void expect_derivative(const char *what, double difference, double exact) {
    char line[160];
    double error = fabs(difference - exact) / (fabs(exact) > 1e-30 ? fabs(exact) : 1.0);
    snprintf(line, sizeof line, "%s matches finite differences (relative error %.1e)", what, error);
    expect(error < 1e-7, line);
}

/* Each callback along a random direction u; where the derivative is a vector, its
 * component along a second random vector v. */
static void check_derivatives(synthetic_t *P, const double *x, const double *y, rng_t *r) {
    const int64_t n = P->n;
    const double h = 1e-5;
    double *u = new_vector(n), *v = new_vector(n), *xp = new_vector(n), *xm = new_vector(n);
    double *yp = new_vector(n), *ym = new_vector(n), *out = new_vector(n), *plus = new_vector(n),
           *minus = new_vector(n);
    int64_t i;

    for (i = 0; i < n; ++i) {
        u[i] = rng_normal(r);
        v[i] = rng_normal(r);
        xp[i] = x[i] + h * u[i];
        xm[i] = x[i] - h * u[i];
        yp[i] = y[i] + h * u[i];
        ym[i] = y[i] - h * u[i];
    }

    grad_y_g(x, n, y, n, out, P);
    expect_derivative("grad_y_g", (g_value(P, x, yp, plus) - g_value(P, x, ym, minus)) / (2.0 * h), dot(out, u, n));

    grad_x_f(x, n, y, n, out, P);
    expect_derivative("grad_x_f", (f_value(P, xp, y) - f_value(P, xm, y)) / (2.0 * h), dot(out, u, n));

    grad_y_f(x, n, y, n, out, P);
    expect_derivative("grad_y_f", (f_value(P, x, yp) - f_value(P, x, ym)) / (2.0 * h), dot(out, u, n));

    /* v^T A u = d/dt v^T grad_y g(x, y + t u). */
    grad_y_g(x, n, yp, n, plus, P);
    grad_y_g(x, n, ym, n, minus, P);
    hvp_yy_g(x, n, y, n, u, out, P);
    expect_derivative("hvp_yy_g", (dot(plus, v, n) - dot(minus, v, n)) / (2.0 * h), dot(out, v, n));

    /* u^T J v = d/dt v^T grad_y g(x + t u, y). */
    grad_y_g(xp, n, y, n, plus, P);
    grad_y_g(xm, n, y, n, minus, P);
    jvp_xy_g(x, n, y, n, v, out, P);
    expect_derivative("jvp_xy_g", (dot(plus, v, n) - dot(minus, v, n)) / (2.0 * h), dot(out, u, n));

    free(u); free(v); free(xp); free(xm); free(yp); free(ym); free(out); free(plus); free(minus);
}

/* A failing callback must abort the step with LANCBIO_ERR_CALLBACK, report the callback's
 * own code, and leave x, y and the optimizer exactly as before: the caller can fix the
 * cause and simply call again. */
static void check_failure_contract(synthetic_t *P, const run_config_t *cfg, const double *x0, const double *y0) {
    const int64_t n = P->n;
    lancbio_bilevel_t *h = create_optimizer(n, cfg);
    lancbio_problem_f64_t flaky = problem_callbacks(P);
    lancbio_bilevel_info_t info;
    run_config_t warmup = *cfg;
    const size_t bytes = (size_t)n * sizeof(double);
    double *x = new_vector(n), *y = new_vector(n), *x_before = new_vector(n), *y_before = new_vector(n);
    int32_t status;

    memcpy(x, x0, bytes);
    memcpy(y, y0, bytes);
    warmup.iterations = 3;
    warmup.print_every = 0;
    run_optimizer(h, P, &warmup, x, y);
    memcpy(x_before, x, bytes);
    memcpy(y_before, y, bytes);

    /* Iteration 4 restarts the Lanczos basis (one HVP) and then takes a Lanczos step (a
     * second HVP): failing on the second aborts the step half-way. */
    flaky.hvp_yy_g = hvp_yy_g_flaky;
    P->fail_countdown = 2;
    memset(&info, 0, sizeof info);
    info.struct_size = (int64_t)sizeof info;
    status = lancbio_bilevel_step_f64(h, &flaky, x, n, y, n, &info);
    P->fail_countdown = 0;
    printf("failing callback: %s: %s\n", lancbio_status_string(status), lancbio_bilevel_last_error(h));
    expect(status == LANCBIO_ERR_CALLBACK, "a callback returning 5 gives LANCBIO_ERR_CALLBACK");
    expect(lancbio_bilevel_callback_status(h) == 5, "lancbio_bilevel_callback_status() returns the callback's 5");
    expect(memcmp(x, x_before, bytes) == 0 && memcmp(y, y_before, bytes) == 0,
           "x and y are bit-for-bit unchanged after the failed step");
    require_ok(lancbio_bilevel_info(h, &info), h, "lancbio_bilevel_info");
    expect(info.iteration == 3, "the failed iteration is not counted");

    /* The same step with a healthy callback now succeeds as iteration 4. */
    status = lancbio_bilevel_step_f64(h, &flaky, x, n, y, n, &info);
    expect(status >= 0 && info.iteration == 4 && lancbio_bilevel_callback_status(h) == 0,
           "the optimizer continues normally after the failure");
    lancbio_bilevel_destroy(h);
    free(x); free(y); free(x_before); free(y_before);
}

static int run_check(void) {
    const uint64_t seed = 42; /* the bounds below were calibrated on this data */
    const int64_t n = 100;
    const double kappa = 100.0;
    /* Calibrated on this data (seed 42), ||grad phi(x_K)|| / ||grad phi(x_0)|| after 300
     * iterations: LancBiO 1.6e-4, AmIGO-CG 1.4e-4. Handing the optimizer a broken J v
     * (sign flipped: 1.3e-3; zero: 4.1e-3) or a broken HVP (doubled: 4.7e-3) still gives
     * 1e-3 or more, because grad_x f dominates grad phi on this problem: a loose bound such
     * as 1e-2 would pass a method that ignores the implicit term altogether. */
    const double reduction = 4e-4;
    run_config_t cfg = {LANCBIO_METHOD_LANCZOS, 1.0, 1.0 / kappa, 300, 0};
    rng_t r = {0, 0, 0.0};
    synthetic_t P;
    workspace_t W;
    lancbio_bilevel_t *h;
    lancbio_bilevel_options_t bad;
    lancbio_estimator_options_t est;
    double *x0, *y0, *x, *y, *x_cg, *y_cg;
    double grad0, grad_lanczos, grad_cg, gap;
    char line[160];
    int64_t i;

    r.state = seed;
    synthetic_init(&P, n, kappa, 0.5, &r);
    workspace_init(&W, n);
    x0 = new_vector(n); y0 = new_vector(n); x = new_vector(n); y = new_vector(n);
    x_cg = new_vector(n); y_cg = new_vector(n);
    random_start(&r, x0, y0, n);
    check_derivatives(&P, x0, y0, &r);
    grad0 = true_hypergradient_norm(&P, x0, y0, &W);

    /* LancBiO. */
    memcpy(x, x0, (size_t)n * sizeof(double));
    memcpy(y, y0, (size_t)n * sizeof(double));
    h = create_optimizer(n, &cfg);
    run_optimizer(h, &P, &cfg, x, y);
    lancbio_bilevel_destroy(h);
    grad_lanczos = true_hypergradient_norm(&P, x, y, &W);
    snprintf(line, sizeof line, "LancBiO: ||grad phi(x_K)|| = %.3e <= %.0e * ||grad phi(x_0)|| = %.3e",
             grad_lanczos, reduction, reduction * grad0);
    expect(grad_lanczos <= reduction * grad0, line);

    /* AmIGO-CG from the same start: a different estimator of v, same outer loop. Both must
     * end near the same stationary point; "near" is measured against the distance travelled
     * (measured: 1.3e-3 of it; other seeds up to 3e-2). */
    cfg.method = LANCBIO_METHOD_CG;
    memcpy(x_cg, x0, (size_t)n * sizeof(double));
    memcpy(y_cg, y0, (size_t)n * sizeof(double));
    h = create_optimizer(n, &cfg);
    run_optimizer(h, &P, &cfg, x_cg, y_cg);
    lancbio_bilevel_destroy(h);
    grad_cg = true_hypergradient_norm(&P, x_cg, y_cg, &W);
    snprintf(line, sizeof line, "AmIGO-CG: ||grad phi(x_K)|| = %.3e <= %.0e * ||grad phi(x_0)||", grad_cg,
             reduction);
    expect(grad_cg <= reduction * grad0, line);
    for (i = 0; i < n; ++i) W.r[i] = x[i] - x_cg[i];
    gap = norm2(W.r, n);
    for (i = 0; i < n; ++i) W.r[i] = x[i] - x0[i];
    gap /= norm2(W.r, n);
    snprintf(line, sizeof line, "LancBiO and AmIGO-CG end together: ||x_L - x_CG|| = %.1e * ||x_L - x_0|| <= 0.1",
             gap);
    expect(gap <= 0.1, line);

    /* Step sizes have no default: leaving lr_x at 0 is rejected at creation. */
    cfg.method = LANCBIO_METHOD_LANCZOS;
    h = NULL;
    require_ok(lancbio_estimator_options_init(&est, LANCBIO_METHOD_LANCZOS), NULL, "lancbio_estimator_options_init");
    require_ok(lancbio_bilevel_options_init(&bad), NULL, "lancbio_bilevel_options_init");
    bad.lr_y = 1.0 / kappa;
    expect(lancbio_bilevel_create(n, n, &bad, &est, &h) == LANCBIO_ERR_INVALID_ARGUMENT && h == NULL,
           "lr_x = 0 is rejected with LANCBIO_ERR_INVALID_ARGUMENT");

    check_failure_contract(&P, &cfg, x0, y0);

    free(x0); free(y0); free(x); free(y); free(x_cg); free(y_cg);
    workspace_free(&W);
    synthetic_free(&P);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------------------------
 * Command line.
 * -------------------------------------------------------------------------------*/
static void usage(const char *program) {
    fprintf(stderr,
            "usage: %s [--n N] [--iterations K] [--kappa KAPPA] [--gamma GAMMA] [--seed S] [--check]\n"
            "  defaults: n = 300, K = 500, kappa = 1e3, gamma = 0.5, seed = 42\n"
            "  --check: self-test (n = 100, kappa = 100, K = 300, seed 42); exit 0 if all pass\n",
            program);
}

static double parse_number(const char *text, const char *flag, const char *program) {
    char *end;
    double value = strtod(text, &end);
    if (end == text || *end != '\0' || !isfinite(value)) {
        fprintf(stderr, "%s: invalid number '%s'\n", flag, text);
        usage(program);
        exit(2);
    }
    return value;
}

int main(int argc, char **argv) {
    int64_t n = 300, iterations = 500;
    double kappa = 1e3, gamma = 0.5;
    uint64_t seed = 42;
    int check = 0, i;
    rng_t r = {0, 0, 0.0};
    synthetic_t P;
    workspace_t W;
    run_config_t cfg;
    lancbio_bilevel_t *h;
    double *x0, *y0, *x, *y;
    double grad0, grad_final, seconds;
    clock_t start;

    for (i = 1; i < argc; ++i) {
        const char *flag = argv[i];
        if (strcmp(flag, "--check") == 0) { check = 1; continue; }
        if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) { usage(argv[0]); return 0; }
        if (i + 1 >= argc) { usage(argv[0]); return 2; }
        if (strcmp(flag, "--n") == 0) n = (int64_t)parse_number(argv[++i], flag, argv[0]);
        else if (strcmp(flag, "--iterations") == 0) iterations = (int64_t)parse_number(argv[++i], flag, argv[0]);
        else if (strcmp(flag, "--kappa") == 0) kappa = parse_number(argv[++i], flag, argv[0]);
        else if (strcmp(flag, "--gamma") == 0) gamma = parse_number(argv[++i], flag, argv[0]);
        else if (strcmp(flag, "--seed") == 0) seed = (uint64_t)parse_number(argv[++i], flag, argv[0]);
        else { usage(argv[0]); return 2; }
    }
    if (n < 2 || iterations < 1 || kappa < 1.0 || gamma < 0.0) {
        fprintf(stderr, "need n >= 2, iterations >= 1, kappa >= 1, gamma >= 0\n");
        return 2;
    }
    printf("lancbio %s (ABI %d)\n", lancbio_version(), (int)lancbio_abi_version());
    if (lancbio_abi_version() != LANCBIO_ABI_VERSION) {
        fprintf(stderr, "library ABI %d does not match this header's %d\n", (int)lancbio_abi_version(),
                LANCBIO_ABI_VERSION);
        return 1;
    }
    if (check) return run_check();

    r.state = seed;
    start = clock();
    synthetic_init(&P, n, kappa, gamma, &r);
    workspace_init(&W, n);
    x0 = new_vector(n); y0 = new_vector(n); x = new_vector(n); y = new_vector(n);
    random_start(&r, x0, y0, n);
    printf("synthetic problem: n = %lld, kappa = %g, gamma = %g, seed = %llu (data in %.2f s)\n", (long long)n,
           kappa, gamma, (unsigned long long)seed, (double)(clock() - start) / CLOCKS_PER_SEC);

    /* The paper's step sizes: lambda = 1 and theta = 1/kappa (1/L for the inner problem). */
    cfg.method = LANCBIO_METHOD_LANCZOS;
    cfg.lr_x = 1.0;
    cfg.lr_y = 1.0 / kappa;
    cfg.iterations = iterations;
    cfg.print_every = 50;
    memcpy(x, x0, (size_t)n * sizeof(double));
    memcpy(y, y0, (size_t)n * sizeof(double));
    h = create_optimizer(n, &cfg);
    start = clock();
    run_optimizer(h, &P, &cfg, x, y);
    seconds = (double)(clock() - start) / CLOCKS_PER_SEC;
    lancbio_bilevel_destroy(h);

    grad0 = true_hypergradient_norm(&P, x0, y0, &W);
    grad_final = true_hypergradient_norm(&P, x, y, &W);
    printf("LancBiO: %lld iterations in %.2f s\n", (long long)iterations, seconds);
    printf("true ||grad phi(x_0)|| = %.6e\n", grad0);
    printf("true ||grad phi(x_K)|| = %.6e  (ratio %.2e)\n", grad_final, grad_final / grad0);

    free(x0); free(y0); free(x); free(y);
    workspace_free(&W);
    synthetic_free(&P);
    return 0;
}
