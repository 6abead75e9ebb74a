"""What the options, layouts and small calls cost, in one process.

    python bench/option_costs.py

Medians of repeated calls after a warm-up, each line a same-run ratio:
- cross_entropy_with_grad at 4096x32000 and 1000000x10 float32 with weight
  + label_smoothing + ignore_index against the plain call (same out= buffer);
- the (64, 1000, 32, 32) and (64, 21, 128, 128) float32 PyTorch layouts with
  axis=1 against the same numbers with the class axis last (each with its
  fraction of the copy limit measured at the start), and both against
  PyTorch's F.cross_entropy forward + backward (when torch is installed);
- small calls (64x10 and 1024x10 float32) against the NumPy reference, and
  the fixed cost of the other calls at 64x10;
- a fresh gradient (fastxent allocates it) against out=, with the memory of
  the gradient dropped by the last call recycled, and with new pages;
- entropy and KL divergence of 4096x4000 rows, float32 and float64, against
  the NumPy reference and scipy.stats.entropy (when SciPy is installed),
  each with its fraction of the read limit.
"""
import time

import numpy as np

import fastxent as fx
from fastxent import _reference as ref
from fastxent._bench import measure_bandwidth


def median_time(fn, repeat=7, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def report(name, seconds, baseline=None, baseline_name=""):
    ratio = f"   {baseline / seconds:6.2f}x {baseline_name}" if baseline else ""
    print(f"  {name:<58} {seconds * 1e3:10.3f} ms{ratio}")


def options_cost(rng):
    for n, c in ((4096, 32000), (1000000, 10)):
        print(f"cross_entropy_with_grad, {n}x{c} float32, out= buffer")
        x = rng.standard_normal((n, c), dtype=np.float32)
        y = rng.integers(0, c, n)
        y[::10] = -100
        w = rng.random(c).astype(np.float32) + 0.5
        out = np.zeros_like(x)
        plain = median_time(lambda: fx.cross_entropy_with_grad(x, y, out=out))
        report("plain", plain)
        opts = median_time(lambda: fx.cross_entropy_with_grad(x, y, out=out, weight=w, label_smoothing=0.1,
                                                              ignore_index=-100))
        print(f"  {'weight + label_smoothing + ignore_index':<58} {opts * 1e3:10.3f} ms   "
              f"{opts / plain:6.2f}x the plain call's time")


def layouts(rng, bandwidth):
    """Class axis last against PyTorch's axis=1 layout, for 1000 classes
    (32x32 positions) and semantic segmentation's 21 (128x128 positions,
    the narrow kernels' case), each with its fraction of the copy limit."""
    for shape in ((64, 1000, 32, 32), (64, 21, 128, 128)):
        layout(rng, shape, bandwidth)


def layout(rng, shape, bandwidth):
    n, c = shape[:2]
    print(f"cross-entropy forward + gradient, {shape} float32")
    x = rng.standard_normal(shape, dtype=np.float32)
    y = rng.integers(0, c, (n,) + shape[2:])
    last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    g1, g2 = np.zeros_like(x), np.zeros_like(last)
    t_axis1 = median_time(lambda: fx.cross_entropy_with_grad(x, y, axis=1, out=g1))
    t_last = median_time(lambda: fx.cross_entropy_with_grad(last, y, out=g2))
    limit = 2 * x.nbytes / bandwidth["copy"]
    report(f"fastxent, class axis last (N, d1, d2, C), {limit / t_last:4.0%} of copy", t_last)
    print(f"  {f'fastxent, axis=1 (N, C, d1, d2), {limit / t_axis1:4.0%} of copy':<58} {t_axis1 * 1e3:10.3f} ms   "
          f"{t_axis1 / t_last:6.2f}x the class-last time")
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("  PyTorch: not installed")
        return
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.from_numpy(y)

    def torch_step():
        xt.grad = None
        F.cross_entropy(xt, yt).backward()

    t_torch = median_time(torch_step, repeat=3, warmup=1)
    report(f"PyTorch {torch.__version__} F.cross_entropy + backward, (N, C, d1, d2)", t_torch)
    report("  fastxent axis=1 vs PyTorch", t_axis1, t_torch, "faster")
    report("  fastxent class-last vs PyTorch", t_last, t_torch, "faster")


def small_calls(rng):
    print("small cross_entropy calls, float32 (fixed cost)")
    for n in (64, 1024):
        x = rng.standard_normal((n, 10), dtype=np.float32)
        y = rng.integers(0, 10, n)
        t_fx = median_time(lambda: fx.cross_entropy(x, y), repeat=2001)
        t_ref = median_time(lambda: ref.cross_entropy(x, y), repeat=201)
        report(f"{n}x10 fastxent (NumPy reference {t_ref * 1e6:.1f} us)", t_fx, t_ref, "faster than NumPy")
    print("fixed cost of the other calls, 64x10 float32 (medians in us)")
    x = rng.standard_normal((64, 10), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    t = rng.random((64, 10), dtype=np.float32)
    w = rng.random(10) + 0.5
    p = fx.softmax(x)
    row, full = np.empty(64, np.float32), np.empty_like(x)
    calls = {
        "logsumexp": lambda: fx.logsumexp(x),
        "logsumexp, out=": lambda: fx.logsumexp(x, out=row),
        "softmax, out=": lambda: fx.softmax(x, out=full),
        "cross_entropy_with_grad, out=": lambda: fx.cross_entropy_with_grad(x, y, out=full),
        "cross_entropy, reduction='none'": lambda: fx.cross_entropy(x, y, reduction="none"),
        "cross_entropy, label_smoothing=0.1": lambda: fx.cross_entropy(x, y, label_smoothing=0.1),
        "cross_entropy, weight=": lambda: fx.cross_entropy(x, y, weight=w),
        "binary_cross_entropy": lambda: fx.binary_cross_entropy(x, t),
        "entropy": lambda: fx.entropy(p),
    }
    for name, call in calls.items():
        print(f"  {name:<58} {median_time(call, repeat=2001) * 1e6:10.2f} us")


def fresh_output(rng):
    print("page faults: cross_entropy_with_grad 4096x32000 float32")
    x = rng.standard_normal((4096, 32000), dtype=np.float32)
    y = rng.integers(0, 32000, 4096)
    out = np.zeros_like(x)
    t_out = median_time(lambda: fx.cross_entropy_with_grad(x, y, out=out), repeat=5)
    t_new = median_time(lambda: fx.cross_entropy_with_grad(x, y), repeat=5)

    def cold():
        fx.release_buffers()  # the memory of the last gradient goes back to the system
        fx.cross_entropy_with_grad(x, y)

    t_cold = median_time(cold, repeat=5)
    report("out= (pages already mapped)", t_out)
    print(f"  {'fresh gradient, memory of a dropped one recycled':<58} {t_new * 1e3:10.3f} ms   "
          f"+{(t_new - t_out) * 1e3:.1f} ms")
    print(f"  {'fresh gradient, new pages (threads fault them in)':<58} {t_cold * 1e3:10.3f} ms   "
          f"+{(t_cold - t_out) * 1e3:.1f} ms of page faults")


def information(rng, bandwidth):
    try:
        from scipy import stats
    except ImportError:
        stats = None
    for dtype in (np.float32, np.float64):
        print(f"entropy and KL divergence of 4096x4000 rows, {np.dtype(dtype).name}")
        p = rng.random((4096, 4000)).astype(dtype)
        q = rng.random((4096, 4000)).astype(dtype)
        for name, reads, ours, numpy_ref, scipy_call in (
                ("entropy", p.nbytes, lambda: fx.entropy(p), lambda: ref.entropy(p),
                 lambda: stats.entropy(p, axis=-1)),
                ("kl_divergence", 2 * p.nbytes, lambda: fx.kl_divergence(p, q), lambda: ref.kl_divergence(p, q),
                 lambda: stats.entropy(p, q, axis=-1))):
            t = median_time(ours)
            report(f"fastxent {name}, {reads / bandwidth['read'] / t:4.0%} of read", t)
            t_ref = median_time(numpy_ref, repeat=3, warmup=1)
            report("  NumPy reference", t_ref)
            report("  fastxent vs NumPy reference", t, t_ref, "faster")
            if stats is not None:
                t_scipy = median_time(scipy_call, repeat=3, warmup=1)
                report("  scipy.stats.entropy", t_scipy)
                report("  fastxent vs scipy.stats.entropy", t, t_scipy, "faster")


if __name__ == "__main__":
    config = fx.show_config()
    print(f"fastxent {config['version']}, {config['cpu']}, {config['max_threads']} threads, "
          f"SIMD {config['simd']}, OpenMP {'on' if config['openmp'] else 'off'}")
    bw = measure_bandwidth(threads=config["max_threads"])
    print(f"memory bandwidth now: read {bw['read'] / 1e9:.1f} GB/s, copy {bw['copy'] / 1e9:.1f} GB/s")
    generator = np.random.default_rng(0)
    options_cost(generator)
    layouts(generator, bw)
    small_calls(generator)
    fresh_output(generator)
    information(generator, bw)
