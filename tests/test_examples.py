"""The examples/ programs run, learn, write their plot, and (NumPy) allocate no N x C array per step."""
import importlib
import os
import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import fastxent

pytest.importorskip("sklearn", reason="the digits examples load scikit-learn's bundled data set")
pytest.importorskip("matplotlib", reason="the digits examples plot their loss curve")

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
# 3 epochs instead of the default 40: the shortened runs reach ~0.94-0.97
SHORT_EPOCHS = 3
SHORT_RUN_ACCURACY = 0.90


def _run_example(name, tmp_path):
    png = tmp_path / f"{name}.png"
    env = dict(os.environ)
    parent = os.path.dirname(os.path.dirname(os.path.abspath(fastxent.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"  # tiny matrices: threads only add waiting on a shared CI machine
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, f"{name}.py"), "--epochs", str(SHORT_EPOCHS), "--plot", str(png)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    epochs = re.findall(r"^epoch\s+(\d+)\s+train loss ([\d.]+)", proc.stdout, re.M)
    assert [int(e) for e, _ in epochs] == list(range(1, SHORT_EPOCHS + 1))
    losses = [float(loss) for _, loss in epochs]
    assert losses[-1] < losses[0], f"training loss did not decrease: {losses}"
    accuracy = float(re.search(r"final test accuracy: ([\d.]+)", proc.stdout).group(1))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", "the loss curve is not a PNG file"
    assert png.stat().st_size > 5000
    return accuracy


def test_digits_numpy_learns(tmp_path):
    assert _run_example("digits_numpy", tmp_path) >= SHORT_RUN_ACCURACY


def test_digits_torch_learns(tmp_path):
    pytest.importorskip("torch")
    assert _run_example("digits_torch", tmp_path) >= SHORT_RUN_ACCURACY


@pytest.fixture
def digits_numpy():
    sys.path.insert(0, EXAMPLES)
    try:
        yield importlib.import_module("digits_numpy")
    finally:
        sys.path.remove(EXAMPLES)
        for name in ("digits_numpy", "digits_data"):
            sys.modules.pop(name, None)


def test_numpy_training_step_allocates_no_batch_by_classes_array(digits_numpy):
    batch, n_classes, n_in = 4096, 10, 64
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, n_in)).astype(np.float32)
    y = rng.integers(0, n_classes, batch)
    model = digits_numpy.MLP(n_in, 16, n_classes, batch, rng)
    index = rng.permutation(batch)
    model.step(X, y, index, 0.01)  # first call: lazy imports, caches
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        model.step(X, y, index, 0.01)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    # NumPy reports its data buffers to tracemalloc; what remains is Python
    # objects and ufunc casting buffers of fixed size, far below one N x C array
    assert peak < batch * n_classes * 4, f"one training step allocated {peak} bytes at its peak"
    assert np.isfinite(model.params[0]).all()
