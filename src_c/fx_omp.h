/* fx_omp.h -- OpenMP queries that also compile without OpenMP (serial build). */
#ifndef FX_OMP_H
#define FX_OMP_H
#ifdef _OPENMP
#include <omp.h>
static inline int fx_omp_enabled(void) { return 1; }
static inline int fx_omp_max_threads(void) { return omp_get_max_threads(); }
static inline int fx_omp_num_procs(void) { return omp_get_num_procs(); }
#else
static inline int fx_omp_enabled(void) { return 0; }
static inline int fx_omp_max_threads(void) { return 1; }
static inline int fx_omp_num_procs(void) { return 1; }
#endif
#endif
