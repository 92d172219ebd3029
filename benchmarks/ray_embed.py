"""Ray Data throughput per core vs one process: vitc.ray.embed_images on a local cluster against the same
ImageModel called in this process, over the same image files.

    python benchmarks/ray_embed.py --model vitc-digits --images 2000 --cpus 2 --threads 1
    python benchmarks/ray_embed.py --model b16 --images 100 --cpus 2 --threads 1

One process: one ImageModel with `threads` threads over every file (read + decode + embed): images/s per
thread, and images per CPU-second. Ray: actors = cpus // threads, each `threads` threads. Start-up (ray.init,
worker processes, actor construction: loading and warming the model) is left out by difference: a warm-up
job first, then jobs over N and 2N files, and per CPU = N / (T(2N) - T(N)) / cpus. The sink is
Dataset.materialize() (results stay in the object store, as before write_parquet). On a shared machine wall
times swing with the neighbours' load; CPU-seconds of every Ray process (driver, raylet, workers) per image
swing less, so both are reported.
"""
import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from serve_helpers import model_folder, random_png  # noqa: E402


class RayCpu:
    """User + system CPU seconds of this process and every Ray process (Linux /proc), sampled every 0.1 s
    while a job runs, so that actors which exit at the end of the job still count (to their last sample)."""

    def __init__(self):
        self.tick, self.is_ray, self.last = os.sysconf("SC_CLK_TCK"), {}, {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if pid not in self.is_ray:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read()
                    self.is_ray[pid] = int(pid) == os.getpid() or b"ray" in cmd or b"gcs_server" in cmd
                if self.is_ray[pid]:
                    with open(f"/proc/{pid}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    self.last[pid] = (int(fields[11]) + int(fields[12])) / self.tick
            except (OSError, ValueError):
                pass

    def _run(self):
        while not self.stop.wait(0.1):
            self._sample()

    def __enter__(self):
        self._sample()
        self.before = dict(self.last)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self._sample()
        self.seconds = sum(t - self.before.get(pid, 0.0) for pid, t in self.last.items())


def one_process(fn, paths, batch_size):
    wall, cpu = time.perf_counter(), time.process_time()
    rows = 0
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        blobs = []
        for path in chunk:
            with open(path, "rb") as f:
                blobs.append(f.read())
        rows += len(fn({"bytes": blobs, "path": np.array(chunk, dtype=object)})["path"])
    return rows, time.perf_counter() - wall, time.process_time() - cpu


def ray_job(vray, paths, folder, args):
    wall = time.perf_counter()
    with RayCpu() as cpu:
        rows = vray.embed_images(paths, folder, threads=args.threads, batch_size=args.batch_size).materialize().count()
    return rows, time.perf_counter() - wall, cpu.seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vitc-digits", help="model id/folder, or b16 / s16 / ti16 (random, cached)")
    p.add_argument("--images", type=int, default=2000, help="N: the jobs run N and 2N files")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="N / 2N job pairs (their differences are summed)")
    args = p.parse_args(argv)
    folder = model_folder(args.model)

    import vitc.ray as vray
    with tempfile.TemporaryDirectory() as tmp:
        fn = vray.ImageModel(folder, threads=args.threads)
        size = fn.model.config.image_hw[1]
        paths = []
        for i in range(2 * args.images):
            paths.append(os.path.join(tmp, f"img{i:06d}.png"))
            with open(paths[-1], "wb") as f:
                f.write(random_png(i, size, size))

        rows, wall, cpu = one_process(fn, paths[:args.images], args.batch_size)
        single, single_cpu = rows / wall / args.threads, rows / cpu
        print(f"{args.model}: one process, {args.threads} thread(s), batch {args.batch_size}: {single:.1f} images/s "
              f"per thread, {single_cpu:.1f} images per CPU-second", flush=True)
        del fn

        import ray
        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING",
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            ray_job(vray, paths[:args.batch_size * args.cpus], folder, args)  # worker processes start
            started = time.perf_counter() - t0
            extra_wall = extra_cpu = 0.0  # what N more images cost, summed over the rounds
            for _ in range(args.rounds):
                n1, w1, c1 = ray_job(vray, paths[:args.images], folder, args)
                n2, w2, c2 = ray_job(vray, paths, folder, args)
                assert (n1, n2) == (args.images, 2 * args.images), (n1, n2)
                print(f"   T(N) {w1:.1f} s, T(2N) {w2:.1f} s; {c1:.1f} / {c2:.1f} CPU-s", flush=True)
                extra_wall, extra_cpu = extra_wall + w2 - w1, extra_cpu + c2 - c1
        finally:
            ray.shutdown()
        images = args.images * args.rounds
        per_cpu, per_cpu_second = images / extra_wall / args.cpus, images / extra_cpu
        print(f"ray: {args.cpus} CPUs ({args.cpus // args.threads} actors x {args.threads}), batch {args.batch_size}: "
              f"{per_cpu:.1f} images/s per CPU = {per_cpu / single:.2f}x one process; "
              f"{per_cpu_second:.1f} images per CPU-second = {per_cpu_second / single_cpu:.2f}x "
              f"(start-up {started:.1f} s, left out)", flush=True)


if __name__ == "__main__":
    main()
