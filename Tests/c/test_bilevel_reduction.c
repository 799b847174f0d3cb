/*
 * test_bilevel_reduction.c: the bilevel loop with y sliced across processes and x
 * replicated (lancbio_bilevel_set_reduction), P processes simulated by P threads.
 *
 * The problem: g(x, y) = y^T A y / 2 - y^T (B x + c), f(x, y) = ||y - d||^2 / 2 +
 * mu ||x||^2 / 2 with A = tridiag(-1, 2 + shift, -1) (DY rows, sliced unevenly) and x of
 * DX values; each thread computes the rows of its slice (A y exchanges the slices through
 * shared memory and a barrier, as an operator's own communication), grad_x f's replicated
 * term comes from thread 0 and J v = -B^T v from every thread for its rows. Checked
 * against one optimizer on the whole problem: x and y to 1e-12, every thread's x, info and
 * hyper-gradient bitwise equal; a grad_y_g callback failing on one thread fails that
 * iteration on every thread (that one with its own code through callback_status, the
 * others LANCBIO_ERR_CALLBACK) with x, y and each optimizer unchanged; the refusals
 * (lr_y_auto, a NULL handle, during a step is covered by the estimator's test).
 * The last line is "N passed, M failed"; the exit status is non-zero if any check failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "lancbio.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define DX 3
#define DY 40
#define P 3
#define ITERATIONS 10
#define FAIL_AT 4
#define SLOTS 512

static const int64_t sizes[P] = {7, 20, 13};
static int64_t offsets[P];

#define CHECK_THREAD_SAFE
#include "check.h"

#include "simulated_processes.h"

static const double shift = 0.3, mu = 0.5;
static double full[DY];

static double B(int64_t row, int64_t j) { return sin(0.7 * (double)row + 1.3 * (double)j); }
static double c(int64_t row) { return cos(0.4 * (double)row); }
static double d(int64_t row) { return 0.5 * sin(0.9 * (double)row + 0.2); }

typedef struct {
    int rank;        /* -1: one process on the whole problem */
    int64_t first;   /* first row of this slice */
    int64_t rows;
    int fail;        /* grad_y_g returns 7 while set */
} process_t;

static int32_t reduce(double *values, int64_t count, void *user_data)
{
    return all_reduce(((process_t *)user_data)->rank, values, count);
}

/* Rows of A v, v this process's slice (the whole vector for one process). */
static void times_a(const process_t *p, const double *v, double *out)
{
    const double *whole = v;
    int64_t i;
    if (p->rank >= 0) {
        memcpy(full + p->first, v, (size_t)p->rows * sizeof(double));
        pthread_barrier_wait(&barrier);
        whole = full;
    }
    for (i = 0; i < p->rows; i++) {
        int64_t r = p->first + i;
        double left = r > 0 ? whole[r - 1] : 0.0, right = r + 1 < DY ? whole[r + 1] : 0.0;
        out[i] = (2.0 + shift) * whole[r] - left - right;
    }
    if (p->rank >= 0) pthread_barrier_wait(&barrier);
}

static int32_t grad_y_g(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    process_t *p = (process_t *)ud;
    int64_t i, j;
    (void)dx;
    (void)dy;
    times_a(p, y, out);
    for (i = 0; i < p->rows; i++) {
        double s = c(p->first + i);
        for (j = 0; j < DX; j++) s += B(p->first + i, j) * x[j];
        out[i] -= s;
    }
    return p->fail ? 7 : 0;
}

static int32_t grad_x_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    process_t *p = (process_t *)ud;
    int64_t j;
    (void)dy;
    (void)y;
    for (j = 0; j < dx; j++) out[j] = p->rank <= 0 ? mu * x[j] : 0.0;
    return 0;
}

static int32_t grad_y_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    process_t *p = (process_t *)ud;
    int64_t i;
    (void)x;
    (void)dx;
    (void)dy;
    for (i = 0; i < p->rows; i++) out[i] = y[i] - d(p->first + i);
    return 0;
}

static int32_t hvp(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *ud)
{
    (void)x;
    (void)dx;
    (void)y;
    (void)dy;
    times_a((process_t *)ud, v, out);
    return 0;
}

static int32_t jvp(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *ud)
{
    process_t *p = (process_t *)ud;
    int64_t i, j;
    (void)x;
    (void)y;
    (void)dy;
    for (j = 0; j < dx; j++) {
        double s = 0.0;
        for (i = 0; i < p->rows; i++) s += B(p->first + i, j) * v[i];
        out[j] = -s;
    }
    return 0;
}

static lancbio_bilevel_options_t outer;
static lancbio_estimator_options_t inner;
static double whole_x[ITERATIONS][DX], whole_y[ITERATIONS][DY];
static double sliced_x[P][ITERATIONS][DX], sliced_y[ITERATIONS][DY], sliced_norm[P][ITERATIONS];
static lancbio_step_info_t sliced_info[P][ITERATIONS];
static int32_t failure_status[P], failure_code[P];
static int unchanged[P];

static void *run_process(void *arg)
{
    process_t *p = (process_t *)arg;
    lancbio_bilevel_t *h = NULL;
    lancbio_problem_f64_t problem = {sizeof(lancbio_problem_f64_t), NULL, grad_y_g, grad_x_f, grad_y_f, hvp, jvp};
    double x[DX], y[DY], x_before[DX], y_before[DY];
    int k, done = 0, attempt = 0;
    problem.user_data = p;
    for (k = 0; k < DX; k++) x[k] = 0.1;
    memset(y, 0, sizeof y);
    CHECK(lancbio_bilevel_create(DX, p->rows, &outer, &inner, &h) == LANCBIO_OK, "create (rank %d)", p->rank);
    if (p->rank >= 0)
        CHECK(lancbio_bilevel_set_reduction(h, reduce, p) == LANCBIO_OK, "set_reduction: %s", lancbio_bilevel_last_error(h));
    while (done < ITERATIONS) {
        lancbio_bilevel_info_t info;
        int32_t status;
        info.struct_size = sizeof info;
        memcpy(x_before, x, sizeof x);
        memcpy(y_before, y, (size_t)p->rows * sizeof(double));
        p->fail = p->rank == 1 && done == FAIL_AT && attempt == 0;
        status = lancbio_bilevel_step_f64(h, &problem, x, DX, y, p->rows, &info);
        if (p->rank >= 0 && done == FAIL_AT && attempt == 0 && status < 0) {
            failure_status[p->rank] = status;
            failure_code[p->rank] = lancbio_bilevel_callback_status(h);
            unchanged[p->rank] = memcmp(x, x_before, sizeof x) == 0
                && memcmp(y, y_before, (size_t)p->rows * sizeof(double)) == 0;
            attempt++;
            continue;
        }
        CHECK(status >= 0, "rank %d iteration %d: %d %s", p->rank, done, status, lancbio_bilevel_last_error(h));
        if (p->rank < 0) {
            memcpy(whole_x[done], x, sizeof x);
            memcpy(whole_y[done], y, sizeof y);
        } else {
            memcpy(sliced_x[p->rank][done], x, sizeof x);
            memcpy(sliced_y[done] + p->first, y, (size_t)p->rows * sizeof(double));
            sliced_norm[p->rank][done] = info.hypergradient_norm;
            sliced_info[p->rank][done].struct_size = sizeof(lancbio_step_info_t);
            lancbio_bilevel_estimator_info(h, &sliced_info[p->rank][done]);
        }
        done++;
        attempt = 0;
    }
    lancbio_bilevel_destroy(h);
    return NULL;
}

static double relative_error(const double *a, const double *b, int64_t n)
{
    double num = 0.0, den = 0.0;
    int64_t i;
    for (i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / den);
}

static void sliced_agrees_and_failures_reach_every_process(void)
{
    process_t whole = {-1, 0, DY, 0}, procs[P];
    pthread_t threads[P];
    int r, k;
    lancbio_bilevel_options_init(&outer);
    outer.lr_x = 0.2;
    outer.lr_y = 0.1;
    outer.inner_steps = 3;
    lancbio_estimator_options_init(&inner, LANCBIO_METHOD_LANCZOS);
    inner.m0 = 3;
    inner.m_max = 6;
    run_process(&whole);
    for (r = 0; r < P; r++) {
        procs[r].rank = r;
        procs[r].first = offsets[r];
        procs[r].rows = sizes[r];
        procs[r].fail = 0;
        pthread_create(&threads[r], NULL, run_process, &procs[r]);
    }
    for (r = 0; r < P; r++) pthread_join(threads[r], NULL);
    for (k = 0; k < ITERATIONS; k++) {
        CHECK(relative_error(sliced_x[0][k], whole_x[k], DX) <= 1e-12, "iteration %d: x differs from one process", k);
        CHECK(relative_error(sliced_y[k], whole_y[k], DY) <= 1e-12, "iteration %d: y differs from one process", k);
        for (r = 1; r < P; r++) {
            CHECK(memcmp(sliced_x[r][k], sliced_x[0][k], sizeof sliced_x[0][k]) == 0, "iteration %d rank %d: x bits", k, r);
            CHECK(sliced_norm[r][k] == sliced_norm[0][k], "iteration %d rank %d: hyper-gradient norm", k, r);
            CHECK(memcmp(&sliced_info[r][k], &sliced_info[0][k], sizeof sliced_info[0][k]) == 0,
                  "iteration %d rank %d: estimator info bits", k, r);
        }
    }
    for (r = 0; r < P; r++) {
        CHECK(failure_status[r] == LANCBIO_ERR_CALLBACK, "rank %d: the failed iteration returned %d", r, failure_status[r]);
        CHECK(failure_code[r] == (r == 1 ? 7 : 0), "rank %d: callback status %d", r, failure_code[r]);
        CHECK(unchanged[r], "rank %d: the failed iteration changed x or y", r);
    }
}

static int32_t any_reduce(double *values, int64_t count, void *user_data)
{
    (void)values;
    (void)count;
    (void)user_data;
    return 0;
}

static void refusals(void)
{
    lancbio_bilevel_t *h = NULL;
    lancbio_bilevel_options_init(&outer);
    outer.lr_x = 0.1;
    outer.lr_y_auto = 1;
    lancbio_estimator_options_init(&inner, LANCBIO_METHOD_LANCZOS);
    CHECK(lancbio_bilevel_create(DX, DY, &outer, &inner, &h) == LANCBIO_OK, "create with lr_y_auto");
    CHECK(lancbio_bilevel_set_reduction(h, any_reduce, NULL) == LANCBIO_ERR_INVALID_ARGUMENT, "lr_y_auto refuses a reduction");
    CHECK(strstr(lancbio_bilevel_last_error(h), "lr_y_auto") != NULL, "message: %s", lancbio_bilevel_last_error(h));
    CHECK(lancbio_bilevel_set_reduction(h, NULL, NULL) == LANCBIO_OK, "removing none is fine");
    lancbio_bilevel_destroy(h);
    CHECK(lancbio_bilevel_set_reduction(NULL, any_reduce, NULL) == LANCBIO_ERR_INVALID_HANDLE, "NULL handle");
}

int main(void)
{
    int r;
    for (r = 1; r < P; r++) offsets[r] = offsets[r - 1] + sizes[r - 1];
    pthread_barrier_init(&barrier, NULL, P);
    sliced_agrees_and_failures_reach_every_process();
    refusals();
    pthread_barrier_destroy(&barrier);
    return check_summary();
}
