/*
 * simulated_processes.h: P processes simulated by P threads of one C test program, for
 * the tests of vectors sliced across processes. Each thread's all-reduce writes its
 * values into its row of shared slots, waits at a barrier, sums the rows in rank order
 * (the same order on every thread, as an all-reduce gives every process the same sums)
 * and waits again before the slots are reused.
 *
 * Define P (the thread count) and SLOTS (the most values one reduction sums) before
 * including it; call pthread_barrier_init(&barrier, NULL, P) before starting the threads.
 */
#ifndef LANCBIO_TEST_SIMULATED_PROCESSES_H
#define LANCBIO_TEST_SIMULATED_PROCESSES_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>

static pthread_barrier_t barrier;
static double slots[P][SLOTS];

/* values[0..count) replaced by their sums over the threads; 0, or 99 when count exceeds
 * SLOTS (every thread returns it: the counts are the same everywhere). */
static int32_t all_reduce(int rank, double *values, int64_t count)
{
    int64_t i;
    int q;
    if (count > SLOTS) return 99;
    memcpy(slots[rank], values, (size_t)count * sizeof(double));
    pthread_barrier_wait(&barrier);
    for (i = 0; i < count; i++) {
        double s = 0.0;
        for (q = 0; q < P; q++) s += slots[q][i];
        values[i] = s;
    }
    pthread_barrier_wait(&barrier);
    return 0;
}

#endif
