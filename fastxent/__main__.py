"""Command line: `python -m fastxent info | demo | bench`."""
import argparse
import json
import sys
import time


def _info(args):
    import fastxent as fx

    config = fx.show_config()
    if args.json:
        print(json.dumps(config, indent=2))
    else:
        width = max(map(len, config))
        for key, value in config.items():
            print(f"{key:<{width}}  {value}")
    return 0


def _demo(args):
    """A small end-to-end run: the loss and gradient of a batch, checked."""
    import numpy as np

    import fastxent as fx
    from fastxent import _reference as ref

    rng = np.random.default_rng(0)
    n, c = args.rows, args.classes
    logits = rng.standard_normal((n, c), dtype=np.float32) * 3
    labels = rng.integers(0, c, n)
    grad = np.empty_like(logits)
    fx.cross_entropy_with_grad(logits, labels, out=grad)  # warm-up
    start = time.perf_counter()
    loss, _ = fx.cross_entropy_with_grad(logits, labels, out=grad)
    elapsed = time.perf_counter() - start
    expected = ref.cross_entropy(logits, labels)
    print(f"cross_entropy_with_grad on {n}x{c} float32: loss {loss:.6f} "
          f"(float64 NumPy reference {expected:.6f}) in {elapsed * 1e3:.2f} ms")
    return 0 if abs(loss - expected) <= 1e-5 * abs(expected) else 1


def _add_bench_arguments(parser):
    # Deferred like the runner itself, but the options must exist for --help.
    from fastxent._bench import add_arguments

    add_arguments(parser)


def _bench(args):
    from fastxent import _bench

    return _bench.main(args)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastxent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="print the build and run-time configuration")
    p_info.add_argument("--json", action="store_true", help="as JSON")
    p_info.set_defaults(func=_info)
    p_demo = sub.add_parser("demo", help="run and check one loss + gradient call")
    p_demo.add_argument("--rows", type=int, default=4096)
    p_demo.add_argument("--classes", type=int, default=32000)
    p_demo.set_defaults(func=_demo)
    p_bench = sub.add_parser(
        "bench", help="time the cross-entropy family against NumPy, SciPy, PyTorch, scikit-learn",
        description="Times logsumexp, log_softmax, softmax, cross_entropy and "
                    "cross_entropy_with_grad over a grid of shapes against every peer installed, "
                    "checks every result against the float64 NumPy reference first, and reports "
                    "each time as a speed-up and as a percentage of the memory-bandwidth limit "
                    "measured in the same run.")
    _add_bench_arguments(p_bench)
    p_bench.set_defaults(func=_bench)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
