"""Peak RSS and cold start of vitc at each dtype: a ViT-B/16-shaped random checkpoint loaded in a fresh process
(import, load, one image), converting from the float32 checkpoint and loading the folder save_pretrained
wrote for bf16 / int8.

    python benchmarks/bench_memory.py [--model b16] [--threads 2] [--repeats 3] [--json out.json]

Each row is `--repeats` fresh processes (vitc.bench.memory's child, the one `vitc bench --memory` runs);
peak RSS is the child's ru_maxrss (the median over repeats), wall is spawn -> logits. The page cache is warm
for every file (each was just written or read), so the cold start is the process's own work. Issue 9's goals:
peak RSS <= 0.60x (bf16) and <= 0.35x (int8) of float32; from a saved folder no slower than float32.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

try:
    from vitc.bench.checkpoint import DEFAULT_CACHE, RANDOM_SPECS, build_random_checkpoint
    from vitc.bench.memory import MIB, fresh_process
    from vitc.bench.stats import rel_err
except ImportError as exc:
    sys.exit(f"bench_memory.py needs vitc and transformers (to build the checkpoint): {exc}")

# (row name, dtype, where the weights come from)
ROWS = (("float32", "float32", "checkpoint"), ("bfloat16 (convert)", "bfloat16", "checkpoint"),
        ("int8 (convert)", "int8", "checkpoint"), ("bfloat16 (saved)", "bfloat16", "saved"),
        ("int8 (saved)", "int8", "saved"))
GOALS = {"bfloat16": 0.60, "int8": 0.35}


def save_folders(checkpoint, root, log):
    """{dtype: folder} of the checkpoint saved by vitc at bf16 and int8 (in a child: this process stays small)."""
    import subprocess
    from vitc.bench.memory import child_env

    out = {}
    for dtype in ("bfloat16", "int8"):
        folder = os.path.join(root, f"saved-{dtype}")
        code = ("import sys, vitc; vitc.AutoModelForImageClassification.from_pretrained(sys.argv[1], "
                "dtype=sys.argv[2]).save_pretrained(sys.argv[3])")
        subprocess.run([sys.executable, "-c", code, str(checkpoint), dtype, folder], check=True, env=child_env())
        log(f"saved {dtype} -> {folder}")
        out[dtype] = folder
    return out


def measure(checkpoint, saved, threads, repeats, cache_dir, log):
    rows = {}
    for name, dtype, source in ROWS:
        folder = checkpoint if source == "checkpoint" else saved[dtype]
        runs = []
        for i in range(repeats):
            log(f"[{name}] fresh process {i + 1}/{repeats}")
            runs.append(fresh_process("vitc", folder, threads, dtype, cache_dir, 0))
        rows[name] = {
            "dtype": dtype, "source": source, "folder": str(folder), "runs": len(runs),
            "peak_rss": statistics.median(r["peak_rss"] for r in runs),
            "vm_hwm": statistics.median(r["vm_hwm"] or 0 for r in runs),
            "import_s": statistics.median(r["import_s"] for r in runs),
            "load_s": statistics.median(r["load_s"] for r in runs),
            "first_run_s": statistics.median(r["first_run_s"] for r in runs),
            "wall_to_logits_s": statistics.median(r["wall_to_logits_s"] for r in runs),
            "output": runs[0]["output"],
        }
    ref = rows["float32"]
    ref_output = ref["output"]
    for row in rows.values():
        row["rss_vs_float32"] = row["peak_rss"] / ref["peak_rss"]
        row["wall_vs_float32"] = row["wall_to_logits_s"] / ref["wall_to_logits_s"]
        row["err_vs_float32"] = rel_err(row.pop("output"), ref_output)
    return rows


def table(rows):
    lines = ["| mode | peak RSS MiB | x float32 | load s | first image s | spawn -> logits s | x float32 | "
             "max|d|/max|ref| |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['peak_rss'] / MIB:.0f} | {r['rss_vs_float32']:.2f} | {r['load_s']:.3f} | "
                     f"{r['first_run_s']:.3f} | {r['wall_to_logits_s']:.2f} | {r['wall_vs_float32']:.2f} | "
                     f"{r['err_vs_float32']:.1e} |")
    return "\n".join(lines)


def verdicts(rows):
    out = []
    for name, r in rows.items():
        goal = GOALS.get(r["dtype"])
        if goal is not None:
            out.append(f"{name}: peak RSS {r['rss_vs_float32']:.2f}x float32 (goal <= {goal:.2f}x): "
                       f"{'met' if r['rss_vs_float32'] <= goal else 'MISSED'}")
        if r["source"] == "saved":
            out.append(f"{name}: cold start {r['wall_vs_float32']:.2f}x float32 (goal <= 1.00x): "
                       f"{'met' if r['wall_vs_float32'] <= 1.0 else 'MISSED'}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="b16", help=f"{'/'.join(RANDOM_SPECS)} random checkpoint, or a checkpoint "
                                                  f"folder (default b16)")
    p.add_argument("--threads", type=int, default=2, help="kernel threads of the children (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per row (default 3)")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="where the random checkpoint is kept")
    p.add_argument("--json", metavar="PATH", help="every number, written at the end")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        p.error("--repeats and --threads must be >= 1")
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    checkpoint = args.model
    if checkpoint in RANDOM_SPECS:
        checkpoint = str(build_random_checkpoint(checkpoint, args.cache_dir, 0, log=log))
    with tempfile.TemporaryDirectory(prefix="vitc-bench-memory-") as root:
        saved = save_folders(checkpoint, root, log)
        rows = measure(checkpoint, saved, args.threads, args.repeats, args.cache_dir, log)
    print(f"{args.model}, {args.threads} threads, median of {args.repeats} fresh processes each\n")
    print(table(rows))
    print()
    for line in verdicts(rows):
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "threads": args.threads, "repeats": args.repeats, "rows": rows}, f,
                      indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
