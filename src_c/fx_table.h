/*
 * fx_table.h -- the table of one instruction set's kernels, which
 * fx_kernels.c dispatches through, and the three tables' names.
 * Internal: not part of the C API (fastxent.h).
 */
#ifndef FX_TABLE_H
#define FX_TABLE_H
#include <stdint.h>
#include "fastxent.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FX_HAVE_X86_PATHS 1
#else
#define FX_HAVE_X86_PATHS 0
#endif

typedef struct {
    double (*lse_f32)(const float *, int64_t);
    double (*lse_f64)(const double *, int64_t);
    double (*softmax_f32)(const float *, int64_t, float *, int);
    double (*softmax_f64)(const double *, int64_t, double *, int);
    double (*log_softmax_f32)(const float *, int64_t, float *, int);
    double (*log_softmax_f64)(const double *, int64_t, double *, int);
    double (*ce_label_f32)(const float *, int64_t, int64_t, const fx_ce_options *, double, float *,
                           double *);
    double (*ce_label_f64)(const double *, int64_t, int64_t, const fx_ce_options *, double, double *,
                           double *);
    double (*ce_prob_f32)(const float *, const float *, int64_t, const fx_ce_options *, double,
                          float *, double *);
    double (*ce_prob_f64)(const double *, const double *, int64_t, const fx_ce_options *, double,
                          double *, double *);
    void (*lse_cols_f32)(const float *, int64_t, int64_t, int64_t, double *);
    void (*lse_cols_f64)(const double *, int64_t, int64_t, int64_t, double *);
    void (*softmax_cols_f32)(const float *, int64_t, int64_t, int64_t, float *, int);
    void (*softmax_cols_f64)(const double *, int64_t, int64_t, int64_t, double *, int);
    void (*ce_cols_f32)(const float *, const float *, const int64_t *, int64_t, int64_t, int64_t,
                        const fx_ce_options *, const double *, float *, double *, double *);
    void (*ce_cols_f64)(const double *, const double *, const int64_t *, int64_t, int64_t, int64_t,
                        const fx_ce_options *, const double *, double *, double *, double *);
    double (*nll_prob_f32)(const float *, const float *, int64_t, int64_t, const fx_ce_options *,
                           double, double, float *);
    double (*nll_prob_f64)(const double *, const double *, int64_t, int64_t, const fx_ce_options *,
                           double, double, double *);
    double (*entropy_f32)(const float *, int64_t);
    double (*entropy_f64)(const double *, int64_t);
    double (*kl_f32)(const float *, const float *, int64_t);
    double (*kl_f64)(const double *, const double *, int64_t);
    double (*bce_f32)(const float *, const float *, int64_t, const float *, const float *, double, int,
                      double, const float *, float *, float *, int64_t *);
    double (*bce_f64)(const double *, const double *, int64_t, const double *, const double *, double,
                      int, double, const double *, double *, double *, int64_t *);
    void (*softcap_f32)(const float *, int64_t, double, float *);
    void (*softcap_f64)(const double *, int64_t, double, double *);
    void (*softcap_grad_f32)(const float *, int64_t, double, float *);
    void (*softcap_grad_f64)(const double *, int64_t, double, double *);
    void (*narrow_lse_f32)(const float *, int64_t, int64_t, float *);
    void (*narrow_lse_f64)(const double *, int64_t, int64_t, double *);
    void (*narrow_softmax_f32)(const float *, int64_t, int64_t, float *, int);
    void (*narrow_softmax_f64)(const double *, int64_t, int64_t, double *, int);
    double (*narrow_ce_f32)(const float *, int64_t, int64_t, const int64_t *, const float *, int64_t,
                            const fx_ce_options *, const double *, double, const double *, float *, float *,
                            float *);
    double (*narrow_ce_f64)(const double *, int64_t, int64_t, const int64_t *, const double *, int64_t,
                            const fx_ce_options *, const double *, double, const double *, double *, double *,
                            double *);
    void (*lse_scan_f32)(const float *, int64_t, double *, double *);
    void (*lse_scan_f64)(const double *, int64_t, double *, double *);
    void (*write_f32)(const float *, int64_t, int, double, double, int, float *);
    void (*write_f64)(const double *, int64_t, int, double, double, int, double *);
    int64_t (*count_labels)(const int64_t *, int64_t, int64_t, int64_t, int64_t *);
    void (*lse_rows_f32)(const float *, int64_t, int64_t, float *);
    void (*lse_rows_f64)(const double *, int64_t, int64_t, double *);
    void (*narrow_entropy_f32)(const float *, int64_t, int64_t, double *);
    void (*narrow_entropy_f64)(const double *, int64_t, int64_t, double *);
    void (*narrow_kl_f32)(const float *, const float *, int64_t, int64_t, double *);
    void (*narrow_kl_f64)(const double *, const double *, int64_t, int64_t, double *);
    void (*softmax_rows_f32)(const float *, int64_t, int64_t, float *, int, int);
    void (*softmax_rows_f64)(const double *, int64_t, int64_t, double *, int, int);
    double (*ce_label_rows_f32)(const float *, int64_t, int64_t, const int64_t *, int64_t, const float *,
                                const double *, double, const double *, int, float *, float *, float *);
    double (*ce_label_rows_f64)(const double *, int64_t, int64_t, const int64_t *, int64_t, const double *,
                                const double *, double, const double *, int, double *, double *, double *);
} fx_table;

extern const fx_table fx_table_baseline;
#if FX_HAVE_X86_PATHS
extern const fx_table fx_table_avx2;
extern const fx_table fx_table_avx512;
#endif

#endif /* FX_TABLE_H */
