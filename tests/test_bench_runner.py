"""The benchmark runner (`python -m fastxent bench`) on a tiny grid.

Nothing here asserts a time: the machine is shared and noisy.  It checks
that every grid point is reported, that skipped and wrong contenders are
reported as such, and that the table, the JSON and the PNG are written.
"""
import importlib.util
import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastxent import _bench as B
from fastxent.__main__ import main

SHAPES = ("16x5", "3x7")
DTYPES = ("float32", "float64")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, import_root):
    out = tmp_path_factory.mktemp("bench")
    json_path, png_path = out / "run.json", out / "run.png"
    argv = ["bench", "--shapes", ",".join(SHAPES), "--dtype", ",".join(DTYPES), "--repeat", "1",
            "--bandwidth-mib", "4", "--json", str(json_path), "--plot", str(png_path),
            "--no-progress"]
    # The build under test, in place or installed (see conftest.import_root).
    env = dict(os.environ, PYTHONPATH=import_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "fastxent", *argv], capture_output=True,
                          text=True, timeout=300, cwd=import_root, env=env)
    return proc, json.loads(json_path.read_text()), png_path


def test_exit_status_and_no_error_output(tiny_run):
    proc, _, _ = tiny_run
    assert proc.returncode == 0, proc.stderr


def test_json_has_every_grid_point(tiny_run):
    _, report, _ = tiny_run
    got = {(r["op"], "x".join(map(str, r["shape"])), r["dtype"], r["contender"])
           for r in report["results"]}
    want = set(itertools.product(B.OPS, SHAPES, DTYPES, B.CONTENDER_NAMES))
    assert got == want
    assert len(report["results"]) == len(want)  # no point reported twice


def test_json_records(tiny_run):
    _, report, _ = tiny_run
    # find_spec, not import: importing torch here would cost seconds.
    installed = {c.name for c in B.CONTENDERS
                 if c.module is None or importlib.util.find_spec(c.module) is not None}
    for r in report["results"]:
        assert r["status"] in ("ok", "skipped"), r
        if r["status"] == "skipped":
            assert r["reason"], r
            continue
        assert r["contender"] in installed
        assert r["n_timed"] == len(r["times"]) == 1
        assert r["median"] > 0 and r["pct_of_limit"] > 0 and r["gbps"] > 0
        assert r["max_rel_error"] <= B.TOLERANCE[r["dtype"]]
        assert r["speedup_vs_reference"] > 0
    by_key = {(r["op"], r["contender"]): r for r in report["results"]}
    # The reference always runs; the peers only offer some operations.
    assert all(by_key[(op, "numpy-ref")]["status"] == "ok" for op in B.OPS)
    assert by_key[("cross_entropy", "scipy")]["status"] == "skipped"
    assert by_key[("softmax", "sklearn")]["status"] == "skipped"
    assert by_key[("cross_entropy_with_grad", "fastxent")]["status"] == "ok"
    assert report["bandwidth"]["read"] > 0 and report["bandwidth"]["copy"] > 0
    assert report["environment"]["config"]["version"]


def test_json_limit_uses_the_right_bandwidth(tiny_run):
    _, report, _ = tiny_run
    bw = report["bandwidth"]
    for r in report["results"]:
        if r["status"] == "ok":
            n, c = r["shape"]
            size = np.dtype(r["dtype"]).itemsize * n * c
            writes = r["op"] in ("softmax", "log_softmax", "cross_entropy_with_grad")
            assert r["bytes"] >= (2 if writes else 1) * size
            assert r["limit"] == pytest.approx(r["bytes"] / (bw["copy"] if writes else bw["read"]))


def test_printed_table(tiny_run):
    proc, report, _ = tiny_run
    text = proc.stdout
    cfg = report["environment"]["config"]
    for needle in (f"Python {cfg['python']}", f"NumPy {cfg['numpy']}", f"fastxent {cfg['version']}",
                   f"SIMD path {cfg['simd']}", "OpenMP", "Memory bandwidth", cfg["cpu"]):
        assert needle in text
    for op in B.OPS:
        assert f"\n{op}: " in text
    assert text.count("vs best peer % of limit") == len(B.OPS)
    lines = text.splitlines()
    labels = report["contenders"]
    for r in report["results"]:
        if r["status"] == "ok":
            shape = "x".join(map(str, r["shape"]))
            rows = [ln for ln in lines if ln.split()[:2] == [shape, r["dtype"]]
                    and labels[r["contender"]] in ln]
            assert rows, r
    assert "skipped: SciPy (SciPy has no cross_entropy)" in text


def test_plot_written(tiny_run):
    _, _, png = tiny_run
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


class _Wrong(B.Contender):
    name = "fastxent"

    def make(self, op, case, threads):
        import fastxent
        # Off by 1e-3 relative: close, but wrong for both dtypes.
        return (lambda: fastxent.logsumexp(case.x) * (1 + 1e-3)), lambda r: r


def test_wrong_result_is_reported_not_timed():
    case = B.Case((8, 5), "float32")
    oracle = B.ReferenceContender().make("logsumexp", case, 1)[0]()
    rec, _ = B.run_one(_Wrong(), "logsumexp", case, 1, 3, oracle)
    assert rec["status"] == "WRONG" and "median" not in rec and "times" not in rec
    assert rec["max_rel_error"] > B.TOLERANCE["float32"]


def test_right_result_is_timed():
    case = B.Case((8, 5), "float64")
    oracle = B.ReferenceContender().make("softmax", case, 1)[0]()
    rec, _ = B.run_one(B.FastxentContender(True), "softmax", case, 1, 3, oracle)
    assert rec["status"] == "ok" and rec["n_timed"] == 3 and rec["max_rel_error"] <= 1e-12


class _Missing(B.Contender):
    name = "missing"
    module = "fastxent_no_such_peer_module"


def test_missing_peer_is_skipped():
    rec, _ = B.run_one(_Missing(), "softmax", B.Case((2, 3), "float32"), 1, 1, None)
    assert rec["status"] == "skipped" and "not installed" in rec["reason"]


class _Crashing(B.Contender):
    name = "crashing"

    def make(self, op, case, threads):
        def fn():
            raise MemoryError("no room")
        return fn, lambda r: r


def test_failing_peer_is_an_error_record():
    rec, _ = B.run_one(_Crashing(), "softmax", B.Case((2, 3), "float32"), 1, 1, None)
    assert rec["status"] == "error" and "MemoryError" in rec["reason"]


def test_time_calls_stops_at_max_time():
    assert len(B.time_calls(lambda: None, 4, warmups=0)) == 4
    assert len(B.time_calls(lambda: sum(range(10**5)), 50, warmups=0, max_time=0.0)) == 1


@pytest.mark.parametrize("result, oracle, finite", [
    (np.array([1.0, 2.0]), np.array([1.0, 2.0]), True),
    (np.array([1.0, np.nan]), np.array([1.0, 2.0]), False),
    (np.array([1.0, 2.0]), np.array([1.0, np.inf]), False),
    (np.array([1.0]), np.array([1.0, 2.0]), False),
    ((1.0, np.ones(2)), (1.0, np.ones(2)), True),
    ((1.0, np.ones(2)), 1.0, False),
])
def test_check(result, oracle, finite):
    assert np.isfinite(B.check(result, oracle)) == finite


def test_check_is_relative_to_the_largest_value():
    assert B.check(np.array([100.0, 1.001]), np.array([100.0, 1.0])) == pytest.approx(1e-5)


def test_bandwidth_measurement():
    bw = B.measure_bandwidth(mib=2, threads=2, repeat=1)
    assert bw["read"] >= bw["read_1t"] > 0 and bw["copy"] >= bw["copy_1t"] > 0


def test_limit_is_the_fastest_of_the_start_and_end_measurements(tiny_run):
    _, report, _ = tiny_run
    bw = report["bandwidth"]
    start, end = bw["measured"]["start"], bw["measured"]["end"]
    for key in ("read", "copy", "read_1t", "copy_1t"):
        assert bw[key] == max(start[key], end[key]) > 0


def test_fastest_bandwidth_takes_each_rate_at_its_best():
    before = {"array_mib": 8, "threads": 2, "read": 30e9, "copy": 45e9, "read_1t": 20e9, "copy_1t": 25e9}
    after = {"array_mib": 8, "threads": 2, "read": 48e9, "copy": 30e9, "read_1t": 21e9, "copy_1t": 24e9}
    bw = B._fastest_bandwidth(before, after)
    assert (bw["read"], bw["copy"], bw["read_1t"], bw["copy_1t"]) == (48e9, 45e9, 21e9, 25e9)
    assert bw["array_mib"] == 8 and bw["threads"] == 2
    assert bw["measured"] == {"start": before, "end": after}


def test_progress_bar_falls_back_without_tqdm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` raise ImportError
    assert B._progress_bar(10, True, sys.stderr) is None


@pytest.mark.parametrize("args, needle", [
    (["--shapes", "10xq"], "--shapes"),
    (["--shapes", "0x5"], "--shapes"),
    (["--dtype", "float16"], "--dtype"),
    (["--ops", "softmaxx"], "--ops"),
    (["--contenders", "jax"], "--contenders"),
    (["--repeat", "0"], "--repeat"),
    (["--threads", "0"], "--threads"),
    (["--max-time", "0"], "--max-time"),
])
def test_bad_options(args, needle, capsys):
    assert main(["bench", *args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "error" in err


def test_shape_names_and_quick_grid():
    assert B._parse_shape("llm-32k") == ("llm-32k", (4096, 32000))
    assert B._parse_shape("12X34") == ("12x34", (12, 34))
    assert set(B.QUICK["shapes"]) <= set(B.SHAPES)
