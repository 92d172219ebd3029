"""Non-GEMM kernel timings per ISA (median of repeats, same process).

    python benchmarks/bench_ops.py [--threads N] [--repeat R]

LayerNorm 197x768, GELU (erf) over 197x3072, softmax 12x197x197, attention core for ViT-B/16 shapes
(seq 197, 12 heads, head_dim 64) at batch 1 and 8, as ms per layer (median, best) and GFLOP/s of the best
(4*seq^2*head_dim*heads*batch flop; ViT-B/16 has 12 such layers per image).
Then gelu_erf per element: over a whole buffer and in the GEMM's tile epilogue (DINOv2-S/14 batch 8's fc1,
[2056,384]·[384,1536] + bias, with and without GELU), for pre-activations ~N(0, 1) and ~N(0, 20²) (large
|x| once made subnormal results: microcode assists).
"""
import argparse
import time

import numpy as np

from vitc import _vitc, runtime  # the installed vitc, or this checkout with PYTHONPATH=.


def median_time(fn, repeat, min_time=0.2):
    return run_times(fn, repeat, min_time)[0]


def run_times(fn, repeat, min_time=0.2):
    """(median, best) seconds of fn over >= repeat calls and >= min_time: the best is the number to compare
    on a shared machine (other processes only ever add time), the median says how noisy it was."""
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < repeat or (time.perf_counter() - start < min_time and len(times) < 50 * repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=runtime.default_num_threads())
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    nt, rep = args.threads, args.repeat
    rng = np.random.default_rng(0)
    seq, heads, hd = 197, 12, 64
    dim = heads * hd
    x_ln = rng.standard_normal((seq, dim)).astype(np.float32)
    g, b = np.ones(dim, np.float32), np.zeros(dim, np.float32)
    y_ln = np.empty_like(x_ln)
    x_act = rng.standard_normal(seq * 4 * dim).astype(np.float32) * 3
    x_sm = rng.standard_normal((heads * seq, seq)).astype(np.float32) * 4
    qkv = {bt: rng.standard_normal((bt * seq, 3 * dim)).astype(np.float32) for bt in (1, 8)}
    out = {bt: np.empty((bt * seq, dim), np.float32) for bt in (1, 8)}

    print(f"vitc bench_ops: threads={nt} (LayerNorm, attention), thread pool={_vitc.threads_enabled()}")
    print(f"{'isa':7s} {'layernorm 197x768':>18s} {'gelu 197x3072':>16s} {'softmax 12x197x197':>19s} "
          f"{'attn b=1 med/best':>27s} {'attn b=8 med/best':>27s}")
    for name in runtime.available_isas():
        isa = runtime.isa_code(name)
        t_ln = median_time(lambda: _vitc.layernorm(isa, nt, x_ln, g, b, 1e-12, y_ln), rep)
        buf = x_act.copy()

        def gelu():
            buf[:] = x_act
            _vitc.activation(isa, 1, buf)
        t_copy = median_time(lambda: buf.__setitem__(slice(None), x_act), rep)
        t_gelu = max(median_time(gelu, rep) - t_copy, 1e-9)
        sm = x_sm.copy()
        t_sm = median_time(lambda: _vitc.softmax_rows(isa, sm, 0.125), rep)  # values stay finite
        cells = []
        for bt in (1, 8):
            t, best = run_times(lambda: _vitc.attention(isa, nt, qkv[bt], bt, heads, out[bt]), max(3, rep // 2))
            gflops = 4 * seq * seq * hd * heads * bt / best / 1e9
            cells.append(f"{t * 1e3:7.2f} {best * 1e3:7.2f} ms {gflops:5.1f} GF/s")
        print(f"{name:7s} {t_ln * 1e6:15.1f} us {t_gelu * 1e6:13.1f} us "
              f"({x_act.size / t_gelu / 1e9:4.2f} Gelem/s) {t_sm * 1e6:9.1f} us {cells[0]:>27s} {cells[1]:>27s}")

    gelu_cost(nt, rep, rng)


def gelu_cost(nt, rep, rng):
    m, k, n = 2056, 384, 1536
    a = rng.standard_normal((m, k)).astype(np.float32)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    bias = (rng.standard_normal(n) * 0.1).astype(np.float32)
    out = np.empty((m, n), np.float32)
    gelu = _vitc.ACT_CODES["gelu_erf"]
    print(f"\ngelu_erf, thread-ns per element (best of runs): whole buffer {m}x{n}; in fc1's epilogue "
          f"[{m},{k}]·[{k},{n}] on {nt} thread(s), = (fc1 + bias + GELU) - (fc1 + bias)")
    for name in runtime.available_isas():
        isa = runtime.isa_code(name)
        packed = _vitc.gemm_pack_kn(isa, w)
        cells = []
        for sigma in (1.0, 20.0):
            x = (rng.standard_normal((m, n)) * sigma).astype(np.float32)
            buf = x.reshape(-1).copy()
            t_copy = run_times(lambda: buf.__setitem__(slice(None), x.reshape(-1)), rep)[1]
            t_act = run_times(lambda: (buf.__setitem__(slice(None), x.reshape(-1)),
                                       _vitc.activation(isa, gelu, buf)), rep)[1] - t_copy
            ws = packed if sigma == 1.0 else _vitc.gemm_pack_kn(isa, w * sigma)
            t_fc1 = run_times(lambda: _vitc.gemm(isa, nt, a, ws, n, out, bias=bias), rep)[1]
            t_fc1_gelu = run_times(lambda: _vitc.gemm(isa, nt, a, ws, n, out, bias=bias, act=gelu), rep)[1]
            cells.append(f"sigma {sigma:4.0f}: buffer {t_act / x.size * 1e9:5.2f}  epilogue "
                         f"{(t_fc1_gelu - t_fc1) / x.size * 1e9 * nt:5.2f} (fc1 {t_fc1 * 1e3:6.2f} ms)")
        print(f"{name:7s} " + " | ".join(cells))


if __name__ == "__main__":
    main()
