"""entropy and kl_divergence against SciPy (scipy.stats.entropy,
scipy.special.entr / rel_entr) and fastxent._reference."""
import warnings

import numpy as np
import pytest

import fastxent as fx
from fastxent import _reference as ref

stats = pytest.importorskip("scipy.stats")
special = pytest.importorskip("scipy.special")

DTYPES = [np.float32, np.float64]
BASES = [None, 2, 10]
# (shape, axis): every axis of 2-d and 3-d inputs, negative ones included.
LAYOUTS = [((5, 7), 0), ((5, 7), 1), ((5, 7), -1), ((3, 4, 6), 0), ((3, 4, 6), 1), ((3, 4, 6), -1),
           ((3, 4, 6), -2)]


def _quiet(fn, *args, **kw):
    # SciPy warns (0/0) on rows of zeros; pytest turns warnings into errors.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kw)


def _counts(rng, shape, dtype, zeros=True):
    """Unnormalised non-negative counts, with zeros sprinkled in."""
    p = rng.integers(0 if zeros else 1, 20, shape).astype(dtype)
    return p


def _tol(dtype):
    return dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("shape,axis", LAYOUTS)
def test_entropy_matches_scipy(dtype, base, shape, axis, rng):
    p = _counts(rng, shape, dtype)
    p0 = p.copy()
    got = fx.entropy(p, axis=axis, base=base)
    expected = _quiet(stats.entropy, p.astype(np.float64), axis=axis, base=base)
    assert got.dtype == dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **_tol(dtype))
    np.testing.assert_allclose(got, ref.entropy(p, axis=axis, base=base), **_tol(dtype))
    np.testing.assert_array_equal(p, p0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("shape,axis", LAYOUTS)
def test_kl_divergence_matches_scipy(dtype, base, shape, axis, rng):
    p = _counts(rng, shape, dtype)
    q = _counts(rng, shape, dtype, zeros=False)
    got = fx.kl_divergence(p, q, axis=axis, base=base)
    expected = _quiet(stats.entropy, p.astype(np.float64), q.astype(np.float64), axis=axis, base=base)
    assert got.dtype == dtype and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **_tol(dtype))
    np.testing.assert_allclose(got, ref.kl_divergence(p, q, axis=axis, base=base), **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_zeros_infinities_and_empty_rows(dtype):
    """0 log 0 = 0; q = 0 where p > 0 is infinitely surprising; a row of
    zeros is no distribution (NaN, as SciPy)."""
    p = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 2], [1, 1, 1], [3, 1, 0]], dtype)
    q = np.array([[1, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1], [1, 0, 5]], dtype)
    h = fx.entropy(p)
    np.testing.assert_allclose(h, _quiet(stats.entropy, p.astype(np.float64), axis=-1), **_tol(dtype))
    assert np.isnan(h[0]) and h[1] == 0
    d = fx.kl_divergence(p, q)
    np.testing.assert_allclose(d, _quiet(stats.entropy, p.astype(np.float64), q.astype(np.float64), axis=-1),
                               **_tol(dtype))
    assert np.isnan(d[0]) and d[1] == np.inf and d[4] == np.inf and d[3] == 0
    # Zeros of p opposite zeros of q are harmless.
    assert np.isfinite(fx.kl_divergence(q[1], q[1])) and fx.kl_divergence(q[1], q[1]) == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1])
def test_against_entr_and_rel_entr(dtype, axis, rng):
    """For normalised inputs the sums of SciPy's element-wise terms are the answers."""
    p = rng.random((6, 9)) ** 3
    p[::2, ::3] = 0  # zeros, yet no row or column of zeros
    q = rng.random((6, 9)) + 0.01
    p /= p.sum(axis=axis, keepdims=True)
    q /= q.sum(axis=axis, keepdims=True)
    p, q = p.astype(dtype), q.astype(dtype)
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    # Rounding to float32 unnormalises a little; both sides see the same values.
    p64 /= p64.sum(axis=axis, keepdims=True)
    q64 /= q64.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(fx.entropy(p, axis=axis), special.entr(p64).sum(axis=axis), **_tol(dtype))
    np.testing.assert_allclose(fx.kl_divergence(p, q, axis=axis), special.rel_entr(p64, q64).sum(axis=axis),
                               **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_identities(dtype, rng):
    c = 13
    uniform = np.ones((4, c), dtype)
    np.testing.assert_allclose(fx.entropy(uniform), np.log(c), **_tol(dtype))
    np.testing.assert_allclose(fx.entropy(uniform, base=c), 1.0, **_tol(dtype))
    np.testing.assert_array_equal(fx.entropy(np.eye(c, dtype=dtype)), 0)
    p = _counts(rng, (4, c), dtype)
    d = fx.kl_divergence(p, p)
    np.testing.assert_allclose(d, 0, atol=1e-6 if dtype == np.float32 else 1e-14)
    # Scaling counts does not change the distribution.
    np.testing.assert_allclose(fx.entropy(p * 8), fx.entropy(p), **_tol(dtype))
    q = _counts(rng, (4, c), dtype, zeros=False)
    np.testing.assert_allclose(fx.kl_divergence(p * 4, q / 2), fx.kl_divergence(p, q), **_tol(dtype))
    # Gibbs' inequality.
    assert np.all(fx.kl_divergence(p, q) >= -1e-6)
    # Cross-entropy = entropy + KL (natural logs), against fastxent's own cross_entropy.
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    pn = p64 / p64.sum(-1, keepdims=True)
    qn = q64 / q64.sum(-1, keepdims=True)
    ce = fx.cross_entropy(np.log(qn), pn, reduction="none")
    np.testing.assert_allclose(fx.entropy(pn) + fx.kl_divergence(pn, qn), ce, rtol=1e-12, atol=1e-12)


def test_worked_example_triangles_and_circles():
    """26 triangles and 4 circles: 0.567 bits of surprise per draw."""
    counts = np.array([26.0, 4.0])
    frac = counts / counts.sum()
    expected = -np.sum(frac * np.log2(frac))
    got = fx.entropy(counts, base=2)
    np.testing.assert_allclose(got, expected, rtol=1e-14)
    assert round(float(got), 3) == 0.567
    np.testing.assert_allclose(fx.entropy(counts), expected * np.log(2), rtol=1e-14)


def test_float16_and_mixed_dtypes(rng):
    p = _counts(rng, (3, 5), np.float16, zeros=False)
    q = _counts(rng, (3, 5), np.float32, zeros=False)
    h = fx.entropy(p)
    assert h.dtype == np.float16
    np.testing.assert_allclose(h, ref.entropy(p), rtol=2e-3, atol=2e-3)
    d = fx.kl_divergence(p, q)
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, ref.kl_divergence(p, q), rtol=1e-5, atol=1e-6)
    assert fx.kl_divergence(q, q.astype(np.float64)).dtype == np.float64


def test_one_dimensional_and_lists():
    got = fx.entropy([0.5, 0.25, 0.25], base=2)
    assert np.ndim(got) == 0
    np.testing.assert_allclose(got, 1.5, rtol=1e-14)
    np.testing.assert_allclose(fx.kl_divergence([0.5, 0.5], [0.25, 0.75], base=2),
                               stats.entropy([0.5, 0.5], [0.25, 0.75], base=2), rtol=1e-14)


def test_noncontiguous(rng, h):
    p = _counts(rng, (6, 5), np.float64, zeros=False)
    q = _counts(rng, (6, 5), np.float64, zeros=False)
    np.testing.assert_allclose(fx.entropy(h.noncontiguous(p), axis=0), stats.entropy(p, axis=0), rtol=1e-12)
    np.testing.assert_allclose(fx.kl_divergence(p.T, h.noncontiguous(q.T)), stats.entropy(p.T, q.T, axis=-1),
                               rtol=1e-12)


@pytest.mark.parametrize("shape,axis,out_shape", [((0, 4), -1, (0,)), ((0, 4), 0, (4,)), ((3, 0), -1, (3,)),
                                                  ((2, 0, 3), 0, (0, 3))])
def test_empty(shape, axis, out_shape):
    p = np.zeros(shape)
    h = fx.entropy(p, axis=axis)
    d = fx.kl_divergence(p, p, axis=axis)
    assert h.shape == out_shape and d.shape == out_shape
    assert h.dtype == np.float64 and d.dtype == np.float64


def test_huge_and_tiny_counts():
    uniform = np.log(2)
    for scale in (1e307, 1e-320):
        p = np.array([scale, scale])
        np.testing.assert_allclose(fx.entropy(p), uniform, rtol=1e-12)
        np.testing.assert_allclose(fx.kl_divergence(p, [1.0, 2.0]), stats.entropy([1, 1], [1, 2]), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bit_identical_across_threads(dtype):
    # 512 x 1000 = 512000 elements: above the serial threshold (fx._core.SERIAL elements).
    rng = np.random.default_rng(11)
    p = (rng.random((512, 1000)) ** 3).astype(dtype)
    p[::7, ::3] = 0
    q = (rng.random((512, 1000)) + 0.01).astype(dtype)
    for fn, args in [(fx.entropy, (p,)), (fx.kl_divergence, (p, q))]:
        for axis in (-1, 0):
            results = [fn(*args, axis=axis, n_threads=nt).tobytes() for nt in (1, 2, None)]
            assert results[1] == results[0] and results[2] == results[0], f"{fn.__name__} axis={axis}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [1, 2, 7, 9, 10, 15, 16, 17, 31, 32, 33])
def test_narrow_rows_many_at_a_time(simd, dtype, n_classes, rng):
    """Rows of up to 32 entries are taken a vector of rows at a time (the
    narrow kernels, on every SIMD path this CPU has; 1-2 and 9-10 classes
    have code of their own): whole blocks, a partial last block (37 rows), and
    rows that are special in one lane only, against the float64 reference
    and SciPy; same bits for any number of threads (16421 rows: two threads
    from one class on)."""
    n = 16421
    p = rng.random((n, n_classes)).astype(dtype) ** 3
    q = (rng.random((n, n_classes)) + 0.01).astype(dtype)
    p[1] = 0                                  # no distribution: NaN
    p[2] = 0
    p[2, -1] = 5                              # one-hot: entropy 0
    p[3, 0] = -1                              # negative: NaN
    p[4, -1] = np.nan
    p[5] *= dtype(1e30)                       # huge counts
    p[6] *= dtype(1e-30)                      # tiny counts
    q[7, 0] = 0                               # q = 0 < p: inf
    p[8, 0], q[8, 0] = 0, 0                   # 0 log(0 / 0) = 0
    p[-1] = 0                                 # the partial block's last row
    for fn, args, ref_fn in [(fx.entropy, (p,), ref.entropy), (fx.kl_divergence, (p, q), ref.kl_divergence)]:
        got = fn(*args)
        expected = _quiet(ref_fn, *args)
        expected[3] = np.nan  # a negative entry (the reference normalises a single one to 1)
        np.testing.assert_allclose(got, expected, **_tol(dtype))
        # SciPy (a slice at a time when rows hold NaN: the clean rows only).
        expected = _quiet(stats.entropy, *(a[9:-1].astype(np.float64) for a in args), axis=-1)
        np.testing.assert_allclose(got[9:-1], expected, **_tol(dtype))
        assert np.isnan(got[1]) and np.isnan(got[3]) and np.isnan(got[4]) and np.isnan(got[-1])
        np.testing.assert_allclose(got[:64], fn(*(a[:64] for a in args), n_threads=1), **_tol(dtype))
        assert fn(*args, n_threads=1).tobytes() == fn(*args, n_threads=2).tobytes()
        # Rows by themselves (a block of one) agree to rounding.
        alone = np.concatenate([fn(*(a[i:i + 1] for a in args)) for i in range(40)])
        np.testing.assert_allclose(got[:40], alone, **_tol(dtype))


P = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]])

BAD = [
    (dict(base=0), ValueError, "base"),
    (dict(base=-2.0), ValueError, "base"),
    (dict(base=1), ValueError, "base"),
    (dict(base=1.0), ValueError, "base"),
    (dict(base=np.nan), ValueError, "base"),
    (dict(base=np.inf), ValueError, "base"),
    (dict(base="2"), TypeError, "base"),
    (dict(p=np.array([[1, 2, 3], [0, 1, 1]])), TypeError, "p"),
    (dict(p=P > 0), TypeError, "p"),
    (dict(p=P.astype(complex)), TypeError, "p"),
    (dict(p=np.float64(1.0)), ValueError, "p"),
    (dict(axis=2), np.exceptions.AxisError, "axis"),
    (dict(axis=-3), np.exceptions.AxisError, "axis"),
    (dict(axis=1.0), TypeError, "axis"),
    (dict(axis=None), TypeError, "axis"),
    (dict(n_threads=0), ValueError, "n_threads"),
    (dict(n_threads=2.5), TypeError, "n_threads"),
]
BAD_KL = [
    (dict(q=P[:, :2]), ValueError, "q"),
    (dict(q=P.T), ValueError, "q"),
    (dict(q=np.ones((2, 3), dtype=int)), TypeError, "q"),
    (dict(q=np.ones((2, 3), dtype=bool)), TypeError, "q"),
]


@pytest.mark.parametrize("kw,exc,name", BAD, ids=[f"{n}-{i}" for i, (_, _, n) in enumerate(BAD)])
def test_entropy_bad_arguments(kw, exc, name):
    kw = dict(kw)
    p = kw.pop("p", P)
    with pytest.raises(exc, match=rf"\b{name}\b"):
        fx.entropy(p, **kw)


@pytest.mark.parametrize("kw,exc,name", BAD + BAD_KL, ids=[f"{n}-{i}" for i, (_, _, n) in enumerate(BAD + BAD_KL)])
def test_kl_divergence_bad_arguments(kw, exc, name):
    kw = dict(kw)
    p = kw.pop("p", P)
    q = kw.pop("q", np.ones(np.shape(p)))
    with pytest.raises(exc, match=rf"\b{name}\b"):
        fx.kl_divergence(p, q, **kw)
