/*
 * fx_isa_unit.h -- the body of one instruction set's translation unit
 * (fx_isa_avx512.c, fx_isa_avx2.c, fx_isa_baseline.c): every kernel compiled
 * for that ISA, and its dispatch tables fx_table_f32<FX_ISA> and
 * fx_table_f64<FX_ISA>.
 *
 * Set before including: FX_ISA (name suffix), FX_VBYTES (register width:
 * 64 zmm, 32 ymm, 16 xmm) and, except for the baseline, FX_TARGET (the
 * target attribute string); optionally FX_UNIT_DTYPE, 32 or 64, for one
 * dtype's kernels only.  The kernels are static; only the tables are seen
 * from outside, so a unit can be its own object file (setup.py builds each
 * ISA's float32 and float64 halves, fx_isa_<isa>_f32.c and _f64.c, as six
 * units in parallel: one unit an ISA left two jobs on two CPUs unbalanced)
 * or be #included into fx_kernels.c (one file for users who compile the
 * kernels into their own extension or program).
 */
#ifdef FX_UNIT_DTYPE
#define FX_UNIT_F32 (FX_UNIT_DTYPE == 32)
#define FX_UNIT_F64 (FX_UNIT_DTYPE == 64)
#else
#define FX_UNIT_F32 1
#define FX_UNIT_F64 1
#endif
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

/* In the order of FX_TABLE_FIELDS (fx_table.h).  FX_TABLE expands FX_ISA
 * before FX_TABLE_NAMED pastes it onto the names. */
#define FX_TABLE_NAMED(sfx, isa)                                                                     \
    {                                                                                                \
        fx_logsumexp_row##sfx##isa, fx_softmax_row##sfx##isa, fx_log_softmax_row##sfx##isa,          \
        fx_ce_label_row##sfx##isa, fx_ce_prob_row##sfx##isa, fx_logsumexp_cols##sfx##isa,            \
        fx_softmax_cols##sfx##isa, fx_ce_cols##sfx##isa, fx_nll_prob_row##sfx##isa,                  \
        fx_entropy_row##sfx##isa, fx_kl_row##sfx##isa, fx_bce##sfx##isa, fx_softcap_row##sfx##isa,   \
        fx_softcap_grad_row##sfx##isa, fx_narrow_lse##sfx##isa, fx_narrow_softmax##sfx##isa,         \
        fx_narrow_ce##sfx##isa, fx_lse_scan_row##sfx##isa, fx_write_row##sfx##isa, fx_count_labels##isa, \
        fx_logsumexp_rows##sfx##isa, fx_narrow_entropy##sfx##isa, fx_narrow_kl##sfx##isa,            \
        fx_softmax_rows##sfx##isa, fx_ce_label_rows##sfx##isa                                        \
    }
#define FX_TABLE(sfx, isa) FX_TABLE_NAMED(sfx, isa)

#if FX_UNIT_F32
const fx_table_f32 FX_CAT(fx_table_f32, FX_ISA) = FX_TABLE(_f32, FX_ISA);
#endif
#if FX_UNIT_F64
const fx_table_f64 FX_CAT(fx_table_f64, FX_ISA) = FX_TABLE(_f64, FX_ISA);
#endif

#undef FX_TABLE
#undef FX_TABLE_NAMED
#undef FX_CLANG_TARGET_PUSH
#undef FX_TARGET_PUSH
#undef FX_PRAGMA
#undef FX_ISA
#undef FX_VBYTES
#undef FX_TARGET
#undef FX_UNIT_F32
#undef FX_UNIT_F64
#undef FX_UNIT_DTYPE
