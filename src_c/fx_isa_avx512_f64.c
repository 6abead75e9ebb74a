/* The float64 half of fx_isa_avx512.c, a unit of its own (fx_isa_unit.h). */
#define FX_UNIT_DTYPE 64
#include "fx_isa_avx512.c"
