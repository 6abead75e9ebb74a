"""PyTorch adapter: fastxent's fused cross-entropy as a differentiable torch op.

``import fastxent`` never imports torch; only ``import fastxent.torch`` does.

    import fastxent.torch as fxt
    loss = fxt.cross_entropy(logits, target)        # like F.cross_entropy
    criterion = fxt.CrossEntropyLoss(weight=w)      # like nn.CrossEntropyLoss

Supported: CPU float32/float64 tensors of shape (C,), (N, C) or
(N, C, d1, ...); class-index targets of any integer dtype (torch itself
takes int64 and uint8) or class-probability targets; every argument of
``torch.nn.functional.cross_entropy`` (``size_average``/``reduce`` map to
``reduction`` with torch's deprecation warning).  Contiguous tensors are
shared with NumPy, not copied, and the (N, C, d1, ...) layout is read in
place by fastxent's column kernels.

Anything else raises (TypeError, ValueError or NotImplementedError naming the
reason): CUDA or other non-CPU tensors, integer/half/complex/sparse logits, a
target or weight that requires grad (no gradient is computed for them), and a
second-order gradient (``create_graph=True``).  Nothing falls back silently
to torch's own kernels.

How the gradient flows
----------------------
- ``'mean'``/``'sum'``: the forward makes one fused pass
  (:func:`fastxent.cross_entropy_with_grad`) that reads the logits once and
  writes the loss and ``d loss / d input`` (for ``grad_output = 1``) into a
  fresh tensor; backward scales that tensor in place by the scalar
  ``grad_output`` (skipped when it is 1, the ``loss.backward()`` case) and
  hands it to autograd without a copy.
- ``'none'``: ``grad_output`` is a tensor of the target shape that is only
  known in backward, so the forward computes the losses only (one read of the
  logits) and backward makes one fused pass with ``grad_output`` as per-row
  scale.  That reads the logits twice and writes the gradient once, fewer
  bytes than a stored gradient later rescaled (read + write + read + write),
  and it keeps torch's rule that ignored rows get exactly 0 even where
  ``grad_output`` is not finite.
- A second backward through a retained graph (``retain_graph=True``) finds
  the stored gradient already handed over and recomputes it the same way.
- Gradient buffers of 1 MiB or more are reused once no tensor refers to them
  any more (typically after ``optimizer.zero_grad()``), which saves the page
  faults of a fresh buffer each step; up to 4 such buffers stay allocated
  between calls, and :func:`release_buffers` drops them.
"""
import math
import sys
import threading

import numpy as np
import torch

import fastxent

__all__ = ["CrossEntropyLoss", "cross_entropy", "release_buffers"]

_NUMPY_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}


def _check_cpu_strided(name, tensor):
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu":
        raise ValueError(
            f"fastxent.torch works on CPU tensors only; {name} is on device '{tensor.device}' "
            f"(use torch.nn.functional.cross_entropy there)"
        )
    if tensor.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {tensor.layout}")


def _check_args(input, target, weight):
    _check_cpu_strided("input", input)
    _check_cpu_strided("target", target)
    if input.dtype not in _NUMPY_DTYPES:
        raise TypeError(
            f"input must be a float32 or float64 tensor, got {input.dtype} "
            f"(cast it with .float() or .double())"
        )
    if input.dim() == 0:
        raise ValueError("input must have at least 1 dimension (the class axis), got a 0-d tensor")
    if target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(
            f"target must hold integer class indices or floating class probabilities, got {target.dtype}"
        )
    if target.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError(
            "target requires grad, but fastxent.torch computes no gradient with respect to the "
            "target; pass target.detach() or use torch.nn.functional.cross_entropy"
        )
    if weight is not None:
        _check_cpu_strided("weight", weight)
        if weight.requires_grad and torch.is_grad_enabled():
            raise NotImplementedError(
                "weight requires grad, but fastxent.torch computes no gradient with respect to the "
                "class weights; pass weight.detach() or use torch.nn.functional.cross_entropy"
            )


def _array(tensor):
    """NumPy view of a CPU tensor (no copy)."""
    tensor = tensor.detach()
    try:
        return tensor.numpy()
    except RuntimeError:
        # A lazy conjugate or negative view (.conj(), torch._neg_view):
        # NumPy cannot see it, so it is materialised.
        return tensor.resolve_conj().resolve_neg().numpy()


def _to_tensor(loss, dtype):
    """The loss as a tensor of the input's dtype; a 0-d one through NumPy
    (a third of torch.tensor's cost, which shows in small calls)."""
    if isinstance(loss, np.ndarray):
        return torch.from_numpy(loss)
    return torch.from_numpy(np.array(loss, _NUMPY_DTYPES[dtype]))


class _BufferPool:
    """Gradient buffers handed to autograd, reused once nothing holds them.

    A fresh N x C buffer costs page faults on its first write (for a
    4096 x 32000 float32 gradient, about as long as the fused kernel itself),
    and a training loop that sets ``.grad`` to None each step would pay them
    every step.  The pool keeps the NumPy array behind each large gradient it
    hands out (at most `max_buffers`, most recent first).  A tensor made by
    ``torch.from_numpy`` (and every view or ``.numpy()`` of it) keeps a
    reference to that array, so an array is reused only when its reference
    count shows the pool as its sole owner: never while any tensor can still
    see its memory.  Buffers are allocated by NumPy, which asks Linux for
    transparent huge pages, so even a fresh one faults in several times
    faster than from torch's CPU allocator.
    """

    min_bytes = 1 << 20  # smaller buffers are recycled cheaply by malloc itself
    max_buffers = 4

    def __init__(self):
        self._arrays = []
        self._lock = threading.Lock()
        # reference counts are what make reuse safe: CPython only
        self._enabled = hasattr(sys, "getrefcount")

    def empty(self, shape, dtype):
        """A C-contiguous tensor of `shape` and NumPy `dtype`, contents undefined."""
        shape, dtype = tuple(shape), np.dtype(dtype)
        if not self._enabled or math.prod(shape) * dtype.itemsize < self.min_bytes:
            return torch.from_numpy(np.empty(shape, dtype))
        with self._lock:
            for i in range(len(self._arrays)):
                # free: referenced by the pool's list and getrefcount's argument only
                if sys.getrefcount(self._arrays[i]) == 2:
                    arr = self._arrays[i]
                    if arr.shape == shape and arr.dtype == dtype:
                        del self._arrays[i]
                        self._arrays.insert(0, arr)
                        return torch.from_numpy(arr)
            arr = np.empty(shape, dtype)
            self._arrays.insert(0, arr)
            del self._arrays[self.max_buffers:]
            return torch.from_numpy(arr)

    def clear(self):
        with self._lock:
            self._arrays.clear()


_pool = _BufferPool()


def release_buffers():
    """Drop the gradient buffers kept for reuse (memory no tensor uses is freed now)."""
    _pool.clear()


def _empty_like(input):
    return _pool.empty(input.shape, _NUMPY_DTYPES[input.dtype])


class _CrossEntropy(torch.autograd.Function):
    # kwargs: the fastxent keywords of the call (axis, weight, ignore_index,
    # reduction, label_smoothing) as NumPy objects.
    @staticmethod
    def forward(ctx, input, target, kwargs):
        x = _array(input)
        t = _array(target)
        ctx.kwargs = kwargs
        # kept for a recomputation in backward; torch's version counters then
        # catch an in-place change of either since the forward
        ctx.save_for_backward(input, target)
        if kwargs["reduction"] == "none":
            ctx.grad = None
            return _to_tensor(fastxent.cross_entropy(x, t, **kwargs), input.dtype)
        grad = _empty_like(input)
        loss, _ = fastxent.cross_entropy_with_grad(x, t, out=grad.numpy(), **kwargs)
        ctx.grad = grad
        return _to_tensor(loss, input.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        # Grad mode is on in backward only under create_graph=True: the
        # returned gradient would silently be a constant there and
        # second-order terms would be lost.  (torch's once_differentiable
        # decorator raises only when grad_output requires grad, and costs
        # ~4 us a call, a tenth of a small training step.)
        if torch.is_grad_enabled():
            raise RuntimeError(
                "fastxent.torch.cross_entropy is once_differentiable: its gradient has no "
                "graph, so double backward (create_graph=True, e.g. gradient penalties or "
                "Hessian products) is not supported; use torch.nn.functional.cross_entropy"
            )
        grad, ctx.grad = ctx.grad, None  # drop our reference so autograd can keep it without a copy
        if grad is None:
            input, target = ctx.saved_tensors
            grad = _empty_like(input)
            go = _array(grad_output.to(input.dtype))
            fastxent.cross_entropy_with_grad(
                _array(input), _array(target), grad_output=go if go.ndim else go.item(),
                out=grad.numpy(), **ctx.kwargs,
            )
        else:
            scale = grad_output.item()
            if scale != 1.0:
                grad.mul_(scale)
        return grad, None, None


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Drop-in for :func:`torch.nn.functional.cross_entropy` on CPU float tensors.

    Same arguments, shapes and results (to rounding) as PyTorch's; see the
    module docstring for what is supported and how the gradient is computed.

    Parameters
    ----------
    input : Tensor (C,), (N, C) or (N, C, d1, ...), float32 or float64, CPU
        Unnormalised scores; dimension 1 (0 for a 1-d input) is the class axis.
    target : Tensor
        Class indices of the input's shape without the class axis (any integer
        dtype), or class probabilities of the input's shape.
    weight : Tensor (C,), optional
        Per-class rescaling weight.
    size_average, reduce : deprecated
        Mapped to `reduction` as torch does (with torch's warning).
    ignore_index : int, default -100
        Index targets equal to it contribute nothing (loss, denominator, gradient).
    reduction : {'mean', 'sum', 'none'}
    label_smoothing : float in [0, 1]

    Returns
    -------
    Tensor
        0-d for 'mean'/'sum' (accumulated in float64, returned in the input's
        dtype); the target's shape for 'none'.
    """
    if size_average is not None or reduce is not None:
        reduction = torch.nn._reduction.legacy_get_string(size_average, reduce)
    _check_args(input, target, weight)
    if target.dtype.is_floating_point and ignore_index != -100:
        # torch refuses it too, rather than silently not ignoring anything
        raise ValueError(
            f"ignore_index is not supported with class-probability (floating) targets, "
            f"got ignore_index={ignore_index!r}"
        )
    kwargs = {
        "axis": 1 if input.dim() >= 2 else 0,
        "weight": None if weight is None else _array(weight),
        "ignore_index": ignore_index,
        "reduction": reduction,
        "label_smoothing": label_smoothing,
    }
    if torch.is_grad_enabled() and input.requires_grad:
        return _CrossEntropy.apply(input, target, kwargs)
    # No graph to build: the forward alone, without computing a gradient.
    return _to_tensor(fastxent.cross_entropy(_array(input), _array(target), **kwargs), input.dtype)


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """Drop-in for :class:`torch.nn.CrossEntropyLoss` computed by fastxent.

    Same constructor arguments, buffers and state_dict as torch's module
    (it is a subclass); only ``forward`` differs: it calls
    :func:`fastxent.torch.cross_entropy`.
    """

    def forward(self, input, target):
        return cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing)
