"""log-sum-exp, softmax and log-softmax along one axis."""
import numpy as np

from fastxent import _buffers, _core
from fastxent import _validation as v


_SMALL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _small(x, axis, out, n_threads, mode):
    """A small plain call (a C-contiguous float32/float64 (N, C) ndarray of
    fewer than SERIAL_WORK elements, class axis last; out= None, x itself
    or a disjoint C-contiguous array of the result's shape and dtype)
    computed in C without the general path's checks and conversions, the
    fixed cost a user sees (64x10 float32: logsumexp 2.9 -> 1.4 us,
    softmax 3.1 -> 1.6 us); None for any other call, which the general
    path validates."""
    if not (type(x) is np.ndarray and x.ndim == 2 and type(axis) is int and (axis == -1 or axis == 1)
            and 0 < x.size < _core.SERIAL and x.dtype in _SMALL_DTYPES and x.flags.c_contiguous
            and (n_threads is None or (type(n_threads) is int and n_threads > 0))):
        return None
    shape = x.shape[:1] if mode == 0 else x.shape
    if out is None:
        out = np.empty(shape, x.dtype)
    elif not (type(out) is np.ndarray and out.dtype == x.dtype and out.shape == shape
              and out.flags.c_contiguous and out.flags.writeable
              and (out is x or not np.may_share_memory(out, x))):
        return None
    return out if _core.rows_small(x, out, mode) else None


def _prepare(x, axis, n_threads):
    arr, compute = v.float_array("x", x)
    if arr.ndim == 0:
        raise ValueError("x must have at least 1 dimension (the class axis), got a 0-d array")
    axis = v.normalize_axis(axis, arr.ndim)
    return arr, compute, axis, v.n_threads(n_threads)


def logsumexp(x, axis=-1, *, out=None, n_threads=None):
    """Log of the sum of exponentials along `axis`, without overflow.

    ``logsumexp(x)[i] = log(sum_c exp(x[i, c]))``, computed as
    ``m + log(sum_c exp(x[i, c] - m))`` with ``m`` the row maximum, in one
    pass over memory.

    Parameters
    ----------
    x : array_like, float32 or float64 (float16/bfloat16 computed in float32)
    axis : int, default -1
        The axis reduced over.  Any axis runs without a transposed copy.
    out : ndarray, optional
        C-contiguous (and aligned) array of ``x``'s shape without `axis` and
        ``x``'s dtype.
    n_threads : int, optional
        None or -1: all threads the process may use (OMP_NUM_THREADS,
        threadpoolctl); a positive number of threads.  Results do not depend
        on it.

    Returns
    -------
    ndarray of ``x``'s dtype.  ``-inf`` entries are masked classes; a row of
    only ``-inf`` gives ``-inf``, a row holding ``+inf`` gives ``+inf`` and a
    row holding NaN gives NaN (as ``scipy.special.logsumexp``).
    """
    result = _small(x, axis, out, n_threads, 0)
    if result is not None:
        return result
    arr, compute, axis, nt = _prepare(x, axis, n_threads)
    shape = arr.shape[:axis] + arr.shape[axis + 1:]
    if out is not None:
        v.out_array(out, shape, arr.dtype)
        v.no_partial_overlap(out, arr)
    view = v.class_view(arr, axis, compute)
    direct = out is not None and compute == arr.dtype
    result = out if direct else _buffers.empty(shape, compute)
    if view.ndim == 2:
        _core.logsumexp_rows(view, result.reshape(-1), nt)
    else:
        _core.logsumexp_cols(view, result.reshape(view.shape[0], view.shape[2]), nt)
    if direct:
        return out
    if out is not None:
        return v.copy_result(out, result)
    return v.cast_result(result, arr.dtype)


def _softmax_like(x, axis, out, n_threads, log):
    result = _small(x, axis, out, n_threads, 2 if log else 1)
    if result is not None:
        return result
    arr, compute, axis, nt = _prepare(x, axis, n_threads)
    if out is not None:
        v.out_array(out, arr.shape, arr.dtype)
        v.no_partial_overlap(out, arr)
    view = v.class_view(arr, axis, compute)
    direct = out is not None and compute == arr.dtype
    result = out if direct else _buffers.empty(arr.shape, compute)
    if view.ndim == 2:
        _core.softmax_rows(view, result.reshape(view.shape), log, nt)
    else:
        _core.softmax_cols(view, result.reshape(view.shape), log, nt)
    if direct:
        return out
    if out is not None:
        return v.copy_result(out, result)
    return v.cast_result(result, arr.dtype)


def softmax(x, axis=-1, *, out=None, n_threads=None):
    """Softmax along `axis`: ``exp(x - logsumexp(x))``.

    Parameters are those of :func:`logsumexp`; `out` has ``x``'s shape and
    may be ``x`` itself.  ``-inf`` entries get probability 0.  A row whose
    log-sum-exp is not finite (NaN, ``+inf``, or only ``-inf``) is NaN
    throughout, as in PyTorch.
    """
    return _softmax_like(x, axis, out, n_threads, log=False)


def log_softmax(x, axis=-1, *, out=None, n_threads=None):
    """Log-softmax along `axis`: ``x - logsumexp(x)``.

    Parameters are those of :func:`logsumexp`; `out` has ``x``'s shape and
    may be ``x`` itself.  ``-inf`` entries stay ``-inf``.  A row whose
    log-sum-exp is not finite is NaN throughout, as in PyTorch.
    """
    return _softmax_like(x, axis, out, n_threads, log=True)
