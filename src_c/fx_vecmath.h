/*
 * fx_vecmath.h -- portable native-width vectors (GCC/Clang vector extensions) and
 * a vectorised exp for float32 and float64.
 *
 * Included once per instruction set by fx_kernels.c, inside a
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
/* immintrin.h must come before any `#pragma GCC target` (fx_kernels.c). */

#define FX_CAT2(a, b) a##b
#define FX_CAT(a, b) FX_CAT2(a, b)
#define FX_ALWAYS_INLINE static inline __attribute__((always_inline))

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
#else
FX_ALWAYS_INLINE fx_vf32 FXV(fx_loadp_f32)(const float *p, int64_t len, float fill) {
    float buf[FX_LANES_F32];
    for (int i = 0; i < FX_LANES_F32; i++) buf[i] = i < len ? p[i] : fill;
    return *(const fx_vf32_mem *)buf;
}
FX_ALWAYS_INLINE fx_vf64 FXV(fx_loadp_f64)(const double *p, int64_t len, double fill) {
    double buf[FX_LANES_F64];
    for (int i = 0; i < FX_LANES_F64; i++) buf[i] = i < len ? p[i] : fill;
    return *(const fx_vf64_mem *)buf;
}
FX_ALWAYS_INLINE void FXV(fx_storep_f32)(float *p, fx_vf32 v, int64_t len) {
    for (int i = 0; i < len; i++) p[i] = v[i];
}
FX_ALWAYS_INLINE void FXV(fx_storep_f64)(double *p, fx_vf64 v, int64_t len) {
    for (int i = 0; i < len; i++) p[i] = v[i];
}
#endif

/* Lanes l < rows get p[l * stride] (a column of a block of short rows),
 * the others 0.  Hardware gathers where the ISA has them. */
#if (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 64
FX_ALWAYS_INLINE fx_vf32 FXV(fx_gather_f32)(const float *p, int64_t stride, int64_t rows) {
    __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                     _mm512_set1_epi32((int)stride));
    return (fx_vf32)_mm512_mask_i32gather_ps(_mm512_setzero_ps(), (__mmask16)((1u << rows) - 1), idx, p, 4);
}
FX_ALWAYS_INLINE fx_vf64 FXV(fx_gather_f64)(const double *p, int64_t stride, int64_t rows) {
    __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)stride));
    return (fx_vf64)_mm512_mask_i32gather_pd(_mm512_setzero_pd(), (__mmask8)((1u << rows) - 1), idx, p, 8);
}
#elif (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 32
FX_ALWAYS_INLINE fx_vf32 FXV(fx_gather_f32)(const float *p, int64_t stride, int64_t rows) {
    __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i idx = _mm256_mullo_epi32(lanes, _mm256_set1_epi32((int)stride));
    __m256 mask = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)rows), lanes));
    return (fx_vf32)_mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, idx, mask, 4);
}
FX_ALWAYS_INLINE fx_vf64 FXV(fx_gather_f64)(const double *p, int64_t stride, int64_t rows) {
    __m128i lanes = _mm_setr_epi32(0, 1, 2, 3);
    __m128i idx = _mm_mullo_epi32(lanes, _mm_set1_epi32((int)stride));
    __m256d mask = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm_cmpgt_epi32(_mm_set1_epi32((int)rows), lanes)));
    return (fx_vf64)_mm256_mask_i32gather_pd(_mm256_setzero_pd(), p, idx, mask, 8);
}
#else
FX_ALWAYS_INLINE fx_vf32 FXV(fx_gather_f32)(const float *p, int64_t stride, int64_t rows) {
    fx_vf32 v;
    for (int i = 0; i < FX_LANES_F32; i++) v[i] = i < rows ? p[i * stride] : 0.0f;
    return v;
}
FX_ALWAYS_INLINE fx_vf64 FXV(fx_gather_f64)(const double *p, int64_t stride, int64_t rows) {
    fx_vf64 v;
    for (int i = 0; i < FX_LANES_F64; i++) v[i] = i < rows ? p[i * stride] : 0.0;
    return v;
}
#endif

/* max(v, acc) that skips NaN in v: x86's MAXPS returns its second operand
 * when either is NaN, which is exactly `v > acc ? v : acc` in one op. */
#if (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 64
#define FX_MAX_F32(v, acc) ((fx_vf32)_mm512_max_ps((__m512)(v), (__m512)(acc)))
#define FX_MAX_F64(v, acc) ((fx_vf64)_mm512_max_pd((__m512d)(v), (__m512d)(acc)))
#elif (defined(__x86_64__) || defined(__i386__)) && FX_VBYTES == 32
#define FX_MAX_F32(v, acc) ((fx_vf32)_mm256_max_ps((__m256)(v), (__m256)(acc)))
#define FX_MAX_F64(v, acc) ((fx_vf64)_mm256_max_pd((__m256d)(v), (__m256d)(acc)))
#elif (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2__)
#define FX_MAX_F32(v, acc) ((fx_vf32)_mm_max_ps((__m128)(v), (__m128)(acc)))
#define FX_MAX_F64(v, acc) ((fx_vf64)_mm_max_pd((__m128d)(v), (__m128d)(acc)))
#else
#define FX_MAX_F32(v, acc) FXV(fx_sel_f32)((v) > (acc), (v), (acc))
#define FX_MAX_F64(v, acc) FXV(fx_sel_f64)((v) > (acc), (v), (acc))
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
 * AVX-512: the same reduction and polynomial, but 2^n is applied by
 * vscalefps, which saturates to 0 and +inf by itself: no masks, no integer
 * work.  The clamps keep +-inf out of the reduction (inf - inf); max(lo, x)
 * and min(hi, x) return x when x is NaN (the second operand wins).
 * fx_exp_neg_f32 is valid for x <= 0 (and -inf, NaN) and skips the upper
 * clamp: the kernels use it for x - max once the max is finite.
 */
FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_neg_f32)(fx_vf32 x) {
    __m512 xc = _mm512_max_ps(_mm512_set1_ps(-150.0f), (__m512)x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return (fx_vf32)_mm512_scalef_ps(p, n);
}

FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_f32)(fx_vf32 x) {
    /* min(hi, NaN) is NaN (the second operand wins). */
    return FXV(fx_exp_neg_f32)((fx_vf32)_mm512_min_ps(_mm512_set1_ps(128.0f), (__m512)x));
}

FX_ALWAYS_INLINE fx_vf64 FXV(fx_exp_f64)(fx_vf64 x) {
    __m512d xc = _mm512_min_pd(_mm512_set1_pd(1025.0), _mm512_max_pd(_mm512_set1_pd(-1080.0), (__m512d)x));
    __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(xc, _mm512_set1_pd(1.4426950408889634074)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(6.93147180369123816490e-01), xc);
    r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.90821492927058770002e-10), r);
    static const double c[12] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                                 1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,
                                 1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,
                                 1.0 / 24.0,         1.0 / 6.0,         0.5};
    __m512d p = _mm512_set1_pd(c[0]);
    for (int k = 1; k < 12; k++) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c[k]));
    p = _mm512_fmadd_pd(p, _mm512_mul_pd(r, r), _mm512_add_pd(r, _mm512_set1_pd(1.0)));
    return (fx_vf64)_mm512_scalef_pd(p, n);
}
#else
FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_f32)(fx_vf32 x) {
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    fx_vi32 over = x > FXV(fx_bcast_f32)(88.0f);
    fx_vi32 under = x < FXV(fx_bcast_f32)(-87.33f);
    fx_vf32 xc = FXV(fx_sel_f32)(over, FXV(fx_bcast_f32)(88.0f), x);
    xc = FXV(fx_sel_f32)(under, FXV(fx_bcast_f32)(-87.33f), xc);
    fx_vf32 t = xc * FXV(fx_bcast_f32)(1.44269504088896341f) + FXV(fx_bcast_f32)(magic);
    fx_vi32 ni = (fx_vi32)t - (fx_vi32)FXV(fx_bcast_f32)(magic);
    fx_vf32 n = t - FXV(fx_bcast_f32)(magic);
    fx_vf32 r = xc - n * FXV(fx_bcast_f32)(0.693359375f);
    r = r - n * FXV(fx_bcast_f32)(-2.12194440e-4f);
    fx_vf32 p = FXV(fx_bcast_f32)(1.9875691500e-4f);
    p = p * r + FXV(fx_bcast_f32)(1.3981999507e-3f);
    p = p * r + FXV(fx_bcast_f32)(8.3334519073e-3f);
    p = p * r + FXV(fx_bcast_f32)(4.1665795894e-2f);
    p = p * r + FXV(fx_bcast_f32)(1.6666665459e-1f);
    p = p * r + FXV(fx_bcast_f32)(5.0000001201e-1f);
    p = p * (r * r) + r + FXV(fx_bcast_f32)(1.0f);
    fx_vf32 scale = (fx_vf32)((ni + 127) << 23);
    fx_vf32 res = p * scale;
    res = FXV(fx_sel_f32)(under, FXV(fx_bcast_f32)(0.0f), res);
    return FXV(fx_sel_f32)(over, FXV(fx_bcast_f32)(INFINITY), res);
}

/*
 * exp for float64 lanes, about 1 ulp on [-708.39, 709.0]: the same reduction
 * with fdlibm's ln 2 split and a degree-13 Taylor polynomial (truncation
 * error below 2e-17 relative for |r| <= ln(2)/2).
 */
FX_ALWAYS_INLINE fx_vf64 FXV(fx_exp_f64)(fx_vf64 x) {
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */
    fx_vi64 over = x > FXV(fx_bcast_f64)(709.0);
    fx_vi64 under = x < FXV(fx_bcast_f64)(-708.39);
    fx_vf64 xc = FXV(fx_sel_f64)(over, FXV(fx_bcast_f64)(709.0), x);
    xc = FXV(fx_sel_f64)(under, FXV(fx_bcast_f64)(-708.39), xc);
    fx_vf64 t = xc * FXV(fx_bcast_f64)(1.4426950408889634074) + FXV(fx_bcast_f64)(magic);
    fx_vi64 ni = (fx_vi64)t - (fx_vi64)FXV(fx_bcast_f64)(magic);
    fx_vf64 n = t - FXV(fx_bcast_f64)(magic);
    fx_vf64 r = xc - n * FXV(fx_bcast_f64)(6.93147180369123816490e-01);
    r = r - n * FXV(fx_bcast_f64)(1.90821492927058770002e-10);
    fx_vf64 p = FXV(fx_bcast_f64)(1.0 / 6227020800.0);      /* 1/13! */
    p = p * r + FXV(fx_bcast_f64)(1.0 / 479001600.0);        /* 1/12! */
    p = p * r + FXV(fx_bcast_f64)(1.0 / 39916800.0);
    p = p * r + FXV(fx_bcast_f64)(1.0 / 3628800.0);
    p = p * r + FXV(fx_bcast_f64)(1.0 / 362880.0);
    p = p * r + FXV(fx_bcast_f64)(1.0 / 40320.0);
    p = p * r + FXV(fx_bcast_f64)(1.0 / 5040.0);
    p = p * r + FXV(fx_bcast_f64)(1.0 / 720.0);
    p = p * r + FXV(fx_bcast_f64)(1.0 / 120.0);
    p = p * r + FXV(fx_bcast_f64)(1.0 / 24.0);
    p = p * r + FXV(fx_bcast_f64)(1.0 / 6.0);
    p = p * r + FXV(fx_bcast_f64)(0.5);
    p = p * (r * r) + r + FXV(fx_bcast_f64)(1.0);
    fx_vf64 scale = (fx_vf64)((ni + 1023) << 52);
    fx_vf64 res = p * scale;
    res = FXV(fx_sel_f64)(under, FXV(fx_bcast_f64)(0.0), res);
    return FXV(fx_sel_f64)(over, FXV(fx_bcast_f64)(INFINITY), res);
}
/* Without AVX-512 the clamps are selects on both sides anyway. */
FX_ALWAYS_INLINE fx_vf32 FXV(fx_exp_neg_f32)(fx_vf32 x) { return FXV(fx_exp_f32)(x); }
#endif /* FX_VBYTES == 64 */

/*
 * log for float32 lanes, about 1 ulp: Cephes' logf (x = 2^e m with m in
 * [sqrt(1/2), sqrt(2)), degree-9 polynomial in m - 1).  Subnormals are
 * scaled first; log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays.
 */
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
