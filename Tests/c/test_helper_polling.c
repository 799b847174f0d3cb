/*
 * test_helper_polling.c: the helper thread stops spinning through gaps it cannot bridge
 * (`make test-c`).
 *
 * Large steps share their passes with the library's helper thread, which polls for the
 * next pass for a while before it sleeps. A caller whose product takes longer than any
 * polling window (a BLAS call with its own worker threads, here a 2 ms sleep standing in
 * for one) must not find the helper spinning through every product: that core time is
 * taken from the product's threads.
 *
 * Property checked: over the products of the last STEPS - WARMUP steps, the CPU time of
 * the process's threads other than this one (the helper is the only other thread) is at
 * most MAX_POLL_US per product on average. With a fixed 250 us window it is about
 * 250 us per product. The last line is "N passed, M failed"; the exit status is non-zero if
 * any check failed.
 */
#define _POSIX_C_SOURCE 200809L

#include "lancbio.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Above the sizes from which a step shares its basis passes and its b and request passes. */
#define N 100000
#define M 10
#define STEPS 60
#define WARMUP 15
#define GAP_NS 2000000L
/* Three times the shortest window the helper polls for (HelperThread.minimumPollNanoseconds). */
#define MAX_POLL_US 60.0

#include "check.h"

static double seconds_of(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU time of every thread of the process but this one. */
static double others_cpu(void)
{
    return seconds_of(CLOCK_PROCESS_CPUTIME_ID) - seconds_of(CLOCK_THREAD_CPUTIME_ID);
}

int main(void)
{
    lancbio_estimator_options_t o;
    lancbio_estimator_t *h = NULL;
    double *b = malloc(N * sizeof *b), *request = malloc(N * sizeof *request), *product = malloc(N * sizeof *product);
    double idle_cpu = 0, run_cpu_start;
    long gaps = 0;
    int step, i;
    int32_t s;
    struct timespec gap = {0, GAP_NS};

    if (!b || !request || !product) {
        printf("out of memory\n");
        failed_total++;
        return check_summary();
    }
    lancbio_estimator_options_init(&o, LANCBIO_METHOD_LANCZOS);
    o.m0 = M;
    o.m_max = M;
    s = lancbio_estimator_create(N, &o, &h);
    CHECK(s == LANCBIO_OK, "create: status %d", (int)s);
    run_cpu_start = others_cpu();
    for (step = 0; h && step < STEPS; step++) {
        for (i = 0; i < N; i++) b[i] = 1.0 + 0.1 * (double)((i + step) % 7);
        s = lancbio_estimator_begin_f64(h, b, request, N);
        while (s == LANCBIO_NEED_PRODUCT) {
            /* The slow product: only the helper can use CPU meanwhile. */
            double before = others_cpu();
            nanosleep(&gap, NULL);
            if (step >= WARMUP) {
                idle_cpu += others_cpu() - before;
                gaps++;
            }
            for (i = 0; i < N; i++) product[i] = (1.0 + (double)(i % 10)) * request[i];
            s = lancbio_estimator_resume_f64(h, product, request, N);
        }
        CHECK(s >= 0, "step %d: status %d", step, (int)s);
    }
    CHECK(gaps > 0, "no product was requested");
    if (gaps > 0) {
        double per_gap_us = 1e6 * idle_cpu / (double)gaps;
        printf("helper CPU while the caller computed its products: %.1f us per product (%ld products); "
               "over the whole run %.1f ms\n", per_gap_us, gaps, 1e3 * (others_cpu() - run_cpu_start));
        CHECK(per_gap_us <= MAX_POLL_US, "the helper spun %.1f us per %ld us product, more than %.0f us", per_gap_us,
              GAP_NS / 1000, MAX_POLL_US);
    }
    lancbio_estimator_destroy(h);
    free(b);
    free(request);
    free(product);
    return check_summary();
}
