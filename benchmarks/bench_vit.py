"""End-to-end ViT float32 inference: vitc vs PyTorch eager (transformers, eager and sdpa attention),
ONNX Runtime and OpenVINO, side by side in one process.

    python benchmarks/bench_vit.py --model b16 --batch 1 8 --threads 1 2 --json out.json --markdown

For each (threads, batch) cell every engine is warmed up, checked against torch eager on the same input
(max|d|/max|ref| <= --tol or the run stops), then timed in --rounds round-robin rounds (each engine once per
round, rotating the order) so machine noise hits all engines alike. Afterwards one fresh subprocess per
engine imports it, loads the checkpoint and returns batch-1 logits: cold-start wall time and peak RSS.
See benchmarks/README.md.
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import time

import numpy as np

import common
from peers import ENGINES, GROUPS, NEEDS_ONNX, expand_peers, import_vitc, vitc_config

CHILD_TAG = "VITC_BENCH_CHILD "
MIB = 1024 * 1024


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="b16", choices=sorted(common.MODEL_SPECS),
                   help="b16 = google/vit-base-patch16-224 shapes; s16 / ti16 for quick runs (default b16)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="thread counts to compare (default: 1 and all usable CPUs)")
    p.add_argument("--peers", nargs="+", default=["vitc", "torch", "onnxruntime", "openvino"],
                   help=f"engines: {', '.join(ENGINES)}; groups: "
                        + ", ".join(f"{g}={'+'.join(e)}" for g, e in GROUPS.items()))
    p.add_argument("--rounds", type=int, default=10, help="timed round-robin rounds per cell, at most (default 10)")
    p.add_argument("--min-rounds", type=int, default=3, help="rounds per cell even past --cell-budget (default 3)")
    p.add_argument("--cell-budget", type=float, default=90.0, metavar="SECONDS",
                   help="stop a cell's rounds (after --min-rounds) when the next round would end past this many "
                        "seconds; 0 = always --rounds (default 90: keeps b16 batch 8 cells bounded)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per engine per cell (min 1, default 1)")
    p.add_argument("--gap-ms", type=float, default=10.0,
                   help="idle pause before each timed call so the previous engine's spinning threads sleep")
    p.add_argument("--tol", type=float, default=1e-3, help="max allowed max|d|/max|ref| vs torch eager")
    p.add_argument("--seed", type=int, default=0, help="checkpoint and input seed")
    p.add_argument("--cache-dir", default=str(common.DEFAULT_CACHE),
                   help="checkpoint + ONNX cache (default ~/.cache/vitc-bench or $VITC_BENCH_CACHE)")
    p.add_argument("--ov-shape", choices=["static", "dynamic"], default="static",
                   help="OpenVINO: compile per batch size (static, default) or once with a dynamic batch")
    p.add_argument("--no-memory", action="store_true", help="skip the per-engine RSS / cold-start subprocesses")
    p.add_argument("--json", metavar="PATH", help="write every number and setting here")
    p.add_argument("--markdown", action="store_true", help="also print README-ready markdown tables")
    p.add_argument("--child", nargs=2, metavar=("KIND", "ENGINE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = sorted({1, common.machine_info()["usable_cpus"] or 1})
    if min(args.batch) < 1 or min(args.threads) < 1 or args.rounds < 1 or args.min_rounds < 1:
        p.error("--batch, --threads, --rounds and --min-rounds must be positive")
    args.warmup = max(1, args.warmup)
    return args


# ---------------------------------------------------------------- child: cold start + peak RSS

def run_child(args):
    kind, name = args.child
    if kind != "cold-start" or name not in ENGINES:
        raise SystemExit(f"--child expects: cold-start <{'|'.join(ENGINES)}>, got {kind} {name}")
    spec = common.model_spec(args.model)
    folder = common.checkpoint_dir(args.model, args.cache_dir)
    onnx_file = common.onnx_path(args.model, args.cache_dir)
    threads = max(args.threads)
    cls = ENGINES[name]
    t0 = time.perf_counter()
    cls.imports()
    t1 = time.perf_counter()
    rss_import = common.peak_rss_bytes()
    engine = cls(folder, onnx_file, threads)
    engine.prepare(1)
    t2 = time.perf_counter()
    logits = np.array(engine.run(common.make_pixels(1, spec, args.seed)), dtype=np.float32)
    t3 = time.perf_counter()
    done_epoch = time.time()
    print(CHILD_TAG + json.dumps({
        "engine": name, "threads": threads, "import_s": t1 - t0, "load_s": t2 - t1, "first_run_s": t3 - t2,
        "done_epoch": done_epoch, "peak_rss_after_import": rss_import, "peak_rss": common.peak_rss_bytes(),
        "vm_hwm": common.vm_hwm_bytes(),
        "logits": logits.ravel().tolist()}), flush=True)
    return 0


def measure_children(args, names, reference_logits):
    """One fresh process per engine; wall time is from spawn to the child holding its first logits."""
    out = {}
    for name in names:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "cold-start", name, "--model", args.model,
               "--threads", str(max(args.threads)), "--cache-dir", args.cache_dir, "--seed", str(args.seed),
               "--ov-shape", args.ov_shape]
        log(f"[memory] fresh process: {name}")
        t0 = time.time()
        # Through a shell that FORKS the child: Linux carries ru_maxrss across execve, so a child exec'd
        # straight from this (big) process would report our peak RSS as its own.
        proc = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", *cmd],
                              capture_output=True, text=True, timeout=900)
        process_s = time.time() - t0
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(CHILD_TAG)]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"child for {name} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
        res = json.loads(lines[-1][len(CHILD_TAG):])
        logits = np.asarray(res.pop("logits"), dtype=np.float32).reshape(reference_logits.shape)
        res["err_vs_reference"] = common.rel_err(logits, reference_logits)
        res["wall_to_logits_s"] = res.pop("done_epoch") - t0
        res["process_s"] = process_s
        if res["vm_hwm"] and res["peak_rss"] > 1.05 * res["vm_hwm"] + 4 * MIB:
            log(f"WARNING {name}: ru_maxrss {res['peak_rss'] / MIB:.0f} MiB > VmHWM {res['vm_hwm'] / MIB:.0f} MiB "
                f"(peak inherited from the launcher?)")
        out[name] = res
    return out


# ---------------------------------------------------------------- in-process round-robin timing

def reference_engine(names):
    return "torch-eager" if "torch-eager" in names else names[0]


def run_cell(engines, batch, threads, args, spec, flops):
    pixels = common.make_pixels(batch, spec, args.seed)
    names = list(engines)
    for engine in engines.values():
        engine.prepare(batch)
    warm = {n: [] for n in names}
    outputs = {}
    for _ in range(args.warmup):
        for name in names:
            t0 = time.perf_counter()
            out = engines[name].run(pixels)
            warm[name].append(time.perf_counter() - t0)
            outputs[name] = np.array(out, dtype=np.float32, copy=True)
    ref = reference_engine(names)
    errors = {n: common.rel_err(outputs[n], outputs[ref]) for n in names}
    top1 = {n: float(np.mean(outputs[n].argmax(-1) == outputs[ref].argmax(-1))) for n in names}
    bad = {n: e for n, e in errors.items() if not e <= args.tol}
    if bad:
        raise SystemExit("LOGITS DISAGREE (batch %d, threads %d): max|d|/max|ref| vs %s: %s > tol %g"
                         % (batch, threads, ref, ", ".join(f"{n} {e:.3g}" for n, e in bad.items()), args.tol))

    times = {n: [] for n in names}
    gap = args.gap_ms / 1e3
    t_rounds = time.perf_counter()
    for r in range(args.rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:  # rotate so no engine always follows the same one
            if gap:
                time.sleep(gap)
            t0 = time.perf_counter()
            engines[name].run(pixels)
            times[name].append(time.perf_counter() - t0)
        done, elapsed = r + 1, time.perf_counter() - t_rounds
        if args.cell_budget and done >= args.min_rounds and elapsed * (done + 1) / done > args.cell_budget:
            break

    results = {}
    for name in names:
        s = common.summarize(times[name])
        s["ms_per_image"] = s["median_ms"] / batch
        s["gflops"] = flops * batch / (s["median_ms"] / 1e3) / 1e9
        s["warmup_ms"] = [t * 1e3 for t in warm[name]]
        s["times_ms"] = [t * 1e3 for t in times[name]]
        s["rel_err"] = errors[name]  # max|d|/max|ref| vs the cell's "reference" engine
        s["top1_agreement"] = top1[name]
        results[name] = s
    base = results.get("vitc")
    for name, s in results.items():
        s["time_over_vitc"] = s["median_ms"] / base["median_ms"] if base else None
    return {"batch": batch, "threads": threads, "reference": ref, "rounds": done, "results": results,
            "reference_logits": outputs[ref],
            "vitc_over_openvino": (base["median_ms"] / results["openvino"]["median_ms"]
                                   if base and "openvino" in results else None)}


# ---------------------------------------------------------------- output

def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def cell_table(cell, args, flops):
    batch, ref = cell["batch"], cell["reference"]
    lines = [f"\n== {args.model}  batch {batch}  threads {cell['threads']}  "
             f"({flops * batch / 1e9:.2f} GFLOP per call, median of {cell['rounds']} rounds) ==",
             f"{'engine':<12} {'median ms':>10} {'ms/img':>9} {'GFLOP/s':>8} {'min ms':>9} {'spread':>7} "
             f"{'time/vitc':>9}  {'max|d|/max|ref| vs ' + ref}"]
    for name, s in cell["results"].items():
        lines.append(f"{name:<12} {s['median_ms']:>10.2f} {s['ms_per_image']:>9.2f} {s['gflops']:>8.1f} "
                     f"{s['min_ms']:>9.2f} {s['spread']:>6.1%} {fmt(s['time_over_vitc'], '>9.2f')}  "
                     f"{s['rel_err']:.2e}")
    if cell["vitc_over_openvino"] is not None:
        ratio = cell["vitc_over_openvino"]
        lines.append(f"vitc / openvino time: {ratio:.3f} ({'vitc faster' if ratio < 1 else 'openvino faster'})")
    return "\n".join(lines)


def summary_table(report):
    """ms/image of every engine in every cell, and time / vitc where vitc ran."""
    cells = report["cells"]
    cols = [f"b{c['batch']}/t{c['threads']}" for c in cells]
    lines = ["\n== summary: median ms per image (time / vitc) ==",
             f"{'engine':<12} " + " ".join(f"{c:>16}" for c in cols)]
    for name in report["engines"]:
        row = []
        for c in cells:
            s = c["results"][name]
            ratio = f" ({s['time_over_vitc']:.2f})" if s["time_over_vitc"] is not None else ""
            row.append(f"{s['ms_per_image']:.1f}{ratio}".rjust(16))
        lines.append(f"{name:<12} " + " ".join(row))
    return "\n".join(lines)


def memory_table(memory, weight_bytes, args):
    threads = max(args.threads)
    lines = [f"\n== fresh process per engine: import, load {args.model}, run batch 1 once "
             f"(threads {threads}; float32 weights {weight_bytes / MIB:.1f} MiB) ==",
             f"{'engine':<12} {'peak RSS MiB':>12} {'RSS/weights':>11} {'after import':>12} {'import s':>9} "
             f"{'load s':>7} {'1st run s':>9} {'to logits s':>11} {'err':>9}"]
    for name, m in memory.items():
        lines.append(f"{name:<12} {m['peak_rss'] / MIB:>12.1f} {m['peak_rss'] / weight_bytes:>11.2f} "
                     f"{m['peak_rss_after_import'] / MIB:>12.1f} {m['import_s']:>9.2f} {m['load_s']:>7.2f} "
                     f"{m['first_run_s']:>9.2f} {m['wall_to_logits_s']:>11.2f} {m['err_vs_reference']:>9.2e}")
    if "vitc" in memory:
        v = memory["vitc"]["wall_to_logits_s"]
        for name in ("torch-eager", "torch-sdpa"):
            if name in memory:
                lines.append(f"cold start {name} / vitc: {memory[name]['wall_to_logits_s'] / v:.2f}x")
    return "\n".join(lines)


def markdown(report):
    md = ["| batch | threads | engine | median ms | ms/image | GFLOP/s | time / vitc |",
          "|---:|---:|---|---:|---:|---:|---:|"]
    for cell in report["cells"]:
        for name, s in cell["results"].items():
            md.append(f"| {cell['batch']} | {cell['threads']} | {name} | {s['median_ms']:.2f} | "
                      f"{s['ms_per_image']:.2f} | {s['gflops']:.1f} | {fmt(s['time_over_vitc'], '.2f')} |")
    if report.get("memory"):
        wb = report["weight_bytes"]
        md += ["", "| engine | peak RSS MiB | RSS / f32 weights | cold start s (spawn to logits) |",
               "|---|---:|---:|---:|"]
        for name, m in report["memory"].items():
            md.append(f"| {name} | {m['peak_rss'] / MIB:.0f} | {m['peak_rss'] / wb:.2f} | "
                      f"{m['wall_to_logits_s']:.2f} |")
    m = report["machine"]
    md += ["", f"{report['model']} float32, {m['cpu']} ({m['usable_cpus']} CPUs), "
               f"median of {'/'.join(sorted({str(c['rounds']) for c in report['cells']}))} round-robin rounds; "
               + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
               + (f", vitc {report['vitc']['version']} ({report['vitc'].get('isa')})"
                  if report.get("vitc_available") else "")]
    return "\n".join(md)


def header(machine, vitc_cfg, vitc_why, args, names, spec, flops):
    v = machine["versions"]
    lines = ["vitc ViT benchmark",
             f"model     {args.model}: hidden {spec['hidden_size']}, {spec['num_hidden_layers']} layers, "
             f"{spec['num_attention_heads']} heads, MLP {spec['intermediate_size']}, image {spec['image_size']}, "
             f"patch {spec['patch_size']}, {spec['num_labels']} labels; {flops / 1e9:.2f} GFLOP/image (2*MACs)",
             f"cpu       {machine['cpu']}; {machine['logical_cpus']} logical CPUs, {machine['usable_cpus']} usable, "
             f"{machine['memory_bytes'] / 2**30:.0f} GiB RAM; "
             f"{' '.join(machine['cpu_flags'])}",
             f"software  python {machine['python']}, " + ", ".join(f"{k} {v[k]}" for k in v if v[k]),
             "vitc      " + (f"{vitc_cfg.get('version')} from {os.path.dirname(vitc_cfg.get('path', ''))}; "
                             f"isa {vitc_cfg.get('isa')} (available {', '.join(vitc_cfg.get('isa_available', []))}), "
                             f"thread pool {vitc_cfg.get('thread_pool')}"
                             if "error" not in vitc_cfg else vitc_cfg["error"]),
             f"load      {' '.join(f'{x:.2f}' for x in machine['loadavg'])} (1/5/15 min load average; "
             f"{machine['usable_cpus']} CPUs: above that, other processes share them and numbers get noisy)",
             f"run       engines {', '.join(names)}; batch {args.batch}; threads {args.threads}; "
             f"{args.warmup} warm-up + {args.min_rounds}..{args.rounds} rounds (cell budget {args.cell_budget:g} s); "
             f"gap {args.gap_ms:g} ms; OpenVINO {args.ov_shape} shapes"]
    if machine["env"]:
        lines.append("env       " + " ".join(f"{k}={val}" for k, val in machine["env"].items()))
    if vitc_why:
        lines.append(f"\n*** vitc UNAVAILABLE: {vitc_why}\n*** benchmarking the peers only; "
                     f"time/vitc ratios are empty.")
    return "\n".join(lines)


# ---------------------------------------------------------------- main

def main(argv=None):
    args = parse_args(argv)
    from peers import OpenVinoEngine

    OpenVinoEngine.shape = args.ov_shape
    if args.child:
        return run_child(args)
    t_start = time.perf_counter()
    names = expand_peers(args.peers)
    vitc_why = None
    if "vitc" in names:
        vitc_mod, vitc_why = import_vitc()
        if vitc_mod is None:
            names.remove("vitc")
    if not names:
        raise SystemExit("no engine left to benchmark")
    spec = common.model_spec(args.model)
    flops = common.flops_per_image(spec)
    machine = common.machine_info()
    vitc_cfg = vitc_config()
    print(header(machine, vitc_cfg, vitc_why, args, names, spec, flops), flush=True)

    folder = common.build_checkpoint(args.model, args.cache_dir, args.seed, log=log)
    onnx_file = common.export_onnx(args.model, args.cache_dir, log=log) if NEEDS_ONNX & set(names) else None
    weight_bytes = common.weight_bytes(folder)
    print(f"checkpoint {folder} ({weight_bytes / MIB:.1f} MiB float32 weights)"
          + (f"; onnx {onnx_file}" if onnx_file else ""), flush=True)

    report = {"model": args.model, "spec": spec, "flops_per_image": flops, "weight_bytes": weight_bytes,
              "machine": machine, "vitc": vitc_cfg, "vitc_available": vitc_why is None and "vitc" in names,
              "vitc_unavailable_reason": vitc_why, "engines": names, "batch": args.batch,
              "threads": args.threads, "rounds": args.rounds, "min_rounds": args.min_rounds,
              "cell_budget_s": args.cell_budget, "warmup": args.warmup, "gap_ms": args.gap_ms,
              "tol": args.tol, "seed": args.seed, "ov_shape": args.ov_shape, "argv": sys.argv,
              "checkpoint": str(folder), "onnx": str(onnx_file) if onnx_file else None,
              "engine_info": {}, "load_s": {}, "cells": []}
    batch1_reference = None
    for threads in args.threads:
        engines = {}
        for name in names:
            t0 = time.perf_counter()
            engines[name] = ENGINES[name](folder, onnx_file, threads)
            report["load_s"].setdefault(name, {})[threads] = time.perf_counter() - t0
            log(f"[threads {threads}] loaded {name} in {time.perf_counter() - t0:.2f} s")
        for batch in args.batch:
            gc.collect()
            t0 = time.perf_counter()
            cell = run_cell(engines, batch, threads, args, spec, flops)
            cell["wall_s"] = time.perf_counter() - t0
            logits = cell.pop("reference_logits")
            if batch == 1:
                batch1_reference = logits  # what the fresh-process children get compared with
            report["cells"].append(cell)
            print(cell_table(cell, args, flops), flush=True)
            for name, engine in engines.items():
                report["engine_info"].setdefault(name, {})[f"threads={threads},batch={batch}"] = engine.info()
        for engine in engines.values():
            engine.close()
        del engines
        gc.collect()

    if not args.no_memory:
        ref_name = reference_engine(names)
        if batch1_reference is None:  # batch 1 was not benchmarked: compute the children's reference here
            ref_engine = ENGINES[ref_name](folder, onnx_file, max(args.threads))
            ref_engine.prepare(1)
            batch1_reference = np.array(ref_engine.run(common.make_pixels(1, spec, args.seed)), dtype=np.float32)
            ref_engine.close()
            del ref_engine
        report["memory"] = measure_children(args, names, batch1_reference)
        print(memory_table(report["memory"], weight_bytes, args), flush=True)
        bad = {n: m["err_vs_reference"] for n, m in report["memory"].items() if not m["err_vs_reference"] <= args.tol}
        if bad:
            raise SystemExit(f"LOGITS DISAGREE in fresh processes vs {ref_name}: {bad}")

    try:
        from threadpoolctl import threadpool_info

        report["threadpools"] = threadpool_info()
    except ImportError:
        pass
    print(summary_table(report), flush=True)
    report["total_wall_s"] = time.perf_counter() - t_start
    report["loadavg_end"] = list(os.getloadavg())
    print(f"\ntotal wall time {report['total_wall_s']:.0f} s; load average at the end "
          + " ".join(f"{x:.2f}" for x in report["loadavg_end"]), flush=True)
    if args.markdown:
        print("\n" + markdown(report), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
