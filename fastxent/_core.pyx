# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Batch layer: typed loops over rows, parallel with OpenMP, GIL released.

Every function takes arrays the Python layer has already validated (shapes,
dtypes, contiguity, label ranges) and writes only into the outputs it is
given.  Rows are grouped in blocks whose size depends only on the row length;
each block's loss sum is kept apart and the blocks are added in order, so a
reduction gives the same bits for every thread count.
"""
from cython.parallel cimport prange
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from fastxent._core cimport (
    real, fx_ce_options, lse_row, softmax_row, ce_label_row, ce_prob_row,
    fx_simd_path, fx_simd_name, fx_simd_supported, fx_simd_set,
)

cdef extern from "fx_omp.h" nogil:
    int fx_omp_enabled()
    int fx_omp_max_threads()
    int fx_omp_num_procs()

cdef enum:
    # Work (elements) under which a call stays on the calling thread: starting
    # a parallel region costs a few microseconds, the time to stream ~64K floats.
    SERIAL_WORK = 65536
    # Elements per reduction block (fixed, so sums do not depend on threads).
    BLOCK_WORK = 16384


def openmp_enabled():
    return bool(fx_omp_enabled())


def max_threads():
    """Threads an OpenMP region may use now (OMP_NUM_THREADS, threadpoolctl)."""
    return fx_omp_max_threads()


def num_procs():
    return fx_omp_num_procs()


def simd_path():
    return fx_simd_name(fx_simd_path()).decode()


def simd_supported():
    return fx_simd_name(fx_simd_supported()).decode()


def set_simd(str name):
    """Force an instruction-set path (not above what the CPU supports)."""
    cdef int path
    for path in range(3):
        if fx_simd_name(path).decode() == name:
            return fx_simd_name(fx_simd_set(path)).decode()
    raise ValueError(f"simd path must be 'baseline', 'avx2' or 'avx512', got {name!r}")


cdef inline int _threads(int64_t work, int64_t units, int n_threads) noexcept nogil:
    """Threads for a call: 1 when the work is too small for a parallel region."""
    if work < SERIAL_WORK or units < 2 or n_threads <= 1:
        return 1
    return <int>min(<int64_t>n_threads, units)


cdef inline int64_t _rows_per_block(int64_t c) noexcept nogil:
    return max(<int64_t>1, BLOCK_WORK // max(c, <int64_t>1))


# ---------------------------------------------------------------------------
# log-sum-exp, softmax, log-softmax


def logsumexp_rows(const real[:, ::1] x, real[::1] out, int n_threads):
    cdef int64_t n = x.shape[0], c = x.shape[1], i
    cdef int nt = _threads(n * c, n, n_threads)
    if n == 0:
        return
    cdef const real *xp = &x[0, 0]
    cdef real *op = &out[0]
    with nogil:
        if nt > 1:
            for i in prange(n, schedule='static', num_threads=nt):
                op[i] = <real>lse_row(xp + i * c, c)
        else:
            for i in range(n):
                op[i] = <real>lse_row(xp + i * c, c)


def softmax_rows(const real[:, ::1] x, real[:, ::1] out, bint log, int n_threads):
    cdef int64_t n = x.shape[0], c = x.shape[1], i
    cdef int nt = _threads(n * c, n, n_threads)
    if n == 0 or c == 0:
        return
    cdef const real *xp = &x[0, 0]
    cdef real *op = &out[0, 0]
    with nogil:
        if nt > 1:
            for i in prange(n, schedule='static', num_threads=nt):
                softmax_row(xp + i * c, c, op + i * c, log)
        else:
            for i in range(n):
                softmax_row(xp + i * c, c, op + i * c, log)


# ---------------------------------------------------------------------------
# labels


def check_labels(const int64_t[::1] labels, int64_t n_classes, int64_t ignore_index):
    """Index of the first label outside [0, n_classes) that is not ignored, or -1."""
    cdef int64_t i, y, n = labels.shape[0], bad = -1
    with nogil:
        for i in range(n):
            y = labels[i]
            if y != ignore_index and (y < 0 or y >= n_classes):
                bad = i
                break
    return bad


# ---------------------------------------------------------------------------
# cross-entropy


cdef double _ce_block(const real *x, const real *t, const int64_t *labels, int64_t ignore_index,
                      int64_t first, int64_t last, int64_t c, const fx_ce_options *opt,
                      const double *sample_weight, double grad_scale, const double *grad_row_scale,
                      real *loss_out, real *grad, real *lse_out) noexcept nogil:
    """Loss sum of rows [first, last); writes the per-row outputs given."""
    cdef double acc = 0.0, loss, gs, sw, lse
    cdef int64_t i
    cdef real *g = NULL
    for i in range(first, last):
        g = grad + i * c if grad != NULL else NULL
        if t == NULL and labels[i] == ignore_index:
            loss = 0.0
            if g != NULL:
                memset(g, 0, c * sizeof(real))
            if lse_out != NULL:
                lse_out[i] = <real>lse_row(x + i * c, c)
        else:
            sw = sample_weight[i] if sample_weight != NULL else 1.0
            gs = grad_scale * sw
            if grad_row_scale != NULL:
                gs = gs * grad_row_scale[i]
            if t == NULL:
                loss = sw * ce_label_row(x + i * c, c, labels[i], opt, gs, g, &lse)
            else:
                loss = sw * ce_prob_row(x + i * c, t + i * c, c, opt, gs, g, &lse)
            if lse_out != NULL:
                lse_out[i] = <real>lse
        if loss_out != NULL:
            loss_out[i] = <real>loss
        acc += loss
    return acc


def cross_entropy_rows(const real[:, ::1] x, const real[:, ::1] target, const int64_t[::1] labels,
                       int64_t ignore_index, const real[::1] weight, const double[::1] sample_weight,
                       double label_smoothing, double z_loss, double grad_scale,
                       const double[::1] grad_row_scale, real[::1] loss_out, real[:, ::1] grad,
                       real[::1] lse_out, int n_threads):
    """Sum over rows of the (weighted) cross-entropy; optional per-row outputs.

    Exactly one of `target` (soft targets, x's shape) and `labels` is given.
    grad may be x itself (in place).  Returns the loss sum in double.
    """
    cdef int64_t n = x.shape[0], c = x.shape[1]
    if n == 0:
        return 0.0
    cdef fx_ce_options opt
    opt.weight = &weight[0] if weight is not None else NULL
    opt.label_smoothing = label_smoothing
    opt.z_loss = z_loss
    cdef const real *xp = &x[0, 0]
    cdef const real *tp = &target[0, 0] if target is not None else NULL
    cdef const int64_t *lp = &labels[0] if labels is not None else NULL
    cdef const double *swp = &sample_weight[0] if sample_weight is not None else NULL
    cdef const double *grp = &grad_row_scale[0] if grad_row_scale is not None else NULL
    cdef real *lop = &loss_out[0] if loss_out is not None else NULL
    cdef real *gp = &grad[0, 0] if grad is not None else NULL
    cdef real *lsp = &lse_out[0] if lse_out is not None else NULL

    cdef int64_t rpb = _rows_per_block(c)
    cdef int64_t nblocks = (n + rpb - 1) // rpb, b
    cdef int nt = _threads(n * c, nblocks, n_threads)
    cdef double *partial = <double *>malloc(nblocks * sizeof(double))
    if partial == NULL:
        raise MemoryError()
    cdef double total = 0.0
    try:
        with nogil:
            if nt > 1:
                for b in prange(nblocks, schedule='static', num_threads=nt):
                    partial[b] = _ce_block(xp, tp, lp, ignore_index, b * rpb, min(n, (b + 1) * rpb),
                                           c, &opt, swp, grad_scale, grp, lop, gp, lsp)
            else:
                for b in range(nblocks):
                    partial[b] = _ce_block(xp, tp, lp, ignore_index, b * rpb, min(n, (b + 1) * rpb),
                                           c, &opt, swp, grad_scale, grp, lop, gp, lsp)
            for b in range(nblocks):
                total += partial[b]
    finally:
        free(partial)
    return total


# ---------------------------------------------------------------------------
# C-API exports (declared in _core.pxd): the row kernels for other Cython
# extensions, reachable through __pyx_capi__ without linking fx_kernels.c.


cdef double capi_logsumexp_row_f32(const float *x, int64_t n) noexcept nogil:
    return fx_logsumexp_row_f32(x, n)


cdef double capi_logsumexp_row_f64(const double *x, int64_t n) noexcept nogil:
    return fx_logsumexp_row_f64(x, n)


cdef double capi_softmax_row_f32(const float *x, int64_t n, float *out) noexcept nogil:
    return fx_softmax_row_f32(x, n, out)


cdef double capi_softmax_row_f64(const double *x, int64_t n, double *out) noexcept nogil:
    return fx_softmax_row_f64(x, n, out)


cdef double capi_log_softmax_row_f32(const float *x, int64_t n, float *out) noexcept nogil:
    return fx_log_softmax_row_f32(x, n, out)


cdef double capi_log_softmax_row_f64(const double *x, int64_t n, double *out) noexcept nogil:
    return fx_log_softmax_row_f64(x, n, out)


cdef double capi_ce_label_row_f32(const float *x, int64_t n, int64_t label, const fx_ce_options *opt,
                                  double grad_scale, float *grad, double *lse_out) noexcept nogil:
    return fx_ce_label_row_f32(x, n, label, opt, grad_scale, grad, lse_out)


cdef double capi_ce_label_row_f64(const double *x, int64_t n, int64_t label, const fx_ce_options *opt,
                                  double grad_scale, double *grad, double *lse_out) noexcept nogil:
    return fx_ce_label_row_f64(x, n, label, opt, grad_scale, grad, lse_out)


cdef double capi_ce_prob_row_f32(const float *x, const float *t, int64_t n, const fx_ce_options *opt,
                                 double grad_scale, float *grad, double *lse_out) noexcept nogil:
    return fx_ce_prob_row_f32(x, t, n, opt, grad_scale, grad, lse_out)


cdef double capi_ce_prob_row_f64(const double *x, const double *t, int64_t n, const fx_ce_options *opt,
                                 double grad_scale, double *grad, double *lse_out) noexcept nogil:
    return fx_ce_prob_row_f64(x, t, n, opt, grad_scale, grad, lse_out)
