"""pytest-benchmark suite over the grid of ``python -m fastxent bench``.

    pytest bench/ --benchmark-only               # small shapes, a few minutes
    pytest bench/ --benchmark-only --bench-full  # the runner's full grid (long)

``FASTXENT_BENCH_FULL=1`` does the same as ``--bench-full``.  The shapes,
operations and contenders come from ``fastxent._bench`` (one definition for
the runner and this suite).
"""
import os
import sys

try:
    import fastxent  # noqa: F401
except ImportError:  # plain `pytest bench/` in a source checkout built in place
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_addoption(parser):
    parser.addoption("--bench-full", action="store_true", default=False,
                     help="benchmark the full grid of `python -m fastxent bench` "
                          "(shapes up to 1 GB; takes long)")

