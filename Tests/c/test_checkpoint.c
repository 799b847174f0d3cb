/*
 * test_checkpoint.c: checkpoints through the C ABI (`make test-c`): lancbio_*_save,
 * lancbio_*_restore and lancbio_*_load of include/lancbio.h.
 *
 * Groups (one output line each):
 *   - continue: for every method and both precisions, and a checkpoint taken after every
 *     number of steps of a drifting sequence, save, destroy, restore and continue: the
 *     estimates and diagnostics equal bitwise those of a handle that never stopped; the
 *     same after loading into another handle with the same options;
 *   - corruption: any byte changed, anywhere, and every truncation are rejected with
 *     LANCBIO_ERR_INVALID_CHECKPOINT and a message, by restore and by load, and the handle
 *     loaded into is unchanged (its own checkpoint is byte for byte the same afterwards);
 *   - format: another format version (with a valid checksum, and without), the other
 *     byte order, trailing bytes, a huge dimension or a NaN estimate behind a valid
 *     checksum: each rejected with a message naming it, nothing allocated for the huge one;
 *   - compatibility: a checkpoint of another precision, dimension, method, options or kind
 *     is refused by load with the documented status, the handle unchanged;
 *   - save protocol: the size query, a buffer too small (the size needed, nothing
 *     written), NULL and negative arguments, bytes past the checkpoint untouched;
 *   - steps in progress: save and load refuse a reverse-communication step in progress
 *     and calls from inside the handle's own callback, and the step goes on unharmed;
 *   - bilevel: the same continuation, corruption and compatibility properties for bilevel
 *     optimizers (x and y saved by the caller).
 * The checksum (FNV-1a-64 in four byte lanes, docs/algorithms.md section 12) is computed
 * here independently, to forge checkpoints whose only fault is the one under test.
 */
#include "lancbio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 10     /* estimator dimension */
#define STEPS 14 /* length of the reference sequences */
#define DX 5
#define DY 8

#define CHECK_GROUP_WIDTH 18
#define CHECK_PRINTED_FAILURES 20 /* enough to diagnose */
#include "check.h"

/* ------------------------------------------------------------------------------------
 * The checksum and the header fields, written independently of the library
 * ----------------------------------------------------------------------------------*/
#define OFFSET_VERSION 16
#define OFFSET_SIZE 24
#define OFFSET_N 48

static uint64_t fnv_byte(uint64_t h, uint8_t b) { return (h ^ b) * 0x100000001B3ULL; }

static uint64_t checksum(const unsigned char *p, size_t count)
{
    uint64_t lane[4] = {0xCBF29CE484222325ULL, 0xCBF29CE484222325ULL, 0xCBF29CE484222325ULL, 0xCBF29CE484222325ULL};
    uint64_t h = 0xCBF29CE484222325ULL;
    size_t i;
    int k, b;
    for (i = 0; i < count; i++) lane[i % 4] = fnv_byte(lane[i % 4], p[i]);
    for (k = 0; k < 4; k++)
        for (b = 0; b < 8; b++) h = fnv_byte(h, (uint8_t)(lane[k] >> (8 * b)));
    return h;
}

/* Rewrites the trailing checksum after a deliberate change. */
static void reseal(unsigned char *p, size_t size)
{
    uint64_t c = checksum(p, size - 8);
    memcpy(p + size - 8, &c, 8);
}

static void put_word(unsigned char *p, size_t offset, uint64_t value) { memcpy(p + offset, &value, 8); }

static int contains(const char *text, const char *word) { return text && strstr(text, word) != NULL; }

/* ------------------------------------------------------------------------------------
 * A drifting operator and right-hand side: A_k = diag(d) + k/20 I + 0.3 u u^T
 * ----------------------------------------------------------------------------------*/
typedef struct {
    int k;
    lancbio_estimator_t *self; /* for the callback that tries to save or load */
    int32_t nested_save, nested_load;
} op_t;

static void apply(int k, const double *x, double *y, int n)
{
    double c = 0;
    int i;
    for (i = 0; i < n; i++) c += (0.2 + 0.05 * i) * x[i];
    for (i = 0; i < n; i++) y[i] = (1.0 + 0.7 * i + k / 20.0) * x[i] + 0.3 * (0.2 + 0.05 * i) * c;
}

static int32_t hvp64(const double *in, double *out, int64_t n, void *ud)
{
    op_t *op = (op_t *)ud;
    apply(op->k, in, out, (int)n);
    if (op->self) {
        unsigned char buffer[16];
        int64_t size = 0;
        op->nested_save = lancbio_estimator_save(op->self, NULL, 0, &size);
        op->nested_load = lancbio_estimator_load(op->self, buffer, sizeof buffer);
    }
    return 0;
}

static int32_t hvp32(const float *in, float *out, int64_t n, void *ud)
{
    double x[N] = {0}, y[N];
    int i;
    for (i = 0; i < n && i < N; i++) x[i] = in[i];
    apply(((op_t *)ud)->k, x, y, (int)n);
    for (i = 0; i < n; i++) out[i] = (float)y[i];
    return 0;
}

static void rhs(int k, double *b)
{
    int i;
    for (i = 0; i < N; i++) b[i] = sin(0.7 * i + 0.3 * k) + (i == k % N ? 0.5 : 0.0);
}

/* ------------------------------------------------------------------------------------
 * Methods
 * ----------------------------------------------------------------------------------*/
typedef struct {
    const char *name;
    int32_t method;
    void (*tune)(lancbio_estimator_options_t *);
} method_t;

static void lanczos(lancbio_estimator_options_t *o) { o->m0 = 2; o->m_max = 5; o->growth = 1.5; o->grow_every = 3; }
static void lanczos_plain(lancbio_estimator_options_t *o) { lanczos(o); o->variant = LANCBIO_VARIANT_PLAIN; }
static void lanczos_reorth(lancbio_estimator_options_t *o) { lanczos(o); o->m_max = 12; o->reorthogonalize = 1; }
static void lanczos_tight(lancbio_estimator_options_t *o) { lanczos(o); o->orthogonality_tolerance = 1e-9; }
static void subbio(lancbio_estimator_options_t *o) { o->theta0 = 0.05; }
static void krylov(lancbio_estimator_options_t *o) { o->max_iterations = 3; }
static void gd(lancbio_estimator_options_t *o) { o->step_size = 0.1; o->steps = 3; }
static void neumann(lancbio_estimator_options_t *o) { o->step_size = 0.1; o->steps = 4; }
static void random_neumann(lancbio_estimator_options_t *o) { o->step_size = 0.1; o->steps = 4; o->seed = 99; }

static const method_t METHODS[] = {
    {"lanczos", LANCBIO_METHOD_LANCZOS, lanczos},
    {"lanczos plain", LANCBIO_METHOD_LANCZOS, lanczos_plain},
    {"lanczos reorth", LANCBIO_METHOD_LANCZOS, lanczos_reorth},
    {"lanczos tight", LANCBIO_METHOD_LANCZOS, lanczos_tight},
    {"subbio", LANCBIO_METHOD_SUBBIO, subbio},
    {"cg", LANCBIO_METHOD_CG, krylov},
    {"minres", LANCBIO_METHOD_MINRES, krylov},
    {"gd", LANCBIO_METHOD_GD, gd},
    {"neumann", LANCBIO_METHOD_NEUMANN, neumann},
    {"random-neumann", LANCBIO_METHOD_RANDOM_NEUMANN, random_neumann},
};
#define NMETHODS ((int)(sizeof METHODS / sizeof METHODS[0]))

static lancbio_estimator_t *create(const method_t *m, int32_t precision, int64_t n)
{
    lancbio_estimator_options_t o;
    lancbio_estimator_t *h = NULL;
    lancbio_estimator_options_init(&o, m->method);
    m->tune(&o);
    o.precision = precision;
    if (lancbio_estimator_create(n, &o, &h) != LANCBIO_OK) {
        printf("  cannot create %s: %s\n", m->name, lancbio_last_error());
        exit(2);
    }
    return h;
}

/* One step k: the estimate's bytes and the info. */
typedef struct {
    int32_t status;
    unsigned char v[N * 8];
    lancbio_step_info_t info;
} record_t;

static record_t step(lancbio_estimator_t *h, int32_t precision, int k)
{
    record_t r;
    double b[N];
    op_t op = {0, NULL, 0, 0};
    op.k = k;
    rhs(k, b);
    memset(&r, 0, sizeof r);
    r.info.struct_size = (int64_t)sizeof r.info;
    if (precision == LANCBIO_FLOAT64) {
        r.status = lancbio_estimator_step_f64(h, hvp64, &op, b, (double *)r.v, N, &r.info);
    } else {
        float bf[N];
        int i;
        for (i = 0; i < N; i++) bf[i] = (float)b[i];
        r.status = lancbio_estimator_step_f32(h, hvp32, &op, bf, (float *)r.v, N, &r.info);
    }
    return r;
}

static int same_record(const record_t *a, const record_t *b)
{
    return a->status == b->status && memcmp(a->v, b->v, sizeof a->v) == 0 &&
           memcmp((const char *)&a->info + 8, (const char *)&b->info + 8, sizeof a->info - 8) == 0;
}

/* The handle's checkpoint in a new malloc block; *size receives its size. */
static unsigned char *save(const lancbio_estimator_t *h, int64_t *size)
{
    unsigned char *p;
    int64_t written = -1;
    int32_t s = lancbio_estimator_save(h, NULL, 0, size);
    if (s != LANCBIO_OK || *size <= 0) {
        printf("  size query failed: %d %s\n", s, lancbio_estimator_last_error(h));
        exit(2);
    }
    p = (unsigned char *)malloc((size_t)*size);
    if (!p) exit(2);
    s = lancbio_estimator_save(h, p, *size, &written);
    if (s != LANCBIO_OK || written != *size) {
        printf("  save failed: %d %s\n", s, lancbio_estimator_last_error(h));
        exit(2);
    }
    return p;
}

/* The handle's checkpoint equals `expected` byte for byte. */
static int saves_as(const lancbio_estimator_t *h, const unsigned char *expected, int64_t size)
{
    int64_t now_size;
    unsigned char *now = save(h, &now_size);
    int same = now_size == size && memcmp(now, expected, (size_t)size) == 0;
    free(now);
    return same;
}

/* ------------------------------------------------------------------------------------
 * Groups
 * ----------------------------------------------------------------------------------*/
static void test_continue(void)
{
    static const int32_t precisions[2] = {LANCBIO_FLOAT64, LANCBIO_FLOAT32};
    int mi, pi, split, k;
    for (mi = 0; mi < NMETHODS; mi++) {
        for (pi = 0; pi < 2; pi++) {
            const method_t *m = &METHODS[mi];
            int32_t p = precisions[pi];
            record_t reference[STEPS];
            lancbio_estimator_t *h = create(m, p, N);
            for (k = 0; k < STEPS; k++) reference[k] = step(h, p, k);
            lancbio_estimator_destroy(h);
            for (split = 0; split < STEPS; split++) {
                lancbio_estimator_t *original = create(m, p, N), *restored = NULL, *other = create(m, p, N);
                int64_t size, n = 0;
                int32_t method = 0, precision = 0, s;
                unsigned char *checkpoint;
                int same = 1, loaded_same = 1;
                for (k = 0; k < split; k++) step(original, p, k);
                checkpoint = save(original, &size);
                lancbio_estimator_destroy(original);
                s = lancbio_estimator_restore(checkpoint, size, &restored);
                CHECK(s == LANCBIO_OK && restored, "%s p%d split %d: restore returned %d (%s)", m->name, p, split, s,
                      lancbio_last_error());
                if (!restored) { free(checkpoint); lancbio_estimator_destroy(other); continue; }
                CHECK(lancbio_estimator_properties(restored, &n, &method, &precision) == LANCBIO_OK && n == N &&
                          method == m->method && precision == p,
                      "%s: restored properties n %lld method %d precision %d", m->name, (long long)n, method, precision);
                if (split > 0) {
                    lancbio_step_info_t info;
                    info.struct_size = (int64_t)sizeof info;
                    lancbio_estimator_info(restored, &info);
                    CHECK(memcmp((char *)&info + 8, (char *)&reference[split - 1].info + 8, sizeof info - 8) == 0,
                          "%s p%d split %d: the restored last info differs", m->name, p, split);
                }
                /* Another handle with the same options, stepped elsewhere, then loaded. */
                for (k = 0; k < 3; k++) step(other, p, 50 + k);
                s = lancbio_estimator_load(other, checkpoint, size);
                CHECK(s == LANCBIO_OK, "%s p%d split %d: load returned %d (%s)", m->name, p, split, s,
                      lancbio_estimator_last_error(other));
                CHECK(saves_as(other, checkpoint, size), "%s p%d split %d: a loaded handle saves other bytes", m->name, p,
                      split);
                for (k = split; k < STEPS; k++) {
                    record_t a = step(restored, p, k), b = step(other, p, k);
                    same = same && same_record(&a, &reference[k]);
                    loaded_same = loaded_same && same_record(&b, &reference[k]);
                }
                CHECK(same, "%s p%d: restored after %d steps, the next steps differ from the uninterrupted run", m->name,
                      p, split);
                CHECK(loaded_same, "%s p%d: loaded after %d steps, the next steps differ from the uninterrupted run",
                      m->name, p, split);
                free(checkpoint);
                lancbio_estimator_destroy(restored);
                lancbio_estimator_destroy(other);
            }
        }
    }
}

/* Every single-byte change and every truncation of the checkpoint of `h` are rejected. */
static void reject_all_damage(lancbio_estimator_t *h, const char *what)
{
    int64_t size, i, len;
    unsigned char *checkpoint = save(h, &size), *damaged = (unsigned char *)malloc((size_t)size);
    int rejected = 1, unchanged = 1, messages = 1, restores = 1;
    static const unsigned char flips[3] = {0x01, 0x80, 0xFF};
    int f;
    for (i = 0; i < size; i++) {
        for (f = 0; f < 3; f++) {
            lancbio_estimator_t *r = (lancbio_estimator_t *)damaged; /* must be overwritten with NULL */
            int32_t s;
            memcpy(damaged, checkpoint, (size_t)size);
            damaged[i] ^= flips[f];
            s = lancbio_estimator_load(h, damaged, size);
            rejected = rejected && s == LANCBIO_ERR_INVALID_CHECKPOINT;
            messages = messages && lancbio_estimator_last_error(h)[0] != '\0';
            s = lancbio_estimator_restore(damaged, size, &r);
            restores = restores && s == LANCBIO_ERR_INVALID_CHECKPOINT && r == NULL && lancbio_last_error()[0] != '\0';
            if (s == LANCBIO_OK) lancbio_estimator_destroy(r);
        }
    }
    unchanged = saves_as(h, checkpoint, size);
    CHECK(rejected, "%s: a load of a checkpoint with one changed byte was not rejected as invalid", what);
    CHECK(restores, "%s: a restore of a checkpoint with one changed byte was not rejected as invalid", what);
    CHECK(messages, "%s: a rejected load left no message", what);
    CHECK(unchanged, "%s: rejected loads changed the handle", what);
    rejected = restores = 1;
    for (len = 0; len < size; len++) {
        lancbio_estimator_t *r = NULL;
        unsigned char *cut = (unsigned char *)malloc((size_t)(len ? len : 1)); /* exactly len bytes for ASan */
        memcpy(cut, checkpoint, (size_t)len);
        rejected = rejected && lancbio_estimator_load(h, cut, len) == LANCBIO_ERR_INVALID_CHECKPOINT;
        restores = restores && lancbio_estimator_restore(cut, len, &r) == LANCBIO_ERR_INVALID_CHECKPOINT && r == NULL;
        free(cut);
    }
    CHECK(rejected, "%s: a truncated checkpoint was loaded", what);
    CHECK(restores, "%s: a truncated checkpoint was restored", what);
    CHECK(saves_as(h, checkpoint, size), "%s: rejected truncated loads changed the handle", what);
    free(checkpoint);
    free(damaged);
}

static void test_corruption(void)
{
    int mi, k;
    for (mi = 0; mi < NMETHODS; mi++) {
        /* Mid-cycle for Lanczos (4 steps: j = 2 of a period-3 cycle), and after 3 steps else. */
        lancbio_estimator_t *h = create(&METHODS[mi], LANCBIO_FLOAT64, N);
        for (k = 0; k < 4; k++) step(h, LANCBIO_FLOAT64, k);
        reject_all_damage(h, METHODS[mi].name);
        lancbio_estimator_destroy(h);
    }
    {
        lancbio_estimator_t *h = create(&METHODS[0], LANCBIO_FLOAT32, N);
        for (k = 0; k < 4; k++) step(h, LANCBIO_FLOAT32, k);
        reject_all_damage(h, "lanczos float32");
        lancbio_estimator_destroy(h);
    }
}

static void test_format(void)
{
    lancbio_estimator_t *h = create(&METHODS[0], LANCBIO_FLOAT64, N), *r = NULL;
    int64_t size;
    unsigned char *checkpoint, *forged, *longer;
    uint64_t word;
    int32_t s;
    int k;
    for (k = 0; k < 4; k++) step(h, LANCBIO_FLOAT64, k);
    checkpoint = save(h, &size);
    forged = (unsigned char *)malloc((size_t)size);
    CHECK(memcmp(checkpoint, "LBIOCKPT", 8) == 0, "the checkpoint starts with the magic");
    memcpy(&word, checkpoint + size - 8, 8);
    CHECK(word == checksum(checkpoint, (size_t)size - 8), "the trailing checksum is FNV-1a-64 in four lanes");
    memcpy(&word, checkpoint + OFFSET_SIZE, 8);
    CHECK(word == (uint64_t)size, "the size field holds the checkpoint's size");

    /* Another format version: the version is checked before the checksum, so the message
     * names it whether or not the checksum was recomputed. */
    memcpy(forged, checkpoint, (size_t)size);
    put_word(forged, OFFSET_VERSION, 4);
    s = lancbio_estimator_load(h, forged, size);
    CHECK(s == LANCBIO_ERR_INVALID_CHECKPOINT && contains(lancbio_estimator_last_error(h), "version"),
          "version 4 without a new checksum: %d \"%s\"", s, lancbio_estimator_last_error(h));
    reseal(forged, (size_t)size);
    s = lancbio_estimator_load(h, forged, size);
    CHECK(s == LANCBIO_ERR_INVALID_CHECKPOINT && contains(lancbio_estimator_last_error(h), "version 4"),
          "version 4 with a valid checksum: %d \"%s\"", s, lancbio_estimator_last_error(h));
    s = lancbio_estimator_restore(forged, size, &r);
    CHECK(s == LANCBIO_ERR_INVALID_CHECKPOINT && r == NULL && contains(lancbio_last_error(), "version"),
          "restore of version 4: %d \"%s\"", s, lancbio_last_error());

    /* The other byte order. */
    memcpy(forged, checkpoint, (size_t)size);
    memcpy(&word, forged + 8, 8);
    word = ((word & 0xFFULL) << 56) | ((word & 0xFF00ULL) << 40) | ((word & 0xFF0000ULL) << 24) |
           ((word & 0xFF000000ULL) << 8) | ((word >> 8) & 0xFF000000ULL) | ((word >> 24) & 0xFF0000ULL) |
           ((word >> 40) & 0xFF00ULL) | (word >> 56);
    put_word(forged, 8, word);
    reseal(forged, (size_t)size);
    s = lancbio_estimator_load(h, forged, size);
    CHECK(s == LANCBIO_ERR_INVALID_CHECKPOINT && contains(lancbio_estimator_last_error(h), "byte order"),
          "the other byte order: %d \"%s\"", s, lancbio_estimator_last_error(h));

    /* Not a checkpoint at all. */
    memset(forged, 'x', (size_t)size);
    s = lancbio_estimator_load(h, forged, size);
    CHECK(s == LANCBIO_ERR_INVALID_CHECKPOINT && contains(lancbio_estimator_last_error(h), "not a lancbio checkpoint"),
          "garbage: %d \"%s\"", s, lancbio_estimator_last_error(h));

    /* Trailing bytes: the exact size is required. */
    longer = (unsigned char *)calloc(1, (size_t)size + 8);
    memcpy(longer, checkpoint, (size_t)size);
    s = lancbio_estimator_load(h, longer, size + 8);
    CHECK(s == LANCBIO_ERR_INVALID_CHECKPOINT, "a checkpoint followed by 8 more bytes: %d", s);
    free(longer);

    /* A huge n behind a valid checksum: rejected against the bytes present, before any
     * allocation (2^40 values would be 8 TB). */
    memcpy(forged, checkpoint, (size_t)size);
    put_word(forged, OFFSET_N, (uint64_t)1 << 40);
    reseal(forged, (size_t)size);
    s = lancbio_estimator_restore(forged, size, &r);
    CHECK(s == LANCBIO_ERR_INVALID_CHECKPOINT && r == NULL && contains(lancbio_last_error(), "too short"),
          "n = 2^40 with a valid checksum: %d \"%s\"", s, lancbio_last_error());
    put_word(forged, OFFSET_N, (uint64_t)-1);
    reseal(forged, (size_t)size);
    s = lancbio_estimator_restore(forged, size, &r);
    CHECK(s == LANCBIO_ERR_INVALID_CHECKPOINT && r == NULL, "n = -1 with a valid checksum: %d", s);

    /* A NaN in the estimate behind a valid checksum (the estimate found by its values). */
    {
        double v[N], nan = NAN;
        int64_t at;
        int found = 0;
        lancbio_estimator_get_v_f64(h, v, N);
        for (at = 56; at + 16 <= size - 8; at += 8)
            if (memcmp(checkpoint + at, &v[0], 8) == 0 && memcmp(checkpoint + at + 8, &v[1], 8) == 0) {
                found = 1;
                break;
            }
        CHECK(found, "the estimate is stored as its values");
        if (found) {
            memcpy(forged, checkpoint, (size_t)size);
            memcpy(forged + at, &nan, 8);
            reseal(forged, (size_t)size);
            s = lancbio_estimator_load(h, forged, size);
            CHECK(s == LANCBIO_ERR_INVALID_CHECKPOINT && contains(lancbio_estimator_last_error(h), "NaN"),
                  "a NaN estimate: %d \"%s\"", s, lancbio_estimator_last_error(h));
        }
    }
    CHECK(saves_as(h, checkpoint, size), "forged checkpoints changed the handle");

    /* Counters that no run reaches: the total products apart from the last info's. */
    {
        lancbio_estimator_t *cg = create(&METHODS[5], LANCBIO_FLOAT64, N), *rc = NULL;
        int64_t cg_size;
        unsigned char *cg_checkpoint;
        uint64_t products;
        for (k = 0; k < 2; k++) step(cg, LANCBIO_FLOAT64, k);
        cg_checkpoint = save(cg, &cg_size);
        /* CG's configuration: n, the method code and two options; then the steps, the products. */
        memcpy(&products, cg_checkpoint + OFFSET_N + 40, 8);
        CHECK(products == 8, "the total products of 2 CG steps of 3 iterations are at their offset (%llu)",
              (unsigned long long)products);
        put_word(cg_checkpoint, OFFSET_N + 40, products + 1);
        reseal(cg_checkpoint, (size_t)cg_size);
        s = lancbio_estimator_restore(cg_checkpoint, cg_size, &rc);
        CHECK(s == LANCBIO_ERR_INVALID_CHECKPOINT && rc == NULL && contains(lancbio_last_error(), "disagree"),
              "total products apart from the last info: %d \"%s\"", s, lancbio_last_error());
        free(cg_checkpoint);
        lancbio_estimator_destroy(cg);
    }

    s = lancbio_estimator_load(h, NULL, size);
    CHECK(s == LANCBIO_ERR_NULL_POINTER, "load(NULL): %d", s);
    s = lancbio_estimator_load(h, checkpoint, -1);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT, "load(size -1): %d", s);
    s = lancbio_estimator_restore(checkpoint, size, NULL);
    CHECK(s == LANCBIO_ERR_NULL_POINTER, "restore(out NULL): %d", s);
    s = lancbio_estimator_load(NULL, checkpoint, size);
    CHECK(s == LANCBIO_ERR_INVALID_HANDLE, "load on a NULL handle: %d", s);
    free(forged);
    free(checkpoint);
    lancbio_estimator_destroy(h);
}

static void test_compatibility(void)
{
    lancbio_estimator_t *h = create(&METHODS[0], LANCBIO_FLOAT64, N);
    lancbio_estimator_t *f32 = create(&METHODS[0], LANCBIO_FLOAT32, N);
    lancbio_estimator_t *smaller = create(&METHODS[0], LANCBIO_FLOAT64, N - 1);
    lancbio_estimator_t *cg = create(&METHODS[5], LANCBIO_FLOAT64, N);
    lancbio_estimator_t *plain = create(&METHODS[1], LANCBIO_FLOAT64, N);
    lancbio_estimator_t *targets[4];
    static const int32_t expected[4] = {LANCBIO_ERR_WRONG_PRECISION, LANCBIO_ERR_INVALID_ARGUMENT,
                                        LANCBIO_ERR_INVALID_ARGUMENT, LANCBIO_ERR_INVALID_ARGUMENT};
    static const char *names[4] = {"float32", "n - 1", "cg", "other options"};
    int64_t size, sizes[4];
    unsigned char *checkpoint, *before[4];
    int k, t;
    targets[0] = f32, targets[1] = smaller, targets[2] = cg, targets[3] = plain;
    for (k = 0; k < 3; k++) step(h, LANCBIO_FLOAT64, k);
    for (t = 0; t < 4; t++) {
        if (t != 1) step(targets[t], t == 0 ? LANCBIO_FLOAT32 : LANCBIO_FLOAT64, 7);
        before[t] = save(targets[t], &sizes[t]);
    }
    checkpoint = save(h, &size);
    for (t = 0; t < 4; t++) {
        int32_t s = lancbio_estimator_load(targets[t], checkpoint, size);
        CHECK(s == expected[t] && lancbio_estimator_last_error(targets[t])[0] != '\0',
              "loading a float64 lanczos checkpoint into the %s handle: %d (expected %d) \"%s\"", names[t], s, expected[t],
              lancbio_estimator_last_error(targets[t]));
        if (targets[t] == plain)
            CHECK(contains(lancbio_estimator_last_error(plain), "options"), "the options mismatch says so: \"%s\"",
                  lancbio_estimator_last_error(plain));
        CHECK(saves_as(targets[t], before[t], sizes[t]), "the %s handle changed after a refused load", names[t]);
        free(before[t]);
    }
    {
        /* A bilevel handle's checkpoint is not an estimator's, and the reverse. */
        lancbio_bilevel_options_t bo;
        lancbio_estimator_options_t eo;
        lancbio_bilevel_t *b = NULL;
        int64_t bsize;
        unsigned char *bcheckpoint;
        lancbio_estimator_t *r = NULL;
        lancbio_bilevel_t *rb = NULL;
        lancbio_bilevel_options_init(&bo);
        bo.lr_x = bo.lr_y = 0.1;
        lancbio_estimator_options_init(&eo, LANCBIO_METHOD_LANCZOS);
        lancbio_bilevel_create(DX, N, &bo, &eo, &b);
        lancbio_bilevel_save(b, NULL, 0, &bsize);
        bcheckpoint = (unsigned char *)malloc((size_t)bsize);
        lancbio_bilevel_save(b, bcheckpoint, bsize, &bsize);
        CHECK(lancbio_estimator_load(h, bcheckpoint, bsize) == LANCBIO_ERR_INVALID_ARGUMENT,
              "a bilevel checkpoint loaded into an estimator");
        CHECK(lancbio_estimator_restore(bcheckpoint, bsize, &r) == LANCBIO_ERR_INVALID_ARGUMENT && r == NULL &&
                  contains(lancbio_last_error(), "lancbio_bilevel_restore"),
              "an estimator restored from a bilevel checkpoint: \"%s\"", lancbio_last_error());
        CHECK(lancbio_bilevel_load(b, checkpoint, size) == LANCBIO_ERR_INVALID_ARGUMENT,
              "an estimator checkpoint loaded into a bilevel optimizer");
        CHECK(lancbio_bilevel_restore(checkpoint, size, &rb) == LANCBIO_ERR_INVALID_ARGUMENT && rb == NULL,
              "a bilevel optimizer restored from an estimator checkpoint");
        free(bcheckpoint);
        lancbio_bilevel_destroy(b);
    }
    CHECK(saves_as(h, checkpoint, size), "the saved handle changed");
    free(checkpoint);
    lancbio_estimator_destroy(h);
    lancbio_estimator_destroy(f32);
    lancbio_estimator_destroy(smaller);
    lancbio_estimator_destroy(cg);
    lancbio_estimator_destroy(plain);
}

static void test_save_protocol(void)
{
    lancbio_estimator_t *h = create(&METHODS[0], LANCBIO_FLOAT64, N);
    int64_t size = -7, needed, written;
    unsigned char *buffer;
    int32_t s;
    int k, untouched = 1;
    for (k = 0; k < 4; k++) step(h, LANCBIO_FLOAT64, k);
    s = lancbio_estimator_save(h, NULL, 0, &size);
    CHECK(s == LANCBIO_OK && size > 56, "the size query returned %d, size %lld", s, (long long)size);
    CHECK(lancbio_estimator_last_error(h)[0] == '\0', "a size query leaves no error message");
    needed = size;
    buffer = (unsigned char *)malloc((size_t)needed + 64);
    memset(buffer, 0xA5, (size_t)needed + 64);
    size = -7;
    s = lancbio_estimator_save(h, buffer, needed - 1, &size);
    for (k = 0; k < needed + 64; k++) untouched = untouched && buffer[k] == 0xA5;
    CHECK(s == LANCBIO_ERR_BUFFER_TOO_SMALL && size == needed && untouched,
          "one byte short: status %d, size %lld (needed %lld), buffer untouched %d", s, (long long)size,
          (long long)needed, untouched);
    CHECK(contains(lancbio_estimator_last_error(h), "needs"), "the message says what is needed: \"%s\"",
          lancbio_estimator_last_error(h));
    s = lancbio_estimator_save(h, buffer, 0, &size);
    CHECK(s == LANCBIO_ERR_BUFFER_TOO_SMALL && size == needed, "capacity 0 with a buffer: %d", s);
    s = lancbio_estimator_save(h, NULL, 5, &size);
    CHECK(s == LANCBIO_ERR_NULL_POINTER, "NULL buffer with capacity 5: %d", s);
    s = lancbio_estimator_save(h, buffer, -1, &size);
    CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT, "capacity -1: %d", s);
    s = lancbio_estimator_save(h, buffer, needed, NULL);
    CHECK(s == LANCBIO_ERR_NULL_POINTER, "size NULL: %d", s);
    s = lancbio_estimator_save(NULL, buffer, needed, &size);
    CHECK(s == LANCBIO_ERR_INVALID_HANDLE, "NULL handle: %d", s);
    untouched = 1;
    for (k = 0; k < needed + 64; k++) untouched = untouched && buffer[k] == 0xA5;
    CHECK(untouched, "failed saves wrote into the buffer");
    written = 0;
    s = lancbio_estimator_save(h, buffer + 1, needed + 63, &written); /* unaligned, larger than needed */
    CHECK(s == LANCBIO_OK && written == needed, "save into a larger, unaligned buffer: %d, %lld", s, (long long)written);
    untouched = buffer[0] == 0xA5;
    for (k = (int)needed + 1; k < needed + 64; k++) untouched = untouched && buffer[k] == 0xA5;
    CHECK(untouched, "save wrote outside the checkpoint's bytes");
    s = lancbio_estimator_load(h, buffer + 1, written);
    CHECK(s == LANCBIO_OK, "load from an unaligned buffer: %d %s", s, lancbio_estimator_last_error(h));
    free(buffer);
    lancbio_estimator_destroy(h);
}

static void test_in_progress(void)
{
    lancbio_estimator_t *h = create(&METHODS[0], LANCBIO_FLOAT64, N);
    double b[N], request[N], product[N];
    int64_t size, probe = 0;
    unsigned char *checkpoint;
    int32_t s;
    int k, rounds = 0;
    op_t op = {0, NULL, 0, 0};
    for (k = 0; k < 2; k++) step(h, LANCBIO_FLOAT64, k);
    checkpoint = save(h, &size);
    rhs(2, b);
    s = lancbio_estimator_begin_f64(h, b, request, N);
    CHECK(s == LANCBIO_NEED_PRODUCT, "begin: %d", s);
    s = lancbio_estimator_save(h, NULL, 0, &probe);
    CHECK(s == LANCBIO_ERR_INVALID_STATE, "save during a reverse-communication step: %d", s);
    s = lancbio_estimator_load(h, checkpoint, size);
    CHECK(s == LANCBIO_ERR_INVALID_STATE, "load during a reverse-communication step: %d", s);
    while (s != LANCBIO_OK && rounds++ < 10) {
        apply(2, request, product, N);
        s = lancbio_estimator_resume_f64(h, product, request, N);
        if (s != LANCBIO_NEED_PRODUCT) break;
    }
    CHECK(s >= 0 && s != LANCBIO_NEED_PRODUCT, "the step goes on after refused checkpoint calls: %d", s);
    s = lancbio_estimator_save(h, NULL, 0, &probe);
    CHECK(s == LANCBIO_OK, "save after the step: %d", s);

    /* From inside the handle's own callback. */
    op.k = 3;
    op.self = h;
    rhs(3, b);
    s = lancbio_estimator_step_f64(h, hvp64, &op, b, product, N, NULL);
    CHECK(s >= 0, "a step whose callback tries to save and load: %d", s);
    CHECK(op.nested_save == LANCBIO_ERR_INVALID_STATE && op.nested_load == LANCBIO_ERR_INVALID_STATE,
          "save and load from inside the callback returned %d and %d", op.nested_save, op.nested_load);
    free(checkpoint);
    lancbio_estimator_destroy(h);
}

/* ------------------------------------------------------------------------------------
 * Bilevel: g = 0.5 y^T D y + 0.025 sum y^4 - y^T C x, f = 0.5 ||y - y0||^2 + 0.05 ||x||^2
 * ----------------------------------------------------------------------------------*/
static double cmat(int i, int j) { return 0.3 * sin(1.0 + i + 2.0 * j); }

static int32_t b_grad_y_g(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    int i, j;
    (void)ud;
    for (i = 0; i < dy; i++) {
        double cx = 0;
        for (j = 0; j < dx; j++) cx += cmat(i, j) * x[j];
        out[i] = (1.0 + 0.5 * i) * y[i] + 0.1 * y[i] * y[i] * y[i] - cx;
    }
    return 0;
}
static int32_t b_grad_x_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    int j;
    (void)y, (void)dy, (void)ud;
    for (j = 0; j < dx; j++) out[j] = 0.1 * x[j];
    return 0;
}
static int32_t b_grad_y_f(const double *x, int64_t dx, const double *y, int64_t dy, double *out, void *ud)
{
    int i;
    (void)x, (void)dx, (void)ud;
    for (i = 0; i < dy; i++) out[i] = y[i] - cos(0.5 * i);
    return 0;
}
static int32_t b_hvp(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *ud)
{
    int i;
    (void)x, (void)dx, (void)ud;
    for (i = 0; i < dy; i++) out[i] = (1.0 + 0.5 * i + 0.3 * y[i] * y[i]) * v[i];
    return 0;
}
static int32_t b_jvp(const double *x, int64_t dx, const double *y, int64_t dy, const double *v, double *out, void *ud)
{
    int i, j;
    (void)x, (void)y, (void)ud;
    for (j = 0; j < dx; j++) {
        out[j] = 0;
        for (i = 0; i < dy; i++) out[j] -= cmat(i, j) * v[i];
    }
    return 0;
}

static const lancbio_problem_f64_t PROBLEM = {sizeof(lancbio_problem_f64_t), NULL, b_grad_y_g, b_grad_x_f,
                                              b_grad_y_f, b_hvp, b_jvp};

typedef struct {
    int32_t status;
    double x[DX], y[DY], v[DY], g[DX];
    lancbio_bilevel_info_t info;
} brecord_t;

static lancbio_bilevel_t *bcreate(int32_t method, int inner_steps)
{
    lancbio_bilevel_options_t bo;
    lancbio_estimator_options_t eo;
    lancbio_bilevel_t *b = NULL;
    lancbio_bilevel_options_init(&bo);
    bo.lr_x = 0.5;
    bo.lr_y = 0.2;
    bo.lr_x_decay = 0.3;
    bo.inner_steps = inner_steps;
    lancbio_estimator_options_init(&eo, method);
    if (method == LANCBIO_METHOD_LANCZOS) lanczos(&eo);
    else if (method == LANCBIO_METHOD_RANDOM_NEUMANN) random_neumann(&eo);
    else krylov(&eo);
    if (lancbio_bilevel_create(DX, DY, &bo, &eo, &b) != LANCBIO_OK) {
        printf("  cannot create a bilevel optimizer: %s\n", lancbio_last_error());
        exit(2);
    }
    return b;
}

static brecord_t bstep(lancbio_bilevel_t *b, double *x, double *y)
{
    brecord_t r;
    memset(&r, 0, sizeof r);
    r.info.struct_size = (int64_t)sizeof r.info;
    r.status = lancbio_bilevel_step_f64(b, &PROBLEM, x, DX, y, DY, &r.info);
    memcpy(r.x, x, sizeof r.x);
    memcpy(r.y, y, sizeof r.y);
    lancbio_bilevel_get_v_f64(b, r.v, DY);
    lancbio_bilevel_get_hypergradient_f64(b, r.g, DX);
    return r;
}

static int bsame(const brecord_t *a, const brecord_t *b)
{
    return a->status == b->status && memcmp(a->x, b->x, sizeof a->x) == 0 && memcmp(a->y, b->y, sizeof a->y) == 0 &&
           memcmp(a->v, b->v, sizeof a->v) == 0 && memcmp(a->g, b->g, sizeof a->g) == 0 &&
           memcmp((const char *)&a->info + 8, (const char *)&b->info + 8, sizeof a->info - 8) == 0;
}

static unsigned char *bsave(const lancbio_bilevel_t *b, int64_t *size)
{
    unsigned char *p;
    if (lancbio_bilevel_save(b, NULL, 0, size) != LANCBIO_OK) exit(2);
    p = (unsigned char *)malloc((size_t)*size);
    if (!p || lancbio_bilevel_save(b, p, *size, size) != LANCBIO_OK) exit(2);
    return p;
}

static int bsaves_as(const lancbio_bilevel_t *b, const unsigned char *expected, int64_t size)
{
    int64_t now_size;
    unsigned char *now = bsave(b, &now_size);
    int same = now_size == size && memcmp(now, expected, (size_t)size) == 0;
    free(now);
    return same;
}

static void start_point(double *x, double *y)
{
    int i;
    for (i = 0; i < DX; i++) x[i] = 0.5 - 0.2 * i;
    for (i = 0; i < DY; i++) y[i] = 0.1 * i;
}

static void test_bilevel(void)
{
    static const int32_t methods[3] = {LANCBIO_METHOD_LANCZOS, LANCBIO_METHOD_CG, LANCBIO_METHOD_RANDOM_NEUMANN};
    int mi, split, k;
    for (mi = 0; mi < 3; mi++) {
        brecord_t reference[12];
        double x[DX], y[DY];
        lancbio_bilevel_t *b = bcreate(methods[mi], 2);
        start_point(x, y);
        for (k = 0; k < 12; k++) reference[k] = bstep(b, x, y);
        lancbio_bilevel_destroy(b);
        for (split = 0; split < 12; split += 3) {
            lancbio_bilevel_t *original = bcreate(methods[mi], 2), *restored = NULL, *other = bcreate(methods[mi], 2);
            double xs[DX], ys[DY], xo[DX], yo[DY];
            int64_t size;
            unsigned char *checkpoint;
            int same = 1, loaded_same = 1;
            int32_t s;
            start_point(x, y);
            for (k = 0; k < split; k++) bstep(original, x, y);
            checkpoint = bsave(original, &size);
            memcpy(xs, x, sizeof xs);
            memcpy(ys, y, sizeof ys);
            lancbio_bilevel_destroy(original);
            s = lancbio_bilevel_restore(checkpoint, size, &restored);
            CHECK(s == LANCBIO_OK && restored, "bilevel method %d split %d: restore %d (%s)", methods[mi], split, s,
                  lancbio_last_error());
            start_point(xo, yo);
            bstep(other, xo, yo);
            s = lancbio_bilevel_load(other, checkpoint, size);
            CHECK(s == LANCBIO_OK, "bilevel load: %d (%s)", s, lancbio_bilevel_last_error(other));
            memcpy(xo, xs, sizeof xo);
            memcpy(yo, ys, sizeof yo);
            for (k = split; k < 12 && restored; k++) {
                brecord_t a = bstep(restored, xs, ys), c = bstep(other, xo, yo);
                same = same && bsame(&a, &reference[k]);
                loaded_same = loaded_same && bsame(&c, &reference[k]);
            }
            CHECK(same, "bilevel method %d restored after %d iterations: the next iterations differ", methods[mi], split);
            CHECK(loaded_same, "bilevel method %d loaded after %d iterations: the next iterations differ", methods[mi],
                  split);
            free(checkpoint);
            lancbio_bilevel_destroy(restored);
            lancbio_bilevel_destroy(other);
        }
    }
    {
        /* Damage and compatibility. */
        lancbio_bilevel_t *b = bcreate(LANCBIO_METHOD_LANCZOS, 2), *other = bcreate(LANCBIO_METHOD_LANCZOS, 3), *r;
        lancbio_bilevel_t *cg = bcreate(LANCBIO_METHOD_CG, 2);
        double x[DX], y[DY];
        int64_t size, i, len;
        unsigned char *checkpoint, *damaged;
        int rejected = 1, restores = 1;
        int32_t s;
        start_point(x, y);
        for (k = 0; k < 4; k++) bstep(b, x, y);
        checkpoint = bsave(b, &size);
        damaged = (unsigned char *)malloc((size_t)size);
        for (i = 0; i < size; i++) {
            memcpy(damaged, checkpoint, (size_t)size);
            damaged[i] ^= 0x10;
            rejected = rejected && lancbio_bilevel_load(b, damaged, size) == LANCBIO_ERR_INVALID_CHECKPOINT;
            r = NULL;
            restores = restores && lancbio_bilevel_restore(damaged, size, &r) == LANCBIO_ERR_INVALID_CHECKPOINT && !r;
        }
        for (len = 0; len < size; len++) {
            rejected = rejected && lancbio_bilevel_load(b, checkpoint, len) == LANCBIO_ERR_INVALID_CHECKPOINT;
            r = NULL;
            restores = restores && lancbio_bilevel_restore(checkpoint, len, &r) == LANCBIO_ERR_INVALID_CHECKPOINT && !r;
        }
        CHECK(rejected, "a damaged or truncated bilevel checkpoint was loaded");
        CHECK(restores, "a damaged or truncated bilevel checkpoint was restored");
        CHECK(bsaves_as(b, checkpoint, size), "rejected loads changed the bilevel handle");
        s = lancbio_bilevel_load(other, checkpoint, size);
        CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT && contains(lancbio_bilevel_last_error(other), "options"),
              "a checkpoint with other outer-loop options: %d \"%s\"", s, lancbio_bilevel_last_error(other));
        s = lancbio_bilevel_load(cg, checkpoint, size);
        CHECK(s == LANCBIO_ERR_INVALID_ARGUMENT, "a lanczos checkpoint into a cg optimizer: %d", s);
        s = lancbio_bilevel_save(b, damaged, size - 1, &len);
        CHECK(s == LANCBIO_ERR_BUFFER_TOO_SMALL && len == size, "bilevel save one byte short: %d", s);
        {
            /* An iteration count apart from the last info's: the bilevel state is the last
             * 30 + dx fields before the checksum (count, products, 28 of info, g). */
            int64_t at = size - 8 - 8 * (30 + DX);
            uint64_t iterations;
            memcpy(damaged, checkpoint, (size_t)size);
            memcpy(&iterations, damaged + at, 8);
            CHECK(iterations == 4, "the iteration count is at its offset (%llu)", (unsigned long long)iterations);
            put_word(damaged, (size_t)at, iterations + 1);
            reseal(damaged, (size_t)size);
            r = NULL;
            s = lancbio_bilevel_restore(damaged, size, &r);
            CHECK(s == LANCBIO_ERR_INVALID_CHECKPOINT && r == NULL && contains(lancbio_last_error(), "disagree"),
                  "an iteration count apart from the last info: %d \"%s\"", s, lancbio_last_error());
        }
        free(damaged);
        free(checkpoint);
        lancbio_bilevel_destroy(b);
        lancbio_bilevel_destroy(other);
        lancbio_bilevel_destroy(cg);
    }
}

int main(void)
{
    run_group("continue", test_continue);
    run_group("corruption", test_corruption);
    run_group("format", test_format);
    run_group("compatibility", test_compatibility);
    run_group("save protocol", test_save_protocol);
    run_group("steps in progress", test_in_progress);
    run_group("bilevel", test_bilevel);
    return check_summary();
}
