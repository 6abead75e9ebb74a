/*
 * fx_narrow_impl.h -- rows shorter than a few vectors (n_classes <=
 * FX_NARROW_MAX): SIMD across rows instead of along them.  FX_L rows are
 * processed at once, one row per lane, so a 10-class row costs a few vector
 * operations instead of a whole row kernel's fixed cost.
 *
 * A block of FX_L rows is read with one contiguous load per row and chunk
 * of FX_L columns, and turned into column vectors by an in-register
 * transpose (hardware gathers cost ~20 cycles each even from L1, and the
 * hardware prefetchers follow plain loads).  Outputs go back through the
 * same transpose and one store per row and chunk.
 *
 * The same code serves the class axis strided (PyTorch's (N, C, d1, ...)
 * layout, fx_cols_impl.h): there the FX_L "rows" of a block are adjacent
 * positions and class c of them is one plain load at c * cs, with no
 * transpose.  cs (the class stride) is 0 for rows, and a constant 0 at
 * every row entry point, so the row code compiles as before.
 * Same macros as fx_rows_impl.h, plus FX_TBYTES (sizeof(FX_T)).
 */

#define FXR(name) FX_CAT(FX_CAT(name, FX_SFX), FX_ISA)

#ifndef FX_NARROW_MODES
#define FX_NARROW_MODES
/* FX_NARROW_CE_OPTS: cross-entropy with soft targets, label smoothing or z-loss, a mode
 * (a copy of the code) of its own, out of line (fx_narrow_ce_opts): their
 * terms in the plain mode's code behind run-time tests cost its gradient 8%
 * more instructions, and the copy inlined beside it still 4% (callgrind,
 * 200000x10 float32, AVX2); out of line, 0.3-0.7%. */
enum { FX_NARROW_LSE = 0, FX_NARROW_SOFTMAX = 1, FX_NARROW_LOG_SOFTMAX = 2, FX_NARROW_CE = 3, FX_NARROW_CE_OPTS = 4 };
#define FX_NARROW_IS_CE(mode) ((mode) >= FX_NARROW_CE)
#endif

/*
 * The transpose is the classic x86 one, so that every step is a single
 * native shuffle (unpcklps/unpckhps, unpcklpd/unpckhpd, shuff32x4 or
 * vperm2f128): pairs of registers 1 apart are interleaved element-wise
 * within 128-bit lanes, then (float32 only) pairs 2 apart by element pairs,
 * then pairs FX_NE, 2 FX_NE, ... apart by whole 128-bit lanes.  The result
 * holds column (or row) FX_NPERM(j) in register j: for float32 the first two
 * steps swap bits 0 and 1 of the index.
 */
#define FX_NE (16 / FX_TBYTES) /* elements per 128-bit lane */
#if FX_TBYTES == 4
#define FX_NPERM(j) (((j) & ~3) | (((j) & 1) << 1) | (((j) >> 1) & 1))
#else
#define FX_NPERM(j) (j)
#endif
#if FX_TBYTES == 4 && FX_VBYTES == 64
#define FX_TR1_LO 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29
#define FX_TR1_HI 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31
#define FX_TR2_LO 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define FX_TR2_HI 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define FX_TRQ_LO 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27
#define FX_TRQ_HI 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31
#define FX_IOTA 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
#define FX_EVEN 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define FX_ODD 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#elif FX_TBYTES == 4 && FX_VBYTES == 32
#define FX_TR1_LO 0, 8, 1, 9, 4, 12, 5, 13
#define FX_TR1_HI 2, 10, 3, 11, 6, 14, 7, 15
#define FX_TR2_LO 0, 1, 8, 9, 4, 5, 12, 13
#define FX_TR2_HI 2, 3, 10, 11, 6, 7, 14, 15
#define FX_TRQ_LO 0, 1, 2, 3, 8, 9, 10, 11
#define FX_TRQ_HI 4, 5, 6, 7, 12, 13, 14, 15
#define FX_IOTA 0, 1, 2, 3, 4, 5, 6, 7
#define FX_EVEN 0, 2, 4, 6, 8, 10, 12, 14
#define FX_ODD 1, 3, 5, 7, 9, 11, 13, 15
#elif FX_TBYTES == 4 && FX_VBYTES == 16
#define FX_TR1_LO 0, 4, 1, 5
#define FX_TR1_HI 2, 6, 3, 7
#define FX_TR2_LO 0, 1, 4, 5
#define FX_TR2_HI 2, 3, 6, 7
#define FX_IOTA 0, 1, 2, 3
#define FX_EVEN 0, 2, 4, 6
#define FX_ODD 1, 3, 5, 7
#elif FX_TBYTES == 8 && FX_VBYTES == 64
#define FX_TR1_LO 0, 8, 2, 10, 4, 12, 6, 14
#define FX_TR1_HI 1, 9, 3, 11, 5, 13, 7, 15
#define FX_TRQ_LO 0, 1, 4, 5, 8, 9, 12, 13
#define FX_TRQ_HI 2, 3, 6, 7, 10, 11, 14, 15
#elif FX_TBYTES == 8 && FX_VBYTES == 32
#define FX_TR1_LO 0, 4, 2, 6
#define FX_TR1_HI 1, 5, 3, 7
#define FX_TRQ_LO 0, 1, 4, 5
#define FX_TRQ_HI 2, 3, 6, 7
#elif FX_TBYTES == 8 && FX_VBYTES == 16
#define FX_TR1_LO 0, 2
#define FX_TR1_HI 1, 3
#else
#error "fx_narrow_impl.h: no transpose for this vector width"
#endif

#if FX_TBYTES == 4
typedef int32_t FXR(fx_nvi_mem) __attribute__((vector_size(FX_VBYTES), aligned(4), may_alias));
typedef uint32_t FXR(fx_nvu) __attribute__((vector_size(FX_VBYTES)));
#define FX_NIT int32_t
#else
typedef int64_t FXR(fx_nvi_mem) __attribute__((vector_size(FX_VBYTES), aligned(8), may_alias));
typedef uint64_t FXR(fx_nvu) __attribute__((vector_size(FX_VBYTES)));
#define FX_NIT int64_t
#endif

/* One step of the transpose: registers i and i + d (bit d of i clear). */
#define FX_NSTEP(t, d, LO, HI)                                  \
    _Pragma("GCC unroll 16") for (int i = 0; i < FX_L; i++) {    \
        if (i & (d)) continue;                                   \
        const FX_V a_ = t[i], b_ = t[i + (d)];                   \
        t[i] = FX_SHUF(FX_VI, a_, b_, LO);                       \
        t[i + (d)] = FX_SHUF(FX_VI, a_, b_, HI);                 \
    }

FX_ALWAYS_INLINE void FXR(fx_ntranspose)(FX_V *t) {
    FX_NSTEP(t, 1, FX_TR1_LO, FX_TR1_HI)
#if FX_NE == 4 && FX_L >= 4
    FX_NSTEP(t, 2, FX_TR2_LO, FX_TR2_HI)
#endif
#if FX_L >= 2 * FX_NE
    FX_NSTEP(t, FX_NE, FX_TRQ_LO, FX_TRQ_HI)
#endif
#if FX_L >= 4 * FX_NE
    FX_NSTEP(t, 2 * FX_NE, FX_TRQ_LO, FX_TRQ_HI)
#endif
}

/*
 * Every loop over the columns runs over NC slots, a compile-time constant
 * (FX_NSLOTS), with slots past n skipped: fully unrolled, the columns stay
 * in registers and every address is a constant offset.  (With a run-time
 * bound they went through the stack and the row addresses were spilled:
 * that cost as much as the exps.)  Columns are transposed a chunk of FX_L
 * at a time; slots past NC in the last chunk are never kept, so the
 * compiler drops the shuffles that only they need.
 */
#ifndef FX_NPF
#define FX_NPF 512 /* bytes ahead in each class row of positions */
#endif
#define FX_NFOR(c, NC, n) _Pragma("GCC unroll 32") for (int c = 0; c < (NC); c++) if (c < (n))
#define FX_NCHUNKS(NC) (((NC) + FX_L - 1) / FX_L)

/*
 * call(NC) with the slots for rows of n classes: one chunk of FX_L
 * columns, two, or FX_NARROW_MAX (narrow ISAs: more chunks share the
 * widest code), and exactly 2 or 10 for the commonest narrow widths where
 * the chunk's slots would transpose columns that no row has: two classes
 * (binary classification with two logits) with chunks of 8 or more, and 10
 * (digits, CIFAR-10) for rows of 9 or 10 classes where 10 is not a whole
 * number of chunks.  AVX2, 1 thread, in cache, min of 200-300 alternated
 * calls, ns an element: 8192x2 float32 (8 -> 2 slots) lse 1.176 -> 1.078,
 * log_softmax 2.286 -> 2.038, softmax 1.892 -> 1.643, loss 1.616 -> 1.425,
 * gradient 2.754 -> 2.481 (float64's chunks of 4: log_softmax 8% slower,
 * not taken); 8192x10 float32 (16 -> 10 slots) lse 0.577 ->
 * 0.547, log_softmax 0.855 -> 0.742, loss 0.675 -> 0.657, gradient 1.043
 * -> 0.922; float64 (32 -> 10) lse 1.460 -> 1.395, log_softmax 2.237 ->
 * 1.932, loss 1.857 -> 1.601, gradient 2.538 -> 2.314.  Slots of FX_L / 2
 * (2-4 classes) and FX_L + FX_L / 2 besides moved calls up to 11% either
 * way (12 classes: log_softmax 0.959 -> 0.851, the loss 0.743 -> 0.776; 2
 * classes at 4 slots: the gradient 3.735 -> 3.986), near the noise of
 * unchanged code (16 classes, the loss: +8%), for more code to compile:
 * not kept.
 */
#define FX_NSLOTS(n, call)                                                  \
    do {                                                                    \
        if (FX_L >= 8 && (n) <= 2)                                          \
            call(2);                                                        \
        else if ((n) <= FX_L)                                               \
            call(FX_L);                                                     \
        else if (10 % FX_L != 0 && (n) <= 10 && (n) > 10 / FX_L * FX_L)     \
            call(10);                                                       \
        else if ((n) <= 2 * FX_L || 2 * FX_L >= FX_NARROW_MAX)              \
            call(2 * FX_L);                                                 \
        else                                                                \
            call(FX_NARROW_MAX);                                            \
    } while (0)

FX_ALWAYS_INLINE FX_V FXR(fx_nload)(const FX_T *p) { return *(const FX_VMEM *)p; }

/*
 * The columns of a block: v[c][r] = x[r * n + c] (cs = 0) or x[c * cs + r]
 * for r < rows (0 above).  Slots from n to NC get whatever the rows'
 * neighbours hold (none past NC is set).  whole: every row's last chunk can be
 * loaded whole (its lanes past the row fall inside x), the fast path.
 * Positions (cs > 0) always come in whole blocks (fx_narrow_cols_nc).
 */
FX_FOLD_INLINE void FXR(fx_narrow_in)(const FX_T *x, int64_t n, int64_t cs, int64_t rows, int whole, FX_V *v,
                                        const int NC) {
    if (cs) {
        _Pragma("GCC unroll 32") for (int c = 0; c < NC; c++) {
            /* Slots past n are never read (FX_NFOR), but the compiler cannot tell. */
            v[c] = c >= n ? FX_BC(0) : FXR(fx_nload)(x + c * cs);
            /* Through an integer: the padded tail copy (fx_narrow_cols_nc)
             * prefetches past its end, which is harmless but warned about. */
            if (c < n) __builtin_prefetch((const void *)((uintptr_t)(x + c * cs) + FX_NPF));
        }
        return;
    }
    _Pragma("GCC unroll 16") for (int k = 0; k < FX_NCHUNKS(NC); k++) {
        const int c0 = k * FX_L;
        if (c0 >= n) {
            /* Never read (fx_narrow_out has the same guard), but the
             * compiler cannot tell. */
            _Pragma("GCC unroll 16") for (int j = 0; j < FX_L; j++) v[c0 + j] = FX_BC(0);
            continue;
        }
        FX_V t[FX_L];
        if (whole) {
            _Pragma("GCC unroll 16") for (int r = 0; r < FX_L; r++) t[r] = FXR(fx_nload)(x + r * n + c0);
        } else {
            const int64_t len = n - c0 < FX_L ? n - c0 : FX_L;
            _Pragma("GCC unroll 16") for (int r = 0; r < FX_L; r++)
                t[r] = r < rows ? FX_LOADP(x + r * n + c0, len, 0) : FX_BC(0);
        }
        FXR(fx_ntranspose)(t);
        _Pragma("GCC unroll 16") for (int j = 0; j < FX_L; j++) if (c0 + FX_NPERM(j) < NC) v[c0 + FX_NPERM(j)] = t[j];
    }
}

/*
 * The inverse: out[r * n + c] (or out[c * cs + r], whole blocks) = v[c][r]
 * for r < rows, c < n.  Rows are stored in address order, each chunk whole
 * where its overhang stays inside the block (a later store rewrites it; the
 * block's input is already in registers, so out may be x), partially at the
 * block's end.
 */
FX_FOLD_INLINE void FXR(fx_narrow_out)(FX_T *out, int64_t n, int64_t cs, int64_t rows, FX_V *v, const int NC) {
    if (cs) {
        FX_NFOR(c, NC, n) *(FX_VMEM *)(out + c * cs) = v[c];
        return;
    }
    FX_V w[FX_NARROW_MAX]; /* row r of chunk k in w[k * FX_L + r] */
    _Pragma("GCC unroll 16") for (int k = 0; k < FX_NCHUNKS(NC); k++) {
        if (k * FX_L >= n) {
            _Pragma("GCC unroll 16") for (int j = 0; j < FX_L; j++) w[k * FX_L + j] = FX_BC(0); /* as in fx_narrow_in */
            continue;
        }
        FX_V t[FX_L];
        _Pragma("GCC unroll 16") for (int j = 0; j < FX_L; j++) t[j] = k * FX_L + j < NC ? v[k * FX_L + j] : FX_BC(0);
        FXR(fx_ntranspose)(t);
        _Pragma("GCC unroll 16") for (int j = 0; j < FX_L; j++) w[k * FX_L + FX_NPERM(j)] = t[j];
    }
    const int64_t end = rows * n;
    _Pragma("GCC unroll 16") for (int r = 0; r < FX_L; r++) {
        if (r >= rows) break;
        _Pragma("GCC unroll 16") for (int k = 0; k < FX_NCHUNKS(NC); k++) {
            if (k * FX_L >= n) break;
            const int64_t at = r * n + k * FX_L;
            if (at + FX_L <= end)
                *(FX_VMEM *)(out + at) = w[k * FX_L + r];
            else
                FX_STOREP(out + at, w[k * FX_L + r], n - k * FX_L < FX_L ? n - k * FX_L : FX_L);
        }
    }
}

/* Lanes in double, added to acc (FX_L / lanes of double vectors). */
FX_ALWAYS_INLINE void FXR(fx_nacc)(fx_vf64 *acc, FX_V v) {
#if FX_TBYTES == 4
    const fx_vf32h lo = FX_SHUF(fx_vi32h, v, v, FX_HALF_LO);
    const fx_vf32h hi = FX_SHUF(fx_vi32h, v, v, FX_HALF_HI);
    acc[0] += __builtin_convertvector(lo, fx_vf64);
    acc[1] += __builtin_convertvector(hi, fx_vf64);
#else
    acc[0] += v;
#endif
}

/* FX_L doubles as FX_T lanes. */
FX_ALWAYS_INLINE FX_V FXR(fx_nfrom_f64)(const double *p) {
#if FX_TBYTES == 4
    const fx_vf32h lo = __builtin_convertvector(*(const fx_vf64_mem *)p, fx_vf32h);
    const fx_vf32h hi = __builtin_convertvector(*(const fx_vf64_mem *)(p + FX_L / 2), fx_vf32h);
    return FX_SHUF(FX_VI, lo, hi, FX_IOTA);
#else
    return *(const fx_vf64_mem *)p;
#endif
}

/*
 * Cross-entropy inputs and outputs (all per row from the batch's first
 * row).  A row is live when its label is in [0, n) and not ignore_index;
 * labels were checked by the caller, the range test only keeps
 * ignore_index (any int64) apart from the classes.
 */
typedef struct {
    const int64_t *labels;
    const FX_T *t;     /* soft targets (x's layout; labels NULL) or NULL */
    int64_t ignore_index;
    const FX_T *w;     /* class weights or NULL                      */
    const double *sw;  /* sample weights (loss and gradient) or NULL */
    double grad_scale; /* gradient scale ...                         */
    const double *grs; /* ... times this per row, or NULL            */
    FX_T *loss, *lse;  /* optional outputs                           */
    fx_vf64 acc[2];    /* the loss sum, per lane                     */
    /* Label smoothing eps and z-loss z (fx_ce_label_row's formulas):
     * a_c = on_y w_y [c == y] (soft targets: on_y w_c t_c) + per_class w_c,
     * A = sum_c a_c. */
    int smooth, zl;       /* eps != 0, z != 0                        */
    FX_T on_y, per_class; /* 1 - eps, eps / n                        */
    FX_T wsum, z2, z;     /* sum_c w_c (n without weights), 2 z, z   */
} FXR(fx_nce);

FX_ALWAYS_INLINE void FXR(fx_nlabels)(const int64_t *labels, int64_t ignore_index, int64_t n, FX_VI *lab,
                                      FX_VI *live) {
    const FX_VI zi = {0};
    /* A valid label never equals -1 (nor, as int32, ignore_index's low half
     * when ignore_index is not a class). */
    const FX_NIT ig = (FX_NIT)(ignore_index >= 0 && ignore_index < n ? ignore_index : -1);
#if FX_TBYTES == 4
    const FX_VI a = *(const FXR(fx_nvi_mem) *)labels, b = *(const FXR(fx_nvi_mem) *)(labels + FX_L / 2);
    const FX_VI lo = FX_SHUF(FX_VI, a, b, FX_EVEN), hi = FX_SHUF(FX_VI, a, b, FX_ODD);
    *live = (hi == zi) & ((FXR(fx_nvu))lo < (FXR(fx_nvu))(zi + (FX_NIT)n)) & (lo != zi + ig);
    *lab = lo;
#else
    const FX_VI l = *(const FXR(fx_nvi_mem) *)labels;
    *live = ((FXR(fx_nvu))l < (FXR(fx_nvu))(zi + (FX_NIT)n)) & (l != zi + ig);
    *lab = l;
#endif
}

/* A block between its two phases. */
typedef struct {
    FX_V v[FX_NARROW_MAX]; /* the columns, or their exp(x - sh)        */
    FX_V sh, s;            /* shift, sum of exp(x - sh)                 */
    FX_VI lab, live;       /* cross-entropy: labels, live rows          */
    FX_V xy, wy, sw, gs;   /* x_y, w_y, sample weight, gradient scale   */
    FX_V d;                /* smoothing: sum_c w_c (sh - x_c)           */
    FX_V dt;               /* soft targets: sum_c a_c (sh - x_c), and   */
                           /* wy holds A = sum_c a_c                    */
} FXR(fx_nblock);

/* Where row (or position) r0 starts: rows are n apart, positions 1. */
FX_ALWAYS_INLINE int64_t FXR(fx_nat)(int64_t r0, int64_t n, int64_t cs) { return cs ? r0 : r0 * n; }

/*
 * Phase 1 of a block of `rows` (<= FX_L) rows starting at row r0 of x (n
 * classes, class stride cs): the columns, their shift and sum of
 * exponentials, and the cross-entropy lanes.  keep: v[c] becomes
 * exp(v[c] - sh).  whole: see fx_narrow_in.
 */
FX_FOLD_INLINE void FXR(fx_narrow_sum)(FXR(fx_nblock) *b, FX_V *v, const FX_T *x, int64_t n, int64_t cs, int64_t r0,
                                         int64_t rows, int whole, int mode, const FXR(fx_nce) *ce, int soft,
                                         int keep, const int NC) {
    const FX_V zero = FX_BC(0);
    const FX_T *xb = x + FXR(fx_nat)(r0, n, cs);
    FXR(fx_narrow_in)(xb, n, cs, rows, whole, v, NC);
    FX_V m = FX_BC((FX_T)-INFINITY);
    FX_NFOR(c, NC, n) m = FX_MAX(v[c], m);
    const FX_VI zi = {0};
    if (FX_NARROW_IS_CE(mode)) {
        /* Labels and scales of a partial block come through padded copies. */
        int64_t lab_p[FX_L];
        double sw_p[FX_L], grs_p[FX_L];
        const int64_t *labels = soft ? NULL : ce->labels + r0;
        const double *sw = ce->sw ? ce->sw + r0 : NULL, *grs = ce->grs ? ce->grs + r0 : NULL;
        if (rows < FX_L) {
            for (int64_t r = 0; r < FX_L; r++) {
                lab_p[r] = r < rows && !soft ? labels[r] : -1;
                sw_p[r] = r < rows && sw ? sw[r] : 0.0;
                grs_p[r] = r < rows && grs ? grs[r] : 0.0;
            }
            labels = soft ? NULL : lab_p;
            sw = sw ? sw_p : NULL;
            grs = grs ? grs_p : NULL;
        }
        if (soft) {
            /* Soft targets: every row of the block counts, none has a label. */
            FX_VI live = zi;
            for (int r = 0; r < FX_L; r++) live[r] = r < rows ? -1 : 0;
            b->live = live;
            b->lab = zi - 1;
        } else {
            FXR(fx_nlabels)(labels, ce->ignore_index, n, &b->lab, &b->live);
        }
        b->gs = FX_BC((FX_T)ce->grad_scale);
        b->sw = FX_BC(1);
        if (sw) {
            b->sw = FXR(fx_nfrom_f64)(sw);
            b->gs = b->gs * b->sw;
        }
        if (grs) b->gs = b->gs * FXR(fx_nfrom_f64)(grs);
        /* x_y and w_y by selection over the classes (one matches, or none):
         * no branch; integer ors, which the compiler may add up as a tree.
         * (float64 on AVX-512 without class weights: a gather instead.) */
        FX_VI xy = zi, wy = zi;
        if (soft) {
            b->xy = b->wy = zero; /* A below, with the shift */
        } else
#if FX_VBYTES == 64 && FX_TBYTES == 8
        if (!ce->w && !keep) {
            /* float64 without the gradient: one masked gather of x_y from
             * the rows just loaded (in L1) beats the selection, whose
             * compares and the columns they keep alive spill registers
             * (ce kernel 4% faster).  With the gradient it was 8% slower,
             * and for float32 the selection is faster than a 16-lane
             * gather. */
            const int64_t u = cs ? 1 : n; /* lane to lane */
            const __m512i idx = _mm512_add_epi64(_mm512_setr_epi64(0, u, 2 * u, 3 * u, 4 * u, 5 * u, 6 * u, 7 * u),
                                                 cs ? (__m512i)(b->lab * cs) : (__m512i)b->lab);
            const __mmask8 k = _mm512_test_epi64_mask((__m512i)b->live, (__m512i)b->live);
            b->xy = (FX_V)_mm512_mask_i64gather_pd(_mm512_setzero_pd(), k, idx, xb, 8);
            b->wy = FX_BC(1);
        } else
#endif
        {
            FX_NFOR(c, NC, n) {
                const FX_VI is_y = b->lab == zi + (FX_NIT)c;
                xy |= (FX_VI)v[c] & is_y;
                if (ce->w) wy |= (FX_VI)FX_BC(ce->w[c]) & is_y;
            }
            b->xy = (FX_V)xy;
            b->wy = ce->w ? (FX_V)wy : FX_BC(1);
        }
    }
    const FX_V sh = FX_SEL((m - m) == zero, m, zero); /* m where finite, else 0 */
    /* Smoothing: sum_c w_c (lse - x_c) = W log s + sum_c w_c (sh - x_c),
     * two terms >= 0 (sh is the maximum, w >= 0), where W lse - sum_c w_c x_c
     * would cancel in the float lanes. */
    if (mode == FX_NARROW_CE_OPTS) {
        FX_V d = zero;
        if (ce->smooth && !soft) FX_NFOR(c, NC, n) d += (ce->w ? FX_BC(ce->w[c]) : FX_BC(1)) * (sh - v[c]);
        b->d = d;
        b->dt = zero;
    }
    if (soft) {
        /* The same split for sum_c a_c (lse - x_c), a_c = w_c (on_y t_c +
         * per_class) >= 0 (PyTorch's smoothed target: a class of a_c > 0
         * at -inf gives +inf, and one of a_c = 0 NaN). */
        FX_V u[FX_NARROW_MAX];
        FXR(fx_narrow_in)(ce->t + FXR(fx_nat)(r0, n, cs), n, cs, rows, whole, u, NC);
        FX_V sa = zero, dt = zero;
        FX_NFOR(c, NC, n) {
            const FX_V a = (ce->w ? FX_BC(ce->w[c]) : FX_BC(1)) * (ce->on_y * u[c] + ce->per_class);
            sa += a;
            dt += a * (sh - v[c]);
        }
        b->wy = sa;
        b->dt = dt;
    }
    FX_V s = zero;
    if (keep) {
        /* FX_EXP, not FX_EXP_NEG behind a test for +inf rows: the unrolled
         * columns compiled twice took 23% longer (float64, 1Mx10, 1 thread). */
        FX_NFOR(c, NC, n) {
            v[c] = FX_EXP(v[c] - sh);
            s += v[c];
        }
    } else {
        /* Only summed: FX_EXP_SUM leaves out the exact exp's selects, and
         * the rows where it differs are told apart by s alone (no register
         * held for the max through the loop) and fixed once after.  Where
         * m is finite s >= 1 (the max adds exp(0) = 1) and the classes
         * below the clamp add exp(lo) ~ 2^-126 (2^-1022) instead of 0; a
         * row of -inf (shift 0) gives n exp(lo) < 1 and must sum to 0, one
         * holding +inf at least exp(hi) > 2^64 and must sum to +inf.  NaN
         * compares false and stays.  AVX2, 1Mx10, 1 thread, alternated:
         * float32 lse 7.9 -> 6.9 ms, loss 10.5 -> 9.2; float64 19.5 ->
         * 17.6 and 24.5 -> 22.7. */
        FX_NFOR(c, NC, n) s += FX_EXP_SUM(v[c] - sh);
        s = FX_SEL(s < FX_BC(1), zero, FX_SEL(s > FX_BC((FX_T)0x1p64), FX_BC((FX_T)INFINITY), s));
    }
    b->sh = sh;
    b->s = s;
}

/*
 * Phase 2, given ls = log(s):
 *   FX_NARROW_LSE:          lse[r]
 *   FX_NARROW_SOFTMAX/LOG:  out[r * n + c]
 *   FX_NARROW_CE:           ce->loss[r], ce->lse[r] (both optional), out = the
 *       gradient (optional); ce->acc += the losses.  Ignored rows: loss 0,
 *       gradient 0.
 * Row indices from the batch's first row, r0 the block's.
 */
FX_FOLD_INLINE void FXR(fx_narrow_finish)(FXR(fx_nblock) *b, FX_V *v, FX_V ls, int64_t n, int64_t cs, int64_t r0,
                                            int64_t rows, int whole, int mode, FXR(fx_nce) *ce, int soft,
                                            FX_T *out, FX_T *lse, const int NC) {
    const FX_V zero = FX_BC(0), nan = FX_BC((FX_T)NAN);
    /* softmax passes s for ls (no log): only s = +inf must give NaN
     * through k below (s = 0 and NaN do by themselves). */
    const FX_V vlse = b->sh + ls;
    const FX_VI finite = mode == FX_NARROW_SOFTMAX ? b->s != FX_BC((FX_T)INFINITY) : (vlse - vlse) == zero;
    if (FX_NARROW_IS_CE(mode)) lse = ce->lse;
    if (lse) {
        if (rows == FX_L)
            *(FX_VMEM *)(lse + r0) = vlse;
        else
            FX_STOREP(lse + r0, vlse, rows);
    }
    if (mode == FX_NARROW_LSE) return;
    if (FX_NARROW_IS_CE(mode)) {
        FX_V loss = soft ? b->wy * ls + b->dt : b->wy * (vlse - b->xy);
        if (mode == FX_NARROW_CE_OPTS) {
            if (ce->smooth && !soft) loss = ce->on_y * loss + ce->per_class * (ce->wsum * ls + b->d);
            if (ce->zl) loss += ce->z * vlse * vlse;
        }
        loss = FX_SEL(finite, loss, nan);
        if (ce->sw) loss = b->sw * loss;
        loss = FX_SEL(b->live, loss, zero);
        FXR(fx_nacc)(ce->acc, loss);
        if (ce->loss) {
            if (rows == FX_L)
                *(FX_VMEM *)(ce->loss + r0) = loss;
            else
                FX_STOREP(ce->loss + r0, loss, rows);
        }
        if (!out) return;
        /* grad_c = gs ((A + 2 z lse) p_c - a_c).  Rows of a non-finite lse
         * get NaN through k (exp * NaN), ignored rows 0 by the selects
         * (their exps may be inf or NaN). */
        FX_V sub = FX_SEL(b->live, b->gs * b->wy, zero), scale = sub;
        if (mode == FX_NARROW_CE_OPTS) {
            /* (soft targets: wy is A) */
            FX_V a = ce->smooth && !soft ? ce->on_y * b->wy + ce->per_class * ce->wsum : b->wy;
            if (ce->zl) a += ce->z2 * vlse;
            scale = FX_SEL(b->live, b->gs * a, zero);
            if (ce->smooth) sub = sub * ce->on_y;
        }
        const FX_V k = FX_SEL(finite, scale / b->s, nan);
        const FX_VI zi = {0};
        if (soft) {
            /* The targets again, from L1: kept from phase 1 they went
             * through the stack (and the compiler took them for unset). */
            FX_V u[FX_NARROW_MAX];
            FXR(fx_narrow_in)(ce->t + FXR(fx_nat)(r0, n, cs), n, cs, rows, whole, u, NC);
            const FX_V gs = FX_SEL(b->live, b->gs, zero);
            FX_NFOR(c, NC, n) {
                const FX_V a = (ce->w ? FX_BC(ce->w[c]) : FX_BC(1)) * (ce->on_y * u[c] + ce->per_class);
                v[c] = FX_SEL(b->live, v[c] * k, zero) - gs * a;
            }
        } else if (mode == FX_NARROW_CE_OPTS && ce->smooth) {
            const FX_V cc = FX_SEL(b->live, b->gs * ce->per_class, zero);
            FX_NFOR(c, NC, n) {
                const FX_V wc = ce->w ? FX_BC(ce->w[c]) : FX_BC(1);
                v[c] = FX_SEL(b->live, v[c] * k, zero) - FX_SEL(b->lab == zi + (FX_NIT)c, sub, zero) - cc * wc;
            }
        } else {
            FX_NFOR(c, NC, n) v[c] = FX_SEL(b->live, v[c] * k, zero) - FX_SEL(b->lab == zi + (FX_NIT)c, sub, zero);
        }
    } else {
        /* A non-finite lse gives NaN everywhere: through k or ls, except
         * where the sum is 0 (a row of -inf: 0 * inf and -inf + inf are
         * NaN already). */
        const FX_V k = FX_SEL(finite, FX_BC(1) / b->s, nan), lsn = FX_SEL(finite, ls, nan);
        FX_NFOR(c, NC, n) v[c] = mode == FX_NARROW_LOG_SOFTMAX ? (v[c] - b->sh) - lsn : v[c] * k;
    }
    FXR(fx_narrow_out)(out + FXR(fx_nat)(r0, n, cs), n, cs, rows, v, NC);
}

/*
 * Blocks summed before any takes its log: the log is one long dependency
 * chain per block, which the other blocks' work hides.  Four, but two for
 * outputs of n columns beyond two chunks of columns (float32 17-32 classes
 * on AVX2, float64 9-32), where four blocks' columns through the stack
 * cost log_softmax 19% (float32, 24 classes), and for FX_NARROW_CE_OPTS,
 * which in fours crashed GCC 12 (internal compiler error in
 * gimple_expand_vec_cond_expr) in the SSE2 float64 unit.  AVX2, 1 thread,
 * in cache, min of 300 calls of each build alternated in one process, four
 * blocks against two, ns an element:
 *   float32 10 classes: lse 0.641 -> 0.577, loss 0.792 -> 0.678,
 *     log_softmax 0.945 -> 0.872, loss and gradient 1.154 -> 1.056
 *   float32 4 classes: lse 0.955 -> 0.771, loss 1.434 -> 0.988
 *   float64 10 classes (two for outputs): lse 1.682 -> 1.454, loss 2.105
 *     -> 1.837; log_softmax 2.204 -> 2.234 and softmax 2.522 -> 2.659
 *     (softmax then a block at a time: the code around it moved), the
 *     gradient 2.719 -> 2.500
 *   float64 4 classes: log_softmax 2.502 -> 2.234, gradient 2.997 -> 2.643
 */
#define FX_NGROUP_MAX 4
/* Whether the blocks have an output of n columns, as a constant wherever the
 * caller's mode or branch tells. */
FX_ALWAYS_INLINE int FXR(fx_nhas_out)(const FX_T *out, int mode) {
    return mode == FX_NARROW_SOFTMAX || mode == FX_NARROW_LOG_SOFTMAX || out != NULL;
}
FX_ALWAYS_INLINE int FXR(fx_ngroup)(const FX_T *out, int mode, const int NC) {
    return mode == FX_NARROW_CE_OPTS || (FXR(fx_nhas_out)(out, mode) && NC > 2 * FX_L) ? 2 : FX_NGROUP_MAX;
}

/* What fx_narrow_finish takes for ls: log(s), or s itself for softmax,
 * which needs no log. */
FX_ALWAYS_INLINE FX_V FXR(fx_nls)(const FXR(fx_nblock) *b, int mode) {
    return mode == FX_NARROW_SOFTMAX ? b->s : FX_LOG(b->s);
}

/* nb (1 or fx_ngroup) blocks from row r0, the last one of `rows` rows. */
FX_FOLD_INLINE void FXR(fx_narrow_blocks)(const FX_T *x, int64_t n, int64_t cs, int64_t r0, int nb,
                                            int64_t rows, int whole, int mode, FXR(fx_nce) *ce, FX_T *out,
                                            FX_T *lse, const int NC) {
    const int keep = mode == FX_NARROW_SOFTMAX || (FX_NARROW_IS_CE(mode) && out);
    /* Soft targets (one value for both phases, so the compiler sees that
     * the second reads only what the first wrote). */
    const int soft = mode == FX_NARROW_CE_OPTS && ce->t;
    if (nb == FX_NGROUP_MAX) {
        /* Through the stack (an array indexed in a loop).  With outputs
         * each block keeps its columns for the finish; without, they are
         * dead after the sums, and one set, which every block reuses, stays
         * in registers (float32 lse, 10 classes: 0.610 -> 0.577 ns an
         * element). */
        FXR(fx_nblock) b[FX_NGROUP_MAX];
        FX_V ls[FX_NGROUP_MAX], v[FX_NARROW_MAX];
        const int has_out = FXR(fx_nhas_out)(out, mode);
        for (int i = 0; i < FX_NGROUP_MAX; i++)
            FXR(fx_narrow_sum)(&b[i], has_out ? b[i].v : v, x, n, cs, r0 + i * FX_L,
                               i == FX_NGROUP_MAX - 1 ? rows : FX_L, whole, mode, ce, soft, keep, NC);
        for (int i = 0; i < FX_NGROUP_MAX; i++) ls[i] = FXR(fx_nls)(&b[i], mode);
        for (int i = 0; i < FX_NGROUP_MAX; i++)
            FXR(fx_narrow_finish)(&b[i], has_out ? b[i].v : v, ls[i], n, cs, r0 + i * FX_L,
                                  i == FX_NGROUP_MAX - 1 ? rows : FX_L, whole, mode, ce, soft, out, lse, NC);
    } else if (nb == 2 && !FXR(fx_nhas_out)(out, mode)) {
        /* FX_NARROW_CE_OPTS without outputs (fx_ngroup): two named blocks,
         * not an array: every access constant, so the compiler keeps them
         * in registers. */
        FXR(fx_nblock) b0, b1;
        FXR(fx_narrow_sum)(&b0, b0.v, x, n, cs, r0, FX_L, whole, mode, ce, soft, keep, NC);
        FXR(fx_narrow_sum)(&b1, b1.v, x, n, cs, r0 + FX_L, rows, whole, mode, ce, soft, keep, NC);
        const FX_V ls0 = FX_LOG(b0.s), ls1 = FX_LOG(b1.s);
        FXR(fx_narrow_finish)(&b0, b0.v, ls0, n, cs, r0, FX_L, whole, mode, ce, soft, out, lse, NC);
        FXR(fx_narrow_finish)(&b1, b1.v, ls1, n, cs, r0 + FX_L, rows, whole, mode, ce, soft, out, lse, NC);
    } else if (nb == 2) {
        /* With outputs the columns of two blocks do not fit in the
         * registers: through the stack (an array indexed in a loop). */
        FXR(fx_nblock) b[2];
        FX_V ls[2];
        for (int i = 0; i < 2; i++)
            FXR(fx_narrow_sum)(&b[i], b[i].v, x, n, cs, r0 + i * FX_L, i ? rows : FX_L, whole, mode, ce, soft, keep,
                               NC);
        for (int i = 0; i < 2; i++) ls[i] = FXR(fx_nls)(&b[i], mode);
        for (int i = 0; i < 2; i++)
            FXR(fx_narrow_finish)(&b[i], b[i].v, ls[i], n, cs, r0 + i * FX_L, i ? rows : FX_L, whole, mode, ce, soft,
                                  out, lse, NC);
    } else {
        FXR(fx_nblock) b0;
        FXR(fx_narrow_sum)(&b0, b0.v, x, n, cs, r0, rows, whole, mode, ce, soft, keep, NC);
        const FX_V ls0 = FXR(fx_nls)(&b0, mode);
        FXR(fx_narrow_finish)(&b0, b0.v, ls0, n, cs, r0, rows, whole, mode, ce, soft, out, lse, NC);
    }
}

/* Elements that loading a block of FX_L rows whole reads (fx_narrow_in):
 * whole loads only while that many elements are left. */
FX_ALWAYS_INLINE int64_t FXR(fx_nreach)(int64_t n) { return (FX_L - 1) * n + (n + FX_L - 1) / FX_L * FX_L; }

/* All n_rows rows (NC slots): groups of blocks (fx_ngroup) while all can
 * be loaded whole, then single blocks. */
FX_FOLD_INLINE void FXR(fx_narrow_run_nc)(const FX_T *x, int64_t n_rows, int64_t n, int mode, FXR(fx_nce) *ce,
                                            FX_T *out, FX_T *lse, const int NC) {
    const int64_t reach = FXR(fx_nreach)(n);
    int64_t r0 = 0;
    /* Groups hide the latency of each block's log (softmax: its division)
     * behind the other blocks' work, but for softmax's widest code (two
     * blocks of FX_NARROW_MAX columns through the stack).  AVX2, 8192 rows,
     * 1 thread, in cache, min of 100-200 alternated calls, softmax a block
     * at a time -> grouped, ns an element: float32 10 classes 1.013 ->
     * 0.741, 16 0.759 -> 0.641, 2 2.972 -> 2.518; float64 10 2.353 ->
     * 1.747, 8 2.249 -> 1.922, 2 4.422 -> 3.116; the widest code grouped:
     * float32 32 classes 1.094 -> 1.175, float64 16 2.215 -> 2.713. */
    const int g = FXR(fx_ngroup)(out, mode, NC);
    if (mode != FX_NARROW_SOFTMAX || NC < FX_NARROW_MAX)
        for (; r0 + g * FX_L <= n_rows && (g - 1) * FX_L * n + reach <= (n_rows - r0) * n; r0 += g * FX_L)
            FXR(fx_narrow_blocks)(x, n, 0, r0, g, FX_L, 1, mode, ce, out, lse, NC);
    for (; r0 < n_rows; r0 += FX_L) {
        const int64_t rows = (n_rows - r0) < FX_L ? (n_rows - r0) : FX_L;
        const int whole = rows == FX_L && reach <= (n_rows - r0) * n;
        FXR(fx_narrow_blocks)(x, n, 0, r0, 1, rows, whole, mode, ce, out, lse, NC);
    }
}

/*
 * n_pos adjacent positions of n (<= FX_NCOLS_MAX) classes cs apart (NC
 * slots): groups of whole blocks (fx_ngroup), the last positions short of
 * a group through a padded copy (padding labels -1: ignored; soft targets
 * 0), so that positions compile the group of whole blocks only.
 */
#define FX_NCOLS_MAX FX_NARROW_MAX
FX_FOLD_INLINE void FXR(fx_narrow_cols_nc)(const FX_T *x, int64_t n_pos, int64_t n, int64_t cs, int mode,
                                             FXR(fx_nce) *ce, FX_T *out, FX_T *lse, const int NC) {
    const int g = FXR(fx_ngroup)(out, mode, NC);
    const int64_t P = g * FX_L, full = n_pos / P * P, rest = n_pos - full;
    for (int64_t r0 = 0; r0 < full; r0 += P) FXR(fx_narrow_blocks)(x, n, cs, r0, g, FX_L, 1, mode, ce, out, lse, NC);
    if (!rest) return;
    enum { PMAX = FX_NGROUP_MAX * FX_L };
    FX_T xt[FX_NCOLS_MAX * PMAX], tt[FX_NCOLS_MAX * PMAX], ot[FX_NCOLS_MAX * PMAX], losst[PMAX], lset[PMAX];
    int64_t labt[PMAX];
    double swt[PMAX], grst[PMAX];
    FXR(fx_nce) cet;
    for (int64_t c = 0; c < n; c++)
        for (int64_t r = 0; r < P; r++) xt[c * P + r] = r < rest ? x[c * cs + full + r] : (FX_T)0;
    if (ce) {
        cet = *ce; /* the loss sum goes on in its lanes */
        for (int64_t r = 0; r < P; r++) {
            labt[r] = r < rest && ce->labels ? ce->labels[full + r] : -1;
            swt[r] = r < rest && ce->sw ? ce->sw[full + r] : 0.0;
            grst[r] = r < rest && ce->grs ? ce->grs[full + r] : 0.0;
        }
        /* Soft targets (padded with 0): every lane is live, so the padding
         * adds to the loss lanes, whose sum fx_ce_cols never uses (it takes
         * the per-position losses). */
        for (int64_t c = 0; ce->t && c < n; c++)
            for (int64_t r = 0; r < P; r++) tt[c * P + r] = r < rest ? ce->t[c * cs + full + r] : (FX_T)0;
        cet.labels = ce->labels ? labt : NULL;
        cet.t = ce->t ? tt : NULL;
        cet.sw = ce->sw ? swt : NULL;
        cet.grs = ce->grs ? grst : NULL;
        cet.loss = ce->loss ? losst : NULL;
        cet.lse = ce->lse ? lset : NULL;
    }
    FXR(fx_narrow_blocks)(xt, n, P, 0, g, FX_L, 1, mode, ce ? &cet : NULL, out ? ot : NULL, lse ? lset : NULL, NC);
    for (int64_t c = 0; out && c < n; c++)
        for (int64_t r = 0; r < rest; r++) out[c * cs + full + r] = ot[c * P + r];
    for (int64_t r = 0; r < rest; r++) {
        if (lse) lse[full + r] = lset[r];
        if (ce && ce->loss) ce->loss[full + r] = losst[r];
        if (ce && ce->lse) ce->lse[full + r] = lset[r];
    }
    if (ce) ce->acc[0] = cet.acc[0], ce->acc[1] = cet.acc[1];
}

/* Rows take FX_NSLOTS's slots.  Positions (cs > 0, no transpose) take two
 * chunks, but for the cross-entropy gradient against labels, which takes
 * up to FX_NCOLS_MAX classes (fx_cols_narrow). */
FX_FOLD_INLINE void FXR(fx_narrow_run)(const FX_T *x, int64_t n_rows, int64_t n, int64_t cs, int mode,
                                         FXR(fx_nce) *ce, FX_T *out, FX_T *lse) {
    if (cs && (n <= 2 * FX_L || 2 * FX_L >= FX_NARROW_MAX || !(FX_NARROW_IS_CE(mode) && out)))
        FXR(fx_narrow_cols_nc)(x, n_rows, n, cs, mode, ce, out, lse, 2 * FX_L);
    else if (cs)
        FXR(fx_narrow_cols_nc)(x, n_rows, n, cs, mode, ce, out, lse, FX_NARROW_MAX);
    else {
#define FX_NRUN(NC) FXR(fx_narrow_run_nc)(x, n_rows, n, mode, ce, out, lse, NC)
        FX_NSLOTS(n, FX_NRUN);
#undef FX_NRUN
    }
}

/*
 * The batch kernels: n_rows rows of n (<= FX_NARROW_MAX) classes (cs = 0),
 * or n_rows adjacent positions of n classes cs apart (fx_narrow_run's limits)
 * (fx_cols_impl.h).  Positions get their own copy of the code (one copy for
 * both layouts, cs tested at run time, cost the rows 30%: 8192x10 float32
 * with the gradient in cache, 1 thread, 71 -> 93 us), but a small one
 * (fx_narrow_cols_nc: the AVX-512 unit compiles in ~95 s at -O3 instead of
 * 51; a copy of every path of the rows took 109 s).
 */
FX_FOLD_INLINE void FXR(fx_narrow_lse_at)(const FX_T *x, int64_t n_rows, int64_t n, int64_t cs, FX_T *lse) {
    FXR(fx_narrow_run)(x, n_rows, n, cs, FX_NARROW_LSE, NULL, NULL, lse);
}

FX_FOLD_INLINE void FXR(fx_narrow_softmax_at)(const FX_T *x, int64_t n_rows, int64_t n, int64_t cs, FX_T *out,
                                                int take_log) {
    if (take_log)
        FXR(fx_narrow_run)(x, n_rows, n, cs, FX_NARROW_LOG_SOFTMAX, NULL, out, NULL);
    else
        FXR(fx_narrow_run)(x, n_rows, n, cs, FX_NARROW_SOFTMAX, NULL, out, NULL);
}

/* Cross-entropy with label smoothing or z-loss, out of line (FX_NARROW_CE_OPTS):
 * one copy for rows and positions. */
static __attribute__((noinline)) void FXR(fx_narrow_ce_opts)(const FX_T *x, int64_t n_rows, int64_t n, int64_t cs,
                                                              FXR(fx_nce) *ce, FX_T *grad) {
    if (grad)
        FXR(fx_narrow_run)(x, n_rows, n, cs, FX_NARROW_CE_OPTS, ce, grad, NULL);
    else
        FXR(fx_narrow_run)(x, n_rows, n, cs, FX_NARROW_CE_OPTS, ce, NULL, NULL);
}

FX_FOLD_INLINE double FXR(fx_narrow_ce_at)(const FX_T *x, int64_t n_rows, int64_t n, int64_t cs,
                                             const int64_t *labels, const FX_T *t, int64_t ignore_index,
                                             const fx_ce_options *opt, const double *sw, double grad_scale,
                                             const double *grs, FX_T *loss, FX_T *grad, FX_T *lse) {
    const FX_T *w = opt ? (const FX_T *)opt->weight : NULL;
    const double eps = opt ? opt->label_smoothing : 0.0, z = opt ? opt->z_loss : 0.0;
    FXR(fx_nce) ce = {labels, t, ignore_index, w, sw, grad_scale, grs, loss, lse, {{0}, {0}}, eps != 0.0, z != 0.0,
                      (FX_T)(1.0 - eps), (FX_T)(eps / (double)n), (FX_T)FXR(fx_weight_sum)(w, n),
                      (FX_T)(2.0 * z), (FX_T)z};
    /* With and without the gradient, and the options: each loop fully specialised. */
    if (t || ce.smooth || ce.zl)
        FXR(fx_narrow_ce_opts)(x, n_rows, n, cs, &ce, grad);
    else if (grad)
        FXR(fx_narrow_run)(x, n_rows, n, cs, FX_NARROW_CE, &ce, grad, NULL);
    else
        FXR(fx_narrow_run)(x, n_rows, n, cs, FX_NARROW_CE, &ce, NULL, NULL);
    /* The lanes' sums, added in a fixed order. */
    const fx_vf64 a = ce.acc[0] + ce.acc[1];
    double total = 0.0;
    for (int i = 0; i < (int)(sizeof(fx_vf64) / sizeof(double)); i++) total += a[i];
    return total;
}

/* The row entry points (the dispatch table's); fx_cols_impl.h calls the
 * _at kernels with its class stride. */
static void FXR(fx_narrow_lse)(const FX_T *x, int64_t n_rows, int64_t n, FX_T *lse) {
    FXR(fx_narrow_lse_at)(x, n_rows, n, 0, lse);
}

static void FXR(fx_narrow_softmax)(const FX_T *x, int64_t n_rows, int64_t n, FX_T *out, int take_log) {
    FXR(fx_narrow_softmax_at)(x, n_rows, n, 0, out, take_log);
}

static double FXR(fx_narrow_ce)(const FX_T *x, int64_t n_rows, int64_t n, const int64_t *labels, const FX_T *t,
                                int64_t ignore_index, const fx_ce_options *opt, const double *sw,
                                double grad_scale, const double *grs, FX_T *loss, FX_T *grad, FX_T *lse) {
    return FXR(fx_narrow_ce_at)(x, n_rows, n, 0, labels, t, ignore_index, opt, sw, grad_scale, grs, loss, grad,
                                lse);
}

/*
 * Entropy (q NULL) or KL divergence D(p || q) of the rows of one block, by
 * fx_entropy_row's and fx_kl_row's formulas (each row scaled by its
 * maximum), the column sums in float lanes; out[r] for r < rows.  Both
 * terms of the entropy, log S and -(sum u log u) / S, are >= 0: no
 * cancellation in the float lanes.
 */
FX_ALWAYS_INLINE FX_V FXR(fx_nscale)(const FX_V *v, int64_t n, const int NC) {
    FX_V m = FX_BC((FX_T)-INFINITY);
    FX_NFOR(c, NC, n) m = FX_MAX(v[c], m);
    return FX_SEL((m > FX_BC(0)) & ((m - m) == FX_BC(0)), m, FX_BC(1)); /* fx_scale_of */
}

FX_FOLD_INLINE void FXR(fx_narrow_info_block)(const FX_T *p, const FX_T *q, int64_t n, int64_t rows, int whole,
                                                double *out, const int NC) {
    const FX_V zero = FX_BC(0);
    FX_V u[FX_NARROW_MAX], v[FX_NARROW_MAX];
    FXR(fx_narrow_in)(p, n, 0, rows, whole, u, NC);
    const FX_V sp = FXR(fx_nscale)(u, n, NC);
    FX_V su = zero, d = zero, res;
    if (!q) {
        FX_NFOR(c, NC, n) {
            const FX_V a = u[c] / sp;
            su += a;
            d += FX_SEL(a == zero, zero, a * FX_LOG(a));
        }
        res = FX_LOG(su) - d / su;
    } else {
        FXR(fx_narrow_in)(q, n, 0, rows, whole, v, NC);
        const FX_V sq = FXR(fx_nscale)(v, n, NC);
        FX_V sv = zero;
        FX_NFOR(c, NC, n) {
            const FX_V a = u[c] / sp, b = v[c] / sq;
            su += a;
            sv += b;
            d += FX_SEL(a == zero, zero, a * FX_LOG(a / b));
        }
        res = d / su + FX_LOG(sv / su);
    }
    double r64[FX_L];
    for (int i = 0; i < FX_L; i++) r64[i] = (double)res[i];
    memcpy(out, r64, (size_t)rows * sizeof(double));
}

FX_FOLD_INLINE void FXR(fx_narrow_info_nc)(const FX_T *p, const FX_T *q, int64_t n_rows, int64_t n, double *out,
                                             const int NC) {
    const int64_t reach = FXR(fx_nreach)(n);
    for (int64_t r0 = 0; r0 < n_rows; r0 += FX_L) {
        const int64_t rows = (n_rows - r0) < FX_L ? (n_rows - r0) : FX_L;
        const int whole = rows == FX_L && reach <= (n_rows - r0) * n;
        FXR(fx_narrow_info_block)(p + r0 * n, q ? q + r0 * n : NULL, n, rows, whole, out + r0, NC);
    }
}

FX_FOLD_INLINE void FXR(fx_narrow_info)(const FX_T *p, const FX_T *q, int64_t n_rows, int64_t n, double *out) {
#define FX_NINFO(NC) FXR(fx_narrow_info_nc)(p, q, n_rows, n, out, NC)
    FX_NSLOTS(n, FX_NINFO);
#undef FX_NINFO
}

static void FXR(fx_narrow_entropy)(const FX_T *p, int64_t n_rows, int64_t n, double *out) {
    FXR(fx_narrow_info)(p, NULL, n_rows, n, out);
}

static void FXR(fx_narrow_kl)(const FX_T *p, const FX_T *q, int64_t n_rows, int64_t n, double *out) {
    FXR(fx_narrow_info)(p, q, n_rows, n, out);
}

#undef FX_NSTEP
#undef FX_NGROUP_MAX
#undef FX_NFOR
#undef FX_NCHUNKS
#undef FX_NSLOTS
#undef FX_NIT
#undef FX_NE
#undef FX_NPERM
#undef FX_TR1_LO
#undef FX_TR1_HI
#undef FX_TR2_LO
#undef FX_TR2_HI
#undef FX_TRQ_LO
#undef FX_TRQ_HI
#undef FX_IOTA
#undef FX_EVEN
#undef FX_ODD
#undef FXR
