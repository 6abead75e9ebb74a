"""Thread-count independence: same bits for every n_threads.

The parallel path only starts above 65536 elements of work (SERIAL_WORK in
_core.pyx), so the arrays here are 512 x 1000 = 512000 elements: every call
with n_threads >= 2 really splits its rows.
"""
import numpy as np
import pytest

import fastxent as fx
from fastxent import _reference as ref

THREADS = [1, 2, 3, None, -1]
N, C = 512, 1000


def _bits(a):
    """Bitwise identity, NaN payloads included."""
    if isinstance(a, float):
        return np.float64(a).tobytes()
    return np.ascontiguousarray(a).tobytes()


def _assert_same_bits(results, what):
    first = _bits(results[0])
    for nt, r in zip(THREADS[1:], results[1:]):
        assert _bits(r) == first, f"{what}: n_threads={nt} differs from n_threads=1"


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2024)
    x = rng.standard_normal((N, C)) * 4
    x[7, 3] = np.nan  # a NaN row and a masked class must not move between threads
    x[9, :500] = -np.inf
    y = rng.integers(0, C, N)
    y[::13] = -100
    t = rng.random((N, C)) ** 4
    t /= t.sum(axis=1, keepdims=True)
    return x, y, t


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_family_bit_identical(dtype, name, axis, data):
    x = data[0].astype(dtype)
    results = [getattr(fx, name)(x, axis=axis, n_threads=nt) for nt in THREADS]
    _assert_same_bits(results, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("target_kind", ["labels", "probs"])
@pytest.mark.parametrize("options", ["plain", "all"])
def test_cross_entropy_bit_identical(dtype, reduction, target_kind, options, data):
    x, y, t = data
    x = x.astype(dtype)
    target = y if target_kind == "labels" else t.astype(dtype)
    rng = np.random.default_rng(5)
    kw = dict(reduction=reduction)
    if options == "all":
        kw.update(weight=rng.random(C) + 0.5, sample_weight=rng.random(N), label_smoothing=0.1, z_loss=1e-4)
    go = rng.standard_normal(N) if reduction == "none" else 0.5
    losses, grads, lses, plain = [], [], [], []
    for nt in THREADS:
        loss, grad, lse = fx.cross_entropy_with_grad(x, target, n_threads=nt, grad_output=go,
                                                     return_lse=True, **kw)
        losses.append(loss)
        grads.append(grad)
        lses.append(lse)
        plain.append(fx.cross_entropy(x, target, n_threads=nt, **kw))
    for what, results in (("loss", losses), ("grad", grads), ("lse", lses), ("cross_entropy", plain)):
        _assert_same_bits(results, what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_axis1_bit_identical(dtype, data):
    x, y, _ = data
    x4 = np.ascontiguousarray(x.astype(dtype).reshape(8, 64, 50, 20).transpose(0, 2, 1, 3))  # (8, 50, 64, 20)
    y3 = np.random.default_rng(1).integers(0, 50, (8, 64, 20))
    results = [fx.cross_entropy_with_grad(x4, y3, axis=1, n_threads=nt) for nt in THREADS]
    _assert_same_bits([r[0] for r in results], "loss")
    _assert_same_bits([r[1] for r in results], "grad")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("readonly", [False, True])
def test_dtype_threads_readonly_matrix(dtype, n_threads, readonly, data, h):
    # The scikit-learn style matrix: every combination gives the reference's
    # answer and never touches its (possibly read-only) inputs.
    x, y, t = data
    x = x[:200].astype(dtype)
    y = y[:200].copy()
    t = t[:200].astype(dtype)
    w = np.linspace(0.5, 2.0, C)
    if readonly:
        x, y, t, w = (h.readonly(a) for a in (x, y, t, w))
    copies = [a.copy() for a in (x, y, t, w)]
    scale = h.scale(x)
    for name in ("logsumexp", "softmax", "log_softmax"):
        got = getattr(fx, name)(x, n_threads=n_threads)
        expected = getattr(ref, name)(x)
        h.assert_close(got, expected, dtype, scale=1.0 if name == "softmax" else scale)
    for target in (y, t):
        for reduction in ("mean", "none"):
            loss, grad = fx.cross_entropy_with_grad(x, target, weight=w, reduction=reduction,
                                                    label_smoothing=0.05, n_threads=n_threads)
            exp_loss = ref.cross_entropy(x, target, weight=w, reduction=reduction, label_smoothing=0.05)
            exp_grad = ref.cross_entropy_grad(x, target, weight=w, reduction=reduction, label_smoothing=0.05)
            h.assert_close(loss, exp_loss, dtype, scale=2 * scale)
            h.assert_close(grad, exp_grad, dtype)
    for a, c in zip((x, y, t, w), copies):
        h.unchanged(c, a)


def test_threadpoolctl_limits_respected(config):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastxent import _core

    if not config["openmp"]:
        pytest.skip("serial build")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert _core.max_threads() == 1
        assert fx.show_config()["max_threads"] == 1
    assert _core.max_threads() == config["max_threads"]


def test_invalid_n_threads(config):
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="n_threads"):
        fx.logsumexp(x, n_threads=-(config["max_threads"] + 1))
    with pytest.raises(TypeError, match="n_threads"):
        fx.cross_entropy(x, np.zeros(3, dtype=int), n_threads=2.0)
    with pytest.raises(TypeError, match="n_threads"):
        fx.softmax(x, n_threads=True)


@pytest.mark.parametrize("shape", [(200_000, 3), (70, 1000), (2, 70_000), (1, 300_000)])
def test_odd_shapes_bit_identical(shape):
    # Many tiny rows, few rows (fewer than threads x blocks), one long row.
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, shape[1], shape[0])
    ref_loss, ref_grad = fx.cross_entropy_with_grad(x, y, n_threads=1)
    for nt in (2, 3, 8):
        loss, grad = fx.cross_entropy_with_grad(x, y, n_threads=nt)
        assert _bits(loss) == _bits(ref_loss) and _bits(grad) == _bits(ref_grad)
        assert _bits(fx.logsumexp(x, n_threads=nt)) == _bits(fx.logsumexp(x, n_threads=1))
