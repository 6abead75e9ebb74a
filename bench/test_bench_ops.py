"""Each (shape, dtype, operation, contender) of the grid as one benchmark.

The result is checked against the float64 NumPy reference before it is
timed (a wrong answer fails the test instead of being timed); a peer that is
not installed, or does not offer the operation, is skipped.  Groups are per
operation, shape and dtype, so pytest-benchmark's table compares the
contenders of one group directly.
"""
import os

import pytest

import fastxent
from fastxent import _bench as B

CONTENDERS = {c.name: c for c in B.CONTENDERS}
THREADS = fastxent.show_config()["max_threads"]


def pytest_generate_tests(metafunc):
    if "grid_point" not in metafunc.fixturenames:
        return
    config = metafunc.config
    full = config.getoption("--bench-full") or os.environ.get("FASTXENT_BENCH_FULL", "") not in ("", "0")
    shapes = B.SHAPES if full else B.SMALL_SHAPES
    # Shape-major order: one case's arrays are built once and then dropped.
    points = [(s, d, op, c) for s in shapes for d in B.DTYPES for op in B.OPS
              for c in B.CONTENDER_NAMES]
    metafunc.parametrize("grid_point", points, ids=["-".join(p) for p in points])


_current = {}


def _case(shape_name, dtype):
    key = (shape_name, dtype)
    if _current.get("key") != key:
        _current.clear()  # free the previous shape's arrays before making the next
        shape = B.SHAPES.get(shape_name) or B.SMALL_SHAPES[shape_name]
        _current.update(key=key, case=B.Case(shape, dtype), oracles={})
    return _current["case"], _current["oracles"]


def test_op(benchmark, grid_point, request):
    shape_name, dtype, op, name = grid_point
    contender = CONTENDERS[name]
    reason = contender.available()
    if reason:
        pytest.skip(reason)
    case, oracles = _case(shape_name, dtype)
    try:
        fn, extract = contender.make(op, case, THREADS)
    except B.Skip as exc:
        pytest.skip(str(exc))
    if op not in oracles:
        ref_fn, ref_extract = CONTENDERS["numpy-ref"].make(op, case, THREADS)
        oracles[op] = ref_extract(ref_fn())
    err = B.check(extract(fn()), oracles[op])
    assert err <= B.TOLERANCE[dtype], (
        f"WRONG: {name} {op} on {case.shape} {dtype}: max relative error {err:.3g} "
        f"against the float64 reference")
    n, c = case.shape
    benchmark.group = f"{op} {n}x{c} {dtype}"
    benchmark.extra_info.update(bytes=case.nbytes(op), threads=THREADS, max_rel_error=err)
    # The reference is 10-100x slower than the rest: 3 rounds say enough.
    slow = name == "numpy-ref"
    benchmark.pedantic(fn, rounds=3 if slow else 5, iterations=1, warmup_rounds=0 if slow else 1)
