/*
 * fx_narrow_impl.h -- rows shorter than a few vectors (n_classes <=
 * FX_NARROW_MAX): SIMD across rows instead of along them.  FX_L rows are
 * processed at once, one row per lane: the block (contiguous in memory) is
 * read once and transposed in registers, so a 10-class row costs a few
 * vector operations instead of a whole row kernel's fixed cost.
 * Same macros as fx_rows_impl.h.
 */

#define FXR(name) FX_CAT(FX_CAT(name, FX_SFX), FX_ISA)

#ifndef FX_NARROW_MODES
#define FX_NARROW_MODES
enum { FX_NARROW_LSE = 0, FX_NARROW_SOFTMAX = 1, FX_NARROW_LOG_SOFTMAX = 2, FX_NARROW_CE = 3 };
#endif

/*
 * One block of `rows` (<= FX_L) rows of n classes starting at x.
 *   FX_NARROW_LSE:          lse[r]
 *   FX_NARROW_SOFTMAX/LOG:  out[r * n + c]
 *   FX_NARROW_CE:           loss[r] (optional), grad (optional), lse (optional)
 *       against labels[r] (< 0: ignored, loss 0 and gradient 0), class
 *       weights w (optional), gradient scales gs[r].
 * Returns the sum of the rows' losses (CE), in row order.
 */
FX_ALWAYS_INLINE double FXR(fx_narrow_block)(const FX_T *x, int64_t n, int64_t rows, int mode,
                                             const int64_t *labels, const FX_T *w, const double *gs,
                                             double *loss, FX_T *out, double *lse) {
    FX_V v[FX_NARROW_MAX];
    const FX_V zero = FX_BC(0);
    /* Gather the columns; the outputs go back through a buffer (vector
     * stores, then scalar loads: forwarding works in that direction). */
    FX_T buf[FX_NARROW_MAX * FX_L];
    /* Gathers are not followed by the hardware prefetchers: fetch the
     * block after the next one ahead of them. */
    for (int64_t b = 0; b < n * FX_L * (int64_t)sizeof(FX_T); b += 64)
        __builtin_prefetch((const char *)(x + 2 * n * FX_L) + b);
    for (int64_t c = 0; c < n; c++) v[c] = FX_GATHER(x + c, n, rows);
    FX_V m = FX_BC((FX_T)-INFINITY);
    for (int64_t c = 0; c < n; c++) m = FX_MAX(v[c], m);
    const FX_V sh = FX_SEL((m - m) == zero, m, zero); /* m where finite, else 0 */
    FX_V s = zero;
    for (int64_t c = 0; c < n; c++) s += FX_EXP(v[c] - sh);
    const FX_V ls = FX_LOG(s);
    const FX_V vlse = sh + ls;
    const FX_VI finite = (vlse - vlse) == zero;
    /* Per-row scalars go through arrays: writing single lanes of a vector
     * variable would stall on store forwarding at every lane. */
    FX_T lse_a[FX_L], s_a[FX_L];
    FXR(fx_store)(lse_a, vlse);
    FXR(fx_store)(s_a, s);
    if (mode == FX_NARROW_LSE) {
        for (int64_t r = 0; r < rows; r++) lse[r] = (double)lse_a[r];
        return 0.0;
    }
    double total = 0.0;
    if (mode == FX_NARROW_CE) {
        FX_T k_a[FX_L], sub_a[FX_L], live_a[FX_L], lab_a[FX_L];
        for (int64_t r = 0; r < FX_L; r++) {
            const int64_t y = r < rows ? labels[r] : -1;
            k_a[r] = sub_a[r] = live_a[r] = 0;
            lab_a[r] = -1;
            if (r < rows && lse) lse[r] = (double)lse_a[r];
            if (y < 0) {
                if (r < rows && loss) loss[r] = 0.0;
                continue;
            }
            const double wy = w ? (double)w[y] : 1.0;
            const double l = isfinite((double)lse_a[r]) ? wy * ((double)lse_a[r] - (double)x[r * n + y]) : NAN;
            if (loss) loss[r] = l;
            total += l;
            k_a[r] = (FX_T)(gs[r] * wy / (double)s_a[r]);
            sub_a[r] = (FX_T)(gs[r] * wy);
            live_a[r] = 1;
            lab_a[r] = (FX_T)y;
        }
        if (!out) return total;
        const FX_V k = FXR(fx_load)(k_a), sub = FXR(fx_load)(sub_a), lab = FXR(fx_load)(lab_a);
        const FX_VI live = FXR(fx_load)(live_a) != zero;
        for (int64_t c = 0; c < n; c++) {
            FX_V g = FX_EXP(v[c] - sh) * k;
            g = g - FX_SEL(lab == FX_BC((FX_T)c), sub, zero);
            g = FX_SEL(finite, g, FX_BC((FX_T)NAN));
            v[c] = FX_SEL(live, g, zero);
        }
    } else {
        const FX_V k = FX_BC(1) / s;
        for (int64_t c = 0; c < n; c++) {
            FX_V o = mode == FX_NARROW_LOG_SOFTMAX ? (v[c] - sh) - ls : FX_EXP(v[c] - sh) * k;
            v[c] = FX_SEL(finite, o, FX_BC((FX_T)NAN));
        }
    }
    for (int64_t c = 0; c < n; c++) FXR(fx_store)(buf + c * FX_L, v[c]);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < n; c++) out[r * n + c] = buf[c * FX_L + r];
    return total;
}

/* The batch entry points: n_rows rows of n (<= FX_NARROW_MAX) classes. */
static void FXR(fx_narrow_lse)(const FX_T *x, int64_t n_rows, int64_t n, double *lse) {
    for (int64_t r0 = 0; r0 < n_rows; r0 += FX_L) {
        const int64_t rows = (n_rows - r0) < FX_L ? (n_rows - r0) : FX_L;
        FXR(fx_narrow_block)(x + r0 * n, n, rows, FX_NARROW_LSE, NULL, NULL, NULL, NULL, NULL, lse + r0);
    }
}

static void FXR(fx_narrow_softmax)(const FX_T *x, int64_t n_rows, int64_t n, FX_T *out, int take_log) {
    for (int64_t r0 = 0; r0 < n_rows; r0 += FX_L) {
        const int64_t rows = (n_rows - r0) < FX_L ? (n_rows - r0) : FX_L;
        if (take_log)
            FXR(fx_narrow_block)(x + r0 * n, n, rows, FX_NARROW_LOG_SOFTMAX, NULL, NULL, NULL, NULL,
                                 out + r0 * n, NULL);
        else
            FXR(fx_narrow_block)(x + r0 * n, n, rows, FX_NARROW_SOFTMAX, NULL, NULL, NULL, NULL,
                                 out + r0 * n, NULL);
    }
}

static double FXR(fx_narrow_ce)(const FX_T *x, int64_t n_rows, int64_t n, const int64_t *labels,
                                const FX_T *w, const double *gs, double *loss, FX_T *grad,
                                double *lse) {
    double total = 0.0;
    for (int64_t r0 = 0; r0 < n_rows; r0 += FX_L) {
        const int64_t rows = (n_rows - r0) < FX_L ? (n_rows - r0) : FX_L;
        total += FXR(fx_narrow_block)(x + r0 * n, n, rows, FX_NARROW_CE, labels + r0, w, gs + r0,
                                      loss ? loss + r0 : NULL, grad ? grad + r0 * n : NULL,
                                      lse ? lse + r0 : NULL);
    }
    return total;
}

#undef FXR
