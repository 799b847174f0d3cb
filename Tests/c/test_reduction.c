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
 * The one-shot solves (lancbio_solve_reduced_f64 / _f32) the same way: every method
 * against lancbio_solve_f64 on the whole vector, results and last steps bitwise equal
 * across threads, result.reductions counting the calls, a product failing on one thread
 * failing the solve on every thread with x unchanged, a failing reduction, MINRES refused.
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

#include "simulated_processes.h"

static const double shift = 0.05;
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
    p->calls++;
    return all_reduce(p->rank, values, count);
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

/* One-shot solves: each thread solves on its slice; `solve_fail_product` makes rank 1's
 * product of that number fail. */
static int32_t solve_method;
static int solve_reorthogonalize;
static double solve_x0;
static int64_t solve_fail_product;
static double solve_x[N];
static float solve_x_f32[N];
static int32_t solve_status[P];
static lancbio_solve_result_t solve_result[P];
static lancbio_step_info_t solve_last[P];
static int64_t solve_calls[P];
static int solve_x_unchanged[P];
static char solve_message[P][256];

static void solve_options(lancbio_estimator_options_t *o, int32_t precision)
{
    lancbio_estimator_options_init(o, solve_method);
    o->precision = precision;
    o->step_size = 0.2;
    o->reorthogonalize = solve_reorthogonalize;
}

static int32_t product_f32(const float *in, float *out, int64_t n, void *user_data)
{
    process_t *p = (process_t *)user_data;
    double x[N], y[N];
    int64_t i;
    for (i = 0; i < n; i++) x[i] = in[i];
    memcpy(full + offsets[p->rank], x, (size_t)n * sizeof(double));
    pthread_barrier_wait(&barrier);
    apply_rows(full, y, offsets[p->rank], n);
    pthread_barrier_wait(&barrier);
    for (i = 0; i < n; i++) out[i] = (float)y[i];
    return 0;
}

static void *run_solving_process(void *arg)
{
    process_t *p = (process_t *)arg;
    lancbio_estimator_options_t o;
    double b[N], x[N], before[N];
    int64_t m = sizes[p->rank], off = offsets[p->rank], i;
    solve_options(&o, LANCBIO_FLOAT64);
    for (i = 0; i < m; i++) {
        b[i] = rhs(off + i, 0);
        x[i] = solve_x0 * cos((double)(off + i));
    }
    memcpy(before, x, sizeof x);
    if (p->rank == 1) p->fail_product = solve_fail_product;
    solve_result[p->rank].struct_size = sizeof(lancbio_solve_result_t);
    solve_last[p->rank].struct_size = sizeof(lancbio_step_info_t);
    solve_status[p->rank] = lancbio_solve_reduced_f64(&o, product, p, reduce, p, b, x, m, 1e-6, 0,
                                                      &solve_result[p->rank], &solve_last[p->rank]);
    snprintf(solve_message[p->rank], sizeof solve_message[p->rank], "%s", lancbio_last_error());
    solve_calls[p->rank] = p->calls;
    solve_x_unchanged[p->rank] = memcmp(before, x, (size_t)m * sizeof(double)) == 0;
    memcpy(solve_x + off, x, (size_t)m * sizeof(double));
    return NULL;
}

static void *run_solving_process_f32(void *arg)
{
    process_t *p = (process_t *)arg;
    lancbio_estimator_options_t o;
    float b[N], x[N];
    int64_t m = sizes[p->rank], off = offsets[p->rank], i;
    solve_options(&o, LANCBIO_FLOAT32);
    for (i = 0; i < m; i++) {
        b[i] = (float)rhs(off + i, 0);
        x[i] = 0.0f;
    }
    solve_result[p->rank].struct_size = sizeof(lancbio_solve_result_t);
    solve_last[p->rank].struct_size = sizeof(lancbio_step_info_t);
    solve_status[p->rank] = lancbio_solve_reduced_f32(&o, product_f32, p, reduce, p, b, x, m, 1e-4, 0,
                                                      &solve_result[p->rank], &solve_last[p->rank]);
    solve_calls[p->rank] = p->calls;
    memcpy(solve_x_f32 + off, x, (size_t)m * sizeof(float));
    return NULL;
}

static void run_solve(void *(*body)(void *))
{
    process_t procs[P];
    int r;
    memset(procs, 0, sizeof procs);
    for (r = 0; r < P; r++) procs[r].rank = r;
    run_processes(procs, body);
}

static void solves_agree_with_one_process(int32_t method, int reorthogonalize, double x0)
{
    lancbio_estimator_options_t o;
    lancbio_solve_result_t whole;
    lancbio_step_info_t whole_last;
    double b[N], x[N], diff = 0.0, norm = 0.0;
    int64_t i;
    int r;
    int32_t status;
    solve_method = method;
    solve_reorthogonalize = reorthogonalize;
    solve_x0 = x0;
    solve_fail_product = 0;
    run_solve(run_solving_process);

    solve_options(&o, LANCBIO_FLOAT64);
    for (i = 0; i < N; i++) {
        b[i] = rhs(i, 0);
        x[i] = x0 * cos((double)i);
    }
    whole.struct_size = sizeof whole;
    whole_last.struct_size = sizeof whole_last;
    status = lancbio_solve_f64(&o, product_whole, NULL, b, x, N, 1e-6, 0, &whole, &whole_last);
    /* GD and Neumann reach their budget: the sliced solves must agree all the same. */
    CHECK(status >= 0, "solve method %d: one process %d %s", method, status, lancbio_last_error());
    for (i = 0; i < N; i++) {
        diff += (solve_x[i] - x[i]) * (solve_x[i] - x[i]);
        norm += x[i] * x[i];
    }
    CHECK(sqrt(diff) <= 1e-12 * sqrt(norm), "solve method %d (reorthogonalize %d, x0 %g): slices differ by %g relative",
          method, reorthogonalize, x0, sqrt(diff / norm));
    CHECK(whole.reductions == 0, "one process reduces nothing");
    CHECK(solve_result[0].products == whole.products && solve_result[0].iterations == whole.iterations
          && solve_result[0].converged == whole.converged,
          "solve method %d: %lld products, %lld iterations; one process %lld, %lld", method,
          (long long)solve_result[0].products, (long long)solve_result[0].iterations, (long long)whole.products,
          (long long)whole.iterations);
    for (r = 0; r < P; r++) {
        CHECK(solve_status[r] == status, "solve method %d rank %d: status %d %s", method, r, solve_status[r],
              solve_message[r]);
        CHECK(memcmp(&solve_result[r], &solve_result[0], sizeof whole) == 0
              && memcmp(&solve_last[r], &solve_last[0], sizeof whole_last) == 0,
              "solve method %d rank %d: the result or last step differs from rank 0's", method, r);
        CHECK(solve_result[r].reductions == solve_calls[r] && solve_calls[r] > 0,
              "solve method %d rank %d: %lld reductions reported, %lld calls", method, r,
              (long long)solve_result[r].reductions, (long long)solve_calls[r]);
    }
    /* The Lanczos recurrence: the setup's 1, 2 per step, 1 per check (x0 = 0 needs none first). */
    if (method == LANCBIO_METHOD_LANCZOS && !reorthogonalize) {
        int64_t checks = solve_result[0].products - solve_result[0].iterations;
        CHECK(solve_result[0].reductions == 1 + 2 * solve_result[0].iterations + checks,
              "Lanczos solve: %lld reductions for %lld steps and %lld checks", (long long)solve_result[0].reductions,
              (long long)solve_result[0].iterations, (long long)checks);
    }
}

static void solve_failures(void)
{
    lancbio_estimator_options_t o;
    lancbio_solve_result_t result;
    double b[N], x[N], before[N];
    int64_t i;
    int r;
    int32_t methods[2] = {LANCBIO_METHOD_LANCZOS, LANCBIO_METHOD_CG}, k;
    for (k = 0; k < 2; k++) {
        solve_method = methods[k];
        solve_reorthogonalize = 0;
        solve_x0 = 0.1;
        solve_fail_product = 4;
        run_solve(run_solving_process);
        for (r = 0; r < P; r++) {
            CHECK(solve_status[r] == LANCBIO_ERR_CALLBACK, "failed solve method %d rank %d: status %d", methods[k], r,
                  solve_status[r]);
            CHECK(strstr(solve_message[r], r == 1 ? "returned 5" : "process") != NULL,
                  "failed solve rank %d: message %s", r, solve_message[r]);
            CHECK(solve_x_unchanged[r], "failed solve method %d rank %d: x changed", methods[k], r);
        }
    }
    /* MINRES: refused on every process before any reduction. */
    solve_method = LANCBIO_METHOD_MINRES;
    solve_fail_product = 0;
    run_solve(run_solving_process);
    for (r = 0; r < P; r++) {
        CHECK(solve_status[r] == LANCBIO_ERR_INVALID_ARGUMENT && solve_calls[r] == 0,
              "MINRES solve rank %d: status %d after %lld reductions", r, solve_status[r], (long long)solve_calls[r]);
    }
    /* One process, a reduction failing at its second call; a NULL reduction. */
    solve_method = LANCBIO_METHOD_LANCZOS;
    solve_options(&o, LANCBIO_FLOAT64);
    for (i = 0; i < N; i++) {
        b[i] = rhs(i, 0);
        x[i] = before[i] = 0.5;
    }
    single_calls = 1;
    result.struct_size = sizeof result;
    CHECK(lancbio_solve_reduced_f64(&o, product_whole, NULL, failing_reduce, NULL, b, x, N, 1e-8, 0, &result, NULL)
          == LANCBIO_ERR_CALLBACK, "failing reduction in a solve");
    CHECK(strstr(lancbio_last_error(), "returned 9") != NULL, "message: %s", lancbio_last_error());
    CHECK(memcmp(before, x, sizeof x) == 0, "x unchanged after a failing reduction");
    CHECK(lancbio_solve_reduced_f64(&o, product_whole, NULL, NULL, NULL, b, x, N, 1e-8, 0, &result, NULL)
          == LANCBIO_ERR_NULL_POINTER, "NULL reduction");
    /* A result struct of the first layout: accepted, the appended field left alone. */
    {
        unsigned char buffer[sizeof(lancbio_solve_result_t)];
        lancbio_solve_result_t *old = (lancbio_solve_result_t *)(void *)buffer;
        memset(buffer, 0xab, sizeof buffer);
        old->struct_size = 48;
        CHECK(lancbio_solve_f64(&o, product_whole, NULL, b, x, N, 1e-8, 0, old, NULL) == LANCBIO_OK, "48-byte result");
        CHECK(old->struct_size == 48 && buffer[sizeof buffer - 1] == 0xab, "the 48-byte result's tail is untouched");
    }
}

static void solve_f32_across_processes(void)
{
    int r;
    solve_method = LANCBIO_METHOD_LANCZOS;
    solve_reorthogonalize = 0;
    run_solve(run_solving_process_f32);
    for (r = 0; r < P; r++) {
        CHECK(solve_status[r] == LANCBIO_OK, "f32 solve rank %d: status %d", r, solve_status[r]);
        CHECK(memcmp(&solve_result[r], &solve_result[0], sizeof solve_result[0]) == 0, "f32 solve rank %d: result differs", r);
        CHECK(solve_result[r].reductions == solve_calls[r], "f32 solve rank %d: reductions", r);
    }
    CHECK(solve_result[0].residual <= 1e-4 * solve_result[0].rhs_norm, "f32 solve: residual %g", solve_result[0].residual);
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
    solves_agree_with_one_process(LANCBIO_METHOD_LANCZOS, 0, 0.0);
    solves_agree_with_one_process(LANCBIO_METHOD_LANCZOS, 0, 0.1);
    solves_agree_with_one_process(LANCBIO_METHOD_LANCZOS, 1, 0.0);
    solves_agree_with_one_process(LANCBIO_METHOD_CG, 0, 0.1);
    solves_agree_with_one_process(LANCBIO_METHOD_GD, 0, 0.0);
    solves_agree_with_one_process(LANCBIO_METHOD_NEUMANN, 0, 0.0);
    solve_failures();
    solve_f32_across_processes();
    pthread_barrier_destroy(&barrier);
    return check_summary();
}
