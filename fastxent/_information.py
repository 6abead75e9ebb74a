"""Entropy and Kullback-Leibler divergence of distributions along an axis."""
import numpy as np

from fastxent import _core
from fastxent import _validation as v


def _base_divisor(base):
    if base is None:
        return 1.0
    base = v.real_scalar("base", base, 0.0, low_open=True)
    if base == 1.0:
        raise ValueError("base must be positive and not 1, got 1.0")
    return float(np.log(base))


def _result_rows(n, result, compute):
    """The kernels' output: the result dtype when they compute in it, else
    float64 (then cast once, as NumPy rounds: float16 from double)."""
    return np.empty(n, result if result == compute else np.float64)


def _rows(name, p, axis):
    arr, compute = v.float_array(name, p)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least 1 dimension, got a 0-d array")
    axis = v.normalize_axis(axis, arr.ndim)
    return arr, compute, axis


def entropy(p, axis=-1, *, base=None, n_threads=None):
    r"""Shannon entropy of the distributions along `axis`.

    :math:`H(p) = -\sum_c \hat p_c \log \hat p_c` with :math:`\hat p = p / \sum_c p_c`
    (so counts work, as in ``scipy.stats.entropy``) and :math:`0 \log 0 = 0`.

    Parameters
    ----------
    p : array_like, float32 or float64, non-negative
    axis : int, default -1
    base : float, optional
        None: nats; 2: bits; any other positive base except 1.
    n_threads : int, optional

    Returns
    -------
    ndarray of p's shape without `axis`, in p's dtype.  Negative entries give
    NaN; a row of zeros gives NaN.
    """
    div = _base_divisor(base)
    arr, compute, axis = _rows("p", p, axis)
    rows = v.class_view(arr, axis, compute, rows=True)
    out = _result_rows(rows.shape[0], arr.dtype, compute)
    _core.information_rows(rows, None, out, div, v.n_threads(n_threads))
    return v.cast_result(out.reshape(arr.shape[:axis] + arr.shape[axis + 1:]), arr.dtype)


def kl_divergence(p, q, axis=-1, *, base=None, n_threads=None):
    r"""Kullback-Leibler divergence :math:`D(p \| q)` along `axis`.

    :math:`\sum_c \hat p_c \log(\hat p_c / \hat q_c)` with p and q normalised
    to sum 1 along `axis` (``scipy.stats.entropy(p, q)``); terms with
    :math:`p_c = 0` are 0, and :math:`p_c > 0 = q_c` gives ``inf``.

    Parameters
    ----------
    p, q : array_like of the same shape, float32 or float64, non-negative
    axis : int, default -1
    base : float, optional -- None: nats; 2: bits.
    n_threads : int, optional

    Returns
    -------
    ndarray of p's shape without `axis`, in the dtype of p and q combined.
    """
    div = _base_divisor(base)
    p_arr, p_compute, axis = _rows("p", p, axis)
    q_arr, q_compute = v.float_array("q", q)
    if q_arr.shape != p_arr.shape:
        raise ValueError(f"q must have p's shape {p_arr.shape}, got {q_arr.shape}")
    compute = np.promote_types(p_compute, q_compute)
    p_rows = v.class_view(p_arr, axis, compute, rows=True)
    q_rows = v.class_view(q_arr, axis, compute, rows=True)
    result = np.promote_types(p_arr.dtype, q_arr.dtype)
    out = _result_rows(p_rows.shape[0], result, compute)
    _core.information_rows(p_rows, q_rows, out, div, v.n_threads(n_threads))
    return v.cast_result(out.reshape(p_arr.shape[:axis] + p_arr.shape[axis + 1:]), result)
