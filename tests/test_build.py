"""The build: OpenMP present and used, headers found, introspection and CLI work."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastxent as fx

ALLOW_SERIAL = os.environ.get("FASTXENT_ALLOW_SERIAL") == "1"
KEYS = {"version", "openmp", "max_threads", "num_procs", "simd", "simd_supported", "compiler",
        "cflags", "platform", "cpu", "numpy", "python"}


def _env(repo_root, **extra):
    """A subprocess environment that imports this checkout's in-place build."""
    env = dict(os.environ)
    env["PYTHONPATH"] = repo_root + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def test_openmp_not_lost(config):
    # A build whose compiler probe silently failed is serial: 2x-16x slower
    # and nobody notices.  Set FASTXENT_ALLOW_SERIAL=1 to accept one on purpose.
    if ALLOW_SERIAL:
        pytest.skip("FASTXENT_ALLOW_SERIAL=1")
    assert config["openmp"] is True, "fastxent was built without OpenMP (see show_config()['cflags'])"
    assert "openmp" in config["cflags"].lower()


def test_openmp_runtime_visible(config):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if ALLOW_SERIAL and not config["openmp"]:
        pytest.skip("serial build allowed")
    apis = {info["user_api"] for info in threadpoolctl.threadpool_info()}
    assert "openmp" in apis, "no OpenMP runtime loaded by fastxent"


def test_max_threads_uses_the_cores(config):
    if ALLOW_SERIAL and not config["openmp"]:
        pytest.skip("serial build allowed")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    omp_env = os.environ.get("OMP_NUM_THREADS")
    if cores < 2 or (omp_env and omp_env.split(",")[0].strip() == "1"):
        pytest.skip("a single core (or OMP_NUM_THREADS=1)")
    assert config["max_threads"] >= 2
    assert config["num_procs"] >= 2


_THREAD_PROBE = textwrap.dedent("""
    import os, numpy as np, fastxent as fx
    def n_tasks():
        return len(os.listdir("/proc/self/task"))
    x = np.random.default_rng(0).standard_normal((512, 1000))
    fx.logsumexp(x, n_threads=1)            # no parallel region: no new threads
    before = n_tasks()
    fx.logsumexp(x, n_threads=2)            # 512000 elements: above the serial threshold
    after = n_tasks()
    print(before, after)
""")


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_two_threads_really_run(config, repo_root):
    # libgomp keeps its worker threads alive after a parallel region, so the
    # process gains at least one thread the first time n_threads=2 runs.
    if ALLOW_SERIAL and not config["openmp"]:
        pytest.skip("serial build allowed")
    env = _env(repo_root, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="2", MKL_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", _THREAD_PROBE], cwd=repo_root, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    before, after = map(int, result.stdout.split())
    assert after >= before + 1, f"threads before/after an n_threads=2 call: {before}/{after}"


def test_show_config_keys(config):
    assert KEYS <= set(config)
    assert config["version"] == fx.__version__
    assert isinstance(config["openmp"], bool)
    assert isinstance(config["max_threads"], int) and config["max_threads"] >= 1
    assert config["simd"] in ("baseline", "avx2", "avx512")
    assert config["simd_supported"] in ("baseline", "avx2", "avx512")
    assert config["numpy"] == np.__version__
    # Never -ffast-math/-ffinite-math-only (they break inf/NaN handling) and
    # never -march=native by default (SIGILL on older CPUs).
    for flag in ("-ffast-math", "-ffinite-math-only", "-march=native"):
        assert flag not in config["cflags"] and flag not in config["compiler"]


def test_get_include():
    include = fx.get_include()
    assert os.path.isfile(os.path.join(include, "fastxent.h"))
    with open(os.path.join(include, "fastxent.h")) as f:
        header = f.read()
    # The row kernels the design names are declared for C callers.
    for name in ("fx_logsumexp_row_f32", "fx_logsumexp_row_f64"):
        assert name in header


def test_get_cython_include():
    path = fx.get_cython_include()
    assert os.path.isfile(os.path.join(path, "fastxent", "_core.pxd"))


@pytest.mark.parametrize("as_json", [False, True])
def test_cli_info(repo_root, as_json):
    cmd = [sys.executable, "-m", "fastxent", "info"] + (["--json"] if as_json else [])
    result = subprocess.run(cmd, cwd=repo_root, env=_env(repo_root), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    if as_json:
        info = json.loads(result.stdout)
        assert KEYS <= set(info)
        assert info["version"] == fx.__version__
    else:
        for key in ("openmp", "simd", "max_threads", "version"):
            assert key in result.stdout


def test_cli_demo(repo_root):
    cmd = [sys.executable, "-m", "fastxent", "demo", "--rows", "64", "--classes", "100"]
    result = subprocess.run(cmd, cwd=repo_root, env=_env(repo_root), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cli_bad_command(repo_root):
    result = subprocess.run([sys.executable, "-m", "fastxent", "nonsense"], cwd=repo_root,
                            env=_env(repo_root), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "invalid choice" in result.stderr


def test_public_names():
    for name in ("logsumexp", "softmax", "log_softmax", "cross_entropy", "cross_entropy_with_grad",
                 "show_config", "get_include", "get_cython_include", "__version__"):
        assert name in fx.__all__ and hasattr(fx, name)
