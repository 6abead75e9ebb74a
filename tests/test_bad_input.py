"""Bad arguments raise a clear error before anything is written; odd but
valid inputs work.

Every case of the table runs in a child process (the whole table in one
child, restarted after the case that killed it), so a case that crashes the
interpreter fails as that case instead of taking the test runner down.

A bad case must raise TypeError or ValueError (AxisError counts: it is a
ValueError) whose message names the argument and the value given, and must
leave every array argument (out=, logits with inplace=True, targets,
weights) bit-for-bit unchanged.  A valid case must match fastxent._reference.
"""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastxent as fx
from fastxent import _reference as ref

FUNCS = {"logsumexp": fx.logsumexp, "softmax": fx.softmax, "log_softmax": fx.log_softmax}
REFS = {"logsumexp": ref.logsumexp, "softmax": ref.softmax, "log_softmax": ref.log_softmax}


def logits(shape=(4, 5), dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def labels(n=4, c=5, seed=1):
    return np.random.default_rng(seed).integers(0, c, n)


def probs(shape=(4, 5), dtype=np.float32):
    return fx.softmax(logits(shape, np.float64, seed=2)).astype(dtype)


def readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def fresh(shape, dtype=np.float32):
    """An out= buffer full of a sentinel value, to see whether it was written."""
    return np.full(shape, 7.0, dtype=dtype)


class Case:
    """make() returns (fn, args, kwargs); expected is an exception type (bad
    input) or None (valid input, checked against `check(result, args, kwargs)`)."""

    def __init__(self, case_id, make, expected=None, words=(), check=None, bug=None):
        self.id, self.make, self.expected, self.words = case_id, make, expected, words
        self.check, self.bug = check, bug


CASES = []


def bad(case_id, expected, words, make, bug=None):
    CASES.append(Case(case_id, make, expected, words, bug=bug))


def good(case_id, make, check, bug=None):
    CASES.append(Case(case_id, make, None, (), check=check, bug=bug))


# ---------------------------------------------------------------------------
# bad input: logsumexp, softmax, log_softmax (each case for each function)

for name, f in FUNCS.items():
    out_shape = (4,) if name == "logsumexp" else (4, 5)
    for cid, exc, words, make in [
        ("int-logits", TypeError, ["x", "int64"], lambda f=f: (f, (np.ones((4, 5), np.int64),), {})),
        ("bool-logits", TypeError, ["x", "bool"], lambda f=f: (f, (np.ones((4, 5), bool),), {})),
        ("complex-logits", TypeError, ["x", "complex128"], lambda f=f: (f, (np.ones((4, 5), complex),), {})),
        ("str-logits", TypeError, ["x", "<U"], lambda f=f: (f, ("abc",), {})),
        ("none-logits", TypeError, ["x", "object"], lambda f=f: (f, (None,), {})),
        ("ragged-list", ValueError, ["x", "inhomogeneous"], lambda f=f: (f, ([[1.0, 2.0], [3.0]],), {})),
        ("0d-logits", ValueError, ["x", "0-d"], lambda f=f: (f, (np.float32(1.0),), {})),
        ("axis-float", TypeError, ["axis", "1.0"], lambda f=f: (f, (logits(),), {"axis": 1.0})),
        ("axis-bool", TypeError, ["axis", "True"], lambda f=f: (f, (logits(),), {"axis": True})),
        ("axis-out-of-range", ValueError, ["axis", "2"], lambda f=f: (f, (logits(),), {"axis": 2})),
        ("axis-negative-out-of-range", ValueError, ["axis", "-3"], lambda f=f: (f, (logits(),), {"axis": -3})),
        ("axis-tuple", TypeError, ["axis", "(0, 1)"], lambda f=f: (f, (logits(),), {"axis": (0, 1)})),
        ("n_threads-0", ValueError, ["n_threads", "0"], lambda f=f: (f, (logits(),), {"n_threads": 0})),
        ("n_threads-very-negative", ValueError, ["n_threads", "-1000"],
         lambda f=f: (f, (logits(),), {"n_threads": -1000})),
        ("n_threads-float", TypeError, ["n_threads", "1.5"], lambda f=f: (f, (logits(),), {"n_threads": 1.5})),
        ("n_threads-bool", TypeError, ["n_threads", "True"], lambda f=f: (f, (logits(),), {"n_threads": True})),
        ("n_threads-str", TypeError, ["n_threads", "'2'"], lambda f=f: (f, (logits(),), {"n_threads": "2"})),
        ("out-list", TypeError, ["out", "list"], lambda f=f: (f, (logits(),), {"out": [0.0] * 4})),
        ("out-shape", ValueError, ["out", "(3,)"],
         lambda f=f: (f, (logits(),), {"out": fresh((3,))})),
        ("out-dtype", TypeError, ["out", "float64"],
         lambda f=f, s=out_shape: (f, (logits(),), {"out": fresh(s, np.float64)})),
        ("out-big-endian", TypeError, ["out", ">f4"],
         lambda f=f, s=out_shape: (f, (logits(),), {"out": fresh(s, ">f4")})),
        ("out-non-contiguous", ValueError, ["out", "C-contiguous", "strides"],
         lambda f=f, s=out_shape: (f, (logits(),), {"out": fresh(s[:-1] + (2 * s[-1],))[..., ::2]})),
        ("out-read-only", ValueError, ["out", "read-only"],
         lambda f=f, s=out_shape: (f, (logits(),), {"out": readonly(fresh(s))})),
        # A bad argument after out= in the argument list: out must stay untouched.
        ("out-then-bad-axis", ValueError, ["axis", "5"],
         lambda f=f, s=out_shape: (f, (logits(),), {"axis": 5, "out": fresh(s)})),
        ("out-then-bad-n_threads", ValueError, ["n_threads", "0"],
         lambda f=f, s=out_shape: (f, (logits(),), {"n_threads": 0, "out": fresh(s)})),
    ]:
        bad(f"{name}-{cid}", exc, words, make)


def _overlapping_out():
    """out is x shifted by one element: every row but the last overlaps the next row of x."""
    buf = logits((41,))
    return fx.softmax, (buf[:-1].reshape(4, 10),), {"out": buf[1:].reshape(4, 10)}


bad("softmax-out-partially-overlaps-x", ValueError, ["out", "overlap"], _overlapping_out)

# ---------------------------------------------------------------------------
# bad input: cross_entropy and cross_entropy_with_grad (each case for both;
# the _with_grad variant also passes an out= buffer that must stay untouched)

CE_CASES = [
    ("int-logits", TypeError, ["logits", "int64"], lambda: ((np.ones((4, 5), np.int64), labels()), {})),
    ("0d-logits", ValueError, ["logits", "0-d"], lambda: ((np.float32(1.0), 0), {})),
    ("ragged-logits", ValueError, ["logits", "inhomogeneous"], lambda: (([[1.0, 2.0], [3.0]], [0, 1]), {})),
    ("target-bool", TypeError, ["target", "bool"], lambda: ((logits(), np.zeros(4, bool)), {})),
    ("target-str", TypeError, ["target", "<U1"], lambda: ((logits(), ["a"] * 4), {})),
    ("target-none", TypeError, ["target", "object"], lambda: ((logits(), None), {})),
    ("target-complex", TypeError, ["target", "complex128"], lambda: ((logits(), np.zeros((4, 5), complex)), {})),
    ("labels-shape", ValueError, ["target", "(4,)", "(3,)"], lambda: ((logits(), labels(3)), {})),
    ("labels-extra-dim", ValueError, ["target", "(4,)", "(4, 1)"], lambda: ((logits(), labels()[:, None]), {})),
    ("probs-shape", ValueError, ["target", "(4, 5)", "(4, 4)"], lambda: ((logits(), probs((4, 4))), {})),
    ("label-too-large", ValueError, ["target", "label 5", "(3,)", "[0, 5)"],
     lambda: ((logits(), np.array([0, 1, 2, 5])), {})),
    ("label-negative", ValueError, ["target", "label -1", "(2,)"], lambda: ((logits(), np.array([0, 1, -1, 2])), {})),
    ("label-uint64-huge", ValueError, ["target", str(2 ** 63 + 5)],
     lambda: ((logits(), np.array([0, 1, 2, 2 ** 63 + 5], np.uint64)), {})),
    ("label-int64-min", ValueError, ["target", str(-2 ** 63)],
     lambda: ((logits(), np.array([0, 1, 2, -2 ** 63])), {})),
    ("label-2d-position", ValueError, ["target", "(1, 0)", "label 9"],
     lambda: ((logits((2, 2, 5)), np.array([[0, 1], [9, 1]])), {})),
    ("weight-nan", ValueError, ["weight", "nan", "(2,)"],
     lambda: ((logits(), labels()), {"weight": np.array([1, 1, np.nan, 1, 1], np.float32)})),
    ("weight-negative", ValueError, ["weight", "-1", "(2,)"],
     lambda: ((logits(), labels()), {"weight": np.array([1, 1, -1, 1, 1], np.float32)})),
    ("weight-inf", ValueError, ["weight", "inf"],
     lambda: ((logits(), labels()), {"weight": np.array([1, 1, np.inf, 1, 1])})),
    ("zero-classes", ValueError, ["logits", "class"], lambda: ((logits((4, 0)), np.zeros(4, np.int64)), {})),
    ("weight-shape", ValueError, ["weight", "(5,)", "(3,)"], lambda: ((logits(), labels()), {"weight": np.ones(3)})),
    ("weight-scalar", ValueError, ["weight", "(5,)", "()"], lambda: ((logits(), labels()), {"weight": 1.0})),
    ("weight-bool", TypeError, ["weight", "bool"], lambda: ((logits(), labels()), {"weight": np.ones(5, bool)})),
    ("weight-str", TypeError, ["weight", "<U"], lambda: ((logits(), labels()), {"weight": "abcde"})),
    ("weight-ragged", ValueError, ["weight", "inhomogeneous"], lambda: ((logits(), labels()), {"weight": [[1], [1, 2]]})),
    ("sample_weight-shape", ValueError, ["sample_weight", "(4,)", "(2,)"],
     lambda: ((logits(), labels()), {"sample_weight": np.ones(2)})),
    ("sample_weight-nan", ValueError, ["sample_weight", "nan", "(1,)"],
     lambda: ((logits(), labels()), {"sample_weight": np.array([1, np.nan, 1, 1])})),
    ("sample_weight-negative", ValueError, ["sample_weight", "-2", "(3,)"],
     lambda: ((logits(), labels()), {"sample_weight": np.array([1, 1, 1, -2])})),
    ("reduction-unknown", ValueError, ["reduction", "'avg'", "'mean'"],
     lambda: ((logits(), labels()), {"reduction": "avg"})),
    ("reduction-none-object", ValueError, ["reduction", "None"], lambda: ((logits(), labels()), {"reduction": None})),
    ("label_smoothing-above-1", ValueError, ["label_smoothing", "1.5", "[0, 1]"],
     lambda: ((logits(), labels()), {"label_smoothing": 1.5})),
    ("label_smoothing-negative", ValueError, ["label_smoothing", "-0.1"],
     lambda: ((logits(), labels()), {"label_smoothing": -0.1})),
    ("label_smoothing-nan", ValueError, ["label_smoothing", "nan"],
     lambda: ((logits(), labels()), {"label_smoothing": float("nan")})),
    ("label_smoothing-str", TypeError, ["label_smoothing", "'0.1'"],
     lambda: ((logits(), labels()), {"label_smoothing": "0.1"})),
    ("label_smoothing-bool", TypeError, ["label_smoothing", "True"],
     lambda: ((logits(), labels()), {"label_smoothing": True})),
    ("label_smoothing-array", TypeError, ["label_smoothing", "array"],
     lambda: ((logits(), labels()), {"label_smoothing": np.array([0.1])})),
    ("z_loss-negative", ValueError, ["z_loss", "-1"], lambda: ((logits(), labels()), {"z_loss": -1})),
    ("z_loss-inf", ValueError, ["z_loss", "inf"], lambda: ((logits(), labels()), {"z_loss": float("inf")})),
    ("ignore_index-float", TypeError, ["ignore_index", "1.0"], lambda: ((logits(), labels()), {"ignore_index": 1.0})),
    ("ignore_index-bool", TypeError, ["ignore_index", "True"], lambda: ((logits(), labels()), {"ignore_index": True})),
    ("ignore_index-beyond-int64", ValueError, ["ignore_index", str(2 ** 70), "int64"],
     lambda: ((logits(), labels()), {"ignore_index": 2 ** 70})),
    ("empty-unknown", ValueError, ["empty", "'none'", "'zero'"], lambda: ((logits(), labels()), {"empty": "none"})),
    ("from_logits-int", TypeError, ["from_logits", "1"], lambda: ((logits(), labels()), {"from_logits": 1})),
    ("axis-out-of-range", ValueError, ["axis", "2"], lambda: ((logits(), labels()), {"axis": 2})),
    ("axis-float", TypeError, ["axis", "0.0"], lambda: ((logits(), labels()), {"axis": 0.0})),
    ("n_threads-0", ValueError, ["n_threads", "0"], lambda: ((logits(), labels()), {"n_threads": 0})),
    ("n_threads-bool", TypeError, ["n_threads", "False"], lambda: ((logits(), labels()), {"n_threads": False})),
]

for cid, exc, words, make in CE_CASES:
    bad(f"cross_entropy-{cid}", exc, words, lambda make=make: (fx.cross_entropy,) + make())

    def with_out(make=make):
        args, kwargs = make()
        try:
            shape = np.shape(args[0]) if np.ndim(args[0]) else (1,)
        except ValueError:  # ragged logits
            shape = (1,)
        return fx.cross_entropy_with_grad, args, dict(kwargs, out=fresh(shape))

    bad(f"cross_entropy_with_grad-{cid}", exc, words, with_out)

# Bad options with inplace=True: the logits (the destination) stay untouched.
for cid, exc, words, make in CE_CASES[10:20]:
    bad(f"cross_entropy_with_grad-inplace-{cid}", exc, words,
        lambda make=make: (fx.cross_entropy_with_grad,) + (lambda a, k: (a, dict(k, inplace=True)))(*make()))

G = fx.cross_entropy_with_grad
for cid, exc, words, make in [
    ("grad_output-shape-none", ValueError, ["grad_output", "(4,)", "(3,)"],
     lambda: ((logits(), labels()), {"reduction": "none", "grad_output": np.ones(3), "out": fresh((4, 5))})),
    ("grad_output-array-with-mean", ValueError, ["grad_output", "'mean'", "(4,)"],
     lambda: ((logits(), labels()), {"grad_output": np.ones(4), "out": fresh((4, 5))})),
    ("grad_output-nan", ValueError, ["grad_output", "nan"],
     lambda: ((logits(), labels()), {"grad_output": float("nan"), "out": fresh((4, 5))})),
    ("grad_output-str", TypeError, ["grad_output", "'1'"],
     lambda: ((logits(), labels()), {"grad_output": "1", "out": fresh((4, 5))})),
    ("grad_output-bool", TypeError, ["grad_output", "True"],
     lambda: ((logits(), labels()), {"grad_output": True, "out": fresh((4, 5))})),
    ("grad_output-complex", TypeError, ["grad_output", "1j"],
     lambda: ((logits(), labels()), {"grad_output": 1j, "out": fresh((4, 5))})),
    ("grad_output-bool-array", TypeError, ["grad_output", "bool"],
     lambda: ((logits(), labels()), {"reduction": "none", "grad_output": np.ones(4, bool), "out": fresh((4, 5))})),
    ("inplace-int", TypeError, ["inplace", "1"], lambda: ((logits(), labels()), {"inplace": 1})),
    ("inplace-list-logits", TypeError, ["inplace", "list"],
     lambda: (([[1.0, 2.0], [3.0, 4.0]], [0, 1]), {"inplace": True})),
    ("inplace-float16", TypeError, ["inplace", "float16"],
     lambda: ((logits(dtype=np.float16), labels()), {"inplace": True})),
    ("inplace-int-logits", TypeError, ["logits", "int64"],
     lambda: ((np.ones((4, 5), np.int64), labels()), {"inplace": True})),
    ("inplace-read-only", ValueError, ["logits", "inplace", "read-only"],
     lambda: ((readonly(logits()), labels()), {"inplace": True})),
    ("inplace-non-contiguous", ValueError, ["logits", "inplace", "C-contiguous"],
     lambda: ((logits((4, 10))[:, ::2], labels()), {"inplace": True})),
    ("inplace-fortran", ValueError, ["logits", "inplace", "C-contiguous"],
     lambda: ((np.asfortranarray(logits()), labels()), {"inplace": True})),
    ("inplace-big-endian", TypeError, ["inplace", ">f4"],
     lambda: ((logits(dtype=">f4"), labels()), {"inplace": True})),
    ("inplace-and-out", ValueError, ["out", "inplace"],
     lambda: ((logits(), labels()), {"inplace": True, "out": fresh((4, 5))})),
    ("out-overlaps-logits", ValueError, ["out", "overlap"],
     lambda: (lambda x: ((x, labels()), {"out": x}))(logits())),
    ("out-shape", ValueError, ["out", "(4, 5)", "(5, 4)"], lambda: ((logits(), labels()), {"out": fresh((5, 4))})),
    ("out-dtype", TypeError, ["out", "float32", "float64"],
     lambda: ((logits(), labels()), {"out": fresh((4, 5), np.float64)})),
    ("out-fortran", ValueError, ["out", "C-contiguous"],
     lambda: ((logits(), labels()), {"out": np.asfortranarray(fresh((4, 5)))})),
    ("out-read-only", ValueError, ["out", "read-only"],
     lambda: ((logits(), labels()), {"out": readonly(fresh((4, 5)))})),
    ("out-tuple", TypeError, ["out", "tuple"], lambda: ((logits(), labels()), {"out": (1, 2)})),
    ("return_lse-str", TypeError, ["return_lse", "'yes'"], lambda: ((logits(), labels()), {"return_lse": "yes"})),
]:
    bad(f"cross_entropy_with_grad-{cid}", exc, words, lambda make=make: (G,) + make())


# ---------------------------------------------------------------------------
# bad input: binary_cross_entropy(_with_grad), entropy, kl_divergence



def bits():
    return (logits() > 0).astype(np.float32)


BCE_CASES = [
    ("int-x", TypeError, ["x", "int64"], lambda: ((np.ones((4, 5), np.int64), bits()), {}), None),
    ("target-shape", ValueError, ["target", "(4, 5)", "(2, 5)"], lambda: ((logits(), bits()[:2]), {}), None),
    ("target-str", TypeError, ["target", "<U1"], lambda: ((logits(), "a"), {}), None),
    ("target-above-1", ValueError, ["target", "[0, 1]", "3"], lambda: ((logits(), bits() * 3), {}), None),
    ("weight-negative", ValueError, ["weight", "-1"], lambda: ((logits(), bits()), {"weight": -np.ones((4, 5))}),
     None),
    ("pos_weight-nan", ValueError, ["pos_weight", "nan"],
     lambda: ((logits(), bits()), {"pos_weight": np.full(5, np.nan)}), None),
    ("pos_weight-shape", ValueError, ["pos_weight", "(5,)", "(3,)"],
     lambda: ((logits(), bits()), {"pos_weight": np.ones(3)}), None),
    ("reduction-unknown", ValueError, ["reduction", "'avg'"], lambda: ((logits(), bits()), {"reduction": "avg"}), None),
    ("label_smoothing-2", ValueError, ["label_smoothing", "2"], lambda: ((logits(), bits()), {"label_smoothing": 2}),
     None),
    ("from_logits-0", TypeError, ["from_logits", "0"], lambda: ((logits(), bits()), {"from_logits": 0}), None),
    ("n_threads-0", ValueError, ["n_threads", "0"], lambda: ((logits(), bits()), {"n_threads": 0}), None),
]
for cid, exc, words, make, bug in BCE_CASES:
    bad(f"binary_cross_entropy-{cid}", exc, words, lambda make=make: (fx.binary_cross_entropy,) + make(), bug=bug)
    bad(f"binary_cross_entropy_with_grad-{cid}", exc, words,
        lambda make=make: (fx.binary_cross_entropy_with_grad,) + (lambda a, k: (a, dict(k, out=fresh((4, 5)))))(*make()),
        bug=bug)
for cid, exc, words, make in [
    ("out-reversed", ValueError, ["out", "C-contiguous"],
     lambda: ((logits(), bits()), {"out": fresh((4, 5))[::-1]})),
    ("inplace-fortran", ValueError, ["x", "inplace", "C-contiguous"],
     lambda: ((np.asfortranarray(logits()), bits()), {"inplace": True})),
    ("grad_output-shape", ValueError, ["grad_output", "(4, 5)", "(3,)"],
     lambda: ((logits(), bits()), {"reduction": "none", "grad_output": np.ones(3), "out": fresh((4, 5))})),
]:
    bad(f"binary_cross_entropy_with_grad-{cid}", exc, words,
        lambda make=make: (fx.binary_cross_entropy_with_grad,) + make())

for cid, exc, words, make in [
    ("entropy-int-p", TypeError, ["p", "int64"], lambda: (fx.entropy, (np.ones((2, 2), np.int64),), {})),
    ("entropy-base-1", ValueError, ["base", "1"], lambda: (fx.entropy, (probs(),), {"base": 1})),
    ("entropy-base-negative", ValueError, ["base", "-2"], lambda: (fx.entropy, (probs(),), {"base": -2})),
    ("entropy-base-str", TypeError, ["base", "'e'"], lambda: (fx.entropy, (probs(),), {"base": "e"})),
    ("entropy-axis", ValueError, ["axis", "3"], lambda: (fx.entropy, (probs(),), {"axis": 3})),
    ("entropy-ragged", ValueError, ["p", "inhomogeneous"], lambda: (fx.entropy, ([[0.5, 0.5], [1.0]],), {})),
    ("kl_divergence-shape", ValueError, ["q", "(4, 5)", "(2, 5)"],
     lambda: (fx.kl_divergence, (probs(), probs()[:2]), {})),
    ("kl_divergence-int-q", TypeError, ["q", "int64"],
     lambda: (fx.kl_divergence, (probs(), np.ones((4, 5), np.int64)), {})),
    ("kl_divergence-n_threads-0", ValueError, ["n_threads", "0"],
     lambda: (fx.kl_divergence, (probs(), probs()), {"n_threads": 0})),
]:
    bad(cid, exc, words, make)


# ---------------------------------------------------------------------------
# odd but valid input


def close(result, expected, dtype):
    tol = {8: 1e-10, 4: 2e-5, 2: 2e-3}[np.dtype(dtype).itemsize]
    np.testing.assert_allclose(np.asarray(result, dtype=np.float64), expected, rtol=tol, atol=tol)


def check_block(name, axis=-1):
    def check(result, args, kwargs):
        x = np.asarray(args[0])
        assert result.shape == REFS[name](x, axis=axis).shape
        close(result, REFS[name](x, axis=axis), result.dtype)
    return check


def check_ce(result, args, kwargs):
    x, t = np.asarray(args[0]), args[1]
    opts = {k: v for k, v in kwargs.items()
            if k not in ("n_threads", "out", "inplace", "grad_output") and not k.startswith("_")}
    x0 = kwargs.get("_x0", x)
    dtype = x.dtype if x.dtype.kind == "f" else np.float64
    if isinstance(result, tuple):
        close(result[0], ref.cross_entropy(x0, t, **opts), dtype)
        close(result[1], ref.cross_entropy_grad(x0, t, **opts), dtype)
        assert result[1].shape == x0.shape and result[1].dtype == x0.dtype.newbyteorder("=")
    else:
        close(result, ref.cross_entropy(x0, t, **opts), dtype)


ODD_LOGITS = {
    "python-list": lambda: [[0.5, -1.0, 2.0], [3.0, 0.0, -2.0]],
    "big-endian": lambda: logits((4, 5), ">f8"),
    "fortran-order": lambda: np.asfortranarray(logits((4, 5))),
    "non-contiguous": lambda: logits((4, 10))[:, ::2],
    "negative-strides": lambda: logits((4, 5))[::-1, ::-1],
    "read-only": lambda: readonly(logits((4, 5))),
    "float16": lambda: logits((4, 5), np.float16),
    "empty-batch": lambda: logits((0, 5)),
    "one-class": lambda: logits((4, 1)),
    "zero-classes": lambda: logits((3, 0)),
    "one-row-2M-classes": lambda: logits((1, 2_000_000)),
    "3d": lambda: logits((2, 3, 4), np.float64),
}
for name, f in FUNCS.items():
    for cid, make in ODD_LOGITS.items():
        good(f"{name}-{cid}", lambda f=f, make=make: (f, (make(),), {}), check_block(name))
    good(f"{name}-axis0-transposed", lambda f=f: (f, (logits((5, 4)).T,), {"axis": 0}), check_block(name, 0))
    good(f"{name}-1d", lambda f=f: (f, (logits((7,)),), {}), check_block(name))
    good(f"{name}-n_threads-numpy-int", lambda f=f: (f, (logits((300, 300)),), {"n_threads": np.int32(2)}),
         check_block(name))
    good(f"{name}-n_threads-huge-is-capped", lambda f=f: (f, (logits((300, 300)),), {"n_threads": 2 ** 40}),
         check_block(name))


def _ce_odd(x, t, **kw):
    return lambda: ((x() if callable(x) else x, t() if callable(t) else t), kw)


CE_ODD = {
    "python-lists": _ce_odd([[0.5, -1.0, 2.0], [3.0, 0.0, -2.0]], [2, 0]),
    "python-int-label-1d-logits": _ce_odd(lambda: logits((6,), np.float64), 3),
    "0d-label-array-1d-logits": _ce_odd(lambda: logits((6,)), lambda: np.array(3, np.int8)),
    "big-endian-logits-and-labels": _ce_odd(lambda: logits((4, 5), ">f8"), lambda: labels().astype(">i8")),
    "fortran-logits": _ce_odd(lambda: np.asfortranarray(logits((4, 5))), labels),
    "non-contiguous-logits-and-labels": _ce_odd(lambda: logits((4, 10))[:, ::2], lambda: labels(8)[::2]),
    "read-only-everything": _ce_odd(lambda: readonly(logits()), lambda: readonly(labels()),
                                    weight=readonly(np.arange(1, 6.0))),
    "uint8-labels": _ce_odd(logits, lambda: labels().astype(np.uint8)),
    "uint64-labels": _ce_odd(logits, lambda: labels().astype(np.uint64)),
    "float16-logits": _ce_odd(lambda: logits(dtype=np.float16), labels),
    "empty-batch": _ce_odd(lambda: logits((0, 5)), lambda: np.zeros(0, np.int64)),
    "empty-batch-sum": _ce_odd(lambda: logits((0, 5)), lambda: np.zeros(0, np.int64), reduction="sum"),
    "one-class": _ce_odd(lambda: logits((4, 1)), lambda: np.zeros(4, np.int64)),
    "one-row-2M-classes": _ce_odd(lambda: logits((1, 2_000_000)), lambda: np.array([1_999_999])),
    "probs-axis0": _ce_odd(lambda: logits((5, 4)), lambda: probs((5, 4)), axis=0),
    "all-ignored-empty-zero": _ce_odd(logits, lambda: np.full(4, -100), empty="zero"),
    "ignore_index-int64-min": _ce_odd(logits, lambda: np.array([0, -2 ** 63, 1, 2]), ignore_index=-2 ** 63),
    "numpy-scalar-options": _ce_odd(logits, labels, label_smoothing=np.float32(0.25), z_loss=np.float64(1e-3),
                                    ignore_index=np.int16(3)),
    "int-weight": _ce_odd(logits, labels, weight=[1, 2, 3, 4, 5], sample_weight=[0, 1, 2, 3]),
    "weight-beyond-float32-range": _ce_odd(logits, lambda: np.array([0, 1, 2, 3]), weight=[1, 1e300, 1e-300, 1, 1]),
}
for cid, make in CE_ODD.items():
    good(f"cross_entropy-{cid}", lambda make=make: (fx.cross_entropy,) + make(), check_ce)
    good(f"cross_entropy_with_grad-{cid}", lambda make=make: (fx.cross_entropy_with_grad,) + make(), check_ce)


def _inplace_fortran_untouched_on_copy():
    x = logits()
    return G, (x, labels()), {"inplace": True, "_x0": x.copy()}


def check_inplace(result, args, kwargs):
    assert result[1] is args[0], "inplace=True must return logits itself"
    check_ce(result, args, kwargs)


good("cross_entropy_with_grad-inplace", _inplace_fortran_untouched_on_copy, check_inplace)
good("cross_entropy_with_grad-inplace-axis0",
     lambda: (lambda x: (G, (x, labels(5, 4)), {"inplace": True, "axis": 0, "_x0": x.copy()}))(logits((4, 5))),
     check_inplace)


# ---------------------------------------------------------------------------
# the child process


def run_case(case):
    """Outcome of one case, as a JSON-able dict."""
    fn, args, kwargs = case.make()
    watched = [a for a in list(args) + list(kwargs.values()) if isinstance(a, np.ndarray)]
    before = [a.tobytes() for a in watched]
    call_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}
    outcome = {"id": case.id}
    try:
        result = fn(*args, **call_kwargs)
    except Exception as e:  # noqa: BLE001 - every exception is an outcome to report
        outcome["exc"] = [c.__name__ for c in type(e).__mro__]
        outcome["msg"] = str(e)
        outcome["changed"] = [i for i, (a, b) in enumerate(zip(watched, before)) if a.tobytes() != b]
        return outcome
    outcome["exc"] = None
    if case.expected is None:
        try:
            case.check(result, args, kwargs)
        except Exception as e:  # noqa: BLE001
            outcome["check"] = f"{type(e).__name__}: {e}"
    return outcome


def child_main(start):
    warnings.simplefilter("error")  # as pytest.ini does: a warning is a failure
    for case in CASES[start:]:
        print(json.dumps({"start": case.id}), flush=True)
        print(json.dumps(run_case(case)), flush=True)


def run_table():
    """{case id: outcome}; a case during which the child died gets 'crash'."""
    env = dict(os.environ)
    # The child must import the same fastxent as this process.
    root = os.path.dirname(os.path.dirname(os.path.abspath(fx.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    outcomes, start = {}, 0
    index = {c.id: i for i, c in enumerate(CASES)}
    while start < len(CASES):
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(start)], env=env,
                              capture_output=True, text=True, timeout=300)
        started = None
        for line in proc.stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                outcomes[record["id"]] = record
                started = None
        missing = [c.id for c in CASES[start:] if c.id not in outcomes]
        if started is None and not missing:
            outcomes["<exit>"] = {"status": proc.returncode, "stderr": proc.stderr[-3000:]}
            break
        if started is None:  # died between cases (or at import): blame the first case left
            started = missing[0]
        outcomes[started] = {"id": started, "crash": f"child exited with status {proc.returncode}",
                             "stderr": proc.stderr[-3000:]}
        start = index[started] + 1
    return outcomes


@pytest.fixture(scope="module")
def outcomes():
    return run_table()


def test_case_ids_are_unique_and_enough():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert sum(c.expected is not None for c in CASES) >= 60


def test_child_exits_cleanly(outcomes):
    """After the last case the child exits with status 0 (no crash at shutdown)."""
    crashed = [k for k, v in outcomes.items() if "crash" in v]
    if "<exit>" not in outcomes:  # the last case killed the child: that case fails
        assert crashed
        return
    assert outcomes["<exit>"]["status"] == 0, outcomes["<exit>"]["stderr"]


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.bug)] if c.bug else [])
             for c in CASES])
def test_case(case, outcomes):
    got = outcomes.get(case.id)
    assert got is not None, "the child process never reported this case"
    assert "crash" not in got, f"{got['crash']} while running this case:\n{got['stderr']}"
    if case.expected is None:
        assert got["exc"] is None, f"valid input raised {got['exc'][0]}: {got['msg']}"
        assert "check" not in got, got["check"]
        return
    assert got["exc"] is not None, f"no error raised (expected {case.expected.__name__})"
    assert case.expected.__name__ in got["exc"], (
        f"expected {case.expected.__name__}, got {got['exc'][0]}: {got['msg']}")
    for word in case.words:
        assert word.lower() in got["msg"].lower(), f"message does not mention {word!r}: {got['msg']}"
    assert not got["changed"], f"array arguments {got['changed']} were written before the error"


if __name__ == "__main__":
    child_main(int(sys.argv[1]))


def _misaligned(a):
    """A copy of `a` in a raw buffer at an odd 4 bytes: a valid ndarray (as
    views of file or network bytes are) that is not aligned to its 8-byte
    elements, which the kernels read through typed pointers."""
    a = np.asarray(a)
    buf = np.empty(a.nbytes + 16, np.uint8)
    start = (-buf.ctypes.data) % 8 + 4
    view = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    view[...] = a
    assert not view.flags.aligned
    return view


@pytest.mark.parametrize("n", [64, 3000])  # a small call (stays in C) and the general path
def test_misaligned_inputs_give_the_aligned_results(n, rng):
    x = rng.standard_normal((n, 10))
    y = rng.integers(0, 10, n)
    t = fx.softmax(rng.standard_normal((n, 10)))
    w, sw, go = rng.random(10) + 0.5, rng.random(n) + 0.5, rng.standard_normal(n)
    mx, my, mt, mw, msw, mgo = map(_misaligned, (x, y, t, w, sw, go))
    for name in ("logsumexp", "softmax", "log_softmax"):
        np.testing.assert_array_equal(getattr(fx, name)(mx), getattr(fx, name)(x), err_msg=name)
    for target, mtarget in ((y, my), (t, mt)):
        assert fx.cross_entropy(mx, mtarget, weight=mw, sample_weight=msw) == \
            fx.cross_entropy(x, target, weight=w, sample_weight=sw)
        got = fx.cross_entropy_with_grad(mx, mtarget, weight=mw, sample_weight=msw, reduction="none",
                                         grad_output=mgo)
        want = fx.cross_entropy_with_grad(x, target, weight=w, sample_weight=sw, reduction="none", grad_output=go)
        for g, e in zip(got, want):
            np.testing.assert_array_equal(g, e)
    b = (rng.random((n, 10)) < 0.5).astype(np.float64)
    got = fx.binary_cross_entropy_with_grad(mx, _misaligned(b), weight=mw, pos_weight=mw, reduction="none",
                                            grad_output=_misaligned(np.ones_like(x)))
    want = fx.binary_cross_entropy_with_grad(x, b, weight=w, pos_weight=w, reduction="none",
                                             grad_output=np.ones_like(x))
    for g, e in zip(got, want):
        np.testing.assert_array_equal(g, e)
    np.testing.assert_array_equal(fx.entropy(_misaligned(t)), fx.entropy(t))
    np.testing.assert_array_equal(fx.kl_divergence(mt, _misaligned(fx.softmax(x))), fx.kl_divergence(t, fx.softmax(x)))


@pytest.mark.parametrize("n", [64, 3000])
def test_misaligned_out_is_rejected_before_anything_is_written(n, rng):
    x = rng.standard_normal((n, 10))
    y = rng.integers(0, 10, n)
    b = (rng.random((n, 10)) < 0.5).astype(np.float64)
    calls = [
        ("out", (n,), lambda o: fx.logsumexp(x, out=o)),
        ("out", (n, 10), lambda o: fx.softmax(x, out=o)),
        ("out", (n, 10), lambda o: fx.log_softmax(x, out=o)),
        ("out", (n, 10), lambda o: fx.cross_entropy_with_grad(x, y, out=o)),
        ("out", (n, 10), lambda o: fx.binary_cross_entropy_with_grad(x, b, out=o)),
        (r"logits \(inplace=True\)", (n, 10), lambda o: fx.cross_entropy_with_grad(o, y, inplace=True)),
        (r"x \(inplace=True\)", (n, 10), lambda o: fx.binary_cross_entropy_with_grad(o, b, inplace=True)),
    ]
    for name, shape, call in calls:
        out = _misaligned(np.full(shape, 7.0))
        with pytest.raises(ValueError, match=f"{name} must be aligned"):
            call(out)
        assert np.all(out == 7.0), name
