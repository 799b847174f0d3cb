/*
 * test_long_run.c: long runs and extreme scales through the C ABI (`make test-long`, part
 * of `make check`, not of `make test`: it takes up to about a minute).
 *
 * Groups:
 *   long run      10^5 LancBiO steps (n = 2000, m_max = 80, growth 1.1 every 20) on a
 *                 slowly drifting diagonal-plus-low-rank operator with a drifting b: every
 *                 status >= 0, every estimate finite, the residual estimate bounded (at most
 *                 10 ||b||), the true residual below 0.1 ||b|| at every sample (the estimate
 *                 is exact only for a fixed operator), and the resident memory (from
 *                 /proc/self/statm, sampled every 10^4 steps) flat: less than 1 MiB of growth
 *                 after the first sample.
 *   scales        every method, float64: b scaled by 1e-150 and 1e+150, the operator scaled
 *                 by 1e-150 and 1e+150 (step sizes scaled to match), and both together: each
 *                 step's estimate equals the unscaled run's, scaled, to a relative 1e-10.
 *                 Float32: the same with the scales 2^-60 and 2^+60, to a relative 1e-5.
 * The last line is "N passed, M failed"; the exit status is non-zero if any check failed.
 *
 * LONG_RUN_STEPS in the environment shortens the long run (for quick local runs only).
 */
#define _POSIX_C_SOURCE 200809L

#include "lancbio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHECK_GROUP_WIDTH 12
#define CHECK_GROUP_CPU_TIME
#define CHECK_PRINTED_FAILURES 30
#include "check.h"

static const char *method_name(int32_t m)
{
    static const char *names[] = {"?", "lanczos", "subbio", "cg", "minres", "gd", "neumann", "random-neumann"};
    return (m >= 1 && m <= 7) ? names[m] : "?";
}

/* ------------------------------------------------------------------------------------
 * long run
 * ----------------------------------------------------------------------------------*/
#define LN 2000
#define RANK 3

/* A_k = diag(d_i (1 + 0.05 sin(omega k + phi_i))) + U_k U_k^T, U_k's columns rotating
 * slowly; eigenvalues in about [1, 20]. */
typedef struct {
    int64_t k;
    double d[LN], phi[LN], u0[RANK][LN], u1[RANK][LN];
    double u[RANK][LN];  /* U_k, refreshed at each step */
    double diag[LN];     /* the diagonal at step k */
} drift_t;

static drift_t D;

static void drift_init(void)
{
    int i, r;
    for (i = 0; i < LN; i++) {
        D.d[i] = 1.0 + 15.0 * (double)i / (LN - 1);
        D.phi[i] = 0.37 * i;
        for (r = 0; r < RANK; r++) {
            D.u0[r][i] = sin(0.013 * (i + 1) * (r + 1)) * 0.05;
            D.u1[r][i] = cos(0.007 * (i + 3) * (r + 2)) * 0.05;
        }
    }
}

static void drift_set(int64_t k)
{
    double c = cos(1e-4 * (double)k), s = sin(1e-4 * (double)k);
    int i, r;
    D.k = k;
    for (i = 0; i < LN; i++) {
        D.diag[i] = D.d[i] * (1.0 + 0.05 * sin(1e-3 * (double)k + D.phi[i]));
        for (r = 0; r < RANK; r++) D.u[r][i] = c * D.u0[r][i] + s * D.u1[r][i];
    }
}

static void drift_apply(const double *x, double *y)
{
    double c[RANK] = {0};
    int i, r;
    for (r = 0; r < RANK; r++)
        for (i = 0; i < LN; i++) c[r] += D.u[r][i] * x[i];
    for (i = 0; i < LN; i++) {
        double t = D.diag[i] * x[i];
        for (r = 0; r < RANK; r++) t += D.u[r][i] * c[r];
        y[i] = t;
    }
}

static int32_t drift_hvp(const double *in, double *out, int64_t n, void *user_data)
{
    long *calls = (long *)user_data;
    if (n != LN) return 1;
    (*calls)++;
    drift_apply(in, out);
    return 0;
}

static void drift_rhs(int64_t k, double *b)
{
    int i;
    for (i = 0; i < LN; i++) b[i] = 1.0 + 0.5 * sin(0.01 * i + 2e-4 * (double)k) + 0.1 * cos(3e-3 * (double)k);
}

static double vnorm(const double *x, int n)
{
    double s = 0;
    int i;
    for (i = 0; i < n; i++) s += x[i] * x[i];
    return sqrt(s);
}

/* Resident set size in bytes, or -1. */
static long long resident_bytes(void)
{
    long long size = 0, resident = -1;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%lld %lld", &size, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (long long)sysconf(_SC_PAGESIZE);
}

static void test_long_run(void)
{
    static double b[LN], v[LN], r[LN];
    lancbio_estimator_options_t o;
    lancbio_estimator_t *h = NULL;
    lancbio_step_info_t info;
    long calls = 0, steps = 100000;
    long long rss_first = -1, rss_max = -1, rss;
    int64_t k;
    int32_t s;
    long bad_status = 0, bad_value = 0, bad_residual = 0;
    double worst_estimate = 0, worst_true = 0;
    const char *env = getenv("LONG_RUN_STEPS");
    if (env && atol(env) > 0) steps = atol(env);

    drift_init();
    lancbio_estimator_options_init(&o, LANCBIO_METHOD_LANCZOS);
    o.m_max = 80;
    o.growth = 1.1;
    o.grow_every = 20;
    s = lancbio_estimator_create(LN, &o, &h);
    CHECK(s == LANCBIO_OK, "create returned %d", s);
    if (s != LANCBIO_OK) return;
    memset(&info, 0, sizeof info);
    info.struct_size = (int64_t)sizeof info;
    for (k = 1; k <= steps; k++) {
        int i, finite = 1;
        double bn;
        drift_set(k);
        drift_rhs(k, b);
        s = lancbio_estimator_step_f64(h, drift_hvp, &calls, b, v, LN, &info);
        if (s < 0 || s > LANCBIO_SINGULAR) {
            if (bad_status++ < 5) CHECK(0, "step %lld returned %d: %s", (long long)k, s, lancbio_estimator_last_error(h));
            continue;
        }
        for (i = 0; i < LN; i++) finite = finite && isfinite(v[i]);
        if (!finite && bad_value++ < 5) CHECK(0, "step %lld: the estimate has NaN or infinity", (long long)k);
        bn = vnorm(b, LN);
        /* beta_j |e_j^T s| for the drifting operator: an estimate, but of the order of ||b||
         * at most. */
        if (!(isfinite(info.residual) && info.residual <= 10 * bn)) {
            if (bad_residual++ < 5)
                CHECK(0, "step %lld: residual estimate %g (||b|| %g)", (long long)k, info.residual, bn);
        }
        if (info.residual / bn > worst_estimate) worst_estimate = info.residual / bn;
        if (k % 10000 == 0) {
            double tr;
            drift_apply(v, r);
            for (i = 0; i < LN; i++) r[i] -= b[i];
            tr = vnorm(r, LN) / bn;
            if (tr > worst_true) worst_true = tr;
            /* The operator moves by ~1e-4 relative per 80-step cycle: the estimate tracks it to
             * about 1e-2 (3e-3 to 2e-2 seen); 0.1 means it has lost track. */
            CHECK(tr <= 0.1, "step %lld: true relative residual ||A v - b|| / ||b|| = %.3e", (long long)k, tr);
            CHECK(info.period == 80, "step %lld: period %lld, expected m_max = 80", (long long)k, (long long)info.period);
            rss = resident_bytes();
            CHECK(rss > 0, "cannot read /proc/self/statm");
            if (rss_first < 0) rss_first = rss;
            if (rss > rss_max) rss_max = rss;
            printf("         step %6lld: rss %.2f MiB, relative residual %.2e (estimate %.2e), period %lld, restarts %lld\n",
                   (long long)k, rss / 1048576.0, tr, info.residual / bn, (long long)info.period, (long long)info.restarts);
        }
    }
    CHECK(bad_status == 0, "%ld steps returned an error", bad_status);
    CHECK(bad_value == 0, "%ld estimates had NaN or infinity", bad_value);
    CHECK(bad_residual == 0, "%ld residual estimates were unbounded", bad_residual);
    CHECK(info.total_products == calls, "total_products %lld but the callback ran %ld times", (long long)info.total_products,
          calls);
    if (rss_first > 0)
        CHECK(rss_max - rss_first < 1048576, "resident memory grew by %lld bytes after the first sample",
              rss_max - rss_first);
    printf("         %ld steps, %ld products; worst relative residual estimate %.2e, worst true %.2e; "
           "rss growth after the first sample %lld bytes\n",
           steps, calls, worst_estimate, worst_true, rss_max - rss_first);
    lancbio_estimator_destroy(h);
}

/* ------------------------------------------------------------------------------------
 * scales
 * ----------------------------------------------------------------------------------*/
#define SN 50
#define SSTEPS 30

typedef struct {
    double a_scale;
    long calls;
} sop_t;

/* A = a_scale * (diag(1..~10) + w w^T), fixed; b_k drifts. */
static double sdiag(int i) { return 1.0 + 9.0 * (double)i / (SN - 1); }
static double sw(int i) { return 0.3 * sin(0.4 * i + 1.0); }

static void sapply(double a_scale, const double *x, double *y)
{
    double c = 0;
    int i;
    for (i = 0; i < SN; i++) c += sw(i) * x[i];
    for (i = 0; i < SN; i++) y[i] = a_scale * (sdiag(i) * x[i] + sw(i) * c);
}

static int32_t shvp64(const double *in, double *out, int64_t n, void *user_data)
{
    sop_t *op = (sop_t *)user_data;
    if (n != SN) return 1;
    op->calls++;
    sapply(op->a_scale, in, out);
    return 0;
}

static int32_t shvp32(const float *in, float *out, int64_t n, void *user_data)
{
    sop_t *op = (sop_t *)user_data;
    double x[SN], y[SN];
    int i;
    if (n != SN) return 1;
    op->calls++;
    for (i = 0; i < SN; i++) x[i] = in[i];
    sapply(op->a_scale, x, y);
    for (i = 0; i < SN; i++) out[i] = (float)y[i];
    return 0;
}

static void srhs(int k, double b_scale, double *b)
{
    int i;
    for (i = 0; i < SN; i++) b[i] = b_scale * (1.0 + 0.5 * sin(0.3 * i + 0.2 * k));
}

/* Runs SSTEPS steps; v[k] receives each estimate (in double); returns 0 if all statuses >= 0. */
static int srun(int32_t method, int32_t precision, double b_scale, double a_scale, double v[SSTEPS][SN], int32_t *status)
{
    lancbio_estimator_options_t o;
    lancbio_estimator_t *h = NULL;
    sop_t op;
    int k, i, ok = 1;
    int32_t s;
    lancbio_estimator_options_init(&o, method);
    o.precision = precision;
    o.m0 = 3;
    o.m_max = 10;
    o.growth = 1.5;
    o.grow_every = 5;
    o.max_iterations = 6;
    o.theta0 = 0.05 / a_scale;    /* units of 1 / eigenvalue */
    o.step_size = 0.05 / a_scale; /* below 2 / lambda_max */
    o.steps = method == LANCBIO_METHOD_GD ? 3 : 12;
    o.seed = 17;
    s = lancbio_estimator_create(SN, &o, &h);
    CHECK(s == LANCBIO_OK, "%s: create with a_scale %g returned %d: %s", method_name(method), a_scale, s,
          lancbio_estimator_last_error(NULL));
    if (s != LANCBIO_OK) return 0;
    op.a_scale = a_scale;
    op.calls = 0;
    for (k = 0; k < SSTEPS; k++) {
        double b[SN];
        srhs(k, b_scale, b);
        if (precision == LANCBIO_FLOAT64) {
            s = lancbio_estimator_step_f64(h, shvp64, &op, b, v[k], SN, NULL);
        } else {
            float bf[SN], vf[SN];
            for (i = 0; i < SN; i++) bf[i] = (float)b[i];
            s = lancbio_estimator_step_f32(h, shvp32, &op, bf, vf, SN, NULL);
            for (i = 0; i < SN; i++) v[k][i] = vf[i];
        }
        status[k] = s;
        if (s < 0) {
            CHECK(0, "%s (precision %d, b x %g, A x %g): step %d returned %d: %s", method_name(method), precision, b_scale,
                  a_scale, k, s, lancbio_estimator_last_error(h));
            ok = 0;
            break;
        }
    }
    lancbio_estimator_destroy(h);
    return ok;
}

static void test_scales(void)
{
    static const double f64_scales[][2] = {{1e-150, 1}, {1e150, 1}, {1, 1e-150}, {1, 1e150}, {1e150, 1e150}, {1e-150, 1e-150}};
    static const double f32_scales[][2] = {{0x1p-60, 1}, {0x1p60, 1}, {1, 0x1p-60}, {1, 0x1p60}};
    static double ref[SSTEPS][SN], got[SSTEPS][SN];
    int32_t rs[SSTEPS], gs[SSTEPS];
    int32_t m, p;
    for (p = LANCBIO_FLOAT64; p <= LANCBIO_FLOAT32; p++)
        for (m = LANCBIO_METHOD_LANCZOS; m <= LANCBIO_METHOD_RANDOM_NEUMANN; m++) {
            const double(*scales)[2] = p == LANCBIO_FLOAT64 ? f64_scales : f32_scales;
            int count = p == LANCBIO_FLOAT64 ? 6 : 4, c;
            double tol = p == LANCBIO_FLOAT64 ? 1e-10 : 1e-5;
            if (!srun(m, p, 1, 1, ref, rs)) continue;
            for (c = 0; c < count; c++) {
                double bs = scales[c][0], as = scales[c][1], factor = bs / as, worst = 0;
                int k, i, worst_k = -1, same_status = 1;
                if (!srun(m, p, bs, as, got, gs)) continue;
                for (k = 0; k < SSTEPS; k++) {
                    double diff = 0, norm = 0;
                    for (i = 0; i < SN; i++) {
                        double want = ref[k][i];
                        double have = got[k][i] / factor;
                        diff += (have - want) * (have - want);
                        norm += want * want;
                    }
                    diff = sqrt(diff) / sqrt(norm);
                    if (!(diff <= worst)) {
                        worst = diff;
                        worst_k = k;
                    }
                    same_status = same_status && rs[k] == gs[k];
                }
                CHECK(worst <= tol, "%s (precision %d), b x %g, A x %g: estimate differs from the scaled unscaled-run "
                      "estimate by %.3e (step %d; tolerance %g)", method_name(m), p, bs, as, worst, worst_k, tol);
                CHECK(same_status, "%s (precision %d), b x %g, A x %g: statuses differ from the unscaled run",
                      method_name(m), p, bs, as);
            }
        }
}

int main(void)
{
    run_group("long run", test_long_run);
    run_group("scales", test_scales);
    return check_summary();
}
