"""Cross-entropy loss and its gradient, fused in one pass over the logits."""
import math

import numpy as np

from fastxent import _buffers, _core
from fastxent import _validation as v

_EMPTY = ("nan", "zero")
# Work (elements) up to which a plain cross_entropy call takes the C fast path:
# calls whose fixed cost (option handling: ~5 us) is a large part of their time.
_SMALL_CALL = 65536
_SERIAL_WORK = _core.SERIAL


class _Problem:
    """Validated arguments of one cross-entropy call, in kernel-ready form."""


def _prepare(logits, target, *, axis, weight, sample_weight, ignore_index, reduction,
             label_smoothing, z_loss, softcap, from_logits, empty, n_threads):
    p = _Problem()
    arr, p.compute = v.float_array("logits", logits)
    if arr.ndim == 0:
        raise ValueError("logits must have at least 1 dimension (the class axis), got a 0-d array")
    p.arr = arr
    p.axis = v.normalize_axis(axis, arr.ndim)
    p.n_classes = arr.shape[p.axis]
    if p.n_classes == 0:
        raise ValueError(f"logits must have at least one class: axis {p.axis} of shape {arr.shape} is empty")
    p.target_shape = arr.shape[:p.axis] + arr.shape[p.axis + 1:]
    p.reduction = v.reduction(reduction)
    p.empty = v.choice("empty", empty, _EMPTY)
    p.ignore_index = v.integer_scalar("ignore_index", ignore_index)
    p.label_smoothing = v.real_scalar("label_smoothing", label_smoothing, 0.0, 1.0)
    p.z_loss = v.real_scalar("z_loss", z_loss, 0.0)
    p.softcap = 0.0 if softcap is None else v.real_scalar("softcap", softcap, 0.0, low_open=True)
    p.from_logits = v.boolean("from_logits", from_logits)
    p.clip = 0.0
    if not p.from_logits:
        if p.z_loss != 0.0 or p.softcap != 0.0:
            raise ValueError("z_loss and softcap apply to logits: they need from_logits=True")
        p.clip = float(np.finfo(arr.dtype).eps) if arr.dtype.kind == "f" else 2.0 ** -7
    # softcap and probabilities have row kernels only: their class axis moves last.
    p.rows_only = p.softcap != 0.0 or not p.from_logits
    p.n_threads = v.n_threads(n_threads)
    p.denominator = None

    tgt = v.aligned(np.asarray(target))
    if tgt.dtype.kind in "iu":
        p.labels, p.live = v.labels_array(tgt, p.target_shape, p.n_classes, p.ignore_index, p.n_threads)
        p.probs_view = None
    elif tgt.dtype.kind == "f" or tgt.dtype.name == "bfloat16":
        if tgt.shape != arr.shape:
            raise ValueError(
                f"target (class probabilities) must have the logits' shape {arr.shape}, got {tgt.shape}"
            )
        p.labels = None
        p.probs_view = v.class_view(tgt, p.axis, p.compute, rows=p.rows_only)
    else:
        raise TypeError(
            f"target must be an integer array of class labels or a floating array of "
            f"class probabilities, got dtype {tgt.dtype}"
        )
    # Class weights reach the kernels divided by their maximum (and the
    # results are multiplied back in double), so weights outside the compute
    # dtype's range (1e-50 in float32) still give the right weighted mean.
    p.weight64 = None if weight is None else v.weights_array("weight", weight, (p.n_classes,), np.float64)
    p.weight_scale = 1.0
    p.weight = None
    if p.weight64 is not None:
        top = float(p.weight64.max()) if p.weight64.size else 0.0
        p.weight_scale = top if top > 0 else 1.0
        p.weight = (p.weight64 / p.weight_scale).astype(p.compute)
    p.sample_weight = (None if sample_weight is None
                       else v.weights_array("sample_weight", sample_weight, p.target_shape, np.float64)
                       .reshape(-1))
    return p


def _denominator(p):
    """What 'mean' divides by: the summed weight of the rows that count."""
    if p.denominator is None:
        p.denominator = _sum_row_weights(p)
    return p.denominator


def _sum_row_weights(p):
    if p.labels is None:
        if p.sample_weight is not None:
            return float(p.sample_weight.sum())
        return float(math.prod(p.target_shape))
    if p.weight64 is None and p.sample_weight is None:
        return float(p.live)  # counted by the label check
    sw = None if p.sample_weight is None else p.sample_weight.reshape(-1)
    return _core.live_weight_sum(p.labels, p.ignore_index, p.weight64, sw)


def _grad_scaling(p, grad_output):
    """(scalar, per-row array or None) that multiply each row's gradient."""
    if p.reduction == "none":
        go = v.aligned(np.asarray(grad_output))
        if go.ndim == 0:
            return v.real_scalar("grad_output", go), None
        if go.dtype.kind not in "fiu":
            raise TypeError(f"grad_output must be a real number or array, got dtype {go.dtype}")
        if go.shape != p.target_shape:
            raise ValueError(
                f"grad_output must be a scalar or have the target shape {p.target_shape} with "
                f"reduction='none', got shape {go.shape}"
            )
        # An upstream gradient array may hold NaN or inf (autograd passes
        # what it has): it propagates to the live rows, as in PyTorch.
        return 1.0, np.ascontiguousarray(go, dtype=np.float64).reshape(-1)
    if type(grad_output) is not float and np.ndim(grad_output) != 0:
        raise ValueError(
            f"grad_output must be a scalar with reduction={p.reduction!r}, got shape {np.shape(grad_output)}"
        )
    scale = v.real_scalar("grad_output", grad_output)
    if p.reduction == "mean":
        denom = _denominator(p)
        if denom == 0:
            return (float("nan") if p.empty == "nan" else 0.0), None
        scale /= denom
    return scale, None


def _run(p, grad=None, grad_scale=1.0, grad_rows=None, return_lse=False):
    """One fused pass; returns (loss, lse or None).

    grad, when given, is a C-contiguous array of the logits' shape in the
    compute dtype (it may be the logits themselves).
    """
    x = v.class_view(p.arr, p.axis, p.compute, rows=p.rows_only)
    # Per-position arrays: (N,) for (N, C) rows, (P, Q) for (P, C, Q) slabs.
    pos_shape = (x.shape[0],) if x.ndim == 2 else (x.shape[0], x.shape[2])
    per_pos = (lambda a: None if a is None else a.reshape(pos_shape))
    loss_rows = np.empty(pos_shape, dtype=p.compute) if p.reduction == "none" else None
    lse = np.empty(pos_shape, dtype=p.compute) if return_lse else None
    ws = p.weight_scale
    args = (x, p.probs_view, per_pos(p.labels), p.ignore_index, p.weight, per_pos(p.sample_weight),
            p.label_smoothing, p.z_loss / ws, grad_scale * ws, per_pos(grad_rows), loss_rows,
            None if grad is None else grad.reshape(x.shape), lse, p.n_threads)
    if x.ndim == 3:
        total = _core.cross_entropy_cols(*args)
    else:
        total = _core.cross_entropy_rows(*args, softcap=p.softcap, clip=p.clip)
    total *= ws
    if p.reduction == "none":
        if ws != 1.0:
            # In double: ws may lie past the compute dtype's range, where an
            # ignored row's 0 times float32(ws) = inf was NaN.
            with np.errstate(over="ignore"):
                loss_rows = (loss_rows * np.float64(ws)).astype(p.compute)
        loss = v.cast_result(loss_rows.reshape(p.target_shape), p.arr.dtype)
    elif p.reduction == "sum":
        loss = float(total)
    else:
        denom = _denominator(p)
        if denom == 0:
            loss = float("nan") if p.empty == "nan" else 0.0
        else:
            loss = float(total / denom)
    if lse is not None:
        lse = v.cast_result(lse.reshape(p.target_shape), p.arr.dtype)
    return loss, lse


def _small_call_fits(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                     label_smoothing, z_loss, softcap, from_logits, empty, n_threads):
    """Whether a call may try the small-call fast path: a small (N, C) ndarray,
    integer labels or probability targets, no options but class and sample
    weights (ndarrays) and valid float label_smoothing and z_loss.  Small
    calls stay in C (their fixed cost is what users see); the C side still
    declines anything unusual (a bad label or weight, targets of another
    dtype) and the general path then validates and reports."""
    return (type(logits) is np.ndarray and type(target) is np.ndarray and logits.ndim == 2
            and logits.size <= _SMALL_CALL and type(axis) is int and (axis == -1 or axis == 1)
            and (weight is None or type(weight) is np.ndarray)
            and (sample_weight is None or type(sample_weight) is np.ndarray)
            and type(label_smoothing) is float and 0.0 <= label_smoothing <= 1.0
            and type(z_loss) is float and 0.0 <= z_loss < math.inf
            and softcap is None and from_logits is True and type(ignore_index) is int
            and -(2**63) <= ignore_index < 2**63
            and (reduction == "mean" or reduction == "sum" or reduction == "none")
            and (empty == "nan" or empty == "zero")
            and target.dtype.kind in "iuf"
            and (n_threads is None or (type(n_threads) is int and n_threads > 0)))


def _small_threads(logits, n_threads):
    """Threads of a small call: resolved only when it is large enough to use them."""
    return 1 if logits.size < _SERIAL_WORK else v.n_threads(n_threads)


def cross_entropy(logits, target, *, axis=-1, weight=None, sample_weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None, from_logits=True,
                  empty="nan", n_threads=None):
    r"""Cross-entropy between logits and class labels (or class probabilities).

    For a row :math:`x` with label :math:`y`,
    :math:`\ell = \log\sum_c e^{x_c} - x_y` (natural log, nats), computed in
    one pass over memory.

    Parameters
    ----------
    logits : array_like, float32 or float64 (float16/bfloat16 computed in float32)
        Scores; `axis` is the class axis.
    target : array_like
        Integer class labels of the logits' shape without `axis` (any integer
        dtype), or class probabilities of the logits' shape.
    axis : int, default -1
        The class axis (``axis=1`` is PyTorch's ``(N, C, d1, ...)`` layout).
    weight : array_like (C,), optional
        Per-class weight, PyTorch semantics: :math:`\ell_i = w_{y_i}(\mathrm{lse}_i - x_{iy_i})`
        and ``'mean'`` divides by :math:`\sum_i w_{y_i}` over the rows that are not ignored.
    sample_weight : array_like (target shape), optional
        Multiplies each row's loss; ``'mean'`` divides by :math:`\sum_i s_i w_{y_i}`.
    ignore_index : int, default -100
        Rows with this label contribute exactly 0 to the loss, the denominator
        and the gradient, whatever their logits hold.
    reduction : {'mean', 'sum', 'none'}
        ``'mean'``/``'sum'`` return a Python float accumulated in float64;
        ``'none'`` an array of the target shape in the logits' dtype.
    label_smoothing : float in [0, 1]
        PyTorch's rule: :math:`(1-\varepsilon)\,\ell_i + \frac{\varepsilon}{C}\sum_c w_c(\mathrm{lse}_i - x_{ic})`.
    z_loss : float >= 0
        Adds :math:`z\,\mathrm{lse}_i^2` to each row's loss (PaLM's auxiliary loss).
    softcap : float > 0, optional
        Replaces the logits by :math:`c \tanh(x / c)` first (Gemma 2); the
        gradient flows through it.  With a class axis that is not last, the
        logits are moved to a class-last copy first.
    from_logits : bool, default True
        False: `logits` holds probabilities (rows summing to 1) and the loss
        is :math:`-\sum_c a_c \log(\max(p_c, \epsilon))` with
        ``eps = np.finfo(dtype).eps`` (scikit-learn's ``log_loss`` rule); the
        gradient is with respect to the probabilities (0 where p < eps).
    empty : {'nan', 'zero'}
        What ``'mean'`` returns when no row counts (all ignored or zero weight).
    n_threads : int, optional
        None or -1: every thread the process may use; results do not depend on it.

    Returns
    -------
    float or ndarray
    """
    if _small_call_fits(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                        label_smoothing, z_loss, softcap, from_logits, empty, n_threads):
        losses = np.empty(logits.shape[:1], logits.dtype) if reduction == "none" else None
        result = _core.cross_entropy_small(logits, target, ignore_index, reduction == "mean",
                                           empty == "nan", weight, sample_weight, label_smoothing, z_loss, 1.0,
                                           None, losses, _small_threads(logits, n_threads))
        if result is not None:
            return result if losses is None else losses
    p = _prepare(logits, target, axis=axis, weight=weight, sample_weight=sample_weight,
                 ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing,
                 z_loss=z_loss, softcap=softcap, from_logits=from_logits, empty=empty,
                 n_threads=n_threads)
    return _run(p)[0]


def cross_entropy_with_grad(logits, target, *, axis=-1, weight=None, sample_weight=None,
                            ignore_index=-100, reduction="mean", label_smoothing=0.0, z_loss=0.0,
                            softcap=None, from_logits=True, empty="nan", n_threads=None,
                            grad_output=1.0, out=None, inplace=False, return_lse=False):
    r"""Cross-entropy and its gradient with respect to the logits, in one pass.

    Takes every argument of :func:`cross_entropy`, and:

    grad_output : float, or array of the target shape with ``reduction='none'``
        Multiplies the gradient (the upstream gradient of a backward pass).
    out : ndarray, optional
        C-contiguous (and aligned) array of the logits' shape and dtype that
        receives the gradient (no allocation, no page faults).
    inplace : bool, default False
        Write the gradient over `logits` (a writable C-contiguous float32 or
        float64 array).
    return_lse : bool, default False
        Also return the per-row log-sum-exp (target shape, logits' dtype).

    Returns
    -------
    (loss, grad) or (loss, grad, lse)
        ``grad = d loss / d logits * grad_output``; for a label row it is
        ``scale * (softmax(x) - onehot(y))``.  Ignored rows get exactly 0.
    """
    if (inplace is False and return_lse is False and type(grad_output) is float
            and math.isfinite(grad_output)
            and _small_call_fits(logits, target, axis, weight, sample_weight, ignore_index, reduction,
                                 label_smoothing, z_loss, softcap, from_logits, empty, n_threads)
            and (out is None or (type(out) is np.ndarray and not np.may_share_memory(out, logits)))):
        grad = np.empty(logits.shape, logits.dtype) if out is None else out
        losses = np.empty(logits.shape[:1], logits.dtype) if reduction == "none" else None
        loss = _core.cross_entropy_small(logits, target, ignore_index, reduction == "mean",
                                         empty == "nan", weight, sample_weight, label_smoothing, z_loss,
                                         grad_output, grad, losses, _small_threads(logits, n_threads))
        if loss is not None:
            return (loss if losses is None else losses), grad
    p = _prepare(logits, target, axis=axis, weight=weight, sample_weight=sample_weight,
                 ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing,
                 z_loss=z_loss, softcap=softcap, from_logits=from_logits, empty=empty,
                 n_threads=n_threads)
    inplace = v.boolean("inplace", inplace)
    return_lse = v.boolean("return_lse", return_lse)
    if return_lse and not p.from_logits:
        raise ValueError("return_lse=True needs from_logits=True (probabilities have no log-sum-exp)")
    if inplace and out is not None:
        raise ValueError("give either out= or inplace=True, not both")
    if inplace:
        if not isinstance(logits, np.ndarray):
            raise TypeError(f"inplace=True needs logits to be a numpy.ndarray, got {type(logits).__name__}")
        if logits.dtype not in (np.float32, np.float64) or not logits.dtype.isnative:
            raise TypeError(f"inplace=True needs float32 or float64 logits, got dtype {logits.dtype}")
        v.out_array(logits, logits.shape, logits.dtype, name="logits (inplace=True)")
    if out is not None:
        v.out_array(out, p.arr.shape, p.arr.dtype)
        if np.shares_memory(out, p.arr):
            raise ValueError("out must not overlap logits (use inplace=True to overwrite logits)")
    grad_scale, grad_rows = _grad_scaling(p, grad_output)

    # The kernels write the gradient straight into out= or the logits when the
    # dtype allows; otherwise into a buffer converted at the end.
    same_dtype = p.compute == p.arr.dtype
    moved = p.rows_only and p.axis != p.arr.ndim - 1
    if inplace and same_dtype and not moved:
        dest = logits
    elif out is not None and same_dtype and not moved:
        dest = out
    elif moved:
        dest = _buffers.empty(p.target_shape + (p.n_classes,), p.compute)
    else:
        dest = _buffers.empty(p.arr.shape, p.compute)
    loss, lse = _run(p, dest, grad_scale, grad_rows, return_lse)
    if moved:
        dest = np.moveaxis(dest, -1, p.axis)
        if not (out is not None or inplace):
            dest = np.ascontiguousarray(dest)
    if not same_dtype or moved:
        target = out if out is not None else (logits if inplace else None)
        if target is not None:
            dest = v.copy_result(target, dest)
        elif dest.dtype != p.arr.dtype:
            dest = v.cast_result(dest, p.arr.dtype)
    return (loss, dest, lse) if return_lse else (loss, dest)
