"""binary_cross_entropy and binary_cross_entropy_with_grad.

The oracle is fastxent._reference (plain float64 NumPy); gradients are also
checked against finite differences, so a wrong closed form in the reference
and the kernel alike cannot pass unnoticed.
"""
import itertools

import numpy as np
import pytest

import fastxent as fx
from fastxent import _reference as ref

DTYPES = [np.float32, np.float64, np.float16]
REDUCTIONS = ["mean", "sum", "none"]
SHAPES = [(7,), (6, 5), (2, 3, 4)]
# Each option is a function (rng, shape, dtype) -> keyword arguments, so the
# weights take the shape of the array under test.
OPTIONS = {
    "plain": lambda rng, shape, dt: {},
    "weight_last": lambda rng, shape, dt: {"weight": (rng.random(shape[-1]) * 2 + 0.1).astype(dt)},
    "weight_full": lambda rng, shape, dt: {"weight": (rng.random(shape) * 2).astype(dt)},
    "weight_scalar": lambda rng, shape, dt: {"weight": 2.5},
    "pos_weight_last": lambda rng, shape, dt: {"pos_weight": (rng.random(shape[-1]) * 3 + 0.1).astype(dt)},
    "pos_weight_scalar": lambda rng, shape, dt: {"pos_weight": 3.0},
    "smoothing": lambda rng, shape, dt: {"label_smoothing": 0.2},
    "everything": lambda rng, shape, dt: {"weight": (rng.random(shape[-1]) + 0.5).astype(dt),
                                          "pos_weight": (rng.random(shape[-1]) * 3).astype(dt),
                                          "label_smoothing": 0.1},
}


def _data(rng, shape, dtype, from_logits):
    """Logits (or probabilities away from 0 and 1), and targets mixing hard
    0/1 labels with soft probabilities."""
    if from_logits:
        x = rng.standard_normal(shape) * 3
    else:
        x = rng.uniform(0.02, 0.98, shape)
    t = rng.random(shape)
    hard = rng.random(shape) < 0.5
    t[hard] = np.round(t[hard])
    return x.astype(dtype), t.astype(dtype)


def _loss_scale(x, reduction):
    # A sum of n element losses carries n times the rounding of one.
    return max(1.0, float(np.max(np.abs(x.astype(np.float64))))) * (x.size if reduction == "sum" else 1)


def _cases():
    for shape, from_logits, option in itertools.product(SHAPES, [True, False], OPTIONS):
        if not from_logits and option.startswith("pos_weight") or (not from_logits and option == "everything"):
            continue  # pos_weight needs logits (as in PyTorch)
        yield shape, from_logits, option


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape,from_logits,option", list(_cases()))
def test_matches_reference(dtype, reduction, shape, from_logits, option, rng, h):
    x, t = _data(rng, shape, dtype, from_logits)
    kw = dict(OPTIONS[option](rng, shape, dtype), reduction=reduction, from_logits=from_logits)
    x0, t0 = x.copy(), t.copy()
    go = rng.standard_normal(shape).astype(dtype) if reduction == "none" else -1.7
    exp_loss = ref.binary_cross_entropy(x, t, **kw)
    exp_grad = ref.binary_cross_entropy_grad(x, t, grad_output=go, **kw)

    loss = fx.binary_cross_entropy(x, t, **kw)
    loss2, grad = fx.binary_cross_entropy_with_grad(x, t, grad_output=go, **kw)
    scale = _loss_scale(x, reduction) * (3 if "weight" in option or "everything" in option else 1)
    for got in (loss, loss2):
        if reduction == "none":
            assert isinstance(got, np.ndarray) and got.shape == shape
        else:
            assert type(got) is float
        h.assert_close(got, exp_loss, dtype, scale=scale)
    assert grad.shape == shape
    # Probabilities near 0.02 give gradients up to 1/0.02: judge them on that scale.
    h.assert_close(grad, exp_grad, dtype, scale=(1.0 if from_logits else 50.0) * 3)
    h.unchanged(x0, x)
    h.unchanged(t0, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_scalar_grad_output_and_none(dtype, reduction, rng, h):
    """A scalar grad_output scales every element, also with reduction='none'."""
    x, t = _data(rng, (5, 4), dtype, True)
    _, g1 = fx.binary_cross_entropy_with_grad(x, t, reduction=reduction)
    _, g2 = fx.binary_cross_entropy_with_grad(x, t, reduction=reduction, grad_output=0.5)
    h.assert_close(g2, ref.binary_cross_entropy_grad(x, t, reduction=reduction, grad_output=0.5), dtype)
    h.assert_close(g2, 0.5 * g1.astype(np.float64), dtype)


def test_mean_averages_over_every_element(rng):
    x, t = _data(rng, (3, 4, 5), np.float64, True)
    np.testing.assert_allclose(fx.binary_cross_entropy(x, t),
                               fx.binary_cross_entropy(x, t, reduction="sum") / x.size, rtol=1e-14)
    np.testing.assert_allclose(fx.binary_cross_entropy(x, t, reduction="none").sum(),
                               fx.binary_cross_entropy(x, t, reduction="sum"), rtol=1e-13)


def test_float16_in_float16_out(rng, h):
    x, t = _data(rng, (4, 6), np.float16, True)
    loss = fx.binary_cross_entropy(x, t, reduction="none")
    _, grad = fx.binary_cross_entropy_with_grad(x, t)
    assert loss.dtype == np.float16 and grad.dtype == np.float16
    assert type(fx.binary_cross_entropy(x, t)) is float
    h.assert_close(loss, ref.binary_cross_entropy(x, t, reduction="none"), np.float16)


def test_bool_and_integer_targets_are_labels(rng):
    x, t = _data(rng, (5, 3), np.float64, True)
    hard = rng.random((5, 3)) < 0.5
    expected = fx.binary_cross_entropy(x, hard.astype(np.float64), reduction="none")
    np.testing.assert_array_equal(fx.binary_cross_entropy(x, hard, reduction="none"), expected)
    np.testing.assert_array_equal(fx.binary_cross_entropy(x, hard.astype(np.int8), reduction="none"), expected)


def test_noncontiguous_inputs(rng, h):
    x, t = _data(rng, (6, 5), np.float64, True)
    w = rng.random(5) + 0.5
    expected = ref.binary_cross_entropy(x, t, weight=w, reduction="none")
    got = fx.binary_cross_entropy(h.noncontiguous(x), h.noncontiguous(t), weight=h.noncontiguous(w),
                                  reduction="none")
    h.assert_close(got, expected, np.float64)
    got = fx.binary_cross_entropy(x.T, t.T, reduction="none")
    h.assert_close(got, ref.binary_cross_entropy(x.T, t.T, reduction="none"), np.float64)


# ---------------------------------------------------------------- out= / inplace


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_out_receives_the_gradient(dtype, reduction, rng, h):
    x, t = _data(rng, (6, 5), dtype, True)
    x0 = x.copy()
    _, expected = fx.binary_cross_entropy_with_grad(x, t, reduction=reduction)
    out = np.full(x.shape, 7, dtype=dtype)
    loss, grad = fx.binary_cross_entropy_with_grad(x, t, reduction=reduction, out=out)
    assert grad is out
    np.testing.assert_array_equal(out, expected)
    h.unchanged(x0, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("from_logits", [True, False])
def test_inplace_overwrites_x(dtype, reduction, from_logits, rng):
    x, t = _data(rng, (2, 3, 4), dtype, from_logits)
    exp_loss, exp_grad = fx.binary_cross_entropy_with_grad(x, t, reduction=reduction, from_logits=from_logits)
    loss, grad = fx.binary_cross_entropy_with_grad(x, t, reduction=reduction, from_logits=from_logits,
                                                   inplace=True)
    assert grad is x
    np.testing.assert_array_equal(x, exp_grad)
    np.testing.assert_array_equal(np.asarray(loss), np.asarray(exp_loss))


# ---------------------------------------------------------------- edge values


# A zero-length last axis is reshaped with reshape(-1, 0), which NumPy
# cannot resolve (bug in _binary._prepare).
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (0, 4), (3, 0), (2, 0, 5)])
def test_empty(dtype, shape):
    x = np.zeros(shape, dtype)
    t = np.zeros(shape, dtype)
    assert np.isnan(fx.binary_cross_entropy(x, t))  # mean of nothing, as np.mean / PyTorch
    assert fx.binary_cross_entropy(x, t, reduction="sum") == 0.0
    none = fx.binary_cross_entropy(x, t, reduction="none")
    assert none.shape == shape and none.dtype == dtype
    for reduction in REDUCTIONS:
        _, grad = fx.binary_cross_entropy_with_grad(x, t, reduction=reduction)
        assert grad.shape == shape and grad.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_dimensional(dtype, h):
    x, t = dtype(1.5), 0.25
    loss = fx.binary_cross_entropy(x, t, reduction="none")
    loss2, grad = fx.binary_cross_entropy_with_grad(x, t, reduction="none", pos_weight=np.array([2.0]))
    assert loss.shape == () and grad.shape == () and grad.dtype == dtype
    h.assert_close(loss, ref.binary_cross_entropy(x, t, reduction="none"), dtype)
    h.assert_close(grad, ref.binary_cross_entropy_grad(x, t, reduction="none", pos_weight=2.0), dtype)
    assert fx.binary_cross_entropy(x, t) == pytest.approx(float(loss), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pos_weight", [None, 2.0])
def test_extreme_logits(dtype, pos_weight, h):
    vals = np.array([1e30, -1e30, np.inf, -np.inf, np.nan, 0.0, 80.0, -80.0, 700.0, -700.0])
    x = np.repeat(vals, 3).astype(dtype)
    t = np.tile([0.0, 1.0, 0.5], vals.size).astype(dtype)
    kw = dict(pos_weight=pos_weight, reduction="none")
    with np.errstate(over="ignore"):
        loss = fx.binary_cross_entropy(x, t, **kw)
    _, grad = fx.binary_cross_entropy_with_grad(x, t, **kw)
    h.assert_close(loss, ref.binary_cross_entropy(x, t, **kw), dtype, scale=float(np.max(np.abs(x[np.isfinite(x)]))))
    h.assert_close(grad, ref.binary_cross_entropy_grad(x, t, **kw), dtype)
    # Finite logits never give a non-finite loss or gradient (the stable form).
    finite = np.isfinite(x)
    assert np.all(np.isfinite(loss[finite])) and np.all(np.isfinite(grad[finite]))
    # A confident right answer costs nothing; a confident wrong one costs |x|.
    big = x == dtype(1e30)
    assert np.all(loss[big & (t == 1)] == 0)
    h.assert_close(loss[big & (t == 0)], np.float64(1e30), dtype, scale=1.0)
    assert np.all(np.isnan(loss[np.isnan(x)])) and np.all(np.isnan(grad[np.isnan(x)]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probabilities_exactly_zero_and_one(dtype, h):
    """PyTorch clamps each log at -100, so a certain wrong answer costs 100."""
    p = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0], dtype)
    t = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 0.5], dtype)
    loss = fx.binary_cross_entropy(p, t, reduction="none", from_logits=False)
    _, grad = fx.binary_cross_entropy_with_grad(p, t, reduction="none", from_logits=False)
    h.assert_close(loss, ref.binary_cross_entropy(p, t, reduction="none", from_logits=False), dtype,
                   scale=100.0)
    h.assert_close(grad, ref.binary_cross_entropy_grad(p, t, reduction="none", from_logits=False), dtype,
                   rtol=h.tolerance(dtype)[0], atol=1.0)
    np.testing.assert_array_equal(loss[[0, 3]], 0)
    np.testing.assert_allclose(loss[[1, 2]], 100.0, rtol=1e-6)
    np.testing.assert_allclose(loss[[4, 5]], 50.0, rtol=1e-6)
    assert np.all(np.isfinite(grad))


# ---------------------------------------------------------------- finite differences


def _fd(f, x, v, step):
    """4-point central difference of f along v: error O(step**4)."""
    return (-f(x + 2 * step * v) + 8 * f(x + step * v) - 8 * f(x - step * v) + f(x - 2 * step * v)) / (12 * step)


@pytest.mark.parametrize("from_logits,option", [(True, "plain"), (True, "weight_full"), (True, "pos_weight_last"),
                                                (True, "smoothing"), (True, "everything"), (False, "plain"),
                                                (False, "weight_full"), (False, "smoothing")])
def test_gradient_matches_finite_differences(from_logits, option, rng):
    shape = (4, 5)
    x, t = _data(rng, shape, np.float64, from_logits)
    if not from_logits:
        x = rng.uniform(0.1, 0.9, shape)
    kw = dict(OPTIONS[option](rng, shape, np.float64), from_logits=from_logits)
    step = 1e-3 if from_logits else 1e-4
    # Element-wise loss: moving every input at once still gives each
    # element's own derivative with reduction='none'.
    ones = np.ones(shape)
    fd = _fd(lambda z: fx.binary_cross_entropy(z, t, reduction="none", **kw), x, ones, step)
    _, grad = fx.binary_cross_entropy_with_grad(x, t, reduction="none", **kw)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)
    # And the reduced losses along a random direction.
    v = rng.standard_normal(shape)
    for reduction in ["mean", "sum"]:
        fd = _fd(lambda z: fx.binary_cross_entropy(z, t, reduction=reduction, **kw), x, v, step)
        _, grad = fx.binary_cross_entropy_with_grad(x, t, reduction=reduction, **kw)
        np.testing.assert_allclose(np.sum(grad * v), fd, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------- threads


@pytest.fixture(scope="module")
def big():
    # 512 x 1000 = 512000 elements: above the serial threshold (fx._core.SERIAL elements).
    rng = np.random.default_rng(77)
    x = rng.standard_normal((512, 1000)) * 4
    x[3, 5] = np.nan
    t = rng.random((512, 1000))
    t[::2] = np.round(t[::2])
    return x, t, rng.random(1000) + 0.5, rng.random(1000) * 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("from_logits", [True, False])
def test_bit_identical_across_threads(dtype, reduction, from_logits, big):
    x, t, w, pw = big
    if from_logits:
        kw = dict(weight=w.astype(dtype), pos_weight=pw.astype(dtype), label_smoothing=0.1)
    else:
        x = 1 / (1 + np.exp(-np.nan_to_num(x)))
        kw = dict(weight=w.astype(dtype))
    x = x.astype(dtype)
    t = t.astype(dtype)
    results = []
    for nt in [1, 2, None]:
        loss = fx.binary_cross_entropy(x, t, reduction=reduction, from_logits=from_logits, n_threads=nt, **kw)
        loss2, grad = fx.binary_cross_entropy_with_grad(x, t, reduction=reduction, from_logits=from_logits,
                                                         n_threads=nt, **kw)
        results.append((np.asarray(loss).tobytes(), np.asarray(loss2).tobytes(), grad.tobytes()))
    assert results[1] == results[0], "n_threads=2 differs from n_threads=1"
    assert results[2] == results[0], "n_threads=None differs from n_threads=1"


# ---------------------------------------------------------------- bad input

X = np.array([[0.5, -1.0, 2.0], [0.1, 0.2, -0.3]])
T = np.array([[1.0, 0.0, 1.0], [0.0, 0.5, 1.0]])

BAD = [
    # (keyword overrides, exception, argument named in the message)
    (dict(x=np.array([[1, 2, 3], [4, 5, 6]])), TypeError, "x"),
    (dict(x=X > 0), TypeError, "x"),
    (dict(x=X.astype(complex)), TypeError, "x"),
    (dict(target=T[:, :2]), ValueError, "target"),
    (dict(target=T.ravel()), ValueError, "target"),
    (dict(target=np.array([["a", "b", "c"], ["d", "e", "f"]])), TypeError, "target"),
    (dict(target=T.astype(complex)), TypeError, "target"),
    (dict(target=T * 2), ValueError, "target"),
    (dict(target=T - 0.6), ValueError, "target"),
    (dict(target=np.where(T == 0.5, np.nan, T)), ValueError, "target"),
    (dict(from_logits=False), ValueError, "x"),  # X holds values outside [0, 1]
    (dict(x=np.where(T == 0.5, np.nan, T), from_logits=False), ValueError, "x"),
    (dict(from_logits="yes"), TypeError, "from_logits"),
    (dict(from_logits=None), TypeError, "from_logits"),
    (dict(weight=np.ones(2)), ValueError, "weight"),
    (dict(weight=np.ones((3, 3))), ValueError, "weight"),
    (dict(weight=-np.ones(3)), ValueError, "weight"),
    (dict(weight=np.array([1.0, np.nan, 1.0])), ValueError, "weight"),
    (dict(weight=np.array([1.0, np.inf, 1.0])), ValueError, "weight"),
    (dict(weight=np.array(["a", "b", "c"])), TypeError, "weight"),
    (dict(pos_weight=np.ones(2)), ValueError, "pos_weight"),
    (dict(pos_weight=np.ones((2, 3))), ValueError, "pos_weight"),
    (dict(pos_weight=-1.0), ValueError, "pos_weight"),
    (dict(pos_weight=np.array([1.0, np.nan, 1.0])), ValueError, "pos_weight"),
    (dict(pos_weight=np.array(["a", "b", "c"])), TypeError, "pos_weight"),
    (dict(x=np.abs(T), pos_weight=np.ones(3), from_logits=False), ValueError, "pos_weight"),
    (dict(reduction="avg"), ValueError, "reduction"),
    (dict(reduction=None), ValueError, "reduction"),
    (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing"),
    (dict(label_smoothing=np.nan), ValueError, "label_smoothing"),
    (dict(label_smoothing="0.1"), TypeError, "label_smoothing"),
    (dict(n_threads=0), ValueError, "n_threads"),
    (dict(n_threads=1.5), TypeError, "n_threads"),
    (dict(n_threads="2"), TypeError, "n_threads"),
]
BAD_GRAD_ONLY = [
    (dict(grad_output=np.ones(X.shape)), ValueError, "grad_output"),  # array with reduction='mean'
    (dict(grad_output=np.ones(3), reduction="none"), ValueError, "grad_output"),
    (dict(grad_output=np.ones((2, 3), dtype=complex), reduction="none"), TypeError, "grad_output"),
    (dict(grad_output="1"), TypeError, "grad_output"),
    (dict(inplace="yes"), TypeError, "inplace"),
]
BAD_OUT = [
    (np.zeros((3, 2)), ValueError),
    (np.zeros((2, 3), np.float32), TypeError),
    (np.zeros((3, 2)).T, ValueError),
    ([[0.0] * 3] * 2, TypeError),
]


def _call(kind, kw):
    args = dict(x=X.copy(), target=T.copy())
    args.update(kw)
    x, target = args.pop("x"), args.pop("target")
    fn = fx.binary_cross_entropy if kind == "loss" else fx.binary_cross_entropy_with_grad
    return fn(x, target, **args)


@pytest.mark.parametrize("kind", ["loss", "grad"])
@pytest.mark.parametrize("kw,exc,name", BAD, ids=[f"{n}-{i}" for i, (_, _, n) in enumerate(BAD)])
def test_bad_arguments_raise(kind, kw, exc, name):
    with pytest.raises(exc, match=rf"\b{name}\b"):
        _call(kind, kw)


@pytest.mark.parametrize("kw,exc,name", BAD + BAD_GRAD_ONLY,
                         ids=[f"{n}-{i}" for i, (_, _, n) in enumerate(BAD + BAD_GRAD_ONLY)])
@pytest.mark.parametrize("buffer", ["out", "inplace"])
def test_bad_arguments_write_nothing(kw, exc, name, buffer, h):
    """Validation comes first: a failed call leaves out= or the in-place x as they were."""
    x = np.array(kw.get("x", X), copy=True)
    if buffer == "inplace" and (x.dtype not in (np.float32, np.float64) or "inplace" in kw):
        pytest.skip("inplace=True needs float32/float64 x; the inplace flag itself is under test")
    x_before = x.copy()
    extra = dict(kw, x=x)
    if buffer == "out":
        out = np.full(X.shape, 123.0)
        before = out.copy()
        extra["out"] = out
    else:
        extra["inplace"] = True
        out, before = x, x_before
    with pytest.raises(exc, match=rf"\b{name}\b"):
        _call("grad", extra)
    h.unchanged(before, out)
    h.unchanged(x_before, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad_value", [np.nan, -1e-30, 1.0000002, np.inf, -np.inf])
@pytest.mark.parametrize("where,call", [(where, call) for where in ("target", "x")
                                         for call in ("loss", "none", "pos_weight", "grad", "grad-out")
                                         if (where, call) != ("x", "pos_weight")])  # pos_weight: logits
@pytest.mark.parametrize("at", [(0, 0), (301, 517), (599, 999)])
def test_range_check_of_a_large_array(dtype, bad_value, where, call, at):
    # Large arrays are checked in parallel units: one bad value anywhere
    # (first, inside, last element) is found and named with its position;
    # 0, 1 and -0.0 are in range.  Into fresh outputs the kernel counts them
    # in its pass (per row with pos_weight), into out= a pass checks first.
    x = np.full((600, 1000), 0.5, dtype)
    t = np.ones_like(x)
    t[::2] = 0
    t[1, :3] = (-0.0, 0.0, 1.0)
    kw = dict(from_logits=where == "target", n_threads=2)
    fn = fx.binary_cross_entropy_with_grad if call.startswith("grad") else fx.binary_cross_entropy
    if call == "none":
        kw["reduction"] = "none"
    if call == "pos_weight":
        kw["pos_weight"] = np.linspace(0.5, 2.0, 1000)
    out = np.full_like(x, 7.0) if call == "grad-out" else None
    if out is not None:
        kw["out"] = out
    assert np.all(np.isfinite(fn(x, t, **kw)[0] if fn is fx.binary_cross_entropy_with_grad else fn(x, t, **kw)))
    out_before = None if out is None else out.copy()
    (t if where == "target" else x)[at] = bad_value
    with pytest.raises(ValueError, match=rf"^{where} .*at position \({at[0]}, {at[1]}\)"):
        fn(x, t, **kw)
    if out is not None:
        np.testing.assert_array_equal(out, out_before)  # written by the good call, not by the failed one


@pytest.mark.parametrize("out,exc", BAD_OUT, ids=["shape", "dtype", "order", "list"])
def test_bad_out(out, exc, h):
    x = X.copy()
    with pytest.raises(exc, match=r"\bout\b"):
        fx.binary_cross_entropy_with_grad(x, T, out=out)
    h.unchanged(X, x)


def test_out_readonly_or_overlapping_or_with_inplace(h):
    x = X.copy()
    ro = h.readonly(np.zeros(X.shape))
    with pytest.raises(ValueError, match=r"\bout\b"):
        fx.binary_cross_entropy_with_grad(x, T, out=ro)
    with pytest.raises(ValueError, match=r"\bout\b"):
        fx.binary_cross_entropy_with_grad(x, T, out=x)
    out = np.zeros(X.shape)
    with pytest.raises(ValueError, match="inplace"):
        fx.binary_cross_entropy_with_grad(x, T, out=out, inplace=True)
    h.unchanged(X, x)
    assert not out.any()


def test_inplace_needs_a_writable_float_ndarray(h):
    with pytest.raises(TypeError, match=r"\bx\b"):
        fx.binary_cross_entropy_with_grad(X.tolist(), T, inplace=True)
    with pytest.raises(TypeError, match=r"\bx\b"):
        fx.binary_cross_entropy_with_grad(X.astype(np.float16), T, inplace=True)
    ro = h.readonly(X)
    with pytest.raises(ValueError, match=r"\bx\b"):
        fx.binary_cross_entropy_with_grad(ro, T, inplace=True)
    h.unchanged(X, ro)
