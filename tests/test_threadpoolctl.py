"""threadpoolctl sees fastxent's OpenMP runtime and its limits apply to fastxent."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastxent

threadpoolctl = pytest.importorskip("threadpoolctl")

needs_openmp = pytest.mark.skipif(not fastxent.show_config()["openmp"],
                                  reason="fastxent was built without OpenMP (serial)")


@needs_openmp
def test_threadpool_info_lists_fastxent_openmp_runtime():
    # In a fresh interpreter that loads only fastxent (NumPy's BLAS is not
    # OpenMP), every OpenMP runtime threadpoolctl finds is the one fastxent
    # is linked against.
    code = (
        "import json, fastxent, threadpoolctl\n"
        "info = [m for m in threadpoolctl.threadpool_info() if m['user_api'] == 'openmp']\n"
        "before = fastxent.show_config()['max_threads']\n"
        "with threadpoolctl.threadpool_limits(limits=1, user_api='openmp'):\n"
        "    inside = fastxent.show_config()['max_threads']\n"
        "print(json.dumps({'info': info, 'before': before, 'inside': inside}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env_with_fastxent(), check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    assert result["info"], "threadpoolctl found no OpenMP runtime after importing fastxent"
    assert all(m["num_threads"] == result["before"] for m in result["info"])
    assert result["inside"] == 1


@needs_openmp
def test_limits_restrict_threads_and_keep_results_identical():
    rng = np.random.default_rng(0)
    # large enough for the parallel path (several reduction blocks)
    x = rng.standard_normal((512, 700)).astype(np.float32)
    y = rng.integers(0, 700, 512)
    default_threads = fastxent.show_config()["max_threads"]
    loss, grad = fastxent.cross_entropy_with_grad(x, y, label_smoothing=0.1)
    lse = fastxent.logsumexp(x)
    with threadpoolctl.threadpool_limits(limits=1):
        assert fastxent.show_config()["max_threads"] == 1
        loss1, grad1 = fastxent.cross_entropy_with_grad(x, y, label_smoothing=0.1)
        lse1 = fastxent.logsumexp(x)
    assert fastxent.show_config()["max_threads"] == default_threads
    assert loss1 == loss
    np.testing.assert_array_equal(grad1, grad)
    np.testing.assert_array_equal(lse1, lse)


def _env_with_fastxent():
    """The environment for a child interpreter that imports this fastxent."""
    env = dict(os.environ)
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fastxent.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, env.get("PYTHONPATH")]))
    return env
