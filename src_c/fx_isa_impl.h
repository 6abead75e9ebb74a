/*
 * fx_isa_impl.h -- every kernel of one instruction set, for the dtypes that
 * FX_UNIT_F32 and FX_UNIT_F64 select.  Included by fx_isa_unit.h with FX_ISA
 * set (no include guard on purpose).
 */
#include "fx_vecmath.h"

/* Dtype-free: labels not ignore_index, and those of them outside
 * [0, n_classes) in *bad.  Branch-free so that it vectorises: one pass at
 * memory speed (the scalar loop of the Cython layer ran at ~10 GB/s). */
static int64_t FXV(fx_count_labels)(const int64_t *labels, int64_t n, int64_t n_classes, int64_t ignore_index,
                                    int64_t *bad) {
    int64_t live = 0, nbad = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t y = labels[i], l = y != ignore_index;
        live += l;
        nbad += l & ((uint64_t)y >= (uint64_t)n_classes);
    }
    *bad = nbad;
    return live;
}

#if FX_UNIT_F32
#define FX_T float
#define FX_TBYTES 4
#define FX_V fx_vf32
#define FX_VMEM fx_vf32_mem
#define FX_VI fx_vi32
#define FX_L FX_LANES_F32
#define FX_EXP FXV(fx_exp_f32)
#define FX_EXP_NEG FXV(fx_exp_neg_f32)
#define FX_EXP_FLOOR FXV(fx_exp_floor_f32)
#define FX_EXP_SUM FXV(fx_exp_sum_f32)
#define FX_MAX FX_MAX_F32
#define FX_LOG FXV(fx_log_f32)
#define FX_SEL FXV(fx_sel_f32)
#define FX_BC FXV(fx_bcast_f32)
#define FX_SFX _f32
#define FX_LOADP FXV(fx_loadp_f32)
#define FX_STOREP FXV(fx_storep_f32)
#define FX_STREAM FX_STREAM_F32
#define FX_STREAM1 FX_STREAM1_F32
#include "fx_rows_impl.h"
#include "fx_narrow_impl.h" /* before the column kernels, which use it */
#include "fx_cols_impl.h"
#include "fx_prob_impl.h"
#undef FX_T
#undef FX_TBYTES
#undef FX_V
#undef FX_VMEM
#undef FX_VI
#undef FX_L
#undef FX_EXP
#undef FX_EXP_NEG
#undef FX_EXP_FLOOR
#undef FX_EXP_SUM
#undef FX_MAX
#undef FX_LOG
#undef FX_SEL
#undef FX_BC
#undef FX_SFX
#undef FX_LOADP
#undef FX_STOREP
#undef FX_STREAM
#undef FX_STREAM1
#endif

#if FX_UNIT_F64
#define FX_T double
#define FX_TBYTES 8
#define FX_V fx_vf64
#define FX_VMEM fx_vf64_mem
#define FX_VI fx_vi64
#define FX_L FX_LANES_F64
#define FX_EXP FXV(fx_exp_f64)
#define FX_EXP_NEG FXV(fx_exp_neg_f64)
#define FX_EXP_FLOOR FXV(fx_exp_floor_f64)
#define FX_EXP_SUM FXV(fx_exp_sum_f64)
#define FX_MAX FX_MAX_F64
#define FX_LOG FXV(fx_log_f64)
#define FX_SEL FXV(fx_sel_f64)
#define FX_BC FXV(fx_bcast_f64)
#define FX_SFX _f64
#define FX_LOADP FXV(fx_loadp_f64)
#define FX_STOREP FXV(fx_storep_f64)
#define FX_STREAM FX_STREAM_F64
#define FX_STREAM1 FX_STREAM1_F64
#include "fx_rows_impl.h"
#include "fx_narrow_impl.h" /* before the column kernels, which use it */
#include "fx_cols_impl.h"
#include "fx_prob_impl.h"
#undef FX_T
#undef FX_TBYTES
#undef FX_V
#undef FX_VMEM
#undef FX_VI
#undef FX_L
#undef FX_EXP
#undef FX_EXP_NEG
#undef FX_EXP_FLOOR
#undef FX_EXP_SUM
#undef FX_MAX
#undef FX_LOG
#undef FX_SEL
#undef FX_BC
#undef FX_SFX
#undef FX_LOADP
#undef FX_STOREP
#undef FX_STREAM
#undef FX_STREAM1
#endif
#undef FXV
#undef FX_STREAM_F32
#undef FX_STREAM_F64
#undef FX_STREAM1_F32
#undef FX_STREAM1_F64
#undef FX_SFENCE
#undef FX_MAX_F32
#undef FX_MAX_F64
#undef FX_MIN_F32
#undef FX_MIN_F64
#undef fx_vf32
#undef fx_vi32
#undef fx_vf64
#undef fx_vi64
#undef fx_vf32_mem
#undef fx_vf64_mem
#undef FX_LANES_F32
#undef FX_LANES_F64
