"""Argument checking and normalisation shared by every public function.

Every check runs before any kernel writes anything; each error names the
argument, what was expected and what was given.
"""
import math
import numbers
import operator
import os

import numpy as np

from fastxent import _core

_REDUCTIONS = ("mean", "sum", "none")
_INT64 = np.iinfo(np.int64)

# GNU libgomp keeps its worker threads across parallel regions; a child made
# by fork() inherits the pool's bookkeeping but not its threads, and the first
# parallel region it enters waits for them forever (measured: a child of a
# parent that ran a 2-thread region hangs in its own first region).  So every
# call in a forked child runs serially, whatever n_threads asks for.  Children
# started with "spawn" or "forkserver" are fresh processes and keep their
# threads.  The flag is inherited by the child's own forked children.
_forked_child = False


def _after_fork_in_child():
    global _forked_child
    _forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def float_array(name, x):
    """`x` as an ndarray of a floating dtype, and the dtype to compute in.

    float32 and float64 compute as themselves; float16 and bfloat16 in
    float32; longdouble in float64.  Non-native byte order is converted.
    """
    arr = as_array(name, x)
    dtype = arr.dtype
    if dtype.kind == "f":
        compute = np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    elif dtype.name == "bfloat16":  # ml_dtypes / jax bfloat16 (kind 'V')
        compute = np.dtype(np.float32)
    else:
        raise TypeError(f"{name} must be a floating array (float32 or float64), got dtype {dtype}")
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr, compute


def as_array(name, x):
    """np.asarray(x) (aligned), with NumPy's conversion errors (ragged nested
    lists, objects that are not arrays) re-raised naming the argument."""
    try:
        return aligned(np.asarray(x))
    except (ValueError, TypeError) as e:
        raise type(e)(f"{name} must be array-like (a numpy.ndarray or a rectangular nested list), "
                      f"got an object NumPy cannot convert: {e}") from None


def aligned(arr):
    """`arr`, or an aligned copy where it is not aligned to its dtype (a view
    of a raw buffer at an odd offset): the kernels read it through pointers
    of its element type."""
    return arr if arr.flags.aligned else arr.copy()


def normalize_axis(axis, ndim, name="axis"):
    if type(axis) is int and -ndim <= axis < ndim:  # the common case, without the ABC checks
        return axis % ndim
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {axis!r}")
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(f"{name}={axis} is out of bounds for an array of dimension {ndim}")
    return axis % ndim


def n_threads(value):
    """Threads for one call: None or -1 = all the process may use now.

    A positive request above ``max(threads available, 4 * processors)`` is
    lowered to that bound: oversubscribing a memory-bound kernel never helps,
    and an OpenMP runtime that fails to create a thread aborts the process.
    In a child made by ``fork()`` the answer is always 1 (see _forked_child).
    Results do not depend on the thread count, so neither rule changes them.
    """
    # type() first: the ABC checks cost a microsecond, a tenth of a small call.
    if (value is not None and type(value) is not int
            and (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral))):
        raise TypeError(f"n_threads must be None or an integer, got {value!r}")
    available = _core.max_threads()
    if value is None:
        resolved = available
    else:
        value = int(value)
        if value > 0:
            # num_procs() asks the OS (a system call): only when needed.
            resolved = value if value <= available else min(value, max(available, 4 * _core.num_procs()))
        elif value < 0 and available + 1 + value >= 1:
            resolved = available + 1 + value
        else:
            raise ValueError(
                f"n_threads must be None, a positive integer or a negative integer >= {-available} "
                f"(-1 means all {available} threads), got {value}"
            )
    return 1 if _forked_child else resolved


def choice(name, value, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def reduction(value):
    return choice("reduction", value, _REDUCTIONS)


def real_scalar(name, value, low=None, high=None, low_open=False):
    """A finite real number in [low, high] (or (low, high] with low_open)."""
    if type(value) is not float and type(value) is not int:  # the common cases skip the ABC checks
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
                value = value.item()
            else:
                raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad = bad or value < low or (low_open and value == low)
    if high is not None:
        bad = bad or value > high
    if bad:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{']' if high is not None else ')'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return value


def integer_scalar(name, value):
    """An integer that fits int64 (what the kernels take)."""
    if type(value) is not int and (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if not _INT64.min <= value <= _INT64.max:
        raise ValueError(f"{name} must be an integer in [{_INT64.min}, {_INT64.max}] (int64), got {value}")
    return value


def boolean(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def labels_array(target, shape, n_classes, ignore_index, n_threads=1):
    """Integer class labels as a flat int64 array, checked against [0, n_classes),
    and the number of labels that are not ignore_index."""
    arr = np.asarray(target)  # aligned by the caller (_losses._prepare)
    if arr.shape != shape:
        raise ValueError(
            f"target (class labels) must have shape {shape} (logits without the class axis), got {arr.shape}"
        )
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        position = np.unravel_index(int(np.argmax(arr > np.iinfo(np.int64).max)), shape)
        raise ValueError(
            f"target holds label {arr[position]} at position {tuple(map(int, position))}, "
            f"outside [0, {n_classes})"
        )
    flat = np.ascontiguousarray(arr, dtype=np.int64).reshape(-1)
    bad, live = _core.check_labels(flat, n_classes, ignore_index, n_threads)
    if bad >= 0:
        position = tuple(int(i) for i in np.unravel_index(bad, shape)) if shape else ()
        raise ValueError(
            f"target holds label {int(flat[bad])} at position {position}, outside [0, {n_classes}) "
            f"and not ignore_index={ignore_index}"
        )
    return flat, live


def weights_array(name, value, shape, dtype):
    """Non-negative finite weights of the given shape, as a contiguous array."""
    arr = as_array(name, value)
    if arr.dtype.kind not in "fiu" and arr.dtype.name != "bfloat16":
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    # A finite weight too large for the compute dtype becomes inf in the
    # cast: checked (and reported) after it, without NumPy's overflow warning.
    if arr.dtype == dtype:
        cast = np.ascontiguousarray(arr)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            cast = np.ascontiguousarray(arr, dtype=dtype)
    # One pass in C; the mask that finds the first bad value only on failure.
    if _core.count_outside(cast.reshape(-1), float(np.finfo(dtype).max)):
        reject_where(name, arr, ~(np.isfinite(cast) & (cast >= 0)),
                     f"finite non-negative numbers representable in {np.dtype(dtype)} "
                     "(no NaN, inf or negative values)")
    return cast


def reject_where(name, arr, bad, requirement):
    """ValueError naming `name`, the requirement, and the first value where `bad`."""
    if bad.any():
        flat = int(np.argmax(bad.reshape(-1)))
        position = tuple(int(i) for i in np.unravel_index(flat, bad.shape)) if bad.ndim else ()
        value = np.asarray(arr).reshape(-1)[flat] if np.ndim(arr) else np.asarray(arr)[()]
        raise ValueError(f"{name} must hold {requirement}, got {value!r} at position {position}")


def no_partial_overlap(out, arr, name="out", other="x"):
    """`out` may be `arr` itself (same memory, same layout) but not overlap it otherwise."""
    # The overlap test first: it is cheap for disjoint arrays, and reading
    # the data pointers (__array_interface__ builds a dict) is not.
    if np.shares_memory(out, arr) and not (
            out.__array_interface__["data"][0] == arr.__array_interface__["data"][0]
            and out.shape == arr.shape and out.strides == arr.strides and out.dtype == arr.dtype):
        raise ValueError(f"{name} must not overlap {other} unless it is {other} itself")


def out_array(out, shape, dtype, name="out"):
    """Check a caller's output buffer: ndarray, shape, dtype, C order, writable, aligned."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous, got an array with strides {out.strides}")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writable (it is read-only)")
    if not out.flags.aligned:
        raise ValueError(f"{name} must be aligned to its dtype ({dtype} at an address that is a multiple of "
                         f"{np.dtype(dtype).alignment}), got an array at address {out.ctypes.data:#x}")
    return out


def class_view(arr, axis, dtype, rows=False):
    """`arr` as a C-contiguous (N, C) array (class axis last) or (P, C, Q) array.

    (P, C, Q) is the array itself with the axes before and after the class
    axis merged: no transposed copy, the kernels run along the strided class
    axis.  A copy is made only for a non-contiguous input or a dtype change,
    or with rows=True (the class axis moved last) for the few options that
    have row kernels only.
    """
    if arr.ndim == 2 and axis == 1 and arr.dtype == dtype and arr.flags.c_contiguous:
        return arr  # the common case, as it is
    if rows and axis != arr.ndim - 1:
        arr = np.moveaxis(arr, axis, -1)
        axis = arr.ndim - 1
    arr = np.ascontiguousarray(arr, dtype=dtype)
    n_classes = arr.shape[axis]
    # math.prod, not np.prod: a few microseconds less per call on small arrays.
    outer = math.prod(arr.shape[:axis])
    inner = math.prod(arr.shape[axis + 1:])
    if inner == 1:
        return arr.reshape(outer, n_classes)
    return arr.reshape(outer, n_classes, inner)


def cast_result(values, dtype):
    """`values` in the caller's dtype.  A float16 result beyond float16's
    range is +-inf, the right answer there: no overflow warning."""
    if values.dtype == dtype:
        return values
    with np.errstate(over="ignore"):
        return values.astype(dtype, copy=False)


def copy_result(dest, values):
    """Copy a result computed in the compute dtype into the caller's array."""
    with np.errstate(over="ignore"):
        np.copyto(dest, values, casting="unsafe")
    return dest
