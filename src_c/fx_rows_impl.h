/*
 * fx_rows_impl.h -- the row kernels, written once for both dtypes and every
 * instruction set.  fx_isa_impl.h includes this file with:
 *   FX_T      float or double          FX_V   the vector of FX_T
 *   FX_VMEM   FX_V for unaligned loads and stores
 *   FX_VI     the matching int vector  FX_L   lanes per vector
 *   FX_EXP    the vector exp           FX_SEL the vector select
 *   FX_EXP_NEG, FX_EXP_FLOOR, FX_EXP_SUM  the exp for x <= 0, and the
 *             exps for sums, inexact below the clamp (fx_vecmath.h)
 *   FX_BC     the broadcast            FX_SFX _f32 or _f64
 *   FX_ISA    the instruction-set suffix (_avx512, _avx2, _baseline)
 *
 * Memory traffic: a row is processed in blocks of FX_BLOCK elements (4 KiB
 * of float32, 8 KiB of float64: L1-resident).  Each block is read from main
 * memory once, for its maximum, and then again from L1 for the exponentials
 * (the "blocked online" log-sum-exp: when a block raises the running maximum,
 * the running sum is rescaled by one scalar exp).  The gradient, softmax and
 * log-softmax passes then re-read the row, from L2 for every row up to about
 * 1 MiB, and write their output once; softmax and the gradient take the
 * exps the scan saved where it can (FX_SAVED_MAX).
 *
 * Accuracy of the sum of exponentials: inside a block each of the
 * 2 * FX_L float lanes adds at most FX_BLOCK / (2 * FX_L) terms (float32:
 * 32 on AVX-512, 64 on AVX2, 128 in 16-byte vectors), each term in (0, 1],
 * so the relative rounding error of a block sum is at most 64 * 2^-24 ~
 * 3.8e-6 on AVX2 in the worst case and ~sqrt(64) * 2^-24 ~ 4.8e-7
 * typically; block sums are then added in double (error 2^-53 per
 * addition), so the error does not grow with the row length.  A confident
 * row's loss, log(1 + the small terms), is as good as the sum of those
 * terms, which the lane holding the 1 rounds at 2^-24 each: at 1000
 * classes, the others 17 below the label's logit (a loss of 3e-5), its
 * relative error was 6e-2 on AVX2 (PyTorch's 1.3e-1).  The loss is
 * lse - x_y with lse = shift + log(s) in double: a relative error d in s
 * becomes an absolute error d in the lse, i.e. a relative error d / loss.
 */

#define FXR(name) FX_CAT(FX_CAT(name, FX_SFX), FX_ISA)
#ifndef FX_FREE_PTR
#define FX_FREE_PTR
/* For __attribute__((cleanup)): frees the buffer a pointer variable holds. */
static inline void fx_free_ptr(void *p) { free(*(void **)p); }
#endif
#define FX_BLOCK 1024
/*
 * float64 rows (and, below AVX-512, float32 rows) of up to FX_SAVED_MAX
 * elements are written a block at a time at the block's own shift, as the
 * scan took its exps (FX_BLOCKWISE, fx_write_exps), so that the write pass
 * can reuse the scan's exps (FX_EXPS) even where the row's maximum rose
 * after them.  Those of a row of one block are kept on the stack, those of
 * longer rows in a heap buffer beside the row (in L2 for rows up to ~32000
 * classes, else L3).  A row split across threads gets the same bits: its
 * slices are written by fx_write_row with FX_BLOCK_SHIFTS.  float64 on
 * AVX-512, alternated with the build that took the exps again, min of each
 * process: with the gradient, 4096x32000, 2 threads, 76.5 / 76.1 / 73.9 / 77.2 / 74.2 -> 69.9 / 71.0 /
 * 73.8 / 68.0 / 69.5 ms; 2048x32000, 1 thread, 67.6 / 73.6 / 67.5 / 67.0 /
 * 67.3 -> 62.2 / 62.8 / 63.4 / 62.3 / 61.2 ms; 1024x128256, 2 threads, 69.8
 * / 69.6 / 73.0 -> 67.0 / 66.9 / 69.6 ms (softmax 73.6 / 75.1 / 72.5 ->
 * 65.1 / 66.3 / 67.0); 256x256000, 1 thread, 66.3 / 66.7 / 67.5 -> 63.1 /
 * 58.8 / 58.4 ms; in cache (4x32000, 1 thread) 1.02 -> 0.77 ns an element.
 * Longer rows keep one shift: without saved exps the blocks' maxima must
 * be found again in the write, which cost more than it saved (a row of
 * 400000, 1 thread, 373 -> 415 us; 1x10M, 1 thread, 10.3 -> 12.1 ms).
 * float32 on AVX-512, whose exp costs a third as much, lost by saving
 * them: 4096x32000 with the gradient, 2 threads, 32.9 / 32.5 -> 37.3 /
 * 36.5 ms (the buffer's stores, a write-allocate each, cost more than the
 * exps they save); it keeps one shift a row.  Below AVX-512 the float32
 * exp is the cost of the write pass too, and float32 rows are written
 * block by block like float64's: on the AVX2 Zen 3 VM, alternated, min of
 * each process, with the gradient, 2 threads, 4096x32000 73.0 / 67.3 /
 * 69.6 -> 54.3 / 55.7 / 65.4 ms, 256x256000 39.2 / 52.8 / 33.6 -> 27.9 /
 * 26.2 / 22.1 ms, 1 thread 4096x32000 126.9 / 157.0 / 113.0 -> 102.3 /
 * 115.9 / 99.7 ms.
 */
#if FX_TBYTES == 8 || FX_VBYTES < 64
#define FX_BLOCKWISE 1
#define FX_SAVED_MAX ((int64_t)FX_BLOCK_SHIFTS_MAX)
#else
#define FX_BLOCKWISE 0
#define FX_SAVED_MAX FX_BLOCK
#endif
/* Where the running maxima of a long row's blocks are kept: after its exps
 * (FX_EXPS allocates the room). */
FX_ALWAYS_INLINE double *FXR(fx_block_maxima)(FX_T *e, int64_t n) {
    return (double *)(e + (n + 1) / 2 * 2);
}
/* Whether the row kernels write a row of n elements block by block. */
FX_ALWAYS_INLINE int FXR(fx_blockwise)(int64_t n) { return FX_BLOCKWISE && n > FX_BLOCK && n <= FX_SAVED_MAX; }
/* Where fx_scan keeps the blocks' running maxima with a row's exps e. */
FX_ALWAYS_INLINE const double *FXR(fx_saved_maxima)(const FX_T *e, int64_t n) {
    return e && FXR(fx_blockwise)(n) ? FXR(fx_block_maxima)((FX_T *)e, n) : NULL;
}
_Static_assert(FX_SLICE % FX_BLOCK == 0, "a slice is whole blocks");

/* Running state of the blocked online log-sum-exp and of the dot products
 * that label smoothing, class weights and soft targets need. */
typedef struct FXR(fx_scan_state_s) {
    double m;   /* running maximum (NaN never enters it)          */
    double s;   /* sum of exp(x - shift(m))                        */
    double wx;  /* sum of w_c x_c (w = 1 without class weights)    */
    double wsum; /* sum of w_c (n without class weights)          */
    double wtx; /* sum of a_c x_c, a_c = w_c (tk t_c + tc) (fx_scan) */
    double wt;  /* sum of a_c                                      */
} FXR(fx_scan_state);

/* exp(x - shift) is computed with shift = m when m is finite and 0 otherwise,
 * so that a row of -inf gives 0 (not NaN) and +inf gives +inf. */
FX_ALWAYS_INLINE double FXR(fx_shift)(double m) { return isfinite(m) ? m : 0.0; }

/* sum_c w_c over n classes (n without class weights), in class order. */
FX_ALWAYS_INLINE double FXR(fx_weight_sum)(const FX_T *w, int64_t n) {
    if (!w) return (double)n;
    double sum = 0.0;
    for (int64_t c = 0; c < n; c++) sum += (double)w[c];
    return sum;
}

FX_ALWAYS_INLINE FX_V FXR(fx_load)(const FX_T *p) { return *(const FX_VMEM *)p; }
/* The first len (<= FX_L) elements, the other lanes set to fill.  Loops
 * that take every vector through it get plain loads but for the last. */
FX_ALWAYS_INLINE FX_V FXR(fx_load_part)(const FX_T *p, int64_t len, FX_T fill) {
    return len >= FX_L ? FXR(fx_load)(p) : FX_LOADP(p, len, fill);
}
/* 1 in the first len (<= FX_L) lanes, 0 in the others. */
FX_ALWAYS_INLINE FX_V FXR(fx_ones_part)(int64_t len) {
    if (len >= FX_L) return FX_BC(1);
    FX_V v = FX_BC(0);
    for (int i = 0; i < FX_L; i++) v[i] = i < len ? (FX_T)1 : (FX_T)0;
    return v;
}
FX_ALWAYS_INLINE void FXR(fx_store)(FX_T *p, FX_V v) { *(FX_VMEM *)p = v; }
FX_ALWAYS_INLINE void FXR(fx_store_part)(FX_T *p, FX_V v, int64_t len) {
    if (len >= FX_L)
        FXR(fx_store)(p, v);
    else
        FX_STOREP(p, v, len);
}
/* Sum of the lanes in double, as a tree (log2(lanes) dependent additions). */
FX_ALWAYS_INLINE double FXR(fx_hsum)(FX_V v) {
#if FX_TBYTES == 4
    return FXV(fx_tree_sum_f64)(FXV(fx_fold_f32)(v));
#else
    return FXV(fx_tree_sum_f64)(v);
#endif
}

/* Maximum of a block; NaN lanes are skipped (x > acc is false for NaN).
 * Four chains: one is bound by the max's latency (128x1000 float32 in
 * cache, 1 thread: 31.3 -> 30.3 us); the maximum is the same in any order. */
FX_ALWAYS_INLINE FX_T FXR(fx_block_max)(const FX_T *x, int64_t len) {
    FX_V acc = FX_BC(-INFINITY), acc1 = acc, acc2 = acc, acc3 = acc;
    int64_t i = 0;
    for (; i + 4 * FX_L <= len; i += 4 * FX_L) {
        acc = FX_MAX(FXR(fx_load)(x + i), acc);
        acc1 = FX_MAX(FXR(fx_load)(x + i + FX_L), acc1);
        acc2 = FX_MAX(FXR(fx_load)(x + i + 2 * FX_L), acc2);
        acc3 = FX_MAX(FXR(fx_load)(x + i + 3 * FX_L), acc3);
    }
    acc = FX_MAX(FX_MAX(acc1, acc), FX_MAX(acc3, acc2));
    for (; i + FX_L <= len; i += FX_L) {
        acc = FX_MAX(FXR(fx_load)(x + i), acc);
    }
    if (i < len) acc = FX_MAX(FXR(fx_load_part)(x + i, len - i, (FX_T)-INFINITY), acc);
    FX_T m = acc[0];
    for (int k = 1; k < FX_L; k++) m = acc[k] > m ? acc[k] : m;
    return m;
}

/* Folds the slice just scanned into the row's (m, s): the first slice as it
 * is, as a caller that splits the row takes it, later ones by fx_lse_merge
 * (fastxent.h; one out-of-line function, so both paths round alike). */
FX_ALWAYS_INLINE void FXR(fx_fold_slice)(int first, double *row_m, double *row_s, double m, double s) {
    if (first) {
        *row_m = m;
        *row_s = s;
    } else {
        fx_lse_merge(row_m, row_s, m, s);
    }
}

/*
 * The sums of one block, x[b, b + len), at the shift of the running maximum
 * m: acc->s += sum exp(x - shift(m)), and the dot products fx_scan asks for
 * (need_wx; t, with tk and tc) added to acc's.  e, if not NULL, receives
 * the block's exp(x - shift(m)).
 */
FX_ALWAYS_INLINE void FXR(fx_block_sums)(const FX_T *x, const FX_T *t, const FX_T *w, int64_t b, int64_t len,
                                         double m, int need_wx, FX_T tk, FX_T tc, int64_t ahead, FX_T *e,
                                         FXR(fx_scan_state) *acc) {
    const FX_T *xb = x + b;
    const FX_V sh = FX_BC((FX_T)FXR(fx_shift)(m));
    /* x - sh <= 0 in this block unless the row holds +inf (m = +inf,
     * shift 0): only then is the upper clamp of the exp needed.  A finite
     * m means the sums hold exp(0) = 1, so where the exps are only summed
     * the lanes below the exp's clamp may add exp(lo) (2^-126 or 2^-1022)
     * instead of 0: n of them change s by n 2^-126 relative at most, far
     * under its rounding error, for 8-9% less time an exp (AVX2, alone,
     * float32 0.304 -> 0.276 ns, float64 0.946 -> 0.865).  A row of -inf
     * (m = -inf) must sum to 0, and takes the exact exp. */
    const int capped = m != INFINITY, floor_ok = !e && isfinite(m);
    FX_V s0 = FX_BC(0), s1 = FX_BC(0), d_wx = FX_BC(0), d_w = FX_BC(0), d_wtx = FX_BC(0), d_wt = FX_BC(0);
    int64_t i = 0;
    for (; i + 2 * FX_L <= len; i += 2 * FX_L) {
        FX_V v0 = FXR(fx_load)(xb + i), v1 = FXR(fx_load)(xb + i + FX_L);
        __builtin_prefetch(xb + i + ahead);
        __builtin_prefetch(xb + i + ahead + 2 * FX_L - 1);
        const FX_V e0 = floor_ok ? FX_EXP_FLOOR(v0 - sh) : capped ? FX_EXP_NEG(v0 - sh) : FX_EXP(v0 - sh);
        const FX_V e1 = floor_ok ? FX_EXP_FLOOR(v1 - sh) : capped ? FX_EXP_NEG(v1 - sh) : FX_EXP(v1 - sh);
        if (e) {
            FXR(fx_store)(e + i, e0);
            FXR(fx_store)(e + i + FX_L, e1);
        }
        s0 += e0;
        s1 += e1;
        if (need_wx || t) {
            FX_V w0 = w ? FXR(fx_load)(w + b + i) : FX_BC(1);
            FX_V w1 = w ? FXR(fx_load)(w + b + i + FX_L) : FX_BC(1);
            if (need_wx) {
                d_wx += w0 * v0 + w1 * v1;
                d_w += w0 + w1;
            }
            if (t) {
                FX_V a0 = w0 * (tk * FXR(fx_load)(t + b + i) + tc);
                FX_V a1 = w1 * (tk * FXR(fx_load)(t + b + i + FX_L) + tc);
                d_wtx += a0 * v0 + a1 * v1;
                d_wt += a0 + a1;
            }
        }
    }
    for (; i < len; i += FX_L) {
        const int64_t k = (len - i) < FX_L ? (len - i) : FX_L;
        /* Tail lanes: -inf for exp (gives 0), 0 for the dot products. */
        FX_V v = FXR(fx_load_part)(xb + i, k, (FX_T)-INFINITY);
        const FX_V e0 = FX_EXP(v - sh);
        if (e) FXR(fx_store_part)(e + i, e0, k);
        s0 += e0;
        if (need_wx || t) {
            FX_V v0 = FXR(fx_load_part)(xb + i, k, 0);
            FX_V w0 = w ? FXR(fx_load_part)(w + b + i, k, 0) : FXR(fx_ones_part)(k);
            if (need_wx) {
                d_wx += w0 * v0;
                d_w += w0;
            }
            if (t) {
                FX_V a0 = w0 * (tk * FXR(fx_load_part)(t + b + i, k, 0) + tc);
                d_wtx += a0 * v0;
                d_wt += a0;
            }
        }
    }
    acc->s += FXR(fx_hsum)(s0 + s1);
    if (need_wx) {
        acc->wx += FXR(fx_hsum)(d_wx);
        acc->wsum += FXR(fx_hsum)(d_w);
    }
    if (t) {
        acc->wtx += FXR(fx_hsum)(d_wtx);
        acc->wt += FXR(fx_hsum)(d_wt);
    }
}

/* How far ahead fx_scan prefetches: a block while it keeps the exps, else
 * 8 KiB (two float32 blocks, one float64 block).  log_softmax writes a row
 * between one row's scan and the next's; further ahead, more of the next
 * row is on its way meanwhile.  float32 from memory, AVX2, alternated
 * calls, min of 11, 1 thread: log_softmax 4096x32000 0.678 -> 0.601 ns an
 * element, 16384x2000 0.739 -> 0.674, 65536x1000 0.679 -> 0.588 (2
 * threads 0.383 -> 0.332); logsumexp within 2%.  16 KiB cost the float64
 * log_softmax 4-7%; the scans that keep exps (softmax, the gradient) did
 * not gain. */
#define FX_SCAN_AHEAD ((int64_t)(8192 / sizeof(FX_T)))

/*
 * One pass over the row.  The flags are compile-time constants at every
 * call site, so each combination compiles to its own loop:
 *   need_wx: accumulate sum w_c x_c and sum w_c (w = 1 when w is NULL)
 *   t:       soft-target row, or NULL (then wtx and wt stay 0); its
 *            coefficients a_c = w_c (tk t_c + tc) (PyTorch's smoothed
 *            target, summed class by class: a class of a_c > 0 at -inf
 *            makes wtx -inf, not NaN)
 *   e:       NULL, or (only for n <= FX_BLOCK: one shift) n elements that
 *            receive exp(x - m), for the write pass (fx_write)
 */
FX_ALWAYS_INLINE void FXR(fx_scan)(const FX_T *x, const FX_T *t, const FX_T *w, int64_t n, int need_wx, FX_T tk,
                                   FX_T tc, FX_T *e, FXR(fx_scan_state) *st) {
    /* (m, s) of the slice (FX_SLICE elements) being scanned; row_m, row_s
     * the slices before it. */
    double m = -INFINITY, row_m = -INFINITY, row_s = 0.0;
    /* Each block's running maximum, kept with its exps (fx_write_exps). */
    double *block_m = (double *)FXR(fx_saved_maxima)(e, n);
    FXR(fx_scan_state) sums = {0}; /* s, the slice's; the dot products, the row's */
    for (int64_t b = 0; b < n; b += FX_BLOCK) {
        if (b % FX_SLICE == 0 && b > 0) {
            FXR(fx_fold_slice)(b == FX_SLICE, &row_m, &row_s, m, sums.s);
            m = -INFINITY;
            sums.s = 0.0;
        }
        const int64_t len = (n - b) < FX_BLOCK ? (n - b) : FX_BLOCK;
        const FX_T *xb = x + b;
        const FX_T bm = FXR(fx_block_max)(xb, len);
        if ((double)bm > m) {
            /* m = -inf means s is 0 (or NaN, which must stay NaN). */
            if (m != -INFINITY) sums.s *= exp(FXR(fx_shift)(m) - FXR(fx_shift)((double)bm));
            m = (double)bm;
        }
        if (block_m) block_m[b / FX_BLOCK] = m;
        FXR(fx_block_sums)(x, t, w, b, len, m, need_wx, tk, tc, e ? FX_BLOCK : FX_SCAN_AHEAD, e ? e + b : NULL,
                           &sums);
    }
    FXR(fx_fold_slice)(n <= FX_SLICE, &row_m, &row_s, m, sums.s);
    *st = sums;
    st->m = row_m;
    st->s = row_s;
}

FX_ALWAYS_INLINE double FXR(fx_lse_of)(const FXR(fx_scan_state) *st) {
    return FXR(fx_shift)(st->m) + log(st->s);
}

/*
 * One output vector at element i (len < FX_L only in the tail):
 *   take_log == 0:  exp(x_c - sh) * k - w_c (ct t_c + cc)   (softmax, gradient)
 *   take_log == 1:  (x_c - sh) - k                     (log-softmax, k = log s)
 * t and w terms are present only when those rows are given; e, when not
 * NULL, holds exp(x_c - sh) already (fx_scan's, the same bits).
 */
FX_ALWAYS_INLINE FX_V FXR(fx_out_vec)(const FX_T *x, const FX_T *e, const FX_T *t, const FX_T *w, int64_t i,
                                      int64_t len, int take_log, FX_V sh, FX_V k, FX_V ct, FX_V cc) {
#define FX_LOAD_AT(p) FXR(fx_load_part)((p) + i, len, 0)
    if (take_log) return (FX_LOAD_AT(x) - sh) - k;
    FX_V a = cc;
    /* Written only for rows with a finite lse: x - sh <= 0 (or -inf). */
    if (t) a = ct * FX_LOAD_AT(t) + cc;
    if (w) a = a * FX_LOAD_AT(w);
    return (e ? FX_LOAD_AT(e) : FX_EXP_NEG(FX_LOAD_AT(x) - sh)) * k - a;
#undef FX_LOAD_AT
}

/* The fence after a call's streaming stores, unless its caller defers it
 * (FX_DEFER_FENCE).  Batch kernels fence once after their last row: a
 * fence per row waited for each row's stores to reach memory (4x the time
 * of the whole call for rows of 100-128 float32 classes). */
FX_ALWAYS_INLINE void FXR(fx_fence_stores)(int flags) {
    if ((flags & (FX_STREAM_STORES | FX_DEFER_FENCE)) == FX_STREAM_STORES) FX_SFENCE();
}

/*
 * len < FX_L elements of v, streamed one at a time (movnti) at the ends of
 * a streamed run, so that every line of the run is written by streaming
 * stores only.  A plain (masked) store into a line that streaming stores
 * also write cost a partial-line write to memory or a read for ownership:
 * log_softmax of 65536x1000 float32 into a 16-byte aligned out, 1 thread,
 * AVX2, 57.3 ms with plain ends, 38.1 streamed (an out on a line: 40.9 /
 * 41.0); the lines at both ends of plain stores instead, 39.7 and 42.9.
 * Out of line: inlined, the element loop slowed the rows that never take
 * it (the same out on a line, log_softmax 40.7 -> 43.5 ms, the gradient
 * 42.4 -> 45.3; out of line 41.7 and 42.3).
 */
static __attribute__((noinline)) void FXR(fx_stream_part)(FX_T *p, FX_V v, int64_t len) {
    for (int64_t j = 0; j < len; j++) FX_STREAM1(p + j, v[j]);
}

/* Elements of p[0, n) before its first FX_VBYTES-aligned one (p aligned to
 * its element). */
FX_ALWAYS_INLINE int64_t FXR(fx_stream_head)(const FX_T *p, int64_t n) {
    const int64_t head = (int64_t)((FX_VBYTES - (uintptr_t)p % FX_VBYTES) % FX_VBYTES / sizeof(FX_T));
    return head < n ? head : n;
}

/*
 * The write pass over a row (reading x, or its exps e, from cache).  With
 * stream set, every element takes a non-temporal store (for outputs much
 * larger than the caches), which the caller fences (fx_fence_stores).  out
 * may alias x: each vector is read before it is written.
 */
FX_ALWAYS_INLINE void FXR(fx_write)(const FX_T *x, const FX_T *e, const FX_T *t, const FX_T *w, int64_t n,
                                    int take_log, FX_T sh, FX_T k, FX_T ct, FX_T cc, int64_t y, FX_T gy, int stream,
                                    FX_T *out) {
    const FX_V vsh = FX_BC(sh), vk = FX_BC(k), vct = FX_BC(ct), vcc = FX_BC(cc), vgy = FX_BC(gy);
    FX_VI lane;
    for (int j = 0; j < FX_L; j++) lane[j] = j;
    /* y >= 0: element y is gy (the label's gradient, which the caller
     * computes in double), put in the vector before its store.  Stored
     * after the row instead, into a line just streamed, it cost a memory
     * round trip a row (with_grad of 100-class rows 4x slower). */
#define FX_OUT(i, len)                                                                          \
    ({                                                                                          \
        FX_V v_ = FXR(fx_out_vec)(x, e, t, w, (i), (len), take_log, vsh, vk, vct, vcc);         \
        if (y >= 0) v_ = FX_SEL(lane == (int)((uint64_t)(y - (i)) < FX_L ? y - (i) : -1), vgy, v_); \
        v_;                                                                                     \
    })
    int64_t i = 0;
    if (stream && ((uintptr_t)out % sizeof(FX_T)) == 0) {
        const int64_t head = FXR(fx_stream_head)(out, n);
        if (head > 0) FXR(fx_stream_part)(out, FX_OUT(0, head), head);
        for (i = head; i + FX_L <= n; i += FX_L) FX_STREAM(out + i, FX_OUT(i, FX_L));
        if (i < n) FXR(fx_stream_part)(out + i, FX_OUT(i, n - i), n - i);
        return;
    }
    for (; i + FX_L <= n; i += FX_L) FXR(fx_store)(out + i, FX_OUT(i, FX_L));
    if (i < n) FXR(fx_store_part)(out + i, FX_OUT(i, n - i), n - i);
#undef FX_OUT
}

/*
 * The softmax or gradient write pass (fx_write, take_log 0) of a row, or
 * of a slice of one (fx_write_row).  blockwise (FX_BLOCKWISE only): block
 * b is written as exp(x - m_b) (k exp(m_b - sh)), m_b the running maximum
 * of its slice when the scan reached it (one more rounding than exp(x -
 * sh) k: ~1 ulp): its exps from e and m_b from block_m where the scan kept
 * them, else both taken again (the same bits).  Otherwise the row at the
 * one shift sh, from e for a row of one block (whose m_b is sh: the same
 * bits as blockwise, without finding its maximum again).
 */
FX_ALWAYS_INLINE void FXR(fx_write_exps)(const FX_T *x, const FX_T *e, const double *block_m, const FX_T *t,
                                         const FX_T *w, int64_t n, int blockwise, FX_T sh, FX_T k, FX_T ct,
                                         FX_T cc, int64_t y, FX_T gy, int stream, FX_T *out) {
    if (!FX_BLOCKWISE || !blockwise) {
        FXR(fx_write)(x, e, t, w, n, 0, sh, k, ct, cc, y, gy, stream, out);
        return;
    }
    double run = -INFINITY;
    for (int64_t a = 0; a < n; a += FX_BLOCK) {
        const int64_t len = n - a < FX_BLOCK ? n - a : FX_BLOCK;
        double mb;
        if (block_m) {
            mb = block_m[a / FX_BLOCK];
        } else {
            /* fx_scan's running maximum (x is read before it is written). */
            if (a % FX_SLICE == 0) run = -INFINITY;
            const FX_T bm = FXR(fx_block_max)(x + a, len);
            if ((double)bm > run) run = (double)bm;
            mb = run;
        }
        /* mb <= sh, finite unless the block is all -inf: then its exps are
         * 0 and so is kb (exp(-inf)). */
        const FX_T kb = mb == (double)sh ? k : (FX_T)((double)k * exp(mb - (double)sh));
        FXR(fx_write)(x + a, e ? e + a : NULL, t ? t + a : NULL, w ? w + a : NULL, len, 0,
                      (FX_T)FXR(fx_shift)(mb), kb, ct, cc, y >= a && y < a + len ? y - a : -1, gy, stream, out + a);
    }
}

static void FXR(fx_fill)(FX_T *out, int64_t n, FX_T value) {
    for (int64_t i = 0; i < n; i++) out[i] = value;
}

static double FXR(fx_logsumexp_row)(const FX_T *x, int64_t n) {
    FXR(fx_scan_state) st;
    FXR(fx_scan)(x, NULL, NULL, n, 0, 1, 0, NULL, &st);
    return FXR(fx_lse_of)(&st);
}

/*
 * (m, s) of FX_GROUP rows of n <= FX_BLOCK classes, row g at x + g * n:
 * fx_scan's arithmetic on each (one block, one slice: the same bits), the
 * rows' phases interleaved.  A short row costs mostly latency (its block
 * maximum, two horizontal reductions, then a log), ~40 ns at 64 classes
 * one row at a time; the group's independent chains overlap instead.
 * Its sums prefetch the next group (fx_scan's one block ahead would land in
 * the group's own rows, read already; logsumexp of 65536x1000 float32,
 * 1 thread: 22.0 -> 16.2 ms), at least one block ahead.
 */
#define FX_GROUP 4
FX_ALWAYS_INLINE void FXR(fx_scan_group)(const FX_T *x, int64_t n, double *m, double *s, FX_T *e) {
    const int64_t ahead = FX_GROUP * n > FX_BLOCK ? FX_GROUP * n : FX_BLOCK;
    FX_T bm[FX_GROUP];
    _Pragma("GCC unroll 8") for (int g = 0; g < FX_GROUP; g++) bm[g] = FXR(fx_block_max)(x + g * n, n);
    _Pragma("GCC unroll 8") for (int g = 0; g < FX_GROUP; g++) {
        FXR(fx_scan_state) sums = {0};
        m[g] = (double)bm[g]; /* never NaN: fx_block_max skips NaN */
        FXR(fx_block_sums)(x + g * n, NULL, NULL, 0, n, m[g], 0, 1, 0, ahead, e ? e + g * n : NULL, &sums);
        s[g] = sums.s;
    }
}

/* The scans of the rows from r on (of n_rows rows of n classes), each as
 * fx_scan gives it (m, s; no dot products): FX_GROUP at once while rows
 * have at most group_max (<= FX_BLOCK) classes and enough are left, else
 * one.  Returns how many it scanned.  e: NULL, or (n <= FX_BLOCK) room
 * for the exps of scanned row g at e + g * n (FX_EXPS; then group_max is
 * at most FX_GROUP_WRITE_MAX). */
FX_ALWAYS_INLINE int FXR(fx_scan_next)(const FX_T *x, int64_t r, int64_t n_rows, int64_t n,
                                       FXR(fx_scan_state) st[FX_GROUP], int64_t group_max, FX_T *e) {
    if (n <= group_max && r + FX_GROUP <= n_rows) {
        double m[FX_GROUP], s[FX_GROUP];
        FXR(fx_scan_group)(x + r * n, n, m, s, e);
        _Pragma("GCC unroll 8") for (int g = 0; g < FX_GROUP; g++) st[g] = (FXR(fx_scan_state)){.m = m[g], .s = s[g]};
        return FX_GROUP;
    }
    FXR(fx_scan)(x + r * n, NULL, NULL, n, 0, 1, 0, e, &st[0]);
    return 1;
}

/* Rows grouped by the scans: at most 4 KiB (1024 float32 classes, 512
 * float64), four of which fit in L1 between the group's two phases; four
 * 8 KiB rows do not (float64 65536x1000 logsumexp, 1 thread: 48 ms
 * grouped, 39 ms a row at a time).  Kernels that write a row after
 * scanning it group rows of at most 2 KiB (512 float32 classes, 256
 * float64), whose saved exps (FX_EXPS) fit in L1 beside them (float32
 * gradient, min of 5 alternated runs: 256x512 in cache, 1 thread, 85 ->
 * 53 us; 131072x512 from main memory, 1 thread 39.2 -> 37.4 ms, 2 threads
 * 22.1 -> 21.0 ms).  Rows of 4 KiB, four with their exps, would fill L1. */
#define FX_GROUP_SCAN_MAX (4096 / (int64_t)sizeof(FX_T))
#define FX_GROUP_WRITE_MAX (2048 / (int64_t)sizeof(FX_T))
/* Room for the saved exps of a row of one block or a group of rows. */
#define FX_EXPS_ROOM (FX_BLOCK > FX_GROUP * FX_GROUP_WRITE_MAX ? FX_BLOCK : FX_GROUP * FX_GROUP_WRITE_MAX)

/* e: the scan's exps of a row of n classes, or of a group of rows, for its
 * write pass, when wanted and the row is at most FX_SAVED_MAX long; else
 * NULL.  One block's on the stack (FX_EXPS_ROOM elements, L1-resident), a
 * longer row's in a heap buffer with room for its blocks' maxima after
 * them (freed when e goes out of scope; NULL if malloc fails, and the
 * write takes the exps again).  Reading them back instead of taking each
 * exp again: gradient of 256x1000 in cache, 1 thread, float32 117.8 ->
 * 93.8 us, float64 272 -> 193 us (compute-bound). */
#define FX_EXPS(e, wanted, n)                                                                       \
    FX_T e##_buf_[FX_EXPS_ROOM] __attribute__((aligned(64)));                                       \
    FX_T *e##_heap_ __attribute__((cleanup(fx_free_ptr))) =                                         \
        (wanted) && FXR(fx_blockwise)(n)                                                           \
            ? malloc(((size_t)(n) + 2) * sizeof(FX_T) + ((size_t)(n) / FX_BLOCK + 1) * sizeof(double)) \
            : NULL;                                                                                 \
    FX_T *const e = (wanted) && (n) <= FX_BLOCK ? e##_buf_ : e##_heap_

/* softmax (take_log == 0) or log-softmax (take_log == 1) of a row from its
 * scan (e: the exps it saved, or NULL); returns its lse. */
FX_ALWAYS_INLINE double FXR(fx_softmax_finish)(const FX_T *x, const FX_T *e, int64_t n,
                                               const FXR(fx_scan_state) *stp, FX_T *out, int take_log, int stream) {
    const FXR(fx_scan_state) st = *stp;
    const double lse = FXR(fx_lse_of)(&st);
    if (!isfinite(lse)) {
        FXR(fx_fill)(out, n, (FX_T)NAN);
    } else if (take_log) {
        /* (x - m) is exact for the classes that matter (Sterbenz); log(s)
         * is in [0, log n]. */
        FXR(fx_write)(x, NULL, NULL, NULL, n, 1, (FX_T)st.m, (FX_T)log(st.s), 0, 0, -1, 0, stream, out);
    } else {
        FXR(fx_write_exps)(x, e, FXR(fx_saved_maxima)(e, n), NULL, NULL, n, FXR(fx_blockwise)(n), (FX_T)st.m,
                           (FX_T)(1.0 / st.s), 0, 0, -1, 0, stream, out);
    }
    return lse;
}

static double FXR(fx_softmax_like_row)(const FX_T *x, int64_t n, FX_T *out, int take_log, int flags) {
    FXR(fx_scan_state) st;
    FX_EXPS(e, !take_log, n);
    FXR(fx_scan)(x, NULL, NULL, n, 0, 1, 0, e, &st);
    const double lse = FXR(fx_softmax_finish)(x, e, n, &st, out, take_log, flags & FX_STREAM_STORES);
    FXR(fx_fence_stores)(flags);
    return lse;
}

/* fx_softmax_row (take_log 0) or fx_log_softmax_row (1) of n_rows rows,
 * short ones a few at a time (fx_scan_next). */
static void FXR(fx_softmax_rows)(const FX_T *x, int64_t n_rows, int64_t n, FX_T *out, int take_log, int flags) {
    FXR(fx_scan_state) st[FX_GROUP];
    FX_EXPS(e, !take_log, n);
    for (int64_t r = 0; r < n_rows;) {
        const int k = FXR(fx_scan_next)(x, r, n_rows, n, st, FX_GROUP_WRITE_MAX, e);
        for (int g = 0; g < k; g++, r++)
            FXR(fx_softmax_finish)(x + r * n, e ? e + g * n : NULL, n, &st[g], out + r * n, take_log,
                                   flags & FX_STREAM_STORES);
    }
    FXR(fx_fence_stores)(flags);
}

static double FXR(fx_softmax_row)(const FX_T *x, int64_t n, FX_T *out, int flags) {
    return FXR(fx_softmax_like_row)(x, n, out, 0, flags);
}

static double FXR(fx_log_softmax_row)(const FX_T *x, int64_t n, FX_T *out, int flags) {
    return FXR(fx_softmax_like_row)(x, n, out, 1, flags);
}

FX_ALWAYS_INLINE void FXR(fx_ce_scan)(const FX_T *x, const FX_T *t, const FX_T *w, int64_t n, double eps,
                                      FX_T *e, FXR(fx_scan_state) *st) {
    /* Spelled out so that each combination is its own specialised loop.
     * Soft targets carry the smoothing in their coefficients. */
    const FX_T tk = (FX_T)(1.0 - eps), tc = (FX_T)(eps / (double)n);
    if (t) {
        if (w) FXR(fx_scan)(x, t, w, n, 0, tk, tc, e, st);
        else FXR(fx_scan)(x, t, NULL, n, 0, tk, tc, e, st);
    } else if (eps != 0.0) {
        if (w) FXR(fx_scan)(x, NULL, w, n, 1, 1, 0, e, st);
        else FXR(fx_scan)(x, NULL, NULL, n, 1, 1, 0, e, st);
    } else {
        FXR(fx_scan)(x, NULL, NULL, n, 0, 1, 0, e, st);
    }
}

/* The loss of a row from its scan state st, and its gradient (grad not
 * NULL).  Shared by the label and probability kernels (t == NULL means the
 * label y) and by the grouped rows of fx_ce_label_rows. */
FX_ALWAYS_INLINE double FXR(fx_ce_finish)(const FX_T *x, const FX_T *e, const FX_T *t, int64_t n, int64_t y,
                                          const fx_ce_options *opt, double gs, const FXR(fx_scan_state) *stp,
                                          FX_T *grad, double *lse_out) {
    const FX_T *w = opt ? (const FX_T *)opt->weight : NULL;
    const double eps = opt ? opt->label_smoothing : 0.0;
    const double z = opt ? opt->z_loss : 0.0;
    const FXR(fx_scan_state) st = *stp;
    const double lse = FXR(fx_lse_of)(&st);
    if (lse_out) *lse_out = lse;
    if (!isfinite(lse)) {
        if (grad) FXR(fx_fill)(grad, n, (FX_T)NAN);
        return NAN;
    }
    /* loss = sum_c a_c (lse - x_c) + z lse^2, grouped so that the common
     * case lse - x_y cancels exactly. */
    double loss, a_sum;
    const double wy = (!t && w) ? (double)w[y] : 1.0;
    const double xy = t ? 0.0 : (double)x[y];
    if (t) {
        loss = st.wt * lse - st.wtx; /* the smoothing is in the a_c */
        a_sum = st.wt;
    } else {
        loss = (1.0 - eps) * wy * (lse - xy);
        a_sum = (1.0 - eps) * wy;
    }
    if (eps != 0.0 && !t) {
        loss += eps / (double)n * (st.wsum * lse - st.wx);
        a_sum += eps / (double)n * st.wsum;
    }
    loss += z * lse * lse;
    if (grad) {
        const FX_T k = (FX_T)(gs * (a_sum + 2.0 * z * lse) / st.s);
        /* +0 without smoothing, not gs * 0 (-0 for gs < 0): then a class of
         * probability 0 gets 0 * k - 0 = -0 for k < 0, as fx_write_row and the
         * narrow kernels give it (the same bits on every path). */
        const FX_T cc = eps != 0.0 ? (FX_T)(gs * eps / (double)n) : (FX_T)0;
        const FX_T ct = (FX_T)(gs * (1.0 - eps));
        const FX_T m = (FX_T)st.m;
        const int stream = opt && (opt->flags & FX_STREAM_STORES);
        const double *bm = FXR(fx_saved_maxima)(e, n);
        if (t) {
            if (w) FXR(fx_write_exps)(x, e, bm, t, w, n, FXR(fx_blockwise)(n), m, k, ct, cc, -1, 0, stream, grad);
            else FXR(fx_write_exps)(x, e, bm, t, NULL, n, FXR(fx_blockwise)(n), m, k, ct, cc, -1, 0, stream, grad);
        } else {
            /* The label's element from the saved logit (x may be grad). */
            const FX_T gy = (FX_T)(exp(xy - st.m) * (double)k - (double)cc * wy - gs * (1.0 - eps) * wy);
            if (w) FXR(fx_write_exps)(x, e, bm, NULL, w, n, FXR(fx_blockwise)(n), m, k, 0, cc, y, gy, stream, grad);
            else FXR(fx_write_exps)(x, e, bm, NULL, NULL, n, FXR(fx_blockwise)(n), m, k, 0, cc, y, gy, stream, grad);
        }
    }
    return loss;
}

static double FXR(fx_ce_row)(const FX_T *x, const FX_T *t, int64_t n, int64_t y,
                             const fx_ce_options *opt, double gs, FX_T *grad, double *lse_out) {
    FXR(fx_scan_state) st;
    FX_EXPS(e, grad != NULL, n);
    FXR(fx_ce_scan)(x, t, opt ? (const FX_T *)opt->weight : NULL, n, opt ? opt->label_smoothing : 0.0, e, &st);
    const double loss = FXR(fx_ce_finish)(x, e, t, n, y, opt, gs, &st, grad, lse_out);
    if (grad && opt) FXR(fx_fence_stores)(opt->flags);
    return loss;
}

/* Pieces of a row split across threads: the (max, sum-exp) state of a slice,
 * and the write pass of a slice given the whole row's shift and scale. */
static void FXR(fx_lse_scan_row)(const FX_T *x, int64_t n, double *m, double *s) {
    FXR(fx_scan_state) st;
    FXR(fx_scan)(x, NULL, NULL, n, 0, 1, 0, NULL, &st);
    *m = st.m;
    *s = st.s;
}

static void FXR(fx_write_row)(const FX_T *x, int64_t n, int take_log, double shift, double k,
                              int flags, FX_T *out) {
    const int stream = flags & FX_STREAM_STORES;
    /* k NaN: a row whose lse is not finite, filled as the row kernels fill
     * it (the write's exp is defined for x - shift <= 0 only: +inf there
     * gives a NaN of another sign). */
    if (k != k) FXR(fx_fill)(out, n, (FX_T)NAN);
    else if (take_log) FXR(fx_write)(x, NULL, NULL, NULL, n, 1, (FX_T)shift, (FX_T)k, 0, 0, -1, 0, stream, out);
    else FXR(fx_write_exps)(x, NULL, NULL, NULL, NULL, n, flags & FX_BLOCK_SHIFTS, (FX_T)shift, (FX_T)k, 0, 0, -1,
                            0, stream, out);
    FXR(fx_fence_stores)(flags);
}

static double FXR(fx_ce_label_row)(const FX_T *x, int64_t n, int64_t y, const fx_ce_options *opt,
                                   double gs, FX_T *grad, double *lse_out) {
    return FXR(fx_ce_row)(x, NULL, n, y, opt, gs, grad, lse_out);
}

/* Row r of fx_ce_label_rows from its scan: what the per-row caller does
 * around fx_ce_label_row (_ce_block in _core.pyx): an ignored row gets loss
 * 0, its lse and a gradient of 0; the others the loss times sw[r] and the
 * gradient times grad_scale sw[r] grs[r]. */
FX_ALWAYS_INLINE double FXR(fx_ce_label_rows_finish)(const FX_T *x, int64_t r, int64_t n, const int64_t *labels,
                                                     int64_t ignore_index, const fx_ce_options *opt,
                                                     const double *sw, double grad_scale, const double *grs,
                                                     const FXR(fx_scan_state) *st, const FX_T *e, FX_T *loss,
                                                     FX_T *grad, FX_T *lse) {
    const FX_T *row = x + r * n;
    FX_T *g = grad ? grad + r * n : NULL;
    double row_loss = 0.0, l;
    if (!labels || labels[r] == ignore_index) {
        l = FXR(fx_lse_of)(st);
        if (g) memset(g, 0, (size_t)n * sizeof(FX_T));
    } else {
        const double wr = sw ? sw[r] : 1.0;
        double gs = grad_scale * wr;
        if (grs) gs = gs * grs[r];
        row_loss = wr * FXR(fx_ce_finish)(row, e, NULL, n, labels[r], opt, gs, st, g, &l);
    }
    if (loss) loss[r] = (FX_T)row_loss;
    if (lse) lse[r] = (FX_T)l;
    return row_loss;
}

/* Cross-entropy of n_rows rows against labels (checked by the caller),
 * without label smoothing or z-loss: fx_ce_label_row's losses, gradient and
 * lse (each optional; w, sw, grs too, as in fx_narrow_ce) and the sum of the
 * losses in row order, short rows a few at a time (fx_scan_next).  Without
 * labels: the lse alone (fx_logsumexp_rows). */
FX_ALWAYS_INLINE double FXR(fx_ce_label_rows_impl)(const FX_T *x, int64_t n_rows, int64_t n, const int64_t *labels,
                                                   int64_t ignore_index, const FX_T *w, const double *sw,
                                                   double grad_scale, const double *grs, int flags, FX_T *loss,
                                                   FX_T *grad, FX_T *lse) {
    const fx_ce_options opt = {w, 0.0, 0.0, flags};
    FXR(fx_scan_state) st[FX_GROUP];
    FX_EXPS(e, grad != NULL, n);
    double acc = 0.0;
    for (int64_t r = 0; r < n_rows;) {
        const int k = FXR(fx_scan_next)(x, r, n_rows, n, st, grad ? FX_GROUP_WRITE_MAX : FX_GROUP_SCAN_MAX, e);
        for (int g = 0; g < k; g++, r++)
            acc += FXR(fx_ce_label_rows_finish)(x, r, n, labels, ignore_index, &opt, sw, grad_scale, grs, &st[g],
                                                e ? e + g * n : NULL, loss, grad, lse);
    }
    if (grad) FXR(fx_fence_stores)(flags);
    return acc;
}

static double FXR(fx_ce_label_rows)(const FX_T *x, int64_t n_rows, int64_t n, const int64_t *labels,
                                    int64_t ignore_index, const FX_T *w, const double *sw, double grad_scale,
                                    const double *grs, int flags, FX_T *loss, FX_T *grad, FX_T *lse) {
    /* The forward without weights (and logsumexp) compiles to its own loop,
     * free of the others' branches: its rows cost ~35 ns, a few of which
     * those branches took. */
    if (!w && !sw && !grs && !grad)
        return FXR(fx_ce_label_rows_impl)(x, n_rows, n, labels, ignore_index, NULL, NULL, grad_scale, NULL, flags,
                                          loss, NULL, lse);
    return FXR(fx_ce_label_rows_impl)(x, n_rows, n, labels, ignore_index, w, sw, grad_scale, grs, flags, loss,
                                      grad, lse);
}

/* lse of n_rows rows of n classes: fx_logsumexp_row's bits, by groups. */
static void FXR(fx_logsumexp_rows)(const FX_T *x, int64_t n_rows, int64_t n, FX_T *lse) {
    FXR(fx_ce_label_rows)(x, n_rows, n, NULL, 0, NULL, NULL, 1.0, NULL, 0, NULL, NULL, lse);
}

static double FXR(fx_ce_prob_row)(const FX_T *x, const FX_T *t, int64_t n, const fx_ce_options *opt,
                                  double gs, FX_T *grad, double *lse_out) {
    return FXR(fx_ce_row)(x, t, n, 0, opt, gs, grad, lse_out);
}

#undef FXR
#undef FX_BLOCK
#undef FX_SCAN_AHEAD
#undef FX_GROUP
#undef FX_GROUP_SCAN_MAX
#undef FX_GROUP_WRITE_MAX
#undef FX_EXPS_ROOM
#undef FX_SAVED_MAX
#undef FX_BLOCKWISE
#undef FX_EXPS
