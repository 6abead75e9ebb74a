"""Hypothesis property tests: random shapes, dtypes and options vs the reference."""
import numpy as np
import pytest

import fastxent as fx
from fastxent import _reference as ref

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.float32, np.float64]


@st.composite
def problems(draw):
    """Logits, a target and options for one cross-entropy call."""
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(-ndim, ndim - 1))
    n_classes = shape[axis]
    # Widen the class axis now and then, to reach the SIMD bodies and tails.
    if draw(st.booleans()):
        n_classes = draw(st.integers(1, 70))
        shape = shape[:axis % ndim] + (n_classes,) + shape[axis % ndim + 1:]
    elements = st.floats(-30, 30, allow_nan=False, allow_infinity=False, width=32)
    x = draw(hnp.arrays(dtype, shape, elements=elements))
    tshape = shape[:axis % ndim] + shape[axis % ndim + 1:]
    kind = draw(st.sampled_from(["labels", "probs"]))
    ignore_index = draw(st.sampled_from([-100, -1, 0]))
    if kind == "labels":
        label_dtype = draw(st.sampled_from([np.int8, np.int32, np.int64, np.uint8, np.uint16]))
        lo = 0
        hi = min(n_classes - 1, np.iinfo(label_dtype).max)
        y = draw(hnp.arrays(np.int64, tshape, elements=st.integers(lo, hi)))
        if np.dtype(label_dtype).kind == "i" and draw(st.booleans()):
            mask = draw(hnp.arrays(bool, tshape))
            y = np.where(mask, ignore_index, y)
        target = y.astype(label_dtype)
    else:
        raw = draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1)))
        raw = raw + 1e-3
        target = (raw / raw.sum(axis=axis, keepdims=True)).astype(dtype)
    kw = dict(axis=axis, ignore_index=ignore_index,
              reduction=draw(st.sampled_from(["mean", "sum", "none"])),
              label_smoothing=draw(st.sampled_from([0.0, 0.1, 0.5, 1.0])),
              z_loss=draw(st.sampled_from([0.0, 1e-4, 0.1])),
              empty=draw(st.sampled_from(["nan", "zero"])))
    # Weights: exact zeros (rows that do not count) or moderate values; tiny
    # class weights underflow in float32 (test_cross_entropy's
    # test_tiny_class_weight_float32 covers that separately).
    weights = st.just(0.0) | st.floats(1e-3, 3)
    if draw(st.booleans()):
        kw["weight"] = draw(hnp.arrays(np.float64, (n_classes,), elements=weights))
    if draw(st.booleans()):
        kw["sample_weight"] = draw(hnp.arrays(np.float64, tshape, elements=weights))
    if kw["reduction"] == "none" and draw(st.booleans()):
        go = draw(hnp.arrays(np.float64, tshape, elements=st.floats(-2, 2)))
    else:
        go = draw(st.floats(-2, 2))
    return x, target, kw, go


def _tols(dtype, scale, z_loss):
    # conftest's tolerances; the absolute one grows with the logits' scale,
    # with z*lse**2 (whose error is 2 z lse d(lse)), and for sums with rows.
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (1e-5, 1e-6)
    return rtol, atol * scale * (1 + 2 * z_loss * scale)


@SETTINGS
@given(problems())
def test_cross_entropy_matches_reference(problem):
    x, target, kw, go = problem
    dtype = x.dtype
    copies = (x.copy(), target.copy())
    scale = max(1.0, float(np.abs(x).max())) * 3 * 3  # weights and sample weights up to 3
    rtol, atol = _tols(dtype, scale, kw["z_loss"])
    n_rows = max(1, x.size // x.shape[kw["axis"]])
    loss = fx.cross_entropy(x, target, **kw)
    loss2, grad, lse = fx.cross_entropy_with_grad(x, target, grad_output=go, return_lse=True, **kw)
    exp_loss = ref.cross_entropy(x, target, **kw)
    exp_grad = ref.cross_entropy_grad(x, target, grad_output=go, **kw)
    if kw["reduction"] == "sum":
        atol *= n_rows
    for got in (loss, loss2):
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), exp_loss, rtol=rtol, atol=atol,
                                   equal_nan=True)
    finite = exp_grad[np.isfinite(exp_grad)]
    g_scale = max(1.0, float(np.abs(finite).max(initial=0.0)))
    np.testing.assert_allclose(grad, exp_grad, rtol=rtol, atol=_tols(dtype, g_scale, kw["z_loss"] * scale)[1],
                               equal_nan=True)
    assert grad.dtype == dtype and grad.shape == x.shape
    np.testing.assert_allclose(lse, ref.logsumexp(x, axis=kw["axis"]), rtol=rtol,
                               atol=_tols(dtype, scale, 0)[1])
    assert copies[0].tobytes() == x.tobytes() and copies[1].tobytes() == target.tobytes()


@SETTINGS
@given(
    hnp.arrays(st.sampled_from(DTYPES), hnp.array_shapes(min_dims=1, max_dims=3, max_side=40),
               elements=st.floats(-1e4, 1e4, width=32) | st.sampled_from([-np.inf])),
    st.sampled_from(["logsumexp", "softmax", "log_softmax"]),
    st.integers(-3, 2),
)
def test_softmax_family_matches_reference(x, name, axis):
    axis = axis % x.ndim
    got = getattr(fx, name)(x, axis=axis)
    expected = getattr(ref, name)(x, axis=axis)
    rtol, atol = (1e-12, 1e-14) if x.dtype == np.float64 else (1e-5, 1e-6)
    scale = 1.0 if name == "softmax" else max(1.0, float(np.abs(x[np.isfinite(x)]).max(initial=0)))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol * scale, equal_nan=True)
    if name == "softmax":
        # Probabilities: in [0, 1]; rows with a finite lse sum to 1.
        finite_rows = np.isfinite(ref.logsumexp(x, axis=axis))
        sums = np.sum(got.astype(np.float64), axis=axis)
        np.testing.assert_allclose(sums[finite_rows], 1.0, rtol=rtol * 100)
        assert np.all((got[~np.isnan(got)] >= 0) & (got[~np.isnan(got)] <= 1))


@SETTINGS
@given(problems(), st.sampled_from([1, 2, None]))
def test_gradient_independent_of_out_and_threads(problem, n_threads):
    x, target, kw, go = problem
    _, grad = fx.cross_entropy_with_grad(x, target, grad_output=go, **kw)
    out = np.empty_like(x)
    _, grad2 = fx.cross_entropy_with_grad(x, target, grad_output=go, out=out, n_threads=n_threads, **kw)
    assert grad2 is out
    assert grad.tobytes() == out.tobytes()
