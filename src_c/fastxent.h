/*
 * fastxent.h -- C row kernels of the cross-entropy family.
 *
 * Every function works on one contiguous row of `n` class scores, never
 * allocates, never touches Python, and is safe to call concurrently from
 * many threads on different rows.  The instruction set (AVX-512, AVX2 or
 * the baseline) is chosen once, at the first call, from what the CPU
 * supports, lowered by the environment variable FASTXENT_SIMD
 * ("avx512", "avx2" or "baseline") when it is set.
 *
 * Numerical contract of the log-sum-exp (shared by every kernel):
 *   - each element is read from main memory once (blocked online max/sum);
 *   - -inf entries are masked classes (exp gives exactly 0);
 *   - a NaN anywhere gives NaN; +inf gives +inf; a row of only -inf gives -inf;
 *   - the sum of exponentials is accumulated in float32 lanes inside blocks of
 *     FX_BLOCK elements and in double across blocks (see fx_rows_impl.h).
 * Kernels that produce probabilities (softmax, log-softmax, the loss and
 * its gradient) return NaN for a row whose log-sum-exp is not finite, as
 * PyTorch does.
 */
#ifndef FASTXENT_H
#define FASTXENT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 4: fx_count_labels.  5: FX_BLOCK_SHIFTS (float64 rows written block by block).
 * 6: fx_bce's outside count.  7: float32 rows written block by block too,
 * below AVX-512 (FX_BLOCK_SHIFTS).  8: fx_narrow_ce takes soft targets and
 * fx_ce_options (label smoothing and z-loss) in place of the class weights. */
#define FASTXENT_C_API_VERSION 8

/* Instruction-set paths, lowest first. */
enum fx_simd_path { FX_SIMD_BASELINE = 0, FX_SIMD_AVX2 = 1, FX_SIMD_AVX512 = 2 };

/* The path in use (chosen at the first call of any kernel). */
int fx_simd_path(void);
/* Its name: "baseline", "avx2" or "avx512". */
const char *fx_simd_name(int path);
/* The best path this CPU supports, ignoring FASTXENT_SIMD. */
int fx_simd_supported(void);
/* Force a path not above fx_simd_supported(); returns the path now in use.
 * Not thread-safe with respect to kernels running at the same time. */
int fx_simd_set(int path);

/* Flags.  FX_STREAM_STORES: write outputs with non-temporal stores, which
 * skip the read-for-ownership of the destination; use it when the whole
 * output is much larger than the last-level cache and is not read soon. */
#define FX_STREAM_STORES 1
/* FX_DEFER_FENCE (with FX_STREAM_STORES): the call leaves its non-temporal
 * stores unfenced; its caller runs fx_store_fence() once after the last of
 * a batch of calls, before another thread reads the outputs.  A fence per
 * call waits for that call's stores to reach memory (a row of 1000 float32
 * classes: ~30% more time). */
#define FX_DEFER_FENCE 2
void fx_store_fence(void);

/* Options of the cross-entropy row kernels.  Zero-initialise, then set. */
typedef struct {
    const void *weight;     /* (n,) class weights of the row's dtype, or NULL  */
    double label_smoothing; /* epsilon in [0, 1] (PyTorch's epsilon / n rule)  */
    double z_loss;          /* coefficient of lse**2 added to the loss, >= 0   */
    int flags;              /* FX_STREAM_STORES or 0                           */
} fx_ce_options;

/*
 * Log-sum-exp of one row.  Returned in double whatever the row's dtype.
 */
double fx_logsumexp_row_f32(const float *x, int64_t n);
double fx_logsumexp_row_f64(const double *x, int64_t n);

/* out[c] = exp(x[c] - lse(x)).  out may alias x.  Returns the lse.
 * For a row of 1025 to FX_BLOCK_SHIFTS_MAX elements (float64, or float32
 * below AVX-512), this and the gradient kernels malloc a scratch buffer of
 * about the row's size for the call (its exps; without it, if malloc
 * fails, they take them again: the same bits). */
double fx_softmax_row_f32(const float *x, int64_t n, float *out, int flags);
double fx_softmax_row_f64(const double *x, int64_t n, double *out, int flags);

/* out[c] = x[c] - lse(x).  out may alias x.  Returns the lse. */
double fx_log_softmax_row_f32(const float *x, int64_t n, float *out, int flags);
double fx_log_softmax_row_f64(const double *x, int64_t n, double *out, int flags);

/*
 * Every row kernel sums a row in slices of FX_SLICE elements, each with its
 * own running max, merged in order with fx_lse_merge.  So a row can be split
 * across threads with the same bits: fx_lse_scan_row gives a slice's
 * running max m and sum s of exp(x - shift(m)) (shift(m) = m if finite,
 * else 0); the caller cuts the row at multiples of FX_SLICE, merges the
 * slices in order (fx_lse_merge) and then writes each slice with
 * fx_write_row:
 *     out = take_log ? (x - shift) - k : exp(x - shift) * k,
 * and NaN everywhere when k is NaN (pass it for a row whose lse is not
 * finite: the row kernels fill such a row with NaN).
 * Rows of at most FX_BLOCK_SHIFTS_MAX elements are written by the row
 * kernels (softmax, the gradients) a block of 1024 elements at a time, at
 * the block's own shift: exp(x - m_b) * (k exp(m_b - shift)), m_b the
 * running maximum of the slice up to that block, so that they can reuse
 * the exps of their scan: float64 rows on every path, float32 rows below
 * AVX-512 (whose float32 exp is cheaper than keeping the exps).  For their
 * bits, pass FX_BLOCK_SHIFTS in flags when writing the slices of such a
 * row, of either dtype: the paths that write it at one shift ignore it.
 */
#define FX_SLICE 16384
#define FX_BLOCK_SHIFTS 4
#define FX_BLOCK_SHIFTS_MAX 262144
void fx_lse_scan_row_f32(const float *x, int64_t n, double *m, double *s);
void fx_lse_scan_row_f64(const double *x, int64_t n, double *m, double *s);
void fx_write_row_f32(const float *x, int64_t n, int take_log, double shift, double k, int flags,
                      float *out);
void fx_write_row_f64(const double *x, int64_t n, int take_log, double shift, double k, int flags,
                      double *out);
/* (m, s) <- the state of the concatenation of (m, s) and (m2, s2). */
void fx_lse_merge(double *m, double *s, double m2, double s2);

/*
 * Cross-entropy of one row against the class `label` (0 <= label < n; the
 * caller checks it).  With the options zero this is lse(x) - x[label].
 * In general, with a_c = (1 - eps) w_label [c == label] + eps / n * w_c
 * (w = 1 when weight is NULL) and A = sum_c a_c:
 *     loss = A * lse - sum_c a_c x_c + z * lse**2
 * When grad is not NULL the same call writes, reading the row from cache,
 *     grad[c] = grad_scale * ((A + 2 z lse) softmax(x)_c - a_c),
 * the derivative of grad_scale * loss.  grad may alias x.
 * *lse_out (when not NULL) receives the lse.  Returns the loss.
 */
double fx_ce_label_row_f32(const float *x, int64_t n, int64_t label,
                           const fx_ce_options *opt, double grad_scale,
                           float *grad, double *lse_out);
double fx_ce_label_row_f64(const double *x, int64_t n, int64_t label,
                           const fx_ce_options *opt, double grad_scale,
                           double *grad, double *lse_out);

/*
 * Cross-entropy of one row against a probability row t (soft target), with
 * a_c = w_c ((1 - eps) t_c + eps / n); same loss and gradient formulas as
 * above, the loss's sum taken class by class as PyTorch takes it (a class of
 * a_c > 0 at -inf gives +inf, one of a_c = 0 there NaN).  grad may alias x
 * but not t.
 */
double fx_ce_prob_row_f32(const float *x, const float *t, int64_t n,
                          const fx_ce_options *opt, double grad_scale,
                          float *grad, double *lse_out);
double fx_ce_prob_row_f64(const double *x, const double *t, int64_t n,
                          const fx_ce_options *opt, double grad_scale,
                          double *grad, double *lse_out);

/*
 * Column kernels: the class axis is strided.  x points at class 0 of m
 * adjacent positions; class c of position j is x[c * stride + j] (PyTorch's
 * (N, C, d1, ..., dk) layout, one sample at a time, stride = d1 * ... * dk).
 * Vectorised along the positions; no transposed copy is made.  Outputs of
 * the input's layout (out, grad) may alias x; per-position outputs are dense.
 * Up to two vectors of lanes of classes (32 float32 classes with AVX-512)
 * the narrow kernels compute them, the lse and losses in x's dtype before
 * they are widened to double.
 */
void fx_logsumexp_cols_f32(const float *x, int64_t n_classes, int64_t m, int64_t stride, double *lse);
void fx_logsumexp_cols_f64(const double *x, int64_t n_classes, int64_t m, int64_t stride, double *lse);
/* softmax (take_log = 0) or log-softmax (take_log = 1) along the class axis. */
void fx_softmax_cols_f32(const float *x, int64_t n_classes, int64_t m, int64_t stride, float *out,
                         int take_log);
void fx_softmax_cols_f64(const double *x, int64_t n_classes, int64_t m, int64_t stride, double *out,
                         int take_log);
/*
 * Cross-entropy per position against labels[j] (< 0: ignored, loss and
 * gradient exactly 0) or, with labels NULL, against the soft-target slab t
 * (x's layout).  grad_scale[j] (or 1 when NULL) scales position j's
 * gradient.  loss, lse (m values each) and grad are optional (NULL).
 */
void fx_ce_cols_f32(const float *x, const float *t, const int64_t *labels, int64_t n_classes,
                    int64_t m, int64_t stride, const fx_ce_options *opt, const double *grad_scale,
                    float *grad, double *loss, double *lse);
void fx_ce_cols_f64(const double *x, const double *t, const int64_t *labels, int64_t n_classes,
                    int64_t m, int64_t stride, const fx_ce_options *opt, const double *grad_scale,
                    double *grad, double *loss, double *lse);

/*
 * Cross-entropy of a row of probabilities p (from_logits=False):
 *     loss = -sum_c a_c log(max(p_c, clip))
 * with a_c of fx_ce_label_row (t NULL: the label) or fx_ce_prob_row (soft
 * targets t); opt->z_loss is not used.  grad (optional) receives
 * grad_scale * d loss / d p: -a_c / p_c, and 0 where p_c < clip.
 */
double fx_nll_prob_row_f32(const float *p, const float *t, int64_t n, int64_t label,
                           const fx_ce_options *opt, double clip, double grad_scale, float *grad);
double fx_nll_prob_row_f64(const double *p, const double *t, int64_t n, int64_t label,
                           const fx_ce_options *opt, double clip, double grad_scale, double *grad);

/* Entropy (nats) of a row normalised to sum 1; 0 log 0 = 0. */
double fx_entropy_row_f32(const float *p, int64_t n);
double fx_entropy_row_f64(const double *p, int64_t n);
/* KL(p || q) (nats) of rows normalised to sum 1; inf where q = 0 < p. */
double fx_kl_row_f32(const float *p, const float *q, int64_t n);
double fx_kl_row_f64(const double *p, const double *q, int64_t n);

/*
 * Binary cross-entropy of n elements against targets t (smoothed to
 * t (1 - eps) + eps / 2), from logits (stable softplus form, pos_weight pw)
 * or from probabilities (PyTorch's log clamp at -100).  w, pw, go (upstream
 * gradient per element), loss and grad are optional (NULL).  The gradient
 * of element i is grad_scale * go[i] * d loss_i / d x_i.  outside (or
 * NULL) receives the number of targets, and from probabilities of x too,
 * that lie outside [0, 1] or are NaN (the results are then meaningless;
 * a caller that must not write them checks first).  Returns the sum.
 */
double fx_bce_f32(const float *x, const float *t, int64_t n, const float *w, const float *pw,
                  double eps, int from_logits, double grad_scale, const float *go, float *loss,
                  float *grad, int64_t *outside);
double fx_bce_f64(const double *x, const double *t, int64_t n, const double *w, const double *pw,
                  double eps, int from_logits, double grad_scale, const double *go, double *loss,
                  double *grad, int64_t *outside);

/* out = cap * tanh(x / cap) (logit softcap); out may alias x. */
void fx_softcap_row_f32(const float *x, int64_t n, double cap, float *out);
void fx_softcap_row_f64(const double *x, int64_t n, double cap, double *out);
/* grad *= 1 - (capped / cap)^2: the chain rule through the softcap. */
void fx_softcap_grad_row_f32(const float *capped, int64_t n, double cap, float *grad);
void fx_softcap_grad_row_f64(const double *capped, int64_t n, double cap, double *grad);

/* lse[r] = fx_logsumexp_row(x + r * n, n) for n_rows rows, in the row's
 * dtype (same bits); short rows are taken a few at a time, which hides
 * the latency of each row's reductions and log. */
void fx_logsumexp_rows_f32(const float *x, int64_t n_rows, int64_t n, float *lse);
void fx_logsumexp_rows_f64(const double *x, int64_t n_rows, int64_t n, double *lse);
/* fx_softmax_row (take_log 0) or fx_log_softmax_row (take_log 1) of
 * n_rows rows of n classes into out (n_rows x n), the same way. */
void fx_softmax_rows_f32(const float *x, int64_t n_rows, int64_t n, float *out, int take_log, int flags);
void fx_softmax_rows_f64(const double *x, int64_t n_rows, int64_t n, double *out, int take_log, int flags);
/* Cross-entropy of n_rows rows against labels, the same way, with class
 * weights w but no label smoothing or z-loss: with opt = {w, 0, 0, flags},
 *     l_r = fx_ce_label_row(x + r * n, n, labels[r], &opt, gs_r, grad + r * n, &lse_r)
 * for gs_r = grad_scale * sw[r] * grs[r]; loss[r] = sw[r] * l_r and lse[r]
 * in the row's dtype (same bits).  A row whose label is ignore_index gets
 * loss 0, its lse and a gradient row of 0; every other label must lie in
 * [0, n).  w, sw, grs, loss, grad and lse are optional (NULL; grad may be
 * x itself).  Returns the sum of the losses, added in row order. */
double fx_ce_label_rows_f32(const float *x, int64_t n_rows, int64_t n, const int64_t *labels,
                            int64_t ignore_index, const float *w, const double *sw, double grad_scale,
                            const double *grs, int flags, float *loss, float *grad, float *lse);
double fx_ce_label_rows_f64(const double *x, int64_t n_rows, int64_t n, const int64_t *labels,
                            int64_t ignore_index, const double *w, const double *sw, double grad_scale,
                            const double *grs, int flags, double *loss, double *grad, double *lse);

/*
 * Narrow rows (n <= FX_NARROW_MAX classes), n_rows at a time, SIMD across
 * rows.  fx_narrow_ce: fx_ce_label_row's loss and gradient (opt's class
 * weights, label smoothing and z-loss; its flags are ignored) for every
 * row, against labels or, when labels is NULL, the probability rows t (n_rows
 * x n, fx_ce_prob_row's formulas); rows whose label is ignore_index (or
 * outside [0, n)) are ignored (loss 0, gradient 0); opt, sw (sample weights,
 * scaling the loss and the gradient), grs (per-row gradient scales, times
 * grad_scale), loss, grad and lse are optional (NULL).  It returns the sum of
 * the row losses.
 */
#define FX_NARROW_MAX 32
void fx_narrow_logsumexp_f32(const float *x, int64_t n_rows, int64_t n, float *lse);
void fx_narrow_logsumexp_f64(const double *x, int64_t n_rows, int64_t n, double *lse);
void fx_narrow_softmax_f32(const float *x, int64_t n_rows, int64_t n, float *out, int take_log);
void fx_narrow_softmax_f64(const double *x, int64_t n_rows, int64_t n, double *out, int take_log);
double fx_narrow_ce_f32(const float *x, int64_t n_rows, int64_t n, const int64_t *labels, const float *t,
                        int64_t ignore_index,
                        const fx_ce_options *opt, const double *sw, double grad_scale, const double *grs,
                        float *loss, float *grad, float *lse);
double fx_narrow_ce_f64(const double *x, int64_t n_rows, int64_t n, const int64_t *labels, const double *t,
                        int64_t ignore_index,
                        const fx_ce_options *opt, const double *sw, double grad_scale, const double *grs,
                        double *loss, double *grad, double *lse);
/* out[r] = fx_entropy_row(p + r * n, n) and fx_kl_row(p + r * n, q + r * n, n)
 * (in double; to rounding: the narrow kernels sum along a row in float). */
void fx_narrow_entropy_f32(const float *p, int64_t n_rows, int64_t n, double *out);
void fx_narrow_entropy_f64(const double *p, int64_t n_rows, int64_t n, double *out);
void fx_narrow_kl_f32(const float *p, const float *q, int64_t n_rows, int64_t n, double *out);
void fx_narrow_kl_f64(const double *p, const double *q, int64_t n_rows, int64_t n, double *out);

/*
 * Class labels: returns how many of labels[0..n) are not ignore_index, and
 * in *bad how many of those lie outside [0, n_classes).  Callers that must
 * reject bad labels before running a kernel (which would ignore them) look
 * for the first one only when *bad > 0.
 */
int64_t fx_count_labels(const int64_t *labels, int64_t n, int64_t n_classes, int64_t ignore_index,
                        int64_t *bad);

#ifdef __cplusplus
}
#endif

#endif /* FASTXENT_H */
