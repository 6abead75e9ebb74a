"""Gradients against 4-point central differences of fastxent's own loss (float64).

The analytic gradient of cross_entropy_with_grad must be the derivative of
the loss that cross_entropy returns, for every option and reduction; this
checks the kernels without trusting the closed form in the reference.
"""
import itertools

import numpy as np
import pytest

import fastxent as fx
from fastxent import _reference as ref

REDUCTIONS = ["mean", "sum", "none"]
STEP = 1e-3
# Truncation error of the 4-point rule is ~ STEP**4 * f^(5) / 30 ~ 1e-13 for
# logits of order 1; rounding is ~ eps * |f| / STEP ~ 1e-12.  1e-9 absolute is
# far below any wrong-formula error (the smallest option effects tested here
# are ~1e-3) while immune to both.
ATOL = 1e-9
RTOL = 1e-7


def numerical_grad(f, x):
    """(-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / 12h, element by element."""
    g = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        values = []
        for k in (2, 1, -1, -2):
            xk = x.copy()
            xk[idx] += k * STEP
            values.append(f(xk))
        g[idx] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * STEP)
    return g


def scalar_loss(x, target, grad_output, kw):
    """The scalar whose gradient cross_entropy_with_grad returns."""
    loss = fx.cross_entropy(x, target, **kw)
    if kw.get("reduction", "mean") == "none":
        return float(np.sum(np.asarray(grad_output) * loss))
    return float(grad_output) * loss


OPTIONS = {
    "plain": {},
    "weight": {"weight": np.array([0.5, 2.0, 1.0, 0.1, 3.0])},
    "sample_weight": {"sample_weight": np.array([0.2, 1.0, 3.0, 0.0, 1.5, 0.7])},
    "smoothing": {"label_smoothing": 0.3},
    "smoothing_1": {"label_smoothing": 1.0},
    "z_loss": {"z_loss": 0.05},
    "all": {"weight": np.array([0.5, 2.0, 1.0, 0.1, 3.0]),
            "sample_weight": np.array([0.2, 1.0, 3.0, 0.0, 1.5, 0.7]),
            "label_smoothing": 0.2, "z_loss": 0.01},
}


def _case(rng, target_kind, ignore, axis_layout):
    n, c = 6, 5
    x = rng.standard_normal((n, c)) * 2
    if target_kind == "labels":
        t = rng.integers(0, c, n)
        if ignore:
            t[[1, 4]] = -100
    else:
        t = rng.random((n, c)) ** 2
        t /= t.sum(axis=1, keepdims=True)
    if axis_layout == "nc_d":
        # (N, C, d) with the class axis in the middle: 3 x 5 x 2 from the same 30 numbers.
        x = x.reshape(3, 2, c).transpose(0, 2, 1).copy()
        t = t.reshape(3, 2) if target_kind == "labels" else t.reshape(3, 2, c).transpose(0, 2, 1).copy()
    return x, t


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("target_kind,ignore", [("labels", False), ("labels", True), ("probs", False)])
@pytest.mark.parametrize("axis_layout", ["nc", "nc_d"])
def test_grad_matches_finite_differences(reduction, option, target_kind, ignore, axis_layout, rng):
    x, t = _case(rng, target_kind, ignore, axis_layout)
    kw = dict(OPTIONS[option], reduction=reduction)
    axis = -1 if axis_layout == "nc" else 1
    kw["axis"] = axis
    tshape = x.shape[:axis] + x.shape[axis + 1:] if axis != -1 else x.shape[:-1]
    if "sample_weight" in kw:
        kw["sample_weight"] = kw["sample_weight"].reshape(tshape)
    go = rng.standard_normal(tshape) if reduction == "none" else 1.7
    _, grad = fx.cross_entropy_with_grad(x, t, grad_output=go, **kw)
    numeric = numerical_grad(lambda z: scalar_loss(z, t, go, kw), x)
    np.testing.assert_allclose(grad, numeric, rtol=RTOL, atol=ATOL)
    # The reference's closed form is the same derivative (it is the oracle
    # of the other tests, so it is held to the same standard).
    np.testing.assert_allclose(ref.cross_entropy_grad(x, t, grad_output=go, **kw), numeric,
                               rtol=RTOL, atol=ATOL)
    if ignore:
        rows = np.moveaxis(grad, axis, -1)[np.asarray(t) == -100]
        assert np.all(rows == 0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing,z_loss", list(itertools.product([0.0, 0.4], [0.0, 0.02])))
def test_grad_float32_close_to_float64_finite_differences(reduction, smoothing, z_loss, rng):
    # float32 kernels: the same derivative within float32 rounding.
    x, t = _case(rng, "labels", True, "nc")
    kw = dict(reduction=reduction, label_smoothing=smoothing, z_loss=z_loss)
    go = rng.standard_normal(6) if reduction == "none" else 1.0
    _, grad = fx.cross_entropy_with_grad(x.astype(np.float32), t, grad_output=go, **kw)
    numeric = numerical_grad(lambda z: scalar_loss(z, t, go, kw), x.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(numeric).max()))


def test_softmax_is_gradient_of_logsumexp(rng):
    x = rng.standard_normal((3, 7)) * 3
    numeric = numerical_grad(lambda z: float(np.sum(fx.logsumexp(z))), x)
    np.testing.assert_allclose(fx.softmax(x), numeric, rtol=RTOL, atol=ATOL)


def test_log_softmax_consistent_with_logsumexp(rng):
    x = rng.standard_normal((3, 7)) * 3
    np.testing.assert_allclose(fx.log_softmax(x), x - fx.logsumexp(x)[:, None], rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(fx.softmax(x), np.exp(fx.log_softmax(x)), rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
def test_softcap_grad_matches_finite_differences(reduction, target_kind, rng):
    x, t = _case(rng, target_kind, True, "nc")
    x *= 5
    kw = dict(reduction=reduction, softcap=4.0, label_smoothing=0.1)
    go = rng.standard_normal(6) if reduction == "none" else 1.0
    _, grad = fx.cross_entropy_with_grad(x, t, grad_output=go, **kw)
    numeric = numerical_grad(lambda z: scalar_loss(z, t, go, kw), x)
    np.testing.assert_allclose(grad, numeric, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
def test_from_logits_false_grad_matches_finite_differences(reduction, target_kind, rng):
    # Probabilities well above eps, so the clipping max(p, eps) is inactive.
    x, t = _case(rng, target_kind, True, "nc")
    p = ref.softmax(x * 0.3)
    kw = dict(reduction=reduction, from_logits=False)
    go = rng.standard_normal(6) if reduction == "none" else 1.0
    _, grad = fx.cross_entropy_with_grad(p, t, grad_output=go, **kw)
    numeric = numerical_grad(lambda z: scalar_loss(z, t, go, kw), p)
    # log p has large higher derivatives where p is small: the 4-point
    # difference's truncation error reaches ~2e-7 relative there.
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=ATOL)
