"""Binary (multi-label) cross-entropy, element-wise, fused with its gradient."""
import math

import numpy as np

from fastxent import _buffers, _core
from fastxent import _validation as v


def _prepare(x, target, weight, pos_weight, reduction, label_smoothing, from_logits, n_threads):
    arr, compute = v.float_array("x", x)
    tgt = v.aligned(np.asarray(target))
    if tgt.dtype.kind not in "fiub" and tgt.dtype.name != "bfloat16":
        raise TypeError(f"target must be a real array of 0/1 labels or probabilities, got dtype {tgt.dtype}")
    if tgt.shape != arr.shape:
        raise ValueError(f"target must have the shape of x {arr.shape}, got {tgt.shape}")
    reduction = v.reduction(reduction)
    eps = v.real_scalar("label_smoothing", label_smoothing, 0.0, 1.0)
    from_logits = v.boolean("from_logits", from_logits)
    nt = v.n_threads(n_threads)
    n_last = arr.shape[-1] if arr.ndim else 1
    n_rows = math.prod(arr.shape[:-1])
    rows = np.ascontiguousarray(arr, dtype=compute).reshape(n_rows, n_last)
    t_rows = np.ascontiguousarray(tgt, dtype=compute).reshape(rows.shape)
    w_rows = None
    if weight is not None:
        w = v.aligned(np.asarray(weight))
        if w.dtype.kind not in "fiu":
            raise TypeError(f"weight must be a real array, got dtype {w.dtype}")
        try:
            w = np.broadcast_to(w, arr.shape)
        except ValueError:
            raise ValueError(f"weight of shape {w.shape} does not broadcast to x's shape {arr.shape}") from None
        w_rows = v.weights_array("weight", w, arr.shape, compute).reshape(rows.shape)
    pw = None
    if pos_weight is not None:
        if not from_logits:
            raise ValueError("pos_weight needs from_logits=True (as in PyTorch)")
        pw = v.aligned(np.asarray(pos_weight))
        if pw.dtype.kind not in "fiu":
            raise TypeError(f"pos_weight must be a real array, got dtype {pw.dtype}")
        if pw.ndim > 1 or pw.size not in (1, n_last):
            raise ValueError(f"pos_weight must be a scalar or have shape ({n_last},) (x's last axis), "
                             f"got shape {pw.shape}")
        pw = v.weights_array("pos_weight", np.broadcast_to(pw, (n_last,)), (n_last,), compute)
    return arr, tgt, compute, rows, t_rows, w_rows, pw, reduction, eps, from_logits, nt


def _check_unit_interval(arr, tgt, rows, t_rows, from_logits, nt, counted=None):
    """Rejects targets (and, from probabilities, x) outside [0, 1] or NaN.

    counted: how many the kernel found in its pass (bce_rows), or None to
    count them here (one parallel pass each, before a gradient is written
    into the caller's memory).  The mask that finds the first bad value
    (four temporaries of x's size) is built only on failure.
    """
    if counted == 0:
        return
    if counted is not None or _core.count_outside(t_rows.reshape(-1), 1.0, nt):
        v.reject_where("target", tgt, ~((t_rows >= 0) & (t_rows <= 1)).reshape(tgt.shape),
                       "values in [0, 1] (labels or probabilities)")
    if not from_logits and (counted is not None or _core.count_outside(rows.reshape(-1), 1.0, nt)):
        v.reject_where("x", arr, ~((rows >= 0) & (rows <= 1)).reshape(arr.shape),
                       "probabilities in [0, 1] with from_logits=False")


def binary_cross_entropy(x, target, *, weight=None, pos_weight=None, reduction="mean",
                         label_smoothing=0.0, from_logits=True, n_threads=None):
    r"""Element-wise binary cross-entropy (multi-label classification).

    From logits (default), in the stable form
    :math:`\ell = w\,[p_w\,t\,\mathrm{softplus}(-x) + (1-t)\,\mathrm{softplus}(x)]`,
    which with ``pos_weight=None`` is ``w * (max(x, 0) - x t + log1p(exp(-|x|)))``
    (PyTorch's ``binary_cross_entropy_with_logits``).  With
    ``from_logits=False``, `x` holds probabilities and
    :math:`\ell = -w\,[t \log x + (1-t)\log(1-x)]` with each log clamped at -100
    (PyTorch's ``binary_cross_entropy``).

    Parameters
    ----------
    x : array_like, float32 or float64
    target : array_like of x's shape, values in [0, 1]
    weight : array_like, broadcastable to x's shape, optional
    pos_weight : array_like (x.shape[-1],) or scalar, optional
        Weight of the positive term, per class (from logits only).
    reduction : {'mean', 'sum', 'none'}
        'mean' averages over every element.
    label_smoothing : float in [0, 1]
        Targets become ``t (1 - eps) + eps / 2`` (Keras' rule).
    from_logits : bool, default True
    n_threads : int, optional

    Returns
    -------
    float, or ndarray of x's shape and dtype with reduction='none'.
    """
    return _bce(x, target, weight, pos_weight, reduction, label_smoothing, from_logits, n_threads,
                want_grad=False)[0]


def binary_cross_entropy_with_grad(x, target, *, weight=None, pos_weight=None, reduction="mean",
                                   label_smoothing=0.0, from_logits=True, n_threads=None,
                                   grad_output=1.0, out=None, inplace=False):
    """:func:`binary_cross_entropy` and its gradient with respect to `x`.

    grad_output : float, or array of x's shape with reduction='none'
    out : ndarray of x's shape and dtype, C-contiguous and aligned, optional
    inplace : bool -- write the gradient over `x`.

    Returns
    -------
    (loss, grad)
    """
    return _bce(x, target, weight, pos_weight, reduction, label_smoothing, from_logits, n_threads,
                want_grad=True, grad_output=grad_output, out=out, inplace=inplace)


def _bce(x, target, weight, pos_weight, reduction, label_smoothing, from_logits, n_threads,
         want_grad, grad_output=1.0, out=None, inplace=False):
    (arr, tgt, compute, rows, t_rows, w_rows, pw, reduction, eps, from_logits, nt) = _prepare(
        x, target, weight, pos_weight, reduction, label_smoothing, from_logits, n_threads)
    grad = go_rows = None
    grad_scale = 1.0
    into_callers = False  # the gradient written straight into out= or x
    if want_grad:
        inplace = v.boolean("inplace", inplace)
        if inplace and out is not None:
            raise ValueError("give either out= or inplace=True, not both")
        if inplace:
            if not isinstance(x, np.ndarray) or x.dtype not in (np.float32, np.float64) or not x.dtype.isnative:
                raise TypeError("inplace=True needs x to be a float32 or float64 numpy.ndarray")
            v.out_array(x, x.shape, x.dtype, name="x (inplace=True)")
        if out is not None:
            v.out_array(out, arr.shape, arr.dtype)
            if np.shares_memory(out, arr):
                raise ValueError("out must not overlap x (use inplace=True to overwrite x)")
        if reduction == "none" and np.ndim(grad_output) != 0:
            go = v.aligned(np.asarray(grad_output))
            if go.dtype.kind not in "fiu":
                raise TypeError(f"grad_output must be a real number or array, got dtype {go.dtype}")
            if go.shape != arr.shape:
                raise ValueError(f"grad_output must be a scalar or have x's shape {arr.shape} with "
                                 f"reduction='none', got shape {go.shape}")
            go_rows = np.ascontiguousarray(go, dtype=compute).reshape(rows.shape)
        elif np.ndim(grad_output) != 0:
            raise ValueError(f"grad_output must be a scalar with reduction={reduction!r}, "
                             f"got shape {np.shape(grad_output)}")
        else:
            grad_scale = v.real_scalar("grad_output", grad_output)
        if reduction == "mean" and rows.size:
            grad_scale /= rows.size
        same = compute == arr.dtype
        into_callers = (inplace or out is not None) and same
        if inplace and same:
            grad = x.reshape(rows.shape)
        elif out is not None and same:
            grad = out.reshape(rows.shape)
        else:
            grad = _buffers.empty(rows.shape, compute)
    # Into memory of the caller's, nothing is written before the values are
    # checked; otherwise the kernel counts them in its own pass (a separate
    # pass was ~19% of a 16384x1000 float32 forward, 2 threads).
    if into_callers:
        _check_unit_interval(arr, tgt, rows, t_rows, from_logits, nt)
    loss_rows = np.empty(rows.shape, dtype=compute) if reduction == "none" else None
    total, outside = _core.bce_rows(rows, t_rows, w_rows, pw, eps, from_logits, grad_scale, go_rows,
                                    loss_rows, grad, nt, not into_callers)
    if not into_callers:
        _check_unit_interval(arr, tgt, rows, t_rows, from_logits, nt, outside)
    if reduction == "none":
        loss = v.cast_result(loss_rows.reshape(arr.shape), arr.dtype)
    elif reduction == "sum":
        loss = float(total)
    else:
        loss = float(total / rows.size) if rows.size else float("nan")
    if not want_grad:
        return loss, None
    if grad.dtype != arr.dtype:
        target_buf = out if out is not None else (x if inplace else None)
        if target_buf is not None:
            return loss, v.copy_result(target_buf, grad.reshape(arr.shape))
        return loss, v.cast_result(grad.reshape(arr.shape), arr.dtype)
    if out is not None:
        return loss, out
    if inplace:
        return loss, x
    return loss, grad.reshape(arr.shape)
