"""The benchmark method: engines loaded side by side in one process, outputs checked against a reference
before any timing, then shuffled round-robin rounds with idle pauses, per (threads, batch) cell.

For each cell every engine runs --warmup times untimed; its output is compared with the reference's on the
same input (max|d|/max|ref| <= tol, else BenchmarkError: OUTPUTS DISAGREE; the output families.py names).
Then up to --rounds rounds: each engine once per round in a freshly shuffled order (so no engine always
follows the same one), a --gap-ms idle pause before each call so the previous engine's spinning worker threads
go to sleep first. After --min-rounds a cell stops when its next round would end past --cell-budget seconds.
"""
import gc
import os
import random
import sys
import time

import numpy as np

from . import engines as eng
from .checkpoint import Checkpoint
from .machine import estimated_peak, machine_info
from .stats import make_pixels, rel_err, summarize, top1_agreement

# max|d|/max|ref| allowed against the float32 reference, per dtype (bf16 keeps 8 mantissa bits; dynamic
# int8 quantizes every activation, which on random-weight models moves logits by some percent)
DEFAULT_TOL = {"float32": 1e-3, "bfloat16": 0.1, "int8": 0.3}


class BenchmarkError(RuntimeError):
    """The benchmark cannot go on (outputs disagree, nothing to run)."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def reference_name(names, dtype):
    """The engine every output is checked against: PyTorch float32 (transformers' own result; eager attention
    when it runs, else sdpa), else vitc. For bf16/int8 the reference is a float32 model loaded beside the timed
    ones."""
    if dtype == "float32":
        return next((n for n in ("torch-eager", "torch-sdpa") if n in names), names[0])
    return "vitc-float32"


def run_cell(engines, reference, batch, threads, ckpt, args, flops, peak):
    pixels = make_pixels(ckpt.input_shape(batch), args.seed)
    names = list(engines)
    for engine in engines.values():
        engine.prepare(batch)
    warm, outputs = {n: [] for n in names}, {}
    for _ in range(args.warmup):
        for name in names:
            t0 = time.perf_counter()
            out = engines[name].run(pixels)
            warm[name].append(time.perf_counter() - t0)
            outputs[name] = eng.as_array(out)
    ref_name = reference_name(names, args.dtype)
    ref = outputs[ref_name] if ref_name in outputs else eng.as_array(reference.run(pixels))
    errors = {n: rel_err(outputs[n], ref) for n in names}
    bad = {n: e for n, e in errors.items() if not e <= args.tol}
    if bad:
        raise BenchmarkError("OUTPUTS DISAGREE (%s, batch %d, threads %d): max|d|/max|ref| vs %s: %s > tol %g"
                             % (ckpt.output_name, batch, threads, ref_name,
                                ", ".join(f"{n} {e:.3g}" for n, e in bad.items()), args.tol))

    times = {n: [] for n in names}
    rng = random.Random(args.seed * 7919 + batch * 31 + threads)
    order = list(names)
    t_rounds, done = time.perf_counter(), 0
    for r in range(args.rounds):
        rng.shuffle(order)
        for name in order:
            if args.gap_ms:
                time.sleep(args.gap_ms / 1e3)
            t0 = time.perf_counter()
            engines[name].run(pixels)
            times[name].append(time.perf_counter() - t0)
        done, elapsed = r + 1, time.perf_counter() - t_rounds
        if args.cell_budget and done >= args.min_rounds and elapsed * (done + 1) / done > args.cell_budget:
            break

    results = {}
    for name in names:
        s = summarize(times[name])
        s["ms_per_image"] = s["median_ms"] / batch
        s["gflops"] = flops * batch / (s["median_ms"] / 1e3) / 1e9
        s["peak_fraction"] = s["gflops"] / peak["gflops"] if peak else None
        s["warmup_ms"] = [t * 1e3 for t in warm[name]]
        s["times_ms"] = [t * 1e3 for t in times[name]]
        s["rel_err"] = errors[name]
        s["top1_agreement"] = top1_agreement(outputs[name], ref)
        results[name] = s
    base = results.get("vitc")
    for s in results.values():
        s["time_over_vitc"] = s["median_ms"] / base["median_ms"] if base else None
    return {"batch": batch, "threads": threads, "reference": ref_name, "output_shape": list(ref.shape),
            "rounds": done, "results": results, "peak": peak, "reference_output": ref[:1] if batch == 1 else None}


def vitc_config():
    import vitc
    from ..runtime import config

    return {"version": vitc.__version__, "path": os.path.dirname(vitc.__file__), **config()}


def run(args, print_fn=print):
    """Run the benchmark described by args (see options.add_options); returns the report dict.

    Prints the header, each cell's table as it completes and the summary through print_fn."""
    from . import report as rep
    from .engines import OpenVinoEngine

    OpenVinoEngine.shape = args.ov_shape
    t_start = time.perf_counter()
    ckpt = Checkpoint(args.model, args.cache_dir, args.image_size)
    names, skipped = eng.pick_engines(args.engines, args.dtype)
    flops = ckpt.flops_per_image()
    machine = machine_info()
    report = {"model": args.model, "checkpoint": str(ckpt.folder), "architecture": ckpt.architecture,
              "output": ckpt.output_name, "image_size": list(ckpt.image_hw), "dtype": args.dtype,
              "flops_per_image": flops,
              "weight_bytes": ckpt.weight_bytes(), "machine": machine, "engines": names, "skipped": skipped,
              "modes": {n: eng.ENGINES[n].MODES[args.dtype] for n in names},
              "batch": args.batch, "threads": args.threads, "rounds": args.rounds, "min_rounds": args.min_rounds,
              "cell_budget_s": args.cell_budget, "warmup": args.warmup, "gap_ms": args.gap_ms, "tol": args.tol,
              "seed": args.seed, "ov_shape": args.ov_shape, "argv": sys.argv,
              "peak": {t: estimated_peak(args.dtype, t) for t in args.threads}, "vitc": vitc_config(),
              "engine_info": {}, "load_s": {}, "cells": []}
    print_fn(rep.header(report))
    if not names:
        raise BenchmarkError("no engine left to benchmark: " + "; ".join(f"{n}: {w}" for n, w in skipped.items()))
    needs_reference = args.dtype != "float32"
    batch1_ref = None
    for threads in args.threads:
        engines = {}
        for name in names:
            t0 = time.perf_counter()
            engines[name] = eng.ENGINES[name](ckpt, threads, args.dtype)
            report["load_s"].setdefault(name, {})[threads] = time.perf_counter() - t0
            log(f"[threads {threads}] loaded {name} ({report['modes'][name]}) in {time.perf_counter() - t0:.2f} s")
        reference = eng.VitcEngine(ckpt, threads) if needs_reference else None
        for batch in args.batch:
            gc.collect()
            t0 = time.perf_counter()
            cell = run_cell(engines, reference, batch, threads, ckpt, args, flops, report["peak"][threads])
            cell["wall_s"] = time.perf_counter() - t0
            out = cell.pop("reference_output")
            if out is not None:
                batch1_ref = out
            report["cells"].append(cell)
            print_fn(rep.cell_table(report, cell))
            for name, engine in engines.items():
                report["engine_info"].setdefault(name, {})[f"threads={threads},batch={batch}"] = engine.info()
        for engine in list(engines.values()) + ([reference] if reference else []):
            engine.close()
        del engines, reference
        gc.collect()

    if args.memory:
        from .memory import measure_children

        if batch1_ref is None:  # batch 1 was not timed: the children's reference is computed here
            ref_engine = eng.ENGINES[reference_name(names, "float32") if not needs_reference else "vitc"](
                ckpt, max(args.threads))
            ref_engine.prepare(1)
            batch1_ref = eng.as_array(ref_engine.run(make_pixels(ckpt.input_shape(1), args.seed)))
            ref_engine.close()
        report["memory"] = measure_children(args, ckpt, names, batch1_ref, log)
        print_fn(rep.memory_table(report))
        bad = {n: m["err_vs_reference"] for n, m in report["memory"].items() if not m["err_vs_reference"] <= args.tol}
        if bad:
            raise BenchmarkError(f"OUTPUTS DISAGREE in fresh processes ({ckpt.output_name}): {bad}")
    try:
        from threadpoolctl import threadpool_info

        report["threadpools"] = threadpool_info()
    except ImportError:
        pass
    report["total_wall_s"] = time.perf_counter() - t_start
    report["loadavg_end"] = list(os.getloadavg())
    print_fn(rep.summary_table(report))
    return report


def default_threads():
    from .machine import usable_cpus

    return sorted({1, usable_cpus()})


def finish_args(args):
    """Fill defaults that depend on others (tolerance per dtype, thread counts)."""
    if args.threads is None:
        args.threads = default_threads()
    if args.tol is None:
        args.tol = DEFAULT_TOL[args.dtype]
    args.warmup = max(1, args.warmup)
    args.min_rounds = min(args.min_rounds, args.rounds)
    return args

