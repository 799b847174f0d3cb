/*
 * test_reduction.c: vectors sliced across processes (lancbio_estimator_set_reduction),
 * with P processes simulated by P threads inside this one.
 *
 * Each thread holds an estimator on its slice of uneven length; the reduction callback
 * and the operator exchange through shared slots and a barrier, and every thread sums the
 * slots in the same order, as an all-reduce does. The operator is A = tridiag(-1, 2 +
 * shift, -1) of size N; the reference is one estimator on the whole vector. Checked: the
 * slices agree with the reference to 1e-12 relative, the threads' step infos agree
 * bitwise, info.reductions counts the callback's calls, a product failing on one thread
 * fails the step on every thread with each handle unchanged, a failing reduction is
 * LANCBIO_ERR_CALLBACK with its code, and the refusals (SubBiO, MINRES, during a step).
 * The last line is "N passed, M failed"; the exit status is non-zero if any check failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "lancbio.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define N 50
#define P 3
#define STEPS 8
#define SLOTS 512

static const int64_t sizes[P] = {9, 27, 14};
static int64_t offsets[P];

#define CHECK_THREAD_SAFE
#include "check.h"

static const double shift = 0.05;
static pthread_barrier_t barrier;
static double slots[P][SLOTS];
static double full[N];

/* One simulated process. */
typedef struct {
    int rank;
    int64_t calls;        /* reduction calls */
    int64_t products;     /* product calls */
    int64_t fail_product; /* product call that fails (0: never) */
} process_t;

static int32_t reduce(double *values, int64_t count, void *user_data)
{
    process_t *p = (process_t *)user_data;
    int64_t i;
    int q;
    p->calls++;
    if (count > SLOTS) return 99;
    memcpy(slots[p->rank], values, (size_t)count * sizeof(double));
    pthread_barrier_wait(&barrier);
    for (i = 0; i < count; i++) {
        double s = 0.0;
        for (q = 0; q < P; q++) s += slots[q][i];
        values[i] = s;
    }
    pthread_barrier_wait(&barrier);
    return 0;
}

static void apply_rows(const double *x, double *y, int64_t first, int64_t count)
{
    int64_t i;
    for (i = 0; i < count; i++) {
        int64_t r = first + i;
        double left = r > 0 ? x[r - 1] : 0.0, right = r + 1 < N ? x[r + 1] : 0.0;
        y[i] = (2.0 + shift) * x[r] - left - right;
    }
}

/* The operator's exchange runs on every process, the failing one included: it fails
 * after the exchange, as a local computation would. */
static int32_t product(const double *in, double *out, int64_t n, void *user_data)
{
    process_t *p = (process_t *)user_data;
    memcpy(full + offsets[p->rank], in, (size_t)n * sizeof(double));
    pthread_barrier_wait(&barrier);
    apply_rows(full, out, offsets[p->rank], n);
    pthread_barrier_wait(&barrier);
    p->products++;
    return p->products == p->fail_product ? 5 : 0;
}

static int32_t product_whole(const double *in, double *out, int64_t n, void *user_data)
{
    (void)user_data;
    apply_rows(in, out, 0, n);
    return 0;
}

static double rhs(int64_t i, int step) { return sin(0.3 * (double)i + 1.0) * (1.0 + 0.05 * step) + 0.01 * (double)(i % 3); }

static int32_t method_under_test;
static lancbio_estimator_options_t options;
static double sliced_v[STEPS][N];
static lancbio_step_info_t sliced_info[P][STEPS];
static int64_t calls_per_step[P][STEPS];

static void *run_process(void *arg)
{
    process_t *p = (process_t *)arg;
    lancbio_estimator_t *h = NULL;
    double b[N], v[N];
    int64_t m = sizes[p->rank], o = offsets[p->rank], i;
    int k;
    CHECK(lancbio_estimator_create(m, &options, &h) == LANCBIO_OK, "create (rank %d)", p->rank);
    CHECK(lancbio_estimator_set_reduction(h, reduce, p) == LANCBIO_OK, "set_reduction: %s", lancbio_estimator_last_error(h));
    for (k = 0; k < STEPS; k++) {
        int64_t before = p->calls;
        int32_t status;
        for (i = 0; i < m; i++) b[i] = rhs(o + i, k);
        sliced_info[p->rank][k].struct_size = sizeof(lancbio_step_info_t);
        status = lancbio_estimator_step_f64(h, product, p, b, v, m, &sliced_info[p->rank][k]);
        CHECK(status >= 0, "method %d step %d rank %d: %d %s", method_under_test, k, p->rank, status,
              lancbio_estimator_last_error(h));
        calls_per_step[p->rank][k] = p->calls - before;
        memcpy(sliced_v[k] + o, v, (size_t)m * sizeof(double));
    }
    lancbio_estimator_destroy(h);
    return NULL;
}

static void run_processes(process_t *procs, void *(*body)(void *))
{
    pthread_t threads[P];
    int r;
    for (r = 0; r < P; r++) pthread_create(&threads[r], NULL, body, &procs[r]);
    for (r = 0; r < P; r++) pthread_join(threads[r], NULL);
}

static void agrees_with_one_process(int32_t method)
{
    lancbio_estimator_t *h = NULL;
    process_t procs[P];
    double b[N], v[N];
    int64_t i;
    int k, r;
    method_under_test = method;
    lancbio_estimator_options_init(&options, method);
    options.step_size = 0.2;
    options.m0 = 4;
    options.m_max = 10;
    options.max_iterations = 6;
    options.steps = 4;
    memset(procs, 0, sizeof procs);
    for (r = 0; r < P; r++) procs[r].rank = r;
    run_processes(procs, run_process);

    lancbio_estimator_create(N, &options, &h);
    for (k = 0; k < STEPS; k++) {
        double diff = 0.0, norm = 0.0;
        lancbio_step_info_t info;
        info.struct_size = sizeof info;
        for (i = 0; i < N; i++) b[i] = rhs(i, k);
        CHECK(lancbio_estimator_step_f64(h, product_whole, NULL, b, v, N, &info) >= 0, "reference step");
        for (i = 0; i < N; i++) {
            diff += (sliced_v[k][i] - v[i]) * (sliced_v[k][i] - v[i]);
            norm += v[i] * v[i];
        }
        CHECK(sqrt(diff) <= 1e-12 * sqrt(norm), "method %d step %d: slices differ from one process by %g relative",
              method, k, sqrt(diff / norm));
        CHECK(info.reductions == 0, "one process reduces nothing");
        CHECK(sliced_info[0][k].products == info.products && sliced_info[0][k].status == info.status,
              "method %d step %d: the same products and outcome as one process", method, k);
        for (r = 0; r < P; r++) {
            CHECK(memcmp(&sliced_info[r][k], &sliced_info[0][k], sizeof info) == 0,
                  "method %d step %d: rank %d's info differs from rank 0's", method, k, r);
            CHECK(sliced_info[r][k].reductions == calls_per_step[r][k] && calls_per_step[r][k] > 0,
                  "method %d step %d: %lld reductions reported, %lld calls", method, k,
                  (long long)sliced_info[r][k].reductions, (long long)calls_per_step[r][k]);
        }
    }
    lancbio_estimator_destroy(h);
}

/* A product fails on rank 1 in the third step. */
static int32_t failure_status[P], failure_callback[P];
static int unchanged[P];

static void *run_failing_process(void *arg)
{
    process_t *p = (process_t *)arg;
    lancbio_estimator_t *h = NULL;
    double b[N], v[N], before[N], after[N];
    lancbio_step_info_t info_before, info_after;
    int64_t m = sizes[p->rank], o = offsets[p->rank], i;
    int k;
    lancbio_estimator_create(m, &options, &h);
    lancbio_estimator_set_reduction(h, reduce, p);
    for (k = 0; k < 3; k++) {
        int32_t status;
        for (i = 0; i < m; i++) b[i] = rhs(o + i, k);
        if (k == 2) {
            lancbio_estimator_get_v_f64(h, before, m);
            info_before.struct_size = sizeof info_before;
            lancbio_estimator_info(h, &info_before);
            if (p->rank == 1) p->fail_product = p->products + (method_under_test == LANCBIO_METHOD_LANCZOS ? 1 : 2);
        }
        status = lancbio_estimator_step_f64(h, product, p, b, v, m, NULL);
        if (k == 2) {
            failure_status[p->rank] = status;
            failure_callback[p->rank] = lancbio_estimator_callback_status(h);
            lancbio_estimator_get_v_f64(h, after, m);
            info_after.struct_size = sizeof info_after;
            lancbio_estimator_info(h, &info_after);
            unchanged[p->rank] = memcmp(before, after, (size_t)m * sizeof(double)) == 0
                && memcmp(&info_before, &info_after, sizeof info_after) == 0;
        }
    }
    lancbio_estimator_destroy(h);
    return NULL;
}

static void failure_reaches_every_process(int32_t method)
{
    process_t procs[P];
    int r;
    method_under_test = method;
    lancbio_estimator_options_init(&options, method);
    options.step_size = 0.2;
    options.max_iterations = 6;
    options.steps = 4;
    memset(procs, 0, sizeof procs);
    for (r = 0; r < P; r++) procs[r].rank = r;
    run_processes(procs, run_failing_process);
    for (r = 0; r < P; r++) {
        CHECK(failure_status[r] == LANCBIO_ERR_CALLBACK, "method %d rank %d: status %d after a failed product on rank 1",
              method, r, failure_status[r]);
        CHECK(failure_callback[r] == (r == 1 ? 5 : 0), "method %d rank %d: callback status %d", method, r,
              failure_callback[r]);
        CHECK(unchanged[r], "method %d rank %d: the failed step changed the estimator", method, r);
    }
}

/* One process: a reduction that fails at its third call. */
static int64_t single_calls;
static int32_t failing_reduce(double *values, int64_t count, void *user_data)
{
    (void)values;
    (void)count;
    (void)user_data;
    return ++single_calls == 3 ? 9 : 0;
}

static void refusals_and_failing_reduction(void)
{
    lancbio_estimator_t *h = NULL;
    double b[N], v[N], request[N], before[N], after[N];
    int64_t i;
    int32_t methods[2] = {LANCBIO_METHOD_SUBBIO, LANCBIO_METHOD_MINRES};
    int k;
    for (k = 0; k < 2; k++) {
        lancbio_estimator_options_init(&options, methods[k]);
        options.theta0 = 0.1;
        CHECK(lancbio_estimator_create(N, &options, &h) == LANCBIO_OK, "create");
        CHECK(lancbio_estimator_set_reduction(h, failing_reduce, NULL) == LANCBIO_ERR_INVALID_ARGUMENT,
              "method %d accepted a reduction", methods[k]);
        lancbio_estimator_destroy(h);
    }
    CHECK(lancbio_estimator_set_reduction(NULL, failing_reduce, NULL) == LANCBIO_ERR_INVALID_HANDLE, "NULL handle");

    lancbio_estimator_options_init(&options, LANCBIO_METHOD_LANCZOS);
    lancbio_estimator_create(N, &options, &h);
    for (i = 0; i < N; i++) b[i] = rhs(i, 0);
    CHECK(lancbio_estimator_begin_f64(h, b, request, N) == LANCBIO_NEED_PRODUCT, "begin");
    CHECK(lancbio_estimator_set_reduction(h, failing_reduce, NULL) == LANCBIO_ERR_INVALID_STATE, "set during a step");
    lancbio_estimator_cancel(h);
    /* Calls 1 (set_reduction) and 2 (the anchor's norms, b's check riding along) succeed; 3 (alpha) fails. */
    single_calls = 0;
    CHECK(lancbio_estimator_set_reduction(h, failing_reduce, NULL) == LANCBIO_OK, "set");
    lancbio_estimator_get_v_f64(h, before, N);
    CHECK(lancbio_estimator_step_f64(h, product_whole, NULL, b, v, N, NULL) == LANCBIO_ERR_CALLBACK, "failing reduction");
    CHECK(lancbio_estimator_callback_status(h) == 9, "the reduction's code is kept");
    CHECK(strstr(lancbio_estimator_last_error(h), "reduction") != NULL, "message: %s", lancbio_estimator_last_error(h));
    lancbio_estimator_get_v_f64(h, after, N);
    CHECK(memcmp(before, after, sizeof before) == 0, "the estimate is unchanged");
    /* Back to one process: the step is today's. */
    CHECK(lancbio_estimator_set_reduction(h, NULL, NULL) == LANCBIO_OK, "clear");
    CHECK(lancbio_estimator_step_f64(h, product_whole, NULL, b, v, N, NULL) >= 0, "step without a reduction");
    lancbio_estimator_destroy(h);
}

int main(void)
{
    int32_t methods[5] = {LANCBIO_METHOD_LANCZOS, LANCBIO_METHOD_CG, LANCBIO_METHOD_GD, LANCBIO_METHOD_NEUMANN,
                          LANCBIO_METHOD_RANDOM_NEUMANN};
    int k, r;
    for (r = 1; r < P; r++) offsets[r] = offsets[r - 1] + sizes[r - 1];
    pthread_barrier_init(&barrier, NULL, P);
    for (k = 0; k < 5; k++) agrees_with_one_process(methods[k]);
    failure_reaches_every_process(LANCBIO_METHOD_LANCZOS);
    failure_reaches_every_process(LANCBIO_METHOD_CG);
    failure_reaches_every_process(LANCBIO_METHOD_GD);
    refusals_and_failing_reduction();
    pthread_barrier_destroy(&barrier);
    return check_summary();
}
