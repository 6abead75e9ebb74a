# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Batch layer: typed loops over rows, parallel with OpenMP, GIL released.

Every function takes arrays the Python layer has already validated (shapes,
dtypes, contiguity, label ranges) and writes only into the outputs it is
given.  Rows are grouped in blocks whose size depends only on the row length;
each block's loss sum is kept apart and the blocks are added in order, so a
reduction gives the same bits for every thread count.
"""
from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t, uintptr_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.float cimport DBL_MAX
from libc.math cimport exp, fabs, log, NAN

import numpy

from fastxent._core cimport (
    real, fx_ce_options, FX_STREAM_STORES, lse_row, ce_label_row, ce_prob_row,
    FX_NARROW_MAX, narrow_lse, narrow_softmax, narrow_ce, lse_scan_row, write_row, fx_lse_merge,
    FX_BLOCK_SHIFTS, FX_BLOCK_SHIFTS_MAX,
    lse_cols, softmax_in_cols, ce_cols, nll_prob_row, entropy_row, kl_row, bce, softcap_row,
    softcap_grad_row, fx_count_labels,
    fx_simd_path, fx_simd_name, fx_simd_supported, fx_simd_set,
)

cdef extern from "fx_omp.h" nogil:
    int fx_omp_enabled()
    int fx_omp_max_threads()
    int fx_omp_num_procs()

cdef enum:
    # Work (elements) under which a call stays on the calling thread: waking
    # a second thread costs ~3 us, and 16K elements of short rows take
    # 8-10 us on one (logsumexp 256x100 float32: 13.0 us on one thread,
    # 10.1 on two; softmax 27.4 / 23.0; BCE 35.7 / 29.1).
    SERIAL_WORK = 16384
    # Elements per reduction block (fixed, so sums do not depend on threads).
    BLOCK_WORK = 16384
    # Output bytes above which stores bypass the caches (FX_STREAM_STORES):
    # half the 32 MiB L3 of the development machine; smaller outputs stay
    # cached for whatever reads them next.
    STREAM_BYTES = 16 << 20
    # ... for rows of at least this many bytes.  Shorter rows' outputs go
    # through the caches: streamed, their partial vectors at both ends
    # (fx_stream_part) cost more than the read for ownership they save.
    # Streamed / plain, 2 threads, 256 MiB outputs at numpy's 16-byte
    # alignment, medians of 3 alternated runs (ms): float32 x100
    # log_softmax 39.2 / 34.9, gradient 57.3 / 48.3; x160 log_softmax 24.3
    # / 27.1, gradient 33.7 / 30.0; x256 22.8 / 28.6, 28.2 / 29.5; x512
    # 23.5 / 29.6, 25.4 / 34.0; float64 x128 softmax 28.0 / 39.7, gradient
    # 34.2 / 40.1.
    STREAM_ROW_BYTES = 1024
    # Positions per work unit of the column (class axis strided) kernels.
    COLS_UNIT = 512
    # Rows per work unit of the narrow-row kernels (n_classes <= FX_NARROW_MAX).
    NARROW_UNIT = 512
    # Rows of at least SPLIT_MIN classes are always cut into slices of
    # FX_SLICE that threads share (see _split).
    SPLIT_MIN = 1 << 20
    # Labels per work unit of check_labels.
    LABEL_UNIT = 1 << 16
    # Most work units of a small call (cross_entropy_small), whose partial
    # sums live on the stack: 65536 narrow rows, or 65536 elements of wider ones.
    SMALL_UNITS = 128


# Classes per slice of a row (fastxent.h); for tests.
SLICE = FX_SLICE
BLOCK_SHIFTS_MAX = FX_BLOCK_SHIFTS_MAX
# Work (elements) from which a call may use more than one thread.
SERIAL = SERIAL_WORK

# NumPy's descriptors of the small calls' usual dtypes, tested by identity
# first (kind and itemsize were 0.3 us of a 2.6 us call).
cdef object _F32 = numpy.dtype(numpy.float32)
cdef object _F64 = numpy.dtype(numpy.float64)
cdef object _I64 = numpy.dtype(numpy.int64)


cdef int _float_size(dtype):
    """4 or 8 for native float32 or float64 (NumPy's descriptor, or an
    equal one: unpickled arrays carry copies), else 0.  Not the kind: a
    structured dtype of one float field would pass a float memoryview."""
    if dtype is _F32:
        return 4
    if dtype is _F64:
        return 8
    if dtype == _F32:
        return 4
    if dtype == _F64:
        return 8
    return 0


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
    """Threads for a call: 1 when the work is too small for a parallel region.
    Every prange sits under `if nt > 1`, with a plain loop over the same
    units in the else branch: an OpenMP region costs ~0.7 us even when
    use_threads_if keeps it to one thread (libgomp still builds a team,
    mallocs, and wakes a futex), a fifth of a small call."""
    if work < SERIAL_WORK or units < 2 or n_threads <= 1:
        return 1
    return <int>min(<int64_t>n_threads, units)


cdef inline bint _split(int64_t n, int64_t c, int n_threads) noexcept nogil:
    """Whether rows are cut into slices of FX_SLICE classes that threads
    share (split_rows): rows of SPLIT_MIN classes or more, and rows of two
    slices or more when there are fewer rows than threads (one LLM
    vocabulary row, say).  The row kernels sum a row in the same slices,
    merged in the same order, so this choice never changes a bit."""
    if c < 2 * FX_SLICE:
        return False
    return c >= SPLIT_MIN or n < _threads(n * c, n * ((c + FX_SLICE - 1) // FX_SLICE), n_threads)


cdef inline int64_t _chunk(int64_t units, int nt) noexcept nogil:
    """Units per chunk of a prange's dynamic schedule: about 8 chunks per
    thread.  A thread the OS takes away for a while (other work on a shared
    machine) then holds back one chunk, not a static schedule's whole share:
    2-thread calls beside a busy-looping process ran 1.2-1.6x faster on most
    shapes (4x on one huge row), and within noise without it.  Every
    unit's result is the same whichever thread computes it."""
    return max(<int64_t>1, units // (8 * nt))


cdef inline int _store_flags(int64_t out_bytes) noexcept nogil:
    return FX_STREAM_STORES if out_bytes >= STREAM_BYTES else 0


cdef inline int _row_store_flags(int64_t n, int64_t c, int64_t itemsize) noexcept nogil:
    """Store flags of an (n, c) output written a row at a time."""
    return _store_flags(n * c * itemsize) if c * itemsize >= STREAM_ROW_BYTES else 0


cdef inline int64_t _rows_per_block(int64_t c) noexcept nogil:
    return max(<int64_t>1, BLOCK_WORK // max(c, <int64_t>1))


cdef inline int64_t _unit_rows(int64_t c) noexcept nogil:
    """Rows per work unit of the row-wise calls: narrow rows go NARROW_UNIT
    at a time to the SIMD-across-rows kernels, others in blocks of rows."""
    return NARROW_UNIT if 0 < c <= FX_NARROW_MAX else _rows_per_block(c)


# ---------------------------------------------------------------------------
# log-sum-exp, softmax, log-softmax


cdef void _lse_unit(const real *x, int64_t u, int64_t per, int64_t n, int64_t c, real *out) noexcept nogil:
    """Rows [u * per, (u + 1) * per) of the n rows: SIMD across rows when
    they are narrow, else a few rows at a time (lse_rows)."""
    cdef int64_t first = u * per, rows = min(per, n - u * per)
    if 0 < c <= FX_NARROW_MAX:
        narrow_lse(x + first * c, rows, c, out + first)
    else:
        lse_rows(x + first * c, rows, c, out + first)


def logsumexp_rows(const real[:, ::1] x, real[::1] out, int n_threads):
    cdef int64_t n = x.shape[0], c = x.shape[1], u
    if n == 0:
        return
    cdef const real *xp = &x[0, 0]
    cdef real *op = &out[0]
    if _split(n, c, n_threads):
        split_rows(x, None, 0, 0, 0.0, None, out, None, None, n_threads)
        return
    cdef int64_t per = _unit_rows(c)
    cdef int64_t units = (n + per - 1) // per
    cdef int nt = _threads(n * c, units, n_threads)
    with nogil:
        if nt > 1:
            for u in prange(units, schedule='dynamic', chunksize=_chunk(units, nt), num_threads=nt):
                _lse_unit(xp, u, per, n, c, op)
        else:
            _rows_serial(xp, n, c, op, 0)


cdef void _softmax_unit(const real *x, int64_t u, int64_t per, int64_t n, int64_t c, real *out, bint log,
                        int flags) noexcept nogil:
    """Rows [u * per, (u + 1) * per) of the n rows: SIMD across rows when
    they are narrow, else a few rows at a time (softmax_row_batch)."""
    cdef int64_t first = u * per, rows = min(per, n - u * per)
    if 0 < c <= FX_NARROW_MAX:
        narrow_softmax(x + first * c, rows, c, out + first * c, log)
    else:
        softmax_row_batch(x + first * c, rows, c, out + first * c, log, flags)


cdef void _rows_serial(const real *x, int64_t n, int64_t c, real *out, int mode) noexcept nogil:
    """logsumexp (mode 0), softmax (1) or log-softmax (2) of n rows of c
    classes on the calling thread, in the units of logsumexp_rows and
    softmax_rows (their serial path)."""
    cdef int64_t per = _unit_rows(c), u
    cdef int64_t units = (n + per - 1) // per
    cdef int flags = _row_store_flags(n, c, sizeof(real))
    for u in range(units):
        if mode == 0:
            _lse_unit(x, u, per, n, c, out)
        else:
            _softmax_unit(x, u, per, n, c, out, mode == 2, flags)


def softmax_rows(const real[:, ::1] x, real[:, ::1] out, bint log, int n_threads):
    cdef int64_t n = x.shape[0], c = x.shape[1], u
    if n == 0 or c == 0:
        return
    cdef const real *xp = &x[0, 0]
    cdef real *op = &out[0, 0]
    cdef int flags = _row_store_flags(n, c, sizeof(real))
    if _split(n, c, n_threads):
        split_rows(x, None, 0, 2 if log else 1, 0.0, None, None, out, None, n_threads)
        return
    cdef int64_t per = _unit_rows(c)
    cdef int64_t units = (n + per - 1) // per
    cdef int nt = _threads(n * c, units, n_threads)
    with nogil:
        if nt > 1:
            for u in prange(units, schedule='dynamic', chunksize=_chunk(units, nt), num_threads=nt):
                _softmax_unit(xp, u, per, n, c, op, log, flags)
        else:
            _rows_serial(xp, n, c, op, 2 if log else 1)


cdef bint _rows_small(const real[:, ::1] x, out, int mode):
    cdef real[::1] lse_out
    cdef real[:, ::1] rows_out
    cdef int64_t n = x.shape[0], c = x.shape[1]
    if n * c == 0 or n * c >= SERIAL_WORK:
        return False
    try:
        if mode == 0:
            lse_out = out
        else:
            rows_out = out
    except (ValueError, TypeError):
        return False
    if not _aligned(&x[0, 0], sizeof(real)):
        return False
    if mode == 0 and lse_out.shape[0] == n and _aligned(&lse_out[0], sizeof(real)):
        _rows_serial(&x[0, 0], n, c, &lse_out[0], 0)
    elif mode != 0 and rows_out.shape[0] == n and rows_out.shape[1] == c and _aligned(&rows_out[0, 0], sizeof(real)):
        _rows_serial(&x[0, 0], n, c, &rows_out[0, 0], mode)
    else:
        return False
    return True


def rows_small(x, out, int mode):
    """logsumexp (mode 0), softmax (1) or log-softmax (2) of a small call:
    x a C-contiguous (N, C) float32 or float64 ndarray of fewer than
    SERIAL_WORK elements (one thread: no split, no parallel region), out of
    its dtype, (N,) or x's shape; the bits of logsumexp_rows/softmax_rows,
    without their fused-type dispatch (a third of a small call).  Returns
    False, having written nothing, when the arguments are not of that kind."""
    cdef const float[:, ::1] xf
    cdef const double[:, ::1] xd
    # The dtype picks the memoryview to try: a failed one raises, which
    # cost a float64 call ~0.5 us.
    single = x.dtype.itemsize == 4
    try:
        if single:
            xf = x
        else:
            xd = x
    except (ValueError, TypeError):
        return False
    return _rows_small(xf, out, mode) if single else _rows_small(xd, out, mode)


# ---------------------------------------------------------------------------
# labels


cdef void _check_labels_unit(const int64_t *all_labels, int64_t u, int64_t n_all, int64_t n_classes,
                             int64_t ignore_index, int64_t *res) noexcept nogil:
    """Unit u of LABEL_UNIT labels: res[0], the index in the unit of its first
    bad label, or -1; res[1], its labels that are not ignore_index."""
    cdef const int64_t *labels = all_labels + u * LABEL_UNIT
    cdef int64_t n = min(<int64_t>LABEL_UNIT, n_all - u * LABEL_UNIT)
    cdef int64_t i, y, bad = 0
    # The counts first (vectorised, fx_kernels.c); the position of a bad
    # label is looked for only when there is one.
    res[1] = fx_count_labels(labels, n, n_classes, ignore_index, &bad)
    res[0] = -1
    if bad:
        for i in range(n):
            y = labels[i]
            if y != ignore_index and (y < 0 or y >= n_classes):
                res[0] = i
                break


def check_labels(const int64_t[::1] labels, int64_t n_classes, int64_t ignore_index, int n_threads=1):
    """(index of the first label outside [0, n_classes) that is not ignored, or -1;
    the number of labels that are not ignore_index).

    Units of LABEL_UNIT labels are checked in parallel; the first bad one is
    the first in unit order, so the answer does not depend on the threads.
    """
    cdef int64_t n = labels.shape[0], units = (n + LABEL_UNIT - 1) // LABEL_UNIT, u, bad = -1, live = 0
    if n == 0:
        return -1, 0
    cdef int nt = _threads(n, units, n_threads)
    cdef const int64_t *lp = &labels[0]
    cdef int64_t *res = <int64_t *>malloc(2 * units * sizeof(int64_t))
    if res == NULL:
        raise MemoryError()
    with nogil:
        if nt > 1:
            for u in prange(units, schedule='dynamic', chunksize=_chunk(units, nt), num_threads=nt):
                _check_labels_unit(lp, u, n, n_classes, ignore_index, &res[2 * u])
        else:
            for u in range(units):
                _check_labels_unit(lp, u, n, n_classes, ignore_index, &res[2 * u])
        for u in range(units):
            if res[2 * u] >= 0:
                bad = u * LABEL_UNIT + res[2 * u]
                break
            live += res[2 * u + 1]
    free(res)
    return bad, live


cdef double _live_weight_sum(const int64_t *lp, int64_t n, int64_t ignore_index, const double *wp,
                             const double *swp) noexcept nogil:
    """live_weight_sum (below) on pointers, for the small-call path too."""
    cdef int64_t i, y
    cdef double total = 0.0, comp = 0.0, term, t
    for i in range(n):
        y = lp[i]
        if y == ignore_index:
            continue
        term = (wp[y] if wp != NULL else 1.0) * (swp[i] if swp != NULL else 1.0)
        t = total + term
        if fabs(total) >= fabs(term):
            comp += (total - t) + term
        else:
            comp += (term - t) + total
        total = t
    # A sum that overflowed is inf (its compensation is inf - inf).
    return total + comp if total - total == 0 else total


def live_weight_sum(const int64_t[::1] labels, int64_t ignore_index, const double[::1] weight,
                    const double[::1] sample_weight):
    """Sum of weight[y_i] * sample_weight[i] (either factor 1 when None) over
    the labels y_i that are not ignore_index: 'mean''s denominator.  Labels
    were checked (check_labels).  One thread, in label order, compensated
    (Neumaier): the same bits for any n_threads, accurate for any length
    (the NumPy gather, mask and sum it replaced cost 17 ms of a 24 ms
    weighted call at 1000000x10)."""
    cdef int64_t n = labels.shape[0]
    if sample_weight is not None and sample_weight.shape[0] != n:
        raise ValueError(f"sample_weight must hold one weight a label ({n}), got {sample_weight.shape[0]}")
    if n == 0:
        return 0.0
    cdef const double *wp = &weight[0] if weight is not None else NULL
    cdef const double *swp = &sample_weight[0] if sample_weight is not None else NULL
    cdef double total
    with nogil:
        total = _live_weight_sum(&labels[0], n, ignore_index, wp, swp)
    return total


cdef inline int64_t _outside(real e, double hi) noexcept nogil:
    return not ((e >= 0) & (e <= hi))


def count_outside(const real[::1] a, double hi, int n_threads=1):
    """How many values of a lie outside [0, hi] (NaN counts): one parallel pass,
    no temporaries.  The caller looks for the first one only when there is one."""
    cdef int64_t n = a.shape[0], i, bad = 0
    if n == 0:
        return 0
    cdef int nt = _threads(n, n, n_threads)
    cdef const real *ap = &a[0]
    with nogil:
        if nt > 1:
            for i in prange(n, schedule='dynamic', chunksize=_chunk(n, nt), num_threads=nt):
                bad += _outside(ap[i], hi)
        else:
            for i in range(n):
                bad += _outside(ap[i], hi)
    return bad


# ---------------------------------------------------------------------------
# cross-entropy


cdef double _ce_block(const real *x, const real *t, const int64_t *labels, int64_t ignore_index,
                      int64_t first, int64_t last, int64_t c, const fx_ce_options *opt,
                      const double *sample_weight, double grad_scale, const double *grad_row_scale,
                      double softcap, double clip, real *scratch, real *loss_out, real *grad,
                      real *lse_out) noexcept nogil:
    """Loss sum of rows [first, last); writes the per-row outputs given.

    softcap > 0: each row is capped into `scratch` (this thread's row, so it
    stays cached) first and the gradient is chained through the cap.
    clip > 0: the rows hold probabilities (from_logits=False) and clip is the
    log's floor.
    """
    cdef double acc = 0.0, loss, gs, sw, lse = 0.0
    cdef int64_t i
    cdef real *g = NULL
    cdef const real *row
    for i in range(first, last):
        g = grad + i * c if grad != NULL else NULL
        row = x + i * c
        if t == NULL and labels[i] == ignore_index:
            loss = 0.0
            # lse first: with inplace=True the gradient row is the logits row.
            if lse_out != NULL:
                lse_out[i] = <real>lse_row(row, c)
            if g != NULL:
                memset(g, 0, c * sizeof(real))
        else:
            sw = sample_weight[i] if sample_weight != NULL else 1.0
            gs = grad_scale * sw
            if grad_row_scale != NULL:
                gs = gs * grad_row_scale[i]
            if scratch != NULL:
                softcap_row(row, c, softcap, scratch)
                row = scratch
            if clip > 0:
                loss = nll_prob_row(row, t + i * c if t != NULL else NULL, c,
                                    labels[i] if t == NULL else 0, opt, clip, gs, g)
            elif t == NULL:
                loss = ce_label_row(row, c, labels[i], opt, gs, g, &lse)
            else:
                loss = ce_prob_row(row, t + i * c, c, opt, gs, g, &lse)
            loss = sw * loss
            if scratch != NULL and g != NULL:
                softcap_grad_row(scratch, c, softcap, g)
            if lse_out != NULL:
                lse_out[i] = <real>lse
        if loss_out != NULL:
            loss_out[i] = <real>loss
        acc += loss
    return acc


cdef double _ce_narrow_unit(const real *x, const real *t, const int64_t *labels, int64_t ignore_index, int64_t u,
                           int64_t n, int64_t c, const fx_ce_options *opt, const double *sample_weight,
                           double grad_scale, const double *grad_row_scale, real *loss_out, real *grad,
                           real *lse_out) noexcept nogil:
    """Cross-entropy against labels or soft targets t (class weights, label
    smoothing, z-loss) of one unit of narrow rows."""
    cdef int64_t first = u * NARROW_UNIT, rows = min(<int64_t>NARROW_UNIT, n - u * NARROW_UNIT)
    return narrow_ce(x + first * c, rows, c, labels + first if labels != NULL else NULL,
                     t + first * c if t != NULL else NULL, ignore_index, opt,
                     sample_weight + first if sample_weight != NULL else NULL, grad_scale,
                     grad_row_scale + first if grad_row_scale != NULL else NULL,
                     loss_out + first if loss_out != NULL else NULL,
                     grad + first * c if grad != NULL else NULL,
                     lse_out + first if lse_out != NULL else NULL)


cdef double _ce_rows_unit(bint narrow, bint plain, int64_t b, int64_t rpb, const real *x, const real *t,
                          const int64_t *labels, int64_t ignore_index, int64_t n, int64_t c, const real *w,
                          const fx_ce_options *opt, const double *sample_weight, double grad_scale,
                          const double *grad_row_scale, double softcap, double clip, real *scratch,
                          real *loss_out, real *grad, real *lse_out) noexcept nogil:
    """Block b of cross_entropy_rows: a unit of narrow rows (no softcap or
    clip; opt's weights, smoothing and z-loss), or rows
    [b * rpb, (b + 1) * rpb) through the row kernels (scratch: one softcap
    row per thread, or NULL); plain (labels, no label smoothing, z-loss,
    softcap or clip): a few rows at a time, with the row kernel's bits."""
    cdef int64_t first = b * rpb
    cdef double total
    if narrow:
        return _ce_narrow_unit(x, t, labels, ignore_index, b, n, c, opt, sample_weight, grad_scale,
                               grad_row_scale, loss_out, grad, lse_out)
    if plain:
        total = ce_label_rows(x + first * c, min(rpb, n - first), c, labels + first, ignore_index, w,
                              sample_weight + first if sample_weight != NULL else NULL, grad_scale,
                              grad_row_scale + first if grad_row_scale != NULL else NULL, opt.flags,
                              loss_out + first if loss_out != NULL else NULL,
                              grad + first * c if grad != NULL else NULL,
                              lse_out + first if lse_out != NULL else NULL)
    else:
        total = _ce_block(x, t, labels, ignore_index, first, min(n, first + rpb), c, opt, sample_weight,
                          grad_scale, grad_row_scale, softcap, clip,
                          scratch + threadid() * c if scratch != NULL else NULL, loss_out, grad, lse_out)
    # The rows' streaming stores are fenced once, here (opt: FX_DEFER_FENCE).
    if opt.flags & FX_STREAM_STORES:
        fx_store_fence()
    return total


def cross_entropy_rows(const real[:, ::1] x, const real[:, ::1] target, const int64_t[::1] labels,
                       int64_t ignore_index, const real[::1] weight, const double[::1] sample_weight,
                       double label_smoothing, double z_loss, double grad_scale,
                       const double[::1] grad_row_scale, real[::1] loss_out, real[:, ::1] grad,
                       real[::1] lse_out, int n_threads, double softcap=0.0, double clip=0.0):
    """Sum over rows of the (weighted) cross-entropy; optional per-row outputs.

    Exactly one of `target` (soft targets, x's shape) and `labels` is given.
    grad may be x itself (in place).  softcap > 0 caps the logits first;
    clip > 0 means x holds probabilities (from_logits=False).  Returns the
    loss sum in double.
    """
    cdef int64_t n = x.shape[0], c = x.shape[1]
    if n == 0:
        return 0.0
    if (_split(n, c, n_threads) and target is None and weight is None and sample_weight is None
            and label_smoothing == 0 and z_loss == 0 and softcap == 0 and clip == 0):
        return split_rows(x, labels, ignore_index, 3, grad_scale, grad_row_scale, loss_out, grad,
                          lse_out, n_threads)
    cdef fx_ce_options opt
    opt.weight = &weight[0] if weight is not None else NULL
    opt.label_smoothing = label_smoothing
    opt.z_loss = z_loss
    # The softcap chain rule re-reads the gradient: no streaming stores then.
    opt.flags = _row_store_flags(n, c, sizeof(real)) if grad is not None and softcap == 0 else 0
    if opt.flags:
        opt.flags |= FX_DEFER_FENCE
    cdef const real *xp = &x[0, 0]
    cdef const real *tp = &target[0, 0] if target is not None else NULL
    cdef const int64_t *lp = &labels[0] if labels is not None else NULL
    cdef const double *swp = &sample_weight[0] if sample_weight is not None else NULL
    cdef const double *grp = &grad_row_scale[0] if grad_row_scale is not None else NULL
    cdef real *lop = &loss_out[0] if loss_out is not None else NULL
    cdef real *gp = &grad[0, 0] if grad is not None else NULL
    cdef real *lsp = &lse_out[0] if lse_out is not None else NULL

    cdef bint plain = (tp == NULL and label_smoothing == 0 and z_loss == 0 and softcap == 0 and clip == 0)
    cdef bint narrow = softcap == 0 and clip == 0 and 0 < c <= FX_NARROW_MAX
    cdef int64_t rpb = _unit_rows(c) if plain or narrow else _rows_per_block(c)
    cdef int64_t nblocks = (n + rpb - 1) // rpb, b
    cdef int nt = _threads(n * c, nblocks, n_threads)
    cdef const real *wp = &weight[0] if weight is not None else NULL
    cdef double *partial = <double *>malloc(nblocks * sizeof(double))
    # One softcap scratch row per thread, indexed by threadid().
    cdef real *scratch = <real *>malloc(nt * max(c, <int64_t>1) * sizeof(real)) if softcap > 0 else NULL
    if partial == NULL or (softcap > 0 and scratch == NULL):
        free(partial)
        free(scratch)
        raise MemoryError()
    cdef double total = 0.0
    try:
        with nogil:
            if nt > 1:
                for b in prange(nblocks, schedule='dynamic', chunksize=_chunk(nblocks, nt), num_threads=nt):
                    partial[b] = _ce_rows_unit(narrow, plain, b, rpb, xp, tp, lp, ignore_index, n, c, wp, &opt,
                                               swp, grad_scale, grp, softcap, clip, scratch, lop, gp, lsp)
            else:
                for b in range(nblocks):
                    partial[b] = _ce_rows_unit(narrow, plain, b, rpb, xp, tp, lp, ignore_index, n, c, wp, &opt,
                                               swp, grad_scale, grp, softcap, clip, scratch, lop, gp, lsp)
            for b in range(nblocks):
                total += partial[b]
    finally:
        free(partial)
        free(scratch)
    return total


# ---------------------------------------------------------------------------
# the class axis strided: arrays viewed as (P, C, Q), positions along Q


cdef inline int64_t _cols_units(int64_t q) noexcept nogil:
    return (q + COLS_UNIT - 1) // COLS_UNIT


cdef void _lse_cols_unit(const real *x, int64_t a, int64_t j0, int64_t c, int64_t q,
                         real *out) noexcept nogil:
    # The buffer lives on this call's stack: one per thread.
    cdef double buf[COLS_UNIT]
    cdef int64_t m = min(<int64_t>COLS_UNIT, q - j0), j
    lse_cols(x + a * c * q + j0, c, m, q, buf)
    for j in range(m):
        out[a * q + j0 + j] = <real>buf[j]


def logsumexp_cols(const real[:, :, ::1] x, real[:, ::1] out, int n_threads):
    cdef int64_t p = x.shape[0], c = x.shape[1], q = x.shape[2]
    cdef int64_t per = _cols_units(q), units = p * per, u
    cdef int nt = _threads(p * c * q, units, n_threads)
    if units == 0:
        return
    cdef const real *xp = &x[0, 0, 0]
    cdef real *op = &out[0, 0]
    with nogil:
        if nt > 1:
            for u in prange(units, schedule='dynamic', chunksize=_chunk(units, nt), num_threads=nt):
                _lse_cols_unit(xp, u // per, (u % per) * COLS_UNIT, c, q, op)
        else:
            for u in range(units):
                _lse_cols_unit(xp, u // per, (u % per) * COLS_UNIT, c, q, op)


cdef void _softmax_cols_unit(const real *x, int64_t a, int64_t j0, int64_t c, int64_t q, real *out,
                             bint log) noexcept nogil:
    cdef int64_t at = a * c * q + j0
    softmax_in_cols(x + at, c, min(<int64_t>COLS_UNIT, q - j0), q, out + at, log)


def softmax_cols(const real[:, :, ::1] x, real[:, :, ::1] out, bint log, int n_threads):
    cdef int64_t p = x.shape[0], c = x.shape[1], q = x.shape[2]
    cdef int64_t per = _cols_units(q), units = p * per, u
    cdef int nt = _threads(p * c * q, units, n_threads)
    if units == 0 or c == 0:
        return
    cdef const real *xp = &x[0, 0, 0]
    cdef real *op = &out[0, 0, 0]
    with nogil:
        if nt > 1:
            for u in prange(units, schedule='dynamic', chunksize=_chunk(units, nt), num_threads=nt):
                _softmax_cols_unit(xp, u // per, (u % per) * COLS_UNIT, c, q, op, log)
        else:
            for u in range(units):
                _softmax_cols_unit(xp, u // per, (u % per) * COLS_UNIT, c, q, op, log)


cdef inline int64_t _cols_phase(const void *grad, int64_t q, int64_t itemsize, int flags) noexcept nogil:
    """Positions before the first cache line of the gradient when its stores
    stream and every class row starts at the same offset in a line; else 0.
    Units then begin on lines, so the streaming stores fill whole lines."""
    cdef int64_t line = 64 // itemsize, addr = <int64_t><uintptr_t>grad
    if grad == NULL or not (flags & FX_STREAM_STORES) or q % line != 0 or addr % itemsize != 0:
        return 0
    return min(((64 - addr % 64) % 64) // itemsize, q)


cdef void _ce_cols_unit(const real *x, const real *t, const int64_t *labels, int64_t ignore_index,
                        int64_t u, int64_t per, int64_t phase, int64_t c, int64_t q, const fx_ce_options *opt,
                        const double *sample_weight, double grad_scale, const double *grad_row_scale,
                        double *pos_loss, real *loss_out, real *grad, real *lse_out) noexcept nogil:
    """Per-position losses of unit u: sample u // per, its (u % per)-th run of
    at most COLS_UNIT positions, the first run cut at `phase` when it is > 0
    (see cross_entropy_cols)."""
    cdef int64_t a = u // per, k = u % per, j0, j1, m, j, pos
    if phase == 0:
        j0 = k * COLS_UNIT
        j1 = min(q, j0 + COLS_UNIT)
    elif k == 0:
        j0 = 0
        j1 = phase
    else:
        j0 = phase + (k - 1) * COLS_UNIT
        j1 = min(q, j0 + COLS_UNIT)
    m = j1 - j0
    cdef int64_t lab[COLS_UNIT]
    cdef double gs[COLS_UNIT]
    cdef double loss[COLS_UNIT]
    cdef double lse[COLS_UNIT]
    cdef double sw
    for j in range(m):
        pos = a * q + j0 + j
        sw = sample_weight[pos] if sample_weight != NULL else 1.0
        gs[j] = grad_scale * sw * (grad_row_scale[pos] if grad_row_scale != NULL else 1.0)
        if labels != NULL:
            lab[j] = -1 if labels[pos] == ignore_index else labels[pos]
    ce_cols(x + a * c * q + j0, t + a * c * q + j0 if t != NULL else NULL,
            lab if labels != NULL else NULL, c, m, q, opt, gs,
            grad + a * c * q + j0 if grad != NULL else NULL, loss, lse)
    for j in range(m):
        pos = a * q + j0 + j
        sw = sample_weight[pos] if sample_weight != NULL else 1.0
        if labels != NULL and lab[j] < 0:
            loss[j] = 0.0
        else:
            loss[j] = sw * loss[j]
        pos_loss[pos] = loss[j]
        if loss_out != NULL:
            loss_out[pos] = <real>loss[j]
        if lse_out != NULL:
            lse_out[pos] = <real>lse[j]


def cross_entropy_cols(const real[:, :, ::1] x, const real[:, :, ::1] target,
                       const int64_t[:, ::1] labels, int64_t ignore_index, const real[::1] weight,
                       const double[:, ::1] sample_weight, double label_smoothing, double z_loss,
                       double grad_scale, const double[:, ::1] grad_row_scale,
                       real[:, ::1] loss_out, real[:, :, ::1] grad, real[:, ::1] lse_out,
                       int n_threads):
    """cross_entropy_rows for arrays viewed as (P, C, Q), the class axis in the middle."""
    cdef int64_t p = x.shape[0], c = x.shape[1], q = x.shape[2]
    cdef int64_t per = _cols_units(q), units = p * per, u
    if units == 0:
        return 0.0
    cdef fx_ce_options opt
    opt.weight = &weight[0] if weight is not None else NULL
    opt.label_smoothing = label_smoothing
    opt.z_loss = z_loss
    opt.flags = _store_flags(p * c * q * <int64_t>sizeof(real)) if grad is not None else 0
    cdef const real *xp = &x[0, 0, 0]
    cdef const real *tp = &target[0, 0, 0] if target is not None else NULL
    cdef const int64_t *lp = &labels[0, 0] if labels is not None else NULL
    cdef const double *swp = &sample_weight[0, 0] if sample_weight is not None else NULL
    cdef const double *grp = &grad_row_scale[0, 0] if grad_row_scale is not None else NULL
    cdef real *lop = &loss_out[0, 0] if loss_out is not None else NULL
    cdef real *gp = &grad[0, 0, 0] if grad is not None else NULL
    cdef real *lsp = &lse_out[0, 0] if lse_out is not None else NULL
    # Units of COLS_UNIT positions, shifted by the gradient's phase so that
    # they begin on cache lines; the loss is summed afterwards in blocks of
    # COLS_UNIT from each sample's first position, whatever the units were.
    cdef int64_t phase = _cols_phase(gp, q, sizeof(real), opt.flags)
    cdef int64_t per_shifted = (1 + _cols_units(q - phase)) if phase > 0 else per
    units = p * per_shifted
    cdef int nt = _threads(p * c * q, units, n_threads)
    cdef double *pos_loss = <double *>malloc(max(p * q, <int64_t>1) * sizeof(double))
    if pos_loss == NULL:
        raise MemoryError()
    cdef double total = 0.0, block
    cdef int64_t k, a, pos
    try:
        with nogil:
            if nt > 1:
                for u in prange(units, schedule='dynamic', chunksize=_chunk(units, nt), num_threads=nt):
                    _ce_cols_unit(xp, tp, lp, ignore_index, u, per_shifted, phase, c, q, &opt, swp, grad_scale,
                                  grp, pos_loss, lop, gp, lsp)
            else:
                for u in range(units):
                    _ce_cols_unit(xp, tp, lp, ignore_index, u, per_shifted, phase, c, q, &opt, swp, grad_scale,
                                  grp, pos_loss, lop, gp, lsp)
            for a in range(p):
                for k in range(per):
                    block = 0.0
                    for pos in range(a * q + k * COLS_UNIT, a * q + min(q, (k + 1) * COLS_UNIT)):
                        block += pos_loss[pos]
                    total += block
    finally:
        free(pos_loss)
    return total


# ---------------------------------------------------------------------------
# entropy, KL divergence, binary cross-entropy


ctypedef fused result_t:
    float
    double


cdef void _info_unit(const real *p, const real *q, int64_t u, int64_t per, int64_t n, int64_t c, double div,
                     result_t *out) noexcept nogil:
    """Rows [u * per, (u + 1) * per) of the n rows: entropy (q NULL) or KL
    divergence over div, SIMD across rows when they are narrow, else one row
    at a time.  The kernels give double; each value is divided and rounded
    once, into out."""
    cdef int64_t first = u * per, rows = min(per, n - u * per), i
    cdef double buf[NARROW_UNIT]
    if 0 < c <= FX_NARROW_MAX:
        if q == NULL:
            narrow_entropy(p + first * c, rows, c, buf)
        else:
            narrow_kl(p + first * c, q + first * c, rows, c, buf)
        for i in range(rows):
            out[first + i] = <result_t>(buf[i] / div)
    elif q == NULL:
        for i in range(first, first + rows):
            out[i] = <result_t>(entropy_row(p + i * c, c) / div)
    else:
        for i in range(first, first + rows):
            out[i] = <result_t>(kl_row(p + i * c, q + i * c, c) / div)


def information_rows(const real[:, ::1] p, const real[:, ::1] q, result_t[::1] out, double div, int n_threads):
    """Entropy of each row of p (q None) or KL divergence D(p || q), in nats
    over div, rounded once into out."""
    cdef int64_t n = p.shape[0], c = p.shape[1], u
    if n == 0:
        return
    cdef int64_t per = _unit_rows(c)
    cdef int64_t units = (n + per - 1) // per
    cdef int nt = _threads(n * c, units, n_threads)
    cdef const real *pp = &p[0, 0]
    cdef const real *qp = &q[0, 0] if q is not None else NULL
    cdef result_t *op = &out[0]
    with nogil:
        if nt > 1:
            for u in prange(units, schedule='dynamic', chunksize=_chunk(units, nt), num_threads=nt):
                _info_unit(pp, qp, u, per, n, c, div, op)
        else:
            for u in range(units):
                _info_unit(pp, qp, u, per, n, c, div, op)


cdef double _bce_block(const real *x, const real *t, const real *w, const real *pw, int64_t b,
                       int64_t rpb, int64_t n, int64_t c, double eps, int from_logits, double gs,
                       const real *go, real *loss, real *grad, int64_t *outside) noexcept nogil:
    """Loss sum of block b: rows [b * rpb, (b + 1) * rpb) of the n rows of
    length c (pos_weight cycles per row); outside (or NULL): its values
    outside [0, 1] (fx_bce)."""
    cdef int64_t first = b * rpb, last = min(n, first + rpb), i, o, row_outside = 0
    cdef double acc = 0.0
    if pw == NULL:
        o = first * c
        return bce(x + o, t + o, (last - first) * c, w + o if w != NULL else NULL, NULL, eps,
                   from_logits, gs, go + o if go != NULL else NULL,
                   loss + o if loss != NULL else NULL, grad + o if grad != NULL else NULL, outside)
    if outside != NULL:
        outside[0] = 0
    for i in range(first, last):
        o = i * c
        acc += bce(x + o, t + o, c, w + o if w != NULL else NULL, pw, eps, from_logits, gs,
                   go + o if go != NULL else NULL, loss + o if loss != NULL else NULL,
                   grad + o if grad != NULL else NULL, &row_outside if outside != NULL else NULL)
        if outside != NULL:
            outside[0] += row_outside
    return acc


def bce_rows(const real[:, ::1] x, const real[:, ::1] target, const real[:, ::1] weight,
             const real[::1] pos_weight, double label_smoothing, bint from_logits, double grad_scale,
             const real[:, ::1] grad_output, real[:, ::1] loss_out, real[:, ::1] grad, int n_threads,
             bint count_outside=False):
    """Sum of the element-wise binary cross-entropy of x viewed as (rows, C),
    and (count_outside) how many targets, and from probabilities values of
    x, lie outside [0, 1] or are NaN, counted in the same pass (else 0)."""
    cdef int64_t n = x.shape[0], c = x.shape[1]
    if n == 0 or c == 0:
        return 0.0, 0
    cdef const real *xp = &x[0, 0]
    cdef const real *tp = &target[0, 0]
    cdef const real *wp = &weight[0, 0] if weight is not None else NULL
    cdef const real *pwp = &pos_weight[0] if pos_weight is not None else NULL
    cdef const real *gop = &grad_output[0, 0] if grad_output is not None else NULL
    cdef real *lop = &loss_out[0, 0] if loss_out is not None else NULL
    cdef real *gp = &grad[0, 0] if grad is not None else NULL
    cdef int64_t rpb = _rows_per_block(c)
    cdef int64_t nblocks = (n + rpb - 1) // rpb, b
    cdef int nt = _threads(n * c, nblocks, n_threads)
    cdef int logits = from_logits
    cdef double *partial = <double *>malloc(nblocks * sizeof(double))
    cdef int64_t *outside = <int64_t *>malloc(nblocks * sizeof(int64_t)) if count_outside else NULL
    if partial == NULL or (count_outside and outside == NULL):
        free(partial)
        free(outside)
        raise MemoryError()
    cdef double total = 0.0
    cdef int64_t n_outside = 0
    try:
        with nogil:
            if nt > 1:
                for b in prange(nblocks, schedule='dynamic', chunksize=_chunk(nblocks, nt), num_threads=nt):
                    partial[b] = _bce_block(xp, tp, wp, pwp, b, rpb, n, c, label_smoothing, logits, grad_scale,
                                            gop, lop, gp, outside + b if outside != NULL else NULL)
            else:
                for b in range(nblocks):
                    partial[b] = _bce_block(xp, tp, wp, pwp, b, rpb, n, c, label_smoothing, logits, grad_scale,
                                            gop, lop, gp, outside + b if outside != NULL else NULL)
            for b in range(nblocks):
                total += partial[b]
                if outside != NULL:
                    n_outside += outside[b]
    finally:
        free(partial)
        free(outside)
    return total, n_outside


# ---------------------------------------------------------------------------
# the small-call fast path


cdef int64_t _small_live(const int64_t *labels, int64_t n, int64_t c, int64_t ignore_index) noexcept nogil:
    """Labels that are not ignore_index, or -1 when one lies outside [0, c)."""
    cdef int64_t i, y, live = 0
    for i in range(n):
        y = labels[i]
        if y == ignore_index:
            continue
        if y < 0 or y >= c:
            return -1
        live += 1
    return live


cdef double _ce_small_rows(const real *x, const real *t, const int64_t *labels, int64_t n, int64_t c,
                           int64_t ignore_index, const real *w, const double *sw, double label_smoothing,
                           double z_loss, double gs, real *loss_out, real *grad, bint narrow, int64_t rpb,
                           int64_t units, int n_threads) noexcept nogil:
    """Loss sum (and the per-row losses and gradient, when loss_out and grad
    are given) of a small batch: the kernels, blocks and summation order of
    cross_entropy_rows, so the bits are the same as the general path's."""
    cdef fx_ce_options opt
    opt.weight = w
    opt.label_smoothing = label_smoothing
    opt.z_loss = z_loss
    opt.flags = 0
    cdef bint plain = t == NULL and label_smoothing == 0 and z_loss == 0
    cdef double partial[SMALL_UNITS]
    cdef double total = 0.0
    cdef int64_t b
    cdef int nt = _threads(n * c, units, n_threads)
    if nt > 1:
        for b in prange(units, schedule='dynamic', chunksize=_chunk(units, nt), num_threads=nt):
            partial[b] = _ce_rows_unit(narrow, plain, b, rpb, x, t, labels, ignore_index, n, c, w, &opt,
                                       sw, gs, NULL, 0.0, 0.0, NULL, loss_out, grad, NULL)
    else:
        for b in range(units):
            partial[b] = _ce_rows_unit(narrow, plain, b, rpb, x, t, labels, ignore_index, n, c, w, &opt,
                                       sw, gs, NULL, 0.0, 0.0, NULL, loss_out, grad, NULL)
    for b in range(units):
        total += partial[b]
    return total


cdef inline bint _aligned(const void *p, size_t size) noexcept nogil:
    """Whether p may be read as an array of size-byte elements: a view at
    an odd address (a raw buffer's bytes from an odd offset) may not; the
    general path copies such inputs and rejects such outputs."""
    return (<uintptr_t>p) % size == 0


cdef int _small_weights(weight_arg, int64_t c, double *w64) except -1:
    """The class weights of a small call into w64 (c doubles): 1 when they
    are a float64 or float32 ndarray of c finite non-negative values, else
    0 (the general path converts, or reports)."""
    cdef const double[::1] wd
    cdef const float[::1] wf
    cdef int64_t i
    cdef int size = _float_size(weight_arg.dtype)
    if size == 0:
        return 0
    cdef bint double_ = size == 8
    try:
        if double_:
            wd = weight_arg
        else:
            wf = weight_arg
    except (ValueError, TypeError):
        return 0
    if (wd.shape[0] if double_ else wf.shape[0]) != c:
        return 0
    if not (_aligned(&wd[0], 8) if double_ else _aligned(&wf[0], 4)):
        return 0
    for i in range(c):
        w64[i] = wd[i] if double_ else wf[i]
        if not (0.0 <= w64[i] <= DBL_MAX):  # NaN fails both
            return 0
    return 1


cdef object _small_call(const real[:, ::1] x, const real[:, ::1] t, const int64_t[::1] lab, int64_t ignore_index,
                        bint mean, bint empty_nan, weight_arg, sample_weight_arg, double label_smoothing,
                        double z_loss, double grad_output, grad_arg, loss_arg, int n_threads):
    cdef real[:, ::1] grad_view = None
    cdef real[::1] loss_view = None
    cdef const double[::1] sw_view = None
    cdef int64_t n = x.shape[0], c = x.shape[1], live, i
    cdef double total, denom, top, ws = 1.0
    if n == 0 or c == 0:
        return None
    if (t.shape[0] != n or t.shape[1] != c) if t is not None else lab.shape[0] != n:
        return None
    try:
        if grad_arg is not None:
            grad_view = grad_arg
        if loss_arg is not None:
            loss_view = loss_arg
    except (ValueError, TypeError):
        return None
    if grad_view is not None and (grad_view.shape[0] != n or grad_view.shape[1] != c):
        return None
    if loss_view is not None and loss_view.shape[0] != n:
        return None
    # Sample weights: float64, one a row, finite and non-negative (else the
    # general path converts or reports).
    if sample_weight_arg is not None:
        if _float_size(sample_weight_arg.dtype) != 8:
            return None
        try:
            sw_view = sample_weight_arg
        except (ValueError, TypeError):
            return None
        if sw_view.shape[0] != n or not _aligned(&sw_view[0], 8):
            return None
        for i in range(n):
            if not (0.0 <= sw_view[i] <= DBL_MAX):
                return None
    cdef const double *sw = &sw_view[0] if sw_view is not None else NULL
    cdef real *grad = &grad_view[0, 0] if grad_view is not None else NULL
    cdef real *loss_out = &loss_view[0] if loss_view is not None else NULL
    cdef const real *tp = &t[0, 0] if t is not None else NULL
    cdef const int64_t *lp = &lab[0] if t is None else NULL
    if not (_aligned(&x[0, 0], sizeof(real)) and _aligned(tp, sizeof(real)) and _aligned(lp, 8)
            and _aligned(grad, sizeof(real)) and _aligned(loss_out, sizeof(real))):
        return None
    cdef bint narrow = c <= FX_NARROW_MAX
    cdef int64_t rpb = _unit_rows(c)
    cdef int64_t units = (n + rpb - 1) // rpb
    if units > SMALL_UNITS:
        return None
    # Every soft-target row counts.
    live = _small_live(lp, n, c, ignore_index) if lp != NULL else n
    if live < 0:
        return None
    # Class weights as the general path takes them (_losses._prepare): in
    # double, divided by their maximum ws, in x's dtype for the kernels,
    # which get z_loss / ws and the gradient scale times ws; the loss sums
    # are multiplied back by ws.  'mean' divides by the live rows' weight
    # w_y sw_i, compensated (soft targets: by the rows, as PyTorch does, or
    # NumPy's sum of the sample weights, as the general path).
    cdef double *w64 = NULL
    cdef real *w = NULL
    if weight_arg is not None:
        w64 = <double *>malloc(c * (sizeof(double) + sizeof(real)))
        if w64 == NULL:
            raise MemoryError()
    try:
        if w64 != NULL:
            if not _small_weights(weight_arg, c, w64):
                return None
            w = <real *>(w64 + c)
            top = 0.0
            for i in range(c):
                top = max(top, w64[i])
            ws = top if top > 0 else 1.0
            for i in range(c):
                w[i] = <real>(w64[i] / ws)
        if lp != NULL and (w64 != NULL or sw != NULL):
            denom = _live_weight_sum(lp, n, ignore_index, w64, sw)
        elif lp == NULL and sw != NULL and mean:
            # Only for 'mean', as the general path: a sum past DBL_MAX warns.
            denom = float(sample_weight_arg.sum())
        else:
            denom = live
        if mean and denom == 0:
            # Nothing counts: the gradient's scale (NaN or 0, empty=) is the
            # general path's business.
            if grad != NULL:
                return None
            return NAN if empty_nan else 0.0
        with nogil:
            total = _ce_small_rows(&x[0, 0], tp, lp, n, c, ignore_index, w, sw, label_smoothing, z_loss / ws,
                                   (grad_output / denom if mean else grad_output) * ws, loss_out, grad, narrow,
                                   rpb, units, n_threads)
            if loss_out != NULL and ws != 1.0:
                for i in range(n):  # in double, as _losses._run
                    loss_out[i] = <real>(loss_out[i] * ws)
    finally:
        free(w64)
    total *= ws
    return total / denom if mean else total


def cross_entropy_small(x, target, int64_t ignore_index, bint mean, bint empty_nan, weight=None,
                        sample_weight=None, double label_smoothing=0.0, double z_loss=0.0, double grad_output=1.0,
                        grad=None, loss_out=None, int n_threads=1):
    """Cross-entropy (class and sample weights, ndarrays or None; label
    smoothing and z-loss, validated by the caller) of a small C-contiguous
    (N, C) float32 or float64 ndarray against integer labels (but uint64)
    or probability targets of x's shape and dtype (C-contiguous); with grad
    (x's shape and dtype, C-contiguous, not overlapping x: the caller
    checks) its gradient times grad_output, and with loss_out (N, x's
    dtype) the per-row losses.

    The whole call stays in C: no other option handling, and a parallel
    region only from SERIAL_WORK elements (n_threads: validated by the caller).
    Returns the loss sum (mean: the mean), or None when the input is not of
    that kind (a bad label or weight included, or the gradient of a 'mean'
    where no row counts), and the caller takes the general path, which
    validates and reports.
    """
    cdef const float[:, ::1] xf, tf = None
    cdef const double[:, ::1] xd, td = None
    cdef const int64_t[::1] lab = None
    # The dtype picks the memoryview to try: a failed one raises, which
    # cost a float64 call ~0.5 us.
    dtype = x.dtype
    cdef int size = _float_size(dtype)
    if size == 0:
        return None
    single = size == 4
    tdtype = target.dtype
    soft = False
    if tdtype is not _I64:
        soft = tdtype is dtype or tdtype == dtype
        if not soft:
            # Labels of another integer dtype as int64, as the general path
            # takes them (uint64 could wrap onto ignore_index: the general
            # path).
            kind = tdtype.kind
            if not (kind == "i" or (kind == "u" and tdtype.itemsize < 8)):
                return None
            if target.ndim != 1 or target.shape[0] != x.shape[0]:
                return None  # not copied: the general path reports
            target = target.astype(_I64)
    try:
        if single:
            xf = x
            if soft:
                tf = target
        else:
            xd = x
            if soft:
                td = target
        if not soft:
            lab = target
    except (ValueError, TypeError):
        return None
    if single:
        return _small_call(xf, tf, lab, ignore_index, mean, empty_nan, weight, sample_weight, label_smoothing,
                           z_loss, grad_output, grad, loss_out, n_threads)
    return _small_call(xd, td, lab, ignore_index, mean, empty_nan, weight, sample_weight, label_smoothing, z_loss,
                       grad_output, grad, loss_out, n_threads)


# ---------------------------------------------------------------------------
# rows split across threads


cdef inline double _shift(double m) noexcept nogil:
    return m if m - m == 0 else 0.0


cdef void _scan_slice(const real *x, int64_t u, int64_t per, int64_t c, double *ms) noexcept nogil:
    """(max, sum of exp(x - max)) of slice u % per of row u // per into ms[2u], ms[2u + 1]."""
    cdef int64_t k = (u % per) * FX_SLICE
    lse_scan_row(x + (u // per) * c + k, min(<int64_t>FX_SLICE, c - k), &ms[2 * u], &ms[2 * u + 1])


cdef void _write_slice(const real *x, int64_t u, int64_t per, int64_t c, bint take_log, const double *kr,
                       int flags, real *out) noexcept nogil:
    """The write pass over slice u % per of row u // per, with the row's shift and factor from kr."""
    cdef int64_t i = u // per, k = (u % per) * FX_SLICE
    write_row(x + i * c + k, min(<int64_t>FX_SLICE, c - k), take_log, kr[3 * i], kr[3 * i + 1], flags,
              out + i * c + k)


def split_rows(const real[:, ::1] x, const int64_t[::1] labels, int64_t ignore_index, int mode,
               double grad_scale, const double[::1] grad_row_scale, real[::1] row_out,
               real[:, ::1] out, real[::1] lse_out, int n_threads):
    """logsumexp (mode 0), softmax (1), log-softmax (2) or plain cross-entropy
    (3, labels; out is the gradient when given) of rows cut into slices (_split).

    Slices of every row are scanned in parallel, merged per row in slice
    order, then written in parallel.  row_out receives the per-row lse (0-2)
    or loss (3).  Returns the loss sum (mode 3).
    """
    cdef int64_t n = x.shape[0], c = x.shape[1]
    cdef int64_t per = (c + FX_SLICE - 1) // FX_SLICE, units = n * per, u, i, k, y
    cdef int nt = _threads(n * c, units, n_threads)
    cdef const real *xp = &x[0, 0]
    cdef real *op = &out[0, 0] if out is not None else NULL
    cdef int flags = _row_store_flags(n, c, sizeof(real))
    if c <= FX_BLOCK_SHIFTS_MAX:
        flags |= FX_BLOCK_SHIFTS  # the row kernels' bits (fastxent.h)
    cdef double *ms = <double *>malloc(2 * units * sizeof(double))
    cdef double *kr = <double *>malloc(3 * n * sizeof(double))
    if ms == NULL or kr == NULL:
        free(ms)
        free(kr)
        raise MemoryError()
    cdef double m, s, lse, loss, total = 0.0, gs
    try:
        with nogil:
            if nt > 1:
                for u in prange(units, schedule='dynamic', chunksize=_chunk(units, nt), num_threads=nt):
                    _scan_slice(xp, u, per, c, ms)
            else:
                for u in range(units):
                    _scan_slice(xp, u, per, c, ms)
            for i in range(n):
                m = ms[2 * i * per]
                s = ms[2 * i * per + 1]
                for k in range(1, per):
                    fx_lse_merge(&m, &s, ms[2 * (i * per + k)], ms[2 * (i * per + k) + 1])
                lse = _shift(m) + log(s)
                kr[3 * i] = _shift(m)
                if mode == 0:
                    row_out[i] = <real>lse
                    continue
                if mode == 1:
                    kr[3 * i + 1] = 1.0 / s if lse - lse == 0 else NAN
                elif mode == 2:
                    kr[3 * i + 1] = log(s) if lse - lse == 0 else NAN
                else:
                    if lse_out is not None:
                        lse_out[i] = <real>lse
                    y = labels[i]
                    if y == ignore_index:
                        loss = 0.0
                        kr[3 * i + 1] = 0.0
                    else:
                        loss = lse - xp[i * c + y] if lse - lse == 0 else NAN
                        gs = grad_scale * (grad_row_scale[i] if grad_row_scale is not None else 1.0)
                        kr[3 * i + 1] = gs / s if lse - lse == 0 else NAN
                        # The label's gradient as the row kernel computes it
                        # (fx_ce_row), for its bits; from x now, before an
                        # in-place write pass overwrites it.
                        kr[3 * i + 2] = <real>(exp(<double>xp[i * c + y] - kr[3 * i])
                                               * <double>(<real>kr[3 * i + 1]) - gs)
                    if row_out is not None:
                        row_out[i] = <real>loss
                    total += loss
            if op != NULL and nt > 1:
                for u in prange(units, schedule='dynamic', chunksize=_chunk(units, nt), num_threads=nt):
                    _write_slice(xp, u, per, c, mode == 2, kr, flags, op)
            elif op != NULL:
                for u in range(units):
                    _write_slice(xp, u, per, c, mode == 2, kr, flags, op)
            if op != NULL and mode == 3:
                for i in range(n):
                    y = labels[i]
                    if y == ignore_index:
                        memset(op + i * c, 0, c * sizeof(real))
                    elif kr[3 * i + 1] == kr[3 * i + 1]:
                        op[i * c + y] = <real>kr[3 * i + 2]
    finally:
        free(ms)
        free(kr)
    return total


# C-API exports (declared in _core.pxd): the row kernels for other Cython
# extensions, reachable through __pyx_capi__ without linking fx_kernels.c.


cdef double capi_logsumexp_row_f32(const float *x, int64_t n) noexcept nogil:
    return fx_logsumexp_row_f32(x, n)


cdef double capi_logsumexp_row_f64(const double *x, int64_t n) noexcept nogil:
    return fx_logsumexp_row_f64(x, n)


cdef double capi_softmax_row_f32(const float *x, int64_t n, float *out, int flags) noexcept nogil:
    return fx_softmax_row_f32(x, n, out, flags)


cdef double capi_softmax_row_f64(const double *x, int64_t n, double *out, int flags) noexcept nogil:
    return fx_softmax_row_f64(x, n, out, flags)


cdef double capi_log_softmax_row_f32(const float *x, int64_t n, float *out, int flags) noexcept nogil:
    return fx_log_softmax_row_f32(x, n, out, flags)


cdef double capi_log_softmax_row_f64(const double *x, int64_t n, double *out, int flags) noexcept nogil:
    return fx_log_softmax_row_f64(x, n, out, flags)


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
