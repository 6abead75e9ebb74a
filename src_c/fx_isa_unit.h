/*
 * fx_isa_unit.h -- the body of one instruction set's translation unit
 * (fx_isa_avx512.c, fx_isa_avx2.c, fx_isa_baseline.c): every kernel compiled
 * for that ISA, and its dispatch table fx_table<FX_ISA>.
 *
 * Set before including: FX_ISA (name suffix), FX_VBYTES (register width:
 * 64 zmm, 32 ymm, 16 xmm) and, except for the baseline, FX_TARGET (the
 * target attribute string).  The kernels are static; only the table is
 * seen from outside, so a unit can be its own object file (setup.py builds
 * the three in parallel) or be #included into fx_kernels.c (one file for
 * users who compile the kernels into their own extension or program).
 */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stdint.h>
#include "fx_table.h"
#if defined(__x86_64__) || defined(__i386__)
/* Before any target pragma, so each intrinsic keeps its own target. */
#include <immintrin.h>
#endif

#define FX_PRAGMA(text) _Pragma(#text)
#define FX_TARGET_PUSH(features) FX_PRAGMA(GCC target(features))
#define FX_CLANG_TARGET_PUSH(features) \
    FX_PRAGMA(clang attribute push(__attribute__((target(features))), apply_to = function))

#ifdef FX_TARGET
#if defined(__clang__)
FX_CLANG_TARGET_PUSH(FX_TARGET)
#else
#pragma GCC push_options
FX_TARGET_PUSH(FX_TARGET)
#endif
#endif

#include "fx_isa_impl.h"

#ifdef FX_TARGET
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

/* In the order of fx_table's fields (fx_table.h).  FX_TABLE expands FX_ISA
 * before FX_TABLE_NAMED pastes it onto the names. */
#define FX_TABLE_NAMED(isa)                                                                \
    {                                                                                      \
        fx_logsumexp_row_f32##isa, fx_logsumexp_row_f64##isa, fx_softmax_row_f32##isa,     \
        fx_softmax_row_f64##isa, fx_log_softmax_row_f32##isa, fx_log_softmax_row_f64##isa, \
        fx_ce_label_row_f32##isa, fx_ce_label_row_f64##isa, fx_ce_prob_row_f32##isa,       \
        fx_ce_prob_row_f64##isa, fx_logsumexp_cols_f32##isa, fx_logsumexp_cols_f64##isa,   \
        fx_softmax_cols_f32##isa, fx_softmax_cols_f64##isa, fx_ce_cols_f32##isa,           \
        fx_ce_cols_f64##isa, fx_nll_prob_row_f32##isa, fx_nll_prob_row_f64##isa,           \
        fx_entropy_row_f32##isa, fx_entropy_row_f64##isa, fx_kl_row_f32##isa,              \
        fx_kl_row_f64##isa, fx_bce_f32##isa, fx_bce_f64##isa,                              \
        fx_softcap_row_f32##isa, fx_softcap_row_f64##isa, fx_softcap_grad_row_f32##isa,    \
        fx_softcap_grad_row_f64##isa, fx_narrow_lse_f32##isa, fx_narrow_lse_f64##isa,      \
        fx_narrow_softmax_f32##isa, fx_narrow_softmax_f64##isa, fx_narrow_ce_f32##isa,     \
        fx_narrow_ce_f64##isa, fx_lse_scan_row_f32##isa, fx_lse_scan_row_f64##isa,         \
        fx_write_row_f32##isa, fx_write_row_f64##isa, fx_count_labels##isa,                \
        fx_logsumexp_rows_f32##isa, fx_logsumexp_rows_f64##isa, fx_narrow_entropy_f32##isa, \
        fx_narrow_entropy_f64##isa, fx_narrow_kl_f32##isa, fx_narrow_kl_f64##isa,          \
        fx_softmax_rows_f32##isa,                                                          \
        fx_softmax_rows_f64##isa, fx_ce_label_rows_f32##isa, fx_ce_label_rows_f64##isa     \
    }
#define FX_TABLE(isa) FX_TABLE_NAMED(isa)

const fx_table FX_CAT(fx_table, FX_ISA) = FX_TABLE(FX_ISA);

#undef FX_TABLE
#undef FX_TABLE_NAMED
#undef FX_CLANG_TARGET_PUSH
#undef FX_TARGET_PUSH
#undef FX_PRAGMA
#undef FX_ISA
#undef FX_VBYTES
#undef FX_TARGET
