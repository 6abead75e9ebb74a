"""Property-based fuzzing of every public function against fastxent._reference.

Hypothesis draws shapes (sizes 0 and 1 included), dtypes, memory layouts
(C, Fortran, strided slices, transposes, negative strides), the class axis
and option combinations; each result must match the float64 reference within
a tolerance set by the dtype, or the call must raise the documented error.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastxent as fx
from fastxent import _reference as ref

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DTYPES = [np.float16, np.float32, np.float64]
LAYOUTS = ["C", "F", "strided", "transposed", "reversed"]
# Relative tolerance by item size; absolute tolerances scale with the values.
RTOL = {2: 2e-3, 4: 2e-5, 8: 1e-10}


def tol(dtype):
    return RTOL[np.dtype(dtype).itemsize]


def place(values, layout, rng):
    """`values` copied into an array of the same shape and dtype with the given memory layout."""
    if values.ndim == 0:
        return values.copy()  # np.ascontiguousarray would make it 1-d
    if layout == "C":
        return np.ascontiguousarray(values)
    if layout == "F":
        return np.asfortranarray(values)
    if layout == "strided":
        base = np.zeros(values.shape[:-1] + (2 * values.shape[-1] + 1,), values.dtype)
        view = base[..., 1::2]
    elif layout == "transposed":
        perm = rng.permutation(values.ndim)
        base = np.zeros(tuple(values.shape[i] for i in perm), values.dtype)
        view = base.transpose(np.argsort(perm))
    else:  # reversed
        base = np.zeros(values.shape, values.dtype)
        view = base[::-1]
    view[...] = values
    return view


@st.composite
def logits_strategy(draw, min_classes=0, specials=True):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(-ndim, ndim - 1))
    shape = list(shape)
    shape[axis] = max(shape[axis], min_classes)
    # Sometimes a long class axis, across the kernels' vector and block tails.
    if draw(st.booleans()):
        shape[axis] = draw(st.sampled_from([7, 16, 33, 1025, 2500]))
    shape = tuple(shape)
    assume(np.prod(shape) <= 40_000)
    dtype = draw(st.sampled_from(DTYPES))
    # float16 results beyond 65504 are -inf: kept in range (test_float16_result_overflow).
    scale = draw(st.sampled_from([1.0, 10.0, 1e3 if dtype == np.float16 else 1e4]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal(shape) * scale).astype(dtype)
    if specials and values.size and draw(st.booleans()):
        special = draw(st.sampled_from([-np.inf, np.inf, np.nan]))
        values.flat[rng.integers(0, values.size, draw(st.integers(1, 3)))] = special
    layout = draw(st.sampled_from(LAYOUTS))
    return place(values, layout, rng), axis, scale, rng


def assert_close(got, expected, dtype, scale):
    t = tol(dtype)
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape
    # Non-finite results must agree exactly (NaN with NaN, inf with inf of the same sign).
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(expected)], expected[~finite & ~np.isnan(expected)])
    np.testing.assert_allclose(got[finite], expected[finite], rtol=t, atol=t * max(1.0, scale))


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
@FUZZ
@given(data=logits_strategy(), use_out=st.booleans(), n_threads=st.sampled_from([None, 1, 2, -1]))
def test_building_blocks(name, data, use_out, n_threads):
    x, axis, scale, _ = data
    f, r = getattr(fx, name), getattr(ref, name)
    expected = r(x, axis=axis)
    kwargs = {"axis": axis, "n_threads": n_threads}
    if use_out:
        kwargs["out"] = np.full(expected.shape, 7, dtype=x.dtype)
    with np.errstate(all="ignore"):  # casting the float64 reference down
        expected_cast = expected.astype(x.dtype).astype(np.float64)
    got = f(x, **kwargs)
    if use_out:
        assert got is kwargs["out"]
    assert got.dtype == x.dtype and got.shape == expected.shape
    # The result is the logits' dtype: compare with the reference rounded to it
    # where that rounding overflows (float16), else with the reference itself.
    assert_close(got, np.where(np.isfinite(expected_cast), expected, expected_cast), x.dtype, scale)


@st.composite
def ce_problem(draw):
    # At least one class: fastxent._reference cannot reshape C = 0 rows (the
    # C = 0 cases of fastxent itself are in test_bad_input.py).
    x, axis, scale, rng = draw(logits_strategy(min_classes=1, specials=False))
    axis = axis % x.ndim
    n_classes = x.shape[axis]
    target_shape = x.shape[:axis] + x.shape[axis + 1:]
    opts = {"axis": axis}
    kind = draw(st.sampled_from(["labels", "labels", "probs"]))
    bad_label = False
    if kind == "labels":
        ignore_index = draw(st.sampled_from([-100, 0, -1]))
        opts["ignore_index"] = ignore_index
        dtype = draw(st.sampled_from([np.int64, np.int32, np.uint8, np.int8]))
        if n_classes == 0 or (np.dtype(dtype).kind == "u" and ignore_index < 0 and n_classes > 255):
            labels = np.full(target_shape, ignore_index)
        else:
            labels = rng.integers(0, min(n_classes, np.iinfo(dtype).max + 1), target_shape)
            labels[rng.random(target_shape) < 0.2] = ignore_index
        if labels.size and draw(st.integers(0, 9)) == 0:
            labels.flat[rng.integers(0, labels.size)] = draw(st.sampled_from([n_classes, n_classes + 3, -7]))
        if np.dtype(dtype).kind == "u" and (ignore_index < 0 or labels.min(initial=0) < 0):
            dtype = np.int64  # an unsigned array cannot hold a negative label
        if labels.max(initial=0) > np.iinfo(dtype).max:
            dtype = np.int64
        labels = labels.astype(dtype)
        live = labels != ignore_index
        bad_label = np.any(live & ((labels < 0) | (labels >= n_classes)))
        target = place(labels, draw(st.sampled_from(LAYOUTS)), rng)
    else:
        raw = rng.random(x.shape)
        sums = raw.sum(axis=axis, keepdims=True)
        target = place((raw / np.where(sums == 0, 1, sums)).astype(x.dtype), draw(st.sampled_from(LAYOUTS)), rng)
    if draw(st.booleans()):
        opts["weight"] = rng.random(n_classes) + draw(st.sampled_from([0.0, 0.5]))
    if draw(st.booleans()):
        opts["sample_weight"] = rng.random(target_shape) * 2
    opts["reduction"] = draw(st.sampled_from(["mean", "sum", "none"]))
    opts["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 1.0]))
    opts["z_loss"] = draw(st.sampled_from([0.0, 1e-3]))
    opts["empty"] = draw(st.sampled_from(["nan", "zero"]))
    return x, target, opts, scale, bool(bad_label)


def as_returned(expected, dtype, opts):
    """The reference loss as fastxent returns it: 'none' in the logits' dtype
    (where rounding to it overflows, the overflowed value), else a float64."""
    if opts["reduction"] != "none":
        return expected
    with np.errstate(over="ignore"):
        cast = np.asarray(expected).astype(dtype).astype(np.float64)
    return np.where(np.isfinite(cast), expected, cast)


def _loss_tol_scale(x, opts, scale):
    # The loss is a sum of O(scale) terms per row (label smoothing adds a
    # sum over the classes): tolerances grow with the values' magnitude.
    return scale * (1 + 1e3 * opts["z_loss"] * scale)


@FUZZ
@given(problem=ce_problem(), n_threads=st.sampled_from([None, 1, 2]))
def test_cross_entropy(problem, n_threads):
    x, target, opts, scale, bad_label = problem
    if bad_label:
        with pytest.raises(ValueError, match="target holds label"):
            fx.cross_entropy(x, target, n_threads=n_threads, **opts)
        return
    got = fx.cross_entropy(x, target, n_threads=n_threads, **opts)
    expected = ref.cross_entropy(x, target, **opts)
    if opts["reduction"] == "none":
        assert got.dtype == x.dtype
    else:
        assert isinstance(got, float)
    assert_close(got, as_returned(expected, x.dtype, opts), x.dtype, _loss_tol_scale(x, opts, scale))


@FUZZ
@given(problem=ce_problem(), dest=st.sampled_from(["new", "out", "inplace"]), return_lse=st.booleans(),
       go=st.sampled_from([1.0, -2.5, "array"]), n_threads=st.sampled_from([None, 1, 2]))
def test_cross_entropy_with_grad(problem, dest, return_lse, go, n_threads):
    x, target, opts, scale, bad_label = problem
    kwargs = dict(opts, n_threads=n_threads, return_lse=return_lse)
    target_shape = x.shape[:opts["axis"]] + x.shape[opts["axis"] + 1:]
    if go == "array":
        go = np.linspace(-1, 2, int(np.prod(target_shape))).reshape(target_shape) if opts["reduction"] == "none" else 0.5
    kwargs["grad_output"] = go
    x0 = x.copy()
    if dest == "out":
        kwargs["out"] = np.full(x.shape, 7, dtype=x.dtype)
    elif dest == "inplace":
        # inplace needs a writable C-contiguous float32/float64 array: take a C copy.
        if x.dtype == np.float16:
            dest = "new"
        else:
            x = np.ascontiguousarray(x)
            kwargs["inplace"] = True
    if bad_label:
        before = x.tobytes(), (kwargs["out"].tobytes() if dest == "out" else None)
        with pytest.raises(ValueError, match="target holds label"):
            fx.cross_entropy_with_grad(x, target, **kwargs)
        assert x.tobytes() == before[0]
        if dest == "out":
            assert kwargs["out"].tobytes() == before[1]
        return
    result = fx.cross_entropy_with_grad(x, target, **kwargs)
    loss, grad = result[0], result[1]
    if dest == "out":
        assert grad is kwargs["out"]
    if dest == "inplace":
        assert grad is x
    assert grad.shape == x0.shape and grad.dtype == x0.dtype
    ref_opts = {k: v for k, v in opts.items()}
    t = _loss_tol_scale(x0, opts, scale)
    with np.errstate(over="ignore"):
        expected_loss = ref.cross_entropy(x0, target, **ref_opts)
        expected_grad = ref.cross_entropy_grad(x0, target, grad_output=go, **ref_opts)
        grad_cast = expected_grad.astype(x0.dtype).astype(np.float64)
    assert_close(loss, as_returned(expected_loss, x0.dtype, opts), x0.dtype, t)
    # Gradient entries are O(weights * |grad_output|), bounded whatever the logits.
    g_scale = 1 + 1e3 * opts["z_loss"] * scale ** 2
    assert_close(grad, np.where(np.isfinite(grad_cast), expected_grad, grad_cast), x0.dtype, g_scale)
    if return_lse:
        lse = result[2]
        assert lse.dtype == x0.dtype and lse.shape == target_shape
        expected_lse = ref.logsumexp(x0, axis=opts["axis"])
        assert_close(lse, expected_lse, x0.dtype, scale)


# Regression: float16 results beyond 65504 are -inf without an overflow
# warning (an error under -W error).
@pytest.mark.parametrize("call", [
    lambda x: fx.log_softmax(x),
    lambda x: fx.log_softmax(x, out=np.empty_like(x)),
    lambda x: fx.cross_entropy(x, np.array([1]), reduction="none"),
    lambda x: fx.cross_entropy_with_grad(x, np.array([1]), reduction="none", grad_output=np.ones(1)),
])
def test_float16_result_overflow(call):
    import warnings
    x = np.array([[60000.0, -60000.0]], dtype=np.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call(x)


# Regression: an ignored row's lse was computed after its gradient row
# (the logits row itself, in place) had been zeroed.
def test_inplace_lse_of_ignored_rows():
    x = np.random.default_rng(0).standard_normal((2, 5)).astype(np.float32)
    expected = fx.logsumexp(x)
    _, _, lse = fx.cross_entropy_with_grad(x, np.array([-100, 1]), inplace=True, return_lse=True)
    np.testing.assert_array_equal(lse, expected)
