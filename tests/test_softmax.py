"""logsumexp, softmax and log_softmax against the float64 NumPy reference."""
import re

import numpy as np
import pytest

import fastxent as fx
from fastxent import _reference as ref

FUNCS = ["logsumexp", "softmax", "log_softmax"]
DTYPES = [np.float32, np.float64, np.float16]
# Around the SIMD widths (4/8/16 lanes), 2x unrolled widths (32) and the
# 1024-element blocks, plus an odd size past 4096: every tail length is hit.
CLASS_COUNTS = [1, 2, 7, 15, 16, 17, 31, 33, 1023, 1024, 1025, 4097]


def _call(name, x, **kw):
    return getattr(fx, name)(x, **kw)


def _expected(name, x, axis=-1):
    return getattr(ref, name)(x, axis=axis)


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", CLASS_COUNTS)
def test_against_reference(name, dtype, n_classes, rng, h):
    x = (rng.standard_normal((5, n_classes)) * 4).astype(dtype)
    got = _call(name, x)
    assert got.dtype == dtype  # float16 comes back as float16
    assert got.shape == (x.shape[:-1] if name == "logsumexp" else x.shape)
    h.assert_close(got, _expected(name, x), dtype, scale=h.scale(x))


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(9,), (1, 9), (3, 4, 9), (2, 3, 2, 17)])
def test_leading_dims(name, dtype, shape, rng, h):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    got = _call(name, x)
    expected = _expected(name, x)
    assert got.shape == expected.shape
    h.assert_close(got, expected, dtype, scale=h.scale(x))


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_axis_on_3d(name, dtype, axis, rng, h):
    x = (rng.standard_normal((4, 5, 6)) * 3).astype(dtype)
    got = _call(name, x, axis=axis)
    expected = _expected(name, x, axis=axis)
    assert got.shape == expected.shape
    h.assert_close(got, expected, dtype, scale=h.scale(x))


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_out_is_returned(name, dtype, axis, rng, h):
    x = (rng.standard_normal((3, 4, 5)) * 3).astype(dtype)
    expected = _expected(name, x, axis=axis)
    out = np.full(expected.shape, np.nan, dtype=dtype)
    got = _call(name, x, axis=axis, out=out)
    assert got is out
    h.assert_close(out, expected, dtype, scale=h.scale(x))


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["noncontiguous", "readonly", "fortran", "reversed"])
def test_layouts_never_modified(name, dtype, layout, rng, h):
    base = (rng.standard_normal((6, 37)) * 3).astype(dtype)
    if layout == "noncontiguous":
        x = h.noncontiguous(base)
    elif layout == "readonly":
        x = h.readonly(base)
    elif layout == "fortran":
        x = np.asfortranarray(base)
    else:
        x = base[::-1, ::-1]
    before = x.copy()
    got = _call(name, x)
    h.unchanged(before, x)
    h.assert_close(got, _expected(name, before), dtype, scale=h.scale(x))


@pytest.mark.parametrize("name", FUNCS)
def test_list_input_and_n_threads(name, h):
    x = [[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]]
    for n_threads in (None, 1, 2, -1):
        got = _call(name, x, n_threads=n_threads)
        h.assert_close(got, _expected(name, x), np.float64)


# --------------------------------------------------------------------------
# extreme inputs: semantics follow PyTorch / SciPy


def _extreme_rows():
    inf, nan = np.inf, np.nan
    return np.array([
        [1.0, 2.0, 3.0, 4.0],
        [1e30, -1e30, 0.0, 1e30],        # huge but finite: must not overflow
        [-1e30, -1e30, -1e30, -1e30],    # huge negative: uniform softmax
        [1.0, -inf, 2.0, -inf],          # -inf = masked classes
        [nan, 1.0, 2.0, 3.0],            # NaN poisons its own row only
        [-inf, -inf, -inf, -inf],        # nothing unmasked: lse -inf, softmax NaN
        [inf, 1.0, 2.0, 3.0],            # +inf: lse +inf, softmax NaN
        [inf, -inf, 0.0, 0.0],
        [3.0, 2.0, 1.0, 0.0],
    ])


def _call_layout(name, x, layout):
    """The rows of x as rows, or as the positions of a (1, C, N) array with
    axis=1 (the column kernels); the result in the row layout."""
    if layout == "rows":
        return _call(name, x)
    got = _call(name, np.ascontiguousarray(x.T[None]), axis=1)
    return got[0] if name == "logsumexp" else got[0].T


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_extreme_logsumexp(dtype, layout, h):
    x = _extreme_rows().astype(dtype)
    got = _call_layout("logsumexp", x, layout)
    h.assert_close(got, ref.logsumexp(x), dtype, scale=1e30)
    assert got[5] == -np.inf and got[6] == np.inf and np.isnan(got[4])
    assert got[1] == np.float32(1e30).astype(dtype) or dtype == np.float64 and got[1] == 1e30 + np.log(2)
    # The rows without special values are judged at their own scale.
    for i in (0, 3, 8):
        h.assert_close(got[i], ref.logsumexp(x[i]), dtype, scale=h.scale(x[i]))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_extreme_softmax(name, dtype, layout, h):
    x = _extreme_rows().astype(dtype)
    got = _call_layout(name, x, layout)
    expected = _expected(name, x)
    # Rows 1 and 2 (ties at +-1e30) are left to test_huge_ties: the
    # reference rounds there (test_reference_huge_ties).
    for i in (0, 3, 4, 5, 6, 7, 8):
        scale = 1.0 if name == "softmax" else h.scale(x[i])
        h.assert_close(got[i], expected[i], dtype, scale=scale, err_msg=f"row {i}")
    # Masked classes: probability exactly 0, log-probability exactly -inf.
    masked = np.isneginf(x[3])
    if name == "softmax":
        assert np.all(got[3][masked] == 0) and np.all(got[3][~masked] > 0)
        np.testing.assert_allclose(got[2], 0.25, rtol=h.tolerance(dtype)[0])
    else:
        assert np.all(np.isneginf(got[3][masked]))
    # A row whose logsumexp is not finite is NaN throughout (PyTorch).
    for i in (4, 5, 6, 7):
        assert np.all(np.isnan(got[i])), f"row {i}: {got[i]}"
    for i in (0, 1, 2, 3, 8):
        assert not np.any(np.isnan(got[i])), f"row {i} polluted: {got[i]}"


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_kernel_class_groups(name, dtype, h):
    """The column kernels take the class axis 32 classes at a time, merging
    each group's max and exp-sum into the running ones: special values that
    arrive in later groups, and a max that rises in every group, must give
    what one pass over the row gives."""
    short = _extreme_rows()
    places = [3, 40, 70, 99]  # four different groups of 32
    x = np.full((short.shape[0] + 2, 100), -np.inf)
    x[:short.shape[0], places] = short  # -inf padding changes nothing
    x[-2] = np.linspace(-20.0, 30.0, 100)
    x[-1] = x[-2][::-1]
    x = x.astype(dtype)
    got = _call_layout(name, x, "columns")
    expected = _expected(name, x)
    if name != "logsumexp":
        got, expected = got[:, places + list(range(100))], expected[:, places + list(range(100))]
    for i in (0, 3, 4, 5, 6, 7, 8, 9, 10):
        scale = 1.0 if name == "softmax" else h.scale(x[i])
        h.assert_close(got[i], expected[i], dtype, scale=scale, err_msg=f"row {i}")
    if name == "logsumexp":
        assert got[5] == -np.inf and got[6] == np.inf and np.isnan(got[4])
    else:
        padding = np.isneginf(x[0])
        assert np.all(got[0][4:][padding] == (0 if name == "softmax" else -np.inf))


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [3, 17, 1025])
def test_nan_anywhere_in_row(name, dtype, n_classes, rng, h):
    # A NaN in any lane position (head, SIMD body, tail) must reach the result.
    x = rng.standard_normal((n_classes, n_classes)).astype(dtype)
    x[np.arange(n_classes), np.arange(n_classes)] = np.nan
    x = np.concatenate([x, rng.standard_normal((2, n_classes)).astype(dtype)])
    got = _call(name, x)
    assert np.all(np.isnan(got[:n_classes]))
    h.assert_close(got[n_classes:], _expected(name, x[n_classes:]), dtype, scale=h.scale(x[n_classes:]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [5, 33, 1024])
def test_masked_everywhere_but_one(dtype, n_classes, h):
    # Only one finite logit per row, moving across all positions.
    x = np.full((n_classes, n_classes), -np.inf, dtype=dtype)
    x[np.arange(n_classes), np.arange(n_classes)] = np.linspace(-50, 50, n_classes)
    p = fx.softmax(x)
    np.testing.assert_array_equal(p, np.eye(n_classes, dtype=dtype))
    h.assert_close(fx.logsumexp(x), np.linspace(-50, 50, n_classes).astype(dtype), dtype, scale=50)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("big", [1e30, -1e30])
@pytest.mark.parametrize("n_classes", [4, 17, 1025])
def test_huge_ties(name, dtype, big, n_classes):
    # Ties at +-1e30: the exact answer is known (uniform over the tied
    # maxima).  The float64 reference cannot be the oracle here: it forms
    # x - (m + log s), and m + log s rounds to m at 1e30.
    x = np.full((3, n_classes), big, dtype=dtype)
    x[1, n_classes // 2:] = -1e30 if big > 0 else -np.inf
    x[2, ::2] = np.finfo(dtype).min
    x[2, 1::2] = big
    n_max = np.count_nonzero(x == x.max(axis=1, keepdims=True), axis=1)
    expected = np.where(x == x.max(axis=1, keepdims=True), 1.0 / n_max[:, None], 0.0)
    got = _call(name, x)
    rtol = 4 * np.finfo(dtype).eps
    if name == "softmax":
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)
    else:
        top = expected > 0
        np.testing.assert_allclose(got[top], np.log(expected[top]), rtol=rtol, atol=0)
        assert np.all(got[~top] < -1e29)
    np.testing.assert_allclose(fx.logsumexp(x), x.max(axis=1).astype(np.float64) + np.log(n_max), rtol=rtol)


def test_reference_huge_ties():
    np.testing.assert_allclose(ref.softmax(np.array([1e30, 1e30])), [0.5, 0.5])


# --------------------------------------------------------------------------
# accuracy


def test_float32_logsumexp_10m(rng):
    # One long row: the float32 sum must not drift (relative error <= 1e-6).
    x = rng.standard_normal((1, 10_000_000), dtype=np.float32)
    got = fx.logsumexp(x)
    expected = ref.logsumexp(x)
    assert got.dtype == np.float32
    assert abs(float(got[0]) - expected[0]) <= 1e-6 * abs(expected[0])


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_float32_long_rows_accuracy(scale, rng):
    x = (rng.standard_normal((2, 256000)) * scale).astype(np.float32)
    got = fx.logsumexp(x).astype(np.float64)
    expected = ref.logsumexp(x)
    assert np.max(np.abs(got - expected) / np.abs(expected)) <= 1e-6


# --------------------------------------------------------------------------
# argument errors name the argument


@pytest.mark.parametrize("name", FUNCS)
def test_errors(name):
    with pytest.raises(TypeError, match="x"):
        _call(name, np.arange(6).reshape(2, 3))
    with pytest.raises(TypeError, match="x"):
        _call(name, np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match="x"):
        _call(name, np.float64(1.0))
    with pytest.raises(np.exceptions.AxisError):
        _call(name, np.ones((2, 3)), axis=2)
    with pytest.raises(TypeError, match="axis"):
        _call(name, np.ones((2, 3)), axis=1.0)
    with pytest.raises(TypeError, match="n_threads"):
        _call(name, np.ones((2, 3)), n_threads="2")
    with pytest.raises(ValueError, match="n_threads"):
        _call(name, np.ones((2, 3)), n_threads=0)
    shape = (2,) if name == "logsumexp" else (2, 3)
    with pytest.raises(TypeError, match="out"):
        _call(name, np.ones((2, 3)), out=np.empty(shape, dtype=np.float32))
    with pytest.raises(ValueError, match="out"):
        _call(name, np.ones((2, 3)), out=np.empty((5,)))
    with pytest.raises(TypeError, match="out"):
        _call(name, np.ones((2, 3)), out=[0.0, 0.0])
    ro = np.empty(shape)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        _call(name, np.ones((2, 3)), out=ro)


@pytest.mark.parametrize("name", FUNCS)
def test_errors_write_nothing(name):
    # Validation happens before any kernel writes: a rejected out= is untouched.
    out = np.full((2, 3) if name != "logsumexp" else (2,), 7.0)
    wrong = out[::1] if name == "logsumexp" else np.asfortranarray(np.full((3, 2), 7.0)).T
    with pytest.raises((ValueError, TypeError)):
        _call(name, np.ones((3, 3)), out=wrong)
    assert np.all(wrong == 7.0)


@pytest.mark.parametrize("name", FUNCS)
def test_zero_rows(name):
    x = np.empty((0, 5))
    got = _call(name, x)
    assert got.shape == ((0,) if name == "logsumexp" else (0, 5))


@pytest.mark.parametrize("name", FUNCS)
@pytest.mark.parametrize("shape", [(0,), (3, 0)])
def test_empty_class_axis(name, shape):
    x = np.empty(shape)
    try:
        got = _call(name, x)
    except ValueError as e:
        assert re.search(r"\bx\b|class", str(e)), str(e)
        return
    expected = _expected(name, x)  # -inf per row, like scipy.special.logsumexp
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [33, 64, 100, 512, 1024, 1025])
@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
def test_rows_in_groups_match_one_row_at_a_time(name, dtype, n_classes, rng):
    """A batch takes short rows a few at a time (fx_logsumexp_rows,
    fx_softmax_rows): every row must get the bits of the one-row kernel,
    special rows included, and the rows left over after the last whole
    group too."""
    fn = getattr(fx, name)
    x = (rng.standard_normal((23, n_classes)) * 5).astype(dtype)
    x[1] = -np.inf           # a row of -inf
    x[2, 7] = np.inf         # a row holding +inf
    x[5, 3] = np.nan         # a row holding NaN
    x[6, :] = 0.0            # a tie everywhere
    x[9, -1] = 1e4           # the max in the tail lanes
    x[10, ::2] = -np.inf     # masked classes
    one_by_one = np.concatenate([fn(x[i:i + 1], n_threads=1) for i in range(len(x))])
    for n_threads in (1, 2):
        assert fn(x, n_threads=n_threads).tobytes() == one_by_one.tobytes()
    if name != "logsumexp":
        inplace = x.copy()
        fn(inplace, out=inplace)
        assert inplace.tobytes() == one_by_one.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [64, 128, 256, 512, 1024])
@pytest.mark.parametrize("name", ["softmax", "cross_entropy_with_grad"])
def test_saved_exps_match_exps_taken_again(name, dtype, n_classes, rng):
    """Rows of one block (1024 classes) are written from the exps their scan
    saved; longer rows take each exp again.  The same row padded with -inf
    past a block (the padding adds exactly 0 to the sum, and a multiple of
    32 classes keeps the block's order of addition) goes the other way, and
    must give the same bits: grouped rows, a row at a time, the leftovers
    after the last group."""
    n_rows = 9
    x = (rng.standard_normal((n_rows, n_classes)) * 5).astype(dtype)
    x[1] = -np.inf
    x[2, 3] = np.inf
    x[4, ::3] = -np.inf
    x[5, -1] = 1e4
    padded = np.full((n_rows, 2048), -np.inf, dtype=dtype)
    padded[:, :n_classes] = x
    if name == "softmax":
        short, long = fx.softmax(x), fx.softmax(padded)
    else:
        y = rng.integers(0, n_classes, n_rows)
        y[3] = n_classes - 1
        short = fx.cross_entropy_with_grad(x, y, reduction="sum")[1]
        long = fx.cross_entropy_with_grad(padded, y, reduction="sum")[1]
    assert short.tobytes() == np.ascontiguousarray(long[:, :n_classes]).tobytes()
    assert not np.nan_to_num(long[:, n_classes:]).any()  # 0 past the row, NaN in the rows of NaN


@pytest.mark.parametrize("name,target", [(name, target) for name in FUNCS for target in ("new", "out", "inplace")
                                         if (name, target) != ("logsumexp", "inplace")])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 10), (5, 32), (6, 33), (40, 100), (3, 1025), (1, 16383)])
def test_small_call_fast_path_matches_general_path(name, target, dtype, shape, rng, monkeypatch):
    # Small C-contiguous float32/float64 (N, C) calls skip the Python checks
    # (fastxent._softmax._small); n_threads=-1 sends the same call down the
    # general path.  Same bits, the same kind of result, x untouched.
    from fastxent import _core
    taken = []
    real = _core.rows_small
    monkeypatch.setattr(_core, "rows_small", lambda *a: taken.append(a[2]) or real(*a))
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    x[0, 0] = np.nan if shape[0] > 1 else x[0, 0]
    x0 = x.copy()
    slow = getattr(fx, name)(x, n_threads=-1)
    assert not taken
    kw = {}
    if target == "out":
        kw["out"] = np.full(slow.shape, 7.0, dtype)
    elif target == "inplace":
        kw["out"] = x
    fast = getattr(fx, name)(x, **kw)
    assert taken == [FUNCS.index(name)]  # the mode: 0 logsumexp, 1 softmax, 2 log_softmax
    assert fast.dtype == dtype and fast.shape == slow.shape
    assert fast.tobytes() == slow.tobytes()
    if "out" in kw:
        assert fast is kw["out"]
    if target != "inplace":
        assert x.tobytes() == x0.tobytes()


@pytest.mark.parametrize("case", ["float16", "fortran", "3d", "axis0", "large", "bad-out-dtype",
                                  "overlapping-out", "readonly-out", "list"])
def test_small_call_fast_path_declines(case, rng, monkeypatch):
    # What the fast path does not take, the general path does, with its errors.
    from fastxent import _core
    taken = []
    real = _core.rows_small
    monkeypatch.setattr(_core, "rows_small", lambda *a: taken.append(a[2]) or real(*a))
    x = rng.standard_normal((8, 5))
    kw = {}
    if case == "float16":
        x = x.astype(np.float16)
    elif case == "fortran":
        x = np.asfortranarray(x)
    elif case == "3d":
        x = x.reshape(2, 4, 5)
    elif case == "axis0":
        kw["axis"] = 0
    elif case == "large":
        x = rng.standard_normal((4, _core.SERIAL // 4))
    elif case == "bad-out-dtype":
        with pytest.raises(TypeError, match="out"):
            fx.softmax(x, out=np.empty(x.shape, np.float32))
        assert not taken
        return
    elif case == "overlapping-out":
        buf = np.concatenate([x.ravel(), np.zeros(5)])
        x, out = buf[:40].reshape(8, 5), buf[5:45].reshape(8, 5)
        with pytest.raises(ValueError, match="out"):
            fx.softmax(x, out=out)
        assert not taken
        return
    elif case == "readonly-out":
        out = np.empty_like(x)
        out.flags.writeable = False
        with pytest.raises(ValueError, match="out"):
            fx.softmax(x, out=out)
        assert not taken
        return
    else:
        x = x.tolist()
    got = fx.softmax(x, **kw)
    assert not taken
    np.testing.assert_allclose(got, ref.softmax(np.asarray(x, np.float64), axis=kw.get("axis", -1)),
                               rtol=2e-3 if case == "float16" else 1e-12)
