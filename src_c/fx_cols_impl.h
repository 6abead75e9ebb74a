/*
 * fx_cols_impl.h -- the column kernels: the class axis is strided, the
 * contiguous axis runs across independent positions.  This is PyTorch's
 * (N, C, d1, ..., dk) layout: for one sample the logits form a C x D slab
 * whose class rows are `stride` elements apart.  Vectorising along the
 * contiguous axis means no transposed copy is ever made.
 *
 * Same macros as fx_rows_impl.h.  The slab is processed in chunks of at most
 * FX_COLS_CHUNK positions:
 *   scan (class rows in order, FX_COLS_GROUP at a time): the blocked online
 *           log-sum-exp per column -- a group's max from memory, its exps
 *           from L1 while the next group is prefetched -- plus the dot
 *           products of the options;
 *   write (from L2, class rows in order): the outputs, with streaming
 *           stores for large gradients.
 * A chunk is narrowed so that C x chunk fits in about 512 KiB of L2.
 *
 * Up to 2 vectors of lanes of classes (32 float32 classes with AVX-512, so
 * semantic segmentation's 19 or 21; the cross-entropy gradient against
 * labels up to FX_NCOLS_MAX classes on every path, fx_cols_narrow) the
 * narrow kernels take the slab instead, labels or soft targets, class and
 * sample weights included
 * (fx_narrow_impl.h: a vector of adjacent positions per class, every class
 * in registers): with so few classes the per-column arrays of the passes
 * above and the scalar log and exp per position cost more than the exps.
 * 64x21x128x128 float32 cross_entropy_with_grad, 2 threads: 24-32 -> 16-17
 * ms, 1 thread 44 -> 28-32 ms; logsumexp and softmax about the same (their
 * 21 strided streams, one line each per block, seem to be what limits them).
 */

#define FXC(name) FX_CAT(FX_CAT(name, FX_SFX), FX_ISA)
#define FXR FXC /* the row helpers (fx_load, ...) share the naming */
#define FX_COLS_CHUNK 256
/* A cache line of elements.  With streaming stores, chunk edges fall on
 * lines so that the stores fill whole lines: a line shared by two chunks,
 * half streamed and half stored, costs several whole ones. */
#define FX_COLS_LINE (64 / (int64_t)sizeof(FX_T))
/* The write pass starts each row's vectors at its first aligned element, so
 * the per-column arrays it reads have a line of slack. */
#define FX_COLS_PADDED (FX_COLS_CHUNK + 64 / (int)sizeof(FX_T))
#define FX_COLS_GROUP 32
#define FX_COLS_L2 (512 * 1024)

/* Per-column state of one chunk. */
typedef struct FXC(fx_cols_state_s) {
    FX_T m[FX_COLS_CHUNK];     /* column max (NaN never enters)              */
    double s[FX_COLS_CHUNK];   /* sum of exp(x - shift(m))                   */
    double wx[FX_COLS_CHUNK];  /* sum_c w_c x_c    (smoothing)               */
    double wtx[FX_COLS_CHUNK]; /* sum_c a_c x_c (soft targets, a_c as in     */
    double wt[FX_COLS_CHUNK];  /* sum_c a_c      fx_scan: w_c (tk t_c + tc)) */
    FX_T k[FX_COLS_PADDED];    /* write: multiplier of exp(x - m)            */
    FX_T ct[FX_COLS_PADDED];   /* write: multiplier of w_c t_c               */
    FX_T cc[FX_COLS_PADDED];   /* write: multiplier of w_c                   */
    FX_T sh[FX_COLS_PADDED];   /* the shift: m, or 0 where m is not finite   */
} FXC(fx_cols_state);

FX_ALWAYS_INLINE int64_t FXC(fx_cols_width)(int64_t n_classes) {
    int64_t w = FX_COLS_L2 / ((n_classes > 0 ? n_classes : 1) * (int64_t)sizeof(FX_T));
    w = w / FX_COLS_LINE * FX_COLS_LINE;
    if (w < FX_COLS_LINE) w = FX_COLS_LINE;
    if (w > FX_COLS_CHUNK - FX_COLS_LINE) w = FX_COLS_CHUNK - FX_COLS_LINE;
    return w;
}

/* The exp-sum of columns [0, m) of a chunk (m <= FX_COLS_CHUNK), plus the
 * dot products of the options: the blocked online log-sum-exp of the row
 * kernels, turned on its side.  Class rows are taken FX_COLS_GROUP at a time
 * (a group is 16 KiB of float32 at full width, L1-resident): the group's
 * column max is read from memory, then the exps come from L1 while the next
 * group is prefetched, so the DRAM reads of one group overlap the exps of
 * the one before.  A group that raises a column's running max rescales that
 * column's double sum by exp(old shift - new shift) (computed in FX_T: a
 * relative error of an ulp per rise, and a column's max rises about
 * ln(groups) times).  Inside a group the sums are float lanes of at most
 * FX_COLS_GROUP terms in (0, 1], then added in double: the error bound of
 * the row kernels.  next is where the data of the chunk after this one
 * starts (prefetched under the last group), or NULL. */
FX_ALWAYS_INLINE void FXC(fx_cols_scan)(const FX_T *x, const FX_T *t, const FX_T *w, int64_t nc,
                                        int64_t m, int64_t stride, int need_wx, FX_T tk, FX_T tc,
                                        const FX_T *next, FXC(fx_cols_state) *st) {
    const int64_t mv = (m + FX_L - 1) / FX_L * FX_L; /* padded to whole vectors */
    FX_T gm[FX_COLS_CHUNK], scale[FX_COLS_CHUNK];
    FX_T fs[FX_COLS_CHUNK], fwx[FX_COLS_CHUNK], fwtx[FX_COLS_CHUNK], fwt[FX_COLS_CHUNK];
    for (int64_t j = 0; j < mv; j++) {
        st->m[j] = (FX_T)-INFINITY;
        st->sh[j] = 0;
        st->s[j] = st->wx[j] = st->wtx[j] = st->wt[j] = 0.0;
    }
    /* x - sh <= 0 everywhere unless a column holds +inf (then its shift is 0
     * and the exp needs its upper clamp).  The exps are only summed, so
     * the classes below the clamp may add 2^-126 (2^-1022) instead of 0
     * (FX_EXP_FLOOR, as fx_block_sums): nothing next to a sum of at least
     * 1 where the column's max is finite; a column of -inf is set to 0
     * after the last group. */
    int capped = 1;
    for (int64_t c0 = 0; c0 < nc; c0 += FX_COLS_GROUP) {
        const int64_t c1 = (c0 + FX_COLS_GROUP) < nc ? (c0 + FX_COLS_GROUP) : nc;
        for (int64_t j = 0; j < mv; j++) gm[j] = (FX_T)-INFINITY;
        for (int64_t c = c0; c < c1; c++) {
            const FX_T *row = x + c * stride;
            int64_t j = 0;
            for (; j + FX_L <= m; j += FX_L)
                FXR(fx_store)(gm + j, FX_MAX(FXR(fx_load)(row + j), FXR(fx_load)(gm + j)));
            if (j < m)
                FXR(fx_store)(gm + j, FX_MAX(FXR(fx_load_part)(row + j, m - j, (FX_T)-INFINITY),
                                             FXR(fx_load)(gm + j)));
        }
        /* The new running max and shift; scale = exp(old shift - new shift)
         * where the max rose (1 elsewhere, and where the old max was -inf:
         * the sum there is NaN, which must stay so, or next to nothing). */
        for (int64_t j = 0; j < mv; j += FX_L) {
            FX_V old = FXR(fx_load)(st->m + j), now = FX_MAX(FXR(fx_load)(gm + j), old);
            FX_V inf = FX_BC((FX_T)INFINITY);
            FX_V sh = FX_SEL((now != inf) & (now != -inf), now, FX_BC(0)); /* never NaN */
            FX_V f = FX_EXP(FXR(fx_load)(st->sh + j) - sh);
            FXR(fx_store)(scale + j, FX_SEL((now > old) & (old != -inf), f, FX_BC(1)));
            FXR(fx_store)(st->m + j, now);
            FXR(fx_store)(st->sh + j, sh);
            for (int i = 0; i < FX_L; i++) capped &= now[i] != (FX_T)INFINITY;
        }
        for (int64_t j = 0; j < mv; j++) fs[j] = fwx[j] = fwtx[j] = fwt[j] = 0;
        const FX_T *pf = c1 < nc ? x + c1 * stride : next;
        for (int64_t c = c0; c < c1; c++) {
            const FX_T *row = x + c * stride;
            const FX_T *pfrow = pf ? pf + (c - c0) * stride : NULL;
            const FX_T wc = w ? w[c] : (FX_T)1;
            for (int64_t j = 0; j < m; j += FX_L) {
                const int64_t len = (m - j) < FX_L ? (m - j) : FX_L;
                const int full = len == FX_L;
                if (pfrow) __builtin_prefetch(pfrow + j);
                FX_V v = FXR(fx_load_part)(row + j, len, (FX_T)-INFINITY);
                FX_V d = v - FXR(fx_load)(st->sh + j);
                FXR(fx_store)(fs + j, FXR(fx_load)(fs + j) + (capped ? FX_EXP_FLOOR(d) : FX_EXP(d)));
                if (need_wx || t) {
                    FX_V v0 = full ? v : FXR(fx_load_part)(row + j, len, 0);
                    if (need_wx) FXR(fx_store)(fwx + j, FXR(fx_load)(fwx + j) + wc * v0);
                    if (t) {
                        const FX_T *q = t + c * stride + j;
                        FX_V a = wc * (tk * FXR(fx_load_part)(q, len, 0) + tc);
                        FXR(fx_store)(fwtx + j, FXR(fx_load)(fwtx + j) + a * v0);
                        FXR(fx_store)(fwt + j, FXR(fx_load)(fwt + j) + a);
                    }
                }
            }
        }
        for (int64_t j = 0; j < mv; j++) {
            st->s[j] = st->s[j] * (double)scale[j] + (double)fs[j];
            if (need_wx) st->wx[j] += (double)fwx[j];
            if (t) {
                st->wtx[j] += (double)fwtx[j];
                st->wt[j] += (double)fwt[j];
            }
        }
    }
    for (int64_t j = 0; j < mv; j++)
        if (st->m[j] == (FX_T)-INFINITY) st->s[j] *= 0.0; /* NaN stays NaN */
}

/* The write pass: out[c, j] = exp(x - sh_j) k_j - w_c (ct_j t_cj + cc_j), or
 * with take_log (x - sh_j) - k_j.  The w_c term is there only with soft targets
 * or offset (label smoothing).  Columns whose k is NaN come out NaN; with
 * live given, columns with live == 0 come out exactly 0 (ignored positions).
 * Where k is finite x - sh <= 0, so the exp needs no upper clamp. */
/* Element j (len lanes; len < FX_L only at a row's ends) of class row c. */
FX_ALWAYS_INLINE FX_V FXC(fx_cols_out_vec)(const FX_T *xr, const FX_T *tr, FX_T wc, int64_t j, int64_t len,
                                           int take_log, int offset, const FXC(fx_cols_state) *st,
                                           const FX_T *live) {
    FX_V xv = FXR(fx_load_part)(xr + j, len, 0);
    FX_V sh = FXR(fx_load)(st->sh + j), k = FXR(fx_load)(st->k + j), g;
    if (take_log) {
        g = (xv - sh) - k;
    } else {
        g = FX_EXP_NEG(xv - sh) * k;
        if (tr || offset) {
            FX_V a = FXR(fx_load)(st->cc + j);
            if (tr) a = FXR(fx_load)(st->ct + j) * FXR(fx_load_part)(tr + j, len, 0) + a;
            g -= a * wc;
        }
    }
    if (live) g = FX_SEL(FXR(fx_load)(live + j) != FX_BC(0), g, FX_BC(0));
    return g;
}

FX_ALWAYS_INLINE void FXC(fx_cols_write)(const FX_T *x, const FX_T *t, const FX_T *w, int64_t nc,
                                         int64_t m, int64_t stride, int take_log, int offset,
                                         const FXC(fx_cols_state) *st, const FX_T *live, int stream,
                                         FX_T *out) {
    for (int64_t c = 0; c < nc; c++) {
        const FX_T *xr = x + c * stride, *tr = t ? t + c * stride : NULL;
        FX_T *orow = out + c * stride;
        const FX_T wc = w ? w[c] : (FX_T)1;
        int64_t j = 0;
        if (stream) {
            /* Every element streamed, as in fx_write. */
            const int64_t head = FXR(fx_stream_head)(orow, m);
            if (head > 0)
                FXR(fx_stream_part)(orow, FXC(fx_cols_out_vec)(xr, tr, wc, j, head, take_log, offset, st, live), head);
            for (j = head; j + FX_L <= m; j += FX_L)
                FX_STREAM(orow + j, FXC(fx_cols_out_vec)(xr, tr, wc, j, FX_L, take_log, offset, st, live));
            if (j < m)
                FXR(fx_stream_part)(orow + j, FXC(fx_cols_out_vec)(xr, tr, wc, j, m - j, take_log, offset, st, live),
                                    m - j);
            continue;
        }
        for (; j + FX_L <= m; j += FX_L)
            FXR(fx_store)(orow + j, FXC(fx_cols_out_vec)(xr, tr, wc, j, FX_L, take_log, offset, st, live));
        if (j < m)
            FXR(fx_store_part)(orow + j, FXC(fx_cols_out_vec)(xr, tr, wc, j, m - j, take_log, offset, st, live), m - j);
    }
    if (stream) FX_SFENCE();
}

/* Whether the narrow kernels take the slab; their per-position outputs come
 * in FX_T, a chunk at a time.  label_grad: the cross-entropy gradient
 * against labels. */
FX_ALWAYS_INLINE int FXC(fx_cols_narrow)(int64_t nc, int label_grad) {
    /* Beyond two vectors of classes the columns spill: only the gradient
     * against labels, whose wide path is two passes, still gains (2 threads,
     * float32 16x21x128x128 with AVX2: 7.9-8.3 -> 4.5-5.5 ms).  logsumexp,
     * softmax and the loss alone were 10-40% slower, and the gradient
     * against soft targets (whose columns are read in both phases) 10-50%
     * slower: 16x32x128x128 float32 12 -> 15-20 ms. */
    return nc > 0 && nc <= (label_grad ? FX_NCOLS_MAX : 2 * FX_L);
}
/* The class stride for them: never 0 (rows; stride >= m > 0 here), which
 * tells the compiler to leave their row code out of the column kernels. */
FX_ALWAYS_INLINE int64_t FXC(fx_narrow_stride)(int64_t stride) { return stride > 0 ? stride : 1; }

/* Log-sum-exp of the m columns of a C x m slab (rows `stride` apart). */
static void FXC(fx_logsumexp_cols)(const FX_T *x, int64_t nc, int64_t m, int64_t stride, double *lse) {
    if (FXC(fx_cols_narrow)(nc, 0)) {
        FX_T part[FX_COLS_CHUNK];
        for (int64_t j0 = 0; j0 < m; j0 += FX_COLS_CHUNK) {
            const int64_t mm = (m - j0) < FX_COLS_CHUNK ? (m - j0) : FX_COLS_CHUNK;
            FXC(fx_narrow_lse_at)(x + j0, mm, nc, FXC(fx_narrow_stride)(stride), part);
            for (int64_t j = 0; j < mm; j++) lse[j0 + j] = (double)part[j];
        }
        return;
    }
    FXC(fx_cols_state) st;
    const int64_t width = FXC(fx_cols_width)(nc);
    for (int64_t j0 = 0; j0 < m; j0 += width) {
        const int64_t mm = (m - j0) < width ? (m - j0) : width;
        FXC(fx_cols_scan)(x + j0, NULL, NULL, nc, mm, stride, 0, 1, 0, j0 + mm < m ? x + j0 + mm : NULL, &st);
        for (int64_t j = 0; j < mm; j++) lse[j0 + j] = (double)st.sh[j] + log(st.s[j]);
    }
}

/* softmax (take_log 0) or log-softmax (1) of the m columns, into out (same layout). */
static void FXC(fx_softmax_cols)(const FX_T *x, int64_t nc, int64_t m, int64_t stride, FX_T *out,
                                 int take_log) {
    if (FXC(fx_cols_narrow)(nc, 0)) {
        FXC(fx_narrow_softmax_at)(x, m, nc, FXC(fx_narrow_stride)(stride), out, take_log);
        return;
    }
    FXC(fx_cols_state) st;
    const int64_t width = FXC(fx_cols_width)(nc);
    for (int64_t j0 = 0; j0 < m; j0 += width) {
        const int64_t mm = (m - j0) < width ? (m - j0) : width;
        FXC(fx_cols_scan)(x + j0, NULL, NULL, nc, mm, stride, 0, 1, 0, j0 + mm < m ? x + j0 + mm : NULL, &st);
        for (int64_t j = 0; j < FX_COLS_PADDED; j++) {
            const double lse = j < mm ? (double)st.sh[j] + log(st.s[j]) : 0.0;
            const int bad = j < mm && !isfinite(lse);
            st.k[j] = bad ? (FX_T)NAN : j >= mm ? (FX_T)0 : take_log ? (FX_T)log(st.s[j]) : (FX_T)(1.0 / st.s[j]);
            st.cc[j] = 0;
            if (j >= mm) st.sh[j] = 0;
        }
        FXC(fx_cols_write)(x + j0, NULL, NULL, nc, mm, stride, take_log, 0, &st, NULL, 0, out + j0);
    }
}

/*
 * Cross-entropy of the m columns (positions) of a C x m slab, each against
 * labels[j] (a label < 0 marks an ignored position: loss 0, gradient 0) or
 * against the soft-target slab t (same layout as x).  Loss and gradient
 * formulas are those of fx_ce_label_row / fx_ce_prob_row; gs[j] scales the
 * gradient of column j.  loss[j] and lse[j] (when not NULL) receive the
 * per-column values; grad (when not NULL) has x's layout and may alias x.
 */
static void FXC(fx_ce_cols)(const FX_T *x, const FX_T *t, const int64_t *labels, int64_t nc,
                            int64_t m, int64_t stride, const fx_ce_options *opt, const double *gs,
                            FX_T *grad, double *loss, double *lse_out) {
    const FX_T *w = opt ? (const FX_T *)opt->weight : NULL;
    const double eps = opt ? opt->label_smoothing : 0.0;
    const double z = opt ? opt->z_loss : 0.0;
    if ((labels || t) && FXC(fx_cols_narrow)(nc, labels && grad)) {
        /* Label -1 is not a class: ignored.  gs scales each position's gradient. */
        FX_T part_loss[FX_COLS_CHUNK], part_lse[FX_COLS_CHUNK];
        for (int64_t j0 = 0; j0 < m; j0 += FX_COLS_CHUNK) {
            const int64_t mm = (m - j0) < FX_COLS_CHUNK ? (m - j0) : FX_COLS_CHUNK;
            FXC(fx_narrow_ce_at)(x + j0, mm, nc, FXC(fx_narrow_stride)(stride), labels ? labels + j0 : NULL,
                                 labels ? NULL : t + j0, -1, opt, NULL, 1.0, gs ? gs + j0 : NULL, part_loss,
                                 grad ? grad + j0 : NULL, part_lse);
            for (int64_t j = 0; j < mm; j++) {
                if (loss) loss[j0 + j] = (double)part_loss[j];
                if (lse_out) lse_out[j0 + j] = (double)part_lse[j];
            }
        }
        return;
    }
    const double wsum = eps != 0.0 ? FXC(fx_weight_sum)(w, nc) : (double)nc;
    FXC(fx_cols_state) st;
    FX_T live[FX_COLS_PADDED];
    double xy[FX_COLS_CHUNK]; /* the label's logit: grad may overwrite x */
    const int64_t width = FXC(fx_cols_width)(nc);
    /* Streaming stores only pay when they fill whole lines: every class row
     * must start at the same offset in a line, and the chunks after the
     * first start on a line boundary (the first takes the head). */
    const int stream = grad && opt && (opt->flags & FX_STREAM_STORES) && stride % FX_COLS_LINE == 0 &&
                       (uintptr_t)grad % sizeof(FX_T) == 0;
    const int64_t first = width + (stream ? (int64_t)((64 - (uintptr_t)grad % 64) % 64 / sizeof(FX_T)) : 0);
    for (int64_t j0 = 0, mm; j0 < m; j0 += mm) {
        const int64_t want = j0 == 0 ? first : width;
        mm = (m - j0) < want ? (m - j0) : want;
        const FX_T *xc = x + j0, *tc = t ? t + j0 : NULL;
        const FX_T *next = j0 + mm < m ? xc + mm : NULL;
        if (tc) {
            /* The smoothing is in the targets' coefficients (fx_scan). */
            const FX_T tk = (FX_T)(1.0 - eps), tcc = (FX_T)(eps / (double)nc);
            if (w) FXC(fx_cols_scan)(xc, tc, w, nc, mm, stride, 0, tk, tcc, next, &st);
            else FXC(fx_cols_scan)(xc, tc, NULL, nc, mm, stride, 0, tk, tcc, next, &st);
        } else if (eps != 0.0) {
            if (w) FXC(fx_cols_scan)(xc, NULL, w, nc, mm, stride, 1, 1, 0, next, &st);
            else FXC(fx_cols_scan)(xc, NULL, NULL, nc, mm, stride, 1, 1, 0, next, &st);
        } else {
            FXC(fx_cols_scan)(xc, NULL, NULL, nc, mm, stride, 0, 1, 0, next, &st);
        }
        for (int64_t j = 0; j < FX_COLS_PADDED; j++) {
            st.k[j] = st.ct[j] = st.cc[j] = 0;
            live[j] = 0;
            if (j >= mm) {
                st.sh[j] = 0;
                continue;
            }
            const int64_t y = labels ? labels[j0 + j] : 0;
            const double lse = (double)st.sh[j] + log(st.s[j]);
            if (lse_out) lse_out[j0 + j] = lse;
            if (labels && y < 0) {
                if (loss) loss[j0 + j] = 0.0;
                continue;
            }
            live[j] = 1;
            if (!isfinite(lse)) {
                if (loss) loss[j0 + j] = NAN;
                st.k[j] = (FX_T)NAN;
                continue;
            }
            double l, a_sum;
            const double wy = (labels && w) ? (double)w[y] : 1.0;
            if (tc) {
                l = st.wt[j] * lse - st.wtx[j];
                a_sum = st.wt[j];
            } else {
                xy[j] = (double)xc[y * stride + j];
                l = (1.0 - eps) * wy * (lse - xy[j]);
                a_sum = (1.0 - eps) * wy;
            }
            if (eps != 0.0 && !tc) {
                l += eps / (double)nc * (wsum * lse - st.wx[j]);
                a_sum += eps / (double)nc * wsum;
            }
            l += z * lse * lse;
            if (loss) loss[j0 + j] = l;
            const double g = gs ? gs[j0 + j] : 1.0;
            st.k[j] = (FX_T)(g * (a_sum + 2.0 * z * lse) / st.s[j]);
            st.cc[j] = (FX_T)(g * eps / (double)nc);
            st.ct[j] = (FX_T)(g * (1.0 - eps));
        }
        if (!grad) continue;
        FX_T *gc = grad + j0;
        /* Each combination of the options is its own specialised loop. */
        int all_live = 1;
        for (int64_t j = 0; j < mm; j++) all_live &= live[j] != 0;
        const FX_T *lv = all_live ? NULL : live;
        if (tc) {
            if (w) {
                if (lv) FXC(fx_cols_write)(xc, tc, w, nc, mm, stride, 0, 1, &st, lv, stream, gc);
                else FXC(fx_cols_write)(xc, tc, w, nc, mm, stride, 0, 1, &st, NULL, stream, gc);
            } else {
                if (lv) FXC(fx_cols_write)(xc, tc, NULL, nc, mm, stride, 0, 1, &st, lv, stream, gc);
                else FXC(fx_cols_write)(xc, tc, NULL, nc, mm, stride, 0, 1, &st, NULL, stream, gc);
            }
        } else {
            if (eps != 0.0 && w) {
                if (lv) FXC(fx_cols_write)(xc, NULL, w, nc, mm, stride, 0, 1, &st, lv, stream, gc);
                else FXC(fx_cols_write)(xc, NULL, w, nc, mm, stride, 0, 1, &st, NULL, stream, gc);
            } else if (eps != 0.0) {
                if (lv) FXC(fx_cols_write)(xc, NULL, NULL, nc, mm, stride, 0, 1, &st, lv, stream, gc);
                else FXC(fx_cols_write)(xc, NULL, NULL, nc, mm, stride, 0, 1, &st, NULL, stream, gc);
            } else {
                if (lv) FXC(fx_cols_write)(xc, NULL, NULL, nc, mm, stride, 0, 0, &st, lv, stream, gc);
                else FXC(fx_cols_write)(xc, NULL, NULL, nc, mm, stride, 0, 0, &st, NULL, stream, gc);
            }
            for (int64_t j = 0; j < mm; j++) {
                const int64_t y = labels[j0 + j];
                if (y < 0 || !live[j] || isnan((double)st.k[j])) continue;
                const double wy = w ? (double)w[y] : 1.0;
                const double g = gs ? gs[j0 + j] : 1.0;
                /* From the saved logit, not by reading gc back: after a
                 * streaming store that read waits for memory. */
                const double e = exp(xy[j] - (double)st.sh[j]) * (double)st.k[j];
                gc[y * stride + j] = (FX_T)(e - (double)st.cc[j] * wy - g * (1.0 - eps) * wy);
            }
        }
    }
}

#undef FXC
#undef FXR
#undef FX_COLS_CHUNK
#undef FX_COLS_LINE
#undef FX_COLS_PADDED
#undef FX_COLS_GROUP
#undef FX_COLS_L2
