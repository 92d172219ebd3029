"""Forward speed across processes: a forked child vs its parent vs a fresh process, and this build vs another.

    python benchmarks/bench_fork.py --model b16 --batch 1 --threads 2 --alternations 5
    python benchmarks/bench_fork.py --other-build /path/to/an/OpenMP/checkout   # + this build vs that one

Each sample is the median of --forwards timed forwards (after 2 warm-ups) with T threads, in one of:
  parent  the process that loaded the model and warmed it (its pool already has its workers);
  child   a process forked from that parent after the warm-up (it starts its own workers on first use);
  fresh   a new interpreter that loads the model itself (subprocess);
  other   a new interpreter importing vitc from --other-build (e.g. the OpenMP build before the pool).
The kinds run in turn, --alternations times, so a busy machine slows them alike; the report gives each
kind's median over the alternations and the ratios to "fresh", and how much of a child's memory is its own. Random-weight checkpoint: benchmarks/common.py.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import common


def time_forwards(model, x, forwards):
    model(x)
    model(x)  # warm-up: the buffers and (in a child or a fresh process) the pool's workers exist now
    times = []
    for _ in range(forwards):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def load(folder, threads):
    import vitc
    return vitc.ViTForImageClassification.from_pretrained(folder, threads=threads)


def worker_main(args):
    """--worker: a fresh process: load, warm up, time; print the median seconds as JSON."""
    model = load(args.folder, args.threads)
    x = common.make_pixels(args.batch, common.model_spec(args.model))
    print(json.dumps({"median_s": time_forwards(model, x, args.forwards)}))


def fresh(args, root):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.path.dirname(__file__)) if p))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--folder", str(args.folder),
           "--model", args.model, "--batch", str(args.batch), "--threads", str(args.threads),
           "--forwards", str(args.forwards)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd="/")
    if out.returncode:
        raise RuntimeError(f"worker under {root} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["median_s"]


def memory_mib():
    """(RSS, private dirty) MiB of this process: in a fork child, the pages it did not share with its parent
    (None off Linux)."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line and not line.startswith(" "))
        return tuple(int(fields[k].split()[0]) / 1024 for k in ("Rss", "Private_Dirty"))
    except (OSError, KeyError, ValueError):
        return None


def forked(model, x, forwards):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            median = time_forwards(model, x, forwards)
            os.write(w, json.dumps({"median_s": median, "memory_mib": memory_mib()}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status:
        raise RuntimeError(f"forked child failed: wait status {status}")
    result = json.loads(data)
    forked.memory_mib = result["memory_mib"]
    return result["median_s"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="b16", choices=sorted(common.MODEL_SPECS))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--forwards", type=int, default=5, help="timed forwards per sample (median)")
    p.add_argument("--alternations", type=int, default=5)
    p.add_argument("--other-build", default=None, help="a checkout with another vitc build (built in place)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args)

    root = str(common.REPO_ROOT)
    sys.path.insert(0, root)
    args.folder = common.build_checkpoint(args.model, log=lambda m: print(m, file=sys.stderr))
    import vitc
    print(f"vitc {vitc.__file__}: {vitc.runtime.config()}; model {args.model}, batch {args.batch}, "
          f"threads {args.threads}, {args.forwards} forwards per sample, load {os.getloadavg()[0]:.1f}",
          file=sys.stderr)
    model = load(args.folder, args.threads)
    x = common.make_pixels(args.batch, common.model_spec(args.model))
    kinds = {"parent": lambda: time_forwards(model, x, args.forwards),
             "child": lambda: forked(model, x, args.forwards),
             "fresh": lambda: fresh(args, root)}
    if args.other_build:
        kinds["other"] = lambda: fresh(args, os.path.abspath(args.other_build))
    samples = {k: [] for k in kinds}
    for a in range(args.alternations):
        order = list(kinds)[a % len(kinds):] + list(kinds)[:a % len(kinds)]  # rotate who goes first
        for kind in order:
            samples[kind].append(kinds[kind]())
        print(f"round {a + 1}: " + "  ".join(f"{k} {samples[k][-1] * 1e3:7.1f} ms" for k in kinds), file=sys.stderr)
    med = {k: float(np.median(v)) for k, v in samples.items()}
    print(f"model {args.model}, batch {args.batch}, threads {args.threads}: median of {args.alternations} "
          f"samples (each the median of {args.forwards} forwards)")
    for k in kinds:
        ratios = np.array(samples[k]) / np.array(samples["fresh"])
        print(f"  {k:7s} {med[k] * 1e3:8.1f} ms   vs fresh {med[k] / med['fresh']:.3f}  "
              f"(per round: {' '.join(f'{r:.2f}' for r in ratios)})")
    if getattr(forked, "memory_mib", None):
        rss, private = forked.memory_mib
        print(f"  a child after its forwards: RSS {rss:.0f} MiB, of which {private:.0f} MiB its own (not shared "
              f"with the parent: activations, buffers, Python objects it touched)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
