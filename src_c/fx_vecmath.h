/*
 * fx_vecmath.h -- portable native-width vectors (GCC/Clang vector extensions) and
 * a vectorised exp for float32 and float64.
 *
 * Included once per instruction set by fx_isa_unit.h, inside a
 * `#pragma GCC target` region, with FX_ISA set to a name suffix and
 * FX_VBYTES to the register width (64 zmm, 32 ymm, 16 xmm).
 * Nothing here depends on -ffast-math: every special value is handled by an
 * explicit mask, so inf and NaN survive.
 */
#ifndef FX_VECMATH_TYPES
#define FX_VECMATH_TYPES
#include <stdint.h>
#include <string.h>
#include <math.h>
/* immintrin.h must come before any `#pragma GCC target` (fx_isa_unit.h). */

#define FX_CAT2(a, b) a##b
#define FX_CAT(a, b) FX_CAT2(a, b)
#define FX_ALWAYS_INLINE static inline __attribute__((always_inline))
/* The kernels' structure (blocks, passes, layouts): inlined where they are
 * used when optimising, so that their constant arguments fold away; left as
 * calls at -O0 (the sanitizer build), where nothing folds and the inlined
 * copies of every path took 130 s to compile for the AVX-512 unit alone. */
#ifdef __OPTIMIZE__
#define FX_FOLD_INLINE FX_ALWAYS_INLINE
#else
#define FX_FOLD_INLINE static inline
#endif
/* GCC before 12 has only __builtin_shuffle (same code for constant masks). */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define FX_SHUF(IT, a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define FX_SHUF(IT, a, b, ...) __builtin_shuffle(a, b, (IT){__VA_ARGS__})
#endif

/* The clamps of the exps without AVX-512: exp(lo) is about the least
 * normal number (2^-126, 2^-1022), exp(hi) finite. */
#define FX_EXP_LO_F32 -87.33f
#define FX_EXP_LO_F64 -708.39
#define FX_EXP_HI_F32 88.0f
#define FX_EXP_HI_F64 709.0

#endif /* FX_VECMATH_TYPES */

/* Everything below is emitted once per ISA (the suffix keeps them apart).
 * FX_VBYTES is the native register width of the ISA: vectors wider than
 * the hardware's are split badly by GCC (comparisons become scalar). */
#define FXV(name) FX_CAT(name, FX_ISA)
#define fx_vf32 FXV(fx_vf32_)
#define fx_vi32 FXV(fx_vi32_)
#define fx_vf64 FXV(fx_vf64_)
#define fx_vi64 FXV(fx_vi64_)
#define FX_LANES_F32 (FX_VBYTES / 4)
#define FX_LANES_F64 (FX_VBYTES / 8)
/* aligned(4)/aligned(8): the vectors are loaded from unaligned row pointers. */
typedef float fx_vf32 __attribute__((vector_size(FX_VBYTES), aligned(4)));
typedef int32_t fx_vi32 __attribute__((vector_size(FX_VBYTES), aligned(4)));
typedef double fx_vf64 __attribute__((vector_size(FX_VBYTES), aligned(8)));
typedef int64_t fx_vi64 __attribute__((vector_size(FX_VBYTES), aligned(8)));
/* Loads and stores go through may_alias types: memcpy of a vector under a
 * target pragma is split into 16-byte moves and stalls store forwarding. */
#define fx_vf32_mem FXV(fx_vf32m_)
#define fx_vf64_mem FXV(fx_vf64m_)
typedef float fx_vf32_mem __attribute__((vector_size(FX_VBYTES), aligned(4), may_alias));
typedef double fx_vf64_mem __attribute__((vector_size(FX_VBYTES), aligned(8), may_alias));

/* Non-temporal (streaming) stores to an FX_VBYTES-aligned address: they skip
 * the read-for-ownership of the destination, so a large output costs one
 * write instead of a read and a write. */
#if (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 64
#define FX_STREAM_F32(p, v) _mm512_stream_ps((p), (__m512)(v))
#define FX_STREAM_F64(p, v) _mm512_stream_pd((p), (__m512d)(v))
#define FX_SFENCE() _mm_sfence()
#elif (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 32
#define FX_STREAM_F32(p, v) _mm256_stream_ps((p), (__m256)(v))
#define FX_STREAM_F64(p, v) _mm256_stream_pd((p), (__m256d)(v))
#define FX_SFENCE() _mm_sfence()
#elif (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2__)
#define FX_STREAM_F32(p, v) _mm_stream_ps((p), (__m128)(v))
#define FX_STREAM_F64(p, v) _mm_stream_pd((p), (__m128d)(v))
#define FX_SFENCE() _mm_sfence()
#else
#define FX_STREAM_F32(p, v) (*(fx_vf32 *)(p) = (v))
#define FX_STREAM_F64(p, v) (*(fx_vf64 *)(p) = (v))
#define FX_SFENCE() ((void)0)
#endif
/* One element, non-temporal where the ISA has it (movnti). */
#if defined(__x86_64__)
#define FX_STREAM1_F32(p, v) _mm_stream_si32((int *)(p), ((union { float f; int i; }){.f = (v)}).i)
#define FX_STREAM1_F64(p, v) _mm_stream_si64((long long *)(p), ((union { double f; long long i; }){.f = (v)}).i)
#else
#define FX_STREAM1_F32(p, v) (*(p) = (v))
#define FX_STREAM1_F64(p, v) (*(p) = (v))
#endif

/* The lower and upper half of a float32 vector's lanes. */
#undef FX_HALF_LO
#undef FX_HALF_HI
#if FX_VBYTES == 64
#define FX_HALF_LO 0, 1, 2, 3, 4, 5, 6, 7
#define FX_HALF_HI 8, 9, 10, 11, 12, 13, 14, 15
#elif FX_VBYTES == 32
#define FX_HALF_LO 0, 1, 2, 3
#define FX_HALF_HI 4, 5, 6, 7
#else
#define FX_HALF_LO 0, 1
#define FX_HALF_HI 2, 3
#endif
#define fx_vf32h FXV(fx_vf32h_)
#define fx_vi32h FXV(fx_vi32h_)
typedef float fx_vf32h __attribute__((vector_size(FX_VBYTES / 2)));
typedef int32_t fx_vi32h __attribute__((vector_size(FX_VBYTES / 2)));

/* A float32 vector's lanes in double, lane i + lanes/2 added to lane i. */
FX_ALWAYS_INLINE fx_vf64 FXV(fx_fold_f32)(fx_vf32 v) {
    const fx_vf32h lo = FX_SHUF(fx_vi32h, v, v, FX_HALF_LO), hi = FX_SHUF(fx_vi32h, v, v, FX_HALF_HI);
    return __builtin_convertvector(lo, fx_vf64) + __builtin_convertvector(hi, fx_vf64);
}

/* Sum of the lanes as a tree in registers: lane i + w/2 added to lane i
 * for w = lanes, lanes/2, ..., 2 (a loop over a stack buffer in the same
 * order cost ~12% of a float32 log-sum-exp: it ran once per 1024 elements). */
FX_ALWAYS_INLINE double FXV(fx_tree_sum_f64)(fx_vf64 v) {
#if FX_VBYTES == 64
    typedef double d4 __attribute__((vector_size(32)));
    typedef int64_t i4 __attribute__((vector_size(32), unused));
    const d4 h = FX_SHUF(i4, v, v, 0, 1, 2, 3) + FX_SHUF(i4, v, v, 4, 5, 6, 7);
    return (h[0] + h[2]) + (h[1] + h[3]);
#elif FX_VBYTES == 32
    typedef double d2 __attribute__((vector_size(16)));
    typedef int64_t i2 __attribute__((vector_size(16), unused));
    const d2 h = FX_SHUF(i2, v, v, 0, 1) + FX_SHUF(i2, v, v, 2, 3);
    return h[0] + h[1];
#else
    return v[0] + v[1];
#endif
}

/* Broadcasts through the ISA's set1 (a lane-by-lane loop compiles to one
 * masked insert per lane). */
#if (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 64
FX_ALWAYS_INLINE fx_vf32 FXV(fx_bcast_f32)(float s) { return (fx_vf32)_mm512_set1_ps(s); }
FX_ALWAYS_INLINE fx_vf64 FXV(fx_bcast_f64)(double s) { return (fx_vf64)_mm512_set1_pd(s); }
#elif (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 32
FX_ALWAYS_INLINE fx_vf32 FXV(fx_bcast_f32)(float s) { return (fx_vf32)_mm256_set1_ps(s); }
FX_ALWAYS_INLINE fx_vf64 FXV(fx_bcast_f64)(double s) { return (fx_vf64)_mm256_set1_pd(s); }
#elif (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2__)
FX_ALWAYS_INLINE fx_vf32 FXV(fx_bcast_f32)(float s) { return (fx_vf32)_mm_set1_ps(s); }
FX_ALWAYS_INLINE fx_vf64 FXV(fx_bcast_f64)(double s) { return (fx_vf64)_mm_set1_pd(s); }
#else
FX_ALWAYS_INLINE fx_vf32 FXV(fx_bcast_f32)(float s) {
    fx_vf32 v;
    for (int i = 0; i < FX_LANES_F32; i++) v[i] = s;
    return v;
}
FX_ALWAYS_INLINE fx_vf64 FXV(fx_bcast_f64)(double s) {
    fx_vf64 v;
    for (int i = 0; i < FX_LANES_F64; i++) v[i] = s;
    return v;
}
#endif
/*
 * The first len (< lanes) elements of p, the other lanes set to fill, and
 * the matching partial store: masked moves where the ISA has them (no
 * access past the row, no store-forwarding stall), a stack copy otherwise.
 */
#if (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 64
FX_ALWAYS_INLINE fx_vf32 FXV(fx_loadp_f32)(const float *p, int64_t len, float fill) {
    return (fx_vf32)_mm512_mask_loadu_ps(_mm512_set1_ps(fill), (__mmask16)((1u << len) - 1), p);
}
FX_ALWAYS_INLINE fx_vf64 FXV(fx_loadp_f64)(const double *p, int64_t len, double fill) {
    return (fx_vf64)_mm512_mask_loadu_pd(_mm512_set1_pd(fill), (__mmask8)((1u << len) - 1), p);
}
FX_ALWAYS_INLINE void FXV(fx_storep_f32)(float *p, fx_vf32 v, int64_t len) {
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << len) - 1), (__m512)v);
}
FX_ALWAYS_INLINE void FXV(fx_storep_f64)(double *p, fx_vf64 v, int64_t len) {
    _mm512_mask_storeu_pd(p, (__mmask8)((1u << len) - 1), (__m512d)v);
}
#elif (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 32
/* AVX2: VMASKMOV with a lane mask from iota < len (masked-out lanes are not
 * accessed, so no fault past the row). */
FX_ALWAYS_INLINE __m256i FXV(fx_partmask32)(int64_t len) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)len), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
FX_ALWAYS_INLINE __m256i FXV(fx_partmask64)(int64_t len) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(len), _mm256_setr_epi64x(0, 1, 2, 3));
}
FX_ALWAYS_INLINE fx_vf32 FXV(fx_loadp_f32)(const float *p, int64_t len, float fill) {
    const __m256i k = FXV(fx_partmask32)(len);
    return (fx_vf32)_mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, k), _mm256_castsi256_ps(k));
}
FX_ALWAYS_INLINE fx_vf64 FXV(fx_loadp_f64)(const double *p, int64_t len, double fill) {
    const __m256i k = FXV(fx_partmask64)(len);
    return (fx_vf64)_mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, k), _mm256_castsi256_pd(k));
}
FX_ALWAYS_INLINE void FXV(fx_storep_f32)(float *p, fx_vf32 v, int64_t len) {
    _mm256_maskstore_ps(p, FXV(fx_partmask32)(len), (__m256)v);
}
FX_ALWAYS_INLINE void FXV(fx_storep_f64)(double *p, fx_vf64 v, int64_t len) {
    _mm256_maskstore_pd(p, FXV(fx_partmask64)(len), (__m256d)v);
}
#else
FX_ALWAYS_INLINE fx_vf32 FXV(fx_loadp_f32)(const float *p, int64_t len, float fill) {
    float buf[FX_LANES_F32];
    for (int i = 0; i < FX_LANES_F32; i++) buf[i] = i < len ? p[i] : fill;
    return *(const fx_vf32_mem *)buf;
}
FX_ALWAYS_INLINE fx_vf64 FXV(fx_loadp_f64)(const double *p, int64_t len, double fill) {
#if (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 16
    /* Not through a buffer: from that, GCC 12 built the vector in MMX
     * registers and never ran EMMS, which broke every later x87 (long
     * double) operation in the process (tests/test_simd_paths.py). */
    const __m128d f = _mm_set1_pd(fill);
    return (fx_vf64)(len >= 2 ? _mm_loadu_pd(p) : len == 1 ? _mm_loadl_pd(f, p) : f);
#else
    double buf[FX_LANES_F64];
    for (int i = 0; i < FX_LANES_F64; i++) buf[i] = i < len ? p[i] : fill;
    return *(const fx_vf64_mem *)buf;
#endif
}
FX_ALWAYS_INLINE void FXV(fx_storep_f32)(float *p, fx_vf32 v, int64_t len) {
    for (int i = 0; i < len; i++) p[i] = v[i];
}
FX_ALWAYS_INLINE void FXV(fx_storep_f64)(double *p, fx_vf64 v, int64_t len) {
    for (int i = 0; i < len; i++) p[i] = v[i];
}
#endif

/* max(v, acc) that skips NaN in v: x86's MAXPS returns its second operand
 * when either is NaN, which is exactly `v > acc ? v : acc` in one op.
 * min(v, acc) likewise: `v < acc ? v : acc`. */
#if (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 64
#define FX_MAX_F32(v, acc) ((fx_vf32)_mm512_max_ps((__m512)(v), (__m512)(acc)))
#define FX_MAX_F64(v, acc) ((fx_vf64)_mm512_max_pd((__m512d)(v), (__m512d)(acc)))
#elif (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 32
#define FX_MAX_F32(v, acc) ((fx_vf32)_mm256_max_ps((__m256)(v), (__m256)(acc)))
#define FX_MAX_F64(v, acc) ((fx_vf64)_mm256_max_pd((__m256d)(v), (__m256d)(acc)))
#define FX_MIN_F32(v, acc) ((fx_vf32)_mm256_min_ps((__m256)(v), (__m256)(acc)))
#define FX_MIN_F64(v, acc) ((fx_vf64)_mm256_min_pd((__m256d)(v), (__m256d)(acc)))
#elif (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2__)
#define FX_MAX_F32(v, acc) ((fx_vf32)_mm_max_ps((__m128)(v), (__m128)(acc)))
#define FX_MAX_F64(v, acc) ((fx_vf64)_mm_max_pd((__m128d)(v), (__m128d)(acc)))
#define FX_MIN_F32(v, acc) ((fx_vf32)_mm_min_ps((__m128)(v), (__m128)(acc)))
#define FX_MIN_F64(v, acc) ((fx_vf64)_mm_min_pd((__m128d)(v), (__m128d)(acc)))
#else
#define FX_MAX_F32(v, acc) FXV(fx_sel_f32)((v) > (acc), (v), (acc))
#define FX_MAX_F64(v, acc) FXV(fx_sel_f64)((v) > (acc), (v), (acc))
#define FX_MIN_F32(v, acc) FXV(fx_sel_f32)((v) < (acc), (v), (acc))
#define FX_MIN_F64(v, acc) FXV(fx_sel_f64)((v) < (acc), (v), (acc))
#endif

FX_ALWAYS_INLINE fx_vf32 FXV(fx_sel_f32)(fx_vi32 mask, fx_vf32 a, fx_vf32 b) {
    return (fx_vf32)(((fx_vi32)a & mask) | ((fx_vi32)b & ~mask));
}
FX_ALWAYS_INLINE fx_vf64 FXV(fx_sel_f64)(fx_vi64 mask, fx_vf64 a, fx_vf64 b) {
    return (fx_vf64)(((fx_vi64)a & mask) | ((fx_vi64)b & ~mask));
}

/*
 * exp for float32 lanes, about 1 ulp on [-87.3, 88.0]: Cephes' expf
 * (range reduction by n = round(x / ln 2) with ln 2 split in two, degree-7
 * polynomial).  Rounding uses the 1.5 * 2^23 trick, so no float->int
 * conversion instruction is needed on any ISA.  Below -87.33 the result is 0
 * (no subnormals: they cannot change a sum that holds exp(0) = 1); above 88.0
 * it is +inf.  Callers pass x - max <= 0, except for rows that hold +inf,
 * whose result is +inf anyway.  NaN lanes stay NaN through the polynomial.
 */
#if FX_VBYTES == 64
/*
 * AVX-512: x = (k + j/16) ln 2 + r with |r| <= ln(2)/32, exp(x) =
 * 2^k * 2^(j/16) * exp(r).  2^(j/16) comes from a 16-entry table held in one
 * register (vpermps takes the low 4 bits of each index lane), so exp(r)
 * needs only a degree-3 polynomial (truncation 1e-8 relative), and 2^k is
 * applied by vscalefps (floor of its exponent operand: k + j/16 -> k),
 * which saturates to 0 and +inf by itself.  Rounding x / ln 2 to sixteenths
 * is the magic-number addition: 1.5 * 2^19 has an ulp of 1/16, and the
 * low mantissa bits of the sum are j.  Max error 1.07 ulp over [-104, 0]
 * (all floats checked; the degree-7 polynomial it replaced: 1.26).
 * The clamp keeps -inf out of the reduction (inf - inf); max(lo, x) returns
 * x when x is NaN (the second operand wins).  fx_exp_neg_f32 is valid for
 * x <= 0 (and -inf, NaN): the kernels use it for x - max once the max is
 * finite.
 */
FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_neg_f32)(fx_vf32 x) {
    const __m512 tab = _mm512_setr_ps(0x1p+0f, 0x1.0b5586p+0f, 0x1.172b84p+0f, 0x1.2387a6p+0f, 0x1.306fep+0f,
                                      0x1.3dea64p+0f, 0x1.4bfdaep+0f, 0x1.5ab07ep+0f, 0x1.6a09e6p+0f,
                                      0x1.7a1148p+0f, 0x1.8ace54p+0f, 0x1.9c4918p+0f, 0x1.ae89fap+0f,
                                      0x1.c199bep+0f, 0x1.d5818ep+0f, 0x1.ea4afap+0f); /* 2^(j/16) */
    const __m512 magic = _mm512_set1_ps(786432.0f);                                       /* 1.5 * 2^19 */
    const __m512 xc = _mm512_max_ps(_mm512_set1_ps(-150.0f), (__m512)x);
    const __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(0x1.715476p+0f), magic);
    const __m512 k = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0x1.62e43p-1f), xc); /* ln 2 in two parts */
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-0x1.05c61p-29f), r);
    __m512 p = _mm512_fmadd_ps(r, _mm512_set1_ps(0x1.555556p-3f), _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512 q = _mm512_mul_ps(p, r); /* exp(r) - 1 */
    const __m512 tj = _mm512_permutexvar_ps(_mm512_castps_si512(t), tab);
    return (fx_vf32)_mm512_scalef_ps(_mm512_fmadd_ps(tj, q, tj), k);
}

/* vscalefps already gives 0 below the clamp: nothing to leave out. */
FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_floor_f32)(fx_vf32 x) { return FXV(fx_exp_neg_f32)(x); }

FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_f32)(fx_vf32 x) {
    /* min(hi, NaN) is NaN (the second operand wins). */
    return FXV(fx_exp_neg_f32)((fx_vf32)_mm512_min_ps(_mm512_set1_ps(128.0f), (__m512)x));
}
FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_sum_f32)(fx_vf32 x) { return FXV(fx_exp_f32)(x); }

/* The same scheme; the table (two registers, vpermt2pd) leaves exp(r) - 1
 * to a degree-6 polynomial r p(r), p fitted to (exp(r) - 1) / r on
 * |r| <= ln(2)/32 (least squares on 200 Chebyshev nodes in 40-digit
 * arithmetic; 7.4e-18 absolute with the coefficients rounded to double).
 * Max error 1.07 ulp over 2e7 samples of [-708, 0] (the degree-7 Taylor
 * polynomial it replaced: 1.02, for one FMA more).  No upper clamp: valid
 * for x < +inf, like fx_exp_neg_f32; fx_exp_f64 adds the clamp. */
FX_ALWAYS_INLINE fx_vf64 FXV(fx_exp_neg_f64)(fx_vf64 x) {
    const __m512d tab0 = _mm512_setr_pd(0x1p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0, 0x1.2387a6e756238p+0,
                                        0x1.306fe0a31b715p+0, 0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0,
                                        0x1.5ab07dd485429p+0);
    const __m512d tab1 = _mm512_setr_pd(0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0, 0x1.8ace5422aa0dbp+0,
                                        0x1.9c49182a3f09p+0, 0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0,
                                        0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0);
    const __m512d magic = _mm512_set1_pd(422212465065984.0); /* 1.5 * 2^48: ulp 1/16 */
    const __m512d xc = _mm512_max_pd(_mm512_set1_pd(-1080.0), (__m512d)x);
    const __m512d t = _mm512_fmadd_pd(xc, _mm512_set1_pd(0x1.71547652b82fep+0), magic);
    const __m512d k = _mm512_sub_pd(t, magic);
    __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(0x1.62e42fefa39efp-1), xc);
    r = _mm512_fnmadd_pd(k, _mm512_set1_pd(0x1.abc9e3b39803fp-56), r);
    static const double c[5] = {0x1.11126eecc014bp-7, 0x1.555555547d378p-5, 0x1.555555540526dp-3, 0x1.0000000000004p-1, 0x1.000000000000ap+0};
    __m512d p = _mm512_fmadd_pd(r, _mm512_set1_pd(0x1.6c1842facdf25p-10), _mm512_set1_pd(c[0]));
    for (int i = 1; i < 5; i++) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c[i]));
    const __m512d q = _mm512_mul_pd(p, r);
    const __m512d tj = _mm512_permutex2var_pd(tab0, _mm512_castpd_si512(t), tab1);
    return (fx_vf64)_mm512_scalef_pd(_mm512_fmadd_pd(tj, q, tj), k);
}

FX_ALWAYS_INLINE fx_vf64 FXV(fx_exp_floor_f64)(fx_vf64 x) { return FXV(fx_exp_neg_f64)(x); }

FX_ALWAYS_INLINE fx_vf64 FXV(fx_exp_f64)(fx_vf64 x) {
    return FXV(fx_exp_neg_f64)((fx_vf64)_mm512_min_pd(_mm512_set1_pd(1025.0), (__m512d)x));
}
FX_ALWAYS_INLINE fx_vf64 FXV(fx_exp_sum_f64)(fx_vf64 x) { return FXV(fx_exp_f64)(x); }
#else
/*
 * Without AVX-512: x = n ln 2 + r, |r| <= ln(2)/2, exp(x) = 2^n exp(r).
 * 2^n is built from the rounding itself: the magic number 1.5 * 2^23 +
 * 127 (1.5 * 2^52 + 1023 for float64) has an ulp of 1, so t = x / ln 2 +
 * magic holds n + bias in its low mantissa bits, and t's bits shifted left
 * by the mantissa width are the bits of 2^n (no float->int conversion, no
 * integer add).  The result is 2^n + 2^n (exp(r) - 1) in one FMA.
 * fx_exp_floor_* is exp(max(x, lo)) (NaN stays NaN: max(lo, x) returns x
 * when x is NaN), valid for x <= hi.  fx_exp_neg_* makes the lanes below lo
 * 0 (-inf included; no subnormals: they cannot change a sum that holds
 * exp(0) = 1) by one AND with x >= lo, which is false for NaN only when
 * x < lo is true.  fx_exp_* also gives +inf above hi, and the same bits as
 * fx_exp_neg_* for x <= 0; fx_exp_sum_* is exp(min(hi, max(lo, x))), for
 * sums whose caller fixes up the rows where that differs (fx_narrow_sum;
 * on AVX-512 it is fx_exp_*, which costs no more).  The selects on both
 * sides that this replaced cost a third of the float64 exp's instructions
 * on AVX2.
 */
#if (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 32
/* AVX2: n + j/8 in the rounding (magic 1.5 * 2^20, ulp 1/8), 2^(j/8) from
 * an 8-entry table in one register (vpermd takes the low 3 bits of t's
 * bits, which are j), so exp(r) - 1 on |r| <= ln(2)/16 needs only the
 * degree-4 Taylor polynomial (truncation 1.3e-9 relative).  Each entry
 * holds the bits of 2^(j/8) less j << 20, so that adding t's bits shifted
 * left by 20, (n << 23) + (j << 20), gives the bits of 2^n 2^(j/8) in one
 * integer add.  Max error 0.90 ulp over every float in [-87, 0] (the
 * polynomial below: 1.0 ulp), for three FMAs fewer: 0.38 -> 0.35 ns an
 * element alone, 1 thread. */
FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_floor_f32)(fx_vf32 x) {
    const __m256i tab = _mm256_setr_epi32(0x3f800000, 0x3f8b95c2 - (1 << 20), 0x3f9837f0 - (2 << 20),
                                          0x3fa5fed7 - (3 << 20), 0x3fb504f3 - (4 << 20), 0x3fc5672a - (5 << 20),
                                          0x3fd744fd - (6 << 20), 0x3feac0c7 - (7 << 20));
    const __m256 lo = _mm256_set1_ps(FX_EXP_LO_F32), magic = _mm256_set1_ps(1572864.0f); /* 1.5 * 2^20 */
    const __m256 xc = _mm256_max_ps(lo, (__m256)x);
    const __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(0x1.715476p+0f), magic);
    const __m256 k = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0x1.62e43p-1f), xc); /* ln 2 in two parts */
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-0x1.05c61p-29f), r);
    __m256 p = _mm256_fmadd_ps(r, _mm256_set1_ps(1.0f / 24), _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256 q = _mm256_mul_ps(p, r); /* exp(r) - 1 */
    const __m256i ti = _mm256_castps_si256(t);
    const __m256 s = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(ti, 20), _mm256_permutevar8x32_epi32(tab, ti)));
    return (fx_vf32)_mm256_fmadd_ps(s, q, s);
}
#else
/* Cephes' expf polynomial: exp(r) - 1 = r + r^2 P(r), P of degree 5. */
FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_floor_f32)(fx_vf32 x) {
    const fx_vf32 lo = FXV(fx_bcast_f32)(FX_EXP_LO_F32), magic = FXV(fx_bcast_f32)(12583039.0f); /* 1.5 * 2^23 + 127 */
    const fx_vf32 xc = FX_MAX_F32(lo, x);
    const fx_vf32 t = xc * FXV(fx_bcast_f32)(1.44269504088896341f) + magic;
    const fx_vf32 n = t - magic;
    fx_vf32 r = xc - n * FXV(fx_bcast_f32)(0.693359375f);
    r = r - n * FXV(fx_bcast_f32)(-2.12194440e-4f);
    fx_vf32 p = FXV(fx_bcast_f32)(1.9875691500e-4f);
    p = p * r + FXV(fx_bcast_f32)(1.3981999507e-3f);
    p = p * r + FXV(fx_bcast_f32)(8.3334519073e-3f);
    p = p * r + FXV(fx_bcast_f32)(4.1665795894e-2f);
    p = p * r + FXV(fx_bcast_f32)(1.6666665459e-1f);
    p = p * r + FXV(fx_bcast_f32)(5.0000001201e-1f);
    const fx_vf32 q = p * (r * r) + r;
    const fx_vf32 scale = (fx_vf32)((fx_vi32)t << 23);
    return scale * q + scale;
}
#endif

FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_neg_f32)(fx_vf32 x) {
    return (fx_vf32)((fx_vi32)FXV(fx_exp_floor_f32)(x) & ~(x < FXV(fx_bcast_f32)(FX_EXP_LO_F32)));
}

FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_f32)(fx_vf32 x) {
    const fx_vf32 hi = FXV(fx_bcast_f32)(FX_EXP_HI_F32);
    const fx_vf32 e = FXV(fx_exp_neg_f32)(FX_MIN_F32(hi, x));
    return FXV(fx_sel_f32)(x > hi, FXV(fx_bcast_f32)(INFINITY), e);
}

FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_sum_f32)(fx_vf32 x) {
    return FXV(fx_exp_floor_f32)(FX_MIN_F32(FXV(fx_bcast_f32)(FX_EXP_HI_F32), x));
}

/* exp(r) = 1 + r + r^2 p(r), p of degree 9 fitted to (exp(r) - 1 - r) / r^2
 * on |r| <= ln(2)/2 for the relative error of exp (least squares on 400
 * Chebyshev nodes in 50-digit arithmetic): 1.2e-17 with the coefficients
 * rounded to double, for two FMAs fewer than the degree-13 Taylor series it
 * replaced. */
FX_ALWAYS_INLINE fx_vf64 FXV(fx_exp_floor_f64)(fx_vf64 x) {
    const fx_vf64 lo = FXV(fx_bcast_f64)(FX_EXP_LO_F64), magic = FXV(fx_bcast_f64)(6755399441056767.0); /* 1.5 * 2^52 + 1023 */
    const fx_vf64 xc = FX_MAX_F64(lo, x);
    const fx_vf64 t = xc * FXV(fx_bcast_f64)(1.4426950408889634074) + magic;
    const fx_vf64 n = t - magic;
    /* fdlibm's ln 2 split: n * hi is exact without an FMA. */
    fx_vf64 r = xc - n * FXV(fx_bcast_f64)(6.93147180369123816490e-01);
    r = r - n * FXV(fx_bcast_f64)(1.90821492927058770002e-10);
    static const double c[9] = {0x1.28afdbfa89bf0p-22, 0x1.71dedfc117959p-19, 0x1.a019970598987p-16,
                                0x1.a01a014a32d85p-13, 0x1.6c16c18581530p-10, 0x1.1111111121b01p-7,
                                0x1.55555555500b2p-5,  0x1.5555555555513p-3,  0x1.000000000000bp-1};
    fx_vf64 p = FXV(fx_bcast_f64)(0x1.adeb8db5d7212p-26);
    for (int i = 0; i < 9; i++) p = p * r + FXV(fx_bcast_f64)(c[i]);
    const fx_vf64 q = p * (r * r) + r;
    const fx_vf64 scale = (fx_vf64)((fx_vi64)t << 52);
    return scale * q + scale;
}

FX_ALWAYS_INLINE fx_vf64 FXV(fx_exp_neg_f64)(fx_vf64 x) {
    return (fx_vf64)((fx_vi64)FXV(fx_exp_floor_f64)(x) & ~(x < FXV(fx_bcast_f64)(FX_EXP_LO_F64)));
}

FX_ALWAYS_INLINE fx_vf64 FXV(fx_exp_f64)(fx_vf64 x) {
    const fx_vf64 hi = FXV(fx_bcast_f64)(FX_EXP_HI_F64);
    const fx_vf64 e = FXV(fx_exp_neg_f64)(FX_MIN_F64(hi, x));
    return FXV(fx_sel_f64)(x > hi, FXV(fx_bcast_f64)(INFINITY), e);
}

FX_ALWAYS_INLINE fx_vf64 FXV(fx_exp_sum_f64)(fx_vf64 x) {
    return FXV(fx_exp_floor_f64)(FX_MIN_F64(FXV(fx_bcast_f64)(FX_EXP_HI_F64), x));
}
#endif /* FX_VBYTES == 64 */

/*
 * log for float32 lanes, about 1 ulp: Cephes' logf (x = 2^e m with m in
 * [sqrt(1/2), sqrt(2)), degree-9 polynomial in m - 1).  Subnormals are
 * scaled first; log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays.
 */
#if FX_VBYTES == 64
/* AVX-512: the same polynomial; getexp/getmant split x exactly (subnormals
 * included, no integer work), getmant gives NaN for x < 0. */
FX_ALWAYS_INLINE fx_vf32 FXV(fx_log_f32)(fx_vf32 xv) {
    const __m512 x = (__m512)xv;
    __m512 m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_nan); /* [1, 2) */
    __m512 e = _mm512_getexp_ps(x);
    const __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356237309505f), _CMP_GT_OQ);
    m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
    e = _mm512_mask_add_ps(e, big, e, _mm512_set1_ps(1.0f));
    const __m512 f = _mm512_sub_ps(m, _mm512_set1_ps(1.0f));
    const __m512 z = _mm512_mul_ps(f, f);
    static const float c[8] = {-1.1514610310e-1f, 1.1676998740e-1f, -1.2420140846e-1f, 1.4249322787e-1f,
                               -1.6668057665e-1f, 2.0000714765e-1f, -2.4999993993e-1f, 3.3333331174e-1f};
    __m512 y = _mm512_set1_ps(7.0376836292e-2f);
    for (int i = 0; i < 8; i++) y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(c[i]));
    y = _mm512_mul_ps(_mm512_mul_ps(y, f), z);
    y = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), y);
    y = _mm512_fnmadd_ps(_mm512_set1_ps(0.5f), z, y);
    __m512 r = _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), _mm512_add_ps(f, y));
    /* getexp(+-0) = -inf but getmant(-0) is NaN; getexp(inf) = inf meets
     * the polynomial's 0 * inf. */
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_EQ_OQ), _mm512_set1_ps(-INFINITY));
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ), x);
    return (fx_vf32)r;
}
#else
FX_ALWAYS_INLINE fx_vf32 FXV(fx_log_f32)(fx_vf32 x) {
    const fx_vi32 tiny = x < FXV(fx_bcast_f32)(1.17549435e-38f);
    fx_vf32 xs = FXV(fx_sel_f32)(tiny, x * FXV(fx_bcast_f32)(8388608.0f), x);
    fx_vi32 bits = (fx_vi32)xs;
    fx_vi32 e = ((bits >> 23) & 0xff) - 126 - (tiny & 23);
    fx_vf32 m = (fx_vf32)((bits & 0x007fffff) | 0x3f000000); /* [0.5, 1) */
    fx_vi32 small = m < FXV(fx_bcast_f32)(0.707106781186547524f);
    fx_vf32 f = FXV(fx_sel_f32)(small, m + m, m) - FXV(fx_bcast_f32)(1.0f);
    e = e + small; /* small lanes are -1 */
    fx_vf32 ef = __builtin_convertvector(e, fx_vf32);
    fx_vf32 z = f * f;
    fx_vf32 y = FXV(fx_bcast_f32)(7.0376836292e-2f);
    y = y * f + FXV(fx_bcast_f32)(-1.1514610310e-1f);
    y = y * f + FXV(fx_bcast_f32)(1.1676998740e-1f);
    y = y * f + FXV(fx_bcast_f32)(-1.2420140846e-1f);
    y = y * f + FXV(fx_bcast_f32)(1.4249322787e-1f);
    y = y * f + FXV(fx_bcast_f32)(-1.6668057665e-1f);
    y = y * f + FXV(fx_bcast_f32)(2.0000714765e-1f);
    y = y * f + FXV(fx_bcast_f32)(-2.4999993993e-1f);
    y = y * f + FXV(fx_bcast_f32)(3.3333331174e-1f);
    y = y * f * z;
    y = y + ef * FXV(fx_bcast_f32)(-2.12194440e-4f);
    y = y - FXV(fx_bcast_f32)(0.5f) * z;
    fx_vf32 r = f + y + ef * FXV(fx_bcast_f32)(0.693359375f);
    r = FXV(fx_sel_f32)(x == FXV(fx_bcast_f32)(0.0f), FXV(fx_bcast_f32)(-INFINITY), r);
    r = FXV(fx_sel_f32)(x < FXV(fx_bcast_f32)(0.0f), FXV(fx_bcast_f32)(NAN), r);
    r = FXV(fx_sel_f32)(x == FXV(fx_bcast_f32)(INFINITY), x, r);
    return FXV(fx_sel_f32)(x != x, x, r);
}

#endif /* FX_VBYTES == 64 */

/*
 * log for float64 lanes, about 1 ulp: log(m) = 2 atanh(s), s = (m-1)/(m+1),
 * |s| <= 0.1716, series to s^23 (truncation below 1e-18 relative); the
 * exponent is converted with the 1.5 * 2^52 trick (no int64 -> double
 * instruction before AVX-512DQ).
 */
FX_ALWAYS_INLINE fx_vf64 FXV(fx_log_f64)(fx_vf64 x) {
    const double magic = 6755399441055744.0;
    const fx_vi64 tiny = x < FXV(fx_bcast_f64)(2.2250738585072014e-308);
    fx_vf64 xs = FXV(fx_sel_f64)(tiny, x * FXV(fx_bcast_f64)(18014398509481984.0), x); /* 2^54 */
    fx_vi64 bits = (fx_vi64)xs;
    fx_vi64 e = ((bits >> 52) & 0x7ff) - 1022 - (tiny & 54);
    fx_vf64 m = (fx_vf64)((bits & 0x000fffffffffffffLL) | 0x3fe0000000000000LL); /* [0.5, 1) */
    fx_vi64 small = m < FXV(fx_bcast_f64)(0.70710678118654752440);
    m = FXV(fx_sel_f64)(small, m + m, m);
    e = e + small;
    fx_vf64 ef = (fx_vf64)(e + (fx_vi64)FXV(fx_bcast_f64)(magic)) - FXV(fx_bcast_f64)(magic);
    fx_vf64 s = (m - FXV(fx_bcast_f64)(1.0)) / (m + FXV(fx_bcast_f64)(1.0));
    fx_vf64 s2 = s * s;
    fx_vf64 p = FXV(fx_bcast_f64)(1.0 / 23.0);
    for (int k = 10; k >= 0; k--) p = p * s2 + FXV(fx_bcast_f64)(1.0 / (2 * k + 1));
    fx_vf64 r = ef * FXV(fx_bcast_f64)(6.93147180369123816490e-01) +
                (FXV(fx_bcast_f64)(2.0) * s * p + ef * FXV(fx_bcast_f64)(1.90821492927058770002e-10));
    r = FXV(fx_sel_f64)(x == FXV(fx_bcast_f64)(0.0), FXV(fx_bcast_f64)(-INFINITY), r);
    r = FXV(fx_sel_f64)(x < FXV(fx_bcast_f64)(0.0), FXV(fx_bcast_f64)(NAN), r);
    r = FXV(fx_sel_f64)(x == FXV(fx_bcast_f64)(INFINITY), x, r);
    return FXV(fx_sel_f64)(x != x, x, r);
}
