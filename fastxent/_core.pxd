# Declarations other Cython code cimports: the C row kernels (nogil, on
# pointers) and the fused row helpers that pick the kernel by dtype.
#
#     from fastxent._core cimport fx_ce_label_row_f32, ce_label_row
#
# Build such an extension with include_dirs=[fastxent.get_include()] (the C
# headers) and with the directory holding the fastxent package on Cython's
# include path (fastxent.get_cython_include()).
from libc.stdint cimport int64_t

cdef extern from "fastxent.h" nogil:
    int FASTXENT_C_API_VERSION
    int FX_SIMD_BASELINE
    int FX_SIMD_AVX2
    int FX_SIMD_AVX512
    int FX_STREAM_STORES
    int FX_DEFER_FENCE
    void fx_store_fence()

    ctypedef struct fx_ce_options:
        const void *weight
        double label_smoothing
        double z_loss
        int flags

    int fx_simd_path()
    const char *fx_simd_name(int path)
    int fx_simd_supported()
    int fx_simd_set(int path)

    double fx_logsumexp_row_f32(const float *x, int64_t n)
    double fx_logsumexp_row_f64(const double *x, int64_t n)
    double fx_softmax_row_f32(const float *x, int64_t n, float *out, int flags)
    double fx_softmax_row_f64(const double *x, int64_t n, double *out, int flags)
    double fx_log_softmax_row_f32(const float *x, int64_t n, float *out, int flags)
    double fx_log_softmax_row_f64(const double *x, int64_t n, double *out, int flags)
    double fx_ce_label_row_f32(const float *x, int64_t n, int64_t label,
                               const fx_ce_options *opt, double grad_scale,
                               float *grad, double *lse_out)
    double fx_ce_label_row_f64(const double *x, int64_t n, int64_t label,
                               const fx_ce_options *opt, double grad_scale,
                               double *grad, double *lse_out)
    double fx_ce_prob_row_f32(const float *x, const float *t, int64_t n,
                              const fx_ce_options *opt, double grad_scale,
                              float *grad, double *lse_out)
    double fx_ce_prob_row_f64(const double *x, const double *t, int64_t n,
                              const fx_ce_options *opt, double grad_scale,
                              double *grad, double *lse_out)

    int64_t fx_count_labels(const int64_t *labels, int64_t n, int64_t n_classes, int64_t ignore_index,
                            int64_t *bad)

    void fx_logsumexp_cols_f32(const float *x, int64_t n_classes, int64_t m, int64_t stride, double *lse)
    void fx_logsumexp_cols_f64(const double *x, int64_t n_classes, int64_t m, int64_t stride, double *lse)
    void fx_softmax_cols_f32(const float *x, int64_t n_classes, int64_t m, int64_t stride, float *out,
                             int take_log)
    void fx_softmax_cols_f64(const double *x, int64_t n_classes, int64_t m, int64_t stride, double *out,
                             int take_log)
    void fx_ce_cols_f32(const float *x, const float *t, const int64_t *labels, int64_t n_classes,
                        int64_t m, int64_t stride, const fx_ce_options *opt, const double *grad_scale,
                        float *grad, double *loss, double *lse)
    void fx_ce_cols_f64(const double *x, const double *t, const int64_t *labels, int64_t n_classes,
                        int64_t m, int64_t stride, const fx_ce_options *opt, const double *grad_scale,
                        double *grad, double *loss, double *lse)

    double fx_nll_prob_row_f32(const float *p, const float *t, int64_t n, int64_t label,
                               const fx_ce_options *opt, double clip, double grad_scale, float *grad)
    double fx_nll_prob_row_f64(const double *p, const double *t, int64_t n, int64_t label,
                               const fx_ce_options *opt, double clip, double grad_scale, double *grad)
    double fx_entropy_row_f32(const float *p, int64_t n)
    double fx_entropy_row_f64(const double *p, int64_t n)
    double fx_kl_row_f32(const float *p, const float *q, int64_t n)
    double fx_kl_row_f64(const double *p, const double *q, int64_t n)
    double fx_bce_f32(const float *x, const float *t, int64_t n, const float *w, const float *pw,
                      double eps, int from_logits, double grad_scale, const float *go, float *loss,
                      float *grad, int64_t *outside)
    double fx_bce_f64(const double *x, const double *t, int64_t n, const double *w, const double *pw,
                      double eps, int from_logits, double grad_scale, const double *go, double *loss,
                      double *grad, int64_t *outside)
    void fx_softcap_row_f32(const float *x, int64_t n, double cap, float *out)
    void fx_softcap_row_f64(const double *x, int64_t n, double cap, double *out)
    void fx_softcap_grad_row_f32(const float *capped, int64_t n, double cap, float *grad)
    void fx_softcap_grad_row_f64(const double *capped, int64_t n, double cap, double *grad)

    int FX_NARROW_MAX
    int FX_SLICE
    int FX_BLOCK_SHIFTS
    int FX_BLOCK_SHIFTS_MAX
    void fx_lse_scan_row_f32(const float *x, int64_t n, double *m, double *s)
    void fx_lse_scan_row_f64(const double *x, int64_t n, double *m, double *s)
    void fx_write_row_f32(const float *x, int64_t n, int take_log, double shift, double k, int flags,
                          float *out)
    void fx_write_row_f64(const double *x, int64_t n, int take_log, double shift, double k, int flags,
                          double *out)
    void fx_lse_merge(double *m, double *s, double m2, double s2)
    void fx_logsumexp_rows_f32(const float *x, int64_t n_rows, int64_t n, float *lse)
    void fx_logsumexp_rows_f64(const double *x, int64_t n_rows, int64_t n, double *lse)
    void fx_softmax_rows_f32(const float *x, int64_t n_rows, int64_t n, float *out, int take_log, int flags)
    void fx_softmax_rows_f64(const double *x, int64_t n_rows, int64_t n, double *out, int take_log, int flags)
    double fx_ce_label_rows_f32(const float *x, int64_t n_rows, int64_t n, const int64_t *labels,
                                int64_t ignore_index, const float *w, const double *sw, double grad_scale,
                                const double *grs, int flags, float *loss, float *grad, float *lse)
    double fx_ce_label_rows_f64(const double *x, int64_t n_rows, int64_t n, const int64_t *labels,
                                int64_t ignore_index, const double *w, const double *sw, double grad_scale,
                                const double *grs, int flags, double *loss, double *grad, double *lse)
    void fx_narrow_logsumexp_f32(const float *x, int64_t n_rows, int64_t n, float *lse)
    void fx_narrow_entropy_f32(const float *p, int64_t n_rows, int64_t n, double *out)
    void fx_narrow_entropy_f64(const double *p, int64_t n_rows, int64_t n, double *out)
    void fx_narrow_kl_f32(const float *p, const float *q, int64_t n_rows, int64_t n, double *out)
    void fx_narrow_kl_f64(const double *p, const double *q, int64_t n_rows, int64_t n, double *out)
    void fx_narrow_logsumexp_f64(const double *x, int64_t n_rows, int64_t n, double *lse)
    void fx_narrow_softmax_f32(const float *x, int64_t n_rows, int64_t n, float *out, int take_log)
    void fx_narrow_softmax_f64(const double *x, int64_t n_rows, int64_t n, double *out, int take_log)
    double fx_narrow_ce_f32(const float *x, int64_t n_rows, int64_t n, const int64_t *labels, const float *t,
                            int64_t ignore_index, const fx_ce_options *opt, const double *sw, double grad_scale,
                            const double *grs, float *loss, float *grad, float *lse)
    double fx_narrow_ce_f64(const double *x, int64_t n_rows, int64_t n, const int64_t *labels, const double *t,
                            int64_t ignore_index, const fx_ce_options *opt, const double *sw, double grad_scale,
                            const double *grs, double *loss, double *grad, double *lse)

ctypedef fused real:
    float
    double


cdef inline double lse_row(const real *x, int64_t n) noexcept nogil:
    if real is float:
        return fx_logsumexp_row_f32(x, n)
    else:
        return fx_logsumexp_row_f64(x, n)


cdef inline double softmax_row(const real *x, int64_t n, real *out, bint log,
                               int flags) noexcept nogil:
    if real is float:
        return fx_log_softmax_row_f32(x, n, out, flags) if log else fx_softmax_row_f32(x, n, out, flags)
    else:
        return fx_log_softmax_row_f64(x, n, out, flags) if log else fx_softmax_row_f64(x, n, out, flags)


cdef inline double ce_label_row(const real *x, int64_t n, int64_t label,
                                const fx_ce_options *opt, double grad_scale,
                                real *grad, double *lse_out) noexcept nogil:
    if real is float:
        return fx_ce_label_row_f32(x, n, label, opt, grad_scale, grad, lse_out)
    else:
        return fx_ce_label_row_f64(x, n, label, opt, grad_scale, grad, lse_out)


cdef inline double ce_prob_row(const real *x, const real *t, int64_t n,
                               const fx_ce_options *opt, double grad_scale,
                               real *grad, double *lse_out) noexcept nogil:
    if real is float:
        return fx_ce_prob_row_f32(x, t, n, opt, grad_scale, grad, lse_out)
    else:
        return fx_ce_prob_row_f64(x, t, n, opt, grad_scale, grad, lse_out)


cdef inline void lse_cols(const real *x, int64_t n_classes, int64_t m, int64_t stride,
                          double *lse) noexcept nogil:
    if real is float:
        fx_logsumexp_cols_f32(x, n_classes, m, stride, lse)
    else:
        fx_logsumexp_cols_f64(x, n_classes, m, stride, lse)


cdef inline void softmax_in_cols(const real *x, int64_t n_classes, int64_t m, int64_t stride,
                              real *out, bint log) noexcept nogil:
    if real is float:
        fx_softmax_cols_f32(x, n_classes, m, stride, out, log)
    else:
        fx_softmax_cols_f64(x, n_classes, m, stride, out, log)


cdef inline void ce_cols(const real *x, const real *t, const int64_t *labels, int64_t n_classes,
                         int64_t m, int64_t stride, const fx_ce_options *opt,
                         const double *grad_scale, real *grad, double *loss,
                         double *lse) noexcept nogil:
    if real is float:
        fx_ce_cols_f32(x, t, labels, n_classes, m, stride, opt, grad_scale, grad, loss, lse)
    else:
        fx_ce_cols_f64(x, t, labels, n_classes, m, stride, opt, grad_scale, grad, loss, lse)


cdef inline double nll_prob_row(const real *p, const real *t, int64_t n, int64_t label,
                                const fx_ce_options *opt, double clip, double grad_scale,
                                real *grad) noexcept nogil:
    if real is float:
        return fx_nll_prob_row_f32(p, t, n, label, opt, clip, grad_scale, grad)
    else:
        return fx_nll_prob_row_f64(p, t, n, label, opt, clip, grad_scale, grad)


cdef inline double entropy_row(const real *p, int64_t n) noexcept nogil:
    if real is float:
        return fx_entropy_row_f32(p, n)
    else:
        return fx_entropy_row_f64(p, n)


cdef inline double kl_row(const real *p, const real *q, int64_t n) noexcept nogil:
    if real is float:
        return fx_kl_row_f32(p, q, n)
    else:
        return fx_kl_row_f64(p, q, n)


cdef inline double bce(const real *x, const real *t, int64_t n, const real *w, const real *pw,
                       double eps, int from_logits, double grad_scale, const real *go, real *loss,
                       real *grad, int64_t *outside) noexcept nogil:
    if real is float:
        return fx_bce_f32(x, t, n, w, pw, eps, from_logits, grad_scale, go, loss, grad, outside)
    else:
        return fx_bce_f64(x, t, n, w, pw, eps, from_logits, grad_scale, go, loss, grad, outside)


cdef inline void softcap_row(const real *x, int64_t n, double cap, real *out) noexcept nogil:
    if real is float:
        fx_softcap_row_f32(x, n, cap, out)
    else:
        fx_softcap_row_f64(x, n, cap, out)


cdef inline void softcap_grad_row(const real *capped, int64_t n, double cap, real *grad) noexcept nogil:
    if real is float:
        fx_softcap_grad_row_f32(capped, n, cap, grad)
    else:
        fx_softcap_grad_row_f64(capped, n, cap, grad)


cdef inline void lse_rows(const real *x, int64_t n_rows, int64_t n, real *lse) noexcept nogil:
    if real is float:
        fx_logsumexp_rows_f32(x, n_rows, n, lse)
    else:
        fx_logsumexp_rows_f64(x, n_rows, n, lse)


cdef inline void softmax_row_batch(const real *x, int64_t n_rows, int64_t n, real *out, bint log,
                              int flags) noexcept nogil:
    if real is float:
        fx_softmax_rows_f32(x, n_rows, n, out, log, flags)
    else:
        fx_softmax_rows_f64(x, n_rows, n, out, log, flags)


cdef inline double ce_label_rows(const real *x, int64_t n_rows, int64_t n, const int64_t *labels,
                                int64_t ignore_index, const real *w, const double *sw, double grad_scale,
                                const double *grs, int flags, real *loss, real *grad,
                                real *lse) noexcept nogil:
    if real is float:
        return fx_ce_label_rows_f32(x, n_rows, n, labels, ignore_index, w, sw, grad_scale, grs, flags, loss,
                                    grad, lse)
    else:
        return fx_ce_label_rows_f64(x, n_rows, n, labels, ignore_index, w, sw, grad_scale, grs, flags, loss,
                                    grad, lse)


cdef inline void narrow_lse(const real *x, int64_t n_rows, int64_t n, real *lse) noexcept nogil:
    if real is float:
        fx_narrow_logsumexp_f32(x, n_rows, n, lse)
    else:
        fx_narrow_logsumexp_f64(x, n_rows, n, lse)


cdef inline void narrow_softmax(const real *x, int64_t n_rows, int64_t n, real *out,
                                bint log) noexcept nogil:
    if real is float:
        fx_narrow_softmax_f32(x, n_rows, n, out, log)
    else:
        fx_narrow_softmax_f64(x, n_rows, n, out, log)


cdef inline void narrow_entropy(const real *p, int64_t n_rows, int64_t n, double *out) noexcept nogil:
    if real is float:
        fx_narrow_entropy_f32(p, n_rows, n, out)
    else:
        fx_narrow_entropy_f64(p, n_rows, n, out)


cdef inline void narrow_kl(const real *p, const real *q, int64_t n_rows, int64_t n, double *out) noexcept nogil:
    if real is float:
        fx_narrow_kl_f32(p, q, n_rows, n, out)
    else:
        fx_narrow_kl_f64(p, q, n_rows, n, out)


cdef inline double narrow_ce(const real *x, int64_t n_rows, int64_t n, const int64_t *labels, const real *t,
                             int64_t ignore_index, const fx_ce_options *opt, const double *sw, double grad_scale,
                             const double *grs, real *loss, real *grad, real *lse) noexcept nogil:
    if real is float:
        return fx_narrow_ce_f32(x, n_rows, n, labels, t, ignore_index, opt, sw, grad_scale, grs, loss, grad, lse)
    else:
        return fx_narrow_ce_f64(x, n_rows, n, labels, t, ignore_index, opt, sw, grad_scale, grs, loss, grad, lse)


cdef inline void lse_scan_row(const real *x, int64_t n, double *m, double *s) noexcept nogil:
    if real is float:
        fx_lse_scan_row_f32(x, n, m, s)
    else:
        fx_lse_scan_row_f64(x, n, m, s)


cdef inline void write_row(const real *x, int64_t n, bint take_log, double shift, double k, int flags,
                           real *out) noexcept nogil:
    if real is float:
        fx_write_row_f32(x, n, take_log, shift, k, flags, out)
    else:
        fx_write_row_f64(x, n, take_log, shift, k, flags, out)


# ---------------------------------------------------------------------------
# The row kernels exported through Cython's C-API capsules
# (fastxent._core.__pyx_capi__).  An extension that cimports these gets their
# addresses when it imports fastxent._core: nothing to compile or link, the
# kernels (and the SIMD path) are fastxent's own.  The fused helpers above
# call the C symbols directly instead, so an extension that uses them must
# compile fx_kernels.c (from fastxent.get_include()) into itself.
#
#     from fastxent._core cimport fx_ce_options, capi_ce_label_row_f32

cdef double capi_logsumexp_row_f32(const float *x, int64_t n) noexcept nogil
cdef double capi_logsumexp_row_f64(const double *x, int64_t n) noexcept nogil
cdef double capi_softmax_row_f32(const float *x, int64_t n, float *out, int flags) noexcept nogil
cdef double capi_softmax_row_f64(const double *x, int64_t n, double *out, int flags) noexcept nogil
cdef double capi_log_softmax_row_f32(const float *x, int64_t n, float *out, int flags) noexcept nogil
cdef double capi_log_softmax_row_f64(const double *x, int64_t n, double *out, int flags) noexcept nogil
cdef double capi_ce_label_row_f32(const float *x, int64_t n, int64_t label, const fx_ce_options *opt,
                                  double grad_scale, float *grad, double *lse_out) noexcept nogil
cdef double capi_ce_label_row_f64(const double *x, int64_t n, int64_t label, const fx_ce_options *opt,
                                  double grad_scale, double *grad, double *lse_out) noexcept nogil
cdef double capi_ce_prob_row_f32(const float *x, const float *t, int64_t n, const fx_ce_options *opt,
                                 double grad_scale, float *grad, double *lse_out) noexcept nogil
cdef double capi_ce_prob_row_f64(const double *x, const double *t, int64_t n, const fx_ce_options *opt,
                                 double grad_scale, double *grad, double *lse_out) noexcept nogil
