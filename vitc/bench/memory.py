"""Cold start and peak RSS per engine, each in a fresh process: import the engine, load the checkpoint,
run batch 1 once; the parent times spawn -> logits and checks the child's output against the reference.

    python -m vitc.bench.memory ENGINE MODEL THREADS DTYPE CACHE_DIR SEED OV_SHAPE IMAGE_SIZE   (the child)
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

CHILD_TAG = "VITC_BENCH_CHILD "
MIB = 1024 * 1024


def child(argv):
    name, model, threads, dtype, cache_dir, seed, ov_shape, image_size = argv
    from .checkpoint import Checkpoint
    from .engines import ENGINES, OpenVinoEngine
    from .stats import make_pixels, peak_rss_bytes, vm_hwm_bytes

    OpenVinoEngine.shape = ov_shape
    cls, threads = ENGINES[name], int(threads)
    t0 = time.perf_counter()
    cls.imports()
    t1 = time.perf_counter()
    rss_import = peak_rss_bytes()
    ckpt = Checkpoint(model, cache_dir, int(image_size) or None)
    engine = cls(ckpt, threads, dtype)
    engine.prepare(1)
    t2 = time.perf_counter()
    out = np.array(engine.run(make_pixels(ckpt.input_shape(1), int(seed))), dtype=np.float32)
    t3 = time.perf_counter()
    done_epoch = time.time()
    print(CHILD_TAG + json.dumps({
        "engine": name, "threads": threads, "import_s": t1 - t0, "load_s": t2 - t1, "first_run_s": t3 - t2,
        "done_epoch": done_epoch, "peak_rss_after_import": rss_import, "peak_rss": peak_rss_bytes(),
        "vm_hwm": vm_hwm_bytes(), "output": out.ravel().tolist()}), flush=True)


def child_env():
    """The environment with this vitc's parent folder first on PYTHONPATH: the child imports the same vitc
    (an installed one, or a source checkout run with PYTHONPATH=.)."""
    import vitc

    root = os.path.dirname(os.path.dirname(os.path.abspath(vitc.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def fresh_process(name, folder, threads, dtype, cache_dir, seed, ov_shape="static", image_size=None):
    """One engine in a fresh process (load `folder` at `dtype`, one batch-1 run): the child's numbers, plus
    wall_to_logits_s (spawn -> output) and process_s; "output" is the output array."""
    cmd = [sys.executable, "-m", "vitc.bench.memory", name, str(folder), str(threads), dtype, str(cache_dir),
           str(seed), ov_shape, str(image_size or 0)]
    t0 = time.time()
    # Through a shell that FORKS the child: Linux carries ru_maxrss across execve, so a child exec'd
    # straight from this (big) process would report our peak RSS as its own.
    proc = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", *cmd], capture_output=True, text=True,
                          timeout=900, env=child_env())
    process_s = time.time() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(CHILD_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"fresh process for {name} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(lines[-1][len(CHILD_TAG):])
    res["output"] = np.asarray(res["output"], np.float32)
    res["wall_to_logits_s"] = res.pop("done_epoch") - t0
    res["process_s"] = process_s
    return res


def measure_children(args, ckpt, names, reference, log):
    from .stats import rel_err

    out = {}
    threads = max(args.threads)
    for name in names:
        log(f"[memory] fresh process: {name}")
        res = fresh_process(name, ckpt.folder, threads, args.dtype, args.cache_dir, args.seed, args.ov_shape,
                            args.image_size)
        res["err_vs_reference"] = rel_err(res.pop("output").reshape(reference.shape), reference)
        if res["vm_hwm"] and res["peak_rss"] > 1.05 * res["vm_hwm"] + 4 * MIB:
            log(f"WARNING {name}: ru_maxrss {res['peak_rss'] / MIB:.0f} MiB > VmHWM {res['vm_hwm'] / MIB:.0f} MiB "
                f"(peak inherited from the launcher?)")
        out[name] = res
    return out


if __name__ == "__main__":
    child(sys.argv[1:])
