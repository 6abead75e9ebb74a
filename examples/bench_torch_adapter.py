"""fastxent.torch against torch.nn.functional.cross_entropy: forward + backward time.

    python examples/bench_torch_adapter.py --rows 4096 --classes 32000 --repeats 9

Both run on the same tensors in this process, interleaved after a warm-up;
the medians and their ratio are printed, with the largest differences of the
loss and of the gradient between the two.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import fastxent
import fastxent.torch as fxt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--classes", type=int, default=32000)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    x = torch.randn(args.rows, args.classes, dtype=getattr(torch, args.dtype), requires_grad=True)
    y = torch.randint(0, args.classes, (args.rows,))

    def step(fn):
        x.grad = None
        start = time.perf_counter()
        fn(x, y).backward()
        return time.perf_counter() - start

    for fn in (fxt.cross_entropy, F.cross_entropy):  # warm-up: first-touch pages, thread pools
        step(fn)
        step(fn)
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(step(fxt.cross_entropy))
        theirs.append(step(F.cross_entropy))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"{args.rows}x{args.classes} {args.dtype}, threads: fastxent {fastxent.show_config()['max_threads']}, "
          f"torch {torch.get_num_threads()}; torch {torch.__version__}, fastxent {fastxent.__version__}")
    print(f"fastxent.torch   forward+backward median {a * 1e3:8.1f} ms")
    print(f"F.cross_entropy  forward+backward median {b * 1e3:8.1f} ms")
    print(f"speed-up {b / a:.1f}x")
    x.grad = None
    loss = fxt.cross_entropy(x, y)
    loss.backward()
    grad = x.grad
    x.grad = None
    ref = F.cross_entropy(x, y)
    ref.backward()
    print(f"|loss difference| {abs(loss.item() - ref.item()):.3g}, "
          f"max |gradient difference| {(grad - x.grad).abs().max().item():.3g}")


if __name__ == "__main__":
    main()
