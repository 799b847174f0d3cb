/*
 * test_reverse_reduction.c: reductions by reverse communication
 * (lancbio_estimator_set_reverse_reduction, LANCBIO_NEED_REDUCTION), P processes
 * simulated by P threads.
 *
 * Each thread drives its estimator on its slice by begin/resume alone and does every sum
 * itself between the library's calls (through shared slots and a barrier, as an
 * all-reduce would): the estimates and the step infos must be bitwise those of the same
 * threads with a reduction callback (lancbio_estimator_set_reduction), since the
 * reductions are the same in the same order. Also checked: a NaN product on one thread
 * fails the step on every thread, each estimate unchanged; cancel and destroy with a
 * reduction pending; the calls refused while one is pending; the callback-driven step
 * refused in this mode; a wrong count leaving the reduction pending.
 * The last line is "N passed, M failed"; the exit status is non-zero if any check failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "lancbio.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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

static int32_t reduce(double *values, int64_t count, void *user_data)
{
    return all_reduce(*(int *)user_data, values, count);
}

/* Rows of A x for this thread's slice, A = tridiag(-1, 2 + shift, -1). */
static void apply(int rank, const double *x, double *y)
{
    int64_t i, m = sizes[rank], o = offsets[rank];
    memcpy(full + o, x, (size_t)m * sizeof(double));
    pthread_barrier_wait(&barrier);
    for (i = 0; i < m; i++) {
        int64_t r = o + i;
        double left = r > 0 ? full[r - 1] : 0.0, right = r + 1 < N ? full[r + 1] : 0.0;
        y[i] = (2.0 + shift) * full[r] - left - right;
    }
    pthread_barrier_wait(&barrier);
}

static int32_t product(const double *in, double *out, int64_t n, void *user_data)
{
    (void)n;
    apply(*(int *)user_data, in, out);
    return 0;
}

static double rhs(int64_t i, int step) { return sin(0.3 * (double)i + 1.0) * (1.0 + 0.05 * step) + 0.01 * (double)(i % 3); }

static lancbio_estimator_options_t options;
static int32_t method_under_test;
static double hooked_v[P][STEPS][N], reverse_v[P][STEPS][N];
static lancbio_step_info_t hooked_info[P][STEPS], reverse_info[P][STEPS];
static int ranks[P];
/* Rank 1's product is NaN in this step (-1: never). */
static int nan_step = -1;
static int32_t nan_status[P];
static int nan_unchanged[P];

/* One reverse-communication step, the sums done here; returns the final status. */
static int32_t reverse_step(lancbio_estimator_t *h, int rank, const double *b, int nan_product, int64_t *reductions)
{
    double request[N], y[N], values[SLOTS];
    int64_t m = sizes[rank], count = 0;
    int32_t status = lancbio_estimator_begin_f64(h, b, request, m);
    *reductions = 0;
    while (status == LANCBIO_NEED_PRODUCT || status == LANCBIO_NEED_REDUCTION) {
        if (status == LANCBIO_NEED_PRODUCT) {
            apply(rank, request, y);
            if (nan_product) y[0] = NAN;
            status = lancbio_estimator_resume_f64(h, y, request, m);
        } else {
            CHECK(lancbio_estimator_reduction_values(h, values, SLOTS, &count) == LANCBIO_OK, "reduction_values");
            CHECK(all_reduce(rank, values, count) == 0, "%lld values to reduce", (long long)count);
            (*reductions)++;
            status = lancbio_estimator_resume_reduction_f64(h, values, count, request, m);
        }
    }
    return status;
}

static void *run(void *arg)
{
    int rank = *(int *)arg, mode;
    int64_t m = sizes[rank], o = offsets[rank], i;
    for (mode = 0; mode < 2; mode++) {
        lancbio_estimator_t *h = NULL;
        double b[N], v[N], before[N];
        int k;
        CHECK(lancbio_estimator_create(m, &options, &h) == LANCBIO_OK, "create");
        if (mode == 0) {
            CHECK(lancbio_estimator_set_reduction(h, reduce, arg) == LANCBIO_OK, "set_reduction");
        } else {
            CHECK(lancbio_estimator_set_reverse_reduction(h, N) == LANCBIO_OK, "set_reverse_reduction: %s",
                  lancbio_estimator_last_error(h));
        }
        for (k = 0; k < STEPS; k++) {
            int32_t status;
            int64_t reductions = 0;
            lancbio_step_info_t *info = mode == 0 ? &hooked_info[rank][k] : &reverse_info[rank][k];
            for (i = 0; i < m; i++) b[i] = rhs(o + i, k);
            if (mode == 0) {
                info->struct_size = sizeof *info;
                status = lancbio_estimator_step_f64(h, product, arg, b, v, m, info);
                CHECK(status >= 0, "hooked step %d rank %d: %d", k, rank, status);
                lancbio_estimator_get_v_f64(h, hooked_v[rank][k], m);
                continue;
            }
            if (k == nan_step) lancbio_estimator_get_v_f64(h, before, m);
            status = reverse_step(h, rank, b, k == nan_step && rank == 1, &reductions);
            if (k == nan_step) {
                double after[N];
                nan_status[rank] = status;
                lancbio_estimator_get_v_f64(h, after, m);
                nan_unchanged[rank] = memcmp(before, after, (size_t)m * sizeof(double)) == 0;
                /* The same step again, without the NaN: the runs stay comparable. */
                status = reverse_step(h, rank, b, 0, &reductions);
            }
            CHECK(status >= 0, "method %d reverse step %d rank %d: %d %s", method_under_test, k, rank, status,
                  lancbio_estimator_last_error(h));
            info->struct_size = sizeof *info;
            lancbio_estimator_info(h, info);
            CHECK(info->reductions == reductions, "method %d step %d: info counts %lld reductions, %lld were asked",
                  method_under_test, k, (long long)info->reductions, (long long)reductions);
            lancbio_estimator_get_v_f64(h, reverse_v[rank][k], m);
        }
        lancbio_estimator_destroy(h);
    }
    return NULL;
}

static void agrees_with_the_callback(int32_t method)
{
    pthread_t threads[P];
    int r, k;
    method_under_test = method;
    lancbio_estimator_options_init(&options, method);
    options.step_size = 0.2;
    options.m0 = 4;
    options.m_max = 10;
    options.max_iterations = 6;
    options.steps = 4;
    nan_step = method == LANCBIO_METHOD_LANCZOS || method == LANCBIO_METHOD_CG ? 3 : -1;
    for (r = 0; r < P; r++) pthread_create(&threads[r], NULL, run, &ranks[r]);
    for (r = 0; r < P; r++) pthread_join(threads[r], NULL);
    for (r = 0; r < P; r++) {
        for (k = 0; k < STEPS; k++) {
            CHECK(memcmp(hooked_v[r][k], reverse_v[r][k], (size_t)sizes[r] * sizeof(double)) == 0,
                  "method %d step %d rank %d: reverse reductions give other bits than the callback", method, k, r);
            CHECK(memcmp(&hooked_info[r][k], &reverse_info[r][k], sizeof hooked_info[r][k]) == 0,
                  "method %d step %d rank %d: the infos differ", method, k, r);
        }
        if (nan_step >= 0) {
            CHECK(nan_status[r] == LANCBIO_ERR_NON_FINITE_PRODUCT, "method %d rank %d: a NaN product on rank 1 gave %d",
                  method, r, nan_status[r]);
            CHECK(nan_unchanged[r], "method %d rank %d: the failed step changed the estimate", method, r);
        }
    }
}

/* Threads of this process (its /proc/self/task entries), -1 where that cannot be read. */
static int threads_now(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int threads = -1;
    if (f == NULL) return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "Threads: %d", &threads) == 1) break;
    fclose(f);
    return threads;
}
static int threads_before;

/* One process: the sums are the values themselves. Steps one whole CG step from b. */
static int32_t one_process_step(lancbio_estimator_t *h, double *b, double *v, int clobber_b)
{
    double request[N], values[SLOTS], kept[N];
    int64_t i, count = 0;
    int32_t status;
    memcpy(kept, b, sizeof kept);
    status = lancbio_estimator_begin_f64(h, b, request, N);
    /* The library must not read b once begin has returned. */
    if (clobber_b) memset(b, 0x7f, (size_t)N * sizeof(double));
    while (status == LANCBIO_NEED_PRODUCT || status == LANCBIO_NEED_REDUCTION) {
        if (status == LANCBIO_NEED_PRODUCT) {
            double y[N];
            for (i = 0; i < N; i++) {
                double left = i > 0 ? request[i - 1] : 0.0, right = i + 1 < N ? request[i + 1] : 0.0;
                y[i] = (2.0 + shift) * request[i] - left - right;
            }
            status = lancbio_estimator_resume_f64(h, y, request, N);
        } else {
            lancbio_estimator_reduction_values(h, values, SLOTS, &count);
            status = lancbio_estimator_resume_reduction_f64(h, values, count, request, N);
        }
    }
    memcpy(b, kept, sizeof kept);
    lancbio_estimator_get_v_f64(h, v, N);
    return status;
}

/* b's norm out of the safe range (its rescaling needs b again after b's reduction
 * returned): the step must not depend on the caller's b after begin; set_v in this mode
 * checks locally and returns (no reduction to hand back). */
static void caller_buffers_are_not_read_after_a_call(void)
{
    lancbio_estimator_t *a = NULL, *c = NULL;
    double b[N], va[N], vc[N];
    int64_t i;
    int32_t sa, sc;
    lancbio_estimator_options_init(&options, LANCBIO_METHOD_CG);
    options.max_iterations = 5;
    for (i = 0; i < N; i++) b[i] = 1e200 * rhs(i, 0);
    lancbio_estimator_create(N, &options, &a);
    lancbio_estimator_create(N, &options, &c);
    lancbio_estimator_set_reverse_reduction(a, N);
    lancbio_estimator_set_reverse_reduction(c, N);
    sa = one_process_step(a, b, va, 0);
    sc = one_process_step(c, b, vc, 1);
    CHECK(sa >= 0 && sa == sc, "b at 1e200: status %d kept, %d with b overwritten after begin", sa, sc);
    CHECK(memcmp(va, vc, sizeof va) == 0, "b at 1e200: the estimate depends on b after begin returned");
    for (i = 0; i < N; i++) va[i] = 0.5;
    CHECK(lancbio_estimator_set_v_f64(a, va, N) == LANCBIO_OK, "set_v in reverse mode: %s", lancbio_estimator_last_error(a));
    va[3] = NAN;
    CHECK(lancbio_estimator_set_v_f64(a, va, N) == LANCBIO_ERR_NON_FINITE_INPUT, "set_v rejects NaN locally");
    lancbio_estimator_destroy(a);
    lancbio_estimator_destroy(c);
}

/* One process (P = 1 in effect: every sum is the value itself). */
static void one_process_states(void)
{
    lancbio_estimator_t *h = NULL;
    double b[N], v[N], request[N], values[SLOTS], before[N], after[N];
    int64_t i, count = 0;
    int32_t status;
    lancbio_estimator_options_init(&options, LANCBIO_METHOD_CG);
    options.max_iterations = 5;
    for (i = 0; i < N; i++) b[i] = rhs(i, 0);
    threads_before = threads_now();
    CHECK(lancbio_estimator_create(N, &options, &h) == LANCBIO_OK, "create");
    CHECK(lancbio_estimator_set_reverse_reduction(h, N - 1) == LANCBIO_ERR_INVALID_ARGUMENT, "total_n < n refused");
    CHECK(lancbio_estimator_set_reverse_reduction(NULL, N) == LANCBIO_ERR_INVALID_HANDLE, "NULL handle");
    CHECK(lancbio_estimator_set_reverse_reduction(h, N) == LANCBIO_OK, "set");
    CHECK(lancbio_estimator_reduction_values(h, values, SLOTS, &count) == LANCBIO_ERR_INVALID_STATE, "nothing pending");
    CHECK(lancbio_estimator_step_f64(h, product, &ranks[0], b, v, N, NULL) == LANCBIO_ERR_INVALID_STATE,
          "the callback step is refused");
    lancbio_estimator_get_v_f64(h, before, N);
    status = lancbio_estimator_begin_f64(h, b, request, N);
    CHECK(status == LANCBIO_NEED_REDUCTION, "CG's first call reduces b: %d", status);
    CHECK(lancbio_estimator_reduction_values(h, values, 1, &count) == LANCBIO_ERR_INVALID_ARGUMENT, "capacity too small");
    CHECK(lancbio_estimator_reduction_values(h, values, SLOTS, &count) == LANCBIO_OK && count > 0, "values");
    CHECK(lancbio_estimator_begin_f64(h, b, request, N) == LANCBIO_ERR_INVALID_STATE, "begin while pending");
    CHECK(lancbio_estimator_set_v_f64(h, b, N) == LANCBIO_ERR_INVALID_STATE, "set_v while pending");
    CHECK(lancbio_estimator_resume_f64(h, b, request, N) == LANCBIO_ERR_INVALID_STATE, "a product while a reduction is pending");
    CHECK(lancbio_estimator_resume_reduction_f64(h, values, count + 1, request, N) == LANCBIO_ERR_INVALID_ARGUMENT,
          "wrong count");
    CHECK(lancbio_estimator_reduction_values(h, values, SLOTS, &count) == LANCBIO_OK, "still pending after a wrong count");
    CHECK(lancbio_estimator_cancel(h) == LANCBIO_OK, "cancel while pending");
    CHECK(lancbio_estimator_reduction_values(h, values, SLOTS, &count) == LANCBIO_ERR_INVALID_STATE, "nothing pending after cancel");
    lancbio_estimator_get_v_f64(h, after, N);
    CHECK(memcmp(before, after, sizeof before) == 0, "cancel leaves the estimate");
    /* A whole step on one process after the cancel, then one left pending at destroy. */
    status = one_process_step(h, b, v, 0);
    CHECK(status >= 0, "a whole step on one process: %d %s", status, lancbio_estimator_last_error(h));
    CHECK(lancbio_estimator_begin_f64(h, b, request, N) == LANCBIO_NEED_REDUCTION, "pending again");
    {
        /* A forked child, where the worker the pending call waits on does not exist: it can
         * cancel, step (on a worker of its own) and destroy, and exits. Its verdict comes
         * through a pipe, not its exit status: under valgrind a child's exit status reports
         * the leak of the parent's suspended call, which the child cannot free. */
        int verdict[2] = {-1, -1};
        char answer = 0;
        pid_t child;
        CHECK(pipe(verdict) == 0, "pipe");
        child = fork();
        if (child == 0) {
            /* The pending call's rest is on the parent's worker: refused, not waited for. */
            int ok = lancbio_estimator_reduction_values(h, values, SLOTS, &count) == LANCBIO_ERR_INVALID_STATE
                && lancbio_estimator_resume_reduction_f64(h, values, 1, request, N) == LANCBIO_ERR_INVALID_STATE;
            ok = ok && lancbio_estimator_cancel(h) == LANCBIO_OK;
            status = lancbio_estimator_begin_f64(h, b, request, N);
            ok = ok && status == LANCBIO_NEED_REDUCTION;
            lancbio_estimator_destroy(h);
            answer = ok ? 'y' : 'n';
            if (write(verdict[1], &answer, 1) != 1) _exit(2);
            _exit(0);
        } else {
            int child_status = -1;
            close(verdict[1]);
            CHECK(child > 0 && read(verdict[0], &answer, 1) == 1 && answer == 'y',
                  "a forked child is refused the parent's pending reduction, cancels it and steps again");
            CHECK(waitpid(child, &child_status, 0) == child && WIFEXITED(child_status), "the child exits");
            close(verdict[0]);
        }
    }
    CHECK(lancbio_estimator_reduction_values(h, values, SLOTS, &count) == LANCBIO_OK, "the parent's call still pending");
    lancbio_estimator_destroy(h);
    CHECK(threads_now() == threads_before, "destroy with a reduction pending ends the worker: %d threads, %d before",
          threads_now(), threads_before);
    lancbio_estimator_options_init(&options, LANCBIO_METHOD_MINRES);
    lancbio_estimator_create(N, &options, &h);
    CHECK(lancbio_estimator_set_reverse_reduction(h, N) == LANCBIO_ERR_INVALID_ARGUMENT, "MINRES refuses");
    lancbio_estimator_destroy(h);
}

int main(void)
{
    int32_t methods[4] = {LANCBIO_METHOD_LANCZOS, LANCBIO_METHOD_CG, LANCBIO_METHOD_GD, LANCBIO_METHOD_NEUMANN};
    int k, r;
    for (r = 0; r < P; r++) ranks[r] = r;
    for (r = 1; r < P; r++) offsets[r] = offsets[r - 1] + sizes[r - 1];
    pthread_barrier_init(&barrier, NULL, P);
    for (k = 0; k < 4; k++) agrees_with_the_callback(methods[k]);
    pthread_barrier_destroy(&barrier);
    one_process_states();
    caller_buffers_are_not_read_after_a_call();
    return check_summary();
}
