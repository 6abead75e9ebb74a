"""Shared fixtures and comparison helpers of the fastxent test-suite.

The helpers are exposed as session fixtures (not imported from this module)
so the suite works whatever pytest's import mode and with or without a
``tests/__init__.py``; session scope keeps them usable inside Hypothesis
tests, which reject function-scoped fixtures.
"""
import os
import zlib

import numpy as np
import pytest

import fastxent as fx
from fastxent import _core

# Why these tolerances (the reference is float64 NumPy on the same input
# values, so any difference is the kernel's own rounding):
# - float64: the kernel and the reference both round ~C times near eps64
#   (2.2e-16); pairwise/blocked sums keep the relative error of a row's
#   log-sum-exp near 1e-15, so rtol=1e-12 leaves ample room while catching
#   any float32 intermediate (which would be ~1e-7).  Values near 0 (a loss
#   lse - x_y that cancels, a tiny gradient) are judged against the scale of
#   the inputs: atol = 1e-14 * scale.
# - float32: eps32 = 1.2e-7; a row's log-sum-exp is accurate to a few ulp of
#   max(|x|) (the shift) plus the exp polynomial's ~1-2 ulp, so 1e-5 relative
#   and 1e-6 * scale absolute are ~10 ulp, tight enough to catch a wrong
#   formula (errors of order 1e-2) or a lost NaN, loose enough for SIMD.
# - float16 is computed in float32 and rounded once to float16 (eps 9.8e-4):
#   half an ulp is 4.9e-4 relative; 2e-3 allows that rounding plus float32's.
TOLERANCES = {
    np.dtype(np.float64): (1e-12, 1e-14),
    np.dtype(np.float32): (1e-5, 1e-6),
    np.dtype(np.float16): (2e-3, 2e-3),
}


def tolerance(dtype):
    return TOLERANCES[np.dtype(dtype)]


def _scale(*arrays):
    """Largest finite magnitude among the inputs, at least 1."""
    s = 1.0
    for a in arrays:
        a = np.asarray(a, dtype=np.float64)
        finite = a[np.isfinite(a)]
        if finite.size:
            s = max(s, float(np.max(np.abs(finite))))
    return s


def assert_close(actual, expected, dtype, *, scale=1.0, rtol=None, atol=None, err_msg=""):
    """Compare a fastxent result with the float64 reference.

    NaN must be NaN and +-inf must match exactly (``assert_allclose`` treats
    NaN == NaN and compares infinities by equality); the absolute tolerance
    scales with `scale` (the magnitude of the inputs) so that results that
    cancel to near zero are judged against what they were computed from.
    """
    r, a = tolerance(dtype)
    rtol = r if rtol is None else rtol
    atol = a * scale if atol is None else atol
    actual_arr = np.asarray(actual)
    if isinstance(actual, np.ndarray):
        assert actual.dtype == np.dtype(dtype), f"dtype {actual.dtype} != {np.dtype(dtype)} {err_msg}"
    np.testing.assert_allclose(np.asarray(actual_arr, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=rtol, atol=atol, equal_nan=True, err_msg=err_msg)


def pytest_configure(config):
    # Hypothesis' failure report imports a module that warns on import; with
    # pyproject's filterwarnings=error that turns a falsifying example into an
    # INTERNALERROR that hides the example.  Not fastxent's warning.
    config.addinivalue_line("filterwarnings",
                            "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")


class Helpers:
    """Namespace handed to tests by the ``h`` fixture."""

    tolerance = staticmethod(tolerance)
    scale = staticmethod(_scale)
    assert_close = staticmethod(assert_close)

    @staticmethod
    def unchanged(before, after):
        """Inputs must come back bit for bit (NaN payloads and signed zeros too)."""
        before = np.asarray(before)
        after = np.asarray(after)
        assert before.dtype == after.dtype and before.shape == after.shape
        assert before.tobytes() == after.tobytes(), "the call modified its input"

    @staticmethod
    def noncontiguous(a):
        """A strided, non-contiguous view holding the same values as `a`."""
        a = np.asarray(a)
        big = np.zeros(a.shape + (2,), dtype=a.dtype)
        big[..., 0] = a
        view = big[..., 0]
        assert not view.flags.c_contiguous or view.size <= 1
        return view

    @staticmethod
    def readonly(a):
        a = np.array(a, copy=True)
        a.flags.writeable = False
        return a


@pytest.fixture(scope="session")
def h():
    return Helpers


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: reproducible, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


SIMD_ORDER = ["baseline", "avx2", "avx512"]


@pytest.fixture
def restore_simd():
    """The dispatcher's SIMD choice, restored after the test."""
    before = _core.simd_path()
    yield
    _core.set_simd(before)
    assert _core.simd_path() == before


@pytest.fixture(params=SIMD_ORDER[: SIMD_ORDER.index(fx.show_config()["simd_supported"]) + 1])
def simd(request, restore_simd):
    """Each SIMD path this CPU supports in turn, forced in-process
    (a lower path's bug would otherwise show only on older CPUs)."""
    assert _core.set_simd(request.param) == request.param
    assert fx.show_config()["simd"] == request.param
    return request.param


@pytest.fixture(scope="session", autouse=True)
def _run_outside_the_checkout(tmp_path_factory):
    """Run every test from an empty directory.  A child `python -c` or
    `python -m` puts its working directory first on sys.path; started from
    the checkout, it would import the unbuilt source tree instead of the
    fastxent under test."""
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)


@pytest.fixture(scope="session")
def import_root():
    """The directory holding the fastxent under test (the checkout for an
    in-place build, site-packages for an installed one): subprocesses run
    there, with it first on PYTHONPATH, so they import the same build."""
    return os.path.dirname(os.path.dirname(os.path.abspath(fx.__file__)))


@pytest.fixture(scope="session")
def config():
    return fx.show_config()
