"""fastxent: the cross-entropy family on the CPU, at memory speed.

log-sum-exp, softmax, log-softmax, cross-entropy and its gradient over large
batches of NumPy arrays, in one pass over memory, with SIMD C row kernels run
in parallel by OpenMP.
"""
try:
    from fastxent import _core  # noqa: F401  (the compiled extension)
except ImportError as error:  # pragma: no cover - depends on how it is run
    import os as _os

    raise ImportError(
        "fastxent's compiled extension (fastxent._core) cannot be imported from "
        f"{_os.path.dirname(__file__)}: this looks like an unbuilt source checkout "
        "on sys.path (for instance `python -m ...` run from the checkout's root). "
        "Build it in place with `python setup.py build_ext --inplace`, or run the "
        "installed package from another directory (or through the `fastxent` command)."
    ) from error

from fastxent._binary import binary_cross_entropy, binary_cross_entropy_with_grad
from fastxent._buffers import release_buffers
from fastxent._config import __version__, get_cython_include, get_include, show_config
from fastxent._information import entropy, kl_divergence
from fastxent._losses import cross_entropy, cross_entropy_with_grad
from fastxent._softmax import log_softmax, logsumexp, softmax

__all__ = [
    "__version__",
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "entropy",
    "kl_divergence",
    "cross_entropy",
    "cross_entropy_with_grad",
    "get_cython_include",
    "get_include",
    "log_softmax",
    "logsumexp",
    "release_buffers",
    "show_config",
    "softmax",
]
