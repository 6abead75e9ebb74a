"""fastxent's kernels called from another Cython extension and from plain C.

Both build against what the package exports: ``fastxent.get_include()``
(fastxent.h and the kernel sources) and ``fastxent.get_cython_include()``
(where ``cimport fastxent._core`` finds _core.pxd).  Two routes from Cython:
the ``capi_*`` kernels, fetched from fastxent._core's ``__pyx_capi__`` at
import (nothing to link), and the fused inline helpers (``lse_row``, ...),
which call the C symbols and so need ``fx_kernels.c`` compiled into the
extension, as a C program does.
"""
import ast
import importlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import numpy as np
import pytest

import fastxent
from fastxent import _reference as ref

REPO = os.path.dirname(os.path.dirname(os.path.abspath(fastxent.__file__)))
# Under the sanitized build (.ci/sanitize) the kernels this file compiles
# itself would not be instrumented: the tests that need them (the plain run
# has them) are left out there, and only the capi route, which calls the
# sanitized fastxent._core, is built and run.
SANITIZED = "-fsanitize" in fastxent.show_config()["cflags"]
needs_own_kernels = pytest.mark.skipif(SANITIZED, reason="the sanitized run: kernels compiled here are not "
                                                        "instrumented (the plain run tests them)")


def _c_compiler():
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    exe = cc.split()[0]
    return cc.split() if shutil.which(exe) else None


def _env():
    env = dict(os.environ)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastxent.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    return env


def _run(cmd, cwd, what, env=None):
    proc = subprocess.run(cmd, cwd=cwd, env={**_env(), **(env or {})}, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def _data(n, c):
    """The test matrix, defined identically in the C program below."""
    i, j = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    x = 4.0 * np.sin(0.7 * i + 1.3 * j + 0.1)
    labels = (3 * np.arange(n) + 1) % c
    return x, labels


# ---------------------------------------------------------------------------
# Cython: cimport the fused row helpers and call them inside prange

CYTHON_EXT = textwrap.dedent("""
    # cython: language_level=3, boundscheck=False, wraparound=False
    from cython.parallel cimport prange
    from libc.stdint cimport int64_t
    from fastxent._core cimport fx_ce_options, lse_row, softmax_row, ce_label_row, ce_prob_row


    def lse_rows(const float[:, ::1] x, float[::1] out, int n_threads):
        cdef Py_ssize_t i
        for i in prange(x.shape[0], nogil=True, schedule='static', num_threads=n_threads):
            out[i] = <float>lse_row(&x[i, 0], x.shape[1])


    def log_softmax_rows(const double[:, ::1] x, double[:, ::1] out, int n_threads):
        cdef Py_ssize_t i
        for i in prange(x.shape[0], nogil=True, schedule='static', num_threads=n_threads):
            softmax_row(&x[i, 0], x.shape[1], &out[i, 0], True, 0)


    def ce_label_rows(const double[:, ::1] x, const int64_t[::1] labels, double eps,
                      double[::1] loss, double[:, ::1] grad, int n_threads):
        cdef fx_ce_options opt
        opt.weight = NULL
        opt.label_smoothing = eps
        opt.z_loss = 0.0
        opt.flags = 0
        cdef Py_ssize_t i
        for i in prange(x.shape[0], nogil=True, schedule='static', num_threads=n_threads):
            loss[i] = ce_label_row(&x[i, 0], x.shape[1], labels[i], &opt, 1.0, &grad[i, 0], NULL)


    def ce_prob_rows(const float[:, ::1] x, const float[:, ::1] t, const float[::1] weight,
                     double[::1] loss, int n_threads):
        cdef fx_ce_options opt
        opt.weight = &weight[0]
        opt.label_smoothing = 0.0
        opt.z_loss = 0.0
        opt.flags = 0
        cdef Py_ssize_t i
        for i in prange(x.shape[0], nogil=True, schedule='static', num_threads=n_threads):
            loss[i] = ce_prob_row(&x[i, 0], &t[i, 0], x.shape[1], &opt, 1.0, NULL, NULL)
""")

CAPI_EXT = textwrap.dedent("""
    # cython: language_level=3, boundscheck=False, wraparound=False
    from cython.parallel cimport prange
    from libc.stdint cimport int64_t
    from fastxent._core cimport fx_ce_options, capi_ce_label_row_f32, capi_softmax_row_f64


    def ce_label_rows(const float[:, ::1] x, const int64_t[::1] labels, const float[::1] weight,
                      double[::1] loss, float[:, ::1] grad, int n_threads):
        cdef fx_ce_options opt
        opt.weight = &weight[0]
        opt.label_smoothing = 0.0
        opt.z_loss = 0.0
        opt.flags = 0
        cdef Py_ssize_t i
        for i in prange(x.shape[0], nogil=True, schedule='static', num_threads=n_threads):
            loss[i] = capi_ce_label_row_f32(&x[i, 0], x.shape[1], labels[i], &opt, 0.5, &grad[i, 0], NULL)


    def softmax_rows(const double[:, ::1] x, double[:, ::1] out, int n_threads):
        cdef Py_ssize_t i
        for i in prange(x.shape[0], nogil=True, schedule='static', num_threads=n_threads):
            capi_softmax_row_f64(&x[i, 0], x.shape[1], &out[i, 0], 0)
""")

SETUP_PY = textwrap.dedent("""
    import os
    import fastxent
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    inc = fastxent.get_include()
    # -O0, the quickest build: these files only call kernels compiled
    # elsewhere (fastxent._core's, or fx_kernels.o below)
    omp = dict(extra_compile_args=["-O0", "-fopenmp"], extra_link_args=["-fopenmp"])
    # the capi_* functions come from fastxent._core at import: nothing to link
    exts = [Extension("fx_capi_ext", sources=["fx_capi_ext.pyx"], include_dirs=[inc], **omp)]
    if os.environ.get("FX_KERNELS_OBJECT"):
        # the fused helpers call the C symbols: build the kernels in, here from
        # fx_kernels.c compiled once by the test (sources=[..., fx_kernels.c] works too)
        exts.append(Extension("fx_user_ext", sources=["fx_user_ext.pyx"], include_dirs=[inc],
                              extra_objects=[os.environ["FX_KERNELS_OBJECT"]], **omp))
    setup(ext_modules=cythonize(exts, include_path=[fastxent.get_cython_include()]))
""")


@pytest.fixture(scope="module")
def kernels_object(tmp_path_factory):
    """fx_kernels.c from get_include(), compiled once (-O0: the quickest build;
    the kernels are also correct unoptimised) for the C program and the extension."""
    cc = _c_compiler()
    if cc is None:
        pytest.skip("no C compiler found (CC / sysconfig CC)")
    build = tmp_path_factory.mktemp("kernels")
    inc = fastxent.get_include()
    obj = str(build / "fx_kernels.o")
    _run(cc + ["-O0", "-fPIC", "-I", inc, "-c", os.path.join(inc, "fx_kernels.c"), "-o", obj],
         build, "compiling fx_kernels.c")
    return obj


@pytest.fixture(scope="module")
def built_exts(request, tmp_path_factory):
    pytest.importorskip("Cython", reason="Cython is needed to build an extension that cimports fastxent")
    build = tmp_path_factory.mktemp("cython_ext")
    (build / "fx_user_ext.pyx").write_text(CYTHON_EXT)
    (build / "fx_capi_ext.pyx").write_text(CAPI_EXT)
    (build / "setup.py").write_text(SETUP_PY)
    names = ("fx_capi_ext",) if SANITIZED else ("fx_user_ext", "fx_capi_ext")
    _run([sys.executable, "setup.py", "-q", "build_ext", "--inplace", "--parallel", "2"], build,
         "building the Cython extensions",
         env={} if SANITIZED else {"FX_KERNELS_OBJECT": request.getfixturevalue("kernels_object")})
    sys.path.insert(0, str(build))
    try:
        yield {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(build))
        for name in names:
            sys.modules.pop(name, None)


@pytest.fixture
def user_ext(built_exts):
    return built_exts["fx_user_ext"]


@pytest.fixture
def capi_ext(built_exts):
    return built_exts["fx_capi_ext"]


@needs_own_kernels
@pytest.mark.parametrize("n_threads", [1, 2])
def test_cython_extension_calls_kernels_in_prange(user_ext, n_threads):
    x, labels = _data(37, 1000)  # rows long enough for the SIMD blocks
    x32 = x.astype(np.float32)

    out = np.empty(len(x), dtype=np.float32)
    user_ext.lse_rows(x32, out, n_threads)
    np.testing.assert_allclose(out, ref.logsumexp(x32), rtol=2e-6)

    out = np.empty_like(x)
    user_ext.log_softmax_rows(x, out, n_threads)
    np.testing.assert_allclose(out, ref.log_softmax(x), rtol=1e-12, atol=1e-12)

    loss = np.empty(len(x))
    grad = np.empty_like(x)
    user_ext.ce_label_rows(x, labels, 0.1, loss, grad, n_threads)
    np.testing.assert_allclose(loss, ref.cross_entropy(x, labels, label_smoothing=0.1, reduction="none"),
                               rtol=1e-12)
    np.testing.assert_allclose(grad, ref.cross_entropy_grad(x, labels, label_smoothing=0.1,
                                                            reduction="none"), rtol=1e-10, atol=1e-14)

    t = ref.softmax(np.cos(x)).astype(np.float32)
    w = np.linspace(0.5, 1.5, x.shape[1]).astype(np.float32)
    loss = np.empty(len(x))
    user_ext.ce_prob_rows(x32, t, w, loss, n_threads)
    np.testing.assert_allclose(loss, ref.cross_entropy(x32, t, weight=w, reduction="none"), rtol=2e-5)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_cython_extension_calls_capi_kernels_without_linking(capi_ext, n_threads):
    x, labels = _data(23, 517)
    x32 = x.astype(np.float32)
    w = np.linspace(0.2, 2.0, x.shape[1]).astype(np.float32)
    loss = np.empty(len(x))
    grad = np.empty_like(x32)
    capi_ext.ce_label_rows(x32, labels, w, loss, grad, n_threads)
    np.testing.assert_allclose(loss, ref.cross_entropy(x32, labels, weight=w, reduction="none"), rtol=2e-5)
    np.testing.assert_allclose(grad, ref.cross_entropy_grad(x32, labels, weight=w, reduction="none",
                                                            grad_output=np.full(len(x), 0.5)),
                               rtol=2e-4, atol=1e-7)
    out = np.empty_like(x)
    capi_ext.softmax_rows(x, out, n_threads)
    np.testing.assert_allclose(out, ref.softmax(x), rtol=1e-12, atol=1e-15)


def test_capi_exports_every_row_kernel():
    import fastxent._core as core

    kernels = {f"capi_{op}_row_{dt}" for op in ("logsumexp", "softmax", "log_softmax", "ce_label", "ce_prob")
               for dt in ("f32", "f64")}
    assert kernels <= set(core.__pyx_capi__)


# ---------------------------------------------------------------------------
# plain C: fastxent.h + fx_kernels.c, no Python

C_PROGRAM = textwrap.dedent("""
    #include <math.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include "fastxent.h"

    int main(int argc, char **argv) {
        int64_t n = atoi(argv[1]), c = atoi(argv[2]);
        double *x = malloc(sizeof(double) * n * c), *g = malloc(sizeof(double) * c);
        float *xf = malloc(sizeof(float) * c);
        fx_ce_options opt = {0};
        opt.label_smoothing = 0.2;
        printf("simd %s\\n", fx_simd_name(fx_simd_path()));
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < c; j++)
                x[i * c + j] = 4.0 * sin(0.7 * i + 1.3 * j + 0.1);
        for (int64_t i = 0; i < n; i++) {
            const double *row = x + i * c;
            int64_t label = (3 * i + 1) % c;
            double lse;
            double loss = fx_ce_label_row_f64(row, c, label, &opt, 1.0, g, &lse);
            for (int64_t j = 0; j < c; j++) xf[j] = (float)row[j];
            printf("%.17g %.17g %.17g %.9g %.17g %.17g\\n", fx_logsumexp_row_f64(row, c), lse, loss,
                   fx_logsumexp_row_f32(xf, c), g[label], g[(label + 1) % c]);
        }
        free(x); free(g); free(xf);
        return 0;
    }
""")


@needs_own_kernels
def test_c_program_uses_the_headers(tmp_path, kernels_object):
    cc = _c_compiler()
    inc = fastxent.get_include()
    (tmp_path / "prog.c").write_text(C_PROGRAM)
    exe = str(tmp_path / "prog")
    _run(cc + ["-O2", "-I", inc, "prog.c", kernels_object, "-lm", "-o", exe], tmp_path, "compiling the C program")
    n, c = 9, 300
    lines = _run([exe, str(n), str(c)], tmp_path, "running the C program").splitlines()
    assert lines[0].split()[1] in ("baseline", "avx2", "avx512")
    got = np.array([[float(v) for v in line.split()] for line in lines[1:]])
    assert got.shape == (n, 6)

    x, labels = _data(n, c)
    lse = ref.logsumexp(x)
    np.testing.assert_allclose(got[:, 0], lse, rtol=1e-13)
    np.testing.assert_allclose(got[:, 1], lse, rtol=1e-13)
    np.testing.assert_allclose(got[:, 2], ref.cross_entropy(x, labels, label_smoothing=0.2,
                                                            reduction="none"), rtol=1e-12)
    np.testing.assert_allclose(got[:, 3], ref.logsumexp(x.astype(np.float32)), rtol=2e-6)
    grad = ref.cross_entropy_grad(x, labels, label_smoothing=0.2, reduction="none")
    rows = np.arange(n)
    np.testing.assert_allclose(got[:, 4], grad[rows, labels], rtol=1e-11)
    np.testing.assert_allclose(got[:, 5], grad[rows, (labels + 1) % c], rtol=1e-11)


def test_include_dir_holds_every_header_the_kernels_need():
    """get_include() (fastxent/include when installed) has every file that
    fx_kernels.c and fastxent.h #include, transitively."""
    inc = fastxent.get_include()
    needed, todo = set(), ["fx_kernels.c", "fastxent.h"]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        path = os.path.join(inc, name)
        assert os.path.isfile(path), f"{name} is missing from {inc}"
        with open(path) as f:
            todo += re.findall(r'#\s*include\s+"([^"]+)"', f.read())
    assert {"fx_kernels.c", "fastxent.h", "fx_vecmath.h"} <= needed
