/*
 * fx_kernels.c -- the C API's entry points: each dispatches, at run time, to
 * the best instruction set the CPU supports.
 *
 * One source (fx_isa_impl.h and the *_impl.h it includes) is compiled once
 * per instruction set (fx_isa_avx512.c, fx_isa_avx2.c, fx_isa_baseline.c:
 * AVX-512, AVX2+FMA, and the baseline of the build, SSE2 on x86-64), so a
 * single build runs everywhere and is fast where the CPU
 * allows.  FASTXENT_SIMD=avx512|avx2|baseline lowers the choice (a request
 * above what the CPU supports is ignored).
 */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stdint.h>
#include "fastxent.h"
#include "fx_table.h"

/* ---- the per-ISA instantiations ---------------------------------------- */

/* setup.py compiles each ISA's float32 and float64 halves as units of their
 * own (fx_isa_<isa>_f32.c, _f64.c), in parallel, and defines
 * FX_SEPARATE_ISA_UNITS; compiled alone, this file is all of the kernels. */
#ifndef FX_SEPARATE_ISA_UNITS
#include "fx_isa_avx512.c"
#include "fx_isa_avx2.c"
#include "fx_isa_baseline.c"
#endif

void fx_store_fence(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_sfence();
#endif
}

/* ---- dispatch ------------------------------------------------------------ */

/* One table a dtype and path, indexed by FX_SIMD_*. */
#if FX_HAVE_X86_PATHS
static const fx_table_f32 *const fx_tables_f32[3] = {&fx_table_f32_baseline, &fx_table_f32_avx2,
                                                     &fx_table_f32_avx512};
static const fx_table_f64 *const fx_tables_f64[3] = {&fx_table_f64_baseline, &fx_table_f64_avx2,
                                                     &fx_table_f64_avx512};
#else
static const fx_table_f32 *const fx_tables_f32[3] = {&fx_table_f32_baseline, &fx_table_f32_baseline,
                                                     &fx_table_f32_baseline};
static const fx_table_f64 *const fx_tables_f64[3] = {&fx_table_f64_baseline, &fx_table_f64_baseline,
                                                     &fx_table_f64_baseline};
#endif

static int fx_path = -1; /* -1: not chosen yet */

int fx_simd_supported(void) {
#if FX_HAVE_X86_PATHS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return FX_SIMD_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return FX_SIMD_AVX2;
#endif
    return FX_SIMD_BASELINE;
}

const char *fx_simd_name(int path) {
    switch (path) {
    case FX_SIMD_AVX512: return "avx512";
    case FX_SIMD_AVX2: return "avx2";
    case FX_SIMD_BASELINE: return "baseline";
    default: return "unknown";
    }
}

static int fx_choose_path(void) {
    int path = fx_simd_supported();
    const char *env = getenv("FASTXENT_SIMD");
    if (env && *env) {
        int asked = -1;
        for (int p = FX_SIMD_BASELINE; p <= FX_SIMD_AVX512; p++)
            if (strcmp(env, fx_simd_name(p)) == 0) asked = p;
        if (asked >= 0 && asked < path) path = asked;
    }
    return path;
}

int fx_simd_path(void) {
    int path = __atomic_load_n(&fx_path, __ATOMIC_ACQUIRE);
    if (path < 0) {
        path = fx_choose_path(); /* idempotent: a race stores the same value */
        __atomic_store_n(&fx_path, path, __ATOMIC_RELEASE);
    }
    return path;
}

int fx_simd_set(int path) {
    int best = fx_simd_supported();
    if (path < FX_SIMD_BASELINE) path = FX_SIMD_BASELINE;
    if (path > best) path = best;
    __atomic_store_n(&fx_path, path, __ATOMIC_RELEASE);
    return path;
}

static inline const fx_table_f32 *fx_f32(void) { return fx_tables_f32[fx_simd_path()]; }
static inline const fx_table_f64 *fx_f64(void) { return fx_tables_f64[fx_simd_path()]; }

/* ---- the public entry points --------------------------------------------- */

double fx_logsumexp_row_f32(const float *x, int64_t n) { return fx_f32()->lse(x, n); }
double fx_logsumexp_row_f64(const double *x, int64_t n) { return fx_f64()->lse(x, n); }

double fx_softmax_row_f32(const float *x, int64_t n, float *out, int flags) {
    return fx_f32()->softmax(x, n, out, flags);
}
double fx_softmax_row_f64(const double *x, int64_t n, double *out, int flags) {
    return fx_f64()->softmax(x, n, out, flags);
}
double fx_log_softmax_row_f32(const float *x, int64_t n, float *out, int flags) {
    return fx_f32()->log_softmax(x, n, out, flags);
}
double fx_log_softmax_row_f64(const double *x, int64_t n, double *out, int flags) {
    return fx_f64()->log_softmax(x, n, out, flags);
}

double fx_ce_label_row_f32(const float *x, int64_t n, int64_t label, const fx_ce_options *opt,
                           double grad_scale, float *grad, double *lse_out) {
    return fx_f32()->ce_label(x, n, label, opt, grad_scale, grad, lse_out);
}
double fx_ce_label_row_f64(const double *x, int64_t n, int64_t label, const fx_ce_options *opt,
                           double grad_scale, double *grad, double *lse_out) {
    return fx_f64()->ce_label(x, n, label, opt, grad_scale, grad, lse_out);
}
double fx_ce_prob_row_f32(const float *x, const float *t, int64_t n, const fx_ce_options *opt,
                          double grad_scale, float *grad, double *lse_out) {
    return fx_f32()->ce_prob(x, t, n, opt, grad_scale, grad, lse_out);
}
double fx_ce_prob_row_f64(const double *x, const double *t, int64_t n, const fx_ce_options *opt,
                          double grad_scale, double *grad, double *lse_out) {
    return fx_f64()->ce_prob(x, t, n, opt, grad_scale, grad, lse_out);
}

void fx_logsumexp_cols_f32(const float *x, int64_t n_classes, int64_t m, int64_t stride, double *lse) {
    fx_f32()->lse_cols(x, n_classes, m, stride, lse);
}
void fx_logsumexp_cols_f64(const double *x, int64_t n_classes, int64_t m, int64_t stride, double *lse) {
    fx_f64()->lse_cols(x, n_classes, m, stride, lse);
}
void fx_softmax_cols_f32(const float *x, int64_t n_classes, int64_t m, int64_t stride, float *out,
                         int take_log) {
    fx_f32()->softmax_cols(x, n_classes, m, stride, out, take_log);
}
void fx_softmax_cols_f64(const double *x, int64_t n_classes, int64_t m, int64_t stride, double *out,
                         int take_log) {
    fx_f64()->softmax_cols(x, n_classes, m, stride, out, take_log);
}
void fx_ce_cols_f32(const float *x, const float *t, const int64_t *labels, int64_t n_classes,
                    int64_t m, int64_t stride, const fx_ce_options *opt, const double *grad_scale,
                    float *grad, double *loss, double *lse) {
    fx_f32()->ce_cols(x, t, labels, n_classes, m, stride, opt, grad_scale, grad, loss, lse);
}
void fx_ce_cols_f64(const double *x, const double *t, const int64_t *labels, int64_t n_classes,
                    int64_t m, int64_t stride, const fx_ce_options *opt, const double *grad_scale,
                    double *grad, double *loss, double *lse) {
    fx_f64()->ce_cols(x, t, labels, n_classes, m, stride, opt, grad_scale, grad, loss, lse);
}

double fx_nll_prob_row_f32(const float *p, const float *t, int64_t n, int64_t label,
                           const fx_ce_options *opt, double clip, double grad_scale, float *grad) {
    return fx_f32()->nll_prob(p, t, n, label, opt, clip, grad_scale, grad);
}
double fx_entropy_row_f32(const float *p, int64_t n) { return fx_f32()->entropy(p, n); }
double fx_kl_row_f32(const float *p, const float *q, int64_t n) { return fx_f32()->kl(p, q, n); }
double fx_bce_f32(const float *x, const float *t, int64_t n, const float *w, const float *pw, double eps,
                  int from_logits, double grad_scale, const float *go, float *loss, float *grad, int64_t *outside) {
    return fx_f32()->bce(x, t, n, w, pw, eps, from_logits, grad_scale, go, loss, grad, outside);
}
void fx_softcap_row_f32(const float *x, int64_t n, double cap, float *out) {
    fx_f32()->softcap(x, n, cap, out);
}
void fx_softcap_grad_row_f32(const float *capped, int64_t n, double cap, float *grad) {
    fx_f32()->softcap_grad(capped, n, cap, grad);
}

double fx_nll_prob_row_f64(const double *p, const double *t, int64_t n, int64_t label,
                           const fx_ce_options *opt, double clip, double grad_scale, double *grad) {
    return fx_f64()->nll_prob(p, t, n, label, opt, clip, grad_scale, grad);
}
double fx_entropy_row_f64(const double *p, int64_t n) { return fx_f64()->entropy(p, n); }
double fx_kl_row_f64(const double *p, const double *q, int64_t n) { return fx_f64()->kl(p, q, n); }
double fx_bce_f64(const double *x, const double *t, int64_t n, const double *w, const double *pw, double eps,
                  int from_logits, double grad_scale, const double *go, double *loss, double *grad, int64_t *outside) {
    return fx_f64()->bce(x, t, n, w, pw, eps, from_logits, grad_scale, go, loss, grad, outside);
}
void fx_softcap_row_f64(const double *x, int64_t n, double cap, double *out) {
    fx_f64()->softcap(x, n, cap, out);
}
void fx_softcap_grad_row_f64(const double *capped, int64_t n, double cap, double *grad) {
    fx_f64()->softcap_grad(capped, n, cap, grad);
}

void fx_logsumexp_rows_f32(const float *x, int64_t n_rows, int64_t n, float *lse) {
    fx_f32()->lse_rows(x, n_rows, n, lse);
}
void fx_logsumexp_rows_f64(const double *x, int64_t n_rows, int64_t n, double *lse) {
    fx_f64()->lse_rows(x, n_rows, n, lse);
}
void fx_narrow_entropy_f32(const float *p, int64_t n_rows, int64_t n, double *out) {
    fx_f32()->narrow_entropy(p, n_rows, n, out);
}
void fx_narrow_entropy_f64(const double *p, int64_t n_rows, int64_t n, double *out) {
    fx_f64()->narrow_entropy(p, n_rows, n, out);
}
void fx_narrow_kl_f32(const float *p, const float *q, int64_t n_rows, int64_t n, double *out) {
    fx_f32()->narrow_kl(p, q, n_rows, n, out);
}
void fx_narrow_kl_f64(const double *p, const double *q, int64_t n_rows, int64_t n, double *out) {
    fx_f64()->narrow_kl(p, q, n_rows, n, out);
}
void fx_softmax_rows_f32(const float *x, int64_t n_rows, int64_t n, float *out, int take_log, int flags) {
    fx_f32()->softmax_rows(x, n_rows, n, out, take_log, flags);
}
void fx_softmax_rows_f64(const double *x, int64_t n_rows, int64_t n, double *out, int take_log, int flags) {
    fx_f64()->softmax_rows(x, n_rows, n, out, take_log, flags);
}
double fx_ce_label_rows_f32(const float *x, int64_t n_rows, int64_t n, const int64_t *labels,
                            int64_t ignore_index, const float *w, const double *sw, double grad_scale,
                            const double *grs, int flags, float *loss, float *grad, float *lse) {
    return fx_f32()->ce_label_rows(x, n_rows, n, labels, ignore_index, w, sw, grad_scale, grs, flags,
                                           loss, grad, lse);
}
double fx_ce_label_rows_f64(const double *x, int64_t n_rows, int64_t n, const int64_t *labels,
                            int64_t ignore_index, const double *w, const double *sw, double grad_scale,
                            const double *grs, int flags, double *loss, double *grad, double *lse) {
    return fx_f64()->ce_label_rows(x, n_rows, n, labels, ignore_index, w, sw, grad_scale, grs, flags,
                                           loss, grad, lse);
}
void fx_narrow_logsumexp_f32(const float *x, int64_t n_rows, int64_t n, float *lse) {
    fx_f32()->narrow_lse(x, n_rows, n, lse);
}
void fx_narrow_softmax_f32(const float *x, int64_t n_rows, int64_t n, float *out, int take_log) {
    fx_f32()->narrow_softmax(x, n_rows, n, out, take_log);
}
double fx_narrow_ce_f32(const float *x, int64_t n_rows, int64_t n, const int64_t *labels, const float *t,
                        int64_t ignore_index, const fx_ce_options *opt, const double *sw, double grad_scale,
                        const double *grs, float *loss, float *grad, float *lse) {
    return fx_f32()->narrow_ce(x, n_rows, n, labels, t, ignore_index, opt, sw, grad_scale, grs, loss, grad,
                                        lse);
}

void fx_narrow_logsumexp_f64(const double *x, int64_t n_rows, int64_t n, double *lse) {
    fx_f64()->narrow_lse(x, n_rows, n, lse);
}
void fx_narrow_softmax_f64(const double *x, int64_t n_rows, int64_t n, double *out, int take_log) {
    fx_f64()->narrow_softmax(x, n_rows, n, out, take_log);
}
double fx_narrow_ce_f64(const double *x, int64_t n_rows, int64_t n, const int64_t *labels, const double *t,
                        int64_t ignore_index, const fx_ce_options *opt, const double *sw, double grad_scale,
                        const double *grs, double *loss, double *grad, double *lse) {
    return fx_f64()->narrow_ce(x, n_rows, n, labels, t, ignore_index, opt, sw, grad_scale, grs, loss, grad,
                                        lse);
}

void fx_lse_scan_row_f32(const float *x, int64_t n, double *m, double *s) {
    fx_f32()->lse_scan(x, n, m, s);
}
void fx_write_row_f32(const float *x, int64_t n, int take_log, double shift, double k, int flags,
                      float *out) {
    fx_f32()->write(x, n, take_log, shift, k, flags, out);
}

void fx_lse_scan_row_f64(const double *x, int64_t n, double *m, double *s) {
    fx_f64()->lse_scan(x, n, m, s);
}
void fx_write_row_f64(const double *x, int64_t n, int take_log, double shift, double k, int flags,
                      double *out) {
    fx_f64()->write(x, n, take_log, shift, k, flags, out);
}

/* Dtype-free: in both tables (fx_table.h), taken from the float32 one. */
int64_t fx_count_labels(const int64_t *labels, int64_t n, int64_t n_classes, int64_t ignore_index,
                        int64_t *bad) {
    return fx_f32()->count_labels(labels, n, n_classes, ignore_index, bad);
}

static double fx_shift_of(double m) { return isfinite(m) ? m : 0.0; }

void fx_lse_merge(double *m, double *s, double m2, double s2) {
    /* Rescale whichever side has the smaller max; a side whose max is -inf
     * holds 0 (or NaN, which must stay NaN) and is not rescaled. */
    if (m2 > *m) {
        if (*m != -INFINITY) *s *= exp(fx_shift_of(*m) - fx_shift_of(m2));
        *m = m2;
        *s += s2;
    } else {
        if (m2 != -INFINITY) s2 *= exp(fx_shift_of(m2) - fx_shift_of(*m));
        *s += s2;
    }
}
