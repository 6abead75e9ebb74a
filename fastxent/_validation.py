"""Argument checking and normalisation shared by every public function.

Every check runs before any kernel writes anything; each error names the
argument, what was expected and what was given.
"""
import numbers
import operator

import numpy as np

from fastxent import _core

_REDUCTIONS = ("mean", "sum", "none")


def float_array(name, x):
    """`x` as an ndarray of a floating dtype, and the dtype to compute in.

    float32 and float64 compute as themselves; float16 and bfloat16 in
    float32; longdouble in float64.  Non-native byte order is converted.
    """
    arr = np.asarray(x)
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


def normalize_axis(axis, ndim, name="axis"):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {axis!r}")
    axis = operator.index(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(f"{name}={axis} is out of bounds for an array of dimension {ndim}")
    return axis % ndim


def n_threads(value):
    """Threads for one call: None or -1 = all the process may use now."""
    available = _core.max_threads()
    if value is None:
        return available
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"n_threads must be None or an integer, got {value!r}")
    value = int(value)
    if value > 0:
        return value
    if value < 0 and available + 1 + value >= 1:
        return available + 1 + value
    raise ValueError(
        f"n_threads must be None, a positive integer or a negative integer >= {-available} "
        f"(-1 means all {available} threads), got {value}"
    )


def choice(name, value, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def reduction(value):
    return choice("reduction", value, _REDUCTIONS)


def real_scalar(name, value, low=None, high=None, low_open=False):
    """A finite real number in [low, high] (or (low, high] with low_open)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    bad = not np.isfinite(value)
    if low is not None:
        bad = bad or value < low or (low_open and value == low)
    if high is not None:
        bad = bad or value > high
    if bad:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open else '['}{lo}, {hi}{']' if high is not None else ')'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return value


def integer_scalar(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def boolean(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def labels_array(target, shape, n_classes, ignore_index):
    """Integer class labels as a flat int64 array, checked against [0, n_classes)."""
    arr = np.asarray(target)
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
    bad = _core.check_labels(flat, n_classes, ignore_index)
    if bad >= 0:
        position = tuple(int(i) for i in np.unravel_index(bad, shape)) if shape else ()
        raise ValueError(
            f"target holds label {int(flat[bad])} at position {position}, outside [0, {n_classes}) "
            f"and not ignore_index={ignore_index}"
        )
    return flat


def weights_array(name, value, shape, dtype):
    """Non-negative finite weights of the given shape, as a contiguous array."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" and arr.dtype.name != "bfloat16":
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr >= 0)):
        raise ValueError(f"{name} must hold finite non-negative numbers (no NaN, inf or negative values)")
    return arr


def out_array(out, shape, dtype, name="out"):
    """Check a caller's output buffer: ndarray, shape, dtype, C order, writable."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writable (it is read-only)")
    return out


def class_view(arr, axis, dtype, rows=False):
    """`arr` as a C-contiguous (N, C) array (class axis last) or (P, C, Q) array.

    (P, C, Q) is the array itself with the axes before and after the class
    axis merged: no transposed copy, the kernels run along the strided class
    axis.  A copy is made only for a non-contiguous input or a dtype change,
    or with rows=True (the class axis moved last) for the few options that
    have row kernels only.
    """
    if rows and axis != arr.ndim - 1:
        arr = np.moveaxis(arr, axis, -1)
        axis = arr.ndim - 1
    arr = np.ascontiguousarray(arr, dtype=dtype)
    n_classes = arr.shape[axis]
    outer = int(np.prod(arr.shape[:axis], dtype=np.int64))
    inner = int(np.prod(arr.shape[axis + 1:], dtype=np.int64))
    if inner == 1:
        return arr.reshape(outer, n_classes)
    return arr.reshape(outer, n_classes, inner)


def cast_result(values, dtype):
    """`values` in the caller's dtype.  A float16 result beyond float16's
    range is +-inf, the right answer there: no overflow warning."""
    with np.errstate(over="ignore"):
        return values.astype(dtype, copy=False)


def copy_result(dest, values):
    """Copy a result computed in the compute dtype into the caller's array."""
    with np.errstate(over="ignore"):
        np.copyto(dest, values, casting="unsafe")
    return dest
