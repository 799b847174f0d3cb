/*
 * check.h: the check bookkeeping of the C test programs in this folder.
 *
 * CHECK(condition, printf-format, args...) counts one check; a failed one prints
 * "  FAIL line L: message" (its arguments are evaluated only then). The program ends with
 * `return check_summary();`, which prints the last line, "N passed, M failed", and gives the
 * exit status: 0 when no check failed, 1 otherwise. A check whose message CHECK's line
 * would not locate (one helper making many checks) calls check_pass and check_fail itself.
 * GCC and clang check the format against its arguments, as they do for printf.
 *
 * A program may define, before including this header:
 *   CHECK_GROUP_WIDTH       its checks run in named groups (run_group), each reported on a
 *                           line "[ok]   name  K checks" with the name padded to this width;
 *                           FAIL lines then name their group: "  FAIL [name] line L: ...";
 *   CHECK_GROUP_CPU_TIME    the [ok] line also gives the group's CPU time;
 *   CHECK_PRINTED_FAILURES  how many FAIL lines a group (without groups, the program) prints
 *                           at most, where a failure repeated in a loop would bury the rest;
 *                           every failure is still counted;
 *   CHECK_THREAD_SAFE       checks run on several threads at once (link with -pthread);
 *   CHECK_SUMMARY_PREFIX    a string printed before the last line's counts.
 * Strict C99 (`-std=c99 -pedantic`), as the programs are compiled.
 */
#ifndef LANCBIO_TESTS_CHECK_H
#define LANCBIO_TESTS_CHECK_H

#include <stdarg.h>
#include <stdio.h>

#ifndef CHECK_PRINTED_FAILURES
#define CHECK_PRINTED_FAILURES 0 /* 0: all of them */
#endif
#ifndef CHECK_SUMMARY_PREFIX
#define CHECK_SUMMARY_PREFIX ""
#endif

#ifdef CHECK_THREAD_SAFE
#include <pthread.h>
static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;
#define CHECK_LOCK_() pthread_mutex_lock(&check_lock)
#define CHECK_UNLOCK_() pthread_mutex_unlock(&check_lock)
#else
#define CHECK_LOCK_() ((void)0)
#define CHECK_UNLOCK_() ((void)0)
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CHECK_PRINTF_(format_index) __attribute__((format(printf, format_index, format_index + 1)))
#else
#define CHECK_PRINTF_(format_index)
#endif

/* The whole program's counts (a program may also count a failure found outside CHECK). */
static long passed_total, failed_total;

#ifdef CHECK_GROUP_WIDTH
#ifdef CHECK_GROUP_CPU_TIME
#include <time.h>
#endif
static long group_passed, group_failed;
static const char *group_name = "";
#endif

static inline void check_pass(void)
{
    CHECK_LOCK_();
    passed_total++;
#ifdef CHECK_GROUP_WIDTH
    group_passed++;
#endif
    CHECK_UNLOCK_();
}

/* Counts a failed check and prints its FAIL line; line <= 0 where the message alone says
 * which check failed (one helper function makes all of them). */
static inline CHECK_PRINTF_(2) void check_fail(int line, const char *format, ...)
{
    long failures;
    va_list ap;
    CHECK_LOCK_();
    failed_total++;
#ifdef CHECK_GROUP_WIDTH
    failures = ++group_failed;
#else
    failures = failed_total;
#endif
    if (CHECK_PRINTED_FAILURES == 0 || failures <= CHECK_PRINTED_FAILURES) {
        fputs("  FAIL ", stdout);
#ifdef CHECK_GROUP_WIDTH
        printf("[%s] ", group_name);
#endif
        if (line > 0) printf("line %d: ", line);
        va_start(ap, format);
        vprintf(format, ap);
        va_end(ap);
        putchar('\n');
    }
    CHECK_UNLOCK_();
}

#define CHECK(cond, ...)                                                                                           \
    do {                                                                                                           \
        if (cond)                                                                                                  \
            check_pass();                                                                                          \
        else                                                                                                       \
            check_fail(__LINE__, __VA_ARGS__);                                                                     \
    } while (0)

#ifdef CHECK_GROUP_WIDTH
/* Runs one group of checks and prints its line. */
static inline void run_group(const char *name, void (*fn)(void))
{
#ifdef CHECK_GROUP_CPU_TIME
    clock_t start = clock();
#endif
    group_name = name;
    group_passed = group_failed = 0;
    fn();
    if (group_failed == 0) {
        printf("[ok]   %-*s %ld checks", CHECK_GROUP_WIDTH, name, group_passed);
#ifdef CHECK_GROUP_CPU_TIME
        printf(" (%.1f s CPU)", (double)(clock() - start) / CLOCKS_PER_SEC);
#endif
        putchar('\n');
    } else {
        printf("[FAIL] %-*s %ld of %ld checks failed\n", CHECK_GROUP_WIDTH, name, group_failed,
               group_passed + group_failed);
    }
    fflush(stdout);
}
#endif

/* Prints the last line and returns the exit status. */
static inline int check_summary(void)
{
    printf(CHECK_SUMMARY_PREFIX "%ld passed, %ld failed\n", passed_total, failed_total);
    return failed_total == 0 ? 0 : 1;
}

#endif
