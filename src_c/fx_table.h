/*
 * fx_table.h -- the tables of one instruction set's kernels (one a dtype),
 * which fx_kernels.c dispatches through, and the six tables' names.
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

/* One dtype's kernels for one instruction set (T: float or double).  The
 * dtype-free count_labels is in both tables, so that each dtype can be a
 * unit of its own (fx_isa_unit.h). */
#define FX_TABLE_FIELDS(T)                                                                                    \
    double (*lse)(const T *, int64_t);                                                                        \
    double (*softmax)(const T *, int64_t, T *, int);                                                          \
    double (*log_softmax)(const T *, int64_t, T *, int);                                                      \
    double (*ce_label)(const T *, int64_t, int64_t, const fx_ce_options *, double, T *, double *);            \
    double (*ce_prob)(const T *, const T *, int64_t, const fx_ce_options *, double, T *, double *);           \
    void (*lse_cols)(const T *, int64_t, int64_t, int64_t, double *);                                         \
    void (*softmax_cols)(const T *, int64_t, int64_t, int64_t, T *, int);                                     \
    void (*ce_cols)(const T *, const T *, const int64_t *, int64_t, int64_t, int64_t, const fx_ce_options *,  \
        const double *, T *, double *, double *);                                                             \
    double (*nll_prob)(const T *, const T *, int64_t, int64_t, const fx_ce_options *, double, double, T *);   \
    double (*entropy)(const T *, int64_t);                                                                    \
    double (*kl)(const T *, const T *, int64_t);                                                              \
    double (*bce)(const T *, const T *, int64_t, const T *, const T *, double, int, double, const T *, T *,   \
        T *, int64_t *);                                                                                      \
    void (*softcap)(const T *, int64_t, double, T *);                                                         \
    void (*softcap_grad)(const T *, int64_t, double, T *);                                                    \
    void (*narrow_lse)(const T *, int64_t, int64_t, T *);                                                     \
    void (*narrow_softmax)(const T *, int64_t, int64_t, T *, int);                                            \
    double (*narrow_ce)(const T *, int64_t, int64_t, const int64_t *, const T *, int64_t,                     \
        const fx_ce_options *, const double *, double, const double *, T *, T *, T *);                        \
    void (*lse_scan)(const T *, int64_t, double *, double *);                                                 \
    void (*write)(const T *, int64_t, int, double, double, int, T *);                                         \
    int64_t (*count_labels)(const int64_t *, int64_t, int64_t, int64_t, int64_t *);                           \
    void (*lse_rows)(const T *, int64_t, int64_t, T *);                                                       \
    void (*narrow_entropy)(const T *, int64_t, int64_t, double *);                                            \
    void (*narrow_kl)(const T *, const T *, int64_t, int64_t, double *);                                      \
    void (*softmax_rows)(const T *, int64_t, int64_t, T *, int, int);                                         \
    double (*ce_label_rows)(const T *, int64_t, int64_t, const int64_t *, int64_t, const T *, const double *, \
        double, const double *, int, T *, T *, T *);

typedef struct {
    FX_TABLE_FIELDS(float)
} fx_table_f32;
typedef struct {
    FX_TABLE_FIELDS(double)
} fx_table_f64;

extern const fx_table_f32 fx_table_f32_baseline;
extern const fx_table_f64 fx_table_f64_baseline;
#if FX_HAVE_X86_PATHS
extern const fx_table_f32 fx_table_f32_avx2;
extern const fx_table_f64 fx_table_f64_avx2;
extern const fx_table_f32 fx_table_f32_avx512;
extern const fx_table_f64 fx_table_f64_avx512;
#endif

#endif /* FX_TABLE_H */
