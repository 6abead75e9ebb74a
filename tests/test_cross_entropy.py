"""cross_entropy and cross_entropy_with_grad against the float64 NumPy reference."""
import itertools

import numpy as np
import pytest

import fastxent as fx
from fastxent import _reference as ref

DTYPES = [np.float32, np.float64, np.float16]
REDUCTIONS = ["mean", "sum", "none"]
CLASS_COUNTS = [1, 2, 7, 15, 16, 17, 31, 33, 1023, 1024, 1025, 4097]
LABEL_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


def check(h, logits, target, *, grad_output=1.0, scale=None, **kw):
    """Every output of both functions against the reference; inputs unchanged.

    Returns (loss, grad) of cross_entropy_with_grad for further checks.
    """
    dtype = np.asarray(logits).dtype.newbyteorder("=")  # results come back in native order
    reduction = kw.get("reduction", "mean")
    axis = kw.get("axis", -1)
    inputs = [logits, target, kw.get("weight"), kw.get("sample_weight"), grad_output]
    copies = [None if a is None else np.array(a, copy=True) for a in inputs]
    scale = h.scale(logits) if scale is None else scale

    exp_loss = ref.cross_entropy(logits, target, **kw)
    exp_grad = ref.cross_entropy_grad(logits, target, grad_output=grad_output, **kw)
    exp_lse = ref.logsumexp(logits, axis=axis)
    loss = fx.cross_entropy(logits, target, **kw)
    loss2, grad, lse = fx.cross_entropy_with_grad(logits, target, grad_output=grad_output,
                                                  return_lse=True, **kw)
    loss3, grad3 = fx.cross_entropy_with_grad(logits, target, grad_output=grad_output, **kw)

    for a, c in zip(inputs, copies):
        if a is not None:
            h.unchanged(c, a)
    # z_loss squares lse: its absolute error grows with lse's magnitude.
    loss_scale = scale * (1 + 2 * kw.get("z_loss", 0.0) * scale)
    for got in (loss, loss2, loss3):
        if reduction == "none":
            assert isinstance(got, np.ndarray) and got.shape == np.shape(exp_loss)
            h.assert_close(got, exp_loss, dtype, scale=loss_scale * _weight_scale(kw))
        else:
            assert type(got) is float
            # A sum of n rows carries n rows' worth of rounding.
            n_rows = max(1, np.size(exp_lse))
            h.assert_close(got, exp_loss, np.float64 if dtype == np.float64 else np.float32,
                           scale=loss_scale * _weight_scale(kw) * (n_rows if reduction == "sum" else 1))
    assert grad.shape == np.shape(logits) and grad.dtype == dtype and grad.flags.c_contiguous
    h.assert_close(grad, exp_grad, dtype, scale=h.scale(exp_grad) * (1 + 2 * kw.get("z_loss", 0.0) * scale))
    np.testing.assert_array_equal(grad3, grad)
    assert lse.shape == np.shape(exp_lse) and lse.dtype == dtype
    h.assert_close(lse, exp_lse, dtype, scale=scale)
    return loss2, grad


def _weight_scale(kw):
    s = 1.0
    for key in ("weight", "sample_weight"):
        if kw.get(key) is not None and np.size(kw[key]):
            s *= max(1.0, float(np.max(kw[key])))
    return s


def _data(rng, shape, dtype, n_classes=None, axis=-1, ignore_frac=0.0, ignore_index=-100):
    """Logits of `shape` and valid labels (some set to ignore_index)."""
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    n_classes = shape[axis] if n_classes is None else n_classes
    tshape = tuple(np.delete(np.array(shape), axis % len(shape)))
    y = rng.integers(0, n_classes, size=tshape)
    if ignore_frac:
        y = np.where(rng.random(tshape) < ignore_frac, ignore_index, y)
    return x, y


def _probs(rng, shape, axis=-1, dtype=np.float64):
    t = rng.random(shape) ** 3
    return (t / t.sum(axis=axis, keepdims=True)).astype(dtype)


# --------------------------------------------------------------------------
# the basic matrix: dtype x reduction x class counts


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_classes", CLASS_COUNTS)
def test_labels_against_reference(dtype, reduction, n_classes, rng, h):
    x, y = _data(rng, (6, n_classes), dtype, ignore_frac=0.2)
    check(h, x, y, reduction=reduction)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n_classes", [1, 7, 16, 17, 33, 1025])
def test_probabilities_against_reference(dtype, reduction, n_classes, rng, h):
    x = (rng.standard_normal((5, n_classes)) * 3).astype(dtype)
    check(h, x, _probs(rng, x.shape, dtype=dtype), reduction=reduction)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(7,), (1, 7), (3, 4, 7), (2, 3, 2, 5)])
def test_leading_dims(dtype, reduction, shape, rng, h):
    x, y = _data(rng, shape, dtype)
    if len(shape) == 1:
        y = np.int64(y)  # 1-d logits take a 0-d label
        assert np.ndim(y) == 0
    check(h, x, y, reduction=reduction)
    check(h, x, _probs(rng, shape), reduction=reduction)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_axis_on_3d(dtype, reduction, axis, rng, h):
    shape = (4, 5, 6)
    x, y = _data(rng, shape, dtype, axis=axis, ignore_frac=0.2)
    n_classes = shape[axis]
    w = rng.random(n_classes) + 0.5
    sw = rng.random(y.shape) + 0.5
    check(h, x, y, axis=axis, reduction=reduction)
    check(h, x, y, axis=axis, reduction=reduction, weight=w, sample_weight=sw, label_smoothing=0.2)
    check(h, x, _probs(rng, shape, axis=axis), axis=axis, reduction=reduction, weight=w)
    go = rng.standard_normal(y.shape) if reduction == "none" else 0.7
    check(h, x, y, axis=axis, reduction=reduction, grad_output=go)


@pytest.mark.parametrize("label_dtype", LABEL_DTYPES)
def test_label_dtypes(label_dtype, rng, h):
    x, y = _data(rng, (20, 9), np.float64)
    signed = np.dtype(label_dtype).kind == "i"
    ignore = -1 if signed else int(np.iinfo(label_dtype).max) if label_dtype != np.uint64 else 200
    y = np.where(np.arange(20) % 4 == 0, ignore, y).astype(label_dtype)
    for reduction in REDUCTIONS:
        check(h, x, y, reduction=reduction, ignore_index=ignore)
    # Same answer as int64 labels.
    assert fx.cross_entropy(x, y, ignore_index=ignore) == fx.cross_entropy(x, y.astype(np.int64),
                                                                           ignore_index=ignore)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_list_and_python_int(dtype, h):
    x = np.array([[1.0, 2.0, 0.5], [0.1, 0.2, 0.3]], dtype=dtype)
    check(h, x, [2, 0])
    check(h, x[0], 1)


# --------------------------------------------------------------------------
# ignore_index


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("poison", [np.nan, -np.inf, np.inf, 1e30])
def test_ignored_rows_exactly_zero(dtype, reduction, poison, rng, h):
    x, y = _data(rng, (8, 33), dtype)
    y[[1, 4, 7]] = -100
    x[1] = poison
    x[4, 3] = poison
    x[7, ::2] = poison
    loss, grad = check(h, x, y, reduction=reduction, weight=rng.random(33) + 0.1,
                       sample_weight=rng.random(8) + 0.1, label_smoothing=0.1, z_loss=1e-3)
    assert np.all(grad[[1, 4, 7]] == 0) and not np.any(np.signbit(grad[[1, 4, 7]]) & np.isnan(grad[[1, 4, 7]]))
    assert np.all(np.isfinite(grad))
    if reduction == "none":
        assert np.all(loss[[1, 4, 7]] == 0)
        assert np.all(np.isfinite(loss))
    else:
        assert np.isfinite(loss)


@pytest.mark.parametrize("ignore_index", [0, 3, -1, 10**6])
def test_ignore_index_values(ignore_index, rng, h):
    # ignore_index may be a valid class (then that class is never learned).
    x, y = _data(rng, (12, 5), np.float64)
    y[::3] = ignore_index if ignore_index < 0 or ignore_index >= 5 else y[::3]
    for reduction in REDUCTIONS:
        check(h, x, y, ignore_index=ignore_index, reduction=reduction)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_rows_ignored_empty(dtype, rng, h):
    x, _ = _data(rng, (4, 6), dtype)
    y = np.full(4, -100)
    assert np.isnan(fx.cross_entropy(x, y))
    assert np.isnan(fx.cross_entropy(x, y, empty="nan"))
    assert fx.cross_entropy(x, y, empty="zero") == 0.0
    assert fx.cross_entropy(x, y, reduction="sum") == 0.0
    assert np.all(fx.cross_entropy(x, y, reduction="none") == 0)
    for empty in ("nan", "zero"):
        for reduction in REDUCTIONS:
            check(h, x, y, empty=empty, reduction=reduction)
        # Ignored rows' gradients stay exactly 0 even when the scale is NaN.
        _, grad = fx.cross_entropy_with_grad(x, y, empty=empty)
        assert np.all(grad == 0)
    # Rows that all weigh 0 count as empty too.
    y = np.array([0, 1, 2, 0])
    w = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    assert np.isnan(fx.cross_entropy(x, y, weight=w))
    assert fx.cross_entropy(x, y, weight=w, empty="zero") == 0.0
    assert fx.cross_entropy(x, y, sample_weight=np.zeros(4), empty="zero") == 0.0
    check(h, x, y, weight=w, empty="zero")
    check(h, x, _probs(rng, x.shape), sample_weight=np.zeros(4), empty="zero")


def test_zero_rows(h):
    x = np.empty((0, 5))
    y = np.empty(0, dtype=np.int64)
    assert np.isnan(fx.cross_entropy(x, y))
    assert fx.cross_entropy(x, y, empty="zero") == 0.0
    assert fx.cross_entropy(x, y, reduction="sum") == 0.0
    assert fx.cross_entropy(x, y, reduction="none").shape == (0,)
    loss, grad = fx.cross_entropy_with_grad(x, y, reduction="sum")
    assert loss == 0.0 and grad.shape == (0, 5)


# --------------------------------------------------------------------------
# options, one at a time and combined


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
@pytest.mark.parametrize(
    "use_weight,use_sw,smoothing,z_loss",
    list(itertools.product([False, True], [False, True], [0.0, 0.3, 1.0], [0.0, 1e-2])),
)
def test_option_combinations(dtype, reduction, target_kind, use_weight, use_sw, smoothing, z_loss, rng, h):
    n, c = 10, 17
    x, y = _data(rng, (n, c), dtype, ignore_frac=0.2)
    target = y if target_kind == "labels" else _probs(rng, (n, c), dtype=dtype)
    kw = dict(reduction=reduction, label_smoothing=smoothing, z_loss=z_loss)
    if use_weight:
        kw["weight"] = (rng.random(c) * 2).astype(dtype)
    if use_sw:
        kw["sample_weight"] = rng.random(n) * 2
    check(h, x, target, **kw)


def test_tiny_class_weight_float32(rng):
    x, y = _data(rng, (4, 3), np.float32)
    w = np.array([1e-50, 1e-50, 1e-50])
    expected = ref.cross_entropy(x, y, weight=w)
    assert np.isfinite(expected)
    np.testing.assert_allclose(fx.cross_entropy(x, y, weight=w), expected, rtol=1e-5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weight_and_sample_weight_dtypes(reduction, rng, h):
    x, y = _data(rng, (8, 5), np.float64, ignore_frac=0.2)
    for wdtype in (np.float16, np.float32, np.float64, np.int32, np.uint8):
        w = (rng.random(5) * 3 + 1).astype(wdtype)
        sw = (rng.random(8) * 3 + 1).astype(wdtype)
        check(h, x, y, weight=w, sample_weight=sw, reduction=reduction)
        check(h, x, y, weight=list(w), sample_weight=list(sw), reduction=reduction)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
def test_grad_output(dtype, target_kind, rng, h):
    x, y = _data(rng, (6, 11), dtype, ignore_frac=0.3)
    target = y if target_kind == "labels" else _probs(rng, x.shape)
    for reduction in REDUCTIONS:
        for go in (0.0, -2.5, np.float32(3.0), np.array(0.25)):
            check(h, x, target, reduction=reduction, grad_output=go, weight=rng.random(11) + 0.1)
    for go in (rng.standard_normal(6), rng.standard_normal(6).astype(np.float32), np.arange(6),
               list(rng.standard_normal(6))):
        check(h, x, target, reduction="none", grad_output=go, sample_weight=rng.random(6))
    with pytest.raises(ValueError, match="grad_output"):
        fx.cross_entropy_with_grad(x, target, reduction="mean", grad_output=np.ones(6))
    with pytest.raises(ValueError, match="grad_output"):
        fx.cross_entropy_with_grad(x, target, reduction="none", grad_output=np.ones(5))
    with pytest.raises(TypeError, match="grad_output"):
        fx.cross_entropy_with_grad(x, target, reduction="sum", grad_output="1")
    with pytest.raises(ValueError, match="grad_output"):
        fx.cross_entropy_with_grad(x, target, reduction="sum", grad_output=np.nan)


def test_grad_output_leading_dims(rng, h):
    x, y = _data(rng, (3, 4, 6), np.float64, ignore_frac=0.2)
    check(h, x, y, reduction="none", grad_output=rng.standard_normal((3, 4)))
    xt = np.moveaxis(x, -1, 1)
    check(h, xt, y, axis=1, reduction="none", grad_output=rng.standard_normal((3, 4)))


# --------------------------------------------------------------------------
# out=, inplace=, return_lse


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 1, 0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_out(dtype, axis, reduction, rng, h):
    x, y = _data(rng, (3, 5, 4), dtype, axis=axis, ignore_frac=0.2)
    expected_loss, expected_grad = fx.cross_entropy_with_grad(x, y, axis=axis, reduction=reduction)
    out = np.full(x.shape, np.nan, dtype=dtype)
    loss, grad = fx.cross_entropy_with_grad(x, y, axis=axis, reduction=reduction, out=out)
    assert grad is out
    np.testing.assert_array_equal(out, expected_grad)
    np.testing.assert_array_equal(loss, expected_loss)
    h.assert_close(out, ref.cross_entropy_grad(x, y, axis=axis, reduction=reduction), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 1, 0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
def test_inplace(dtype, axis, reduction, target_kind, rng, h):
    x, y = _data(rng, (3, 5, 4), dtype, axis=axis, ignore_frac=0.2)
    target = y if target_kind == "labels" else _probs(rng, x.shape, axis=axis)
    kw = dict(axis=axis, reduction=reduction, label_smoothing=0.1, z_loss=1e-3)
    expected_loss, expected_grad, expected_lse = fx.cross_entropy_with_grad(x, target, return_lse=True, **kw)
    original = x.copy()
    loss, grad, lse = fx.cross_entropy_with_grad(x, target, inplace=True, return_lse=True, **kw)
    assert np.shares_memory(grad, x) and grad.shape == x.shape
    np.testing.assert_array_equal(x, expected_grad)  # the logits were overwritten
    np.testing.assert_array_equal(loss, expected_loss)
    live = y != -100 if target_kind == "labels" else np.ones(y.shape, dtype=bool)
    # Ignored rows' lse: test_inplace_lse_of_ignored_rows (a known bug).
    np.testing.assert_array_equal(lse[live], expected_lse[live])
    h.assert_close(x, ref.cross_entropy_grad(original, target, **kw), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inplace_lse_of_ignored_rows(dtype, h):
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=dtype)
    y = np.array([0, -100])
    expected = ref.logsumexp(x)
    _, _, lse = fx.cross_entropy_with_grad(x, y, return_lse=True, inplace=True)
    h.assert_close(lse, expected, dtype, scale=6)


def test_inplace_and_out_errors(rng):
    x, y = _data(rng, (4, 5), np.float64)
    with pytest.raises(ValueError, match="out"):
        fx.cross_entropy_with_grad(x, y, inplace=True, out=np.empty_like(x))
    ro = x.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="logits"):
        fx.cross_entropy_with_grad(ro, y, inplace=True)
    with pytest.raises(ValueError, match="logits"):
        fx.cross_entropy_with_grad(np.asfortranarray(np.ones((4, 5))), y, inplace=True)
    with pytest.raises(TypeError, match="logits"):
        fx.cross_entropy_with_grad(x.tolist(), y, inplace=True)
    with pytest.raises(TypeError, match="logits"):
        fx.cross_entropy_with_grad(x.astype(np.float16), y, inplace=True)
    with pytest.raises(ValueError, match="out"):
        fx.cross_entropy_with_grad(x, y, out=x)
    with pytest.raises(ValueError, match="out"):
        fx.cross_entropy_with_grad(x, y, out=x[:, ::-1])
    with pytest.raises(TypeError, match="out"):
        fx.cross_entropy_with_grad(x, y, out=np.empty((4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="out"):
        fx.cross_entropy_with_grad(x, y, out=np.empty((5, 4)))
    with pytest.raises(TypeError, match="inplace"):
        fx.cross_entropy_with_grad(x, y, inplace=1)
    with pytest.raises(TypeError, match="return_lse"):
        fx.cross_entropy_with_grad(x, y, return_lse="yes")
    # None of these calls wrote anything.
    assert np.all(ro == x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_float16_input(dtype, rng, h):
    x, y = _data(rng, (4, 9), np.float16)
    loss, grad, lse = fx.cross_entropy_with_grad(x, y, return_lse=True, reduction="none")
    assert loss.dtype == grad.dtype == lse.dtype == np.float16
    out = np.empty_like(x)
    _, grad2 = fx.cross_entropy_with_grad(x, y, out=out)
    assert grad2 is out


# --------------------------------------------------------------------------
# layouts and read-only inputs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["noncontiguous", "readonly", "fortran", "reversed"])
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
def test_layouts_never_modified(dtype, layout, target_kind, rng, h):
    x, y = _data(rng, (9, 13), dtype, ignore_frac=0.2)
    t = y if target_kind == "labels" else _probs(rng, x.shape)
    w = rng.random(13) + 0.5
    sw = rng.random(9) + 0.5
    if layout == "noncontiguous":
        args = [h.noncontiguous(a) for a in (x, t, w, sw)]
    elif layout == "readonly":
        args = [h.readonly(a) for a in (x, t, w, sw)]
    elif layout == "fortran":
        args = [np.asfortranarray(a) for a in (x, t, w, sw)]
    else:
        args = [a[::-1, ::-1] if a.ndim == 2 else a[::-1] for a in (x, t, w, sw)]
    for reduction in REDUCTIONS:
        go = h.readonly(rng.standard_normal(9)) if reduction == "none" else 1.0
        check(h, args[0], args[1], weight=args[2], sample_weight=args[3], reduction=reduction,
              label_smoothing=0.1, grad_output=go)


# --------------------------------------------------------------------------
# extreme inputs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_extreme_logits(dtype, reduction, h):
    inf, nan = np.inf, np.nan
    x = np.array([
        [1e30, -1e30, 0.0, 5.0],      # label 0: loss 0, p = onehot
        [-1e30, 1e30, 0.0, 5.0],      # label 0: loss 2e30
        [1.0, -inf, 2.0, -inf],       # label 2, masked classes get grad 0
        [1.0, -inf, 2.0, -inf],       # label 1 is masked: loss +inf (PyTorch)
        [1.0, 2.0, 3.0, 4.0],
    ], dtype=dtype)
    y = np.array([0, 0, 2, 1, 3])
    kw = dict(reduction=reduction)
    loss, grad = fx.cross_entropy_with_grad(x, y, reduction="none")
    assert loss[0] == 0 and loss[1] == np.float64(2e30).astype(dtype)
    np.testing.assert_array_equal(grad[0], [0, 0, 0, 0])
    assert grad[2, 1] == 0 and grad[2, 3] == 0
    assert loss[3] == inf
    np.testing.assert_array_equal(grad[3, [1, 3]], [-1, 0])
    rows = [0, 2, 3, 4]
    h.assert_close(grad[rows], ref.cross_entropy_grad(x, y, reduction="none")[rows], dtype)
    h.assert_close(loss[[2, 3, 4]], ref.cross_entropy(x, y, reduction="none")[[2, 3, 4]], dtype, scale=5)
    check(h, x[2:], y[2:], **kw)
    # NaN in a live row: that row is NaN, other rows untouched; the mean is NaN.
    x2 = np.array([[nan, 1.0, 2.0], [1.0, 2.0, 3.0], [-inf, -inf, -inf], [inf, 0.0, 1.0]], dtype=dtype)
    y2 = np.array([1, 2, 0, 1])
    loss2, grad2 = fx.cross_entropy_with_grad(x2, y2, reduction="none")
    assert np.isnan(loss2[0]) and np.all(np.isnan(grad2[0]))
    assert np.isnan(loss2[2]) and np.all(np.isnan(grad2[2]))  # lse = -inf: NaN as PyTorch
    assert np.isnan(loss2[3]) and np.all(np.isnan(grad2[3]))  # lse = +inf: NaN as PyTorch
    h.assert_close(loss2[1], ref.cross_entropy(x2[1:2], y2[1:2], reduction="none")[0], dtype, scale=3)
    h.assert_close(grad2[1], ref.cross_entropy_grad(x2[1:2], y2[1:2], reduction="none")[0], dtype)
    check(h, x2, y2, **kw)
    assert np.isnan(fx.cross_entropy(x2, y2, reduction=reduction if reduction != "none" else "mean"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_extreme_probability_targets(dtype, reduction, h):
    # PyTorch's rule (test_parity_torch checks it): a masked class with zero
    # probability still gives 0 * -inf = NaN in the loss, a masked class with
    # positive probability gives +inf; the gradient stays p - t either way.
    x = np.array([[0.0, 1.0, -np.inf], [1e30, -1e30, 0.0], [0.0, 1.0, -np.inf]], dtype=dtype)
    t = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.5]], dtype=dtype)
    loss, grad = fx.cross_entropy_with_grad(x, t, reduction="none")
    assert np.isnan(loss[0]) and loss[1] == 0 and loss[2] == np.inf
    assert np.all(np.isfinite(grad))
    check(h, x, t, reduction=reduction)


# --------------------------------------------------------------------------
# accuracy on long rows


@pytest.mark.parametrize("n_classes", [131072, 256000])
@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_float32_accuracy_long_rows(n_classes, scale, rng):
    x = (rng.standard_normal((4, n_classes)) * scale).astype(np.float32)
    y = rng.integers(0, n_classes, 4)
    got = fx.cross_entropy(x, y, reduction="none").astype(np.float64)
    expected = ref.cross_entropy(x, y, reduction="none")
    assert np.max(np.abs(got - expected) / np.abs(expected)) <= 1e-6
    _, grad, lse = fx.cross_entropy_with_grad(x, y, reduction="sum", return_lse=True)
    exp_lse = ref.logsumexp(x)
    assert np.max(np.abs(lse - exp_lse) / np.abs(exp_lse)) <= 1e-6
    # Gradient: softmax - onehot, absolute error well under the smallest
    # probability's magnitude 1/C.
    np.testing.assert_allclose(grad, ref.cross_entropy_grad(x, y, reduction="sum"), rtol=1e-5, atol=1e-9)


# --------------------------------------------------------------------------
# not implemented yet: the API.md formulas, computed here with NumPy


def _softcap_expected(x, y, c, **kw):
    """API.md: logits replaced by c * tanh(x / c) first; chain rule for the gradient."""
    x64 = np.asarray(x, dtype=np.float64)
    capped = c * np.tanh(x64 / c)
    loss = ref.cross_entropy(capped, y, **kw)
    grad = ref.cross_entropy_grad(capped, y, **kw) * (1 - np.tanh(x64 / c) ** 2)
    return loss, grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
def test_softcap(dtype, reduction, target_kind, rng, h):
    x, y = _data(rng, (8, 19), dtype, ignore_frac=0.2)
    x *= 10  # well into tanh's saturation, where capping matters
    target = y if target_kind == "labels" else _probs(rng, x.shape)
    kw = dict(reduction=reduction, weight=rng.random(19) + 0.5, label_smoothing=0.1)
    exp_loss, exp_grad = _softcap_expected(x, target, 15.0, **kw)
    loss = fx.cross_entropy(x, target, softcap=15.0, **kw)
    loss2, grad = fx.cross_entropy_with_grad(x, target, softcap=15.0, **kw)
    h.assert_close(loss, exp_loss, dtype, scale=15)
    h.assert_close(loss2, exp_loss, dtype, scale=15)
    h.assert_close(grad, exp_grad, dtype)


def _probability_input_expected(p, t, reduction, ignore_index=-100):
    """API.md: -sum_c t_c log(max(p_c, eps)), eps = finfo(dtype).eps; grad w.r.t. p."""
    p64 = np.asarray(p, dtype=np.float64)
    eps = float(np.finfo(np.asarray(p).dtype).eps)
    t = np.asarray(t)
    if t.dtype.kind in "iu":
        live = t != ignore_index
        onehot = np.zeros_like(p64)
        onehot[np.arange(len(t))[live], t[live]] = 1.0
        t = onehot
    else:
        live = np.ones(p64.shape[0], dtype=bool)
        t = np.asarray(t, dtype=np.float64)
    clipped = np.maximum(p64, eps)
    rows = -np.sum(t * np.log(clipped), axis=-1)
    grad = np.where(p64 > eps, -t / clipped, 0.0)
    if reduction == "none":
        return rows, grad
    if reduction == "sum":
        return float(rows.sum()), grad
    n = np.count_nonzero(live)
    return float(rows.sum() / n), grad / n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
def test_from_logits_false(dtype, reduction, target_kind, rng, h):
    p = ref.softmax(rng.standard_normal((8, 7)) * 2).astype(dtype)
    p[0, 3] = 0.0  # clipped to eps (scikit-learn's rule)
    y = rng.integers(0, 7, 8)
    y[0] = 3
    y[5] = -100
    target = y if target_kind == "labels" else _probs(rng, p.shape)
    exp_loss, exp_grad = _probability_input_expected(p, target, reduction)
    loss = fx.cross_entropy(p, target, from_logits=False, reduction=reduction)
    loss2, grad = fx.cross_entropy_with_grad(p, target, from_logits=False, reduction=reduction)
    scale = -np.log(np.finfo(dtype).eps)
    h.assert_close(loss, exp_loss, dtype, scale=scale)
    h.assert_close(loss2, exp_loss, dtype, scale=scale)
    h.assert_close(grad, exp_grad, dtype, scale=h.scale(exp_grad))


# --------------------------------------------------------------------------
# argument errors: raised before anything is written, naming the argument


def test_errors(rng):
    x, y = _data(rng, (4, 5), np.float64)
    bad = [
        (TypeError, "logits", dict(logits=np.ones((4, 5), dtype=np.int64))),
        (TypeError, "logits", dict(logits=np.ones((4, 5), dtype=bool))),
        (ValueError, "logits", dict(logits=np.float64(1.0), target=np.int64(0))),
        (ValueError, "target", dict(target=np.array([0, 1, 2]))),
        (ValueError, "target", dict(target=np.array([0, 1, 2, 5]))),
        (ValueError, r"\(3,\)", dict(target=np.array([0, 1, 2, 5]))),
        (ValueError, "target", dict(target=np.array([0, 1, -2, 1]))),
        (ValueError, "target", dict(target=np.ones((4, 4)))),
        (TypeError, "target", dict(target=np.array(["a", "b", "c", "d"]))),
        (TypeError, "target", dict(target=np.array([True, False, True, False]))),
        (ValueError, "reduction", dict(reduction="avg")),
        (ValueError, "empty", dict(empty="none")),
        (ValueError, "label_smoothing", dict(label_smoothing=1.5)),
        (ValueError, "label_smoothing", dict(label_smoothing=-0.1)),
        (ValueError, "label_smoothing", dict(label_smoothing=np.nan)),
        (TypeError, "label_smoothing", dict(label_smoothing="0.1")),
        (ValueError, "z_loss", dict(z_loss=-1.0)),
        (ValueError, "z_loss", dict(z_loss=np.inf)),
        (TypeError, "ignore_index", dict(ignore_index=1.5)),
        (TypeError, "ignore_index", dict(ignore_index=True)),
        (ValueError, "weight", dict(weight=np.ones(4))),
        (ValueError, "weight", dict(weight=-np.ones(5))),
        (ValueError, "weight", dict(weight=np.full(5, np.nan))),
        (TypeError, "weight", dict(weight=np.array(["a"] * 5))),
        (ValueError, "sample_weight", dict(sample_weight=np.ones(5))),
        (ValueError, "sample_weight", dict(sample_weight=np.full(4, np.inf))),
        (ValueError, "sample_weight", dict(sample_weight=-np.ones(4))),
        (TypeError, "axis", dict(axis=0.5)),
        (np.exceptions.AxisError, "axis", dict(axis=2)),
        (TypeError, "n_threads", dict(n_threads=1.0)),
        (ValueError, "n_threads", dict(n_threads=0)),
        (TypeError, "from_logits", dict(from_logits="yes")),
    ]
    for exc, match, kw in bad:
        args = dict(logits=x, target=y)
        args.update(kw)
        logits, target = args.pop("logits"), args.pop("target")
        with pytest.raises(exc, match=match):
            fx.cross_entropy(logits, target, **args)
        out = np.full((4, 5) if np.ndim(logits) == 2 else (1,), 7.0)
        with pytest.raises(exc, match=match):
            fx.cross_entropy_with_grad(logits, target, out=out if out.shape == np.shape(logits) else None,
                                       **args)
        assert np.all(out == 7.0), f"{kw} wrote into out before failing"


def test_invalid_label_names_position(rng):
    x, _ = _data(rng, (2, 3, 4), np.float32)
    y = np.zeros((2, 3), dtype=np.int32)
    y[1, 2] = 9
    with pytest.raises(ValueError, match=r"9.*\(1, 2\)|\(1, 2\).*9"):
        fx.cross_entropy(x, y)
    y[1, 2] = np.iinfo(np.int32).min
    with pytest.raises(ValueError, match="target"):
        fx.cross_entropy(x, y)
    big = np.array([0, 0, 2**63 + 7], dtype=np.uint64)
    with pytest.raises(ValueError, match="target"):
        fx.cross_entropy(x[0], big)


@pytest.mark.parametrize("labels", [[0, 2**64 - 1, 3], [0, 1, 3]])
def test_ignore_index_outside_int64(labels, rng):
    x, _ = _data(rng, (3, 4), np.float64)
    y = np.array(labels, dtype=np.uint64)
    try:
        loss = fx.cross_entropy(x, y, ignore_index=2**64 - 1, reduction="none")
    except ValueError as e:
        assert "ignore_index" in str(e)
    else:
        live = y != 2**64 - 1
        assert np.all(loss[~live] == 0)
        np.testing.assert_allclose(loss[live], ref.cross_entropy(x[live], y[live].astype(np.int64),
                                                                 reduction="none"))


@pytest.mark.parametrize("target", [np.full(3, -100), np.empty((3, 0))])
def test_empty_class_axis(target):
    with pytest.raises(ValueError, match=r"logits|class"):
        fx.cross_entropy(np.empty((3, 0)), target)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_non_native_byte_order(reduction, rng, h):
    x, y = _data(rng, (5, 9), np.float64, ignore_frac=0.2)
    t = _probs(rng, x.shape)
    check(h, x.astype(">f8"), y.astype(">i4"), reduction=reduction)
    check(h, x.astype(">f4"), t.astype(">f8"), reduction=reduction, weight=(rng.random(9) + 1).astype(">f8"))


def test_out_readonly_rejected(rng):
    x, y = _data(rng, (4, 5), np.float64)
    out = np.zeros_like(x)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        fx.cross_entropy_with_grad(x, y, out=out)


def test_failed_calls_write_nothing(rng):
    # Validation precedes every write: neither out= nor inplace logits change.
    x, y = _data(rng, (4, 5), np.float32)
    bad_calls = [
        dict(target=np.array([0, 1, 9, 2])),
        dict(target=y, reduction="none", grad_output=np.ones(3)),
        dict(target=y, grad_output=np.ones(4)),
        dict(target=y, weight=-np.ones(5)),
        dict(target=y, label_smoothing=2.0),
        dict(target=y, softcap=-1.0),
    ]
    for kw in bad_calls:
        logits = x.copy()
        out = np.full_like(x, 7.0)
        with pytest.raises((ValueError, TypeError, NotImplementedError)):
            fx.cross_entropy_with_grad(x, out=out, **kw)
        assert np.all(out == 7.0), kw
        with pytest.raises((ValueError, TypeError, NotImplementedError)):
            fx.cross_entropy_with_grad(logits, inplace=True, **kw)
        np.testing.assert_array_equal(logits, x, err_msg=str(kw))


@pytest.mark.parametrize("call", ["cross_entropy", "with_grad_sum", "log_softmax", "log_softmax_out"])
def test_float16_overflow_no_warning(call):
    x = np.array([[60000.0, -60000.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float16)
    y = np.array([1, 0])
    if call == "cross_entropy":
        got = fx.cross_entropy(x, y, reduction="none")
        assert got[0] == np.inf
    elif call == "with_grad_sum":
        _, grad = fx.cross_entropy_with_grad(x, y, reduction="sum", grad_output=1e6)
        assert grad[0, 0] == np.inf
    elif call == "log_softmax":
        assert fx.log_softmax(x)[0, 1] == -np.inf
    else:
        out = np.empty_like(x)
        assert fx.log_softmax(x, out=out)[0, 1] == -np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0, 1, 4, 15])  # elements past a cache line
def test_streamed_rows_match_cached_rows_at_any_alignment_of_out(offset, dtype, rng):
    # Outputs of 16 MiB or more with rows of 1 KiB or more are written with
    # streaming stores (a row's partial first and last vectors one element
    # at a time), the label's gradient put in its vector before the store;
    # slices of the same rows are small enough to be written through the
    # caches.  Same bits either way, at every alignment of out= to its
    # element (an out= not aligned to its element is rejected:
    # test_bad_input.py).
    n, c = 1040, 4100
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    y = rng.integers(0, c, n)
    y[:3] = [0, c - 1, 16]   # the label in a row's first, last, and a vector's first element
    y[5] = -100
    buf = np.empty(x.nbytes + 256, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset * x.itemsize
    out = buf[start:start + x.nbytes].view(dtype).reshape(x.shape)
    assert out.nbytes >= 16 << 20
    w, sw = np.linspace(0.5, 2, c), np.linspace(1, 3, n)
    probs = fx.softmax(rng.standard_normal((n, c)).astype(dtype))
    cases = [
        (lambda a, o, i: fx.softmax(a, out=o), None),
        (lambda a, o, i: fx.log_softmax(a, out=o), None),
        (lambda a, o, i: fx.cross_entropy_with_grad(a, y[i], out=o, reduction="sum")[0], "labels"),
        (lambda a, o, i: fx.cross_entropy_with_grad(a, y[i], out=o, reduction="sum", weight=w, sample_weight=sw[i])[0],
         "labels"),
        # one row kernel call a row, the fence deferred to the end of a block
        (lambda a, o, i: fx.cross_entropy_with_grad(a, y[i], out=o, reduction="sum", label_smoothing=0.1,
                                                     z_loss=1e-4)[0], "labels"),
        (lambda a, o, i: fx.cross_entropy_with_grad(a, probs[i], out=o, reduction="sum")[0], "probs"),
    ]
    for fn, kind in cases:
        whole = fn(x, out, slice(None))
        sliced = np.empty_like(x)
        parts = [fn(x[i:i + 64], sliced[i:i + 64], slice(i, i + 64)) for i in range(0, n, 64)]
        assert out.tobytes() == sliced.tobytes()
        if kind is not None:
            assert whole == pytest.approx(sum(parts), rel=1e-12)
        if kind == "labels":
            assert not out[5].any()  # ignored


@pytest.mark.parametrize("offset", [0, 4, 16, 60])
def test_large_class_axis_1_gradient_at_any_alignment_of_out(offset, rng):
    # A gradient of 16 MiB or more is written with streaming stores, in units
    # that start on the cache lines of out=: every alignment of out= must
    # give the numbers of the row kernels, and the loss its one summation
    # order (the same bits as without the gradient).
    x = rng.standard_normal((2, 1024, 2048)).astype(np.float32)
    y = rng.integers(0, 1024, (2, 2048))
    y[:, ::7] = -100
    w = (rng.random(1024) + 0.5).astype(np.float32)
    buf = np.empty(x.nbytes + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    out = buf[start:start + x.nbytes].view(np.float32).reshape(x.shape)
    kw = dict(weight=w, label_smoothing=0.1)
    loss, grad = fx.cross_entropy_with_grad(x, y, axis=1, out=out, **kw)
    assert grad is out
    rows_loss, rows_grad = fx.cross_entropy_with_grad(np.moveaxis(x, 1, -1), y, **kw)
    np.testing.assert_allclose(np.moveaxis(grad, 1, -1), rows_grad, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(loss, rows_loss, rtol=1e-6)
    assert loss == fx.cross_entropy(x, y, axis=1, **kw)
    assert np.all(np.moveaxis(grad, 1, -1)[y == -100] == 0)


# The label check runs in units of 65536 labels, in parallel: a bad label in
# any unit, the first of several across units, and ignore_index anywhere.
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("ignore_index", [-100, 3, -7])
@pytest.mark.parametrize("bad_at", [[0], [65535], [65536], [200_000, 150_000], [199_999, 70_000, 3]])
def test_label_check_in_units(n_threads, ignore_index, bad_at, rng):
    n, c = 200_001, 5
    x = rng.standard_normal((n, c)).astype(np.float32)
    y = rng.integers(0, c, n)
    y[::7] = ignore_index
    for i, at in enumerate(bad_at):
        y[at] = c + i if i % 2 == 0 else -1 - i
    first = min(bad_at)
    out = np.full_like(x, 7)
    for call in (lambda: fx.cross_entropy(x, y, ignore_index=ignore_index, n_threads=n_threads),
                 lambda: fx.cross_entropy_with_grad(x, y, ignore_index=ignore_index, out=out,
                                                    n_threads=n_threads)):
        with pytest.raises(ValueError, match=rf"label {y[first]} at position \({first},\)"):
            call()
    assert (out == 7).all()  # nothing written before the check
    # Only ignore_index and valid labels: the mean divides by the live count.
    for at in bad_at:
        y[at] = ignore_index
    live = int(np.count_nonzero(y != ignore_index))
    loss_sum = fx.cross_entropy(x, y, ignore_index=ignore_index, reduction="sum", n_threads=n_threads)
    loss_mean = fx.cross_entropy(x, y, ignore_index=ignore_index, n_threads=n_threads)
    assert loss_mean == pytest.approx(loss_sum / live, rel=1e-12)
    _, grad = fx.cross_entropy_with_grad(x, y, ignore_index=ignore_index, n_threads=n_threads)
    _, grad_sum = fx.cross_entropy_with_grad(x, y, ignore_index=ignore_index, reduction="sum",
                                             n_threads=n_threads)
    np.testing.assert_allclose(grad, grad_sum / live, rtol=1e-6, atol=1e-12)  # p - 1 cancels


def _on_the_general_path(fn, *args, **kwargs):
    """fn(*args, **kwargs) with the small-call fast path turned off."""
    from fastxent import _losses
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_losses, "_small_call_fits", lambda *a: False)
        return fn(*args, **kwargs)


def _spy_small_calls(monkeypatch):
    """A list that gets, for each call of the C fast path, whether it
    answered (False: it declined and the general path took the call)."""
    from fastxent import _core
    taken = []
    real = _core.cross_entropy_small

    def spy(*a):
        result = real(*a)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(_core, "cross_entropy_small", spy)
    return taken


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 10), (600, 10), (5, 32), (6, 33), (40, 1000)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_out", [False, True])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"label_smoothing": 0.2, "z_loss": 1e-3},
                                     {"weight": np.float64}, {"weight": np.float32, "label_smoothing": 0.1,
                                                              "z_loss": 1e-3},
                                     {"sample_weight": True}, {"sample_weight": True, "weight": np.float64}])
def test_small_call_fast_path_matches_general_path(dtype, shape, reduction, with_out, options, rng, monkeypatch):
    # Small calls of cross_entropy and cross_entropy_with_grad run in C (on
    # two threads from SERIAL elements: 40x1000).  Same bits as the general
    # path, and for 'none' the same kind of array (ignored rows 0).
    taken = _spy_small_calls(monkeypatch)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    y[::3] = -100
    y[0] = 0
    if "weight" in options:  # of maximum 3.1, not 1: the kernels take them scaled
        options = dict(options, weight=(rng.random(shape[1]) * 3 + 0.1).astype(options["weight"]))
    if "sample_weight" in options:
        sw = rng.random(shape[0]) * 2
        sw[1::4] = 0.0
        options = dict(options, sample_weight=sw)
    for grad_output in (1.0, 0.37):
        kw = dict(reduction=reduction, grad_output=grad_output, **options)
        out = np.full(shape, np.nan, dtype) if with_out else None
        fast_loss, fast_grad = fx.cross_entropy_with_grad(x, y, out=out, **kw)
        slow_loss, slow_grad = _on_the_general_path(fx.cross_entropy_with_grad, x, y, **kw)
        fast_forward = fx.cross_entropy(x, y, reduction=reduction, **options)
        slow_forward = _on_the_general_path(fx.cross_entropy, x, y, reduction=reduction, **options)
        if reduction == "none":
            for fast, slow in ((fast_loss, slow_loss), (fast_forward, slow_forward)):
                assert fast.dtype == dtype and fast.shape == shape[:1]
                assert fast.tobytes() == slow.tobytes()
            assert np.all(fast_loss[y == -100] == 0)
        else:
            assert type(fast_loss) is float and fast_loss == slow_loss
            assert type(fast_forward) is float and fast_forward == slow_forward
        assert fast_grad.dtype == dtype and fast_grad.shape == shape
        np.testing.assert_array_equal(fast_grad, slow_grad)
        if with_out:
            assert fast_grad is out
    assert taken == [True] * 4  # with the gradient, then without, for each grad_output


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 10), (600, 10), (5, 32), (6, 33), (40, 1000)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.2, "z_loss": 1e-3}, {"weight": np.float64},
                                     {"sample_weight": True, "weight": np.float64}])
def test_small_call_soft_targets_match_general_path(dtype, shape, reduction, options, rng, monkeypatch):
    # Probability targets of the logits' dtype take the C fast path too.
    # Same bits as the general path, a -inf logit of target 0 included.
    taken = _spy_small_calls(monkeypatch)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = rng.random(shape)
    if shape[1] > 1:
        x[0, 0], t[0, 0] = -np.inf, 0.0
    t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    if "weight" in options:
        options = dict(options, weight=rng.random(shape[1]) * 3 + 0.1)
    if "sample_weight" in options:
        options = dict(options, sample_weight=rng.random(shape[0]) * 2)
    kw = dict(reduction=reduction, grad_output=0.37, **options)
    fast_loss, fast_grad = fx.cross_entropy_with_grad(x, t, **kw)
    fast_forward = fx.cross_entropy(x, t, reduction=reduction, **options)
    assert taken == [True, True]
    slow_loss, slow_grad = _on_the_general_path(fx.cross_entropy_with_grad, x, t, **kw)
    slow_forward = _on_the_general_path(fx.cross_entropy, x, t, reduction=reduction, **options)
    assert len(taken) == 2
    for fast, slow in ((fast_loss, slow_loss), (fast_forward, slow_forward)):
        if reduction == "none":
            assert fast.dtype == dtype and fast.shape == shape[:1]
        else:
            assert type(fast) is float
        assert np.asarray(fast).tobytes() == np.asarray(slow).tobytes()
    assert fast_grad.tobytes() == slow_grad.tobytes()
    expected = ref.cross_entropy(x, t, reduction=reduction, **options)
    np.testing.assert_allclose(fast_forward, expected, rtol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("label_dtype", LABEL_DTYPES)
def test_small_call_takes_every_integer_label_dtype(label_dtype, rng, monkeypatch):
    # Labels of a narrower integer dtype are widened for the C fast path;
    # uint64 (whose values past int64 could wrap onto ignore_index) takes
    # the general path.  Same bits either way.
    taken = _spy_small_calls(monkeypatch)
    x = (rng.standard_normal((50, 7)) * 3).astype(np.float32)
    y = rng.integers(0, 7, 50).astype(label_dtype)
    ignore_index = 3  # a class: representable in every dtype
    got = fx.cross_entropy_with_grad(x, y, reduction="none", ignore_index=ignore_index)
    assert taken == [label_dtype != np.uint64]
    want = _on_the_general_path(fx.cross_entropy_with_grad, x, y, reduction="none", ignore_index=ignore_index)
    assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()
    assert np.all(got[0][y == 3] == 0)
    assert fx.cross_entropy(x, y, ignore_index=ignore_index) == _on_the_general_path(
        fx.cross_entropy, x, y, ignore_index=ignore_index)


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_small_call_sums_sample_weights_only_for_the_mean(reduction):
    # Probability targets divide 'mean' by the sample weights' sum; other
    # reductions never form it, whose overflow NumPy would report.
    x = np.zeros((2, 3), np.float32)
    t = np.full((2, 3), 1 / 3, np.float32)
    sw = np.array([1e308, 1e308])
    with np.errstate(over="raise"):
        got = fx.cross_entropy(x, t, sample_weight=sw, reduction=reduction)
        want = _on_the_general_path(fx.cross_entropy, x, t, sample_weight=sw, reduction=reduction)
    assert np.asarray(got).tobytes() == np.asarray(want).tobytes() and np.isposinf(got).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_call_takes_unpickled_arrays(dtype, rng, monkeypatch):
    # Arrays rebuilt by pickle (multiprocessing) carry their own, equal,
    # dtype descriptors: still the fast path, the same bits.
    import pickle
    taken = _spy_small_calls(monkeypatch)
    x = rng.standard_normal((8, 5)).astype(dtype)
    y = rng.integers(0, 5, 8)
    t = rng.random((8, 5)).astype(dtype)
    w, sw = np.linspace(0.5, 2, 5), np.linspace(0, 1, 8)
    xp, yp, tp, wp, swp = pickle.loads(pickle.dumps((x, y, t, w, sw)))
    for target, copy in ((y, yp), (t, tp)):
        got = fx.cross_entropy_with_grad(xp, copy, weight=wp, sample_weight=swp)
        want = _on_the_general_path(fx.cross_entropy_with_grad, x, target, weight=w, sample_weight=sw)
        assert got[0] == want[0] and got[1].tobytes() == want[1].tobytes()
    assert taken == [True, True]


@pytest.mark.parametrize("case", ["bad-label", "all-ignored", "overlapping-out", "readonly-out", "f64-out",
                                  "axis-bool", "axis-float", "smoothing-bool", "z-loss-complex",
                                  "smoothing-above-1", "smoothing-nan", "z-loss-inf", "z-loss-negative",
                                  "weight-negative", "weight-nan", "weight-short", "weight-int", "weight-strided",
                                  "weight-zero", "weight-structured", "logits-structured",
                                  "sample-weight-negative", "sample-weight-2d", "sample-weight-f32"])
def test_small_call_fast_path_declines(case, rng):
    # What the C fast path does not handle, the general path does, with its
    # errors (arguments equal to the defaults but of a rejected type too).
    x = rng.standard_normal((8, 5)).astype(np.float32)
    y = rng.integers(0, 5, 8)
    bad_kind = {"axis-bool": ("axis", True), "axis-float": ("axis", 1.0), "smoothing-bool": ("label_smoothing", False),
                "z-loss-complex": ("z_loss", 0j)}
    if case in bad_kind:
        name, value = bad_kind[case]
        for fn in (fx.cross_entropy, lambda *a, **k: fx.cross_entropy_with_grad(*a, **k)[0]):
            with pytest.raises(TypeError, match=name):
                fn(x, y, **{name: value})
    elif case in ("smoothing-above-1", "smoothing-nan", "z-loss-inf", "z-loss-negative"):
        name, value = {"smoothing-above-1": ("label_smoothing", 1.5), "smoothing-nan": ("label_smoothing", np.nan),
                       "z-loss-inf": ("z_loss", np.inf), "z-loss-negative": ("z_loss", -0.5)}[case]
        for fn in (fx.cross_entropy, lambda *a, **k: fx.cross_entropy_with_grad(*a, **k)[0]):
            with pytest.raises(ValueError, match=name):
                fn(x, y, **{name: value})
    elif case == "bad-label":
        y[3] = 5
        with pytest.raises(ValueError, match="target"):
            fx.cross_entropy_with_grad(x, y)
    elif case == "all-ignored":
        loss, grad = fx.cross_entropy_with_grad(x, np.full(8, -100))
        assert np.isnan(loss) and np.all(grad == 0)
    elif case == "overlapping-out":
        with pytest.raises(ValueError, match="out"):
            fx.cross_entropy_with_grad(x, y, out=x)
    elif case in ("weight-negative", "weight-nan", "weight-short"):
        w = np.ones(4) if case == "weight-short" else np.ones(5)
        w[1] = -1.0 if case == "weight-negative" else np.nan
        for fn in (fx.cross_entropy, lambda *a, **k: fx.cross_entropy_with_grad(*a, **k)[0]):
            with pytest.raises(ValueError, match="weight"):
                fn(x, y, weight=w)
    elif case in ("sample-weight-negative", "sample-weight-2d"):
        sw = np.ones((8, 1)) if case == "sample-weight-2d" else np.ones(8)
        sw[3] = -1.0
        for fn in (fx.cross_entropy, lambda *a, **k: fx.cross_entropy_with_grad(*a, **k)[0]):
            with pytest.raises(ValueError, match="sample_weight"):
                fn(x, y, sample_weight=sw)
    elif case == "sample-weight-f32":
        # Converted by the general path: the bits of the float64 weights.
        sw = np.linspace(0.0, 2.0, 8, dtype=np.float32)
        got = fx.cross_entropy_with_grad(x, y, sample_weight=sw)
        want = fx.cross_entropy_with_grad(x, y, sample_weight=sw.astype(np.float64))
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    elif case in ("weight-structured", "logits-structured"):
        # One float field: a float memoryview would take it.
        one_field = np.dtype([("a", np.float32)])
        kw = {"weight": np.ones(5, one_field)} if case == "weight-structured" else {}
        xs = x.astype(one_field) if case == "logits-structured" else x
        for fn in (fx.cross_entropy, lambda *a, **k: fx.cross_entropy_with_grad(*a, **k)[0]):
            with pytest.raises(TypeError, match="weight" if kw else "logits"):
                fn(xs, y, **kw)
    elif case in ("weight-int", "weight-strided", "weight-zero"):
        # Converted by the general path, or (no row of weight > 0 for 'mean')
        # its empty= result: the general path's bits.
        w = {"weight-int": np.arange(1, 6), "weight-strided": np.linspace(0.5, 2.5, 10)[::2],
             "weight-zero": np.zeros(5)}[case]
        for reduction in ("mean", "sum"):
            got = fx.cross_entropy_with_grad(x, y, weight=w, reduction=reduction)
            want = _on_the_general_path(fx.cross_entropy_with_grad, x, y, weight=w, reduction=reduction)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
            np.testing.assert_array_equal(fx.cross_entropy(x, y, weight=w, reduction=reduction), want[0])
        if case == "weight-zero":
            assert np.isnan(fx.cross_entropy(x, y, weight=w))  # empty='nan', as in PyTorch
    elif case == "readonly-out":
        out = np.zeros_like(x)
        out.flags.writeable = False
        with pytest.raises(ValueError, match="out"):
            fx.cross_entropy_with_grad(x, y, out=out)
    else:
        with pytest.raises(TypeError, match="out"):
            fx.cross_entropy_with_grad(x, y, out=np.zeros(x.shape))


@pytest.mark.parametrize("fast", [True, False])  # the small-call path and the general one
def test_weights_past_the_float32_range_leave_ignored_rows_zero(fast, monkeypatch):
    # The kernels take the weights divided by their maximum; the losses are
    # scaled back in double (0 * float32(1e300) was NaN).
    if not fast:
        from fastxent import _losses
        monkeypatch.setattr(_losses, "_small_call_fits", lambda *a: False)
    x = np.array([[0.0, 1.0], [2.0, 0.0], [0.5, 0.5]], np.float32)
    y = np.array([0, -100, 1])
    loss = fx.cross_entropy(x, y, weight=np.array([1e300, 1e300]), reduction="none")
    assert loss.dtype == np.float32 and loss[1] == 0 and np.isposinf(loss[[0, 2]]).all()
    loss, grad = fx.cross_entropy_with_grad(x, y, weight=np.array([1e300, 1e300]), reduction="none")
    assert loss[1] == 0 and np.all(grad[1] == 0)
    # In range, the mean is unchanged by the scale.
    w = np.array([2e30, 1e30])
    expected = ref.cross_entropy(x, y, weight=w)
    np.testing.assert_allclose(fx.cross_entropy(x, y, weight=w), expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [33, 100, 512, 1024, 1025])
def test_label_rows_in_groups_match_one_row_at_a_time(dtype, n_classes, rng, h):
    """Without label smoothing, z-loss or softcap the row kernel takes short
    rows a few at a time (fx_ce_label_rows): every row's loss, gradient and
    lse, with class and sample weights and a per-row upstream gradient, must
    have the bits of a call on that row alone (which the group never sees)."""
    n = 23
    x = (rng.standard_normal((n, n_classes)) * 5).astype(dtype)
    y = rng.integers(0, n_classes, n)
    x[1] = -np.inf
    x[2, 7] = np.inf
    x[5, 3] = np.nan
    x[6] = 0.0
    y[8] = -100                      # ignored
    x[9, y[9]] = 1e4                 # loss exactly 0
    w = rng.uniform(0.5, 2.0, n_classes)
    sw = rng.uniform(0.0, 3.0, n)
    go = rng.standard_normal(n)
    for weights in ({}, {"weight": w}, {"sample_weight": sw}, {"weight": w, "sample_weight": sw}):
        def rows_of(rows):
            return {k: (v[rows] if k == "sample_weight" else v) for k, v in weights.items()}
        alone = [fx.cross_entropy_with_grad(x[i:i + 1], y[i:i + 1], reduction="none", grad_output=go[i:i + 1],
                                            return_lse=True, **rows_of(slice(i, i + 1))) for i in range(n)]
        row_loss, row_grad, row_lse = (np.concatenate(parts) for parts in zip(*alone))
        # Rows 10 on are finite: their sum is that of the one-row sums.
        finite = slice(10, n)
        sum_alone = sum(fx.cross_entropy(x[i:i + 1], y[i:i + 1], reduction="sum", **rows_of(slice(i, i + 1)))
                        for i in range(10, n))
        for n_threads in (1, 2):
            loss, grad, lse = fx.cross_entropy_with_grad(x, y, reduction="none", grad_output=go, return_lse=True,
                                                         n_threads=n_threads, **weights)
            assert loss.tobytes() == row_loss.tobytes()
            assert grad.tobytes() == row_grad.tobytes()
            assert lse.tobytes() == row_lse.tobytes()
            inplace = x.copy()
            fx.cross_entropy_with_grad(inplace, y, reduction="none", grad_output=go, inplace=True,
                                       n_threads=n_threads, **weights)
            assert inplace.tobytes() == row_grad.tobytes()
            forward = fx.cross_entropy(x, y, reduction="none", n_threads=n_threads, **weights)
            assert forward.tobytes() == row_loss.tobytes()
            total = fx.cross_entropy(x[finite], y[finite], reduction="sum", n_threads=n_threads,
                                     **rows_of(finite))
            assert np.isfinite(total) and total == pytest.approx(sum_alone, rel=1e-12)
        # ... and the group's rows against the float64 reference.
        check(h, x[finite], y[finite], reduction="none", grad_output=go[finite], **rows_of(finite))
    lse_alone = np.array([fx.logsumexp(x[i:i + 1], n_threads=1)[0] for i in range(n)])
    assert row_lse.tobytes() == lse_alone.tobytes()
    # The small-call fast path (mean) and the general path agree too.
    ones = np.ones(n - 10)
    small = fx.cross_entropy_with_grad(x[finite], y[finite])
    general = fx.cross_entropy_with_grad(x[finite], y[finite], sample_weight=ones)
    assert np.float64(small[0]).tobytes() == np.float64(general[0]).tobytes()
    assert small[1].tobytes() == general[1].tobytes()


def _rising_rows(n, dtype, rng):
    """Rows of n classes whose running maximum (over 1024-element blocks)
    rises block after block, never, only in the last block or at the second
    slice's start, and rows that open with whole blocks of -inf."""
    ramp = np.linspace(-20.0, 20.0, n)
    rows = np.stack([ramp, -ramp, np.zeros(n), np.full(n, -1000.0), np.zeros(n)]) + rng.standard_normal((5, n))
    rows[2, -1] = 30.0
    rows[3, :1024] = -np.inf             # 0 * exp(1000) must not make a NaN
    slice_ = fx._core.SLICE
    if n > slice_ + 1024:
        rows[4, slice_:slice_ + 1024] = -np.inf
        rows[4, slice_ + 1024:] += 10.0
    return rows.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [1025, 5000, 2 * 16384 - 1, 2 * 16384 + 3])
def test_long_rows_whose_maximum_rises(dtype, n_classes, rng, h):
    """float64 rows keep the scan's exps for softmax and the gradient, each
    block's at the running maximum it was scanned at, rescaled to the row's
    maximum when written: every op that writes from them, on rows whose
    maximum moves in every way, against the reference."""
    assert fx._core.SLICE == 16384
    x = _rising_rows(n_classes, dtype, rng)
    y = np.array([n_classes - 1, 0, n_classes - 1, 5000 % n_classes, n_classes // 2])
    w = rng.uniform(0.5, 2.0, n_classes)
    probs = ref.softmax(rng.standard_normal(x.shape)).astype(dtype)
    scale = h.scale(x)
    h.assert_close(fx.softmax(x), ref.softmax(x), dtype, scale=scale)
    for target, kw in [(y, {}), (y, {"weight": w}), (y, {"label_smoothing": 0.1, "z_loss": 1e-3}),
                       (probs, {}), (probs, {"weight": w})]:
        loss, grad = fx.cross_entropy_with_grad(x, target, reduction="none", **kw)
        h.assert_close(loss, ref.cross_entropy(x, target, reduction="none", **kw), dtype, scale=scale)
        expected = ref.cross_entropy_grad(x, target, reduction="none", **kw)
        h.assert_close(grad, expected, dtype, scale=scale)
        inplace = x.copy()
        fx.cross_entropy_with_grad(inplace, target, reduction="none", inplace=True, **kw)
        assert inplace.tobytes() == grad.tobytes()


def test_weighted_mean_denominator_is_the_exact_sum(rng):
    """'mean' divides by sum over live rows of weight[y] * sample_weight
    (a compensated sum in label order): within an ulp of math.fsum over a
    long batch with ignored rows, inf when it overflows, and the weighted
    mean equals the reference's."""
    import math

    from fastxent import _core

    n, c = 300_000, 7
    y = rng.integers(0, c, n)
    y[rng.random(n) < 0.2] = -100
    w = rng.random(c) * 1e3
    sw = rng.random(n) * 1e-3 + np.where(rng.random(n) < 0.01, 1e8, 0.0)  # terms of very different sizes
    live = y != -100
    exact = math.fsum(w[y[live]] * sw[live])
    got = _core.live_weight_sum(y, -100, w, sw)
    assert abs(got - exact) <= np.spacing(exact)
    assert _core.live_weight_sum(y, -100, None, None) == live.sum()
    assert _core.live_weight_sum(y, -100, w, None) == pytest.approx(math.fsum(w[y[live]]), rel=1e-15)
    assert _core.live_weight_sum(y[:0], -100, w, sw[:0]) == 0.0
    assert _core.live_weight_sum(np.zeros(3, np.int64), -100, np.array([1e308]), np.full(3, 1e10)) == np.inf
    with pytest.raises(ValueError, match="sample_weight"):
        _core.live_weight_sum(y, -100, w, sw[:-1])

    x = rng.standard_normal((n, c))
    np.testing.assert_allclose(fx.cross_entropy(x, y, weight=w, sample_weight=sw),
                               ref.cross_entropy(x, y, weight=w, sample_weight=sw), rtol=1e-12)
