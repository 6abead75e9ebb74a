"""Every SIMD path this CPU supports gives the reference's answers.

The dispatcher picks the best path at run time; a bug in a lower path would
only show on older CPUs, so each path is forced here: once per subprocess via
FASTXENT_SIMD (the documented switch, read once at first use), and in-process
via fastxent._core.set_simd for the wider kernel matrix.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastxent as fx
from fastxent import _core
from fastxent import _reference as ref

ORDER = ["baseline", "avx2", "avx512"]
SUPPORTED = ORDER[: ORDER.index(fx.show_config()["simd_supported"]) + 1]

_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import fastxent as fx
    from fastxent import _reference as ref

    print(fx.show_config()["simd"])
    rng = np.random.default_rng(0)
    for dtype, rtol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        for c in (1, 7, 16, 17, 33, 1025):
            x = (rng.standard_normal((9, c)) * 4).astype(dtype)
            x[3, c // 2] = -np.inf
            x[5, c - 1] = np.nan
            y = rng.integers(0, c, 9)
            y[2] = -100
            atol = rtol * 16
            for name in ("logsumexp", "softmax", "log_softmax"):
                np.testing.assert_allclose(getattr(fx, name)(x), getattr(ref, name)(x),
                                           rtol=rtol, atol=atol, equal_nan=True, err_msg=name)
            loss, grad = fx.cross_entropy_with_grad(x, y, reduction="none", label_smoothing=0.1)
            np.testing.assert_allclose(loss, ref.cross_entropy(x, y, reduction="none", label_smoothing=0.1),
                                       rtol=rtol, atol=atol, equal_nan=True)
            np.testing.assert_allclose(grad, ref.cross_entropy_grad(x, y, reduction="none",
                                                                    label_smoothing=0.1),
                                       rtol=rtol, atol=atol, equal_nan=True)
    print("ok")
""")


@pytest.mark.parametrize("path", ORDER)
def test_forced_path_subprocess(path, import_root):
    env = dict(os.environ)
    env["PYTHONPATH"] = import_root + os.pathsep + env.get("PYTHONPATH", "")
    env["FASTXENT_SIMD"] = path
    result = subprocess.run([sys.executable, "-c", _CHILD], cwd=import_root, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    chosen, status = result.stdout.split()
    # FASTXENT_SIMD can only lower the path: asking for more than the CPU has
    # gives the best it has (never SIGILL).
    expected = path if path in SUPPORTED else SUPPORTED[-1]
    assert chosen == expected
    assert status == "ok"


def test_unknown_env_value_ignored(import_root):
    env = dict(os.environ, FASTXENT_SIMD="sse9000")
    env["PYTHONPATH"] = import_root + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, "-c", "import fastxent as fx; print(fx.show_config()['simd'])"],
                            cwd=import_root, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == SUPPORTED[-1]


def test_set_simd_clamps_and_rejects(restore_simd):
    assert _core.set_simd("avx512") == SUPPORTED[-1]
    assert _core.set_simd("baseline") == "baseline"
    with pytest.raises(ValueError, match="simd"):
        _core.set_simd("neon")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [1, 2, 3, 4, 5, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1023, 1025, 4097])
def test_kernels_per_path(simd, dtype, n_classes, rng, h):
    # Every tail length of the 4/8/16-lane loops, for every kernel.
    x = (rng.standard_normal((6, n_classes)) * 5).astype(dtype)
    x[1, -1] = -np.inf
    x[2, 0] = np.nan
    y = rng.integers(0, n_classes, 6)
    y[4] = -100
    t = rng.random((6, n_classes))
    t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    w = rng.random(n_classes) + 0.5
    scale = h.scale(x)
    for name in ("logsumexp", "softmax", "log_softmax"):
        h.assert_close(getattr(fx, name)(x), getattr(ref, name)(x), dtype,
                       scale=1.0 if name == "softmax" else scale, err_msg=f"{simd} {name}")
    for target in (y, t):
        kw = dict(reduction="none", weight=w, label_smoothing=0.1, z_loss=1e-3)
        loss, grad, lse = fx.cross_entropy_with_grad(target=target, logits=x, return_lse=True, **kw)
        h.assert_close(loss, ref.cross_entropy(x, target, **kw), dtype, scale=2 * scale, err_msg=simd)
        h.assert_close(grad, ref.cross_entropy_grad(x, target, **kw), dtype, scale=2, err_msg=simd)
        h.assert_close(lse, ref.logsumexp(x), dtype, scale=scale, err_msg=simd)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_classes", [7, 20, 100, 1025, 40000])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("layout", ["rows", "one row a call", "columns"])
def test_classes_far_below_the_max_add_nothing(simd, dtype, n_classes, n_threads, layout):
    """Where a scan only sums its exps, the classes below the exp's clamp
    may add exp(clamp) (2^-126 / 2^-1022) instead of 0 (fx_block_sums,
    fx_narrow_sum, fx_cols_scan): that must not reach a result.  With one
    class at 3 and every other 1000 or 100 below it or -inf, the lse is
    exactly 3: narrow rows, many blocks and slices, one row split across
    threads (one row a call), and positions of a (1, C, N) array, on every
    instruction set; rows of -inf stay -inf, +inf stays +inf, and NaN stays
    NaN."""
    x = np.full((7, n_classes), -997.0, dtype=dtype)
    x[1:4] = -np.inf
    x[3, n_classes // 2] = np.nan
    x[4] = -97.0
    x[4, 0] = -np.inf
    x[5:, 0] = np.inf  # row 5: +inf alone would sum to exp(clamp), finite, without its fix-up
    x[6, 1:] = 100.0
    x[6, n_classes // 2] = np.nan
    top = n_classes - 1  # in the last block: the blocks before had a lower running max
    x[[0, 1, 4], top] = 3.0
    y = np.full(7, top)

    def call(fn, x, *args, **kw):
        if layout == "columns":
            got = fn(np.ascontiguousarray(x.T[None]), *(a[None] for a in args), axis=1, n_threads=n_threads, **kw)
            return got[0] if got.ndim == 2 else got[0].T
        if layout == "rows":
            return fn(x, *args, n_threads=n_threads, **kw)
        return np.concatenate([fn(x[i:i + 1], *(a[i:i + 1] for a in args), n_threads=n_threads, **kw)
                               for i in range(len(x))])

    expected = np.array([3.0, 3.0, -np.inf, np.nan, 3.0, np.inf, np.nan], dtype=dtype)
    np.testing.assert_array_equal(call(fx.logsumexp, x), expected)
    # Without the +inf rows, whose columns take the exact exp from the first group on.
    np.testing.assert_array_equal(call(fx.logsumexp, x[:5]), expected[:5])
    np.testing.assert_array_equal(call(fx.cross_entropy, x, y, reduction="none"),
                                  np.where(np.isfinite(expected), 0, np.nan))  # a non-finite lse: NaN
    np.testing.assert_array_equal(call(fx.log_softmax, x)[[0, 4]], x[[0, 4]] - dtype(3.0))
    far = call(fx.cross_entropy, x[[0]], np.array([0]), reduction="none")
    np.testing.assert_array_equal(far, [1000.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_range_per_path(simd, dtype, h):
    # The vector exp over its whole domain: underflow to 0, no overflow, exact
    # at 0; softmax of [0, d] probes exp(-d) for every d in the range.
    d = np.linspace(0, 800 if dtype == np.float64 else 110, 4001).astype(dtype)
    x = np.stack([np.zeros_like(d), -d], axis=1)
    got = fx.softmax(x)
    expected = ref.softmax(x)
    np.testing.assert_allclose(got, expected, rtol=h.tolerance(dtype)[0],
                               atol=float(np.finfo(dtype).tiny) * 4, err_msg=simd)
    assert np.all(got[:, 0] > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_ulp_per_path(simd, dtype):
    # The vector exp to ~1 ulp.  softmax of [0, -d] is [1, exp(-d)] exactly
    # once 1 + exp(-d) rounds to 1 (d >= 38 in float64, >= 18 in float32), so
    # the second column is the kernel's exp itself.  Reference: exp in long
    # double (float64 inputs) or in float64 (float32 inputs), ~2^-11 ulp or
    # better.  A polynomial one degree short (the Taylor series of degree 6
    # instead of 7 for float64) measures ~4.8 ulp here.
    if dtype == np.float64 and np.finfo(np.longdouble).nmant < 63:
        pytest.skip("needs an 80-bit long double for the reference")
    lo, hi = (38.0, 708.0) if dtype == np.float64 else (18.0, 87.0)
    d = np.random.default_rng(7).uniform(lo, hi, 20000).astype(dtype)
    got = fx.softmax(np.stack([np.zeros_like(d), -d], axis=1))
    assert np.all(got[:, 0] == 1)
    wide = np.longdouble if dtype == np.float64 else np.float64
    true = np.exp(-d.astype(wide))
    ulps = np.abs(got[:, 1].astype(wide) - true) / np.spacing(true.astype(dtype)).astype(wide)
    assert ulps.max() <= 1.25, (simd, float(ulps.max()), float(d[np.argmax(ulps)]))


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 63, reason="x87 long double only")
def test_x87_state_left_clean(simd):
    # No kernel may leave MMX state behind: GCC once moved values through MMX
    # registers in the baseline float64 narrow kernels without EMMS, and every
    # later long double (x87) operation in the process failed.
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        for n in (1, 2, 3, 5, 9, 17, 33, 1025):
            x = rng.standard_normal((37, n)).astype(dtype)
            y = rng.integers(0, n, 37)
            t = (x > 0).astype(dtype)
            fx.logsumexp(x), fx.softmax(x), fx.log_softmax(x), fx.cross_entropy_with_grad(x, y)
            fx.cross_entropy_with_grad(x, y, weight=rng.random(n) + 0.5, sample_weight=rng.random(37),
                                       reduction="none", grad_output=rng.standard_normal(37))
            fx.cross_entropy_with_grad(x, t / np.maximum(t.sum(axis=1, keepdims=True), 1))
            fx.binary_cross_entropy_with_grad(x, t), fx.entropy(fx.softmax(x))
            with np.errstate(all="raise"):
                assert np.longdouble(2) * np.longdouble(3) + np.longdouble(1) == 7, (simd, dtype, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_paths_agree(dtype, rng, restore_simd):
    # All paths compute the same function; they may round differently.
    x = (rng.standard_normal((20, 1000)) * 3).astype(dtype)
    y = rng.integers(0, 1000, 20)
    results = {}
    for path in SUPPORTED:
        _core.set_simd(path)
        results[path] = fx.cross_entropy_with_grad(x, y, reduction="none")
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for path in SUPPORTED[1:]:
        np.testing.assert_allclose(results[path][0], results["baseline"][0], rtol=rtol)
        np.testing.assert_allclose(results[path][1], results["baseline"][1], rtol=rtol, atol=rtol * 1e-2)
