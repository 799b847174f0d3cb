/*
 * fuzz_abi.c: a libFuzzer target for the lancbio C ABI (`make fuzz FUZZ_SECONDS=60`).
 *
 * The input bytes are a program: a sequence of operations on a small pool of estimator
 * handles (both precisions, all seven methods, n = 1..64 and sometimes n <= 0 or huge) and
 * bilevel handles. Operations: create with random options (out-of-range values, odd
 * struct_size), callback steps whose callbacks return error codes, NaN, Inf, huge, tiny,
 * denormal values or garbage (or call back into the library), reverse communication
 * begin / resume / cancel in any order with any products, get_v / set_v with NaN, Inf,
 * 1e+-300 and denormals, info, properties, reset, destroy (twice, and use after destroy),
 * NULL handles and pointers, wrong n, the other precision's functions; checkpoints (save
 * with every buffer size, restore and load of intact, damaged, truncated, re-versioned,
 * re-checksummed and arbitrary bytes, into the same handle, a new one or another).
 *
 * The harness keeps a model of every handle (its committed estimate, last diagnostics and
 * whether a reverse-communication step is in progress) and aborts, so that libFuzzer reports
 * the input, when an invariant of include/lancbio.h does not hold:
 *   - every status is a documented code, and one of those the call may return (argument
 *     errors, then state errors, then non-finite input, then the step's own outcomes);
 *   - a call that fails leaves the estimate (get_v), the diagnostics and the caller's output
 *     buffers bitwise unchanged; only a final outcome, set_v or reset changes the estimate;
 *     argument errors in resume keep the step in progress, other errors abandon it;
 *   - a successful step returns a finite v (x, y, v and the hyper-gradient for bilevel),
 *     and its diagnostics are never NaN;
 *   - last_error is non-empty after a failure and empty after a success;
 *   - a callback that returns non-zero is not called again and its code is kept; a
 *     non-finite product gives LANCBIO_ERR_NON_FINITE_PRODUCT;
 *   - callbacks get the right n and user_data, non-aliased buffers and finite vectors;
 *   - options the header calls invalid are rejected and valid ones accepted (values the
 *     header gives no bound for, such as steps > 2^30, may go either way);
 *   - NULL, destroyed, garbage and other-kind handles are rejected by every function and
 *     ignored by both destroy functions;
 *   - checkpoints: an intact one restores or loads into a handle that then equals the saved
 *     one bitwise; any damage the checksum sees (a changed byte, a truncation, trailing
 *     bytes, another version) is LANCBIO_ERR_INVALID_CHECKPOINT and a failed load changes
 *     nothing; bytes with a valid checksum but any content give a documented status and,
 *     when accepted, a handle whose state keeps every invariant above; save and load refuse
 *     a step in progress and calls from inside the handle's callbacks.
 * Calls made from inside a callback on the handle being stepped (reset, cancel, resume,
 * destroy, another step) are something the header neither allows nor forbids: for those the
 * harness only requires documented statuses, finite results and no memory error, and it does
 * not require the outer call's last_error to be empty when a nested call failed.
 * Buffers handed to the library are heap blocks of exactly the handle's size, so that
 * AddressSanitizer sees any access beyond them (also when a wrong n is passed).
 *
 * FUZZ_TRACE=1 in the environment prints each operation to stderr (for reproducers).
 */
#include "lancbio.h"

/* The first published size of the options struct (ABI version 1). */
#define OPTIONS_V1_SIZE ((size_t)offsetof(lancbio_estimator_options_t, orthogonality_tolerance))
/* The first published lancbio_bilevel_options_t ended before lr_y_auto. */
#define BILEVEL_OPTIONS_V1_SIZE ((size_t)offsetof(lancbio_bilevel_options_t, lr_y_auto))
/* The first published lancbio_bilevel_info_t ended before curvature. */
#define BILEVEL_INFO_V1_SIZE ((size_t)offsetof(lancbio_bilevel_info_t, curvature))
/* ... and of the step info struct: anything smaller is rejected. */
#define INFO_V1_SIZE ((size_t)offsetof(lancbio_step_info_t, orthogonality_loss))

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXN 64          /* largest estimator dimension the harness creates */
#define MAXB 16          /* largest bilevel dx, dy */
#define NEST 4           /* estimator slots */
#define NBIL 2           /* bilevel slots */
#define NSTALE 8         /* destroyed handles remembered for use-after-destroy */
#define CALL_BUDGET 3000 /* callback calls per library call; then the callback fails */
#define RC_BUDGET 3000   /* resumes of one FINISH operation */
#define BUDGET_CODE 77   /* what a callback returns once its budget is spent */

/* ------------------------------------------------------------------------------------
 * Input, invariants, trace
 * ----------------------------------------------------------------------------------*/
typedef struct {
    const uint8_t *p;
    size_t n, i;
} reader_t;

static uint8_t u8(reader_t *r) { return r->i < r->n ? r->p[r->i++] : 0; }
static uint16_t u16(reader_t *r) { uint16_t a = u8(r); return (uint16_t)(a | (uint16_t)u8(r) << 8); }
static int trace_on;
/* A call on the same handle from inside its callback failed: the header does not say
 * whether the outer call's last_error is then cleared, so that one check is skipped. */
static int msg_relaxed;
static void trace(const char *fmt, ...)
{
    va_list ap;
    if (!trace_on) return;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

#define REQUIRE(cond, ...)                                                                   \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "INVARIANT VIOLATED (fuzz_abi.c:%d): ", __LINE__);               \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
            fflush(stderr);                                                                  \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

/* Sets of statuses: bit (code - LOWEST) for the codes LOWEST..4, the next bit for
 * NEED_PRODUCT. LOWEST is the most negative code of the header's table: a code added below
 * it must move it, or every call that returns the new code fails as undocumented. */
#define LOWEST LANCBIO_ERR_INVALID_CHECKPOINT
typedef uint32_t sset_t;
static sset_t S(int32_t code)
{
    if (code == LANCBIO_NEED_PRODUCT) return 1u << (5 - LOWEST);
    return code >= LOWEST && code <= 4 ? 1u << (code - LOWEST) : 0;
}
#define OUTCOMES (S(0) | S(1) | S(2) | S(3) | S(4))
static int in_set(int32_t s, sset_t set) { return S(s) != 0 && (S(s) & set) != 0; }
static int documented(int32_t s) { return S(s) != 0; }

/* splitmix64: the harness's own deterministic generator. */
static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static double unif(uint64_t *s) { return (double)(mix(s) >> 11) * (1.0 / 9007199254740992.0); }

static double bits_to_double(uint64_t b) { double d; memcpy(&d, &b, sizeof d); return d; }

/* Hostile values: NaN, infinities, extremes, denormals, garbage bit patterns. */
static double special(uint8_t k, uint64_t *s)
{
    switch (k % 22) {
    case 0: return 0.0;
    case 1: return -0.0;
    case 2: return NAN;
    case 3: return INFINITY;
    case 4: return -INFINITY;
    case 5: return 1e300;
    case 6: return -1e300;
    case 7: return 1e-300;
    case 8: return 4.9406564584124654e-324; /* smallest denormal */
    case 9: return -1e-310;                  /* denormal */
    case 10: return DBL_MAX;
    case 11: return -DBL_MAX;
    case 12: return 1e150;
    case 13: return 1e-150;
    case 14: return 1e39;   /* overflows float */
    case 15: return 1e-45;  /* float denormal */
    case 16: return 3.4e38; /* near FLT_MAX */
    case 17: return bits_to_double(mix(s)); /* garbage */
    case 18: return 1.0;
    case 19: return -1.0;
    case 20: return 1e-40;
    default: return 2.5;
    }
}

static const double SCALES[16] = {1, 1, 1, 1, 1, 1, 1e-3, 1e3, 1e-150, 1e150, 1e-300, 1e300, 1e-310, 1e-40, 1e38, 0};

/* A vector of n values from 3 + (0..3) * 2 input bytes: a scale, a seed, a few overrides. */
static void gen_vector(reader_t *r, double *out, int64_t n)
{
    uint8_t flags = u8(r);
    uint64_t seed = (uint64_t)u16(r) * 0x1000193u + 7;
    double scale = SCALES[flags & 15];
    int over = (flags >> 4) & 3, k;
    int64_t i;
    for (i = 0; i < n; i++) out[i] = scale * (2 * unif(&seed) - 1);
    if (flags & 0x40)
        for (i = 0; i < n; i++) out[i] = (double)(int)(unif(&seed) * 5) - 2; /* small integers, zeros */
    for (k = 0; k < over; k++) {
        uint8_t idx = u8(r), v = u8(r);
        out[idx % n] = special(v, &seed);
    }
}

static void to_float(const double *d, float *f, int64_t n)
{
    int64_t i;
    for (i = 0; i < n; i++) f[i] = (float)d[i];
}

static int all_finite_d(const double *x, int64_t n)
{
    int64_t i;
    for (i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}
static int all_finite_f(const float *x, int64_t n)
{
    int64_t i;
    for (i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}
static int all_finite(const void *x, int64_t n, int32_t precision)
{
    return precision == LANCBIO_FLOAT32 ? all_finite_f((const float *)x, n) : all_finite_d((const double *)x, n);
}

/* Whether ||x|| overflows (the library then rejects b with LANCBIO_ERR_NON_FINITE_INPUT):
 * 0 no, 1 yes, 2 within rounding of DBL_MAX (either answer is right). */
static int norm_overflows(const double *x, int64_t n)
{
    long double s = 0, norm;
    int64_t i;
    for (i = 0; i < n; i++) s += (long double)x[i] * x[i];
    norm = sqrtl(s);
    if (norm > (long double)DBL_MAX * (1 + 1e-12L)) return 1;
    return norm > (long double)DBL_MAX * (1 - 1e-12L) ? 2 : 0;
}

static double max_abs(const double *x, int64_t n)
{
    double m = 0;
    int64_t i;
    for (i = 0; i < n; i++)
        if (fabs(x[i]) > m || isnan(x[i])) m = fabs(x[i]);
    return m;
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) abort();
    return p;
}

/* ------------------------------------------------------------------------------------
 * Operators applied by the callbacks: diag(d) + sigma u u^T
 * ----------------------------------------------------------------------------------*/
typedef struct {
    double d[MAXN], u[MAXN], sigma;
} opdef_t;

static void gen_operator(reader_t *r, opdef_t *op)
{
    uint8_t kind = u8(r);
    uint64_t s = (uint64_t)u16(r) + 99;
    double scale = SCALES[(kind >> 3) & 15];
    int i;
    op->sigma = unif(&s);
    trace("  operator kind %d scale %g", kind & 7, scale);
    for (i = 0; i < MAXN; i++) {
        op->u[i] = 2 * unif(&s) - 1;
        switch (kind & 7) {
        case 0: case 1: case 2: op->d[i] = 1 + 9 * unif(&s); break;       /* SPD, kappa <= ~20 */
        case 3: op->d[i] = 10 * unif(&s) - 5; break;                        /* indefinite */
        case 4: op->d[i] = (i % 3) ? 1 + unif(&s) : 0; op->sigma = 0; break; /* singular */
        case 5: op->d[i] = scale * (1 + unif(&s)); op->sigma *= scale; break;
        case 6: op->d[i] = unif(&s) < 0.2 ? special((uint8_t)mix(&s), &s) : 1 + unif(&s); break;
        default: op->d[i] = 1e-8 + unif(&s) * 1e3; break;                   /* ill-conditioned */
        }
    }
}

static void apply_op(const opdef_t *op, const double *in, double *out, int64_t n)
{
    double c = 0;
    int64_t i;
    for (i = 0; i < n; i++) c += op->u[i] * in[i];
    for (i = 0; i < n; i++) out[i] = op->d[i] * in[i] + op->sigma * op->u[i] * c;
}

/* ------------------------------------------------------------------------------------
 * The model of the handles
 * ----------------------------------------------------------------------------------*/
typedef struct {
    lancbio_estimator_t *h; /* NULL: empty slot */
    int64_t n;
    int32_t method, precision;
    int in_step;                   /* a reverse-communication step is in progress */
    unsigned char v[MAXN * 8];     /* the committed estimate, bytes */
    lancbio_step_info_t info;      /* diagnostics of the last completed step */
    double req[MAXN];              /* the last request, in double */
    opdef_t op;
} est_t;

typedef struct {
    double h[MAXB], c[MAXB * MAXB], mu, y0[MAXB];
} problem_t;

typedef struct {
    lancbio_bilevel_t *h;
    int64_t dx, dy;
    double v[MAXB], hg[MAXB], x[MAXB], y[MAXB];
    lancbio_bilevel_info_t info;
    lancbio_step_info_t einfo;
    problem_t pb;
} bil_t;

static est_t EST[NEST];
static bil_t BIL[NBIL];
static void *STALE[NSTALE];
static int stale_next;
static int garbage_object[16];

static size_t elem(int32_t precision) { return precision == LANCBIO_FLOAT32 ? sizeof(float) : sizeof(double); }

static int live_pointer(const void *p)
{
    int k;
    for (k = 0; k < NEST; k++)
        if (EST[k].h && (const void *)EST[k].h == p) return 1;
    for (k = 0; k < NBIL; k++)
        if (BIL[k].h && (const void *)BIL[k].h == p) return 1;
    return 0;
}

static void remember_stale(void *p)
{
    STALE[stale_next] = p;
    stale_next = (stale_next + 1) % NSTALE;
}

static void info_set_size(lancbio_step_info_t *i) { memset(i, 0, sizeof *i); i->struct_size = (int64_t)sizeof *i; }

/* The info fields after struct_size are equal bitwise. */
static int info_same(const lancbio_step_info_t *a, const lancbio_step_info_t *b)
{
    return memcmp((const char *)a + 8, (const char *)b + 8, sizeof *a - 8) == 0;
}
static int binfo_same(const lancbio_bilevel_info_t *a, const lancbio_bilevel_info_t *b)
{
    return memcmp((const char *)a + 8, (const char *)b + 8, sizeof *a - 8) == 0;
}

static void check_message_est(lancbio_estimator_t *h, int32_t s, const char *what)
{
    const char *m = lancbio_estimator_last_error(h);
    REQUIRE(m != NULL, "%s: last_error is NULL", what);
    if (s < 0) REQUIRE(m[0] != '\0', "%s returned %d (%s) with an empty last_error", what, s, lancbio_status_string(s));
    else REQUIRE(msg_relaxed || m[0] == '\0', "%s returned %d but last_error is \"%s\"", what, s, m);
    REQUIRE(strlen(m) < 4096, "%s: last_error unterminated or huge", what);
}

static void check_message_bil(lancbio_bilevel_t *h, int32_t s, const char *what)
{
    const char *m = lancbio_bilevel_last_error(h);
    REQUIRE(m != NULL, "%s: last_error is NULL", what);
    if (s < 0) REQUIRE(m[0] != '\0', "%s returned %d (%s) with an empty last_error", what, s, lancbio_status_string(s));
    else REQUIRE(msg_relaxed || m[0] == '\0', "%s returned %d but last_error is \"%s\"", what, s, m);
    REQUIRE(strlen(m) < 4096, "%s: last_error unterminated or huge", what);
}

/* Reads the committed estimate; the model must match bitwise (unless resync). */
static void verify_estimator(est_t *e, const char *after, int resync)
{
    size_t bytes = (size_t)e->n * elem(e->precision);
    void *buf = xmalloc(bytes);
    lancbio_step_info_t info;
    int32_t s = e->precision == LANCBIO_FLOAT32 ? lancbio_estimator_get_v_f32(e->h, (float *)buf, e->n)
                                                : lancbio_estimator_get_v_f64(e->h, (double *)buf, e->n);
    REQUIRE(s == LANCBIO_OK, "get_v after %s returned %d", after, s);
    check_message_est(e->h, s, "get_v");
    REQUIRE(all_finite(buf, e->n, e->precision), "after %s the committed estimate is not finite", after);
    info_set_size(&info);
    s = lancbio_estimator_info(e->h, &info);
    REQUIRE(s == LANCBIO_OK, "info after %s returned %d", after, s);
    if (resync) {
        memcpy(e->v, buf, bytes);
        e->info = info;
    } else {
        REQUIRE(memcmp(buf, e->v, bytes) == 0, "after %s the committed estimate changed (method %d, precision %d, n %lld)",
                after, e->method, e->precision, (long long)e->n);
        REQUIRE(info_same(&info, &e->info), "after %s the step info changed (method %d)", after, e->method);
    }
    free(buf);
}

/* Step diagnostics of a completed step are sane. */
static void check_step_info(const lancbio_step_info_t *i, int32_t s, const char *what)
{
    REQUIRE(i->status == s, "%s: info.status %d != returned %d", what, i->status, s);
    REQUIRE(i->residual_kind >= 0 && i->residual_kind <= 4, "%s: residual_kind %d", what, i->residual_kind);
    REQUIRE(i->products >= 0 && i->total_products >= i->products && i->iterations >= 0 && i->dimension >= 0,
            "%s: negative counters", what);
    /* With b or A near the overflow threshold the residual or a Ritz value may overflow;
     * NaN is never a diagnostic. */
    REQUIRE(!isnan(i->residual) && i->residual >= 0, "%s: info.residual = %g (status %d)", what, i->residual, s);
    REQUIRE(!isnan(i->ritz_min) && !isnan(i->ritz_max), "%s: Ritz values %g %g", what, i->ritz_min, i->ritz_max);
    /* Only a figure that is not exact can be uncertain. */
    REQUIRE((i->residual_uncertain == 0 || i->residual_uncertain == 1) &&
                !(i->residual_uncertain && i->residual_kind == LANCBIO_RESIDUAL_EXACT),
            "%s: residual_uncertain %d with residual_kind %d", what, i->residual_uncertain, i->residual_kind);
}

/* ------------------------------------------------------------------------------------
 * Callback scripts: which call misbehaves and how
 * ----------------------------------------------------------------------------------*/
enum {
    MIS_NONE, MIS_CODE, MIS_VALUE, MIS_GARBAGE, MIS_NOWRITE, MIS_SCALE, MIS_NESTED
};
enum { NEST_GETV, NEST_STEP, NEST_SETV, NEST_BEGIN, NEST_INFO, /* strict */
       NEST_RESET, NEST_CANCEL, NEST_RESUME, NEST_DESTROY, NEST_OTHER, /* relaxed */
       NEST_CHECKPOINT /* strict */, NEST_COUNT };

typedef struct {
    int kind;
    long at;        /* 1-based call that misbehaves */
    int32_t code;
    uint8_t idx, val, nested;
} script_t;

static void gen_script(reader_t *r, script_t *sc)
{
    uint8_t b = u8(r);
    memset(sc, 0, sizeof *sc);
    if (b < 96) return; /* well behaved */
    sc->at = 1 + u8(r) % 12;
    switch (b % 6) {
    case 0: sc->kind = MIS_CODE; sc->code = (int32_t)(int8_t)u8(r); if (sc->code == 0) sc->code = INT32_MIN; break;
    case 1: sc->kind = MIS_VALUE; sc->idx = u8(r); sc->val = u8(r); break;
    case 2: sc->kind = MIS_GARBAGE; sc->val = u8(r); break;
    case 3: sc->kind = MIS_NOWRITE; sc->idx = u8(r); break;
    case 4: sc->kind = MIS_SCALE; sc->val = u8(r); break;
    default: sc->kind = MIS_NESTED; sc->nested = u8(r) % NEST_COUNT; sc->idx = u8(r); break;
    }
}

typedef struct {
    est_t *e;
    int64_t n;
    script_t sc;
    long calls;
    int bad;            /* first bad event: 0 none, 1 non-zero return, 2 non-finite written */
    long calls_after_bad;
    int32_t code;       /* the non-zero code returned */
    int relaxed;        /* a nested call changed the handle: skip the model checks */
    int destroyed;      /* the nested call destroyed the handle */
    int depth;
    uint64_t seed;
} cbctx_t;

static int in_callback; /* nesting depth of library -> harness callbacks */

static void nested_call(cbctx_t *c);

/* The common part of both precisions: computes the product in double into y (n values).
 * Returns non-zero code when the callback must return it. */
static int32_t product_common(cbctx_t *c, const double *x, double *y, int64_t n, int *nowrite_from)
{
    *nowrite_from = -1;
    c->calls++;
    if (c->bad) c->calls_after_bad++;
    if (c->calls > CALL_BUDGET) {
        if (!c->bad) { c->bad = 1; c->code = BUDGET_CODE; }
        return BUDGET_CODE;
    }
    apply_op(&c->e->op, x, y, n);
    if (c->sc.kind != MIS_NONE && c->calls == c->sc.at) {
        int64_t i;
        switch (c->sc.kind) {
        case MIS_CODE:
            if (!c->bad) { c->bad = 1; c->code = c->sc.code; }
            return c->sc.code;
        case MIS_VALUE: y[c->sc.idx % n] = special(c->sc.val, &c->seed); break;
        case MIS_GARBAGE: for (i = 0; i < n; i++) y[i] = special(c->sc.val + (uint8_t)i, &c->seed); break;
        case MIS_NOWRITE: *nowrite_from = (int)(c->sc.idx % (n + 1)); break;
        case MIS_SCALE: for (i = 0; i < n; i++) y[i] *= special(c->sc.val, &c->seed); break;
        case MIS_NESTED: if (c->depth == 0 && in_callback == 1) nested_call(c); break;
        default: break;
        }
    }
    return 0;
}

static void check_callback_args(cbctx_t *c, const void *in, const void *out, int64_t n, size_t esz, void *ud)
{
    REQUIRE(ud == (void *)c, "callback got user_data %p, expected %p", ud, (void *)c);
    REQUIRE(n == c->n, "callback got n = %lld, handle has %lld", (long long)n, (long long)c->n);
    REQUIRE(in != NULL && out != NULL, "callback got a NULL buffer");
    REQUIRE((const char *)out + n * esz <= (const char *)in || (const char *)in + n * esz <= (const char *)out,
            "callback in and out overlap");
}

static int32_t hvp64(const double *in, double *out, int64_t n, void *ud)
{
    cbctx_t *c = (cbctx_t *)ud;
    double y[MAXN];
    int32_t code;
    int nowrite, i;
    in_callback++;
    check_callback_args(c, in, out, n, sizeof(double), ud);
    REQUIRE(all_finite_d(in, n), "the library asked (float64 callback) for a product of a non-finite vector (method %d, call %ld)",
            c->e->method, c->calls + 1);
    code = product_common(c, in, y, n, &nowrite);
    if (code == 0) {
        for (i = 0; i < n; i++)
            if (nowrite < 0 || i < nowrite) out[i] = y[i];
        /* Nothing written: out[0] still holds the library's marker, a failed callback (code 0). */
        if (!c->bad && nowrite == 0) c->bad = 1, c->code = 0;
        if (!c->bad && !all_finite_d(out, n)) c->bad = 2;
    }
    in_callback--;
    return code;
}

static int32_t hvp32(const float *in, float *out, int64_t n, void *ud)
{
    cbctx_t *c = (cbctx_t *)ud;
    double x[MAXN], y[MAXN];
    int32_t code;
    int nowrite, i;
    in_callback++;
    check_callback_args(c, in, out, n, sizeof(float), ud);
    REQUIRE(all_finite_f(in, n), "the library asked (float32 callback) for a product of a non-finite vector (method %d, call %ld)",
            c->e->method, c->calls + 1);
    for (i = 0; i < n; i++) x[i] = in[i];
    code = product_common(c, x, y, n, &nowrite);
    if (code == 0) {
        for (i = 0; i < n; i++)
            if (nowrite < 0 || i < nowrite) out[i] = (float)y[i];
        if (!c->bad && nowrite == 0) c->bad = 1, c->code = 0;
        if (!c->bad && !all_finite_f(out, n)) c->bad = 2;
    }
    in_callback--;
    return code;
}

/* A well-behaved callback context. */
static void ctx_init(cbctx_t *c, est_t *e)
{
    memset(c, 0, sizeof *c);
    c->e = e;
    c->n = e->n;
    c->seed = 12345;
}

static void remove_estimator(est_t *e)
{
    remember_stale(e->h);
    e->h = NULL;
}

/* A call from inside a product callback, on the same handle or another one. */
static void nested_call(cbctx_t *c)
{
    est_t *e = c->e;
    lancbio_estimator_t *h = e->h;
    size_t bytes = (size_t)e->n * elem(e->precision);
    void *buf = xmalloc(bytes), *buf2 = xmalloc(bytes);
    int32_t s;
    int f32 = e->precision == LANCBIO_FLOAT32;
    memset(buf, 0, bytes);
    memset(buf2, 0, bytes);
    trace("    nested %d", c->sc.nested);
    msg_relaxed = 1;
    switch (c->sc.nested) {
    case NEST_GETV: /* the committed estimate is readable and unchanged during a step */
        s = f32 ? lancbio_estimator_get_v_f32(h, (float *)buf, e->n) : lancbio_estimator_get_v_f64(h, (double *)buf, e->n);
        REQUIRE(s == LANCBIO_OK && memcmp(buf, e->v, bytes) == 0, "nested get_v returned %d or a changed estimate", s);
        break;
    case NEST_STEP: {
        cbctx_t inner;
        ctx_init(&inner, e);
        inner.depth = 1;
        s = f32 ? lancbio_estimator_step_f32(h, hvp32, &inner, (float *)buf, (float *)buf2, e->n, NULL)
                : lancbio_estimator_step_f64(h, hvp64, &inner, (double *)buf, (double *)buf2, e->n, NULL);
        REQUIRE(s == LANCBIO_ERR_INVALID_STATE && inner.calls == 0, "a nested step on the same handle returned %d", s);
        check_message_est(h, s, "nested step");
        break;
    }
    case NEST_SETV:
        s = f32 ? lancbio_estimator_set_v_f32(h, (float *)buf, e->n) : lancbio_estimator_set_v_f64(h, (double *)buf, e->n);
        REQUIRE(s == LANCBIO_ERR_INVALID_STATE, "a nested set_v during a step returned %d", s);
        break;
    case NEST_BEGIN:
        s = f32 ? lancbio_estimator_begin_f32(h, (float *)buf, (float *)buf2, e->n)
                : lancbio_estimator_begin_f64(h, (double *)buf, (double *)buf2, e->n);
        REQUIRE(s == LANCBIO_ERR_INVALID_STATE, "a nested begin during a step returned %d", s);
        break;
    case NEST_INFO: {
        lancbio_step_info_t info;
        info_set_size(&info);
        s = lancbio_estimator_info(h, &info);
        REQUIRE(s == LANCBIO_OK && info_same(&info, &e->info), "nested info returned %d or changed diagnostics", s);
        break;
    }
    case NEST_RESET:
        c->relaxed = 1;
        s = lancbio_estimator_reset(h); /* may be refused inside the handle's own callback */
        REQUIRE(s == LANCBIO_OK || s == LANCBIO_ERR_INVALID_STATE, "nested reset returned %d", s);
        break;
    case NEST_CANCEL:
        c->relaxed = 1;
        s = lancbio_estimator_cancel(h);
        REQUIRE(s == LANCBIO_OK, "nested cancel returned %d", s);
        break;
    case NEST_RESUME: /* resume the step whose product is being computed */
        c->relaxed = 1;
        s = f32 ? lancbio_estimator_resume_f32(h, (float *)buf, (float *)buf2, e->n)
                : lancbio_estimator_resume_f64(h, (double *)buf, (double *)buf2, e->n);
        REQUIRE(documented(s), "nested resume returned %d", s);
        check_message_est(h, s, "nested resume");
        break;
    case NEST_DESTROY:
        c->relaxed = 1;
        c->destroyed = 1;
        lancbio_estimator_destroy(h);
        break;
    case NEST_CHECKPOINT: { /* only committed state is saved or replaced: both refused */
        int64_t size = -5;
        s = lancbio_estimator_save(h, NULL, 0, &size);
        REQUIRE(s == LANCBIO_ERR_INVALID_STATE && size == -5, "a nested save during a step returned %d", s);
        s = lancbio_estimator_load(h, buf, (int64_t)bytes);
        REQUIRE(s == LANCBIO_ERR_INVALID_STATE, "a nested load during a step returned %d", s);
        break;
    }
    default: { /* a whole step on another live handle */
        int k;
        for (k = 0; k < NEST; k++) {
            est_t *o = &EST[(c->sc.idx + k) % NEST];
            if (o->h && o != e && !o->in_step) {
                cbctx_t inner;
                size_t ob = (size_t)o->n * elem(o->precision);
                void *b = xmalloc(ob), *v = xmalloc(ob);
                memset(b, 0, ob);
                if (o->precision == LANCBIO_FLOAT32) ((float *)b)[0] = 1; else ((double *)b)[0] = 1;
                ctx_init(&inner, o);
                inner.depth = 1;
                s = o->precision == LANCBIO_FLOAT32
                        ? lancbio_estimator_step_f32(o->h, hvp32, &inner, (float *)b, (float *)v, o->n, NULL)
                        : lancbio_estimator_step_f64(o->h, hvp64, &inner, (double *)b, (double *)v, o->n, NULL);
                REQUIRE(documented(s) && s != LANCBIO_NEED_PRODUCT, "nested step on another handle returned %d", s);
                check_message_est(o->h, s, "nested step on another handle");
                if (s >= 0) {
                    REQUIRE(all_finite(v, o->n, o->precision), "nested step on another handle: v not finite");
                    memcpy(o->v, v, ob);
                    info_set_size(&o->info);
                    lancbio_estimator_info(o->h, &o->info);
                }
                free(b);
                free(v);
                break;
            }
        }
        break;
    }
    }
    free(buf);
    free(buf2);
}

/* ------------------------------------------------------------------------------------
 * Options
 * ----------------------------------------------------------------------------------*/
typedef union {
    lancbio_estimator_options_t o;
    unsigned char bytes[512];
    int64_t align;
} opt_buf_t;

/* How the header classifies options: 1 valid, 0 invalid, -1 not specified. */
static int options_verdict(const lancbio_estimator_options_t *o)
{
    int verdict = 1;
#define INVALID_IF(c) do { if (c) return 0; } while (0)
#define UNSPECIFIED_IF(c) do { if (c) verdict = -1; } while (0)
    INVALID_IF(o->method < LANCBIO_METHOD_LANCZOS || o->method > LANCBIO_METHOD_RANDOM_NEUMANN);
    INVALID_IF(o->precision != LANCBIO_FLOAT64 && o->precision != LANCBIO_FLOAT32);
    switch (o->method) {
    case LANCBIO_METHOD_LANCZOS:
        INVALID_IF(o->m_max < 1 || o->m_max > 4096 || o->m0 < 1 || o->m0 > o->m_max || o->grow_every < 1);
        INVALID_IF(isnan(o->growth) || o->growth < 1 || o->growth > 1e6);
        INVALID_IF(o->variant != LANCBIO_VARIANT_RESIDUAL && o->variant != LANCBIO_VARIANT_PLAIN);
        INVALID_IF(!(o->orthogonality_tolerance > 0));
        UNSPECIFIED_IF(o->grow_every > INT32_MAX); /* the header sets no upper bound */
        break;
    case LANCBIO_METHOD_SUBBIO:
        INVALID_IF(!(o->theta0 > 0));
        UNSPECIFIED_IF(isinf(o->theta0));
        break;
    case LANCBIO_METHOD_CG:
    case LANCBIO_METHOD_MINRES:
        INVALID_IF(o->max_iterations < 0 || !(o->tolerance >= 0));
        UNSPECIFIED_IF(isinf(o->tolerance) || o->max_iterations > (1 << 30));
        break;
    default:
        INVALID_IF(!(o->step_size > 0));
        INVALID_IF(o->steps < (o->method == LANCBIO_METHOD_NEUMANN ? 0 : 1));
        UNSPECIFIED_IF(isinf(o->step_size) || o->steps > (1 << 30));
        break;
    }
#undef INVALID_IF
#undef UNSPECIFIED_IF
    return verdict;
}

/* Valid options for `method` from a few bytes, then 0..3 mutations to hostile values. */
static void gen_options(reader_t *r, lancbio_estimator_options_t *o, int32_t method, int32_t precision)
{
    static const double reals[] = {0.05, 0.2, 1e-3, 1.0, 0.5, 1.9, 0.01, 0.1};
    static const double growths[] = {1.0, 1.1, 1.5, 2.0, 10.0, 1.0, 1.1, 3.0};
    static const double tols[] = {0, 1e-12, 1e-6, 0.5, 0, 0, 1e-3, 2.0};
    uint8_t a = u8(r), b = u8(r), c = u8(r), d = u8(r), m, k;
    int32_t valid_method = method >= 1 && method <= 7 ? method : LANCBIO_METHOD_CG;
    lancbio_estimator_options_init(o, valid_method);
    o->method = method;
    o->precision = precision;
    o->m_max = a >= 248 ? (a & 1 ? 4096 : 80) : 1 + a % 12;
    o->m0 = 1 + b % o->m_max;
    o->growth = growths[c & 7];
    o->grow_every = 1 + ((c >> 3) & 7);
    o->variant = (c >> 6) & 1;
    o->reorthogonalize = (c >> 7) & 1;
    o->theta0 = reals[d & 7];
    o->step_size = reals[(d >> 3) & 7];
    o->max_iterations = b % 16;
    o->tolerance = tols[(d >> 5) & 7];
    o->steps = (method == LANCBIO_METHOD_NEUMANN ? 0 : 1) + a % 16;
    o->seed = (uint64_t)b * 0x10001u;
    m = u8(r) % 4;
    for (k = 0; k < m; k++) {
        static const int64_t ints[] = {0, -1, 1, 4096, 4097, INT64_MAX, INT64_MIN, (int64_t)1 << 31,
                                       (int64_t)1 << 30, ((int64_t)1 << 30) + 1, 2, 1000};
        static const double dbls[] = {0, -0.0, -1, 0.999, 1e300, 1e-300, 5e-324, NAN, INFINITY, -INFINITY, 1e6, 1.0};
        uint8_t field = u8(r), val = u8(r);
        int64_t iv = ints[val % 12];
        double dv = dbls[val % 12];
        switch (field % 16) {
        case 0: o->m0 = iv; break;
        case 1: o->m_max = iv; break;
        case 2: o->growth = dv; break;
        case 3: o->grow_every = iv; break;
        case 4: o->variant = (int32_t)(val % 4) - 1; break;
        case 5: o->reorthogonalize = (int32_t)iv; break;
        case 6: o->theta0 = dv; break;
        case 7: o->max_iterations = iv; break;
        case 8: o->tolerance = dv; break;
        case 9: o->step_size = dv; break;
        case 10: o->steps = iv; break;
        case 11: o->seed = (uint64_t)iv; break;
        case 12: o->method = (int32_t)(val % 10) - 1; break;
        case 13: o->orthogonality_tolerance = dv; break;
        case 14: o->exact_residual = (int32_t)iv; break;
        default: o->precision = (int32_t)(val % 4); break;
        }
    }
}

/* struct_size variants: returns 1 if the library must accept the size: from `minimum` (the
 * first published layout) up to sizeof, or larger with zeros. */
static int apply_struct_size(uint8_t sel, unsigned char *bytes, size_t known, size_t minimum, size_t cap)
{
    int64_t size;
    memset(bytes + known, 0, cap - known);
    switch (sel % 16) {
    case 9: size = (int64_t)known + 8 + 8 * (sel >> 4) % 64; break;  /* newer header, zeros */
    case 10: size = (int64_t)known + 1; break;                       /* odd, zero */
    case 11: size = (int64_t)known + 16; bytes[known + 3 + (sel >> 4) % 13] = (unsigned char)(sel | 1); break; /* non-zero field */
    case 12: size = (int64_t)known - 8; break;
    case 13: size = sel & 0x80 ? 0 : -1; break;
    case 14: size = sel & 0x80 ? INT64_MAX : INT64_MIN; break;
    case 15: size = ((int64_t)1 << 20) + 8; break; /* beyond the library's cap: must not be read */
    default: size = (int64_t)known; break;
    }
    memcpy(bytes, &size, sizeof size);
    return (size >= (int64_t)minimum && size <= (int64_t)known) || (((sel % 16) == 9 || (sel % 16) == 10) ? 1 : 0);
}

static int64_t gen_n(reader_t *r)
{
    static const int64_t odd[] = {0, -1, INT64_MIN, INT64_MAX, (int64_t)1 << 40, (int64_t)1 << 33,
                                  (int64_t)INT32_MAX * 64 + 1, (int64_t)1 << 62};
    uint8_t k = u8(r);
    if (k < 232) return 1 + k % MAXN;
    return odd[k % 8];
}

/* ------------------------------------------------------------------------------------
 * Estimator operations
 * ----------------------------------------------------------------------------------*/
static void op_create(reader_t *r)
{
    est_t *e = &EST[u8(r) % NEST];
    opt_buf_t buf;
    lancbio_estimator_t *h = (lancbio_estimator_t *)(void *)garbage_object;
    int64_t n = gen_n(r);
    uint8_t msel = u8(r), psel = u8(r), ssel = u8(r), nulls = u8(r);
    int32_t method = msel < 240 ? 1 + msel % 7 : (int32_t)(msel % 4) * 50 - 1;
    int32_t precision = psel < 248 ? 1 + psel % 2 : (int32_t)(psel % 4) - 1, s;
    int verdict, well_sized;
    if (e->h) { /* the slot's handle goes first */
        lancbio_estimator_destroy(e->h);
        remove_estimator(e);
    }
    memset(&buf, 0, sizeof buf);
    gen_options(r, &buf.o, method, precision);
    gen_operator(r, &e->op);
    well_sized = apply_struct_size(ssel, buf.bytes, sizeof buf.o, OPTIONS_V1_SIZE, sizeof buf.bytes);
    {
        /* Fields beyond a shorter struct_size are not read: they take their defaults. */
        lancbio_estimator_options_t seen = buf.o;
        if (buf.o.struct_size < (int64_t)(offsetof(lancbio_estimator_options_t, orthogonality_tolerance) + sizeof(double)))
            seen.orthogonality_tolerance = 1e-2;
        if (buf.o.struct_size < (int64_t)(offsetof(lancbio_estimator_options_t, exact_residual) + sizeof(int32_t)))
            seen.exact_residual = 0;
        verdict = options_verdict(&seen);
    }
    trace("create n=%lld method=%d precision=%d verdict=%d struct_ok=%d m0=%lld m_max=%lld growth=%g every=%lld "
          "var=%d reorth=%d theta0=%g maxit=%lld tol=%g eta=%g steps=%lld",
          (long long)n, buf.o.method, buf.o.precision, verdict, well_sized, (long long)buf.o.m0, (long long)buf.o.m_max,
          buf.o.growth, (long long)buf.o.grow_every, buf.o.variant, buf.o.reorthogonalize, buf.o.theta0,
          (long long)buf.o.max_iterations, buf.o.tolerance, buf.o.step_size, (long long)buf.o.steps);
    if (nulls == 255) {
        s = lancbio_estimator_create(n, &buf.o, NULL);
        REQUIRE(s == LANCBIO_ERR_NULL_POINTER, "create(out = NULL) returned %d", s);
        return;
    }
    s = lancbio_estimator_create(n, nulls == 254 ? NULL : &buf.o, &h);
    REQUIRE(s == LANCBIO_OK || s == LANCBIO_ERR_INVALID_ARGUMENT || s == LANCBIO_ERR_NULL_POINTER ||
                s == LANCBIO_ERR_OUT_OF_MEMORY,
            "create returned %d, not a documented status of create", s);
    REQUIRE((s == LANCBIO_OK) == (h != NULL), "create returned %d with *out %s", s, h ? "set" : "NULL");
    if (nulls == 254) {
        REQUIRE(s == LANCBIO_ERR_NULL_POINTER, "create(options = NULL) returned %d", s);
        return;
    }
    REQUIRE(s != LANCBIO_ERR_NULL_POINTER, "create with valid pointers returned LANCBIO_ERR_NULL_POINTER");
    if (n < 1 || !well_sized || verdict == 0)
        REQUIRE(s != LANCBIO_OK, "create accepted n = %lld / struct ok %d / options the header calls invalid "
                "(method %d precision %d m0 %lld m_max %lld growth %g every %lld variant %d theta0 %g maxit %lld tol %g "
                "eta %g steps %lld)", (long long)n, well_sized, buf.o.method, buf.o.precision, (long long)buf.o.m0,
                (long long)buf.o.m_max, buf.o.growth, (long long)buf.o.grow_every, buf.o.variant, buf.o.theta0,
                (long long)buf.o.max_iterations, buf.o.tolerance, buf.o.step_size, (long long)buf.o.steps);
    if (n >= 1 && n <= MAXN && well_sized && verdict == 1)
        REQUIRE(s == LANCBIO_OK, "create rejected valid options (%d): method %d precision %d n %lld: %s", s,
                buf.o.method, buf.o.precision, (long long)n, "see trace");
    if (s != LANCBIO_OK) return;
    REQUIRE(n >= 1 && n <= MAXN, "create accepted n = %lld", (long long)n);
    {
        int64_t pn = -1;
        int32_t pm = -1, pp = -1;
        int32_t ps = lancbio_estimator_properties(h, &pn, &pm, &pp);
        REQUIRE(ps == LANCBIO_OK && pn == n && pm == buf.o.method && pp == buf.o.precision,
                "properties %d: n %lld method %d precision %d", ps, (long long)pn, pm, pp);
    }
    e->h = h;
    e->n = n;
    e->method = buf.o.method;
    e->precision = buf.o.precision;
    e->in_step = 0;
    memset(e->v, 0, sizeof e->v);
    memset(&e->info, 0, sizeof e->info);
    e->info.struct_size = (int64_t)sizeof e->info;
    verify_estimator(e, "create", 0);
}

/* Picks an estimator slot that holds a handle (or NULL). */
static est_t *pick_est(reader_t *r)
{
    uint8_t k = u8(r);
    int i;
    for (i = 0; i < NEST; i++) {
        est_t *e = &EST[(k + i) % NEST];
        if (e->h) return e;
    }
    return NULL;
}

/* Argument mutations shared by step, begin, resume, get_v, set_v. */
typedef struct {
    int wrong_precision, null_a, null_b, null_fn, alias;
    int64_t n;
} argmut_t;

static void gen_argmut(reader_t *r, argmut_t *m, int64_t n)
{
    static const int64_t wrong[] = {0, -1, INT64_MIN, INT64_MAX, 1, 2};
    uint8_t a = u8(r);
    memset(m, 0, sizeof *m);
    m->n = n;
    if (a < 160) { m->alias = a & 1; return; }
    m->alias = a & 1;
    switch (a % 6) {
    case 0: m->wrong_precision = 1; break;
    case 1: m->null_a = 1; break;
    case 2: m->null_b = 1; break;
    case 3: m->null_fn = 1; break;
    case 4: m->n = n + ((a >> 3) % 2 ? 1 : -1); break;
    default: m->n = wrong[(a >> 3) % 6]; if (m->n == n) m->n = n + 1; break;
    }
}

/* The statuses argument mistakes may give; 0 if there are none. */
static sset_t arg_errors(const argmut_t *m, int64_t n, int with_fn)
{
    sset_t set = 0;
    if (m->wrong_precision) set |= S(LANCBIO_ERR_WRONG_PRECISION);
    if (m->null_a || m->null_b || (with_fn && m->null_fn)) set |= S(LANCBIO_ERR_NULL_POINTER);
    if (m->n != n) set |= S(LANCBIO_ERR_INVALID_ARGUMENT);
    return set;
}

/* info argument for step: 0 NULL, 1 exact, 2 too small, 3 larger with sentinel bytes. */
typedef union {
    lancbio_step_info_t i;
    unsigned char bytes[sizeof(lancbio_step_info_t) + 32];
} big_info_t;

static int prepare_info(uint8_t sel, big_info_t *bi)
{
    memset(bi, 0x5A, sizeof *bi);
    switch (sel % 8) {
    case 0: case 1: return 0;
    case 2: bi->i.struct_size = (int64_t)INFO_V1_SIZE - 8; return 2;
    case 3: bi->i.struct_size = sel & 0x80 ? 0 : -3; return 2;
    case 4: bi->i.struct_size = (int64_t)sizeof bi->i + 32; return 3;
    default: bi->i.struct_size = (int64_t)sizeof bi->i; return 1;
    }
}

static void finish_outcome(est_t *e, int32_t s, const void *v, const lancbio_step_info_t *info, const char *what)
{
    size_t bytes = (size_t)e->n * elem(e->precision);
    lancbio_step_info_t got;
    info_set_size(&got);
    REQUIRE(lancbio_estimator_info(e->h, &got) == LANCBIO_OK, "%s: info failed", what);
    check_step_info(&got, s, what);
    if (info) REQUIRE(info_same(info, &got), "%s: the info written by the step differs from lancbio_estimator_info", what);
    if (v) {
        REQUIRE(all_finite(v, e->n, e->precision), "%s returned %d with a non-finite v (method %d, precision %d)", what, s,
                e->method, e->precision);
        memcpy(e->v, v, bytes);
    } else {
        void *buf = xmalloc(bytes);
        if (e->precision == LANCBIO_FLOAT32) lancbio_estimator_get_v_f32(e->h, (float *)buf, e->n);
        else lancbio_estimator_get_v_f64(e->h, (double *)buf, e->n);
        REQUIRE(all_finite(buf, e->n, e->precision), "%s returned %d with a non-finite estimate (method %d, precision %d)",
                what, s, e->method, e->precision);
        memcpy(e->v, buf, bytes);
        free(buf);
    }
    e->info = got;
    e->in_step = 0;
}

static void op_step(reader_t *r, int repeat)
{
    est_t *e = pick_est(r);
    argmut_t m;
    big_info_t bi;
    double bd[MAXN];
    int kind, reps, k;
    if (!e) return;
    gen_argmut(r, &m, e->n);
    kind = prepare_info(u8(r), &bi);
    gen_vector(r, bd, e->n);
    reps = repeat ? 1 + u8(r) % 64 : 1;
    if (repeat) memset(&m, 0, sizeof m), m.n = e->n;
    for (k = 0; k < reps && e->h; k++) {
        int f32 = (e->precision == LANCBIO_FLOAT32) != (m.wrong_precision != 0); /* the function's precision */
        size_t esz = f32 ? sizeof(float) : sizeof(double), bytes = (size_t)e->n * esz;
        void *b = xmalloc(bytes), *v = m.alias ? b : xmalloc(bytes), *vcopy = xmalloc(bytes);
        big_info_t before = bi;
        cbctx_t c;
        sset_t errs = arg_errors(&m, e->n, 1), allowed;
        int32_t s, cbs;
        int b_finite;
        if (kind == 2) errs |= S(LANCBIO_ERR_INVALID_ARGUMENT);
        if (f32) to_float(bd, (float *)b, e->n); else memcpy(b, bd, bytes);
        if (!m.alias) memset(v, 0x7F, bytes);
        memcpy(vcopy, v, bytes);
        b_finite = all_finite(b, e->n, f32 ? LANCBIO_FLOAT32 : LANCBIO_FLOAT64);
        ctx_init(&c, e);
        if (!repeat) gen_script(r, &c.sc);
        trace("step%s slot=%d n=%lld f32=%d wp=%d nulls=%d%d%d alias=%d passn=%lld info=%d script=%d@%ld in_step=%d b_finite=%d",
              repeat ? "(many)" : "", (int)(e - EST), (long long)e->n, f32, m.wrong_precision, m.null_fn, m.null_a, m.null_b,
              m.alias, (long long)m.n, kind, c.sc.kind, c.sc.at, e->in_step, b_finite);
        trace("  max|b|=%g", max_abs(bd, e->n));
        in_callback = 0;
        if (f32)
            s = lancbio_estimator_step_f32(e->h, m.null_fn ? NULL : hvp32, &c, m.null_a ? NULL : (const float *)b,
                                           m.null_b ? NULL : (float *)v, m.n, kind ? &bi.i : NULL);
        else
            s = lancbio_estimator_step_f64(e->h, m.null_fn ? NULL : hvp64, &c, m.null_a ? NULL : (const double *)b,
                                           m.null_b ? NULL : (double *)v, m.n, kind ? &bi.i : NULL);
        trace("  -> %d (calls %ld, bad %d, code %d)", s, c.calls, c.bad, c.code);
        if (c.destroyed) { /* destroyed by a nested call: only what a relaxed call promises */
            REQUIRE(documented(s) && s != LANCBIO_NEED_PRODUCT, "step with nested destroy returned %d", s);
            if (s >= 0) REQUIRE(all_finite(v, e->n, e->precision), "step with nested destroy: v not finite");
            remove_estimator(e);
            free(b); if (!m.alias) free(v); free(vcopy);
            break;
        }
        cbs = lancbio_estimator_callback_status(e->h);
        check_message_est(e->h, s, f32 ? "step_f32" : "step_f64");
        msg_relaxed = 0;
        REQUIRE(documented(s) && s != LANCBIO_NEED_PRODUCT, "step returned %d", s);
        if (errs) allowed = errs;
        else if (e->in_step) allowed = S(LANCBIO_ERR_INVALID_STATE);
        else if (!b_finite || (!f32 && norm_overflows(bd, e->n) == 1)) allowed = S(LANCBIO_ERR_NON_FINITE_INPUT);
        else if (c.relaxed) allowed = OUTCOMES | S(-4) | S(-5) | S(-6) | S(-8);
        else if (c.bad == 1) allowed = S(LANCBIO_ERR_CALLBACK);
        else if (c.bad == 2) allowed = S(LANCBIO_ERR_NON_FINITE_PRODUCT);
        else allowed = OUTCOMES | S(LANCBIO_ERR_NON_FINITE_PRODUCT) | S(LANCBIO_ERR_NON_FINITE_RESULT);
        if (!f32 && b_finite && norm_overflows(bd, e->n) == 2) allowed |= S(LANCBIO_ERR_NON_FINITE_INPUT) | OUTCOMES;
        REQUIRE(in_set(s, allowed), "step returned %d (%s); allowed set 0x%x (calls %ld, bad %d, in_step %d, method %d, f32 %d)",
                s, lancbio_status_string(s), allowed, c.calls, c.bad, e->in_step, e->method, f32);
        if (errs || e->in_step || !b_finite) REQUIRE(c.calls == 0, "a rejected step called the callback %ld times", c.calls);
        if (c.bad == 1 && !c.relaxed)
            REQUIRE(c.calls_after_bad == 0, "the callback was called %ld times after it returned %d", c.calls_after_bad, c.code);
        REQUIRE(cbs == (s == LANCBIO_ERR_CALLBACK ? c.code : 0), "callback_status %d after status %d (callback returned %d)",
                cbs, s, c.code);
        if (s < 0) {
            REQUIRE(memcmp(v, vcopy, bytes) == 0, "a failed step (%d) wrote v", s);
            REQUIRE(memcmp(&bi, &before, sizeof bi) == 0, "a failed step (%d) wrote info", s);
            verify_estimator(e, "a failed step", c.relaxed);
        } else {
            if (kind == 3)
                for (size_t t = sizeof bi.i; t < sizeof bi; t++)
                    REQUIRE(bi.bytes[t] == 0x5A, "step wrote beyond the known info fields (byte %zu)", t);
            if (kind) REQUIRE(bi.i.struct_size == before.i.struct_size, "step changed info.struct_size");
            if (!c.relaxed) REQUIRE(!kind || bi.i.products == c.calls, "info.products %lld but the callback ran %ld times",
                                    (long long)bi.i.products, c.calls);
            finish_outcome(e, s, v, kind ? &bi.i : NULL, "step");
            verify_estimator(e, "a step", 0);
        }
        free(b);
        if (!m.alias) free(v);
        free(vcopy);
        if (c.relaxed && e->h) { verify_estimator(e, "a relaxed step", 1); e->in_step = 0; }
        /* the next repetition drifts b */
        bd[k % e->n] += 0.25;
    }
}

static void op_begin(reader_t *r)
{
    est_t *e = pick_est(r);
    argmut_t m;
    double bd[MAXN];
    int f32;
    size_t esz, bytes;
    void *b, *req, *reqcopy;
    sset_t errs, allowed;
    int32_t s;
    int b_finite;
    if (!e) return;
    gen_argmut(r, &m, e->n);
    gen_vector(r, bd, e->n);
    f32 = (e->precision == LANCBIO_FLOAT32) != (m.wrong_precision != 0);
    esz = f32 ? sizeof(float) : sizeof(double);
    bytes = (size_t)e->n * esz;
    b = xmalloc(bytes);
    req = m.alias ? b : xmalloc(bytes);
    reqcopy = xmalloc(bytes);
    if (f32) to_float(bd, (float *)b, e->n); else memcpy(b, bd, bytes);
    if (!m.alias) memset(req, 0x7E, bytes);
    memcpy(reqcopy, req, bytes);
    b_finite = all_finite(b, e->n, f32 ? LANCBIO_FLOAT32 : LANCBIO_FLOAT64);
    errs = arg_errors(&m, e->n, 0);
    s = f32 ? lancbio_estimator_begin_f32(e->h, m.null_a ? NULL : (const float *)b, m.null_b ? NULL : (float *)req, m.n)
            : lancbio_estimator_begin_f64(e->h, m.null_a ? NULL : (const double *)b, m.null_b ? NULL : (double *)req, m.n);
    trace("begin slot=%d n=%lld f32=%d wp=%d nulls=%d%d passn=%lld in_step=%d b_finite=%d max|b|=%g -> %d", (int)(e - EST),
          (long long)e->n, f32, m.wrong_precision, m.null_a, m.null_b, (long long)m.n, e->in_step, b_finite,
          max_abs(bd, e->n), s);
    check_message_est(e->h, s, "begin");
    REQUIRE(lancbio_estimator_callback_status(e->h) == 0, "callback_status non-zero after begin");
    if (errs) allowed = errs;
    else if (e->in_step) allowed = S(LANCBIO_ERR_INVALID_STATE);
    else if (!b_finite || (!f32 && norm_overflows(bd, e->n) == 1)) allowed = S(LANCBIO_ERR_NON_FINITE_INPUT);
    else allowed = OUTCOMES | S(LANCBIO_NEED_PRODUCT) | S(LANCBIO_ERR_NON_FINITE_RESULT) |
                   (!f32 && norm_overflows(bd, e->n) == 2 ? S(LANCBIO_ERR_NON_FINITE_INPUT) : 0);
    REQUIRE(in_set(s, allowed), "begin returned %d (%s); allowed 0x%x (in_step %d, method %d)", s, lancbio_status_string(s),
            allowed, e->in_step, e->method);
    if (s == LANCBIO_NEED_PRODUCT) {
        int64_t i;
        REQUIRE(all_finite(req, e->n, e->precision), "begin requested a product of a non-finite vector (method %d)", e->method);
        for (i = 0; i < e->n; i++) e->req[i] = f32 ? ((float *)req)[i] : ((double *)req)[i];
        e->in_step = 1;
        verify_estimator(e, "begin", 0);
    } else if (s >= 0) {
        finish_outcome(e, s, NULL, NULL, "begin");
        verify_estimator(e, "begin", 0);
    } else {
        REQUIRE(memcmp(req, reqcopy, bytes) == 0, "a failed begin (%d) wrote request", s);
        verify_estimator(e, "a failed begin", 0);
    }
    free(b);
    if (!m.alias) free(req);
    free(reqcopy);
}

/* One resume with the model's product (possibly corrupted by `sc`); returns the status. */
static int32_t do_resume(est_t *e, const argmut_t *m, const script_t *sc, uint64_t seed, int quiet)
{
    int f32 = (e->precision == LANCBIO_FLOAT32) != (m->wrong_precision != 0);
    size_t esz = f32 ? sizeof(float) : sizeof(double), bytes = (size_t)e->n * esz;
    void *prod = xmalloc(bytes), *req = m->alias ? prod : xmalloc(bytes), *reqcopy = xmalloc(bytes);
    double pd[MAXN];
    sset_t errs = arg_errors(m, e->n, 0), allowed;
    int32_t s;
    int p_finite, was = e->in_step;
    int64_t i;
    apply_op(&e->op, e->req, pd, e->n);
    switch (sc->kind) {
    case MIS_VALUE: pd[sc->idx % e->n] = special(sc->val, &seed); break;
    case MIS_GARBAGE: for (i = 0; i < e->n; i++) pd[i] = special(sc->val + (uint8_t)i, &seed); break;
    case MIS_SCALE: for (i = 0; i < e->n; i++) pd[i] *= special(sc->val, &seed); break;
    case MIS_NOWRITE: for (i = 0; i < e->n; i++) pd[i] = (double)(i % 3); break; /* an unrelated vector */
    default: break;
    }
    if (f32) to_float(pd, (float *)prod, e->n); else memcpy(prod, pd, bytes);
    if (!m->alias) memset(req, 0x7D, bytes);
    memcpy(reqcopy, req, bytes);
    p_finite = all_finite(prod, e->n, f32 ? LANCBIO_FLOAT32 : LANCBIO_FLOAT64);
    s = f32 ? lancbio_estimator_resume_f32(e->h, m->null_a ? NULL : (const float *)prod, m->null_b ? NULL : (float *)req, m->n)
            : lancbio_estimator_resume_f64(e->h, m->null_a ? NULL : (const double *)prod, m->null_b ? NULL : (double *)req, m->n);
    if (!quiet)
        trace("resume slot=%d f32=%d wp=%d nulls=%d%d passn=%lld in_step=%d p_finite=%d -> %d", (int)(e - EST), f32,
              m->wrong_precision, m->null_a, m->null_b, (long long)m->n, e->in_step, p_finite, s);
    check_message_est(e->h, s, "resume");
    REQUIRE(lancbio_estimator_callback_status(e->h) == 0, "callback_status non-zero after resume");
    if (errs) allowed = errs | (e->in_step && !m->wrong_precision ? 0 : S(LANCBIO_ERR_INVALID_STATE));
    else if (!e->in_step) allowed = S(LANCBIO_ERR_INVALID_STATE);
    else if (!p_finite) allowed = S(LANCBIO_ERR_NON_FINITE_PRODUCT);
    else allowed = OUTCOMES | S(LANCBIO_NEED_PRODUCT) | S(LANCBIO_ERR_NON_FINITE_PRODUCT) | S(LANCBIO_ERR_NON_FINITE_RESULT);
    REQUIRE(in_set(s, allowed), "resume returned %d (%s); allowed 0x%x (in_step %d, method %d, f32 %d, product finite %d)",
            s, lancbio_status_string(s), allowed, e->in_step, e->method, f32, p_finite);
    if (s == LANCBIO_NEED_PRODUCT) {
        REQUIRE(all_finite(req, e->n, e->precision), "resume requested a product of a non-finite vector (method %d)", e->method);
        for (i = 0; i < e->n; i++) e->req[i] = f32 ? ((float *)req)[i] : ((double *)req)[i];
        verify_estimator(e, "resume", 0);
    } else if (s >= 0) {
        finish_outcome(e, s, NULL, NULL, "resume");
        verify_estimator(e, "resume", 0);
    } else {
        if (!m->alias) REQUIRE(memcmp(req, reqcopy, bytes) == 0, "a failed resume (%d) wrote request", s);
        /* argument errors keep the step; other errors abandon it */
        if (!in_set(s, S(LANCBIO_ERR_NULL_POINTER) | S(LANCBIO_ERR_INVALID_ARGUMENT) | S(LANCBIO_ERR_WRONG_PRECISION) |
                           S(LANCBIO_ERR_INVALID_STATE)))
            e->in_step = 0;
        verify_estimator(e, "a failed resume", 0);
    }
    (void)was;
    free(prod);
    if (!m->alias) free(req);
    free(reqcopy);
    return s;
}

static void op_resume(reader_t *r)
{
    est_t *e = pick_est(r);
    argmut_t m;
    script_t sc;
    if (!e) return;
    gen_argmut(r, &m, e->n);
    gen_script(r, &sc);
    do_resume(e, &m, &sc, 77, 0);
}

/* Completes a step in progress with correct products (or cancels it after the budget). */
static void op_finish(reader_t *r)
{
    est_t *e = pick_est(r);
    argmut_t m;
    script_t sc;
    long k;
    int32_t s = LANCBIO_NEED_PRODUCT;
    if (!e || !e->in_step) return;
    memset(&m, 0, sizeof m);
    m.n = e->n;
    m.alias = u8(r) & 1;
    memset(&sc, 0, sizeof sc);
    for (k = 0; k < RC_BUDGET && s == LANCBIO_NEED_PRODUCT && e->in_step; k++) s = do_resume(e, &m, &sc, 1, 1);
    trace("finish slot=%d resumes=%ld -> %d", (int)(e - EST), k, s);
    if (e->in_step) {
        REQUIRE(lancbio_estimator_cancel(e->h) == LANCBIO_OK, "cancel failed");
        e->in_step = 0;
        verify_estimator(e, "cancel", 0);
    }
}

static void op_cancel(reader_t *r)
{
    est_t *e = pick_est(r);
    int32_t s;
    if (!e) return;
    s = lancbio_estimator_cancel(e->h);
    trace("cancel slot=%d in_step=%d -> %d", (int)(e - EST), e->in_step, s);
    REQUIRE(s == LANCBIO_OK, "cancel returned %d", s);
    check_message_est(e->h, s, "cancel");
    e->in_step = 0;
    verify_estimator(e, "cancel", 0);
}

static void op_get_v(reader_t *r)
{
    est_t *e = pick_est(r);
    argmut_t m;
    int f32;
    size_t bytes;
    void *v, *copy;
    sset_t errs;
    int32_t s;
    if (!e) return;
    gen_argmut(r, &m, e->n);
    f32 = (e->precision == LANCBIO_FLOAT32) != (m.wrong_precision != 0);
    bytes = (size_t)e->n * (f32 ? sizeof(float) : sizeof(double));
    v = xmalloc(bytes);
    copy = xmalloc(bytes);
    memset(v, 0x33, bytes);
    memcpy(copy, v, bytes);
    if (m.null_b) m.null_a = 1;
    errs = arg_errors(&m, e->n, 0);
    s = f32 ? lancbio_estimator_get_v_f32(e->h, m.null_a ? NULL : (float *)v, m.n)
            : lancbio_estimator_get_v_f64(e->h, m.null_a ? NULL : (double *)v, m.n);
    trace("get_v slot=%d f32=%d null=%d passn=%lld -> %d", (int)(e - EST), f32, m.null_a, (long long)m.n, s);
    check_message_est(e->h, s, "get_v");
    REQUIRE(errs ? in_set(s, errs) : s == LANCBIO_OK, "get_v returned %d (allowed 0x%x)", s, errs);
    if (s == LANCBIO_OK) REQUIRE(memcmp(v, e->v, bytes) == 0, "get_v differs from the committed estimate");
    else REQUIRE(memcmp(v, copy, bytes) == 0, "a failed get_v wrote v");
    free(v);
    free(copy);
    verify_estimator(e, "get_v", 0);
}

static void op_set_v(reader_t *r)
{
    est_t *e = pick_est(r);
    argmut_t m;
    double vd[MAXN];
    int f32, finite;
    size_t bytes;
    void *v;
    sset_t errs, allowed;
    int32_t s;
    if (!e) return;
    gen_argmut(r, &m, e->n);
    gen_vector(r, vd, e->n);
    f32 = (e->precision == LANCBIO_FLOAT32) != (m.wrong_precision != 0);
    bytes = (size_t)e->n * (f32 ? sizeof(float) : sizeof(double));
    v = xmalloc(bytes);
    if (f32) to_float(vd, (float *)v, e->n); else memcpy(v, vd, bytes);
    finite = all_finite(v, e->n, f32 ? LANCBIO_FLOAT32 : LANCBIO_FLOAT64);
    if (m.null_b) m.null_a = 1;
    errs = arg_errors(&m, e->n, 0);
    s = f32 ? lancbio_estimator_set_v_f32(e->h, m.null_a ? NULL : (const float *)v, m.n)
            : lancbio_estimator_set_v_f64(e->h, m.null_a ? NULL : (const double *)v, m.n);
    trace("set_v slot=%d f32=%d null=%d passn=%lld finite=%d in_step=%d -> %d", (int)(e - EST), f32, m.null_a,
          (long long)m.n, finite, e->in_step, s);
    check_message_est(e->h, s, "set_v");
    if (errs) allowed = errs | (e->in_step ? S(LANCBIO_ERR_INVALID_STATE) : 0);
    else if (e->in_step) allowed = S(LANCBIO_ERR_INVALID_STATE) | (finite ? 0 : S(LANCBIO_ERR_NON_FINITE_INPUT));
    else if (!finite) allowed = S(LANCBIO_ERR_NON_FINITE_INPUT);
    else allowed = S(LANCBIO_OK);
    REQUIRE(in_set(s, allowed), "set_v returned %d (allowed 0x%x, in_step %d, finite %d)", s, allowed, e->in_step, finite);
    if (s == LANCBIO_OK) memcpy(e->v, v, bytes);
    free(v);
    verify_estimator(e, "set_v", 0);
}

static void op_reset(reader_t *r)
{
    est_t *e = pick_est(r);
    int32_t s;
    if (!e) return;
    s = lancbio_estimator_reset(e->h);
    trace("reset slot=%d -> %d", (int)(e - EST), s);
    REQUIRE(s == LANCBIO_OK, "reset returned %d", s);
    check_message_est(e->h, s, "reset");
    memset(e->v, 0, sizeof e->v);
    memset(&e->info, 0, sizeof e->info);
    e->in_step = 0;
    verify_estimator(e, "reset", 0);
}

/* The reduction of one process (the sums are the values themselves), failing at call
 * `fail_at` (0: never) with `code`. */
typedef struct {
    long calls, fail_at;
    int32_t code;
} reducer_t;

static int32_t reduce_one(double *values, int64_t count, void *ud)
{
    reducer_t *c = (reducer_t *)ud;
    REQUIRE(values != NULL && count >= 1 && count <= 2 * 4097 + 8, "reduction given %lld values", (long long)count);
    c->calls++;
    return c->calls == c->fail_at ? c->code : 0;
}

static int32_t hvp_identity(const double *in, double *out, int64_t n, void *ud)
{
    (void)ud;
    memcpy(out, in, (size_t)n * sizeof(double));
    return 0;
}

/* set_reduction: refused during a step and by SubBiO and MINRES; a reduction failing in
 * the call itself (call 1) or in a step's first reduction (call 2, b's) is
 * LANCBIO_ERR_CALLBACK with its code and leaves the handle as it was; cleared after. */
static void op_reduction(reader_t *r)
{
    est_t *e = pick_est(r);
    reducer_t c;
    uint8_t sel;
    int32_t s;
    double b[MAXN], v[MAXN];
    int64_t i;
    if (!e) return;
    sel = u8(r);
    c.calls = 0;
    c.fail_at = sel % 3;
    c.code = (int32_t)(int8_t)(sel | 1);
    s = lancbio_estimator_set_reduction(e->h, sel & 0x80 ? NULL : reduce_one, &c);
    trace("set_reduction slot=%d method=%d in_step=%d fail_at=%ld null=%d -> %d", (int)(e - EST), e->method, e->in_step,
          c.fail_at, (sel & 0x80) != 0, s);
    check_message_est(e->h, s, "set_reduction");
    if (e->in_step) REQUIRE(s == LANCBIO_ERR_INVALID_STATE, "set_reduction during a step returned %d", s);
    else if (sel & 0x80) REQUIRE(s == LANCBIO_OK, "set_reduction(NULL) returned %d", s);
    else if (e->method == LANCBIO_METHOD_SUBBIO || e->method == LANCBIO_METHOD_MINRES)
        REQUIRE(s == LANCBIO_ERR_INVALID_ARGUMENT, "set_reduction on method %d returned %d", e->method, s);
    else if (c.fail_at == 1) {
        REQUIRE(s == LANCBIO_ERR_CALLBACK && lancbio_estimator_callback_status(e->h) == c.code,
                "a failing set_reduction returned %d", s);
    } else {
        REQUIRE(s == LANCBIO_OK, "set_reduction returned %d", s);
        if (s == LANCBIO_OK && c.fail_at == 2 && e->precision == LANCBIO_FLOAT64) {
            for (i = 0; i < e->n; i++) b[i] = 1.0;
            s = lancbio_estimator_step_f64(e->h, hvp_identity, NULL, b, v, e->n, NULL);
            REQUIRE(s == LANCBIO_ERR_CALLBACK && lancbio_estimator_callback_status(e->h) == c.code,
                    "a step whose reduction fails returned %d", s);
        }
        s = lancbio_estimator_set_reduction(e->h, NULL, NULL);
        REQUIRE(s == LANCBIO_OK, "clearing the reduction returned %d", s);
    }
    verify_estimator(e, "set_reduction", 0);
}

/* Reverse reductions: refused during a step and by SubBiO and MINRES; otherwise a step
 * begun in that mode stops at a product or a reduction, every call but the reduction
 * ones, cancel and the read-only ones is refused there, a wrong count leaves it pending,
 * and cancel leaves the handle as it was; the mode is cleared after. */
static void op_reverse_reduction(reader_t *r)
{
    est_t *e = pick_est(r);
    uint8_t sel;
    int32_t s;
    double b[MAXN], request[MAXN], values[4 * MAXN + 64];
    int64_t i, count = 0;
    if (!e) return;
    sel = u8(r);
    s = lancbio_estimator_set_reverse_reduction(e->h, e->n + (sel & 3));
    trace("set_reverse_reduction slot=%d method=%d in_step=%d -> %d", (int)(e - EST), e->method, e->in_step, s);
    check_message_est(e->h, s, "set_reverse_reduction");
    if (e->in_step) {
        REQUIRE(s == LANCBIO_ERR_INVALID_STATE, "set_reverse_reduction during a step returned %d", s);
        return;
    }
    if (e->method == LANCBIO_METHOD_SUBBIO || e->method == LANCBIO_METHOD_MINRES) {
        REQUIRE(s == LANCBIO_ERR_INVALID_ARGUMENT, "set_reverse_reduction on method %d returned %d", e->method, s);
        return;
    }
    REQUIRE(s == LANCBIO_OK, "set_reverse_reduction returned %d", s);
    if (e->precision == LANCBIO_FLOAT64) {
        for (i = 0; i < e->n; i++) b[i] = 1.0 + 0.1 * (double)(i % 5);
        s = lancbio_estimator_begin_f64(e->h, b, request, e->n);
        REQUIRE(s == LANCBIO_NEED_PRODUCT || s == LANCBIO_NEED_REDUCTION, "a reverse begin returned %d", s);
        if (s == LANCBIO_NEED_REDUCTION) {
            REQUIRE(lancbio_estimator_reduction_values(e->h, values, (int64_t)(sizeof values / sizeof values[0]), &count)
                        == LANCBIO_OK && count > 0,
                    "reduction_values on a pending reduction");
            REQUIRE(lancbio_estimator_begin_f64(e->h, b, request, e->n) == LANCBIO_ERR_INVALID_STATE,
                    "begin while a reduction is pending");
            REQUIRE(lancbio_estimator_resume_f64(e->h, b, request, e->n) == LANCBIO_ERR_INVALID_STATE,
                    "a product while a reduction is pending");
            REQUIRE(lancbio_estimator_reset(e->h) == LANCBIO_ERR_INVALID_STATE, "reset while a reduction is pending");
            REQUIRE(lancbio_estimator_resume_reduction_f64(e->h, values, count + 1 + (sel >> 4), request, e->n)
                        == LANCBIO_ERR_INVALID_ARGUMENT,
                    "a wrong count");
            if (sel & 4) {
                /* One process: the sums are the values; the step goes on to its next stop. */
                s = lancbio_estimator_resume_reduction_f64(e->h, values, count, request, e->n);
                REQUIRE(s == LANCBIO_NEED_PRODUCT || s == LANCBIO_NEED_REDUCTION || s < 0,
                        "resume_reduction returned %d", s);
            }
        }
        REQUIRE(lancbio_estimator_cancel(e->h) == LANCBIO_OK, "cancel in reverse mode");
        REQUIRE(lancbio_estimator_reduction_values(e->h, values, 4, &count) == LANCBIO_ERR_INVALID_STATE,
                "a reduction pending after cancel");
    }
    s = lancbio_estimator_set_reduction(e->h, NULL, NULL);
    REQUIRE(s == LANCBIO_OK, "clearing reverse reductions returned %d", s);
    verify_estimator(e, "set_reverse_reduction", 0);
}

static void op_info(reader_t *r)
{
    est_t *e = pick_est(r);
    big_info_t bi, before;
    uint8_t sel;
    int kind;
    int32_t s;
    if (!e) return;
    sel = u8(r);
    kind = prepare_info(sel, &bi);
    before = bi;
    s = lancbio_estimator_info(e->h, kind ? &bi.i : NULL);
    trace("info slot=%d kind=%d -> %d", (int)(e - EST), kind, s);
    check_message_est(e->h, s, "info");
    if (kind == 0) REQUIRE(s == LANCBIO_ERR_NULL_POINTER, "info(NULL) returned %d", s);
    else if (kind == 2) REQUIRE(s == LANCBIO_ERR_INVALID_ARGUMENT && memcmp(&bi, &before, sizeof bi) == 0,
                                "info with struct_size %lld returned %d or wrote", (long long)before.i.struct_size, s);
    else {
        size_t t;
        REQUIRE(s == LANCBIO_OK && info_same(&bi.i, &e->info) && bi.i.struct_size == before.i.struct_size,
                "info returned %d or fields differ from the last step's", s);
        for (t = sizeof bi.i; t < sizeof bi; t++) REQUIRE(bi.bytes[t] == 0x5A, "info wrote beyond the known fields");
    }
    {
        int64_t n = -1;
        int32_t mth = -1, prec = -1;
        uint8_t nulls = u8(r);
        s = lancbio_estimator_properties(e->h, nulls & 1 ? NULL : &n, nulls & 2 ? NULL : &mth, nulls & 4 ? NULL : &prec);
        REQUIRE(s == LANCBIO_OK, "properties returned %d", s);
        REQUIRE((nulls & 1 || n == e->n) && (nulls & 2 || mth == e->method) && (nulls & 4 || prec == e->precision),
                "properties differ from creation");
    }
    verify_estimator(e, "info", 0);
}

static void op_destroy(reader_t *r)
{
    est_t *e = pick_est(r);
    uint8_t twice;
    if (!e) return;
    twice = u8(r);
    trace("destroy slot=%d twice=%d", (int)(e - EST), twice & 1);
    lancbio_estimator_destroy(e->h);
    remove_estimator(e);
    if (twice & 1) lancbio_estimator_destroy((lancbio_estimator_t *)STALE[(stale_next + NSTALE - 1) % NSTALE]);
}

/* Every handle function on a handle that is NULL, destroyed, garbage, or of the other kind. */
static void op_invalid(reader_t *r)
{
    uint8_t which = u8(r), fn = u8(r);
    void *p = NULL;
    lancbio_estimator_t *h;
    lancbio_bilevel_t *hb;
    double d[4] = {1, 2, 3, 4}, out[4];
    float f[4] = {1, 2, 3, 4}, outf[4];
    lancbio_step_info_t info;
    lancbio_bilevel_info_t binfo;
    int32_t s = 0;
    int is_bil_handle = 0, bil_slot = -1, est_slot = -1;
    cbctx_t c;
    switch (which % 4) {
    case 0: p = NULL; break;
    case 1: p = STALE[which / 4 % NSTALE]; break;
    case 2: p = garbage_object; break;
    default: {
        int k;
        for (k = 0; k < NBIL; k++) if (BIL[k].h) { p = BIL[k].h; is_bil_handle = 1; bil_slot = k; }
        if (!p) for (k = 0; k < NEST; k++) if (EST[k].h) { p = EST[k].h; est_slot = k; }
        break;
    }
    }
    /* Handles are not addresses: a destroyed one is never a live handle's value. */
    if ((which % 4) == 1 && p) REQUIRE(!live_pointer(p), "a destroyed handle's value names a live handle");
    if ((which % 4) == 2 && live_pointer(p)) return; /* garbage that is a live handle's value: not invalid */
    if ((which % 4) == 3 && p && !is_bil_handle) {
        /* an estimator handle given to the bilevel functions */
        hb = (lancbio_bilevel_t *)p;
        memset(&binfo, 0, sizeof binfo);
        binfo.struct_size = (int64_t)sizeof binfo;
        switch (fn % 7) {
        case 0: s = lancbio_bilevel_reset(hb); break;
        case 1: s = lancbio_bilevel_get_v_f64(hb, out, 1); break;
        case 2: s = lancbio_bilevel_set_v_f64(hb, d, 1); break;
        case 3: s = lancbio_bilevel_info(hb, &binfo); break;
        case 4: s = lancbio_bilevel_get_hypergradient_f64(hb, out, 1); break;
        case 5: s = lancbio_bilevel_callback_status(hb) == 0 ? LANCBIO_ERR_INVALID_HANDLE : 1; break;
        default: /* destroy with the other kind's function: not a bilevel handle, so ignored */
            lancbio_bilevel_destroy(hb);
            s = lancbio_estimator_properties(EST[est_slot].h, NULL, NULL, NULL);
            REQUIRE(s == LANCBIO_OK, "lancbio_bilevel_destroy(an estimator handle) destroyed it (properties: %d)", s);
            s = LANCBIO_ERR_INVALID_HANDLE;
            break;
        }
        trace("invalid: estimator handle to bilevel fn %d -> %d", fn % 7, s);
        REQUIRE(s == LANCBIO_ERR_INVALID_HANDLE, "bilevel function %d on an estimator handle returned %d", fn % 7, s);
        REQUIRE(lancbio_bilevel_last_error(hb) && lancbio_bilevel_last_error(hb)[0], "bilevel last_error empty on an estimator handle");
        {
            int64_t size = -3;
            unsigned char bytes[64];
            memset(bytes, 0, sizeof bytes);
            REQUIRE(lancbio_bilevel_save(hb, NULL, 0, &size) == LANCBIO_ERR_INVALID_HANDLE && size == -3,
                    "bilevel save on an estimator handle");
            REQUIRE(lancbio_bilevel_load(hb, bytes, sizeof bytes) == LANCBIO_ERR_INVALID_HANDLE, "bilevel load on an estimator handle");
        }
        return;
    }
    h = (lancbio_estimator_t *)p;
    ctx_init(&c, &EST[0]);
    c.n = 4;
    info_set_size(&info);
    switch (fn % 16) {
    case 0: s = lancbio_estimator_reset(h); break;
    case 1: s = lancbio_estimator_properties(h, NULL, NULL, NULL); break;
    case 2: s = lancbio_estimator_info(h, &info); break;
    case 3: s = lancbio_estimator_step_f64(h, hvp64, &c, d, out, 4, &info); break;
    case 4: s = lancbio_estimator_step_f32(h, hvp32, &c, f, outf, 4, &info); break;
    case 5: s = lancbio_estimator_begin_f64(h, d, out, 4); break;
    case 6: s = lancbio_estimator_begin_f32(h, f, outf, 4); break;
    case 7: s = lancbio_estimator_resume_f64(h, d, out, 4); break;
    case 8: s = lancbio_estimator_resume_f32(h, f, outf, 4); break;
    case 9: s = lancbio_estimator_cancel(h); break;
    case 10: s = lancbio_estimator_get_v_f64(h, out, 4); break;
    case 11: s = lancbio_estimator_get_v_f32(h, outf, 4); break;
    case 12: s = lancbio_estimator_set_v_f64(h, d, 4); break;
    case 13: s = lancbio_estimator_set_v_f32(h, f, 4); break;
    case 14:
        lancbio_estimator_destroy(h); /* NULL, destroyed, garbage or a bilevel handle: ignored */
        if (is_bil_handle) {
            double v[MAXB];
            s = lancbio_bilevel_get_v_f64(BIL[bil_slot].h, v, BIL[bil_slot].dy);
            REQUIRE(s == LANCBIO_OK, "lancbio_estimator_destroy(a bilevel handle) destroyed it (get_v: %d)", s);
        }
        s = LANCBIO_ERR_INVALID_HANDLE;
        break;
    default: s = lancbio_estimator_callback_status(h) == 0 ? LANCBIO_ERR_INVALID_HANDLE : 1; break;
    }
    trace("invalid: kind %d fn %d -> %d", which % 4, fn % 16, s);
    REQUIRE(s == LANCBIO_ERR_INVALID_HANDLE, "estimator function %d on an invalid handle (kind %d) returned %d", fn % 16,
            which % 4, s);
    REQUIRE(c.calls == 0, "a call on an invalid handle ran the callback");
    REQUIRE(lancbio_estimator_last_error(h) && lancbio_estimator_last_error(h)[0], "last_error empty for an invalid handle");
    {
        int64_t size = -3;
        unsigned char bytes[64];
        memset(bytes, 0, sizeof bytes);
        REQUIRE(lancbio_estimator_save(h, NULL, 0, &size) == LANCBIO_ERR_INVALID_HANDLE && size == -3,
                "save on an invalid handle (kind %d)", which % 4);
        REQUIRE(lancbio_estimator_load(h, bytes, sizeof bytes) == LANCBIO_ERR_INVALID_HANDLE,
                "load on an invalid handle (kind %d)", which % 4);
    }
}

/* ------------------------------------------------------------------------------------
 * Bilevel
 * ----------------------------------------------------------------------------------*/
typedef struct {
    bil_t *b;
    long calls, grad_y_g, hvp, jvp, others;
    int bad;
    long calls_after_bad;
    int32_t code;
    script_t sc;
    int relaxed, destroyed, depth;
    int rhs_huge;
    uint64_t seed;
} bctx_t;

static void bil_nested(bctx_t *c);

/* Shared tail of the five callbacks: misbehaviour and bookkeeping. */
static int32_t bil_finish(bctx_t *c, double *out, int64_t count, int is_rhs)
{
    int64_t i;
    c->calls++;
    if (c->bad) c->calls_after_bad++;
    if (c->calls > CALL_BUDGET) {
        if (!c->bad) { c->bad = 1; c->code = BUDGET_CODE; }
        return BUDGET_CODE;
    }
    if (c->sc.kind != MIS_NONE && c->calls == c->sc.at) {
        switch (c->sc.kind) {
        case MIS_CODE:
            if (!c->bad) { c->bad = 1; c->code = c->sc.code; }
            return c->sc.code;
        case MIS_VALUE: out[c->sc.idx % count] = special(c->sc.val, &c->seed); break;
        case MIS_GARBAGE: for (i = 0; i < count; i++) out[i] = special(c->sc.val + (uint8_t)i, &c->seed); break;
        case MIS_SCALE: for (i = 0; i < count; i++) out[i] *= special(c->sc.val, &c->seed); break;
        case MIS_NESTED: if (c->depth == 0 && in_callback == 1) bil_nested(c); break;
        default: break;
        }
    }
    if (!c->bad && !all_finite_d(out, count)) c->bad = 2;
    if (is_rhs && norm_overflows(out, count)) c->rhs_huge = 1; /* 1 or 2 */
    return 0;
}

static void bil_args(bctx_t *c, const double *x, int64_t dx, const double *y, int64_t dy, const double *out, int64_t count,
                     void *ud)
{
    REQUIRE(ud == (void *)c, "bilevel callback got the wrong user_data");
    REQUIRE(dx == c->b->dx && dy == c->b->dy, "bilevel callback got dx %lld dy %lld", (long long)dx, (long long)dy);
    REQUIRE(x && y && out, "bilevel callback got a NULL buffer");
    REQUIRE(out + count <= x || x + dx <= out, "bilevel callback: out overlaps x");
    REQUIRE(out + count <= y || y + dy <= out, "bilevel callback: out overlaps y");
}

/* g = 1/2 y^T H y - y^T C x, f = 1/2 |y - y0|^2 + mu/2 |x|^2. */
static int32_t cb_grad_y_g(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    bctx_t *c = (bctx_t *)ud;
    const problem_t *p = &c->b->pb;
    int64_t i, j;
    int32_t s;
    in_callback++;
    bil_args(c, x, dx, y, dy, out, dy, ud);
    c->grad_y_g++;
    for (i = 0; i < dy; i++) {
        double t = p->h[i] * y[i];
        for (j = 0; j < dx; j++) t -= p->c[i * MAXB + j] * x[j];
        out[i] = t;
    }
    s = bil_finish(c, out, dy, 0);
    in_callback--;
    return s;
}

static int32_t cb_grad_x_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    bctx_t *c = (bctx_t *)ud;
    int64_t j;
    int32_t s;
    in_callback++;
    bil_args(c, x, dx, y, dy, out, dx, ud);
    c->others++;
    for (j = 0; j < dx; j++) out[j] = c->b->pb.mu * x[j];
    s = bil_finish(c, out, dx, 0);
    in_callback--;
    return s;
}

static int32_t cb_grad_y_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    bctx_t *c = (bctx_t *)ud;
    int64_t i;
    int32_t s;
    in_callback++;
    bil_args(c, x, dx, y, dy, out, dy, ud);
    c->others++;
    for (i = 0; i < dy; i++) out[i] = y[i] - c->b->pb.y0[i];
    s = bil_finish(c, out, dy, 1);
    in_callback--;
    return s;
}

static int32_t cb_hvp(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *ud)
{
    bctx_t *c = (bctx_t *)ud;
    int64_t i;
    int32_t s;
    in_callback++;
    bil_args(c, x, dx, y, dy, out, dy, ud);
    REQUIRE(v && (out + dy <= v || v + dy <= out), "hvp_yy_g: v NULL or overlapping out");
    c->hvp++;
    for (i = 0; i < dy; i++) out[i] = c->b->pb.h[i] * v[i];
    s = bil_finish(c, out, dy, 0);
    in_callback--;
    return s;
}

static int32_t cb_jvp(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *ud)
{
    bctx_t *c = (bctx_t *)ud;
    int64_t i, j;
    int32_t s;
    in_callback++;
    bil_args(c, x, dx, y, dy, out, dx, ud);
    REQUIRE(v && (out + dx <= v || v + dy <= out), "jvp_xy_g: v NULL or overlapping out");
    REQUIRE(all_finite_d(v, dy), "jvp_xy_g got a non-finite v");
    c->jvp++;
    for (j = 0; j < dx; j++) {
        double t = 0;
        for (i = 0; i < dy; i++) t -= c->b->pb.c[i * MAXB + j] * v[i];
        out[j] = t;
    }
    s = bil_finish(c, out, dx, 0);
    in_callback--;
    return s;
}

static void verify_bilevel(bil_t *b, const char *after, int resync)
{
    double v[MAXB], g[MAXB];
    lancbio_bilevel_info_t info;
    lancbio_step_info_t einfo;
    int32_t s1 = lancbio_bilevel_get_v_f64(b->h, v, b->dy), s2 = lancbio_bilevel_get_hypergradient_f64(b->h, g, b->dx), s3, s4;
    memset(&info, 0, sizeof info);
    info.struct_size = (int64_t)sizeof info;
    info_set_size(&einfo);
    s3 = lancbio_bilevel_info(b->h, &info);
    s4 = lancbio_bilevel_estimator_info(b->h, &einfo);
    REQUIRE(s1 == 0 && s2 == 0 && s3 == 0 && s4 == 0, "bilevel getters after %s: %d %d %d %d", after, s1, s2, s3, s4);
    check_message_bil(b->h, 0, "bilevel getters");
    REQUIRE(all_finite_d(v, b->dy) && all_finite_d(g, b->dx), "after %s the bilevel v or hyper-gradient is not finite", after);
    if (resync) {
        memcpy(b->v, v, sizeof v);
        memcpy(b->hg, g, sizeof g);
        b->info = info;
        b->einfo = einfo;
        return;
    }
    REQUIRE(memcmp(v, b->v, (size_t)b->dy * 8) == 0, "after %s the bilevel v changed", after);
    REQUIRE(memcmp(g, b->hg, (size_t)b->dx * 8) == 0, "after %s the bilevel hyper-gradient changed", after);
    REQUIRE(binfo_same(&info, &b->info), "after %s the bilevel info changed", after);
    REQUIRE(info_same(&einfo, &b->einfo), "after %s the bilevel estimator info changed", after);
}

static void bil_nested(bctx_t *c)
{
    bil_t *b = c->b;
    double v[MAXB];
    int32_t s;
    trace("    bilevel nested %d", c->sc.nested % 7);
    msg_relaxed = 1;
    switch (c->sc.nested % 7) {
    case 0:
        s = lancbio_bilevel_get_v_f64(b->h, v, b->dy);
        REQUIRE(s == LANCBIO_OK && memcmp(v, b->v, (size_t)b->dy * 8) == 0, "nested bilevel get_v: %d or changed", s);
        break;
    case 1:
        s = lancbio_bilevel_get_hypergradient_f64(b->h, v, b->dx);
        REQUIRE(s == LANCBIO_OK && memcmp(v, b->hg, (size_t)b->dx * 8) == 0, "nested hypergradient: %d or changed", s);
        break;
    case 2:
        c->relaxed = 1;
        memset(v, 0, sizeof v);
        s = lancbio_bilevel_set_v_f64(b->h, v, b->dy);
        REQUIRE(s == LANCBIO_OK || s == LANCBIO_ERR_INVALID_STATE, "nested bilevel set_v returned %d", s);
        break;
    case 3:
        c->relaxed = 1;
        s = lancbio_bilevel_reset(b->h); /* may be refused inside the handle's own callback */
        REQUIRE(s == LANCBIO_OK || s == LANCBIO_ERR_INVALID_STATE, "nested bilevel reset returned %d", s);
        break;
    case 4: {
        lancbio_problem_f64_t pb;
        bctx_t inner;
        double x[MAXB], y[MAXB];
        c->relaxed = 1;
        memset(&inner, 0, sizeof inner);
        inner.b = b;
        inner.depth = 1;
        pb.struct_size = (int64_t)sizeof pb;
        pb.user_data = &inner;
        pb.grad_y_g = cb_grad_y_g;
        pb.grad_x_f = cb_grad_x_f;
        pb.grad_y_f = cb_grad_y_f;
        pb.hvp_yy_g = cb_hvp;
        pb.jvp_xy_g = cb_jvp;
        memcpy(x, b->x, sizeof x);
        memcpy(y, b->y, sizeof y);
        s = lancbio_bilevel_step_f64(b->h, &pb, x, b->dx, y, b->dy, NULL);
        REQUIRE(documented(s) && s != LANCBIO_NEED_PRODUCT, "nested bilevel step returned %d", s);
        break;
    }
    case 6: { /* save and load from inside a step are refused */
        int64_t size = -5;
        unsigned char bytes[64];
        memset(bytes, 0, sizeof bytes);
        s = lancbio_bilevel_save(b->h, NULL, 0, &size);
        REQUIRE(s == LANCBIO_ERR_INVALID_STATE && size == -5, "a nested bilevel save returned %d", s);
        s = lancbio_bilevel_load(b->h, bytes, sizeof bytes);
        REQUIRE(s == LANCBIO_ERR_INVALID_STATE, "a nested bilevel load returned %d", s);
        break;
    }
    default:
        c->relaxed = 1;
        c->destroyed = 1;
        lancbio_bilevel_destroy(b->h);
        break;
    }
}

static void gen_problem(reader_t *r, problem_t *p)
{
    uint8_t kind = u8(r);
    uint64_t s = (uint64_t)u16(r) + 5;
    int i, j;
    p->mu = 0.1 + unif(&s);
    for (i = 0; i < MAXB; i++) {
        p->h[i] = 1 + 4 * unif(&s);
        p->y0[i] = 2 * unif(&s) - 1;
        for (j = 0; j < MAXB; j++) p->c[i * MAXB + j] = (2 * unif(&s) - 1) * 0.3;
    }
    if ((kind & 7) == 7) p->h[u8(r) % MAXB] = special(u8(r), &s);
    if ((kind & 7) == 6) p->mu = special(u8(r), &s);
    if ((kind & 7) == 5) for (i = 0; i < MAXB; i++) p->h[i] *= SCALES[kind >> 4];
}

static bil_t *pick_bil(reader_t *r)
{
    uint8_t k = u8(r);
    int i;
    for (i = 0; i < NBIL; i++)
        if (BIL[(k + i) % NBIL].h) return &BIL[(k + i) % NBIL];
    return NULL;
}

static void op_bil_create(reader_t *r)
{
    bil_t *b = &BIL[u8(r) % NBIL];
    union { lancbio_bilevel_options_t o; unsigned char bytes[256]; int64_t a; } ob;
    opt_buf_t eb;
    lancbio_bilevel_t *h = NULL;
    static const double lrs[] = {0.1, 0.01, 0.5, 1.0, 0, -0.1, NAN, INFINITY, 1e-300, 1e300, 0.05, 0.2};
    uint8_t a = u8(r), c = u8(r), d = u8(r), ssel = u8(r), msel = u8(r);
    int64_t dx = a < 240 ? 1 + a % MAXB : (a & 1 ? 0 : -5), dy = c < 240 ? 1 + c % MAXB : (c & 1 ? 0 : INT64_MAX);
    int32_t method = 1 + msel % 7, s;
    int valid = 1, well;
    if (b->h) {
        lancbio_bilevel_destroy(b->h);
        remember_stale(b->h);
        b->h = NULL;
    }
    memset(&ob, 0, sizeof ob);
    lancbio_bilevel_options_init(&ob.o);
    ob.o.lr_x = lrs[d % 4];
    ob.o.lr_y = lrs[(d >> 2) % 4];
    ob.o.inner_steps = (d >> 4) % 6;
    if (msel >= 200) { /* hostile outer options */
        uint8_t f = u8(r), v = u8(r);
        switch (f % 8) {
        case 6: /* the curvature step: lr_y may then be 0 */
            ob.o.lr_y_auto = 1;
            if (v & 1) ob.o.lr_y = 0;
            break;
        case 0: ob.o.lr_x = lrs[v % 12]; break;
        case 1: ob.o.lr_y = lrs[v % 12]; break;
        case 2: ob.o.lr_x_decay = lrs[v % 12]; break;
        case 3: ob.o.lr_x_min = lrs[v % 12]; break;
        case 4: ob.o.lr_y_decay = lrs[v % 12]; break;
        case 5: ob.o.lr_y_min = lrs[v % 12]; break;
        default: ob.o.inner_steps = v & 1 ? -1 : (int64_t)1 << (v % 40); break;
        }
    }
    well = apply_struct_size(ssel, ob.bytes, sizeof ob.o, BILEVEL_OPTIONS_V1_SIZE, sizeof ob.bytes);
    {
        int64_t size;
        memcpy(&size, ob.bytes, sizeof size);
        /* A caller of the first layout has no lr_y_auto: the library reads it as 0. */
        if (size < (int64_t)sizeof ob.o) ob.o.lr_y_auto = 0;
        memcpy(ob.bytes, &size, sizeof size);
    }
    if (!(ob.o.lr_x > 0) || !(ob.o.lr_y > 0 || (ob.o.lr_y_auto && ob.o.lr_y == 0)) || !(ob.o.lr_x_decay >= 0) ||
        !(ob.o.lr_x_min >= 0) || !(ob.o.lr_y_decay >= 0) || !(ob.o.lr_y_min >= 0) || ob.o.inner_steps < 0)
        valid = 0;
    else if (isinf(ob.o.lr_x) || isinf(ob.o.lr_y) || isinf(ob.o.lr_x_decay) || isinf(ob.o.lr_x_min) ||
             isinf(ob.o.lr_y_decay) || isinf(ob.o.lr_y_min) || ob.o.inner_steps > (1 << 30))
        valid = -1;
    memset(&eb, 0, sizeof eb);
    gen_options(r, &eb.o, method, LANCBIO_FLOAT64);
    if (options_verdict(&eb.o) == 0 || eb.o.precision != LANCBIO_FLOAT64) valid = 0;
    else if (options_verdict(&eb.o) < 0 && valid == 1) valid = -1;
    /* The curvature step needs the Ritz values of Lanczos or SubBiO. */
    if (ob.o.lr_y_auto && eb.o.method != LANCBIO_METHOD_LANCZOS && eb.o.method != LANCBIO_METHOD_SUBBIO) valid = 0;
    gen_problem(r, &b->pb);
    s = lancbio_bilevel_create(dx, dy, &ob.o, &eb.o, &h);
    trace("bil_create dx=%lld dy=%lld method=%d valid=%d struct_ok=%d lr=%g,%g T=%lld -> %d", (long long)dx, (long long)dy,
          eb.o.method, valid, well, ob.o.lr_x, ob.o.lr_y, (long long)ob.o.inner_steps, s);
    REQUIRE(s == LANCBIO_OK || s == LANCBIO_ERR_INVALID_ARGUMENT || s == LANCBIO_ERR_OUT_OF_MEMORY,
            "bilevel_create returned %d", s);
    REQUIRE((s == LANCBIO_OK) == (h != NULL), "bilevel_create: status %d but *out %p", s, (void *)h);
    if (dx < 1 || dy < 1 || !well || valid == 0) REQUIRE(s != LANCBIO_OK, "bilevel_create accepted invalid input");
    if (dx >= 1 && dy >= 1 && dx <= MAXB && dy <= MAXB && well && valid == 1)
        REQUIRE(s == LANCBIO_OK, "bilevel_create rejected valid input (%d)", s);
    if (s != LANCBIO_OK) return;
    REQUIRE(dx >= 1 && dy >= 1 && dx <= MAXB && dy <= MAXB, "bilevel_create accepted dx %lld dy %lld", (long long)dx,
            (long long)dy);
    b->h = h;
    b->dx = dx;
    b->dy = dy;
    {
        uint64_t sd = 3;
        int i;
        for (i = 0; i < MAXB; i++) { b->x[i] = 2 * unif(&sd) - 1; b->y[i] = 2 * unif(&sd) - 1; }
    }
    memset(b->v, 0, sizeof b->v);
    memset(b->hg, 0, sizeof b->hg);
    memset(&b->info, 0, sizeof b->info);
    memset(&b->einfo, 0, sizeof b->einfo);
    verify_bilevel(b, "bilevel_create", 0);
}

static void op_bil_step(reader_t *r)
{
    bil_t *b = pick_bil(r);
    union { lancbio_problem_f64_t p; unsigned char bytes[256]; int64_t a; } pb;
    union { lancbio_bilevel_info_t i; unsigned char bytes[sizeof(lancbio_bilevel_info_t) + 16]; } bi, bibefore;
    bctx_t c;
    double *x, *y, xc[MAXB], yc[MAXB];
    uint8_t mut, ssel, isel, xsel;
    int well, info_kind;
    int64_t pdx, pdy;
    sset_t errs = 0, allowed;
    int32_t s, cbs;
    if (!b) return;
    mut = u8(r);
    ssel = u8(r);
    isel = u8(r);
    xsel = u8(r);
    memset(&c, 0, sizeof c);
    c.b = b;
    c.seed = 9;
    gen_script(r, &c.sc);
    memset(&pb, 0, sizeof pb);
    pb.p.user_data = &c;
    pb.p.grad_y_g = cb_grad_y_g;
    pb.p.grad_x_f = cb_grad_x_f;
    pb.p.grad_y_f = cb_grad_y_f;
    pb.p.hvp_yy_g = cb_hvp;
    pb.p.jvp_xy_g = cb_jvp;
    well = apply_struct_size(ssel, pb.bytes, sizeof pb.p, sizeof pb.p, sizeof pb.bytes);
    if (!well) errs |= S(LANCBIO_ERR_INVALID_ARGUMENT);
    x = (double *)xmalloc((size_t)b->dx * 8);
    y = (double *)xmalloc((size_t)b->dy * 8);
    memcpy(x, b->x, (size_t)b->dx * 8);
    memcpy(y, b->y, (size_t)b->dy * 8);
    if (xsel >= 200) {
        uint64_t sd = xsel;
        if (xsel & 1) x[xsel % b->dx] = special(xsel >> 1, &sd);
        else y[xsel % b->dy] = special(xsel >> 1, &sd);
    }
    memcpy(xc, x, (size_t)b->dx * 8);
    memcpy(yc, y, (size_t)b->dy * 8);
    pdx = b->dx;
    pdy = b->dy;
    if (mut >= 192) {
        switch (mut % 10) {
        case 0: pb.p.grad_y_g = NULL; errs |= S(LANCBIO_ERR_NULL_POINTER); break;
        case 1: pb.p.grad_x_f = NULL; errs |= S(LANCBIO_ERR_NULL_POINTER); break;
        case 2: pb.p.grad_y_f = NULL; errs |= S(LANCBIO_ERR_NULL_POINTER); break;
        case 3: pb.p.hvp_yy_g = NULL; errs |= S(LANCBIO_ERR_NULL_POINTER); break;
        case 4: pb.p.jvp_xy_g = NULL; errs |= S(LANCBIO_ERR_NULL_POINTER); break;
        case 5: pdx = b->dx + 1; errs |= S(LANCBIO_ERR_INVALID_ARGUMENT); break;
        case 6: pdy = mut & 16 ? 0 : b->dy - 1; errs |= S(LANCBIO_ERR_INVALID_ARGUMENT); break;
        case 7: errs |= S(LANCBIO_ERR_NULL_POINTER); break; /* problem NULL */
        case 8: errs |= S(LANCBIO_ERR_NULL_POINTER); break; /* x NULL */
        default: errs |= S(LANCBIO_ERR_NULL_POINTER); break; /* y NULL */
        }
    }
    memset(&bi, 0x5A, sizeof bi);
    info_kind = isel % 4;
    if (info_kind == 1) bi.i.struct_size = (int64_t)sizeof bi.i;
    else if (info_kind == 2) { bi.i.struct_size = (int64_t)BILEVEL_INFO_V1_SIZE - 8; errs |= S(LANCBIO_ERR_INVALID_ARGUMENT); }
    else if (info_kind == 3) bi.i.struct_size = (int64_t)sizeof bi.i + 16;
    bibefore = bi;
    in_callback = 0;
    s = lancbio_bilevel_step_f64(b->h, mut >= 192 && mut % 10 == 7 ? NULL : &pb.p, mut >= 192 && mut % 10 == 8 ? NULL : x, pdx,
                                 mut >= 192 && mut % 10 == 9 ? NULL : y, pdy, info_kind ? &bi.i : NULL);
    trace("bil_step slot=%d mut=%d struct_ok=%d info=%d x_finite=%d y_finite=%d script=%d@%ld -> %d (calls %ld bad %d)",
          (int)(b - BIL), mut >= 192 ? mut % 10 : -1, well, info_kind, all_finite_d(xc, b->dx), all_finite_d(yc, b->dy),
          c.sc.kind, c.sc.at, s, c.calls, c.bad);
    if (c.destroyed) {
        REQUIRE(documented(s) && s != LANCBIO_NEED_PRODUCT, "bilevel step with nested destroy returned %d", s);
        remember_stale(b->h);
        b->h = NULL;
        free(x);
        free(y);
        return;
    }
    cbs = lancbio_bilevel_callback_status(b->h);
    check_message_bil(b->h, s, "bilevel_step");
    msg_relaxed = 0;
    REQUIRE(documented(s) && s != LANCBIO_NEED_PRODUCT, "bilevel_step returned %d", s);
    if (errs) allowed = errs;
    else if (!all_finite_d(xc, b->dx) || !all_finite_d(yc, b->dy)) allowed = S(LANCBIO_ERR_NON_FINITE_INPUT);
    else if (c.relaxed) allowed = OUTCOMES | S(-3) | S(-4) | S(-5) | S(-6) | S(-8);
    else if (c.bad == 1) allowed = S(LANCBIO_ERR_CALLBACK);
    else if (c.bad == 2) allowed = S(LANCBIO_ERR_NON_FINITE_PRODUCT);
    else allowed = OUTCOMES | S(LANCBIO_ERR_NON_FINITE_PRODUCT) | S(LANCBIO_ERR_NON_FINITE_RESULT) |
                   (c.rhs_huge ? S(LANCBIO_ERR_NON_FINITE_INPUT) : 0);
    REQUIRE(in_set(s, allowed), "bilevel_step returned %d (%s), allowed 0x%x (calls %ld, bad %d)", s, lancbio_status_string(s),
            allowed, c.calls, c.bad);
    if (errs) REQUIRE(c.calls == 0, "a rejected bilevel step ran %ld callbacks", c.calls);
    if (c.bad == 1 && !c.relaxed) REQUIRE(c.calls_after_bad == 0, "a bilevel callback ran after one returned %d", c.code);
    REQUIRE(cbs == (s == LANCBIO_ERR_CALLBACK ? c.code : 0), "bilevel callback_status %d after %d (code %d)", cbs, s, c.code);
    if (s < 0) {
        REQUIRE(memcmp(x, xc, (size_t)b->dx * 8) == 0 && memcmp(y, yc, (size_t)b->dy * 8) == 0, "a failed bilevel step (%d) changed x or y", s);
        REQUIRE(memcmp(&bi, &bibefore, sizeof bi) == 0, "a failed bilevel step wrote info");
        verify_bilevel(b, "a failed bilevel step", c.relaxed);
    } else {
        lancbio_bilevel_info_t got;
        REQUIRE(all_finite_d(x, b->dx) && all_finite_d(y, b->dy), "a successful bilevel step (%d) gave non-finite x or y", s);
        memset(&got, 0, sizeof got);
        got.struct_size = (int64_t)sizeof got;
        lancbio_bilevel_info(b->h, &got);
        REQUIRE(got.estimator_status == s && isfinite(got.hypergradient_norm), "bilevel info: estimator_status %d, norm %g",
                got.estimator_status, got.hypergradient_norm);
        if (!c.relaxed) {
            REQUIRE(got.iteration == b->info.iteration + 1 && got.products == c.hvp && got.cross_products == 1 &&
                        got.gradient_evaluations == c.grad_y_g + 2,
                    "bilevel info: iteration %lld (was %lld) products %lld (hvp calls %ld) evaluations %lld (grad_y_g %ld)",
                    (long long)got.iteration, (long long)b->info.iteration, (long long)got.products, c.hvp,
                    (long long)got.gradient_evaluations, c.grad_y_g);
        }
        if (info_kind == 1 || info_kind == 3) REQUIRE(binfo_same(&bi.i, &got), "bilevel step info differs from bilevel_info");
        if (info_kind == 3)
            for (size_t t = sizeof bi.i; t < sizeof bi; t++) REQUIRE(bi.bytes[t] == 0x5A, "bilevel step wrote past info");
        memcpy(b->x, x, (size_t)b->dx * 8);
        memcpy(b->y, y, (size_t)b->dy * 8);
        verify_bilevel(b, "a bilevel step", 1);
    }
    free(x);
    free(y);
}

static void op_bil_misc(reader_t *r)
{
    bil_t *b = pick_bil(r);
    uint8_t fn, nul;
    double vd[MAXB], *buf;
    int32_t s;
    if (!b) return;
    fn = u8(r);
    nul = u8(r);
    gen_vector(r, vd, b->dy);
    buf = (double *)xmalloc(MAXB * 8);
    switch (fn % 7) {
    case 0: /* set_v */
        memcpy(buf, vd, (size_t)b->dy * 8);
        s = lancbio_bilevel_set_v_f64(b->h, nul == 1 ? NULL : buf, nul == 2 ? b->dy + 1 : b->dy);
        trace("bil set_v nul=%d finite=%d -> %d", nul, all_finite_d(vd, b->dy), s);
        check_message_bil(b->h, s, "bilevel set_v");
        if (nul == 1) REQUIRE(s == LANCBIO_ERR_NULL_POINTER, "bilevel set_v(NULL) returned %d", s);
        else if (nul == 2) REQUIRE(s == LANCBIO_ERR_INVALID_ARGUMENT, "bilevel set_v(wrong dy) returned %d", s);
        else if (!all_finite_d(vd, b->dy)) REQUIRE(s == LANCBIO_ERR_NON_FINITE_INPUT, "bilevel set_v(NaN) returned %d", s);
        else {
            REQUIRE(s == LANCBIO_OK, "bilevel set_v returned %d", s);
            memcpy(b->v, vd, (size_t)b->dy * 8);
        }
        break;
    case 1:
        s = lancbio_bilevel_get_v_f64(b->h, nul == 1 ? NULL : buf, nul == 2 ? -1 : b->dy);
        trace("bil get_v -> %d", s);
        check_message_bil(b->h, s, "bilevel get_v");
        REQUIRE(nul == 1 ? s == LANCBIO_ERR_NULL_POINTER : nul == 2 ? s == LANCBIO_ERR_INVALID_ARGUMENT : s == LANCBIO_OK,
                "bilevel get_v returned %d", s);
        break;
    case 2:
        s = lancbio_bilevel_get_hypergradient_f64(b->h, nul == 1 ? NULL : buf, nul == 2 ? b->dx + 1 : b->dx);
        trace("bil hypergradient -> %d", s);
        check_message_bil(b->h, s, "bilevel hypergradient");
        REQUIRE(nul == 1 ? s == LANCBIO_ERR_NULL_POINTER : nul == 2 ? s == LANCBIO_ERR_INVALID_ARGUMENT : s == LANCBIO_OK,
                "bilevel hypergradient returned %d", s);
        break;
    case 3: {
        lancbio_bilevel_info_t info;
        lancbio_step_info_t einfo;
        memset(&info, 0, sizeof info);
        info.struct_size = nul == 2 ? 8 : (int64_t)sizeof info;
        info_set_size(&einfo);
        if (nul == 2) einfo.struct_size = 16;
        s = lancbio_bilevel_info(b->h, nul == 1 ? NULL : &info);
        check_message_bil(b->h, s, "bilevel info");
        REQUIRE(nul == 1 ? s == LANCBIO_ERR_NULL_POINTER : nul == 2 ? s == LANCBIO_ERR_INVALID_ARGUMENT : s == LANCBIO_OK,
                "bilevel info returned %d", s);
        s = lancbio_bilevel_estimator_info(b->h, nul == 1 ? NULL : &einfo);
        check_message_bil(b->h, s, "bilevel estimator info");
        REQUIRE(nul == 1 ? s == LANCBIO_ERR_NULL_POINTER : nul == 2 ? s == LANCBIO_ERR_INVALID_ARGUMENT : s == LANCBIO_OK,
                "bilevel estimator info returned %d", s);
        break;
    }
    case 4:
        s = lancbio_bilevel_reset(b->h);
        trace("bil reset -> %d", s);
        REQUIRE(s == LANCBIO_OK, "bilevel reset returned %d", s);
        check_message_bil(b->h, s, "bilevel reset");
        memset(b->v, 0, sizeof b->v);
        memset(b->hg, 0, sizeof b->hg);
        memset(&b->info, 0, sizeof b->info);
        memset(&b->einfo, 0, sizeof b->einfo);
        break;
    case 5: { /* a bilevel handle given to the estimator functions */
        lancbio_estimator_t *h = (lancbio_estimator_t *)(void *)b->h;
        double v[MAXB];
        s = lancbio_estimator_get_v_f64(h, v, b->dy);
        REQUIRE(s == LANCBIO_ERR_INVALID_HANDLE, "estimator get_v on a bilevel handle returned %d", s);
        s = lancbio_estimator_reset(h);
        REQUIRE(s == LANCBIO_ERR_INVALID_HANDLE, "estimator reset on a bilevel handle returned %d", s);
        trace("bil handle to estimator functions ok");
        break;
    }
    default: /* destroy */
        trace("bil destroy");
        lancbio_bilevel_destroy(b->h);
        remember_stale(b->h);
        if (nul & 1) lancbio_bilevel_destroy(b->h);
        b->h = NULL;
        free(buf);
        return;
    }
    free(buf);
    verify_bilevel(b, "a bilevel getter or setter", 0);
}

/* ------------------------------------------------------------------------------------
 * Checkpoints
 * ----------------------------------------------------------------------------------*/
#define CKPT_HEADER 48 /* bytes before the configuration: magic, byte order, version, size, kind, scalar */
#define CKPT_MIN 56    /* the header and the checksum */
#define CKPT_RAW 300   /* longest run of arbitrary input bytes handed to restore or load */

/* The checkpoint checksum, written from its description (FNV-1a-64 in four byte lanes). */
static uint64_t ckpt_checksum(const unsigned char *p, size_t count)
{
    uint64_t lane[4], h = 0xCBF29CE484222325ULL;
    size_t i;
    int k, b;
    for (k = 0; k < 4; k++) lane[k] = 0xCBF29CE484222325ULL;
    for (i = 0; i < count; i++) lane[i % 4] = (lane[i % 4] ^ p[i]) * 0x100000001B3ULL;
    for (k = 0; k < 4; k++)
        for (b = 0; b < 8; b++) h = (h ^ (uint8_t)(lane[k] >> (8 * b))) * 0x100000001B3ULL;
    return h;
}

/* Rewrites the size field and the checksum of a checkpoint-shaped buffer. */
static void ckpt_reseal(unsigned char *p, size_t size)
{
    uint64_t word = size;
    if (size < CKPT_MIN) return;
    memcpy(p + 24, &word, 8);
    word = ckpt_checksum(p, size - 8);
    memcpy(p + size - 8, &word, 8);
}

/* How a saved checkpoint is changed before it is handed back. */
enum { DMG_NONE, DMG_FLIP, DMG_TRUNCATE, DMG_VERSION, DMG_TRAILING, DMG_RESEALED_FLIP, DMG_RESEALED_RUN, DMG_RAW,
       DMG_COUNT };
/* What the library must answer: reject it as invalid, accept it (if it fits the handle), or either. */
enum { MUST_REJECT, MUST_ACCEPT, EITHER };

/* The bytes to hand back (a heap block of exactly *len bytes), made from `saved` by `kind`. */
static unsigned char *ckpt_damage(reader_t *r, const unsigned char *saved, int64_t size, int kind, int64_t *len, int *verdict)
{
    uint16_t where = u16(r);
    uint8_t with = u8(r);
    unsigned char *p;
    int64_t i;
    *len = size;
    *verdict = MUST_REJECT;
    switch (kind) {
    case DMG_TRUNCATE: *len = where % size; break;
    case DMG_TRAILING: *len = size + 1 + with % 16; break;
    case DMG_RAW: *len = (where & 1 ? CKPT_MIN : 0) + with % (CKPT_RAW - CKPT_MIN); *verdict = EITHER; break;
    default: break;
    }
    p = (unsigned char *)xmalloc((size_t)*len);
    memset(p, 0, (size_t)*len);
    memcpy(p, saved, (size_t)(*len < size ? *len : size));
    switch (kind) {
    case DMG_NONE: *verdict = MUST_ACCEPT; break;
    case DMG_FLIP: p[where % size] ^= (uint8_t)(with | 1); break; /* any single byte: the checksum sees it */
    case DMG_VERSION: { /* checked before the checksum, resealed or not: any version but the library's */
        uint64_t version;
        memcpy(&version, p + 16, 8);
        version += 1 + (uint64_t)with;
        memcpy(p + 16, &version, 8);
        if (with & 1) ckpt_reseal(p, (size_t)size);
        break;
    }
    case DMG_RESEALED_FLIP: /* content the checksum vouches for: any value of any field */
        p[CKPT_HEADER + where % (size - CKPT_MIN)] ^= (uint8_t)(with | 1);
        ckpt_reseal(p, (size_t)size);
        *verdict = EITHER;
        break;
    case DMG_RESEALED_RUN:
        for (i = 0; i < 1 + with % 24; i++) p[CKPT_HEADER + (where + i) % (size - CKPT_MIN)] = u8(r);
        ckpt_reseal(p, (size_t)size);
        *verdict = EITHER;
        break;
    case DMG_RAW: /* arbitrary input bytes; with a valid header and checksum when asked */
        for (i = 0; i < *len; i++) p[i] = u8(r);
        if (where & 2) memcpy(p, saved, (size_t)(*len < CKPT_HEADER ? *len : CKPT_HEADER));
        if (where & 4) ckpt_reseal(p, (size_t)*len);
        break;
    default: break;
    }
    trace("  checkpoint of %lld bytes, damage %d at %u with %u: %lld bytes, verdict %d", (long long)size, kind, where, with,
          (long long)*len, *verdict);
    return p;
}

/* The status of a restore or load of bytes with this verdict, into a compatible handle. */
static sset_t ckpt_allowed(int verdict, sset_t incompatible)
{
    if (verdict == MUST_REJECT) return S(LANCBIO_ERR_INVALID_CHECKPOINT);
    if (verdict == MUST_ACCEPT) return incompatible ? incompatible : S(LANCBIO_OK);
    return S(LANCBIO_OK) | S(LANCBIO_ERR_INVALID_CHECKPOINT) | S(LANCBIO_ERR_INVALID_ARGUMENT) |
           S(LANCBIO_ERR_WRONG_PRECISION);
}

/* lancbio_*_save's size protocol on a handle between steps: the query, a buffer too small,
 * then the checkpoint itself (a heap block of exactly its size). */
static unsigned char *ckpt_save(int bilevel, void *h, uint8_t mode, int64_t *size)
{
    int64_t got = -1, query = -1, cap;
    unsigned char *p;
    int32_t s;
    int64_t i;
    s = bilevel ? lancbio_bilevel_save((lancbio_bilevel_t *)h, NULL, 0, &query)
                : lancbio_estimator_save((lancbio_estimator_t *)h, NULL, 0, &query);
    REQUIRE(s == LANCBIO_OK && query >= CKPT_MIN && query < (1 << 24), "the size query returned %d, size %lld", s,
            (long long)query);
    p = (unsigned char *)xmalloc((size_t)query);
    if (mode & 0x80) {
        cap = (mode & 0x7F) % query;
        memset(p, 0x33, (size_t)query);
        s = bilevel ? lancbio_bilevel_save((lancbio_bilevel_t *)h, p, cap, &got)
                    : lancbio_estimator_save((lancbio_estimator_t *)h, p, cap, &got);
        REQUIRE(s == LANCBIO_ERR_BUFFER_TOO_SMALL && got == query, "save into %lld of %lld bytes returned %d, size %lld",
                (long long)cap, (long long)query, s, (long long)got);
        for (i = 0; i < query; i++) REQUIRE(p[i] == 0x33, "a save refused for a small buffer wrote byte %lld", (long long)i);
    }
    s = bilevel ? lancbio_bilevel_save((lancbio_bilevel_t *)h, p, query, &got)
                : lancbio_estimator_save((lancbio_estimator_t *)h, p, query, &got);
    REQUIRE(s == LANCBIO_OK && got == query, "save returned %d, %lld bytes of %lld", s, (long long)got, (long long)query);
    REQUIRE(memcmp(p, "LBIOCKPT", 8) == 0, "a checkpoint does not start with the magic");
    REQUIRE(ckpt_checksum(p, (size_t)query - 8) == *(const uint64_t *)(const void *)(p + query - 8),
            "a checkpoint's checksum is not FNV-1a-64 in four lanes");
    *size = query;
    return p;
}

/* The model of slot `to` becomes that of a handle restored from (or loaded with) an intact
 * checkpoint of `from`. */
static void copy_model(est_t *to, const est_t *from, lancbio_estimator_t *h)
{
    if (to != from) {
        memcpy(to->v, from->v, sizeof to->v);
        to->info = from->info;
        to->op = from->op;
        to->n = from->n;
        to->method = from->method;
        to->precision = from->precision;
    }
    to->h = h;
    to->in_step = 0;
}

static void op_checkpoint(reader_t *r)
{
    est_t *e = pick_est(r), *t;
    uint8_t mode, target;
    unsigned char *saved, *bytes;
    int64_t size, len;
    int verdict;
    int32_t s;
    if (!e) return;
    mode = u8(r);
    target = u8(r);
    if (e->in_step) { /* only committed state: both refused, the step goes on */
        unsigned char junk[CKPT_MIN];
        int64_t query = -5;
        memset(junk, 0, sizeof junk);
        s = lancbio_estimator_save(e->h, NULL, 0, &query);
        check_message_est(e->h, s, "save during a step");
        REQUIRE(s == LANCBIO_ERR_INVALID_STATE && query == -5, "save during a step returned %d", s);
        s = lancbio_estimator_load(e->h, junk, sizeof junk);
        REQUIRE(s == LANCBIO_ERR_INVALID_STATE, "load during a step returned %d", s);
        verify_estimator(e, "a checkpoint call during a step", 0);
        return;
    }
    saved = ckpt_save(0, e->h, mode, &size);
    check_message_est(e->h, LANCBIO_OK, "save");
    verify_estimator(e, "save", 0);
    bytes = ckpt_damage(r, saved, size, (mode & 0x7F) % DMG_COUNT, &len, &verdict);
    switch (target % 4) {
    case 0: /* into the saved handle itself */
        s = lancbio_estimator_load(e->h, bytes, len);
        trace("checkpoint slot=%d load into itself -> %d", (int)(e - EST), s);
        check_message_est(e->h, s, "load");
        REQUIRE(in_set(s, ckpt_allowed(verdict, 0)), "load of a checkpoint (verdict %d) into its own handle returned %d (%s)",
                verdict, s, lancbio_estimator_last_error(e->h));
        verify_estimator(e, "load", s == LANCBIO_OK && verdict != MUST_ACCEPT);
        break;
    case 1: { /* a new handle in slot t */
        lancbio_estimator_t *h = (lancbio_estimator_t *)(void *)garbage_object;
        t = &EST[(target / 4) % NEST];
        s = lancbio_estimator_restore(bytes, len, &h);
        trace("checkpoint slot=%d restore into slot %d -> %d", (int)(e - EST), (int)(t - EST), s);
        REQUIRE((s == LANCBIO_OK) == (h != NULL), "restore returned %d with *out %s", s, h ? "set" : "NULL");
        REQUIRE((s == LANCBIO_OK) == (lancbio_last_error()[0] == '\0'), "restore returned %d with last_error \"%s\"", s,
                lancbio_last_error());
        REQUIRE(in_set(s, ckpt_allowed(verdict, 0)), "restore of a checkpoint (verdict %d) returned %d (%s)", verdict, s,
                lancbio_last_error());
        if (s != LANCBIO_OK) break;
        {
            int64_t n = 0;
            int32_t method = 0, precision = 0;
            REQUIRE(lancbio_estimator_properties(h, &n, &method, &precision) == LANCBIO_OK, "properties of a restored handle");
            REQUIRE(verdict != MUST_ACCEPT || (n == e->n && method == e->method && precision == e->precision),
                    "a restored handle has n %lld method %d precision %d, the saved one %lld %d %d", (long long)n, method,
                    precision, (long long)e->n, e->method, e->precision);
            if (n > MAXN) { /* accepted content beyond the harness's model */
                lancbio_estimator_destroy(h);
                break;
            }
            if (t != e && t->h) {
                lancbio_estimator_destroy(t->h);
                remember_stale(t->h);
            }
            if (t == e) {
                lancbio_estimator_destroy(e->h);
                remember_stale(e->h);
            }
            copy_model(t, e, h);
            t->n = n, t->method = method, t->precision = precision;
            verify_estimator(t, "restore", verdict != MUST_ACCEPT);
        }
        break;
    }
    case 2: { /* another live handle: compatible or not */
        sset_t incompatible = 0;
        int k;
        t = NULL;
        for (k = 1; k < NEST && !t; k++)
            if (EST[(e - EST + k) % NEST].h) t = &EST[(e - EST + k) % NEST];
        if (!t) t = e;
        if (t->precision != e->precision) incompatible = S(LANCBIO_ERR_WRONG_PRECISION);
        else if (t->n != e->n || t->method != e->method) incompatible = S(LANCBIO_ERR_INVALID_ARGUMENT);
        else incompatible = S(LANCBIO_OK) | S(LANCBIO_ERR_INVALID_ARGUMENT); /* the options may differ */
        if (t == e) incompatible = 0;
        s = lancbio_estimator_load(t->h, bytes, len);
        trace("checkpoint slot=%d load into slot %d (in step %d) -> %d", (int)(e - EST), (int)(t - EST), t->in_step, s);
        check_message_est(t->h, s, "load into another handle");
        if (t->in_step) REQUIRE(s == LANCBIO_ERR_INVALID_STATE, "load into a handle with a step in progress returned %d", s);
        else REQUIRE(in_set(s, ckpt_allowed(verdict, incompatible)), "load of a checkpoint (verdict %d) into another handle "
                     "returned %d (%s)", verdict, s, lancbio_estimator_last_error(t->h));
        if (s == LANCBIO_OK && verdict == MUST_ACCEPT) copy_model(t, e, t->h);
        verify_estimator(t, "load into another handle", s == LANCBIO_OK && verdict != MUST_ACCEPT);
        break;
    }
    default: { /* an estimator's checkpoint given to the bilevel functions */
        bil_t *b = pick_bil(r);
        lancbio_bilevel_t *hb = (lancbio_bilevel_t *)(void *)garbage_object;
        s = lancbio_bilevel_restore(bytes, len, &hb);
        trace("checkpoint slot=%d to bilevel restore -> %d", (int)(e - EST), s);
        REQUIRE(documented(s) && (s == LANCBIO_OK) == (hb != NULL), "bilevel restore returned %d with *out %s", s,
                hb ? "set" : "NULL");
        if (verdict != EITHER)
            REQUIRE(s == (verdict == MUST_REJECT ? LANCBIO_ERR_INVALID_CHECKPOINT : LANCBIO_ERR_INVALID_ARGUMENT),
                    "bilevel restore of an estimator checkpoint (verdict %d) returned %d", verdict, s);
        if (s == LANCBIO_OK) lancbio_bilevel_destroy(hb); /* forged content that decodes as a bilevel checkpoint */
        if (b) {
            s = lancbio_bilevel_load(b->h, bytes, len);
            check_message_bil(b->h, s, "bilevel load of an estimator checkpoint");
            if (verdict != EITHER)
                REQUIRE(s == (verdict == MUST_REJECT ? LANCBIO_ERR_INVALID_CHECKPOINT : LANCBIO_ERR_INVALID_ARGUMENT),
                        "bilevel load of an estimator checkpoint (verdict %d) returned %d", verdict, s);
            verify_bilevel(b, "a bilevel load of an estimator checkpoint", s == LANCBIO_OK);
        }
        break;
    }
    }
    free(bytes);
    free(saved);
}

static void op_bil_checkpoint(reader_t *r)
{
    bil_t *b = pick_bil(r), *t;
    uint8_t mode, target;
    unsigned char *saved, *bytes;
    int64_t size, len;
    int verdict;
    int32_t s;
    if (!b) return;
    mode = u8(r);
    target = u8(r);
    saved = ckpt_save(1, b->h, mode, &size);
    check_message_bil(b->h, LANCBIO_OK, "bilevel save");
    verify_bilevel(b, "bilevel save", 0);
    bytes = ckpt_damage(r, saved, size, (mode & 0x7F) % DMG_COUNT, &len, &verdict);
    switch (target % 3) {
    case 0:
        s = lancbio_bilevel_load(b->h, bytes, len);
        trace("bil checkpoint slot=%d load into itself -> %d", (int)(b - BIL), s);
        check_message_bil(b->h, s, "bilevel load");
        REQUIRE(in_set(s, ckpt_allowed(verdict, 0)), "bilevel load (verdict %d) into its own handle returned %d (%s)", verdict,
                s, lancbio_bilevel_last_error(b->h));
        verify_bilevel(b, "bilevel load", s == LANCBIO_OK && verdict != MUST_ACCEPT);
        break;
    case 1: {
        lancbio_bilevel_t *h = (lancbio_bilevel_t *)(void *)garbage_object;
        double probe[MAXB];
        t = &BIL[(target / 3) % NBIL];
        s = lancbio_bilevel_restore(bytes, len, &h);
        trace("bil checkpoint slot=%d restore into slot %d -> %d", (int)(b - BIL), (int)(t - BIL), s);
        REQUIRE((s == LANCBIO_OK) == (h != NULL), "bilevel restore returned %d with *out %s", s, h ? "set" : "NULL");
        REQUIRE(in_set(s, ckpt_allowed(verdict, 0)), "bilevel restore (verdict %d) returned %d (%s)", verdict, s,
                lancbio_last_error());
        if (s != LANCBIO_OK) break;
        /* Forged content may hold other dimensions: kept only when they are the saved ones. */
        if (lancbio_bilevel_get_v_f64(h, probe, b->dy) != LANCBIO_OK ||
            lancbio_bilevel_get_hypergradient_f64(h, probe, b->dx) != LANCBIO_OK) {
            REQUIRE(verdict != MUST_ACCEPT, "a bilevel handle restored from an intact checkpoint has other dimensions");
            lancbio_bilevel_destroy(h);
            break;
        }
        if (t != b && t->h) {
            lancbio_bilevel_destroy(t->h);
            remember_stale(t->h);
        }
        if (t == b) {
            lancbio_bilevel_destroy(b->h);
            remember_stale(b->h);
        } else {
            *t = *b; /* dimensions, problem, x, y and the saved state */
        }
        t->h = h;
        verify_bilevel(t, "bilevel restore", verdict != MUST_ACCEPT);
        break;
    }
    default: {
        int k;
        sset_t incompatible;
        t = NULL;
        for (k = 1; k < NBIL && !t; k++)
            if (BIL[(b - BIL + k) % NBIL].h) t = &BIL[(b - BIL + k) % NBIL];
        if (!t) t = b;
        incompatible = t == b ? 0 : (t->dx != b->dx || t->dy != b->dy) ? S(LANCBIO_ERR_INVALID_ARGUMENT)
                                                                     : S(LANCBIO_OK) | S(LANCBIO_ERR_INVALID_ARGUMENT);
        s = lancbio_bilevel_load(t->h, bytes, len);
        trace("bil checkpoint slot=%d load into slot %d -> %d", (int)(b - BIL), (int)(t - BIL), s);
        check_message_bil(t->h, s, "bilevel load into another handle");
        REQUIRE(in_set(s, ckpt_allowed(verdict, incompatible)), "bilevel load (verdict %d) into another handle returned %d (%s)",
                verdict, s, lancbio_bilevel_last_error(t->h));
        if (s == LANCBIO_OK && verdict == MUST_ACCEPT && t != b) { /* the state is b's; x, y and the problem stay t's */
            memcpy(t->v, b->v, sizeof t->v);
            memcpy(t->hg, b->hg, sizeof t->hg);
            t->info = b->info;
            t->einfo = b->einfo;
        }
        verify_bilevel(t, "bilevel load into another handle", s == LANCBIO_OK && verdict != MUST_ACCEPT);
        break;
    }
    }
    free(bytes);
    free(saved);
}

/* Library-level functions. */
static void op_misc(reader_t *r)
{
    uint8_t k = u8(r);
    int32_t code = (int32_t)(int8_t)u8(r) * (k & 1 ? 1 : 1000003);
    const char *s = lancbio_status_string(code);
    lancbio_estimator_options_t o;
    REQUIRE(s && s[0], "status_string(%d) is NULL or empty", code);
    REQUIRE(documented(code) == (strcmp(s, "unknown status") != 0), "status_string(%d) = \"%s\"", code, s);
    REQUIRE(lancbio_abi_version() == LANCBIO_ABI_VERSION && lancbio_version() && lancbio_version()[0], "versions");
    {
        int32_t m = (int32_t)(int8_t)u8(r), st = lancbio_estimator_options_init(k & 2 ? NULL : &o, m);
        if (k & 2) REQUIRE(st == LANCBIO_ERR_NULL_POINTER, "options_init(NULL) returned %d", st);
        else REQUIRE(st == ((m >= 1 && m <= 7) ? LANCBIO_OK : LANCBIO_ERR_INVALID_ARGUMENT), "options_init(%d) returned %d", m, st);
    }
    REQUIRE(lancbio_bilevel_options_init(NULL) == LANCBIO_ERR_NULL_POINTER, "bilevel_options_init(NULL)");
}

/* ------------------------------------------------------------------------------------
 * Entry points
 * ----------------------------------------------------------------------------------*/
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *t = getenv("FUZZ_TRACE");
    (void)argc;
    (void)argv;
    trace_on = t && t[0] == '1';
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader_t r;
    int k, ops = 0;
    r.p = data;
    r.n = size;
    r.i = 0;
    memset(EST, 0, sizeof EST);
    memset(BIL, 0, sizeof BIL);
    memset(STALE, 0, sizeof STALE);
    stale_next = 0;
    in_callback = 0;
    while (r.i < r.n && ops++ < 400) {
        uint8_t op = u8(&r);
        msg_relaxed = 0;
        switch (op % 22) {
        case 0: op_create(&r); break;
        case 1: op_destroy(&r); break;
        case 2: op_step(&r, 0); break;
        case 3: op_begin(&r); break;
        case 4: op_resume(&r); break;
        case 5: op_finish(&r); break;
        case 6: op_cancel(&r); break;
        case 7: op_get_v(&r); break;
        case 8: op_set_v(&r); break;
        case 9: op_reset(&r); break;
        case 10: op_info(&r); break;
        case 11: op_step(&r, 1); break;
        case 12: op_invalid(&r); break;
        case 13: op_bil_create(&r); break;
        case 14: op_bil_step(&r); break;
        case 15: op_bil_misc(&r); break;
        case 16: op_misc(&r); break;
        case 17: op_create(&r); break;
        case 18: op_reduction(&r); break;
        case 19: op_checkpoint(&r); break;
        case 20: op_bil_checkpoint(&r); break;
        case 21: op_reverse_reduction(&r); break;
        default: op_step(&r, 0); break;
        }
    }
    for (k = 0; k < NEST; k++)
        if (EST[k].h) lancbio_estimator_destroy(EST[k].h);
    for (k = 0; k < NBIL; k++)
        if (BIL[k].h) lancbio_bilevel_destroy(BIL[k].h);
    return 0;
}
