"""fastxent: the cross-entropy family on the CPU, at memory speed.

log-sum-exp, softmax, log-softmax, cross-entropy and its gradient over large
batches of NumPy arrays, in one pass over memory, with SIMD C row kernels run
in parallel by OpenMP.
"""
from fastxent._binary import binary_cross_entropy, binary_cross_entropy_with_grad
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
    "show_config",
    "softmax",
]
