/* Every kernel compiled for AVX-512 (F, DQ, BW, VL) with AVX2 and FMA (fx_isa_unit.h). */
#include "fx_table.h"
#if FX_HAVE_X86_PATHS
#define FX_ISA _avx512
#define FX_VBYTES 64
#define FX_TARGET "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"
#include "fx_isa_unit.h"
#endif
