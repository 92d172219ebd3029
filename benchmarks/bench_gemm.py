"""vitc SGEMM vs numpy/OpenBLAS on the ViT-B/16 Linear shapes, alternating in one process.

    PYTHONPATH=. python benchmarks/bench_gemm.py --threads 1 2 --batch 1 8
    PYTHONPATH=. python benchmarks/bench_gemm.py --dtype bfloat16   # or int8: vs vitc float32, % of peak

--dtype bfloat16 / int8 times vitc's reduced-precision GEMM (gemm_packed: the per-call A conversion
included) against vitc float32 on the same shapes, alternating the same way, and reports its efficiency
against the nominal peak — 2× (bf16) or 4× (int8) the float32 FMA peak, the ratios of vdpbf16ps /
vpdpbusd to vfmadd231ps on Zen 4 — and against the measured peak of the instruction itself
(benchmarks/peak_probe.c, compiled here with the system C compiler, one thread, scaled by the thread count).

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


CLOCK = {"nthreads": 1, "cpu": False}


def time_once(fn):
    """Wall seconds of fn(); with --clock cpu and one thread, the calling thread's CPU seconds instead (on a
    shared machine that counts only the time this thread ran; with more threads, wall time either way:
    their CPU time says nothing about how long the call took)."""
    clock = time.thread_time if CLOCK["cpu"] and CLOCK["nthreads"] == 1 else time.perf_counter
    t = clock()
    fn()
    return clock() - t


def measure_peaks(log=print):
    """GFLOP/s (GOP/s) of one thread at float32 FMA, vdpbf16ps and vpdpbusd, best of 5 thread-CPU-time runs;
    {} when the probe cannot be built or the CPU lacks AVX-512."""
    import ctypes
    import subprocess
    import tempfile
    here = os.path.dirname(os.path.abspath(__file__))
    if not _vitc.kernel_set_supported(_vitc.kernel_set_code("avx512")):
        return {}
    lib = os.path.join(tempfile.mkdtemp(prefix="vitc-peak-"), "peak_probe.so")
    try:
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-mavx512f", "-shared", "-fPIC",
                        os.path.join(here, "peak_probe.c"), "-o", lib], check=True, capture_output=True)
        probe = ctypes.CDLL(lib)
    except (OSError, subprocess.CalledProcessError) as e:
        log(f"peak probe unavailable ({e}); efficiencies not reported")
        return {}
    peaks = {}
    for key, name, kset in (("f32", "vitc_probe_fma_f32", "avx512"), ("bf16", "vitc_probe_dpbf16", "avx512_bf16"),
                            ("int8", "vitc_probe_dpbusd", "avx512_vnni")):
        if not _vitc.kernel_set_supported(_vitc.kernel_set_code(kset)):
            continue
        fn = getattr(probe, name)
        fn.restype, fn.argtypes = ctypes.c_double, [ctypes.c_int64]
        best = 0.0
        for _ in range(5):
            t = time.thread_time()
            ops = fn(2_000_000)
            best = max(best, ops / max(time.thread_time() - t, 1e-9) / 1e9)
        peaks[key] = best
    return peaks


def time_blocks(fns, rounds, block, pause):
    """Alternate the callables in `fns` block by block; per callable the list of timed calls."""
    times = [[] for _ in fns]
    for _ in range(rounds):
        for fn, ts in zip(fns, times):
            time.sleep(pause)  # let the other library's threads go idle
            fn()  # wake-up call, not counted
            ts += [time_once(fn) for _ in range(block)]
    return times


def time_alternating(fns, args):
    """Warm each of `fns` twice, size blocks by the first (~0.2 s, 3..20 calls), then time_blocks: per callable
    the timed calls, over --repeats calls (default 5 rounds)."""
    for _ in range(2):  # warm caches, thread pools, page tables
        for fn in fns:
            fn()
    block = max(3, min(20, int(0.2 / max(time_once(fns[0]), 1e-4))))
    rounds = max(1, args.repeats // block) if args.repeats else 5
    return time_blocks(fns, rounds, block, args.pause)


def shape_operands(batches):
    """(m, k, n, what, A [m, k], W [n, k], flop) for each batch and ViT-B/16 Linear shape, m = 197·batch:
    random float32 operands from one fixed-seed generator."""
    rng = np.random.default_rng(0)
    for batch in batches:
        m = 197 * batch
        for k, n, what in SHAPES:
            a = rng.standard_normal((m, k), dtype=np.float32)
            w = rng.standard_normal((n, k), dtype=np.float32)
            yield m, k, n, what, a, w, 2.0 * m * n * k


def thread_counts(threads):
    """Each of --threads in turn, with time_once's clock set for it."""
    for nthreads in threads:
        CLOCK["nthreads"] = nthreads
        yield nthreads


def main_lowp(args):
    """--dtype bfloat16 / int8: vitc's reduced-precision GEMM vs vitc float32, and % of peak."""
    dtype = _vitc.dtype_code(args.dtype)
    kset = _vitc.kernel_set_code(args.kernel_set) if args.kernel_set else _vitc.kernel_sets(dtype)[-1]
    isa = runtime.isa_code(args.isa)
    peaks = measure_peaks()
    nominal = peaks.get("f32", 0.0) * (2 if dtype == 1 else 4)
    # the instruction the kernel set multiplies with: vdpbf16ps / vpdpbusd, or float32 FMA for bf16 widened
    # at packing (avx512 / avx2 / scalar); no probe for vpmaddwd
    insn = {"avx512_bf16": peaks.get("bf16", 0.0), "avx512_vnni": peaks.get("int8", 0.0)}.get(
        _vitc.KERNEL_SETS[kset], peaks.get("f32", 0.0) if dtype == 1 else 0.0)
    print(f"vitc {args.dtype} on kernel set {_vitc.KERNEL_SETS[kset]} vs float32 on {_vitc.ISA_NAMES[isa]}; "
          f"one-thread peaks GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
    print(f"{'shape':>28} {'thr':>3} {args.dtype[:4] + ' GF/s':>10} {'best':>6} {'f32 GF/s':>9} {'ratio':>6} "
          f"{'%nominal':>8} {'%insn':>6} {'spread':>6}")
    for m, k, n, what, a, w, flop in shape_operands(args.batch):
        pw = _vitc.gemm_pack_weight(kset, dtype, w)
        ws = np.empty(max(_vitc.gemm_workspace_bytes(kset, dtype, m, k), 1), np.uint8)
        packed = _vitc.gemm_pack_nk(isa, w)
        c_low = np.empty((m, n), dtype=np.float32)
        c_f32 = np.empty((m, n), dtype=np.float32)
        for nthreads in thread_counts(args.threads):

            def run_low():
                _vitc.gemm_packed(kset, nthreads, a, pw, c_low, workspace=ws)

            def run_f32():
                _vitc.gemm(isa, nthreads, a, packed, n, c_f32)

            tl, tf = time_alternating((run_low, run_f32), args)
            stat = np.median if args.stat == "median" else np.min
            gl, gf, best = flop / stat(tl) / 1e9, flop / stat(tf) / 1e9, flop / np.min(tl) / 1e9
            q1, q3 = np.percentile(tl, [25, 75])
            pct = lambda peak: f"{100 * gl / (peak * nthreads):.0f}%" if peak else "-"  # noqa: E731
            shape = f"{what} ({m}x{k})·({k}x{n})"
            print(f"{shape:>28} {nthreads:>3} {gl:>10.1f} {best:>6.0f} {gf:>9.1f} {gl / gf:>6.2f} "
                  f"{pct(nominal):>8} {pct(insn):>6} {(q3 - q1) / np.median(tl):>6.2f}", flush=True)
        err = np.abs(c_low - c_f32).max() / np.abs(c_f32).max()
        assert err < 5e-2, f"{args.dtype} and float32 disagree on {what}: max rel err {err}"
    print("spread: interquartile range / median of the reduced-precision call times (the machine's noise)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--isa", default=None, help="scalar | avx2 | avx512 (default: best)")
    ap.add_argument("--repeats", type=int, default=0, help="timed calls per library and row (default: 5 rounds)")
    ap.add_argument("--pause", type=float, default=0.25, help="seconds between blocks (threads go idle)")
    ap.add_argument("--stat", choices=["median", "min"], default="median",
                    help="min: best of the repeats (steadier than the median on a busy machine)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: thread CPU time for 1-thread rows (steadier than wall time on a busy machine)")
    ap.add_argument("--dtype", default="float32", help="float32 (vs numpy) | bfloat16 | int8 (vs vitc float32)")
    ap.add_argument("--kernel-set", default=None,
                    help="bf16/int8 kernel set (scalar | avx2 | avx512 | avx512_bf16 | avx512_vnni | amx; default: best)")
    args = ap.parse_args()
    CLOCK["cpu"] = args.clock == "cpu"
    if _vitc.dtype_code(args.dtype) != 0:
        return main_lowp(args)
    isa = runtime.isa_code(args.isa)
    blas = [(i.get("internal_api"), i.get("version"), i.get("architecture")) for i in threadpool_info()]
    print(f"vitc isa {_vitc.ISA_NAMES[isa]}; numpy {np.__version__} BLAS {blas}")
    print(f"{'shape':>28} {'thr':>3} {'vitc GF/s':>10} {'numpy GF/s':>11} {'ratio':>6}")
    ratios = []
    for m, k, n, what, a, w, flop in shape_operands(args.batch):
        wt = w.T
        packed = _vitc.gemm_pack_nk(isa, w)
        c_vitc = np.empty((m, n), dtype=np.float32)
        c_np = np.empty((m, n), dtype=np.float32)
        for nthreads in thread_counts(args.threads):
            with threadpool_limits(limits=nthreads, user_api="blas"):
                def run_vitc():
                    _vitc.gemm(isa, nthreads, a, packed, n, c_vitc)

                def run_np():
                    np.matmul(a, wt, out=c_np)

                tv, tn = time_alternating((run_vitc, run_np), args)
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
