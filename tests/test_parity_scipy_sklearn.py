"""Parity with scipy.special and scikit-learn (log_loss, HalfMultinomialLoss)."""
import warnings

import numpy as np
import pytest

import fastxent as fx

special = pytest.importorskip("scipy.special")

DTYPES = [np.float32, np.float64]


def _tol(dtype, scale=1.0):
    # Two independent implementations, each within ~10 ulp (see conftest).
    if dtype == np.float64:
        return dict(rtol=1e-12, atol=1e-13 * scale)
    return dict(rtol=2e-5, atol=2e-6 * scale)


def _scipy(name, x, axis):
    # SciPy warns (RuntimeWarning) on inf - inf; its result is still the oracle.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return getattr(special, name)(x, axis=axis)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("n_classes", [1, 8, 17, 1025])
def test_softmax_family_matches_scipy(dtype, name, axis, n_classes, rng):
    x = (rng.standard_normal((3, 5, n_classes)) * 6).astype(dtype)
    got = getattr(fx, name)(x, axis=axis)
    expected = _scipy(name, x, axis)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, np.asarray(expected, dtype=np.float64),
                               **_tol(dtype, 1.0 if name == "softmax" else 6 * 5))


def _extreme(dtype):
    inf, nan = np.inf, np.nan
    return np.array([
        [nan, 1.0, 2.0],
        [-inf, -inf, -inf],
        [inf, 1.0, 2.0],
        [inf, -inf, 0.0],
        [1.0, -inf, 2.0],
        [1e30, -1e30, 0.0],
        [-1e30, -2e30, 0.0],
    ], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_logsumexp_matches_scipy(dtype):
    # Same semantics: NaN row -> NaN, all -inf -> -inf, any +inf -> +inf.
    x = _extreme(dtype)
    got = fx.logsumexp(x)
    expected = _scipy("logsumexp", x, -1)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(got[~np.isfinite(expected)], expected[~np.isfinite(expected)])
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_extreme_softmax_matches_scipy(dtype, name):
    x = _extreme(dtype)
    got = getattr(fx, name)(x)
    expected = _scipy(name, x, -1)
    # SciPy's log_softmax of a row holding +inf gives [nan, -inf, ...];
    # fastxent follows PyTorch there (the whole row NaN): those rows are
    # checked against that rule instead.
    plus_inf = np.any(np.isposinf(x), axis=1)
    assert np.all(np.isnan(got[plus_inf]))
    np.testing.assert_allclose(got[~plus_inf], expected[~plus_inf], equal_nan=True, **_tol(dtype))


# --------------------------------------------------------------------------
# scikit-learn


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [2, 3, 10, 33])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_log_loss(dtype, n_classes, weighted, rng):
    metrics = pytest.importorskip("sklearn.metrics")
    # log_loss clips probabilities at the dtype's eps: moderate logits keep
    # every probability far above it, so no clipping happens on either side.
    x = (rng.standard_normal((40, n_classes)) * 2).astype(dtype)
    y = rng.integers(0, n_classes, 40)
    sw = rng.random(40) + 0.1 if weighted else None
    probs = special.softmax(x.astype(np.float64), axis=1)
    expected = metrics.log_loss(y, probs, labels=np.arange(n_classes), sample_weight=sw)
    got = fx.cross_entropy(x, y, sample_weight=sw)
    np.testing.assert_allclose(got, expected, **_tol(dtype, 6))
    # One-hot probability targets are the same loss.
    onehot = np.eye(n_classes, dtype=dtype)[y]
    np.testing.assert_allclose(fx.cross_entropy(x, onehot, sample_weight=sw), expected, **_tol(dtype, 6))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_classes", [3, 17])
def test_matches_half_multinomial_loss(dtype, weighted, n_classes, rng):
    loss_mod = pytest.importorskip("sklearn._loss.loss")
    n = 50
    x = (rng.standard_normal((n, n_classes)) * 3).astype(dtype)
    y = rng.integers(0, n_classes, n)
    sw = (rng.random(n) + 0.1).astype(dtype) if weighted else None
    half = loss_mod.HalfMultinomialLoss(n_classes=n_classes)
    exp_loss = half.loss(y.astype(dtype), x, sample_weight=sw)
    exp_grad = half.gradient(y.astype(dtype), x, sample_weight=sw)
    # sklearn's per-sample loss and gradient: what fastxent gives with
    # reduction='none' (each row's gradient times grad_output=1).
    loss, grad = fx.cross_entropy_with_grad(x, y, sample_weight=sw, reduction="none")
    np.testing.assert_allclose(loss, exp_loss, **_tol(dtype, 9))
    np.testing.assert_allclose(grad, exp_grad, **_tol(dtype))
    # sklearn's loss already holds sw * l: its weighted mean sum(sw * l) / sum(sw)
    # is fastxent's 'mean'.
    mean = np.sum(exp_loss, dtype=np.float64) / (n if sw is None else np.sum(sw, dtype=np.float64))
    np.testing.assert_allclose(fx.cross_entropy(x, y, sample_weight=sw), mean, **_tol(dtype, 9))
