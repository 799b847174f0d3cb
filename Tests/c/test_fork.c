/*
 * test_fork.c: a process may fork while other threads are inside lancbio calls, and the
 * child can then use the library (`make test-c`).
 *
 * WORKERS threads create, step, read and destroy estimator and bilevel handles and make
 * failing handle-less calls (lancbio_last_error) as fast as they can, so that at any
 * moment one of them is likely to be inside the library's handle registry or its other
 * shared state; one more steps an estimator of dimension LARGE, whose passes the library
 * shares with its helper thread (which a child does not have). Meanwhile the main thread
 * forks FORKS times (LANCBIO_TEST_FORKS overrides). fork copies only the forking thread:
 * whatever the workers held at that moment stays held, with no thread left to release it.
 *
 * Property checked: every child can create, step, reset, read and destroy handles of both
 * kinds (every tenth child also one of dimension LARGE) and get a handle-less call's
 * message, with results equal to the exact solution of a diagonal system, and exits 0
 * within CHILD_SECONDS (a child that deadlocks is killed by its alarm and counted as
 * failed; one that traps is counted with its signal). The last line is "N passed, M
 * failed"; the exit status is non-zero if any check failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "lancbio.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 3
#define FORKS 200
#define N 8
/* Above the size from which a step shares its passes over b with the helper thread. */
#define LARGE 80000
#define CHILD_SECONDS 20

#include "check.h"

/* A = diag(1..N). */
static int32_t hvp(const double *in, double *out, int64_t n, void *user_data)
{
    int64_t i;
    (void)user_data;
    for (i = 0; i < n; i++) out[i] = (double)(i + 1) * in[i];
    return 0;
}

/* The bilevel problem g = 0.5 ||y - x||^2 (A = I), f = 0.5 ||y||^2: every callback cheap. */
static int32_t grad_y_g(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *u)
{
    int64_t i;
    (void)dx;
    (void)u;
    for (i = 0; i < dy; i++) out[i] = y[i] - x[i];
    return 0;
}
static int32_t grad_x_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *u)
{
    int64_t i;
    (void)x;
    (void)y;
    (void)dy;
    (void)u;
    for (i = 0; i < dx; i++) out[i] = 0;
    return 0;
}
static int32_t grad_y_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *u)
{
    (void)x;
    (void)dx;
    (void)u;
    memcpy(out, y, (size_t)dy * sizeof *out);
    return 0;
}
static int32_t hvp_yy_g(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *u)
{
    (void)x;
    (void)dx;
    (void)y;
    (void)u;
    memcpy(out, v, (size_t)dy * sizeof *out);
    return 0;
}
static int32_t jvp_xy_g(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *u)
{
    int64_t i;
    (void)x;
    (void)y;
    (void)dy;
    (void)u;
    for (i = 0; i < dx; i++) out[i] = -v[i];
    return 0;
}

static lancbio_problem_f64_t problem(void)
{
    lancbio_problem_f64_t p;
    memset(&p, 0, sizeof p);
    p.struct_size = (int64_t)sizeof p;
    p.grad_y_g = grad_y_g;
    p.grad_x_f = grad_x_f;
    p.grad_y_f = grad_y_f;
    p.hvp_yy_g = hvp_yy_g;
    p.jvp_xy_g = jvp_xy_g;
    return p;
}

/* CG with N iterations solves diag(1..N) v = b exactly (to rounding) in one step. */
static lancbio_estimator_options_t cg_options(void)
{
    lancbio_estimator_options_t o;
    lancbio_estimator_options_init(&o, LANCBIO_METHOD_CG);
    o.max_iterations = N;
    return o;
}

/* One round of everything a child must be able to do; 0 when every result is right.
 * `tag` varies b so that each round's answer differs. */
static int exercise(int tag)
{
    lancbio_estimator_options_t o = cg_options(), bad = cg_options();
    lancbio_bilevel_options_t bo;
    lancbio_problem_f64_t p = problem();
    lancbio_estimator_t *h = NULL, *refused = NULL;
    lancbio_bilevel_t *bl = NULL;
    double b[N], v[N], w[N], x[N], y[N];
    int i, wrong = 0;
    for (i = 0; i < N; i++) b[i] = 1.0 + (double)((i + tag) % 5);
    if (lancbio_estimator_create(N, &o, &h) != LANCBIO_OK) return 1;
    if (lancbio_estimator_step_f64(h, hvp, NULL, b, v, N, NULL) < 0) wrong |= 2;
    if (lancbio_estimator_get_v_f64(h, w, N) != LANCBIO_OK) wrong |= 4;
    for (i = 0; i < N; i++)
        if (fabs(v[i] - b[i] / (double)(i + 1)) > 1e-10 || w[i] != v[i]) wrong |= 8;
    if (lancbio_estimator_reset(h) != LANCBIO_OK || lancbio_estimator_get_v_f64(h, w, N) != LANCBIO_OK) wrong |= 16;
    for (i = 0; i < N; i++)
        if (w[i] != 0) wrong |= 16;
    lancbio_estimator_destroy(h);
    if (lancbio_estimator_get_v_f64(h, w, N) != LANCBIO_ERR_INVALID_HANDLE) wrong |= 32;

    bad.max_iterations = -1; /* a handle-less failure with a message */
    if (lancbio_estimator_create(N, &bad, &refused) != LANCBIO_ERR_INVALID_ARGUMENT || refused != NULL ||
        lancbio_last_error()[0] == 0)
        wrong |= 64;

    lancbio_bilevel_options_init(&bo);
    bo.lr_x = bo.lr_y = 0.5;
    bo.inner_steps = 1;
    if (lancbio_bilevel_create(N, N, &bo, &o, &bl) != LANCBIO_OK) return wrong | 128;
    for (i = 0; i < N; i++) x[i] = y[i] = b[i];
    if (lancbio_bilevel_step_f64(bl, &p, x, N, y, N, NULL) < 0) wrong |= 256;
    /* y moved half way to x (= b): unchanged; v solves I v = y; x -= 0.5 (0 - (-v)). */
    for (i = 0; i < N; i++)
        if (fabs(y[i] - b[i]) > 1e-12 || fabs(x[i] - 0.5 * b[i]) > 1e-12) wrong |= 512;
    lancbio_bilevel_destroy(bl);
    return wrong;
}

/* A = diag(1 + i mod 4): four distinct eigenvalues, so CG with 4 iterations gives the
 * exact solution (to rounding). */
static int32_t hvp_large(const double *in, double *out, int64_t n, void *user_data)
{
    int64_t i;
    (void)user_data;
    for (i = 0; i < n; i++) out[i] = (double)(1 + i % 4) * in[i];
    return 0;
}

/* Steps h (CG of dimension LARGE) once with a b that depends on tag; 0 when v = A^{-1} b. */
static int large_step(lancbio_estimator_t *h, double *b, double *v, int tag)
{
    int64_t i;
    for (i = 0; i < LARGE; i++) b[i] = 1.0 + (double)((i + tag) % 7);
    if (lancbio_estimator_step_f64(h, hvp_large, NULL, b, v, LARGE, NULL) < 0) return 1;
    for (i = 0; i < LARGE; i++)
        if (fabs(v[i] - b[i] / (double)(1 + i % 4)) > 1e-9 * b[i]) return 2;
    return 0;
}

static lancbio_estimator_t *large_estimator(void)
{
    lancbio_estimator_options_t o;
    lancbio_estimator_t *h = NULL;
    lancbio_estimator_options_init(&o, LANCBIO_METHOD_CG);
    o.max_iterations = 4;
    return lancbio_estimator_create(LARGE, &o, &h) == LANCBIO_OK ? h : NULL;
}

/* A large estimator created, stepped and destroyed; 0 when its result is right. */
static int large_round(int tag)
{
    static double b[LARGE], v[LARGE];
    lancbio_estimator_t *h = large_estimator();
    int wrong;
    if (!h) return 1;
    wrong = large_step(h, b, v, tag);
    lancbio_estimator_destroy(h);
    return wrong;
}

static volatile sig_atomic_t stop;
static long rounds[WORKERS + 1];

/* The calls that go through the handle registry and nothing else much: create, look up
 * (get_v, properties), destroy, at n = 1. */
static int registry_round(void)
{
    lancbio_estimator_options_t o = cg_options();
    lancbio_estimator_t *h = NULL;
    double v = 1;
    int64_t n = 0;
    int k, wrong = 0;
    if (lancbio_estimator_create(1, &o, &h) != LANCBIO_OK) return 1;
    for (k = 0; k < 4; k++)
        if (lancbio_estimator_get_v_f64(h, &v, 1) != LANCBIO_OK || v != 0) wrong = 1;
    if (lancbio_estimator_properties(h, &n, NULL, NULL) != LANCBIO_OK || n != 1) wrong = 1;
    lancbio_estimator_destroy(h);
    return wrong;
}

static void *worker(void *arg)
{
    long id = (long)arg;
    int tag = 0;
    while (!stop) {
        tag++;
        if ((tag % 8 == 0 ? exercise(tag + (int)id) : registry_round()) != 0) {
            printf("  FAIL: a worker's round gave a wrong result\n");
            __atomic_add_fetch(&failed_total, 1, __ATOMIC_RELAXED);
        }
        __atomic_add_fetch(&rounds[id], 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* Steps one large estimator for ever (the helper thread takes part in each step). */
static void *large_worker(void *arg)
{
    double *b = malloc(LARGE * sizeof *b), *v = malloc(LARGE * sizeof *v);
    lancbio_estimator_t *h = large_estimator();
    int tag = 0;
    (void)arg;
    if (!b || !v || !h) {
        printf("  FAIL: the large worker could not start\n");
        __atomic_add_fetch(&failed_total, 1, __ATOMIC_RELAXED);
        stop = 1;
    }
    while (!stop) {
        if (large_step(h, b, v, tag++) != 0) {
            printf("  FAIL: a large step gave a wrong result\n");
            __atomic_add_fetch(&failed_total, 1, __ATOMIC_RELAXED);
        }
        __atomic_add_fetch(&rounds[WORKERS], 1, __ATOMIC_RELAXED);
    }
    lancbio_estimator_destroy(h);
    free(b);
    free(v);
    return NULL;
}

static long total_rounds(void)
{
    long sum = 0;
    int k;
    for (k = 0; k <= WORKERS; k++) sum += __atomic_load_n(&rounds[k], __ATOMIC_RELAXED);
    return sum;
}

int main(void)
{
    pthread_t threads[WORKERS + 1];
    long k, forks = FORKS;
    int exited_ok = 0, by_signal = 0, by_status = 0, first_signal = 0;
    const char *env = getenv("LANCBIO_TEST_FORKS");
    if (env && atol(env) > 0) forks = atol(env);

    /* The library works before any fork, and its one-time initialisation is done. */
    CHECK(exercise(0) == 0, "a round on the main thread gave a wrong result before any fork");
    CHECK(large_round(0) == 0, "a large round on the main thread gave a wrong result before any fork");

    for (k = 0; k < WORKERS; k++) pthread_create(&threads[k], NULL, worker, (void *)k);
    pthread_create(&threads[WORKERS], NULL, large_worker, NULL);
    while (total_rounds() < 10 || __atomic_load_n(&rounds[WORKERS], __ATOMIC_RELAXED) < 2) sched_yield();

    for (k = 0; k < forks; k++) {
        pid_t pid;
        int status = 0;
        /* Fork at a varying point of the workers' rounds. */
        struct timespec pause = {0, (long)(k % 7) * 3000};
        nanosleep(&pause, NULL);
        FILE *log = tmpfile();
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            int r;
            if (log) dup2(fileno(log), 2); /* the first failure's report is shown below */
            alarm(CHILD_SECONDS);
            r = exercise((int)k) | exercise((int)k + 1) | (k % 10 == 0 ? large_round((int)k) : 0);
            _exit(r == 0 ? 0 : 1);
        }
        if (pid < 0) {
            CHECK(0, "fork %ld failed", k);
            break;
        }
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            exited_ok++;
        } else {
            if (WIFSIGNALED(status)) {
                if (by_signal++ == 0) first_signal = WTERMSIG(status);
            } else {
                by_status++;
            }
            if (log && by_signal + by_status == 1) {
                char line[512];
                int lines = 0;
                printf("  the first failed child (fork %ld) wrote:\n", k);
                rewind(log);
                while (lines++ < 3 && fgets(line, sizeof line, log)) printf("    %s", line);
            }
        }
        if (log) fclose(log);
    }
    stop = 1;
    for (k = 0; k <= WORKERS; k++) pthread_join(threads[k], NULL);

    CHECK(exited_ok == forks,
          "%d of %ld children forked while %d threads were inside lancbio calls exited 0: %d killed by a signal "
          "(first: %d, %s), %d with a wrong result",
          exited_ok, forks, WORKERS + 1, by_signal, first_signal, by_signal ? strsignal(first_signal) : "-", by_status);
    CHECK(total_rounds() > forks, "the workers made only %ld rounds during %ld forks", total_rounds(), forks);
    printf("%ld forks, %ld worker rounds (%ld large steps)\n", forks, total_rounds(),
           __atomic_load_n(&rounds[WORKERS], __ATOMIC_RELAXED));
    return check_summary();
}
