"""vitc's reduced-precision GEMM on the four ViT-B/16 linear layers as a forward pass runs them: 12 distinct
weights per shape, each used once per sweep (in the model each weight comes from memory once per forward; a
GEMM timed again and again on one weight reads it from cache and runs 1.3-1.7x faster than in the model), with
the model's epilogues (qkv: bias; proj, fc2: bias + residual in place; fc1: bias + GELU).

    PYTHONPATH=. python benchmarks/bench_gemm_layers.py --dtype bfloat16 --batch 1 8 --threads 1

Prints per shape the best and median sweep (ms for the 12 layers) over --rounds sweeps, and TFLOP/s of the
best. With one thread the clock is the thread's CPU time (kinder to a shared machine), else wall time.
--only picks layers (e.g. --only fc1,fc2); --no-act drops fc1's GELU (the GEMM alone).
"""
import argparse
import time

import numpy as np

from vitc import _vitc

LAYERS = [  # (name, k, n, activation, residual)
    ("qkv", 768, 2304, "none", False),
    ("proj", 768, 768, "none", True),
    ("fc1", 768, 3072, "gelu_erf", False),
    ("fc2", 3072, 768, "none", True),
]


def sweep_ms(kset, nthreads, a, weights, out, bias, act, residual, workspace, rounds):
    clock = time.thread_time if nthreads == 1 else time.perf_counter
    times = []
    for _ in range(rounds + 1):  # the first sweep warms up, not counted
        t = clock()
        for w in weights:
            _vitc.gemm_packed(kset, nthreads, a, w, out, bias=bias, act=act, residual=out if residual else None,
                              workspace=workspace)
        times.append((clock() - t) * 1e3)
    return np.array(times[1:])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "int8"])
    p.add_argument("--kernel-set", default=None, help="default: the best this CPU runs for the dtype")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--layers", type=int, default=12, help="distinct weights per shape")
    p.add_argument("--only", default="qkv,proj,fc1,fc2")
    p.add_argument("--no-act", action="store_true")
    args = p.parse_args(argv)
    dtype = _vitc.dtype_code(args.dtype)
    kset = _vitc.kernel_set_code(args.kernel_set) if args.kernel_set else _vitc.kernel_sets(dtype)[-1]
    print(f"vitc {args.dtype} on {_vitc.KERNEL_SETS[kset]}, {args.threads} thread(s), {args.layers} weights per shape")
    rng = np.random.default_rng(0)
    for batch in args.batch:
        m, total = 197 * batch, 0.0
        for name, k, n, act, residual in LAYERS:
            if name not in args.only.split(","):
                continue
            weights = [_vitc.gemm_pack_weight(kset, dtype, rng.standard_normal((n, k), dtype=np.float32) * 0.05)
                       for _ in range(args.layers)]
            a = rng.standard_normal((m, k), dtype=np.float32)
            out = np.zeros((m, n), np.float32)
            bias = rng.standard_normal(n, dtype=np.float32)
            workspace = np.empty(_vitc.gemm_workspace_bytes(kset, dtype, m, k), np.uint8)
            code = 0 if args.no_act or act == "none" else _vitc.ACT_CODES[act]
            t = sweep_ms(kset, args.threads, a, weights, out, bias, code, residual, workspace, args.rounds)
            flop = 2.0 * m * n * k * args.layers
            print(f"batch {batch} {name:5s} best {t.min():8.2f} ms  median {np.median(t):8.2f} ms  "
                  f"{flop / t.min() / 1e9:5.2f} TFLOP/s", flush=True)
            total += t.min()
        print(f"batch {batch} sum of bests {total:.2f} ms ({total / batch:.2f} per image)")


if __name__ == "__main__":
    main()
