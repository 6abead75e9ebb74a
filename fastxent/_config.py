"""Build and run-time configuration: show_config() and get_include()."""
import os
import platform

import numpy as np

from fastxent import _buffers, _core

try:
    from fastxent import _build_info
except ImportError:  # pragma: no cover - every build writes it
    _build_info = None

__version__ = "0.1.0"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def show_config():
    """The build and run-time configuration, as a dict.

    Keys: version, openmp (the build has OpenMP), max_threads (threads a call
    uses with n_threads=None now), num_procs, simd (the instruction-set path
    in use), simd_supported (the best path this CPU allows), compiler, cflags,
    platform, cpu, numpy, python, buffer_cache (bytes of recycled output
    memory held, and the limit: see ``release_buffers``).
    """
    info = _build_info
    return {
        "version": __version__,
        "openmp": _core.openmp_enabled(),
        "max_threads": _core.max_threads(),
        "num_procs": _core.num_procs(),
        "simd": _core.simd_path(),
        "simd_supported": _core.simd_supported(),
        "compiler": getattr(info, "COMPILER", "unknown"),
        "cflags": getattr(info, "CFLAGS", "unknown"),
        "platform": getattr(info, "PLATFORM", "unknown"),
        "cpu": _cpu_model(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "buffer_cache": dict(zip(("held", "limit"), _buffers.cached_bytes())),
    }


def get_include():
    """Directory holding fastxent's C headers (fastxent.h) and kernel sources.

    Add it to ``include_dirs`` to call the row kernels from C or Cython.  In
    an installed package it is ``fastxent/include``; in a source checkout
    built in place, the checkout's ``src_c``.
    """
    package = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(package, "include")
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(package), "src_c")


def get_cython_include():
    """Directory to put on Cython's include path for ``cimport fastxent._core``."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
