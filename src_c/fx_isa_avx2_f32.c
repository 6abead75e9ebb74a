/* The float32 half of fx_isa_avx2.c, a unit of its own (fx_isa_unit.h). */
#define FX_UNIT_DTYPE 32
#include "fx_isa_avx2.c"
