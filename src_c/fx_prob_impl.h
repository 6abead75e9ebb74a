/*
 * fx_prob_impl.h -- kernels that take probabilities or need logs:
 * cross-entropy from probabilities (from_logits=False), entropy, KL
 * divergence, binary cross-entropy, and the softcap transform.
 * Same macros as fx_rows_impl.h (plus FX_LOG); contiguous runs, one pass,
 * sums in float lanes per FX_BLOCK then in double.
 */

#define FXR(name) FX_CAT(FX_CAT(name, FX_SFX), FX_ISA)
#define FX_BLOCK 1024

/*
 * Cross-entropy of a probability row p: loss = -sum_c a_c log(max(p_c, clip))
 * with a_c as in fx_ce_row (label y when t is NULL, else soft targets t).
 * grad[c] = -gs a_c / p_c where p_c >= clip, 0 where p_c < clip (the clip is
 * flat there); NaN stays NaN.
 */
static double FXR(fx_nll_prob_row)(const FX_T *p, const FX_T *t, int64_t n, int64_t y,
                                   const fx_ce_options *opt, double clip, double gs, FX_T *grad) {
    const FX_T *w = opt ? (const FX_T *)opt->weight : NULL;
    const double eps = opt ? opt->label_smoothing : 0.0;
    const FX_V vclip = FX_BC((FX_T)clip), zero = FX_BC(0);
    /* Vector part of a_c: w_c (ct t_c + cc). */
    const FX_T ct = t ? (FX_T)(1.0 - eps) : 0, cc = (FX_T)(eps / (double)n);
    const int vec_part = t != NULL || eps != 0.0;
    double loss = 0.0;
    if (vec_part) {
        for (int64_t b = 0; b < n; b += FX_BLOCK) {
            const int64_t len = (n - b) < FX_BLOCK ? (n - b) : FX_BLOCK;
            FX_V acc = zero;
            for (int64_t i = 0; i < len; i += FX_L) {
                const int64_t k = (len - i) < FX_L ? (len - i) : FX_L;
                FX_V pv = FXR(fx_load_part)(p + b + i, k, 1);
                FX_V a = FX_BC(cc);
                if (t) a = FX_BC(ct) * FXR(fx_load_part)(t + b + i, k, 0) + a;
                if (w) a = a * FXR(fx_load_part)(w + b + i, k, 0);
                else if (k < FX_L) a = a * FXR(fx_ones_part)(k);
                acc += a * FX_LOG(FX_SEL(pv < vclip, vclip, pv));
            }
            loss -= FXR(fx_hsum)(acc);
        }
    }
    double wy = 1.0, py = 0.0;
    if (!t) {
        wy = w ? (double)w[y] : 1.0;
        py = (double)p[y];
        loss -= (1.0 - eps) * wy * log(py < clip ? clip : py);
    }
    if (grad) {
        const FX_V vg = FX_BC((FX_T)-gs);
        for (int64_t i = 0; i < n; i += FX_L) {
            const int64_t k = (n - i) < FX_L ? (n - i) : FX_L;
            FX_V pv = FXR(fx_load_part)(p + i, k, 1);
            FX_V a = FX_BC(cc);
            if (t) a = FX_BC(ct) * FXR(fx_load_part)(t + i, k, 0) + a;
            if (w) a = a * FXR(fx_load_part)(w + i, k, 0);
            FX_V g = FX_SEL(pv < vclip, zero, vg * a / pv);
            FXR(fx_store_part)(grad + i, g, k);
        }
        if (!t && !(py < clip)) grad[y] = (FX_T)((double)grad[y] - gs * (1.0 - eps) * wy / py);
    }
    return loss;
}

/* Largest element of a non-negative row (NaN skipped), or 1 when it is not
 * a usable positive scale: the entropy and KL kernels divide by it first so
 * that p log p can neither overflow (counts near the dtype's max) nor lose
 * precision (subnormal counts). */
FX_ALWAYS_INLINE double FXR(fx_scale_of)(const FX_T *p, int64_t n) {
    const FX_T m = n > 0 ? FXR(fx_block_max)(p, n) : (FX_T)0;
    return (m > 0 && isfinite((double)m)) ? (double)m : 1.0;
}

/* Entropy of the row normalised to sum 1, 0 log 0 = 0.  With u = p / max p:
 * H = log S - (sum u log u) / S, S = sum u.  Negative entries give NaN. */
static double FXR(fx_entropy_row)(const FX_T *p, int64_t n) {
    const FX_V zero = FX_BC(0), scale = FX_BC((FX_T)FXR(fx_scale_of)(p, n));
    double s = 0.0, a = 0.0;
    for (int64_t b = 0; b < n; b += FX_BLOCK) {
        const int64_t len = (n - b) < FX_BLOCK ? (n - b) : FX_BLOCK;
        FX_V vs = zero, va = zero;
        for (int64_t i = 0; i < len; i += FX_L) {
            const int64_t k = (len - i) < FX_L ? (len - i) : FX_L;
            FX_V u = FXR(fx_load_part)(p + b + i, k, 0) / scale;
            vs += u;
            va += FX_SEL(u == zero, zero, u * FX_LOG(u));
        }
        s += FXR(fx_hsum)(vs);
        a += FXR(fx_hsum)(va);
    }
    return log(s) - a / s;
}

/* KL divergence of the rows normalised to sum 1, with 0 log(0 / q) = 0 and
 * p log(p / 0) = inf for p > 0.  With u = p / max p, v = q / max q (the
 * scales cancel): D = sum u log(u / v) / U + log(V / U). */
static double FXR(fx_kl_row)(const FX_T *p, const FX_T *q, int64_t n) {
    const FX_V zero = FX_BC(0);
    const FX_V sp = FX_BC((FX_T)FXR(fx_scale_of)(p, n)), sq = FX_BC((FX_T)FXR(fx_scale_of)(q, n));
    double su = 0.0, sv = 0.0, d = 0.0;
    for (int64_t b = 0; b < n; b += FX_BLOCK) {
        const int64_t len = (n - b) < FX_BLOCK ? (n - b) : FX_BLOCK;
        FX_V vu = zero, vv = zero, vd = zero;
        for (int64_t i = 0; i < len; i += FX_L) {
            const int64_t k = (len - i) < FX_L ? (len - i) : FX_L;
            FX_V u = FXR(fx_load_part)(p + b + i, k, 0) / sp;
            FX_V v = FXR(fx_load_part)(q + b + i, k, 0) / sq;
            vu += u;
            vv += v;
            vd += FX_SEL(u == zero, zero, u * FX_LOG(u / v)); /* padding: u = 0 */
        }
        su += FXR(fx_hsum)(vu);
        sv += FXR(fx_hsum)(vv);
        d += FXR(fx_hsum)(vd);
    }
    return d / su + log(sv / su);
}

/*
 * Binary cross-entropy of n elements (t smoothed to t (1 - eps) + eps / 2):
 *   from logits:  w [pw t softplus(-x) + (1 - t) softplus(x)]
 *                 = w [(1 - t) x + ((pw - 1) t + 1) softplus(-x)] (PyTorch's form)
 *   else:         -w [t max(log x, -100) + (1 - t) max(log(1 - x), -100)]
 * w and pw hold n values (or NULL).  loss (n values) and grad are optional;
 * the gradient of element i is scaled by gs (times go[i] when go is given).
 * outside, when not NULL, receives the number of targets (and, from
 * probabilities, of x) outside [0, 1] or NaN, counted in the same pass.
 * Returns the loss sum.
 */
static double FXR(fx_bce)(const FX_T *x, const FX_T *t, int64_t n, const FX_T *w, const FX_T *pw,
                          double eps, int from_logits, double gs, const FX_T *go, FX_T *loss,
                          FX_T *grad, int64_t *outside) {
    const FX_V zero = FX_BC(0), one = FX_BC(1), keep = FX_BC((FX_T)(1.0 - eps)),
               half_eps = FX_BC((FX_T)(eps / 2.0)), vgs = FX_BC((FX_T)gs);
    const int check = outside != NULL;
    double total = 0.0;
    int64_t n_outside = 0;
    for (int64_t b = 0; b < n; b += FX_BLOCK) {
        const int64_t len = (n - b) < FX_BLOCK ? (n - b) : FX_BLOCK;
        FX_V acc = zero;
        FX_VI bad = {0}; /* -1 per value outside [0, 1] (NaN compares false both ways) */
        for (int64_t i = 0; i < len; i += FX_L) {
            const int64_t k = (len - i) < FX_L ? (len - i) : FX_L, o = b + i;
            FX_V xv = FXR(fx_load_part)(x + o, k, from_logits ? 0 : (FX_T)0.5);
            const FX_V t0 = FXR(fx_load_part)(t + o, k, 0);
            if (check) {
                bad += ~((t0 >= zero) & (t0 <= one));
                if (!from_logits) bad += ~((xv >= zero) & (xv <= one));
            }
            FX_V tv = t0 * keep + half_eps;
            FX_V wv = w ? FXR(fx_load_part)(w + o, k, 0) : FXR(fx_ones_part)(k);
            FX_V l, g;
            if (from_logits) {
                FX_V pwv = pw ? FXR(fx_load_part)(pw + o, k, 1) : one;
                FX_V ax = FX_SEL(xv < zero, -xv, xv);
                FX_V e = FX_EXP_NEG(-ax); /* in (0, 1] */
                FX_V u = one + e;
                /* One division per vector (a 16-lane divide costs as much as
                 * the exp): 1/u serves log1p's correction and the sigmoid. */
                FX_V ru = one / u;
                FX_V log1p_e = FX_LOG(u) - ((u - one) - e) * ru; /* log1p(e), to ~1 ulp */
                /* PyTorch's grouping (1 - t) x + lw softplus(-x), lw = (pw - 1) t + 1:
                 * the same value, and the same inf/NaN at infinite logits. */
                FX_V sp_neg = FX_SEL(xv < zero, -xv, zero) + log1p_e; /* softplus(-x) */
                l = wv * ((one - tv) * xv + ((pwv - one) * tv + one) * sp_neg);
                FX_V sig = FX_SEL(xv < zero, e * ru, ru);
                g = wv * (sig * (one - tv + pwv * tv) - pwv * tv);
            } else {
                FX_V lo = FX_BC((FX_T)-100);
                FX_V lp = FX_LOG(xv), lq = FX_LOG(one - xv);
                lp = FX_SEL(lp < lo, lo, lp);
                lq = FX_SEL(lq < lo, lo, lq);
                l = -wv * (tv * lp + (one - tv) * lq);
                FX_V den = (one - xv) * xv;
                den = FX_SEL(den < FX_BC((FX_T)1e-12), FX_BC((FX_T)1e-12), den);
                g = wv * (xv - tv) / den;
            }
            acc += l;
            if (loss) FXR(fx_store_part)(loss + o, l, k);
            if (grad) {
                g = g * vgs;
                if (go) g = g * FXR(fx_load_part)(go + o, k, 0);
                FXR(fx_store_part)(grad + o, g, k);
            }
        }
        total += FXR(fx_hsum)(acc);
        if (check)
            for (int j = 0; j < FX_L; j++) n_outside -= bad[j];
    }
    if (check) *outside = n_outside;
    return total;
}

/* out = cap * tanh(x / cap) (Gemma's logit softcap).  float32: Cephes'
 * tanhf (odd polynomial below 0.625, 1 - 2 / (exp(2|y|) + 1) above);
 * float64: libm's tanh. */
static void FXR(fx_softcap_row)(const FX_T *x, int64_t n, double cap, FX_T *out) {
    if (sizeof(FX_T) == 8) {
        for (int64_t i = 0; i < n; i++) out[i] = (FX_T)(cap * tanh((double)x[i] / cap));
        return;
    }
    const FX_V inv = FX_BC((FX_T)(1.0 / cap)), vcap = FX_BC((FX_T)cap), one = FX_BC(1), zero = FX_BC(0);
    for (int64_t i = 0; i < n; i += FX_L) {
        const int64_t k = (n - i) < FX_L ? (n - i) : FX_L;
        FX_V y = FXR(fx_load_part)(x + i, k, 0) * inv;
        FX_V ay = FX_SEL(y < zero, -y, y);
        FX_V z = y * y;
        FX_V small = FX_BC((FX_T)-5.70498872745e-3);
        small = small * z + FX_BC((FX_T)2.06390887954e-2);
        small = small * z + FX_BC((FX_T)-5.37397155531e-2);
        small = small * z + FX_BC((FX_T)1.33314422036e-1);
        small = small * z + FX_BC((FX_T)-3.33332819422e-1);
        small = small * z * y + y;
        FX_V big = one - (one + one) / (FX_EXP(ay + ay) + one);
        big = FX_SEL(y < zero, -big, big);
        FX_V th = FX_SEL(ay < FX_BC((FX_T)0.625), small, big);
        FXR(fx_store_part)(out + i, vcap * th, k);
    }
}

/* grad *= d(cap tanh(x / cap)) / dx = 1 - (capped / cap)^2. */
static void FXR(fx_softcap_grad_row)(const FX_T *capped, int64_t n, double cap, FX_T *grad) {
    const FX_V inv = FX_BC((FX_T)(1.0 / cap)), one = FX_BC(1);
    for (int64_t i = 0; i < n; i += FX_L) {
        const int64_t k = (n - i) < FX_L ? (n - i) : FX_L;
        FX_V th = FXR(fx_load_part)(capped + i, k, 0) * inv;
        FXR(fx_store_part)(grad + i, FXR(fx_load_part)(grad + i, k, 0) * (one - th * th), k);
    }
}

#undef FXR
#undef FX_BLOCK
