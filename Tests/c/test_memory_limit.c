/*
 * test_memory_limit.c: creation near an address-space limit ends in a status, never in a
 * signal (`make test-c`).
 *
 * Each trial runs in a child process (fork) whose address space is limited with
 * setrlimit(RLIMIT_AS) to what it already maps plus a headroom H (32 MiB, 256 MiB, 2 GiB).
 * The child creates one thing at one size (an estimator of each method in both
 * precisions, a bilevel optimizer over each method, or a one-shot solve of each method
 * that has one, in both precisions) and reports the status through a pipe. Bisection
 * finds the largest size created; then the sizes just below and above it are tried. Every
 * child must exit normally, with LANCBIO_OK or LANCBIO_ERR_OUT_OF_MEMORY and a message
 * naming memory, and the largest size created must use at least half of H (the library's
 * spare for its small objects is 2 MiB: it must not turn away what fits).
 *
 * The solves' callback stops each solve at its first product (LANCBIO_ERR_CALLBACK, which
 * counts as created here): the solve has allocated everything by then, and writing all of
 * its pages would make each trial a hundred times slower. Even so a solve writes a few
 * n-vectors before that product, so solves run under the smallest headroom only.
 *
 * Not run under the sanitizers or valgrind, which map terabytes of shadow memory or
 * manage the address space themselves.
 */
#define _POSIX_C_SOURCE 200809L /* fork, waitpid, setrlimit */

#include "lancbio.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK_SUMMARY_PREFIX "memory limits: "
#include "check.h"

enum kind { ESTIMATOR, BILEVEL, SOLVE };

typedef struct {
    enum kind kind;
    int32_t method;
    int32_t precision;
    int64_t m_max;   /* Lanczos only; 0 for the default */
    /* n-vectors per unit of n (the basis counts m_max + 1), for the "uses H" check */
    int vectors;
} config_t;

/* What a child reports. */
typedef struct {
    int32_t status;
    int32_t message_names_memory;
} verdict_t;

#define DX 4             /* x of the bilevel optimizers */
#define SOLVE_BUDGET 2   /* max_iterations of the solves: a Lanczos period of 2 */

static const char *method_name(int32_t m)
{
    static const char *names[] = {"?", "lanczos", "subbio", "cg", "minres", "gd", "neumann", "random-neumann"};
    return m >= 1 && m <= 7 ? names[m] : "?";
}

static const char *kind_name(enum kind k) { return k == ESTIMATOR ? "estimator" : k == BILEVEL ? "bilevel" : "solve"; }

/* The address space this process maps (VmSize), in bytes; read without allocating. */
static long long mapped_bytes(void)
{
    char text[4096];
    ssize_t got;
    int fd = open("/proc/self/status", O_RDONLY);
    const char *line;
    if (fd < 0) return -1;
    got = read(fd, text, sizeof text - 1);
    close(fd);
    if (got <= 0) return -1;
    text[got] = 0;
    line = strstr(text, "VmSize:");
    return line ? atoll(line + 7) * 1024 : -1;
}

/* Products stop the solve at once (see the top of the file). */
static int32_t hvp64(const double *in, double *out, int64_t n, void *ud)
{
    (void)in, (void)out, (void)n, (void)ud;
    return 1;
}

static int32_t hvp32(const float *in, float *out, int64_t n, void *ud)
{
    (void)in, (void)out, (void)n, (void)ud;
    return 1;
}

static void options_for(lancbio_estimator_options_t *o, const config_t *c)
{
    lancbio_estimator_options_init(o, c->method);
    o->precision = c->precision;
    o->theta0 = 0.1;
    o->step_size = 0.25;
    o->steps = 2;
    o->max_iterations = 2;
    if (c->m_max) {
        o->m_max = c->m_max;
        o->m0 = 1;
    }
}

/* Runs in the child: b and x (solves) are allocated before the limit, which then leaves
 * H for the library alone. */
static verdict_t attempt(const config_t *c, int64_t n, long long headroom)
{
    verdict_t v = {-1000, 0};
    lancbio_estimator_options_t o;
    void *b = NULL, *x = NULL;
    size_t scalar = c->precision == LANCBIO_FLOAT64 ? sizeof(double) : sizeof(float);
    struct rlimit limit;
    long long mapped;
    options_for(&o, c);
    if (c->kind == SOLVE) {
        /* b = 0 (valid, and its pages are never written); x0 = 0. */
        b = calloc((size_t)n, scalar);
        x = calloc((size_t)n, scalar);
        if (!b || !x) return v;
    }
    mapped = mapped_bytes();
    if (mapped < 0) return v;
    limit.rlim_cur = limit.rlim_max = (rlim_t)(mapped + headroom);
    if (setrlimit(RLIMIT_AS, &limit) != 0) return v;
    switch (c->kind) {
    case ESTIMATOR: {
        lancbio_estimator_t *h = NULL;
        v.status = lancbio_estimator_create(n, &o, &h);
        if (v.status == LANCBIO_OK) {
            int64_t got = 0;
            if (lancbio_estimator_properties(h, &got, NULL, NULL) != LANCBIO_OK || got != n) v.status = -1001;
            lancbio_estimator_destroy(h);
        } else if (h != NULL) {
            v.status = -1002;
        }
        break;
    }
    case BILEVEL: {
        lancbio_bilevel_options_t bo;
        lancbio_bilevel_t *h = NULL;
        lancbio_bilevel_options_init(&bo);
        bo.lr_x = 0.1;
        bo.lr_y = 0.1;
        v.status = lancbio_bilevel_create(DX, n, &bo, &o, &h);
        if (v.status == LANCBIO_OK) lancbio_bilevel_destroy(h);
        else if (h != NULL) v.status = -1002;
        break;
    }
    case SOLVE:
        v.status = c->precision == LANCBIO_FLOAT64
                       ? lancbio_solve_f64(&o, hvp64, NULL, b, x, n, 0, SOLVE_BUDGET, NULL, NULL)
                       : lancbio_solve_f32(&o, hvp32, NULL, b, x, n, 0, SOLVE_BUDGET, NULL, NULL);
        if (v.status == LANCBIO_ERR_CALLBACK) v.status = LANCBIO_OK; /* allocated, then stopped */
        break;
    }
    if (v.status == LANCBIO_ERR_OUT_OF_MEMORY) v.message_names_memory = strstr(lancbio_last_error(), "memory") != NULL;
    return v;
}

/* Runs `attempt` in a child. Returns 1 when the child exited normally with a verdict; on
 * a signal or a missing verdict records the failure and returns 0. */
static int trial(const config_t *c, int64_t n, long long headroom, verdict_t *out)
{
    int fds[2], status = 0;
    pid_t pid;
    verdict_t v = {-1000, 0};
    ssize_t got;
    if (pipe(fds) != 0) {
        CHECK(0, "pipe failed");
        return 0;
    }
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        close(fds[0]);
        if (devnull >= 0) dup2(devnull, 2); /* the Swift runtime's crash report */
        v = attempt(c, n, headroom);
        if (write(fds[1], &v, sizeof v) != (ssize_t)sizeof v) _exit(2);
        _exit(0);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        CHECK(0, "fork failed");
        return 0;
    }
    got = read(fds[0], &v, sizeof v);
    close(fds[0]);
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0 && got == (ssize_t)sizeof v,
          "%s %s (%s, m_max %lld), n = %lld under %lld MiB of headroom: the child %s %d", kind_name(c->kind),
          method_name(c->method), c->precision == LANCBIO_FLOAT64 ? "float64" : "float32", (long long)c->m_max,
          (long long)n, headroom >> 20, WIFSIGNALED(status) ? "died of signal" : "exited with status",
          WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0 && got == (ssize_t)sizeof v)) return 0;
    CHECK(v.status == LANCBIO_OK || (v.status == LANCBIO_ERR_OUT_OF_MEMORY && v.message_names_memory),
          "%s %s (%s), n = %lld under %lld MiB: status %d%s", kind_name(c->kind), method_name(c->method),
          c->precision == LANCBIO_FLOAT64 ? "float64" : "float32", (long long)n, headroom >> 20, v.status,
          v.status == LANCBIO_ERR_OUT_OF_MEMORY ? " with a message that does not name memory" : "");
    *out = v;
    return 1;
}

/* Bisects for the largest n created under `headroom`, then tries the sizes around it. */
static void near_the_limit(const config_t *c, long long headroom)
{
    size_t scalar = c->precision == LANCBIO_FLOAT64 ? sizeof(double) : sizeof(float);
    long long per_n = (long long)c->vectors * (long long)scalar; /* a lower bound on bytes per unit of n */
    int64_t lo = 1, hi = (int64_t)(2 * headroom / per_n) + 64, n;
    verdict_t v;
    int i;
    if (!trial(c, lo, headroom, &v)) return;
    if (v.status != LANCBIO_OK) {
        /* Nothing fits (the projected system of m_max = 4096 alone is 134 MB): every size
         * must say so. */
        for (n = 2; n <= 4; n++)
            if (!trial(c, n, headroom, &v)) return;
        CHECK(c->m_max > 0 && 8.0 * (double)(c->m_max + 1) * (double)(c->m_max + 1) > (double)headroom,
              "%s %s: n = 1 does not fit in %lld MiB", kind_name(c->kind), method_name(c->method), headroom >> 20);
        return;
    }
    if (!trial(c, hi, headroom, &v)) return;
    CHECK(v.status == LANCBIO_ERR_OUT_OF_MEMORY, "%s %s: n = %lld, twice what fits in %lld MiB, was created",
          kind_name(c->kind), method_name(c->method), (long long)hi, headroom >> 20);
    if (v.status != LANCBIO_ERR_OUT_OF_MEMORY) return;
    while (hi - lo > 1) {
        n = lo + (hi - lo) / 2;
        if (!trial(c, n, headroom, &v)) return;
        if (v.status == LANCBIO_OK) lo = n;
        else hi = n;
    }
    /* Just below and just above the limit: a status either way. */
    for (i = -3; i <= 4; i++)
        if (lo + i >= 1 && !trial(c, lo + i, headroom, &v)) return;
    CHECK((double)lo * (double)per_n >= 0.5 * (double)headroom || c->m_max > 0,
          "%s %s (%s): at most n = %lld (about %lld MiB) fits in %lld MiB of headroom", kind_name(c->kind),
          method_name(c->method), c->precision == LANCBIO_FLOAT64 ? "float64" : "float32", (long long)lo,
          ((long long)lo * per_n) >> 20, headroom >> 20);
}

int main(void)
{
    /* n-vectors per unit of n: the estimator's workspace (4) plus the method's (dynamic
     * Lanczos: its basis of m_max + 1 columns and 2); a bilevel optimizer adds 3 of dy; a
     * solve adds 3 and runs Lanczos with a period of SOLVE_BUDGET. */
    static const int estimator_vectors[] = {0, 4 + 81 + 2, 4 + 3, 4 + 2, 4 + 6, 4, 4 + 1, 4 + 1};
    static const int32_t solvable[] = {LANCBIO_METHOD_LANCZOS, LANCBIO_METHOD_CG, LANCBIO_METHOD_MINRES,
                                       LANCBIO_METHOD_GD, LANCBIO_METHOD_NEUMANN};
    static const long long headrooms[] = {32LL << 20, 256LL << 20, 2048LL << 20};
    int h, p;
    int32_t m;
    size_t s;
    for (h = 0; h < 3; h++) {
        long long headroom = headrooms[h];
        for (m = 1; m <= 7; m++) {
            for (p = 0; p < 2; p++) {
                config_t c = {ESTIMATOR, m, p ? LANCBIO_FLOAT32 : LANCBIO_FLOAT64, 0, estimator_vectors[m]};
                near_the_limit(&c, headroom);
            }
            {
                config_t c = {BILEVEL, m, LANCBIO_FLOAT64, 0, estimator_vectors[m] + 3};
                near_the_limit(&c, headroom);
            }
        }
        {
            /* The projected system dominates: (m_max + 1)^2 doubles. */
            config_t c = {ESTIMATOR, LANCBIO_METHOD_LANCZOS, LANCBIO_FLOAT64, 4096, 4 + 4097 + 2};
            near_the_limit(&c, headroom);
        }
        for (s = 0; h == 0 && s < sizeof solvable / sizeof solvable[0]; s++) {
            for (p = 0; p < 2; p++) {
                int32_t method = solvable[s];
                int vectors = method == LANCBIO_METHOD_LANCZOS ? 4 + SOLVE_BUDGET + 1 + 2 : estimator_vectors[method];
                config_t c = {SOLVE, method, p ? LANCBIO_FLOAT32 : LANCBIO_FLOAT64, 0, vectors + 3};
                near_the_limit(&c, headroom);
            }
        }
    }
    return check_summary();
}
