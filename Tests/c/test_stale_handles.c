/*
 * test_stale_handles.c: a destroyed handle stays invalid after its memory, or its place in
 * the library's table, serves new handles (`make test-c`).
 *
 * ROUNDS times, one of LIVE estimator handles (float64 and float32) and one of LIVE
 * bilevel handles is destroyed and a new one of the same kind and size is created at once,
 * which is when an allocator hands the freed memory out again. The last STALE destroyed
 * handles of each kind are kept, and after every round each one is passed to every entry
 * point of its kind (both precisions' functions for estimators), and to the other kind's.
 *
 * Then MANY estimators live at once (the table grows while handles are live), every other
 * one is destroyed, and as many are created again.
 *
 * Properties checked:
 *   - no stale pointer equals a live handle;
 *   - every function on a stale pointer returns LANCBIO_ERR_INVALID_HANDLE without calling
 *     its callback, its last_error is the library's non-empty static message for an
 *     invalid handle, its callback_status is 0;
 *   - destroying a stale pointer (with either kind's destroy) is a no-op: every live
 *     handle keeps its own v, which each was given on creation, and its properties;
 *   - with MANY handles live, each has its own v, and destroying half of them leaves the
 *     other half intact.
 * The last line is "N passed, M failed"; the exit status is non-zero if any check failed.
 */
#include "lancbio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUNDS 2000
#define LIVE 4
#define STALE 16
#define N 3
#define DX 2
#define DY 3
#define MANY 3000

#define CHECK_PRINTED_FAILURES 30
#include "check.h"

static long callback_calls;

static int32_t hvp64(const double *in, double *out, int64_t n, void *u)
{
    (void)u;
    callback_calls++;
    memcpy(out, in, (size_t)n * sizeof *out);
    return 0;
}
static int32_t hvp32(const float *in, float *out, int64_t n, void *u)
{
    (void)u;
    callback_calls++;
    memcpy(out, in, (size_t)n * sizeof *out);
    return 0;
}
static int32_t gradient(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *u)
{
    (void)x, (void)dx, (void)y, (void)dy, (void)out, (void)u;
    callback_calls++;
    return 1;
}
static int32_t product(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *u)
{
    (void)x, (void)dx, (void)y, (void)dy, (void)v, (void)out, (void)u;
    callback_calls++;
    return 1;
}

/* A live handle and the tag its v was set to on creation (every entry tag + k). */
typedef struct {
    lancbio_estimator_t *h;
    int32_t precision;
    double tag;
} estimator_t;
typedef struct {
    lancbio_bilevel_t *h;
    double tag;
} bilevel_t;

static estimator_t EST[LIVE];
static bilevel_t BIL[LIVE];
static void *STALE_EST[STALE], *STALE_BIL[STALE];
static double next_tag = 1;

static void create_estimator(estimator_t *e, int32_t precision)
{
    lancbio_estimator_options_t o;
    double v[N];
    float f[N];
    int i;
    lancbio_estimator_options_init(&o, LANCBIO_METHOD_CG);
    o.precision = precision;
    e->precision = precision;
    e->tag = next_tag++;
    e->h = NULL;
    CHECK(lancbio_estimator_create(N, &o, &e->h) == LANCBIO_OK && e->h, "estimator create failed: %s", lancbio_last_error());
    for (i = 0; i < N; i++) v[i] = e->tag + i, f[i] = (float)(e->tag + i);
    CHECK((precision == LANCBIO_FLOAT64 ? lancbio_estimator_set_v_f64(e->h, v, N) : lancbio_estimator_set_v_f32(e->h, f, N))
              == LANCBIO_OK, "set_v on a new estimator failed");
}

static void create_bilevel(bilevel_t *b)
{
    lancbio_bilevel_options_t o;
    lancbio_estimator_options_t eo;
    double v[DY];
    int i;
    lancbio_bilevel_options_init(&o);
    o.lr_x = o.lr_y = 0.1;
    lancbio_estimator_options_init(&eo, LANCBIO_METHOD_CG);
    b->tag = next_tag++;
    b->h = NULL;
    CHECK(lancbio_bilevel_create(DX, DY, &o, &eo, &b->h) == LANCBIO_OK && b->h, "bilevel create failed: %s", lancbio_last_error());
    for (i = 0; i < DY; i++) v[i] = b->tag + i;
    CHECK(lancbio_bilevel_set_v_f64(b->h, v, DY) == LANCBIO_OK, "set_v on a new bilevel optimizer failed");
}

static int is_live(const void *p)
{
    int k;
    for (k = 0; k < LIVE; k++)
        if ((const void *)EST[k].h == p || (const void *)BIL[k].h == p) return 1;
    return 0;
}

/* Every live handle still has its own v and properties. */
static void check_live(const char *after)
{
    int k, i;
    for (k = 0; k < LIVE; k++) {
        double v[N];
        float f[N];
        int64_t n = 0;
        int32_t precision = 0, s;
        int same = 1;
        s = EST[k].precision == LANCBIO_FLOAT64 ? lancbio_estimator_get_v_f64(EST[k].h, v, N)
                                                : lancbio_estimator_get_v_f32(EST[k].h, f, N);
        for (i = 0; i < N; i++)
            same &= EST[k].precision == LANCBIO_FLOAT64 ? v[i] == EST[k].tag + i : f[i] == (float)(EST[k].tag + i);
        CHECK(s == LANCBIO_OK && same, "after %s, live estimator %d lost its v (get_v %d)", after, k, s);
        CHECK(lancbio_estimator_properties(EST[k].h, &n, NULL, &precision) == LANCBIO_OK && n == N &&
                  precision == EST[k].precision, "after %s, live estimator %d lost its properties", after, k);
    }
    for (k = 0; k < LIVE; k++) {
        double v[DY];
        int32_t s = lancbio_bilevel_get_v_f64(BIL[k].h, v, DY);
        int same = 1;
        for (i = 0; i < DY; i++) same &= v[i] == BIL[k].tag + i;
        CHECK(s == LANCBIO_OK && same, "after %s, live bilevel optimizer %d lost its v (get_v %d)", after, k, s);
    }
}

static int is_invalid_message(const char *m)
{
    return m && m[0] && strcmp(m, lancbio_status_string(LANCBIO_ERR_INVALID_HANDLE)) == 0;
}

/* Every estimator function on p returns INVALID_HANDLE and runs no callback. */
static void check_estimator_functions(lancbio_estimator_t *h, const char *what)
{
    double d[N] = {1, 2, 3}, out[N];
    float f[N] = {1, 2, 3}, outf[N];
    lancbio_step_info_t info;
    int64_t n;
    int32_t s[16], m, p;
    int k;
    long calls = callback_calls;
    memset(&info, 0, sizeof info);
    info.struct_size = (int64_t)sizeof info;
    s[0] = lancbio_estimator_reset(h);
    s[1] = lancbio_estimator_properties(h, &n, &m, &p);
    s[2] = lancbio_estimator_info(h, &info);
    s[3] = lancbio_estimator_step_f64(h, hvp64, NULL, d, out, N, &info);
    s[4] = lancbio_estimator_step_f32(h, hvp32, NULL, f, outf, N, &info);
    s[5] = lancbio_estimator_begin_f64(h, d, out, N);
    s[6] = lancbio_estimator_begin_f32(h, f, outf, N);
    s[7] = lancbio_estimator_resume_f64(h, d, out, N);
    s[8] = lancbio_estimator_resume_f32(h, f, outf, N);
    s[9] = lancbio_estimator_cancel(h);
    s[10] = lancbio_estimator_get_v_f64(h, out, N);
    s[11] = lancbio_estimator_get_v_f32(h, outf, N);
    s[12] = lancbio_estimator_set_v_f64(h, d, N);
    s[13] = lancbio_estimator_set_v_f32(h, f, N);
    for (k = 0; k < 14; k++)
        CHECK(s[k] == LANCBIO_ERR_INVALID_HANDLE, "estimator function %d on %s returned %d", k, what, s[k]);
    CHECK(callback_calls == calls, "a call on %s ran its callback", what);
    CHECK(lancbio_estimator_callback_status(h) == 0, "callback_status of %s is not 0", what);
    CHECK(is_invalid_message(lancbio_estimator_last_error(h)), "last_error of %s is not the invalid-handle message", what);
}

/* Every bilevel function on p returns INVALID_HANDLE and runs no callback. */
static void check_bilevel_functions(lancbio_bilevel_t *h, const char *what)
{
    double x[DX] = {1, 2}, y[DY] = {1, 2, 3}, out[DY];
    lancbio_problem_f64_t problem;
    lancbio_bilevel_info_t info;
    lancbio_step_info_t einfo;
    int32_t s[7];
    int k;
    long calls = callback_calls;
    memset(&problem, 0, sizeof problem);
    problem.struct_size = (int64_t)sizeof problem;
    problem.grad_y_g = problem.grad_x_f = problem.grad_y_f = gradient;
    problem.hvp_yy_g = problem.jvp_xy_g = product;
    memset(&info, 0, sizeof info);
    info.struct_size = (int64_t)sizeof info;
    memset(&einfo, 0, sizeof einfo);
    einfo.struct_size = (int64_t)sizeof einfo;
    s[0] = lancbio_bilevel_reset(h);
    s[1] = lancbio_bilevel_step_f64(h, &problem, x, DX, y, DY, &info);
    s[2] = lancbio_bilevel_info(h, &info);
    s[3] = lancbio_bilevel_estimator_info(h, &einfo);
    s[4] = lancbio_bilevel_get_v_f64(h, out, DY);
    s[5] = lancbio_bilevel_set_v_f64(h, y, DY);
    s[6] = lancbio_bilevel_get_hypergradient_f64(h, out, DX);
    for (k = 0; k < 7; k++)
        CHECK(s[k] == LANCBIO_ERR_INVALID_HANDLE, "bilevel function %d on %s returned %d", k, what, s[k]);
    CHECK(callback_calls == calls, "a call on %s ran a callback", what);
    CHECK(lancbio_bilevel_callback_status(h) == 0, "callback_status of %s is not 0", what);
    CHECK(is_invalid_message(lancbio_bilevel_last_error(h)), "last_error of %s is not the invalid-handle message", what);
}

static void check_stale(int round)
{
    int k;
    for (k = 0; k < STALE; k++) {
        void *e = STALE_EST[k], *b = STALE_BIL[k];
        if (e) {
            CHECK(!is_live(e), "round %d: a destroyed estimator's pointer is a live handle's", round);
            check_estimator_functions((lancbio_estimator_t *)e, "a destroyed estimator");
            check_bilevel_functions((lancbio_bilevel_t *)e, "a destroyed estimator");
            lancbio_estimator_destroy((lancbio_estimator_t *)e);
            lancbio_bilevel_destroy((lancbio_bilevel_t *)e);
        }
        if (b) {
            CHECK(!is_live(b), "round %d: a destroyed bilevel optimizer's pointer is a live handle's", round);
            check_bilevel_functions((lancbio_bilevel_t *)b, "a destroyed bilevel optimizer");
            check_estimator_functions((lancbio_estimator_t *)b, "a destroyed bilevel optimizer");
            lancbio_bilevel_destroy((lancbio_bilevel_t *)b);
            lancbio_estimator_destroy((lancbio_estimator_t *)b);
        }
    }
    check_live("destroying stale pointers");
}

static double v_of(lancbio_estimator_t *h)
{
    double v = -1;
    return lancbio_estimator_get_v_f64(h, &v, 1) == LANCBIO_OK ? v : -1;
}

/* MANY live estimators of n = 1, v = their number; half destroyed, half created again. */
static void check_many(void)
{
    static lancbio_estimator_t *h[MANY], *dead[MANY / 2];
    lancbio_estimator_options_t o;
    int k, wrong = 0, stale_valid = 0, created = 0;
    lancbio_estimator_options_init(&o, LANCBIO_METHOD_CG);
    for (k = 0; k < MANY; k++) {
        double v = k;
        h[k] = NULL;
        created += lancbio_estimator_create(1, &o, &h[k]) == LANCBIO_OK && lancbio_estimator_set_v_f64(h[k], &v, 1) == LANCBIO_OK;
    }
    CHECK(created == MANY, "only %d of %d estimators could be created", created, MANY);
    for (k = 0; k < MANY; k++) wrong += v_of(h[k]) != k;
    CHECK(wrong == 0, "%d of %d live estimators do not have their own v", wrong, MANY);
    for (k = 1; k < MANY; k += 2) {
        dead[k / 2] = h[k];
        lancbio_estimator_destroy(h[k]);
        h[k] = NULL;
    }
    for (k = 1; k < MANY; k += 2) {
        double v = k;
        created += lancbio_estimator_create(1, &o, &h[k]) == LANCBIO_OK && lancbio_estimator_set_v_f64(h[k], &v, 1) == LANCBIO_OK;
    }
    CHECK(created == MANY + MANY / 2, "only %d of %d estimators could be created again", created - MANY, MANY / 2);
    wrong = 0;
    for (k = 0; k < MANY; k++) wrong += v_of(h[k]) != k;
    CHECK(wrong == 0, "after destroying and creating half, %d of %d live estimators do not have their own v", wrong, MANY);
    for (k = 0; k < MANY / 2; k++) {
        double v;
        stale_valid += lancbio_estimator_get_v_f64(dead[k], &v, 1) != LANCBIO_ERR_INVALID_HANDLE;
        lancbio_estimator_destroy(dead[k]);
    }
    CHECK(stale_valid == 0, "%d of %d destroyed estimators are still valid", stale_valid, MANY / 2);
    wrong = 0;
    for (k = 0; k < MANY; k++) wrong += v_of(h[k]) != k;
    CHECK(wrong == 0, "destroying stale pointers changed %d of %d live estimators", wrong, MANY);
    for (k = 0; k < MANY; k++) lancbio_estimator_destroy(h[k]);
}

int main(void)
{
    int k, round;
    unsigned seed = 12345;
    for (k = 0; k < LIVE; k++) {
        create_estimator(&EST[k], k % 2 ? LANCBIO_FLOAT32 : LANCBIO_FLOAT64);
        create_bilevel(&BIL[k]);
    }
    for (round = 0; round < ROUNDS; round++) {
        int e, b;
        seed = seed * 1103515245u + 12345u;
        e = (int)((seed >> 16) % LIVE);
        b = (int)((seed >> 20) % LIVE);
        STALE_EST[round % STALE] = EST[e].h;
        lancbio_estimator_destroy(EST[e].h);
        create_estimator(&EST[e], EST[e].precision);
        STALE_BIL[round % STALE] = BIL[b].h;
        lancbio_bilevel_destroy(BIL[b].h);
        create_bilevel(&BIL[b]);
        check_stale(round);
        if (failed_total > 30) break;
    }
    for (k = 0; k < LIVE; k++) {
        lancbio_estimator_destroy(EST[k].h);
        lancbio_bilevel_destroy(BIL[k].h);
    }
    check_many();
    printf("%d rounds, %d stale pointers of each kind checked after each\n", round, STALE);
    return check_summary();
}
