/*
 * fx_kernels.c -- the C API's entry points: each dispatches, at run time, to
 * the best instruction set the CPU supports.
 *
 * One source (fx_isa_impl.h and the *_impl.h it includes) is compiled once
 * per instruction set, each in its own unit (fx_isa_avx512.c, fx_isa_avx2.c,
 * fx_isa_baseline.c: AVX-512, AVX2+FMA, and the baseline of the build, SSE2
 * on x86-64), so a single build runs everywhere and is fast where the CPU
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

/* setup.py compiles the three units as files of their own, in parallel, and
 * defines FX_SEPARATE_ISA_UNITS; compiled alone, this file is all of the
 * kernels. */
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

static const fx_table *const fx_tables[3] = {
    &fx_table_baseline,
#if FX_HAVE_X86_PATHS
    &fx_table_avx2,
    &fx_table_avx512,
#else
    &fx_table_baseline,
    &fx_table_baseline,
#endif
};

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

static inline const fx_table *fx_kernels(void) { return fx_tables[fx_simd_path()]; }

/* ---- the public entry points --------------------------------------------- */

double fx_logsumexp_row_f32(const float *x, int64_t n) { return fx_kernels()->lse_f32(x, n); }
double fx_logsumexp_row_f64(const double *x, int64_t n) { return fx_kernels()->lse_f64(x, n); }

double fx_softmax_row_f32(const float *x, int64_t n, float *out, int flags) {
    return fx_kernels()->softmax_f32(x, n, out, flags);
}
double fx_softmax_row_f64(const double *x, int64_t n, double *out, int flags) {
    return fx_kernels()->softmax_f64(x, n, out, flags);
}
double fx_log_softmax_row_f32(const float *x, int64_t n, float *out, int flags) {
    return fx_kernels()->log_softmax_f32(x, n, out, flags);
}
double fx_log_softmax_row_f64(const double *x, int64_t n, double *out, int flags) {
    return fx_kernels()->log_softmax_f64(x, n, out, flags);
}

double fx_ce_label_row_f32(const float *x, int64_t n, int64_t label, const fx_ce_options *opt,
                           double grad_scale, float *grad, double *lse_out) {
    return fx_kernels()->ce_label_f32(x, n, label, opt, grad_scale, grad, lse_out);
}
double fx_ce_label_row_f64(const double *x, int64_t n, int64_t label, const fx_ce_options *opt,
                           double grad_scale, double *grad, double *lse_out) {
    return fx_kernels()->ce_label_f64(x, n, label, opt, grad_scale, grad, lse_out);
}
double fx_ce_prob_row_f32(const float *x, const float *t, int64_t n, const fx_ce_options *opt,
                          double grad_scale, float *grad, double *lse_out) {
    return fx_kernels()->ce_prob_f32(x, t, n, opt, grad_scale, grad, lse_out);
}
double fx_ce_prob_row_f64(const double *x, const double *t, int64_t n, const fx_ce_options *opt,
                          double grad_scale, double *grad, double *lse_out) {
    return fx_kernels()->ce_prob_f64(x, t, n, opt, grad_scale, grad, lse_out);
}

void fx_logsumexp_cols_f32(const float *x, int64_t n_classes, int64_t m, int64_t stride, double *lse) {
    fx_kernels()->lse_cols_f32(x, n_classes, m, stride, lse);
}
void fx_logsumexp_cols_f64(const double *x, int64_t n_classes, int64_t m, int64_t stride, double *lse) {
    fx_kernels()->lse_cols_f64(x, n_classes, m, stride, lse);
}
void fx_softmax_cols_f32(const float *x, int64_t n_classes, int64_t m, int64_t stride, float *out,
                         int take_log) {
    fx_kernels()->softmax_cols_f32(x, n_classes, m, stride, out, take_log);
}
void fx_softmax_cols_f64(const double *x, int64_t n_classes, int64_t m, int64_t stride, double *out,
                         int take_log) {
    fx_kernels()->softmax_cols_f64(x, n_classes, m, stride, out, take_log);
}
void fx_ce_cols_f32(const float *x, const float *t, const int64_t *labels, int64_t n_classes,
                    int64_t m, int64_t stride, const fx_ce_options *opt, const double *grad_scale,
                    float *grad, double *loss, double *lse) {
    fx_kernels()->ce_cols_f32(x, t, labels, n_classes, m, stride, opt, grad_scale, grad, loss, lse);
}
void fx_ce_cols_f64(const double *x, const double *t, const int64_t *labels, int64_t n_classes,
                    int64_t m, int64_t stride, const fx_ce_options *opt, const double *grad_scale,
                    double *grad, double *loss, double *lse) {
    fx_kernels()->ce_cols_f64(x, t, labels, n_classes, m, stride, opt, grad_scale, grad, loss, lse);
}

double fx_nll_prob_row_f32(const float *p, const float *t, int64_t n, int64_t label,
                           const fx_ce_options *opt, double clip, double grad_scale, float *grad) {
    return fx_kernels()->nll_prob_f32(p, t, n, label, opt, clip, grad_scale, grad);
}
double fx_entropy_row_f32(const float *p, int64_t n) { return fx_kernels()->entropy_f32(p, n); }
double fx_kl_row_f32(const float *p, const float *q, int64_t n) { return fx_kernels()->kl_f32(p, q, n); }
double fx_bce_f32(const float *x, const float *t, int64_t n, const float *w, const float *pw, double eps,
                  int from_logits, double grad_scale, const float *go, float *loss, float *grad, int64_t *outside) {
    return fx_kernels()->bce_f32(x, t, n, w, pw, eps, from_logits, grad_scale, go, loss, grad, outside);
}
void fx_softcap_row_f32(const float *x, int64_t n, double cap, float *out) {
    fx_kernels()->softcap_f32(x, n, cap, out);
}
void fx_softcap_grad_row_f32(const float *capped, int64_t n, double cap, float *grad) {
    fx_kernels()->softcap_grad_f32(capped, n, cap, grad);
}

double fx_nll_prob_row_f64(const double *p, const double *t, int64_t n, int64_t label,
                           const fx_ce_options *opt, double clip, double grad_scale, double *grad) {
    return fx_kernels()->nll_prob_f64(p, t, n, label, opt, clip, grad_scale, grad);
}
double fx_entropy_row_f64(const double *p, int64_t n) { return fx_kernels()->entropy_f64(p, n); }
double fx_kl_row_f64(const double *p, const double *q, int64_t n) { return fx_kernels()->kl_f64(p, q, n); }
double fx_bce_f64(const double *x, const double *t, int64_t n, const double *w, const double *pw, double eps,
                  int from_logits, double grad_scale, const double *go, double *loss, double *grad, int64_t *outside) {
    return fx_kernels()->bce_f64(x, t, n, w, pw, eps, from_logits, grad_scale, go, loss, grad, outside);
}
void fx_softcap_row_f64(const double *x, int64_t n, double cap, double *out) {
    fx_kernels()->softcap_f64(x, n, cap, out);
}
void fx_softcap_grad_row_f64(const double *capped, int64_t n, double cap, double *grad) {
    fx_kernels()->softcap_grad_f64(capped, n, cap, grad);
}

void fx_logsumexp_rows_f32(const float *x, int64_t n_rows, int64_t n, float *lse) {
    fx_kernels()->lse_rows_f32(x, n_rows, n, lse);
}
void fx_logsumexp_rows_f64(const double *x, int64_t n_rows, int64_t n, double *lse) {
    fx_kernels()->lse_rows_f64(x, n_rows, n, lse);
}
void fx_narrow_entropy_f32(const float *p, int64_t n_rows, int64_t n, double *out) {
    fx_kernels()->narrow_entropy_f32(p, n_rows, n, out);
}
void fx_narrow_entropy_f64(const double *p, int64_t n_rows, int64_t n, double *out) {
    fx_kernels()->narrow_entropy_f64(p, n_rows, n, out);
}
void fx_narrow_kl_f32(const float *p, const float *q, int64_t n_rows, int64_t n, double *out) {
    fx_kernels()->narrow_kl_f32(p, q, n_rows, n, out);
}
void fx_narrow_kl_f64(const double *p, const double *q, int64_t n_rows, int64_t n, double *out) {
    fx_kernels()->narrow_kl_f64(p, q, n_rows, n, out);
}
void fx_softmax_rows_f32(const float *x, int64_t n_rows, int64_t n, float *out, int take_log, int flags) {
    fx_kernels()->softmax_rows_f32(x, n_rows, n, out, take_log, flags);
}
void fx_softmax_rows_f64(const double *x, int64_t n_rows, int64_t n, double *out, int take_log, int flags) {
    fx_kernels()->softmax_rows_f64(x, n_rows, n, out, take_log, flags);
}
double fx_ce_label_rows_f32(const float *x, int64_t n_rows, int64_t n, const int64_t *labels,
                            int64_t ignore_index, const float *w, const double *sw, double grad_scale,
                            const double *grs, int flags, float *loss, float *grad, float *lse) {
    return fx_kernels()->ce_label_rows_f32(x, n_rows, n, labels, ignore_index, w, sw, grad_scale, grs, flags,
                                           loss, grad, lse);
}
double fx_ce_label_rows_f64(const double *x, int64_t n_rows, int64_t n, const int64_t *labels,
                            int64_t ignore_index, const double *w, const double *sw, double grad_scale,
                            const double *grs, int flags, double *loss, double *grad, double *lse) {
    return fx_kernels()->ce_label_rows_f64(x, n_rows, n, labels, ignore_index, w, sw, grad_scale, grs, flags,
                                           loss, grad, lse);
}
void fx_narrow_logsumexp_f32(const float *x, int64_t n_rows, int64_t n, float *lse) {
    fx_kernels()->narrow_lse_f32(x, n_rows, n, lse);
}
void fx_narrow_softmax_f32(const float *x, int64_t n_rows, int64_t n, float *out, int take_log) {
    fx_kernels()->narrow_softmax_f32(x, n_rows, n, out, take_log);
}
double fx_narrow_ce_f32(const float *x, int64_t n_rows, int64_t n, const int64_t *labels, const float *t,
                        int64_t ignore_index, const fx_ce_options *opt, const double *sw, double grad_scale,
                        const double *grs, float *loss, float *grad, float *lse) {
    return fx_kernels()->narrow_ce_f32(x, n_rows, n, labels, t, ignore_index, opt, sw, grad_scale, grs, loss, grad,
                                        lse);
}

void fx_narrow_logsumexp_f64(const double *x, int64_t n_rows, int64_t n, double *lse) {
    fx_kernels()->narrow_lse_f64(x, n_rows, n, lse);
}
void fx_narrow_softmax_f64(const double *x, int64_t n_rows, int64_t n, double *out, int take_log) {
    fx_kernels()->narrow_softmax_f64(x, n_rows, n, out, take_log);
}
double fx_narrow_ce_f64(const double *x, int64_t n_rows, int64_t n, const int64_t *labels, const double *t,
                        int64_t ignore_index, const fx_ce_options *opt, const double *sw, double grad_scale,
                        const double *grs, double *loss, double *grad, double *lse) {
    return fx_kernels()->narrow_ce_f64(x, n_rows, n, labels, t, ignore_index, opt, sw, grad_scale, grs, loss, grad,
                                        lse);
}

void fx_lse_scan_row_f32(const float *x, int64_t n, double *m, double *s) {
    fx_kernels()->lse_scan_f32(x, n, m, s);
}
void fx_write_row_f32(const float *x, int64_t n, int take_log, double shift, double k, int flags,
                      float *out) {
    fx_kernels()->write_f32(x, n, take_log, shift, k, flags, out);
}

void fx_lse_scan_row_f64(const double *x, int64_t n, double *m, double *s) {
    fx_kernels()->lse_scan_f64(x, n, m, s);
}
void fx_write_row_f64(const double *x, int64_t n, int take_log, double shift, double k, int flags,
                      double *out) {
    fx_kernels()->write_f64(x, n, take_log, shift, k, flags, out);
}

int64_t fx_count_labels(const int64_t *labels, int64_t n, int64_t n_classes, int64_t ignore_index,
                        int64_t *bad) {
    return fx_kernels()->count_labels(labels, n, n_classes, ignore_index, bad);
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
