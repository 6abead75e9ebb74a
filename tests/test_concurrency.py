"""Concurrent use: Python threads, forked and spawned children, Ctrl-C.

- The kernels release the GIL, so many Python threads may call fastxent at
  once (each call starting its own OpenMP team); each must get the bits a
  serial call gets.
- GNU libgomp hangs in a child made by fork() after the parent ran a parallel
  region (the child waits for worker threads it does not have).  fastxent
  runs every call serially in a forked child (fastxent._validation, an
  os.register_at_fork hook), so such a child neither hangs nor crashes and
  gets the same bits; children started with "spawn" keep their threads.
- SIGINT (Ctrl-C) during a call: the kernel runs without the GIL and is not
  interrupted; Python's handler only records the signal, and
  KeyboardInterrupt is raised as soon as the call returns.  The outputs of
  that call are complete (out= holds the whole result of one call, never a
  mixture), and later calls work normally.

The fork, spawn and SIGINT checks run in a child interpreter with a timeout,
so a hang fails the test instead of blocking CI, and a stray signal cannot
reach the test runner.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastxent as fx
from fastxent import _validation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fx.__file__)))


def run_script(tmp_path, source, timeout=120):
    """Run `source` in a fresh interpreter importing this fastxent; its last stdout line, parsed as JSON."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    # Its own session, so that a hang is cleaned up with every process it forked.
    proc = subprocess.Popen([sys.executable, str(path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(tmp_path), start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"the script did not finish in {timeout} s (hang):\n{stdout}\n{stderr}")
    finally:
        try:  # forked children left behind by a failed script
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, f"status {proc.returncode}\n{stdout}\n{stderr}"
    return json.loads(stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# threads


def _tasks():
    rng = np.random.default_rng(0)
    # (64, 2048) is above the serial threshold: each call opens a parallel region.
    x32 = rng.standard_normal((64, 2048), dtype=np.float32)
    x64 = rng.standard_normal((8, 3, 50))
    y = rng.integers(0, 2048, 64)
    y64 = rng.integers(0, 3, (8, 50))
    y64[0, :7] = -100
    t32 = fx.softmax(rng.standard_normal((64, 2048), dtype=np.float32))
    w = rng.random(2048).astype(np.float32)
    return [
        lambda nt: fx.logsumexp(x32, n_threads=nt),
        lambda nt: fx.softmax(x32, n_threads=nt),
        lambda nt: fx.log_softmax(x64, axis=1, n_threads=nt),
        lambda nt: fx.cross_entropy(x32, y, weight=w, label_smoothing=0.1, n_threads=nt),
        lambda nt: fx.cross_entropy(x64, y64, axis=1, reduction="none", n_threads=nt),
        lambda nt: fx.cross_entropy_with_grad(x32, t32, z_loss=1e-3, n_threads=nt),
        lambda nt: fx.cross_entropy_with_grad(x32, y, reduction="sum", return_lse=True, n_threads=nt,
                                              out=np.empty_like(x32)),
        lambda nt: fx.cross_entropy_with_grad(x32.copy(), y, inplace=True, n_threads=nt),
    ]


def _same(a, b):
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(p, q) for p, q in zip(a, b))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("n_threads", [1, 2, None])
def test_threads_get_the_serial_bits(n_threads):
    tasks = _tasks()
    expected = [task(1) for task in tasks]
    n_workers, rounds = 8, 6
    barrier = threading.Barrier(n_workers)
    failures, errors = [], []

    def worker(k):
        try:
            barrier.wait()
            order = np.random.default_rng(k).permutation(len(tasks) * rounds) % len(tasks)
            for i in order:
                if not _same(tasks[i](n_threads), expected[i]):
                    failures.append((k, int(i)))
        except Exception as e:  # noqa: BLE001 - reported below, in the main thread
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert not errors, errors
    assert not failures, f"(thread, task) pairs that differ from the serial call: {failures[:10]}"


def test_threads_do_not_share_out_buffers():
    """Each thread writes its own out=; no write lands in another thread's buffer."""
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((32, 4096), dtype=np.float32) for _ in range(8)]
    expected = [fx.softmax(x, n_threads=1) for x in xs]
    outs = [np.full_like(x, np.nan) for x in xs]
    barrier = threading.Barrier(len(xs))

    def worker(k):
        barrier.wait()
        for _ in range(10):
            fx.softmax(xs[k], out=outs[k], n_threads=2)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for out, exp in zip(outs, expected):
        assert out.tobytes() == exp.tobytes()


# ---------------------------------------------------------------------------
# fork and spawn

FORK_SCRIPT = """
import json, multiprocessing as mp, os, sys
import numpy as np
import fastxent as fx
from fastxent import _validation

def inputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 1024), dtype=np.float32)
    return x, rng.integers(0, 1024, 512)

def compute():
    x, y = inputs()
    loss, grad = fx.cross_entropy_with_grad(x, y, n_threads=2)
    return {"lse": fx.logsumexp(x, n_threads=2), "loss": loss, "grad": grad,
            "softmax": fx.softmax(x, n_threads=-1),
            "resolved": [_validation.n_threads(2), _validation.n_threads(None)]}

def child(q):
    q.put(compute())

if __name__ == "__main__":
    method = sys.argv[1] if len(sys.argv) > 1 else "METHOD"
    tasks = lambda: len(os.listdir("/proc/self/task"))
    before = tasks()
    parent = compute()  # 512 x 1024 with 2 threads: a parallel region runs here
    after = tasks()
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    try:
        got = q.get(timeout=60)
    except Exception:
        got = None
    p.join(10)
    hung = p.is_alive()
    if hung:
        p.kill()
        p.join()
    same = got is not None and all(
        np.asarray(got[k]).tobytes() == np.asarray(parent[k]).tobytes() for k in ("lse", "loss", "grad", "softmax"))
    print(json.dumps({"hung": hung, "exitcode": p.exitcode, "same": same,
                      "child_resolved": None if got is None else got["resolved"],
                      "parent_resolved": parent["resolved"], "parent_threads": [before, after]}))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_child_process_after_parallel_parent(tmp_path, method):
    result = run_script(tmp_path, FORK_SCRIPT.replace("METHOD", method), timeout=150)
    assert not result["hung"], f"the {method} child hung"
    assert result["exitcode"] == 0
    assert result["same"], "the child's results differ from the parent's"
    if fx.show_config()["openmp"]:
        before, after = result["parent_threads"]
        assert after > before, "the parent never started OpenMP worker threads: the test would prove nothing"
    if method == "fork":
        assert result["child_resolved"] == [1, 1]
    else:
        assert result["child_resolved"] == result["parent_resolved"]


def test_fork_hook_is_installed():
    """The flag the hook sets is what n_threads() obeys (checked without forking)."""
    saved = _validation._forked_child
    try:
        _validation._forked_child = True
        assert _validation.n_threads(2) == 1 and _validation.n_threads(None) == 1
        # Invalid values are still rejected in a forked child.
        with pytest.raises(ValueError, match="n_threads"):
            _validation.n_threads(0)
    finally:
        _validation._forked_child = saved
    assert _validation.n_threads(2) == 2


def test_forked_grandchild_and_os_fork(tmp_path):
    """os.fork() directly (no multiprocessing), twice deep: each level stays serial and exits."""
    result = run_script(tmp_path, """
        import json, os
        import numpy as np
        import fastxent as fx
        from fastxent import _validation
        x = np.random.default_rng(0).standard_normal((256, 1024), dtype=np.float32)
        expected = fx.softmax(x, n_threads=2).tobytes()

        def level(depth):
            ok = fx.softmax(x, n_threads=2).tobytes() == expected and _validation.n_threads(2) == 1
            if depth == 2:
                return ok
            pid = os.fork()
            if pid == 0:
                os._exit(0 if level(depth + 1) and ok else 1)
            _, status = os.waitpid(pid, 0)
            return ok and os.waitstatus_to_exitcode(status) == 0

        pid = os.fork()
        if pid == 0:
            os._exit(0 if level(1) else 1)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": os.waitstatus_to_exitcode(status)}))
    """, timeout=60)
    assert result["status"] == 0


# ---------------------------------------------------------------------------
# Ctrl-C

SIGINT_SCRIPT = """
import json, os, signal, threading, time
import numpy as np
import fastxent as fx

# Python's own Ctrl-C handler, whatever this process inherited: a process
# started in the background by a non-interactive shell inherits SIGINT
# ignored, and then Python installs no handler at all.
signal.signal(signal.SIGINT, signal.default_int_handler)

rng = np.random.default_rng(0)
a = rng.standard_normal((64, 131072), dtype=np.float32)   # 32 MiB: each call spends ~ms in the kernel
b = a + np.float32(1)
lse_a, lse_b = fx.logsumexp(a), fx.logsumexp(b)
out = np.full(64, np.nan, dtype=np.float32)

# Calls in a loop, SIGINT from another thread while they run.
timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
calls, interrupted = 0, False
timer.start()
try:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        fx.logsumexp(a if calls % 2 == 0 else b, out=out, n_threads=2)
        calls += 1
except KeyboardInterrupt:
    interrupted = True
timer.join()
# NaN throughout: interrupted inside the first call's Python code, before
# its copy into out (possible when a call takes longer than the timer).
whole = out.tobytes() in (lse_a.tobytes(), lse_b.tobytes()) or bool(np.isnan(out).all())

# One long call with out=, SIGINT while it runs.  The interrupt is caught
# wherever it lands ("phase": normally "call", i.e. raised when the call returns).
x = rng.standard_normal((128, 131072), dtype=np.float32)   # 64 MiB of logits
y = rng.integers(0, 131072, 128)
expected_loss, expected_grad = fx.cross_entropy_with_grad(x, y, n_threads=1)
grad = np.full_like(x, np.nan)
timer = threading.Timer(0.002, os.kill, (os.getpid(), signal.SIGINT))
loss, long_interrupted, phase = None, False, "start"
try:
    timer.start()
    phase = "call"
    loss, _ = fx.cross_entropy_with_grad(x, y, out=grad, n_threads=1)
    phase = "after"
    timer.join()
    time.sleep(5)  # the signal has arrived by now: the handler runs here at the latest
except KeyboardInterrupt:
    long_interrupted = True
timer.join()
written = grad.tobytes() == expected_grad.tobytes()
untouched = bool(np.isnan(grad).all())

# Everything still works afterwards.
after_ok = (fx.logsumexp(a, n_threads=2).tobytes() == lse_a.tobytes()
            and fx.cross_entropy_with_grad(x, y, n_threads=2)[1].tobytes() == expected_grad.tobytes())
print(json.dumps({"interrupted": interrupted, "calls": calls, "whole": whole,
                  "long_interrupted": long_interrupted, "phase": phase, "loss_assigned": loss is not None,
                  "written": written, "untouched": untouched, "after_ok": after_ok}))
"""


def test_sigint_during_calls(tmp_path):
    result = run_script(tmp_path, SIGINT_SCRIPT, timeout=120)
    assert result["interrupted"], "SIGINT during a loop of calls did not raise KeyboardInterrupt"
    assert result["whole"], "out= holds a mixture of two calls' results (or a partial one) after Ctrl-C"
    assert result["long_interrupted"], "SIGINT during a long call did not raise KeyboardInterrupt"
    # The interrupt surfaces after the call: out= is either the call's whole
    # result (it was inside the kernel) or untouched (it had not started).
    assert result["written"] or result["untouched"], "out= was left half-written"
    assert result["after_ok"], "calls after a KeyboardInterrupt give different results"
