"""vitc SGEMM vs numpy/OpenBLAS on the ViT-B/16 Linear shapes, alternating in one process.

    python benchmarks/bench_gemm.py --threads 1 2 --batch 1 8

For each shape (M×K)·(K×N), M = 197·batch: C = A·Wᵀ with W [N, K] (Linear layout), vitc with W packed
once (pack_nk), numpy as np.matmul(A, W.T, out=C) on preallocated float32 arrays.

Timing alternates between the two libraries in rounds of short blocks of back-to-back calls (the steady
state of a model's forward pass), with a pause between blocks: OpenBLAS's idle threads keep spinning for
~0.1 s after a call and the OpenMP ones for a while too, so a vitc call right after a numpy call (or the
reverse) would run against the other library's spinning thread for the second core. The first call of
each block (thread wake-up) is not counted; the table shows the median (or, with --stat min, best)
GFLOP/s of each and their ratio.
"""
import argparse
import os
import sys
import time

# OpenBLAS must pick its own kernel and cache sizes: drop overrides before numpy is imported.
_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
if any(v in os.environ for v in _OVERRIDES):
    env = {k: v for k, v in os.environ.items() if k not in _OVERRIDES}
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from vitc import _vitc, runtime  # noqa: E402

SHAPES = [  # (K, N, what)
    (768, 2304, "qkv"),
    (768, 768, "proj"),
    (768, 3072, "fc1"),
    (3072, 768, "fc2"),
]


def time_once(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--isa", default=None, help="scalar | avx2 | avx512 (default: best)")
    ap.add_argument("--repeats", type=int, default=0, help="timed calls per library and row (default: 5 rounds)")
    ap.add_argument("--pause", type=float, default=0.25, help="seconds between blocks (threads go idle)")
    ap.add_argument("--stat", choices=["median", "min"], default="median",
                    help="min: best of the repeats (steadier than the median on a busy machine)")
    args = ap.parse_args()
    isa = runtime.isa_code(args.isa)
    blas = [(i.get("internal_api"), i.get("version"), i.get("architecture")) for i in threadpool_info()]
    print(f"vitc isa {_vitc.ISA_NAMES[isa]}; numpy {np.__version__} BLAS {blas}")
    print(f"{'shape':>28} {'thr':>3} {'vitc GF/s':>10} {'numpy GF/s':>11} {'ratio':>6}")
    rng = np.random.default_rng(0)
    ratios = []
    for batch in args.batch:
        m = 197 * batch
        for k, n, what in SHAPES:
            a = rng.standard_normal((m, k), dtype=np.float32)
            w = rng.standard_normal((n, k), dtype=np.float32)
            wt = w.T
            packed = _vitc.gemm_pack_nk(isa, w)
            c_vitc = np.empty((m, n), dtype=np.float32)
            c_np = np.empty((m, n), dtype=np.float32)
            flop = 2.0 * m * n * k
            for nthreads in args.threads:
                with threadpool_limits(limits=nthreads, user_api="blas"):
                    def run_vitc():
                        _vitc.gemm(isa, nthreads, a, packed, n, c_vitc)

                    def run_np():
                        np.matmul(a, wt, out=c_np)

                    for _ in range(2):  # warm caches, thread pools, page tables
                        run_vitc()
                        run_np()
                    block = max(3, min(20, int(0.2 / max(time_once(run_vitc), 1e-4))))
                    rounds = max(1, args.repeats // block) if args.repeats else 5
                    tv, tn = [], []
                    for _ in range(rounds):
                        for fn, times in ((run_vitc, tv), (run_np, tn)):
                            time.sleep(args.pause)  # let the other library's threads go idle
                            fn()  # wake-up call, not counted
                            times += [time_once(fn) for _ in range(block)]
                    stat = np.median if args.stat == "median" else np.min
                    gv, gn = flop / stat(tv) / 1e9, flop / stat(tn) / 1e9
                    ratios.append(gv / gn)
                    shape = f"{what} ({m}x{k})·({k}x{n})"
                    print(f"{shape:>28} {nthreads:>3} {gv:>10.1f} {gn:>11.1f} {gv / gn:>6.2f}", flush=True)
            err = np.abs(c_vitc - c_np).max() / np.abs(c_np).max()
            assert err < 1e-4, f"vitc and numpy disagree on {what}: max rel err {err}"
    print(f"geometric mean ratio vitc/numpy: {np.exp(np.mean(np.log(ratios))):.3f}")


if __name__ == "__main__":
    main()
