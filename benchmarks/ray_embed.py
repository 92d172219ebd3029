"""Ray Data throughput per core vs one process: vitc.ray.embed_images on a local cluster against the same
ImageModel called in this process, over the same image files.

    python benchmarks/ray_embed.py --model vitc-digits --images 2000 --cpus 2 --threads 1
    python benchmarks/ray_embed.py --model b16 --images 200 --cpus 2 --threads 1

Single process: one ImageModel with `threads` threads over every file (read + decode + embed), images/s per
thread. Ray: actors = cpus // threads, each `threads` threads; images/s per CPU, timed from the first to the
last batch of the job (ray.init and actor start-up excluded; reported apart).
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from serve_helpers import model_folder, random_png  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vitc-digits", help="model id/folder, or b16 / s16 / ti16 (random, cached)")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)
    folder = model_folder(args.model)

    import vitc.ray as vray
    with tempfile.TemporaryDirectory() as tmp:
        fn = vray.ImageModel(folder, threads=args.threads)
        size = fn.model.config.image_hw[1]
        paths = []
        for i in range(args.images):
            paths.append(os.path.join(tmp, f"img{i:06d}.png"))
            with open(paths[-1], "wb") as f:
                f.write(random_png(i, size, size))

        t0 = time.perf_counter()
        rows = 0
        for start in range(0, len(paths), args.batch_size):
            chunk = paths[start:start + args.batch_size]
            blobs = [open(q, "rb").read() for q in chunk]
            rows += len(fn({"bytes": blobs, "path": np.array(chunk, dtype=object)})["path"])
        single = rows / (time.perf_counter() - t0) / args.threads
        print(f"{args.model}: one process, {args.threads} thread(s): {single:.1f} images/s per thread", flush=True)

        import ray
        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING",
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
        started = time.perf_counter() - t0
        try:
            ds = vray.embed_images(tmp, folder, threads=args.threads, batch_size=args.batch_size)
            first = last = None
            count = 0
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                now = time.perf_counter()
                first = first or now
                last = now
                count += len(batch["path"])
        finally:
            ray.shutdown()
        # the first batch's own compute is not inside [first, last]: count the images after it
        per_cpu = (count - args.batch_size) / (last - first) / args.cpus if last > first else float("nan")
        print(f"ray: {count} rows, {args.cpus} CPUs ({args.cpus // args.threads} actors x {args.threads}): "
              f"{per_cpu:.1f} images/s per CPU = {per_cpu / single:.2f}x one process "
              f"(ray.init {started:.1f} s, excluded)", flush=True)


if __name__ == "__main__":
    main()
