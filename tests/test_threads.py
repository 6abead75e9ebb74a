"""Thread-count independence: same bits for every n_threads.

The parallel path only starts from 16384 elements of work (SERIAL_WORK in
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


def _few_rows(shape, dtype):
    """Rows of several slices with the awkward cases where slices meet."""
    rng = np.random.default_rng(17)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.integers(0, shape[1], shape[0])
    # The row's max in its last, partial slice, and a label of probability
    # ~0.4, whose gradient (p - 1) shows the last bits of p.
    x[0, -3], x[0, -4], y[0] = 30, 29.5, shape[1] - 4
    if shape[0] > 1:
        x[1, : 2 * fx._core.SLICE] = -np.inf  # whole slices of -inf before the finite ones
        x[1, -1], y[1] = 20, shape[1] - 1
    if shape[0] > 2:
        x[2, fx._core.SLICE + 1] = np.nan
    if shape[0] > 3:
        x[3, 7] = np.inf
    if shape[0] > 4:
        y[4] = -100
    return x, y


# Each splits for some n_threads below (work >= SERIAL elements, rows < threads);
# float64 rows (and float32 rows below AVX-512) up to BLOCK_SHIFTS_MAX are
# written block by block at the blocks' own shifts, longer ones at the row's.
FEW_ROWS = [(1, 4 * fx._core.SLICE + 5), (5, 2 * fx._core.SLICE + 1), (2, 40_000),
            (5, 2 * fx._core.SLICE + 1000), (1, fx._core.BLOCK_SHIFTS_MAX + 1)]
FEW_THREADS = [1, 2, 3, 8, None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", FEW_ROWS)
def test_split_rows_give_the_row_kernels_bits(dtype, shape):
    # Fewer rows than threads are cut into slices that threads share; the row
    # kernels sum the same slices in the same order, so every output has the
    # bits of the unsplit path (n_threads=1), which a thread-dependent choice
    # of path needs.
    from fastxent import _core
    assert shape[1] >= 2 * _core.SLICE
    x, y = _few_rows(shape, dtype)
    n = shape[0]
    for mode, name in ((0, "logsumexp"), (1, "softmax"), (2, "log_softmax")):
        expected = getattr(fx, name)(x, axis=-1, n_threads=1)
        got = np.empty(n, dtype) if mode == 0 else np.empty_like(x)
        _core.split_rows(x, None, 0, mode, 0.0, None, got if mode == 0 else None,
                         None if mode == 0 else got, None, 2)
        assert _bits(got) == _bits(expected), name
    loss, grad, lse = fx.cross_entropy_with_grad(x, y, reduction="sum", n_threads=1, return_lse=True)
    rows = fx.cross_entropy(x, y, reduction="none", n_threads=1)
    got_rows, got_grad, got_lse = np.empty(n, dtype), np.empty_like(x), np.empty(n, dtype)
    total = _core.split_rows(x, y, -100, 3, 1.0, None, got_rows, got_grad, got_lse, 2)
    assert _bits(got_grad) == _bits(grad)
    assert _bits(got_lse) == _bits(lse)
    assert _bits(got_rows) == _bits(rows)
    assert _bits(float(total)) == _bits(float(loss))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", FEW_ROWS)
def test_few_long_rows_bit_identical(dtype, shape):
    x, y = _few_rows(shape, dtype)
    for name in ("logsumexp", "softmax", "log_softmax"):
        results = [getattr(fx, name)(x, axis=-1, n_threads=nt) for nt in FEW_THREADS]
        assert all(_bits(r) == _bits(results[0]) for r in results), name
    runs = [fx.cross_entropy_with_grad(x, y, n_threads=nt, return_lse=True) for nt in FEW_THREADS]
    for k, what in enumerate(("loss", "grad", "lse")):
        assert all(_bits(r[k]) == _bits(runs[0][k]) for r in runs), what
    go = np.linspace(-2.0, 3.0, shape[0])  # a per-row scale of the gradient
    runs_none = [fx.cross_entropy_with_grad(x, y, reduction="none", grad_output=go, n_threads=nt)
                 for nt in FEW_THREADS]
    for k, what in enumerate(("per-row loss", "per-row-scaled grad")):
        assert all(_bits(r[k]) == _bits(runs_none[0][k]) for r in runs_none), what
    # In place the gradient overwrites the logits, the label's included.
    for nt in FEW_THREADS:
        xc = x.copy()
        loss, grad = fx.cross_entropy_with_grad(xc, y, n_threads=nt, inplace=True)
        assert grad is xc or np.shares_memory(grad, xc)
        assert _bits(grad) == _bits(runs[0][1]) and _bits(loss) == _bits(runs[0][0]), f"inplace, n_threads={nt}"
