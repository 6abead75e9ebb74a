/* Every kernel compiled for AVX2 with FMA (fx_isa_unit.h). */
#include "fx_table.h"
#if FX_HAVE_X86_PATHS
#define FX_ISA _avx2
#define FX_VBYTES 32
#define FX_TARGET "avx2,fma"
#include "fx_isa_unit.h"
#endif
