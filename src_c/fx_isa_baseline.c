/* Every kernel compiled for the baseline of the build, SSE2 on x86-64 (fx_isa_unit.h). */
#define FX_ISA _baseline
#define FX_VBYTES 16
#include "fx_isa_unit.h"
