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

    ctypedef struct fx_ce_options:
        const void *weight
        double label_smoothing
        double z_loss

    int fx_simd_path()
    const char *fx_simd_name(int path)
    int fx_simd_supported()
    int fx_simd_set(int path)

    double fx_logsumexp_row_f32(const float *x, int64_t n)
    double fx_logsumexp_row_f64(const double *x, int64_t n)
    double fx_softmax_row_f32(const float *x, int64_t n, float *out)
    double fx_softmax_row_f64(const double *x, int64_t n, double *out)
    double fx_log_softmax_row_f32(const float *x, int64_t n, float *out)
    double fx_log_softmax_row_f64(const double *x, int64_t n, double *out)
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

ctypedef fused real:
    float
    double


cdef inline double lse_row(const real *x, int64_t n) noexcept nogil:
    if real is float:
        return fx_logsumexp_row_f32(x, n)
    else:
        return fx_logsumexp_row_f64(x, n)


cdef inline double softmax_row(const real *x, int64_t n, real *out, bint log) noexcept nogil:
    if real is float:
        return fx_log_softmax_row_f32(x, n, out) if log else fx_softmax_row_f32(x, n, out)
    else:
        return fx_log_softmax_row_f64(x, n, out) if log else fx_softmax_row_f64(x, n, out)


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
cdef double capi_softmax_row_f32(const float *x, int64_t n, float *out) noexcept nogil
cdef double capi_softmax_row_f64(const double *x, int64_t n, double *out) noexcept nogil
cdef double capi_log_softmax_row_f32(const float *x, int64_t n, float *out) noexcept nogil
cdef double capi_log_softmax_row_f64(const double *x, int64_t n, double *out) noexcept nogil
cdef double capi_ce_label_row_f32(const float *x, int64_t n, int64_t label, const fx_ce_options *opt,
                                  double grad_scale, float *grad, double *lse_out) noexcept nogil
cdef double capi_ce_label_row_f64(const double *x, int64_t n, int64_t label, const fx_ce_options *opt,
                                  double grad_scale, double *grad, double *lse_out) noexcept nogil
cdef double capi_ce_prob_row_f32(const float *x, const float *t, int64_t n, const fx_ce_options *opt,
                                 double grad_scale, float *grad, double *lse_out) noexcept nogil
cdef double capi_ce_prob_row_f64(const double *x, const double *t, int64_t n, const fx_ce_options *opt,
                                 double grad_scale, double *grad, double *lse_out) noexcept nogil
