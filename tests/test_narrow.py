"""The narrow-row kernels (n_classes <= 32: SIMD across rows, blocks of rows
transposed in registers), on every SIMD path this CPU supports.

Each class count has its own chunking (one or two chunks of lanes, or the
generic code of the narrow ISAs), and a batch ends in partial blocks, pairs
of blocks and 512-row work units: the shapes below cover all of them.  The
same kernels take PyTorch's (N, C, d) layout (axis=1), one position per
lane: the tests at the end compare it with the class-last results.
"""
import numpy as np
import pytest

import fastxent as fx
from fastxent import _reference as ref

# Within a block, two blocks, a group of four (float32 on AVX2) or a group
# and a partial block, two groups, two 512-row work units.
ROWS = [1, 7, 16, 32, 33, 64, 531]


def _data(rng, rows, n, dtype):
    x = (rng.standard_normal((rows, n)) * 4).astype(dtype)
    y = rng.integers(0, n, rows)
    if rows >= 7:
        x[1, n // 2] = np.nan
        x[2, :] = -np.inf
        x[3, n - 1] = np.inf
        x[4, 0] = -np.inf
        y[5] = -100
        y[6] = -100
        x[6, 0] = np.nan  # an ignored row's gradient is 0 even so
    return x, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", range(1, 33))
def test_every_width(simd, dtype, n, rng, h):
    for rows in ROWS:
        x, y = _data(rng, rows, n, dtype)
        scale = h.scale(x)
        msg = f"{simd} rows={rows} n={n}"
        h.assert_close(fx.logsumexp(x), ref.logsumexp(x), dtype, scale=scale, err_msg=msg)
        h.assert_close(fx.softmax(x), ref.softmax(x), dtype, err_msg=msg)
        h.assert_close(fx.log_softmax(x), ref.log_softmax(x), dtype, scale=scale, err_msg=msg)
        loss, grad, lse = fx.cross_entropy_with_grad(x, y, reduction="none", return_lse=True)
        h.assert_close(loss, ref.cross_entropy(x, y, reduction="none"), dtype, scale=2 * scale, err_msg=msg)
        h.assert_close(grad, ref.cross_entropy_grad(x, y, reduction="none"), dtype, scale=2, err_msg=msg)
        h.assert_close(lse, ref.logsumexp(x), dtype, scale=scale, err_msg=msg)
        assert np.all(grad[y == -100] == 0), msg
        h.assert_close(fx.cross_entropy(x, y, reduction="none"), ref.cross_entropy(x, y, reduction="none"), dtype,
                       scale=2 * scale, err_msg=msg)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2, 10, 17, 32])
def test_weights_and_scales(simd, dtype, n, rng, h):
    x, y = _data(rng, 531, n, dtype)
    w = rng.random(n) + 0.5
    sw = rng.random(531) + 0.1
    go = rng.standard_normal(531)
    scale = h.scale(x)
    for reduction in ("none", "sum", "mean"):
        kw = dict(weight=w, sample_weight=sw, reduction=reduction)
        grad_output = go if reduction == "none" else 1.5
        loss, grad = fx.cross_entropy_with_grad(x, y, grad_output=grad_output, **kw)
        h.assert_close(loss, ref.cross_entropy(x, y, **kw), dtype, scale=2 * scale, err_msg=reduction)
        h.assert_close(grad, ref.cross_entropy_grad(x, y, grad_output=grad_output, **kw), dtype, scale=2,
                       err_msg=reduction)
        plain = fx.cross_entropy(x, y, **kw)
        h.assert_close(plain, ref.cross_entropy(x, y, **kw), dtype, scale=2 * scale, err_msg=reduction)


# Label smoothing and z-loss go through the same kernels (one term of the
# gradient each); eps = 1 leaves only the smoothing term.  Their tests take
# 133 rows (pairs of blocks and a partial one on every path: the work units
# are the plain tests'), which keeps them cheap in the sanitizer's build.
OPTION_ROWS = 133
SMOOTHING = [dict(label_smoothing=0.1), dict(z_loss=1e-3), dict(label_smoothing=0.3, z_loss=1e-2),
             dict(label_smoothing=1.0)]


def _option_calls(options, w, sw, go, msg):
    """(keywords, grad_output, message) of each option, with and without
    class and sample weights, for 'none' (per-row go) and 'mean' (1.5)."""
    for opts in options:
        for weights in ({}, dict(weight=w, sample_weight=sw)):
            for reduction in ("none", "mean"):
                kw = dict(opts, **weights, reduction=reduction)
                yield kw, go if reduction == "none" else 1.5, f"{msg} {kw}"


def _check_smoothing(x, y, w, sw, go, fx_call, dtype, h, msg):
    """fx_call(reduction, grad_output, **options) -> (loss, grad, lse) in the
    row layout, against the reference, with and without class and sample
    weights, for every entry of SMOOTHING."""
    scale = h.scale(x)
    for kw, grad_output, m in _option_calls(SMOOTHING, w, sw, go, msg):
        loss, grad, lse = fx_call(grad_output, **kw)
        h.assert_close(loss, ref.cross_entropy(x, y, **kw), dtype, scale=4 * scale, err_msg=m)
        h.assert_close(grad, ref.cross_entropy_grad(x, y, grad_output=grad_output, **kw), dtype, scale=2, err_msg=m)
        h.assert_close(lse, ref.logsumexp(x), dtype, scale=scale, err_msg=m)
        assert np.all(grad[y == -100] == 0), m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 10, 17, 32])
def test_label_smoothing_and_z_loss(simd, dtype, n, rng, h):
    rows = OPTION_ROWS
    x, y = _data(rng, rows, n, dtype)

    def rows_call(grad_output, **kw):
        loss, grad, lse = fx.cross_entropy_with_grad(x, y, grad_output=grad_output, return_lse=True, **kw)
        # Without the gradient: the loss kernel, the same loss.
        np.testing.assert_allclose(fx.cross_entropy(x, y, **kw), loss, rtol=1e-12, atol=0)
        return loss, grad, lse

    _check_smoothing(x, y, rng.random(n) + 0.5, rng.random(rows) + 0.1, rng.standard_normal(rows), rows_call,
                     dtype, h, f"{simd} n={n}")


def _soft_targets(rng, rows, n, dtype):
    t = rng.random((rows, n))
    if n > 1:
        t[::3, 0] = 0.0  # classes of target probability 0
    return (t / t.sum(axis=1, keepdims=True)).astype(dtype)


def _check_soft(x, t, w, sw, go, fx_call, dtype, h, msg):
    """fx_call(grad_output, **options) -> (loss, grad, loss without the
    gradient) in the row layout, against the reference, for every option
    with and without weights."""
    scale = h.scale(x)
    for kw, grad_output, m in _option_calls([{}] + SMOOTHING, w, sw, go, msg):
        loss, grad, plain = fx_call(grad_output, **kw)
        expected = ref.cross_entropy(x, t, **kw)
        h.assert_close(loss, expected, dtype, scale=4 * scale, err_msg=m)
        h.assert_close(plain, expected, dtype, scale=4 * scale, err_msg=m)
        h.assert_close(grad, ref.cross_entropy_grad(x, t, grad_output=grad_output, **kw), dtype, scale=2, err_msg=m)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 10, 17, 32])
def test_soft_targets(simd, dtype, n, rng, h):
    # Probability targets take the same kernels (their columns transposed
    # like the logits'), with every option.
    rows = OPTION_ROWS
    x, _ = _data(rng, rows, n, dtype)
    t = _soft_targets(rng, rows, n, dtype)

    def rows_call(grad_output, **kw):
        loss, grad = fx.cross_entropy_with_grad(x, t, grad_output=grad_output, **kw)
        plain = fx.cross_entropy(x, t, **kw)
        np.testing.assert_allclose(plain, loss, rtol=1e-12, atol=0, err_msg=str(kw))  # the same kernel
        return loss, grad, plain

    _check_soft(x, t, rng.random(n) + 0.5, rng.random(rows) + 0.1, rng.standard_normal(rows), rows_call, dtype, h,
                f"{simd} n={n}")


def _per_position(grad_output, kw, p, q):
    """A call's per-row arrays (grad_output, sample_weight) as (p, q) positions."""
    if "sample_weight" in kw:
        kw = dict(kw, sample_weight=kw["sample_weight"].reshape(p, q))
    if np.ndim(grad_output):
        grad_output = grad_output.reshape(p, q)
    return grad_output, kw


def _flat(loss):
    """A 'none' loss of positions as rows; a reduced one as it is."""
    return np.reshape(loss, -1) if np.ndim(loss) else loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2, 10, 21])
def test_label_smoothing_and_z_loss_with_the_class_axis_strided(simd, dtype, n, rng, h):
    p, q = 2, OPTION_ROWS
    x, y = _data(rng, p * q, n, dtype)
    xc, yc = _as_cols(x, p, q), y.reshape(p, q)
    sw = rng.random(p * q) + 0.1

    def cols_call(grad_output, **kw):
        grad_output, kw = _per_position(grad_output, kw, p, q)
        loss, grad, lse = fx.cross_entropy_with_grad(xc, yc, axis=1, grad_output=grad_output, return_lse=True,
                                                     **kw)
        return _flat(loss), _as_rows(grad), lse.reshape(-1)

    _check_smoothing(x, y, rng.random(n) + 0.5, sw, rng.standard_normal(p * q), cols_call, dtype, h,
                     f"{simd} n={n}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# One and two vectors of lanes, and past two (the wide path, but with
# AVX-512 float32).
@pytest.mark.parametrize("n", [2, 10, 21])
def test_soft_targets_with_the_class_axis_strided(simd, dtype, n, rng, h):
    p, q = 2, OPTION_ROWS
    x, _ = _data(rng, p * q, n, dtype)
    t = _soft_targets(rng, p * q, n, dtype)
    xc, tc = _as_cols(x, p, q), _as_cols(t, p, q)

    def cols_call(grad_output, **kw):
        grad_output, kw = _per_position(grad_output, kw, p, q)
        loss, grad = fx.cross_entropy_with_grad(xc, tc, axis=1, grad_output=grad_output, **kw)
        return _flat(loss), _as_rows(grad), _flat(fx.cross_entropy(xc, tc, axis=1, **kw))

    _check_soft(x, t, rng.random(n) + 0.5, rng.random(p * q) + 0.1, rng.standard_normal(p * q), cols_call, dtype, h,
                f"{simd} n={n}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ignore_index", [0, 3, -1, 2**40 + 1, -(2**63)])
def test_ignore_index_values(simd, dtype, ignore_index, rng, h):
    # A class index (0, 3) and values outside [0, n): 2**40 + 1 has the low
    # 32 bits of class 1, so labels must not be compared as int32 alone.
    n = 10
    x, y = _data(rng, 100, n, dtype)
    y[y == -100] = ignore_index
    y[::7] = ignore_index
    kw = dict(reduction="none", ignore_index=ignore_index)
    loss, grad = fx.cross_entropy_with_grad(x, y, **kw)
    h.assert_close(loss, ref.cross_entropy(x, y, **kw), dtype, scale=2 * h.scale(x))
    h.assert_close(grad, ref.cross_entropy_grad(x, y, **kw), dtype, scale=2)
    assert np.all(grad[y == ignore_index] == 0)
    assert np.all(loss[y == ignore_index] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 10, 31])
def test_inplace_gradient(simd, dtype, n, rng):
    # The output overwrites the input block by block (rows stored whole may
    # overhang into the next row): the gradient must not depend on it.
    x, y = _data(rng, 531, n, dtype)
    loss, grad = fx.cross_entropy_with_grad(x, y, reduction="none")
    loss2, grad2 = fx.cross_entropy_with_grad(x, y, reduction="none", inplace=True)
    np.testing.assert_array_equal(x, grad)
    np.testing.assert_array_equal(loss2, loss)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [3, 10, 32])
def test_same_bits_for_every_thread_count(dtype, n, rng):
    rows = 70000 // n + 513  # above the serial threshold, several work units and a partial one
    x, y = _data(rng, rows, n, dtype)
    out = []
    for nt in (1, 2, 3):
        loss, grad, lse = fx.cross_entropy_with_grad(x, y, reduction="sum", return_lse=True, n_threads=nt)
        out.append((np.float64(loss).tobytes(), grad.tobytes(), lse.tobytes(),
                    fx.cross_entropy(x, y, n_threads=nt).__repr__(),
                    fx.softmax(x, n_threads=nt).tobytes(), fx.log_softmax(x, n_threads=nt).tobytes(),
                    fx.logsumexp(x, n_threads=nt).tobytes()))
    assert out[1] == out[0] and out[2] == out[0]


def _as_cols(a, p, q):
    """Rows (p * q, n) in PyTorch's (p, n, q) layout: row i * q + j is
    position j of sample i."""
    return np.ascontiguousarray(a.reshape(p, q, -1).transpose(0, 2, 1))


def _as_rows(a):
    return a.transpose(0, 2, 1).reshape(-1, a.shape[1])


# A partial block; pairs and a partial one; two work units of positions.
COLS = [(1, 7), (2, 37), (3, 531)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
# Around one and two vectors of lanes (2 to 16) on every path: positions take
# the narrow kernels up to two; 33 is past them on every path.
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 21, 31, 32, 33])
def test_every_width_with_the_class_axis_strided(simd, dtype, n, rng, h):
    for p, q in COLS:
        x, y = _data(rng, p * q, n, dtype)
        xc, yc = _as_cols(x, p, q), y.reshape(p, q)
        scale = h.scale(x)
        msg = f"{simd} p={p} q={q} n={n}"
        h.assert_close(fx.logsumexp(xc, axis=1).reshape(-1), ref.logsumexp(x), dtype, scale=scale, err_msg=msg)
        h.assert_close(_as_rows(fx.softmax(xc, axis=1)), ref.softmax(x), dtype, err_msg=msg)
        h.assert_close(_as_rows(fx.log_softmax(xc, axis=1)), ref.log_softmax(x), dtype, scale=scale, err_msg=msg)
        loss, grad, lse = fx.cross_entropy_with_grad(xc, yc, axis=1, reduction="none", return_lse=True)
        h.assert_close(loss.reshape(-1), ref.cross_entropy(x, y, reduction="none"), dtype, scale=2 * scale,
                       err_msg=msg)
        h.assert_close(_as_rows(grad), ref.cross_entropy_grad(x, y, reduction="none"), dtype, scale=2,
                       err_msg=msg)
        h.assert_close(lse.reshape(-1), ref.logsumexp(x), dtype, scale=scale, err_msg=msg)
        assert np.all(_as_rows(grad)[y == -100] == 0), msg
        # Without the gradient (float64 on AVX-512: x_y by a gather).
        h.assert_close(fx.cross_entropy(xc, yc, axis=1, reduction="none").reshape(-1),
                       ref.cross_entropy(x, y, reduction="none"), dtype, scale=2 * scale, err_msg=msg)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [2, 10, 21, 32])
def test_weights_and_scales_with_the_class_axis_strided(simd, dtype, n, rng, h):
    p, q = 3, 531
    x, y = _data(rng, p * q, n, dtype)
    xc, yc = _as_cols(x, p, q), y.reshape(p, q)
    w = rng.random(n) + 0.5
    sw = rng.random(p * q) + 0.1
    go = rng.standard_normal(p * q)
    scale = h.scale(x)
    for reduction in ("none", "sum", "mean"):
        kw = dict(weight=w, sample_weight=sw, reduction=reduction)
        grad_output = go if reduction == "none" else 1.5
        loss, grad = fx.cross_entropy_with_grad(
            xc, yc, axis=1, weight=w, sample_weight=sw.reshape(p, q), reduction=reduction,
            grad_output=go.reshape(p, q) if reduction == "none" else grad_output)
        h.assert_close(loss.reshape(-1) if reduction == "none" else loss, ref.cross_entropy(x, y, **kw), dtype,
                       scale=2 * scale,
                       err_msg=reduction)
        h.assert_close(_as_rows(grad), ref.cross_entropy_grad(x, y, grad_output=grad_output, **kw), dtype,
                       scale=2, err_msg=reduction)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 10, 31])
def test_inplace_gradient_with_the_class_axis_strided(simd, dtype, n, rng):
    x, y = _data(rng, 2 * 531, n, dtype)
    xc, yc = _as_cols(x, 2, 531), y.reshape(2, 531)
    loss, grad = fx.cross_entropy_with_grad(xc, yc, axis=1, reduction="none")
    loss2, grad2 = fx.cross_entropy_with_grad(xc, yc, axis=1, reduction="none", inplace=True)
    np.testing.assert_array_equal(xc, grad)
    np.testing.assert_array_equal(loss2, loss)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [3, 21])
def test_same_bits_for_every_thread_count_with_the_class_axis_strided(dtype, n, rng):
    p, q = 9, 70000 // n // 9 + 37  # above the serial threshold, several work units per sample
    x, y = _data(rng, p * q, n, dtype)
    xc, yc = _as_cols(x, p, q), y.reshape(p, q)
    tc = _as_cols(_soft_targets(rng, p * q, n, dtype), p, q)
    out = []
    for nt in (1, 2, 3):
        loss, grad, lse = fx.cross_entropy_with_grad(xc, yc, axis=1, reduction="sum", return_lse=True,
                                                     n_threads=nt)
        soft_loss, soft_grad = fx.cross_entropy_with_grad(xc, tc, axis=1, label_smoothing=0.1, n_threads=nt)
        out.append((np.float64(loss).tobytes(), grad.tobytes(), lse.tobytes(),
                    np.float64(soft_loss).tobytes(), soft_grad.tobytes(),
                    fx.softmax(xc, axis=1, n_threads=nt).tobytes(),
                    fx.log_softmax(xc, axis=1, n_threads=nt).tobytes(),
                    fx.logsumexp(xc, axis=1, n_threads=nt).tobytes()))
    assert out[1] == out[0] and out[2] == out[0]
