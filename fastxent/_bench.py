"""The benchmark definition and runner behind ``python -m fastxent bench``.

One definition of the shapes, operations and contenders, shared by the
command-line runner and the pytest-benchmark suite in ``bench/`` (which
imports this module), so both measure the same thing.

Method (see DESIGN.md, "Performance method"):

* Every contender runs in this process on the same arrays.  torch receives a
  zero-copy ``torch.from_numpy`` view; scikit-learn receives the same logits
  and the labels cast to the logits' dtype (its Cython loss needs ``y_true``
  and ``raw_prediction`` of one dtype, C-contiguous).
* Correctness before speed: the first call of each contender is checked
  against the float64 NumPy reference (:mod:`fastxent._reference`) on the
  full array, and doubles as the warm-up.  The reference is itself a timed
  contender, so its first call's output *is* the oracle: nothing is computed
  twice, and even the largest shapes are checked on every row.  A result
  whose error exceeds the dtype's tolerance is reported as ``WRONG`` and is
  not timed.
* Timing: the median of ``repeat`` calls timed with ``time.perf_counter``,
  garbage collector off, after the checked call and (for calls under a tenth
  of the budget) one more warm-up call.  Timed calls stop early once they
  have used ``max_time`` seconds (at least one is always timed), and a call
  whose checked first run alone took longer than ``max_time`` is not run
  again: that first run is its one timing (the NumPy reference takes 2-15 s
  a call on the big shapes, where warm-up effects are negligible).  The
  number of timed calls is in the table and the JSON.
* The bandwidth limit is measured in the same run, at its start and again
  at its end: read bandwidth from ``np.add.reduce`` over a float64 array
  larger than the L3 cache, copy bandwidth ((read + write) bytes / time)
  from ``np.copyto`` into a destination touched beforehand (so page faults
  are not timed), each from one thread and from ``threads`` threads working
  on disjoint halves.  The limit is the fastest of all those timings: on a
  shared machine other work only ever slows a measurement down, and a
  median of one moment swung by 30-50% between runs on the development VM,
  taking every row's percentage with it.  Operations that only
  read the N x C logits are limited by ``bytes read / read bandwidth``;
  those that also write an N x C array by ``(read + write) bytes / copy
  bandwidth``.
* softmax and log_softmax return a new array from every call, and every
  contender pays for it.  fastxent recycles the memory of an output that is
  no longer referenced (``fastxent._buffers``), so from the second call on
  its pages are mapped already; the others fault new pages in.
"""
import gc
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# ----------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------

SHAPES = {
    "tall": (1_000_000, 10),
    "classic": (65536, 1000),
    "llm-32k": (4096, 32000),
    "llm-128k": (1024, 128256),
    "llm-256k": (256, 256000),
    "row": (1, 10_000_000),
}
DTYPES = ("float32", "float64")
QUICK = {"shapes": ("llm-256k",), "dtypes": ("float32",), "repeat": 3, "max_time": 1.0,
         "bandwidth_mib": 256}
# The pytest-benchmark suite's default: one shape per regime, small enough
# that ``pytest bench/ --benchmark-only`` finishes in a few minutes.
SMALL_SHAPES = {"tall-small": (100_000, 10), "classic-small": (8192, 1000), "llm-small": (256, 32000)}

OPS = {
    # name: (description, writes an N x C array)
    "logsumexp": ("log-sum-exp of each row", False),
    "log_softmax": ("log-softmax (a new N x C array)", True),
    "softmax": ("softmax (a new N x C array)", True),
    "cross_entropy": ("cross-entropy loss, mean over rows (forward only)", False),
    "cross_entropy_with_grad": ("cross-entropy loss + gradient, mean over rows; "
                                "fastxent and scikit-learn write into a preallocated out=, "
                                "torch allocates (autograd)", True),
}

# Relative error allowed against the float64 reference, as
# max|result - oracle| / max|oracle|: float32 rounding over rows of up to
# 10^7 terms stays far below 1e-4; float64 far below 1e-9.
TOLERANCE = {"float32": 1e-4, "float64": 1e-9}

PEERS = ("scipy", "torch", "sklearn")


class Skip(Exception):
    """A contender that does not offer an operation, or is not installed."""


class Case:
    """The arrays of one (shape, dtype), shared by every contender.

    Views for the peers (a torch tensor over the same memory, labels in the
    dtype scikit-learn wants, out= buffers) are made on first use and live as
    long as the case, so creating them is never timed.
    """

    def __init__(self, shape, dtype, seed=0):
        rng = np.random.default_rng(seed)
        n, c = shape
        self.shape = (n, c)
        self.dtype = np.dtype(dtype)
        # Scale 3 gives rows whose softmax is neither flat nor one-hot.
        self.x = rng.standard_normal((n, c), dtype=self.dtype)
        self.x *= 3
        self.labels = rng.integers(0, c, n)
        self._cache = {}

    def get(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def nbytes(self, op):
        """Bytes an operation must move at least: N x C logits read, the
        N x C output written when it makes one, the labels read."""
        n, c = self.shape
        moved = self.x.nbytes
        if OPS[op][1]:
            moved += self.x.nbytes
        if op.startswith("cross_entropy"):
            moved += self.labels.nbytes
        return moved


def _fresh_grad_buffer(case):
    buf = np.empty_like(case.x)
    buf.fill(0)  # touch every page now, so page faults are not timed
    return buf


# ----------------------------------------------------------------------------
# Contenders.  Each `make` returns (fn, extract): `fn()` is what is timed and
# `extract(fn())` turns its output into the canonical result compared with
# the reference: an (N,) array for logsumexp, an (N, C) array for the
# softmaxes, the mean loss for cross_entropy, (mean loss, gradient of the
# mean loss) for cross_entropy_with_grad.
# ----------------------------------------------------------------------------


class Contender:
    name = ""
    label = ""
    module = None  # import name whose absence means "not installed"

    def available(self):
        """None when usable, else the reason it is skipped."""
        if self.module is None:
            return None
        try:
            __import__(self.module)
        except ImportError:
            return f"{self.module} not installed"
        return None

    def version(self):
        mod = sys.modules.get(self.module) if self.module else None
        return getattr(mod, "__version__", None)

    def make(self, op, case, threads):
        raise NotImplementedError


def _identity(r):
    return r


class FastxentContender(Contender):
    def __init__(self, single_thread):
        self.single = single_thread
        self.name = "fastxent-1t" if single_thread else "fastxent"
        self.label = "fastxent (1 thread)" if single_thread else "fastxent"

    def version(self):
        import fastxent
        return fastxent.__version__

    def make(self, op, case, threads):
        import fastxent as fx

        nt = 1 if self.single else threads
        x, y = case.x, case.labels
        if op == "logsumexp":
            return (lambda: fx.logsumexp(x, n_threads=nt)), _identity
        if op == "log_softmax":
            return (lambda: fx.log_softmax(x, n_threads=nt)), _identity
        if op == "softmax":
            return (lambda: fx.softmax(x, n_threads=nt)), _identity
        if op == "cross_entropy":
            return (lambda: fx.cross_entropy(x, y, n_threads=nt)), _identity
        if op == "cross_entropy_with_grad":
            out = case.get("grad_out", lambda: _fresh_grad_buffer(case))
            return (lambda: fx.cross_entropy_with_grad(x, y, out=out, n_threads=nt)), _identity
        raise Skip(f"{op} not offered")


class ReferenceContender(Contender):
    name = "numpy-ref"
    label = "NumPy reference"

    def version(self):
        return np.__version__

    def make(self, op, case, threads):
        from fastxent import _reference as ref

        x, y = case.x, case.labels
        if op == "cross_entropy_with_grad":
            # The reference has no fused call: the textbook way is two.
            return (lambda: (ref.cross_entropy(x, y), ref.cross_entropy_grad(x, y))), _identity
        if op == "cross_entropy":
            return (lambda: ref.cross_entropy(x, y)), _identity
        fn = getattr(ref, op)
        return (lambda: fn(x)), _identity


class ScipyContender(Contender):
    name = "scipy"
    label = "SciPy"
    module = "scipy"

    def make(self, op, case, threads):
        if op not in ("logsumexp", "log_softmax", "softmax"):
            raise Skip(f"SciPy has no {op}")
        import scipy.special

        fn = getattr(scipy.special, op)
        x = case.x
        return (lambda: fn(x, axis=-1)), _identity


class TorchContender(Contender):
    name = "torch"
    label = "PyTorch (CPU)"
    module = "torch"

    def make(self, op, case, threads):
        import torch
        import torch.nn.functional as F

        # torch's thread pool is process-wide: give it the same threads as
        # fastxent gets.
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        t = case.get("torch_x", lambda: torch.from_numpy(case.x))
        if op == "logsumexp":
            return (lambda: torch.logsumexp(t, -1)), lambda r: r.numpy()
        if op == "log_softmax":
            return (lambda: F.log_softmax(t, -1)), lambda r: r.numpy()
        if op == "softmax":
            return (lambda: F.softmax(t, -1)), lambda r: r.numpy()
        y = case.get("torch_y", lambda: torch.from_numpy(case.labels))
        if op == "cross_entropy":
            return (lambda: F.cross_entropy(t, y)), lambda r: r.item()
        if op == "cross_entropy_with_grad":
            leaf = case.get("torch_leaf", lambda: torch.from_numpy(case.x).requires_grad_())

            def fwd_bwd():
                leaf.grad = None  # a fresh gradient, not accumulated into the last one
                loss = F.cross_entropy(leaf, y)
                loss.backward()
                return loss, leaf.grad

            return fwd_bwd, lambda r: (r[0].item(), r[1].numpy())
        raise Skip(f"{op} not offered")


class SklearnContender(Contender):
    name = "sklearn"
    label = "scikit-learn"
    module = "sklearn"

    def make(self, op, case, threads):
        if op not in ("cross_entropy", "cross_entropy_with_grad"):
            raise Skip(f"scikit-learn has no public {op}")
        from sklearn._loss.loss import HalfMultinomialLoss

        n, c = case.shape
        if c < 2:
            raise Skip("HalfMultinomialLoss needs at least 2 classes")
        loss_fn = HalfMultinomialLoss(n_classes=c)
        x = case.x
        # Its Cython loops take y_true and raw_prediction of one floating dtype.
        y = case.get("sk_y", lambda: case.labels.astype(case.dtype))
        loss_out = case.get("sk_loss", lambda: np.zeros(n, dtype=case.dtype))
        if op == "cross_entropy":
            # Per-sample losses; the mean over rows is part of the job.
            return (lambda: loss_fn.loss(y, x, loss_out=loss_out, n_threads=threads).mean()), float
        # The same out= buffer as fastxent's: contenders run one after another.
        grad = case.get("grad_out", lambda: _fresh_grad_buffer(case))

        def fwd_bwd():
            loss, g = loss_fn.loss_gradient(y, x, loss_out=loss_out, gradient_out=grad,
                                            n_threads=threads)
            return loss.mean(), g

        # Its gradient is per sample (of the summed loss); the mean loss's
        # gradient is that / N.  The division is done for the check only, so
        # it is not timed: a user's optimiser would fold it into the step.
        return fwd_bwd, lambda r: (float(r[0]), r[1] / n)


CONTENDERS = (FastxentContender(False), FastxentContender(True), ReferenceContender(),
              ScipyContender(), TorchContender(), SklearnContender())
CONTENDER_NAMES = tuple(c.name for c in CONTENDERS)


# ----------------------------------------------------------------------------
# Checking and timing
# ----------------------------------------------------------------------------


def _rel_error(result, oracle):
    """max|result - oracle| / max|oracle| (inf on shape or NaN mismatch)."""
    a = np.asarray(result)
    b = np.asarray(oracle, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    # Fast path for the big arrays (a few passes, one temporary): any NaN or
    # inf in either array makes the difference non-finite.
    diff = np.abs(np.subtract(a, b, dtype=np.float64))
    worst = float(np.max(diff)) if diff.size else 0.0
    del diff
    if np.isfinite(worst):
        scale = max(float(np.max(b)), -float(np.min(b))) if b.size else 0.0
        return worst / (scale or 1.0)
    a = a.astype(np.float64)
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return float("inf")
    finite = np.isfinite(b)
    if not np.array_equal(a[~finite], b[~finite], equal_nan=True):
        return float("inf")
    if not finite.any():
        return 0.0
    scale = float(np.max(np.abs(b[finite]))) or 1.0
    return float(np.max(np.abs(a[finite] - b[finite]))) / scale


def check(result, oracle):
    """The worst relative error over every part of a canonical result."""
    if isinstance(oracle, tuple):
        if not isinstance(result, tuple) or len(result) != len(oracle):
            return float("inf")
        return max(_rel_error(r, o) for r, o in zip(result, oracle))
    if isinstance(result, tuple):
        return float("inf")
    return _rel_error(result, oracle)


def time_calls(fn, repeat, warmups=1, max_time=float("inf")):
    """Wall times of up to `repeat` calls of fn() (GC off, after warm-ups),
    stopping once they add up to `max_time`; at least one."""
    for _ in range(warmups):
        fn()
    times = []
    # No gc.collect() here: with torch imported one costs ~0.1 s, too much per
    # measurement; the runner collects once per shape instead.
    enabled = gc.isenabled()
    gc.disable()
    try:
        while len(times) < repeat and (not times or sum(times) < max_time):
            start = time.perf_counter()
            r = fn()
            times.append(time.perf_counter() - start)
            del r  # freed before the next call, as in a loop a user writes
    finally:
        if enabled:
            gc.enable()
    return times


def measure_bandwidth(mib=512, threads=1, repeat=5):
    """Read and copy bandwidth (bytes/s) of main memory, measured now: the
    fastest of `repeat` timings after a warm-up.

    Arrays of `mib` MiB (float64), larger than the L3 cache; the copy's
    destination is written before it is timed so its page faults are not.
    """
    n = max(1, mib * 2**20 // 8)
    src = np.ones(n)
    dst = np.zeros(n)
    parts = [slice(i * n // threads, (i + 1) * n // threads) for i in range(threads)]

    def best(fn):
        fn()
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    out = {"array_mib": mib, "threads": threads}
    out["read_1t"] = src.nbytes / best(lambda: np.add.reduce(src))
    out["copy_1t"] = 2 * src.nbytes / best(lambda: np.copyto(dst, src))
    if threads > 1:
        # NumPy releases the GIL in reductions and copies, so Python threads
        # on disjoint halves run in parallel.
        with ThreadPoolExecutor(threads) as pool:
            out["read_mt"] = src.nbytes / best(
                lambda: list(pool.map(lambda s: np.add.reduce(src[s]), parts)))
            out["copy_mt"] = 2 * src.nbytes / best(
                lambda: list(pool.map(lambda s: np.copyto(dst[s], src[s]), parts)))
    out["read"] = max(out["read_1t"], out.get("read_mt", 0.0))
    out["copy"] = max(out["copy_1t"], out.get("copy_mt", 0.0))
    return out


def _fastest_bandwidth(before, after):
    """The limit from two measurements of one run: each rate at its fastest.
    Both measurements are kept in the report."""
    out = {key: max(before[key], after[key]) if isinstance(before[key], float) else before[key]
           for key in before}
    out["measured"] = {"start": before, "end": after}
    return out


def _set_limits(records, bw):
    """Each record's limit and percentage of it, once the run's limit is known."""
    for rec in records:
        rec["limit"] = rec["bytes"] / (bw["copy"] if OPS[rec["op"]][1] else bw["read"])
        if rec["status"] == "ok":
            rec["pct_of_limit"] = 100.0 * rec["limit"] / rec["median"]


def run_one(contender, op, case, threads, repeat, oracle, max_time=3.0):
    """One measurement record; `oracle` is None only for the reference."""
    rec = {"op": op, "shape": list(case.shape), "dtype": case.dtype.name,
           "contender": contender.name}
    reason = contender.available()
    if reason:
        rec.update(status="skipped", reason=reason)
        return rec, None
    try:
        fn, extract = contender.make(op, case, threads)
    except Skip as exc:
        rec.update(status="skipped", reason=str(exc))
        return rec, None
    try:
        start = time.perf_counter()
        first = extract(fn())
        first_time = time.perf_counter() - start
        err = 0.0 if oracle is None else check(first, oracle)
        rec["max_rel_error"] = err
        if not err <= TOLERANCE[case.dtype.name]:
            rec.update(status="WRONG", reason=f"max relative error {err:.3g} against the "
                       f"float64 reference (tolerance {TOLERANCE[case.dtype.name]:g})")
            return rec, first
        if first_time >= max_time:
            times = [first_time]
        else:
            times = time_calls(fn, repeat, warmups=int(first_time < max_time / 10),
                               max_time=max_time)
    except Exception as exc:  # a peer's failure is a result, not a crash of the run
        rec.update(status="error", reason=f"{type(exc).__name__}: {exc}")
        return rec, None
    rec.update(status="ok", times=times, n_timed=len(times), median=statistics.median(times))
    return rec, first


def _case_records(case, ops, contenders, threads, repeat, max_time, progress):
    records = []
    for op in ops:
        ref = next(c for c in contenders if c.name == "numpy-ref")
        # The reference first: its output is the oracle for the others.
        ref_rec, oracle = run_one(ref, op, case, threads, repeat, None, max_time)
        progress(ref_rec)
        op_recs = {ref.name: ref_rec}
        for contender in contenders:
            if contender is ref:
                continue
            rec, _ = run_one(contender, op, case, threads, repeat, oracle, max_time)
            progress(rec)
            op_recs[contender.name] = rec
        del oracle
        ref_time = ref_rec.get("median")
        peer_times = [op_recs[p]["median"] for p in PEERS
                      if p in op_recs and op_recs[p]["status"] == "ok"]
        best_peer = min(peer_times) if peer_times else None
        for name in CONTENDER_NAMES:
            if name not in op_recs:
                continue
            rec = op_recs[name]
            rec["bytes"] = case.nbytes(op)
            if rec["status"] == "ok":
                t = rec["median"]
                rec["gbps"] = rec["bytes"] / t / 1e9
                rec["speedup_vs_reference"] = ref_time / t if ref_time else None
                rec["speedup_vs_best_peer"] = best_peer / t if best_peer else None
            records.append(rec)
    return records


def _parse_shape(text):
    if text in SHAPES:
        return text, SHAPES[text]
    if text in SMALL_SHAPES:
        return text, SMALL_SHAPES[text]
    try:
        n, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--shapes: expected a name ({', '.join(SHAPES)}) or NxC, "
                         f"got {text!r}") from None
    if n < 1 or c < 1:
        raise ValueError(f"--shapes: both dimensions must be positive, got {text!r}")
    return f"{n}x{c}", (n, c)


def parse_list(text, allowed, what):
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if bad or not items:
        raise ValueError(f"{what}: expected a comma-separated subset of {', '.join(allowed)}, "
                         f"got {text!r}")
    return items


def environment(contenders):
    import fastxent

    config = dict(fastxent.show_config())
    peers = {}
    for c in contenders:
        if c.module:
            peers[c.label] = c.version() if c.available() is None else None
    return {"config": config, "peers": peers, "platform": platform.platform()}


def run(shapes, dtypes, ops, contender_names=CONTENDER_NAMES, threads=None, repeat=5,
        max_time=3.0, bandwidth_mib=512, progress=True, log=sys.stderr):
    """Run the grid; returns the JSON-ready report (see `format_report`)."""
    import fastxent

    if threads is None:
        threads = fastxent.show_config()["max_threads"]
    contenders = [c for c in CONTENDERS if c.name in contender_names or c.name == "numpy-ref"]
    # Import the peers before anything is timed (torch takes seconds).
    for c in contenders:
        c.available()
    env = environment(contenders)
    env["load_before"] = _load()
    bw_start = measure_bandwidth(bandwidth_mib, threads)
    total = len(shapes) * len(dtypes) * len(ops) * len(contenders)
    bar = _progress_bar(total, progress, log)
    records = []

    def tick(rec):
        if bar is not None:
            bar.set_postfix_str(f"{rec['op']} {rec['shape'][0]}x{rec['shape'][1]} "
                                f"{rec['dtype']} {rec['contender']}", refresh=False)
            bar.update(1)

    try:
        for name, shape in shapes:
            for dtype in dtypes:
                gc.collect()
                case = Case(shape, dtype)
                for rec in _case_records(case, ops, contenders, threads, repeat, max_time, tick):
                    rec["shape_name"] = name
                    records.append(rec)
                del case  # the big shapes need their memory back before the next
                gc.collect()
    finally:
        if bar is not None:
            bar.close()
    env["load_after"] = _load()
    bw = _fastest_bandwidth(bw_start, measure_bandwidth(bandwidth_mib, threads))
    _set_limits(records, bw)
    return {"environment": env, "bandwidth": bw,
            "settings": {"threads": threads, "repeat": repeat, "max_time": max_time, "shapes": dict(shapes),
                         "dtypes": list(dtypes), "ops": list(ops),
                         "contenders": [c.name for c in contenders]},
            "contenders": {c.name: c.label for c in contenders},
            "results": records}


def _load():
    """The 1-minute load average (None where the OS has none): other work on
    the machine slows every contender, the multi-threaded ones most."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _progress_bar(total, enabled, log):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, file=log, unit="run", dynamic_ncols=True, leave=False)


# ----------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------


def _fmt_time(s):
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def _fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}x"


def _load_line(env, cfg):
    before, after = env.get("load_before"), env.get("load_after")
    if before is None:
        return "Load average: unknown"
    line = f"Load average (1 min) before {before:.2f}, after {after:.2f}"
    if max(before, after) > 0.5 * cfg["num_procs"]:
        line += ("  WARNING: other work shares these CPUs; times are slower and noisier "
                 "than on an idle machine")
    return line


def _bandwidth_spread(bw):
    """The two measurements behind the limit."""
    m = bw["measured"]
    return (f" (start: read {m['start']['read'] / 1e9:.1f}, copy {m['start']['copy'] / 1e9:.1f}; "
            f"end: read {m['end']['read'] / 1e9:.1f}, copy {m['end']['copy'] / 1e9:.1f})")


def format_report(report):
    env, bw, settings = report["environment"], report["bandwidth"], report["settings"]
    cfg = env["config"]
    lines = ["fastxent benchmark", "=" * 18,
             f"Python {cfg['python']}, NumPy {cfg['numpy']}, fastxent {cfg['version']}",
             "Peers: " + ", ".join(f"{k} {v or '(not installed)'}" for k, v in env["peers"].items()),
             f"CPU: {cfg['cpu']} ({cfg['num_procs']} logical CPUs); {env['platform']}",
             f"Threads: {settings['threads']} (fastxent max {cfg['max_threads']}); SIMD path "
             f"{cfg['simd']} (best supported {cfg['simd_supported']}); OpenMP "
             f"{'on' if cfg['openmp'] else 'OFF (serial build)'}",
             _load_line(env, cfg),
             f"Memory bandwidth ({bw['array_mib']} MiB arrays, fastest at the run's start and end): "
             f"read {bw['read'] / 1e9:.1f} GB/s, copy (read+write) {bw['copy'] / 1e9:.1f} GB/s"
             + _bandwidth_spread(bw),
             f"Timing: median of up to {settings['repeat']} calls after warm-up, stopping after "
             f"{settings['max_time']:g} s (column 'n'); every result checked against the float64 "
             "NumPy reference first.",
             ""]
    labels = report["contenders"]
    width = max(len(v) for v in labels.values())
    for op in settings["ops"]:
        desc, writes = OPS[op]
        recs = [r for r in report["results"] if r["op"] == op]
        lines.append(f"{op}: {desc}")
        lines.append("  limit = " + ("(read + write) bytes / copy bandwidth" if writes
                                    else "bytes read / read bandwidth"))
        head = (f"  {'shape':<14} {'dtype':<8} {'contender':<{width}} {'median':>10} "
                f"{'n':>2} {'vs NumPy':>9} {'vs best peer':>12} {'% of limit':>10}")
        lines.append(head)
        lines.append("  " + "-" * (len(head) - 2))
        skipped = {}
        prev = None
        for r in recs:
            if r["status"] == "skipped":
                skipped.setdefault(labels[r["contender"]], r["reason"])
                continue
            key = (tuple(r["shape"]), r["dtype"])
            if prev is not None and key != prev:
                lines.append("")
            prev = key
            shape = f"{r['shape'][0]}x{r['shape'][1]}"
            name = labels[r["contender"]]
            if r["status"] == "ok":
                lines.append(f"  {shape:<14} {r['dtype']:<8} {name:<{width}} "
                             f"{_fmt_time(r['median']):>10} {r['n_timed']:>2} "
                             f"{_fmt_ratio(r.get('speedup_vs_reference')):>9} "
                             f"{_fmt_ratio(r.get('speedup_vs_best_peer')):>12} "
                             f"{r['pct_of_limit']:>9.0f}%")
            else:
                lines.append(f"  {shape:<14} {r['dtype']:<8} {name:<{width}} "
                             f"{r['status']:>10}  {r['reason']}")
        if skipped:
            lines.append("  skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))
        lines.append("")
    lines.append("vs NumPy: NumPy reference time / this time (the float64 textbook formulas of "
                 "fastxent._reference).")
    lines.append("vs best peer: the fastest of SciPy, PyTorch, scikit-learn / this time.")
    lines.append("% of limit: the time memory traffic alone needs / this time.")
    return "\n".join(lines)


def write_json(report, path):
    with open(path, "w") as f:
        json.dump(report, f, indent=1)


def plot(report, path):
    """A PNG of throughput (GB/s, log scale) per shape and contender, one
    panel per operation and dtype, with the bandwidth limit as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = report["settings"]
    ops, dtypes = settings["ops"], settings["dtypes"]
    names = settings["contenders"]
    labels = report["contenders"]
    shapes = list(settings["shapes"].items())
    bw = report["bandwidth"]
    colors = dict(zip(CONTENDER_NAMES, ["#d62728", "#ff9896", "#7f7f7f", "#1f77b4",
                                         "#ff7f0e", "#2ca02c"]))
    width_in = max(10.0 / len(dtypes), 1.6 * len(shapes)) * len(dtypes)
    height_in = 3.0 * len(ops) + 1.0
    fig, axes = plt.subplots(len(ops), len(dtypes), squeeze=False, sharey=True,
                             figsize=(width_in, height_in))
    index = {(r["op"], r["dtype"], r["shape_name"], r["contender"]): r for r in report["results"]}
    width = 0.8 / max(1, len(names))
    # One bottom for every panel (they share the axis), below the slowest bar.
    rates = [r["gbps"] for r in report["results"] if r["status"] == "ok" and r["gbps"] > 0]
    bottom = min(rates) / 2 if rates else 0.01
    top = 2.5 * max(rates + [bw["read"] / 1e9, bw["copy"] / 1e9])
    for i, op in enumerate(ops):
        limit = (bw["copy"] if OPS[op][1] else bw["read"]) / 1e9
        for j, dtype in enumerate(dtypes):
            ax = axes[i][j]
            for k, name in enumerate(names):
                xs, ys, bad = [], [], []
                for s, (sname, _) in enumerate(shapes):
                    r = index.get((op, dtype, sname, name))
                    if r is None:
                        continue
                    pos = s + (k - (len(names) - 1) / 2) * width
                    if r["status"] == "ok":
                        xs.append(pos)
                        ys.append(r["gbps"])
                    elif r["status"] in ("WRONG", "error"):
                        bad.append(pos)
                if xs:  # an empty bar set would still make a (wrongly coloured) legend entry
                    ax.bar(xs, ys, width, color=colors[name], label=labels[name])
                for pos in bad:
                    ax.text(pos, bottom * 1.2, "WRONG", rotation=90, ha="center", va="bottom",
                            fontsize=7, color=colors[name])
            ax.axhline(limit, color="black", linestyle="--", linewidth=1)
            ax.text(len(shapes) - 0.5, limit, f" limit {limit:.1f} GB/s", va="bottom", ha="right",
                    fontsize=8)
            ax.set_yscale("log")
            ax.set_ylim(bottom, top)
            ax.set_xticks(range(len(shapes)))
            ax.set_xticklabels([f"{n}\n{s[0]}x{s[1]}" if n != f"{s[0]}x{s[1]}" else n
                                for n, s in shapes], fontsize=8)
            ax.set_xlim(-0.5, len(shapes) - 0.5)
            ax.set_title(f"{op}, {dtype}", fontsize=10)
            if j == 0:
                ax.set_ylabel("GB/s (higher is better)")
            ax.set_axisbelow(True)
            ax.grid(axis="y", which="major", alpha=0.4)
    handles, leg = [], []
    for ax in axes.flat:  # a contender may have bars in some panels only
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in leg:
                handles.append(h)
                leg.append(lab)
    ncol = len(leg) if width_in >= 2.0 * len(leg) else (len(leg) + 1) // 2
    fig.legend(handles, leg, loc="lower center", ncol=ncol, frameon=False, fontsize=9)
    fig.suptitle(f"fastxent {report['environment']['config']['version']} on "
                 f"{report['environment']['config']['cpu']}, {settings['threads']} threads\n"
                 "throughput = minimum bytes moved / median time (log scale); dashed line = "
                 "memory-bandwidth limit", fontsize=10)
    legend_rows = -(-len(leg) // ncol)
    fig.tight_layout(rect=(0, (0.15 + 0.25 * legend_rows) / height_in, 1, 1 - 0.55 / height_in))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------
# Command line (``python -m fastxent bench``)
# ----------------------------------------------------------------------------


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true",
                        help=f"a short run: shapes {','.join(QUICK['shapes'])}, float32, "
                             f"{QUICK['repeat']} repeats, {QUICK['max_time']:g} s per measurement (about a minute)")
    parser.add_argument("--shapes", help="comma-separated names (" + ", ".join(
        f"{k}={v[0]}x{v[1]}" for k, v in SHAPES.items()) + ") or NxC; default all")
    parser.add_argument("--dtype", help="float32, float64 or both comma-separated; default both")
    parser.add_argument("--ops", help="comma-separated subset of " + ", ".join(OPS))
    parser.add_argument("--contenders", help="comma-separated subset of " + ", ".join(
        CONTENDER_NAMES) + " (the NumPy reference always runs: it is the oracle)")
    parser.add_argument("--threads", type=int, help="threads for fastxent, torch and "
                        "scikit-learn; default: all fastxent may use")
    parser.add_argument("--repeat", type=int, help="timed calls per measurement (median); "
                        "default 5 (3 with --quick)")
    parser.add_argument("--max-time", type=float, help="seconds of timed calls per "
                        "measurement before stopping early; default 3 (1 with --quick)")
    parser.add_argument("--bandwidth-mib", type=int, help="array size for the bandwidth "
                        "measurement; default 512 (256 with --quick); keep it above the L3 size")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    parser.add_argument("--plot", metavar="PATH", help="also write a PNG of throughput")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args, stdout=None, stderr=None):
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        if args.shapes:
            shapes = [_parse_shape(s.strip()) for s in args.shapes.split(",") if s.strip()]
        else:
            names = QUICK["shapes"] if args.quick else tuple(SHAPES)
            shapes = [(n, SHAPES[n]) for n in names]
        if not shapes:
            raise ValueError("--shapes: no shape given")
        dtypes = (parse_list(args.dtype, DTYPES, "--dtype") if args.dtype
                  else list(QUICK["dtypes"] if args.quick else DTYPES))
        ops = parse_list(args.ops, tuple(OPS), "--ops") if args.ops else list(OPS)
        contenders = (parse_list(args.contenders, CONTENDER_NAMES, "--contenders")
                      if args.contenders else list(CONTENDER_NAMES))
        repeat = args.repeat if args.repeat is not None else (QUICK["repeat"] if args.quick else 5)
        if repeat < 1:
            raise ValueError(f"--repeat must be at least 1, got {repeat}")
        if args.threads is not None and args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        max_time = args.max_time if args.max_time is not None else (
            QUICK["max_time"] if args.quick else 3.0)
        if not max_time > 0:
            raise ValueError(f"--max-time must be positive, got {max_time}")
        mib = args.bandwidth_mib or (QUICK["bandwidth_mib"] if args.quick else 512)
        if mib < 1:
            raise ValueError(f"--bandwidth-mib must be at least 1, got {mib}")
    except ValueError as exc:
        print(f"fastxent bench: error: {exc}", file=stderr)
        return 2
    report = run(shapes, dtypes, ops, contenders, threads=args.threads, repeat=repeat,
                 max_time=max_time, bandwidth_mib=mib, progress=not args.no_progress, log=stderr)
    print(format_report(report), file=stdout)
    if args.json:
        write_json(report, args.json)
        print(f"JSON written to {args.json}", file=stdout)
    if args.plot:
        plot(report, args.plot)
        print(f"plot written to {args.plot}", file=stdout)
    wrong = [r for r in report["results"] if r["status"] == "WRONG" and r["contender"].startswith("fastxent")]
    return 1 if wrong else 0
