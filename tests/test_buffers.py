"""Recycled output memory: a dropped output's pages serve the next call, an
output still referenced is never handed out again."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastxent as fx
from fastxent import _buffers
from fastxent import _reference as ref

SHAPE = (512, 4096)  # 8 MiB of float32: above the recycling threshold


@pytest.fixture(autouse=True)
def empty_pool():
    fx.release_buffers()
    yield
    fx.release_buffers()


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal(SHAPE, dtype=np.float32)


def test_dropped_output_memory_is_reused():
    x = _x()
    first = fx.softmax(x)
    address = first.ctypes.data
    del first
    second = fx.softmax(x)
    assert second.ctypes.data == address
    np.testing.assert_allclose(second, ref.softmax(x), rtol=1e-5, atol=1e-7)


KEEPERS = {"array": lambda a: a, "view": lambda a: a[::3], "view of a view": lambda a: a[1:][:, ::2],
           "memoryview": memoryview}


@pytest.mark.parametrize("keep", list(KEEPERS))
def test_referenced_output_is_never_handed_out_again(keep):
    x, other = _x(0), _x(1)
    first = fx.softmax(x)
    expected = np.asarray(KEEPERS[keep](first.copy()))
    held = KEEPERS[keep](first)
    del first
    outputs = [fx.softmax(other), fx.log_softmax(other), fx.cross_entropy_with_grad(other, np.zeros(SHAPE[0], int))[1]]
    assert all(not np.shares_memory(o, np.asarray(held)) for o in outputs)
    np.testing.assert_array_equal(np.asarray(held), expected)


def test_fresh_outputs_are_writable_contiguous_and_own_shape():
    g = fx.cross_entropy_with_grad(_x(), np.arange(SHAPE[0]) % SHAPE[1], reduction="sum")[1]
    assert g.flags.c_contiguous and g.flags.writeable and g.shape == SHAPE and g.dtype == np.float32


def test_release_buffers_frees_only_idle_memory():
    x = _x()
    kept = fx.softmax(x)
    dropped = fx.log_softmax(x)
    del dropped
    held, limit = fx.show_config()["buffer_cache"].values()
    assert held == 2 * x.nbytes and limit == _buffers._limit
    assert fx.release_buffers() == x.nbytes
    assert fx.show_config()["buffer_cache"]["held"] == x.nbytes
    np.testing.assert_allclose(kept, ref.softmax(x), rtol=1e-5, atol=1e-7)


def test_the_pool_stays_under_its_limit(monkeypatch):
    monkeypatch.setattr(_buffers, "_limit", 3 * _x().nbytes)
    x = _x()
    outputs = [fx.softmax(x) for _ in range(5)]  # all held: the pool forgets the oldest
    assert _buffers.cached_bytes()[0] <= 3 * x.nbytes
    assert len({o.ctypes.data for o in outputs}) == 5
    for o in outputs:
        np.testing.assert_allclose(o, ref.softmax(x), rtol=1e-5, atol=1e-7)


def _run(env_value, code, import_root):
    # The build under test, in place or installed (see conftest.import_root).
    env = dict(os.environ, FASTXENT_BUFFER_CACHE=env_value,
               PYTHONPATH=import_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd="/")


def test_environment_variable_turns_recycling_off(import_root):
    code = ("import numpy as np, fastxent as fx\n"
            "x = np.ones((512, 4096), np.float32)\n"
            "a = fx.softmax(x); fx.softmax(x)\n"
            "print(fx.show_config()['buffer_cache'])\n")
    result = _run("0", code, import_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'held': 0, 'limit': 0}"


@pytest.mark.parametrize("value", ["lots", "-1"])
def test_bad_environment_variable_is_a_clear_error(value, import_root):
    result = _run(value, "import fastxent", import_root)
    assert result.returncode != 0
    assert "ValueError" in result.stderr and "FASTXENT_BUFFER_CACHE" in result.stderr
