"""Parity with PyTorch's torch.nn.functional (losses and autograd gradients).

Where API.md is silent fastxent follows PyTorch, so PyTorch is a second,
independent oracle: its own kernels and its own autograd.
"""
import itertools

import numpy as np
import pytest

import fastxent as fx

torch = pytest.importorskip("torch")
F = torch.nn.functional

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]
N, C, D1, D2 = 6, 5, 2, 3


def _tol(dtype, scale=1.0):
    # Two independent float32 implementations: each within ~10 ulp, so their
    # difference within 2x our float32 tolerance; float64 likewise.
    if dtype == np.float64:
        return dict(rtol=1e-11, atol=1e-13 * scale)
    return dict(rtol=2e-5, atol=2e-6 * scale)


def _torch_ce(x, target, go, axis_first, **kw):
    """PyTorch's loss and input.grad (class axis at 1, its native layout)."""
    xt = torch.tensor(x if not axis_first else x, requires_grad=True)
    tt = torch.tensor(target)
    loss = F.cross_entropy(xt, tt, **kw)
    if kw.get("reduction", "mean") == "none":
        loss.backward(torch.tensor(np.broadcast_to(np.asarray(go, dtype=x.dtype), loss.shape).copy()))
    else:
        (loss * go).backward()
    out = loss.detach().numpy()
    return (out if kw.get("reduction", "mean") == "none" else float(out)), xt.grad.numpy()


def _make(rng, dtype, layout, target_kind, ignore):
    shape = (N, C) if layout == "nc" else (N, C, D1, D2)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    tshape = shape[:1] + shape[2:]
    if target_kind == "labels":
        t = rng.integers(0, C, tshape)
        if ignore:
            t.reshape(-1)[::3] = -100
    else:
        t = rng.random(shape) ** 2
        t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    return x, t


def _assert_matches(got, expected, dtype, scale=1.0):
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               equal_nan=True, **_tol(dtype, scale))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout", ["nc", "ncdd"])
@pytest.mark.parametrize("target_kind,ignore", [("labels", False), ("labels", True), ("probs", False)])
@pytest.mark.parametrize("use_weight,smoothing", list(itertools.product([False, True], [0.0, 0.2, 1.0])))
def test_cross_entropy_matches_torch(dtype, reduction, layout, target_kind, ignore, use_weight, smoothing,
                                     rng):
    x, t = _make(rng, dtype, layout, target_kind, ignore)
    w = (rng.random(C) * 2 + 0.1).astype(dtype) if use_weight else None
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    tshape = x.shape[:1] + x.shape[2:]
    go = rng.standard_normal(tshape).astype(dtype) if reduction == "none" else 1.3
    exp_loss, exp_grad = _torch_ce(x, t, go, True, weight=None if w is None else torch.tensor(w), **kw)
    # fastxent: (N, C) with axis=-1, (N, C, d1, d2) with axis=1 (torch's layout).
    axis = -1 if layout == "nc" else 1
    loss = fx.cross_entropy(x, t, axis=axis, weight=w, **kw)
    loss2, grad = fx.cross_entropy_with_grad(x, t, axis=axis, weight=w, grad_output=go, **kw)
    scale = float(np.abs(x).max()) * (2 if use_weight else 1)
    _assert_matches(loss, exp_loss, dtype, scale * (N * D1 * D2 if reduction == "sum" else 1))
    _assert_matches(loss2, exp_loss, dtype, scale * (N * D1 * D2 if reduction == "sum" else 1))
    _assert_matches(grad, exp_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
def test_class_last_layout_matches_torch_moved(dtype, reduction, target_kind, rng):
    # (N, d1, d2, C) with axis=-1 against torch on the same data moved to (N, C, d1, d2).
    x, t = _make(rng, dtype, "ncdd", target_kind, True)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    t_last = t if target_kind == "labels" else np.ascontiguousarray(np.moveaxis(t, 1, -1))
    exp_loss, exp_grad = _torch_ce(x, t, 1.0, True, reduction=reduction)
    loss, grad = fx.cross_entropy_with_grad(x_last, t_last, reduction=reduction)
    _assert_matches(loss, exp_loss, dtype, 3 * N * D1 * D2)
    _assert_matches(grad, np.moveaxis(exp_grad, 1, -1), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
@pytest.mark.parametrize("z_loss", [0.0, 0.01])
def test_sample_weight_and_z_loss_match_torch_expression(dtype, reduction, target_kind, z_loss, rng):
    # Options PyTorch lacks, written as the obvious torch expression of
    # API.md's definition; autograd then checks our gradient independently.
    x, t = _make(rng, dtype, "nc", target_kind, True)
    w = (rng.random(C) + 0.5).astype(dtype)
    sw = rng.random(N) + 0.1
    xt = torch.tensor(x, requires_grad=True)
    rows = F.cross_entropy(xt, torch.tensor(t), weight=torch.tensor(w), reduction="none",
                           label_smoothing=0.1)
    if target_kind == "labels":
        live = torch.tensor(t != -100)
        row_w = torch.tensor(sw) * torch.tensor(w)[torch.tensor(np.where(t == -100, 0, t))] * live
    else:
        live = torch.ones(N, dtype=torch.bool)
        row_w = torch.tensor(sw)
    lse = torch.logsumexp(xt.double(), dim=-1)
    # z * lse**2 is scaled by the row's sample weight, not by the class
    # weight (the reference's reading of API.md's "weighted like the row").
    rows = torch.where(live, (rows.double() + z_loss * lse ** 2) * torch.tensor(sw), 0.0)
    go = rng.standard_normal(N) if reduction == "none" else 0.8
    if reduction == "none":
        total = rows
        rows.backward(torch.tensor(go))
    elif reduction == "sum":
        total = rows.sum()
        (total * go).backward()
    else:
        total = rows.sum() / row_w.sum()
        (total * go).backward()
    exp_loss = total.detach().numpy() if reduction == "none" else float(total.detach())
    loss, grad = fx.cross_entropy_with_grad(x, t, weight=w, sample_weight=sw, label_smoothing=0.1,
                                            z_loss=z_loss, reduction=reduction, grad_output=go)
    _assert_matches(loss, exp_loss, dtype, 20 * (N if reduction == "sum" else 1))
    _assert_matches(grad, xt.grad.numpy(), dtype)


# --------------------------------------------------------------------------
# non-finite logits: live rows give what PyTorch gives; ignored rows exactly 0


def _nonfinite_logits(dtype):
    inf, nan = np.inf, np.nan
    return np.array([
        [nan, 1.0, 2.0, 3.0],
        [-inf, -inf, -inf, -inf],
        [inf, 1.0, 2.0, 3.0],
        [inf, -inf, 0.0, 0.0],
        [1.0, -inf, 2.0, -inf],       # label on a finite class
        [1.0, -inf, 2.0, -inf],       # label on a masked class: +inf loss
        [1e30, -1e30, 0.0, 5.0],
        [-1e30, 1e30, 0.0, 5.0],
        [1.0, 2.0, 3.0, 4.0],
    ], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_nonfinite_labels_match_torch(dtype, reduction, smoothing):
    x = _nonfinite_logits(dtype)
    y = np.array([1, 0, 1, 2, 2, 1, 0, 0, 3])
    kw = dict(reduction="none", label_smoothing=smoothing)
    exp_loss, exp_grad = _torch_ce(x, y, np.ones(len(y), dtype=dtype), False, **kw)
    loss, grad = fx.cross_entropy_with_grad(x, y, **kw)
    _assert_matches(loss, exp_loss, dtype, 1e30)
    _assert_matches(grad, exp_grad, dtype)
    assert np.array_equal(np.isnan(grad), np.isnan(exp_grad))
    if reduction != "none":
        exp_total, _ = _torch_ce(x, y, 1.0, False, reduction=reduction, label_smoothing=smoothing)
        total = fx.cross_entropy(x, y, reduction=reduction, label_smoothing=smoothing)
        assert np.isnan(total) and np.isnan(exp_total)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore", [False, True])
def test_nonfinite_positions_with_class_axis_1_match_torch(dtype, smoothing, ignore):
    # The same rows as positions of an (N, C, D) array: the column kernels,
    # whose exp drops its upper clamp unless a position holds +inf.
    x = np.ascontiguousarray(_nonfinite_logits(dtype).T[None])   # (1, 4, 9)
    y = np.array([[1, 0, 1, 2, 2, 1, 0, 0, 3]])
    if ignore:
        y[0, ::4] = -100
    kw = dict(reduction="none", label_smoothing=smoothing)
    exp_loss, exp_grad = _torch_ce(x, y, np.ones(y.shape, dtype=dtype), True, **kw)
    loss, grad = fx.cross_entropy_with_grad(x, y, axis=1, **kw)
    live = y != -100
    _assert_matches(loss[live], exp_loss[live], dtype, 1e30)
    _assert_matches(np.moveaxis(grad, 1, -1)[live], np.moveaxis(exp_grad, 1, -1)[live], dtype)
    assert np.all(loss[~live] == 0) and np.all(np.moveaxis(grad, 1, -1)[~live] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_probs_match_torch(dtype):
    x = _nonfinite_logits(dtype)
    t = np.full(x.shape, 0.25, dtype=dtype)
    t[4] = [0.5, 0.0, 0.5, 0.0]        # zero probability on masked classes (0 * -inf)
    exp_loss, exp_grad = _torch_ce(x, t, np.ones(len(t), dtype=dtype), False, reduction="none")
    loss, grad = fx.cross_entropy_with_grad(x, t, reduction="none")
    _assert_matches(loss, exp_loss, dtype, 1e30)
    _assert_matches(grad, exp_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [5, 40])  # the narrow kernels, the row kernel
@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
def test_smoothed_probs_on_masked_classes_match_torch(dtype, n_classes, axis, smoothing, rng):
    # PyTorch sums a_c log p_c class by class, a_c = (1 - eps) t_c + eps / C:
    # a zero target on a -inf logit gives NaN without smoothing (0 * -inf)
    # and +inf with it; a positive one +inf.
    x = (rng.standard_normal((6, n_classes)) * 2).astype(dtype)
    x[:, 1] = -np.inf
    t = rng.random((6, n_classes))
    t[:, 1] = 0.0
    t[3, 1] = 0.3
    t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    if axis == 1:  # (1, C, 6): one sample, six positions
        x, t = np.ascontiguousarray(x.T[None]), np.ascontiguousarray(t.T[None])
    go = np.ones(x.shape[:1] + x.shape[2:], dtype=dtype)
    exp_loss, exp_grad = _torch_ce(x, t, go, axis == 1, reduction="none", label_smoothing=smoothing)
    loss, grad = fx.cross_entropy_with_grad(x, t, axis=axis, reduction="none", label_smoothing=smoothing)
    _assert_matches(loss, exp_loss, dtype)
    _assert_matches(grad, exp_grad, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ignored_nonfinite_rows_are_zero(dtype, reduction, rng):
    # PyTorch's backward gives NaN gradients for an ignored row holding NaN
    # (0 * NaN in log_softmax's backward); API.md requires exactly 0, so the
    # live rows are compared with PyTorch and the ignored ones with 0.
    x = _nonfinite_logits(dtype)
    x = np.concatenate([x, (rng.standard_normal((3, 4)) * 2).astype(dtype)])
    y = np.array([-100, -100, -100, -100, 2, -100, 0, 0, 3, 1, 2, 3])
    live = y != -100
    w = np.array([1.0, 2.0, 0.5, 1.5], dtype=dtype)
    exp_loss, exp_grad = _torch_ce(x[live], y[live], 1.0 if reduction != "none" else np.ones(live.sum(), dtype),
                                   False, reduction=reduction, weight=torch.tensor(w))
    loss, grad = fx.cross_entropy_with_grad(x, y, reduction=reduction, weight=w)
    if reduction == "none":
        assert np.all(loss[~live] == 0)
        loss = loss[live]
    _assert_matches(loss, exp_loss, dtype, 1e30 * (len(y) if reduction == "sum" else 1))
    assert np.all(grad[~live] == 0)
    _assert_matches(grad[live], exp_grad, dtype)


def test_all_ignored_mean_matches_torch():
    x = np.zeros((3, 4))
    y = np.full(3, -100)
    exp_loss, exp_grad = _torch_ce(x, y, 1.0, False)
    loss, grad = fx.cross_entropy_with_grad(x, y)
    assert np.isnan(exp_loss) and np.isnan(loss)  # empty='nan' is PyTorch's answer
    assert np.all(grad == 0)


# --------------------------------------------------------------------------
# logsumexp, softmax, log_softmax


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,torch_name", [("logsumexp", "logsumexp"), ("softmax", "softmax"),
                                             ("log_softmax", "log_softmax")])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_family_matches_torch(dtype, name, torch_name, axis, rng):
    x = (rng.standard_normal((3, 4, 33)) * 5).astype(dtype)
    x[0, 0] = _nonfinite_logits(dtype)[:, 0].tolist() + [0.0] * 24
    x[1, 1, :5] = -np.inf
    x[2, 3] = -np.inf
    x[2, 2, 7] = np.inf
    x[1, 2, 30] = np.nan
    got = getattr(fx, name)(x, axis=axis)
    xt = torch.tensor(x)
    expected = getattr(torch, torch_name)(xt, dim=axis).numpy()
    finite = np.isfinite(expected)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.array_equal(np.isposinf(got), np.isposinf(expected))
    assert np.array_equal(np.isneginf(got), np.isneginf(expected))
    _assert_matches(got[finite], expected[finite], dtype, 1.0 if name == "softmax" else 1e30)
