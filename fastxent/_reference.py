"""Plain NumPy float64 reference of every fastxent function.

The oracle of the tests and the "NumPy stable reference" contender of the
benchmarks: the textbook formulas, max-shifted for stability, no loops in
Python, no cleverness.  Slow on purpose; correct by inspection.
"""
import numpy as np


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def _shift(m):
    """The row maximum where finite, else 0 (so -inf rows give -inf, not NaN)."""
    return np.where(np.isfinite(m), m, 0.0)


def logsumexp(x, axis=-1):
    x = _f64(x)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        m = _shift(np.max(x, axis=axis, keepdims=True)) if x.shape[axis] else np.zeros_like(
            np.sum(x, axis=axis, keepdims=True))
        s = np.sum(np.exp(x - m), axis=axis, keepdims=True)
        return np.squeeze(m + np.log(s), axis=axis)


def log_softmax(x, axis=-1):
    """(x - m) - log(sum exp(x - m)): subtracting m first keeps huge ties exact."""
    x = _f64(x)
    lse = np.expand_dims(logsumexp(x, axis), axis)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        m = _shift(np.max(x, axis=axis, keepdims=True)) if x.shape[axis] else np.zeros_like(lse)
        out = (x - m) - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return np.where(np.isfinite(lse), out, np.nan)


def softmax(x, axis=-1):
    with np.errstate(invalid="ignore"):
        return np.exp(log_softmax(x, axis))


def _class_last(logits, target, axis):
    """Logits as (N, C) float64 and target flattened, class axis last."""
    x = np.moveaxis(_f64(logits), axis, -1)
    n_classes = x.shape[-1]
    t = np.asarray(target)
    if t.dtype.kind == "f":
        t = np.moveaxis(_f64(t), axis, -1).reshape(-1, n_classes)
    else:
        t = t.astype(np.int64).reshape(-1)
    return x.reshape(-1, n_classes), t, x.shape[:-1]


def _problem(logits, target, axis, weight, sample_weight, from_logits):
    """(clip, logits (N, C), target, target shape, class weights, sample weights)."""
    clip = float(np.finfo(np.asarray(logits).dtype).eps) if not from_logits else 0.0
    x, t, shape = _class_last(logits, target, axis)
    n, c = x.shape
    w = np.ones(c) if weight is None else _f64(weight)
    sw = np.ones(n) if sample_weight is None else _f64(sample_weight).reshape(-1)
    return clip, x, t, shape, w, sw


def _log_probs(x, softcap, from_logits, clip):
    """(log-probabilities, lse) of the rows: from logits (optionally capped)
    or from probabilities floored at clip."""
    if not from_logits:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.where(x < clip, clip, x)), np.zeros(x.shape[0])
    if softcap:
        x = softcap * np.tanh(x / softcap)
    return log_softmax(x, axis=-1), logsumexp(x, axis=-1)


def cross_entropy(logits, target, *, axis=-1, weight=None, sample_weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None, from_logits=True,
                  empty="nan"):
    """Per API.md: PyTorch's cross_entropy semantics plus sample_weight, z_loss,
    softcap and from_logits=False (scikit-learn's clip at the dtype's eps)."""
    clip, x, t, shape, w, sw = _problem(logits, target, axis, weight, sample_weight, from_logits)
    n, c = x.shape
    eps = label_smoothing
    with np.errstate(invalid="ignore", over="ignore"):
        logp, lse = _log_probs(x, softcap, from_logits, clip)
        if t.ndim == 2:  # class probabilities
            a = w * ((1 - eps) * t + eps / c)
            loss = -np.sum(a * logp, axis=-1)
            live = np.ones(n, dtype=bool)
            row_w = sw
        else:
            live = t != ignore_index
            y = np.where(live, t, 0)
            wy = w[y]
            nll = -logp[np.arange(n), y]
            loss = (1 - eps) * wy * nll
            if eps:
                loss = loss - eps / c * np.sum(w * logp, axis=-1)
            row_w = sw * wy
        loss = loss + z_loss * lse ** 2
        loss = np.where(live, sw * loss, 0.0)
    if reduction == "none":
        return loss.reshape(shape)
    if reduction == "sum":
        return float(np.sum(loss))
    denom = float(np.sum(np.where(live, row_w, 0.0)))
    if denom == 0:
        return float("nan") if empty == "nan" else 0.0
    return float(np.sum(loss) / denom)


def cross_entropy_grad(logits, target, *, axis=-1, weight=None, sample_weight=None, ignore_index=-100,
                       reduction="mean", label_smoothing=0.0, z_loss=0.0, softcap=None, from_logits=True,
                       empty="nan", grad_output=1.0):
    """Closed-form d loss / d logits (times grad_output), logits' shape, float64."""
    clip, x, t, shape, w, sw = _problem(logits, target, axis, weight, sample_weight, from_logits)
    n, c = x.shape
    eps = label_smoothing
    raw = x
    if softcap:
        x = softcap * np.tanh(x / softcap)
    lse = logsumexp(x, axis=-1)
    p = softmax(x, axis=-1)
    if t.ndim == 2:
        a = w * ((1 - eps) * t + eps / c)
        live = np.ones(n, dtype=bool)
        row_w = sw
    else:
        live = t != ignore_index
        y = np.where(live, t, 0)
        a = eps / c * np.broadcast_to(w, (n, c)).copy()
        a[np.arange(n), y] += (1 - eps) * w[y]
        row_w = sw * w[y]
    with np.errstate(invalid="ignore", divide="ignore"):
        if from_logits:
            g = (a.sum(-1) + 2 * z_loss * lse)[:, None] * p - a
            if softcap:
                g = g * (1 - np.tanh(raw / softcap) ** 2)
        else:  # d/dp of -sum a log(max(p, clip)): flat below the clip
            g = np.where(raw < clip, 0.0, -a / raw)
    go = np.asarray(grad_output, dtype=np.float64)
    if reduction == "none":
        scale = sw * np.broadcast_to(go, shape).reshape(-1)
    elif reduction == "sum":
        scale = sw * float(go)
    else:
        denom = float(np.sum(np.where(live, row_w, 0.0)))
        if denom == 0:
            scale = sw * (np.nan if empty == "nan" else 0.0)
        else:
            scale = sw * float(go) / denom
    with np.errstate(invalid="ignore"):
        g = np.where(live[:, None], g * scale[:, None], 0.0)
    return np.moveaxis(g.reshape(shape + (c,)), -1, axis)


def _bce_inputs(x, target, weight, pos_weight, label_smoothing):
    """x, smoothed targets t (1 - eps) + eps / 2, weight and pos_weight, in float64."""
    t = _f64(target) * (1 - label_smoothing) + label_smoothing / 2
    w = 1.0 if weight is None else _f64(weight)
    pw = 1.0 if pos_weight is None else _f64(pos_weight)
    return _f64(x), t, w, pw


def binary_cross_entropy(x, target, *, weight=None, pos_weight=None, reduction="mean",
                         label_smoothing=0.0, from_logits=True):
    """Element-wise binary cross-entropy, PyTorch semantics (log clamp at -100
    for probabilities), targets smoothed to t (1 - eps) + eps / 2."""
    x, t, w, pw = _bce_inputs(x, target, weight, pos_weight, label_smoothing)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if from_logits:
            # PyTorch's grouping: (1 - t) x + ((pw - 1) t + 1) softplus(-x).
            softplus_neg = np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x)))
            loss = w * ((1 - t) * x + ((pw - 1) * t + 1) * softplus_neg)
        else:
            loss = -w * (t * np.maximum(np.log(x), -100) + (1 - t) * np.maximum(np.log1p(-x), -100))
    loss = np.broadcast_to(loss, x.shape)
    if reduction == "none":
        return loss
    return float(np.sum(loss) if reduction == "sum" else np.mean(loss))


def binary_cross_entropy_grad(x, target, *, weight=None, pos_weight=None, reduction="mean",
                              label_smoothing=0.0, from_logits=True, grad_output=1.0):
    x, t, w, pw = _bce_inputs(x, target, weight, pos_weight, label_smoothing)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if from_logits:
            sig = 0.5 * (1 + np.tanh(0.5 * x))
            g = w * (sig * (1 - t + pw * t) - pw * t)
        else:
            g = w * (x - t) / np.maximum((1 - x) * x, 1e-12)
    g = np.broadcast_to(g, x.shape) * _f64(grad_output)
    return g / x.size if reduction == "mean" else g


def entropy(p, axis=-1, base=None):
    """Shannon entropy of p normalised along axis (scipy.stats.entropy); 0 log 0 = 0."""
    p = _f64(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = p / np.sum(p, axis=axis, keepdims=True)
        h = -np.sum(np.where(p == 0, 0.0, p * np.log(p)), axis=axis)
    return h / np.log(base) if base is not None else h


def kl_divergence(p, q, axis=-1, base=None):
    """KL(p || q) of p and q normalised along axis (scipy.stats.entropy(p, q))."""
    p, q = _f64(p), _f64(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = p / np.sum(p, axis=axis, keepdims=True)
        q = q / np.sum(q, axis=axis, keepdims=True)
        d = np.sum(np.where(p == 0, 0.0, p * np.log(p / q)), axis=axis)
    return d / np.log(base) if base is not None else d
