"""Preprocessing throughput: vitc.ViTImageProcessor vs transformers.ViTImageProcessorPil, side by side.

Writes N synthetic JPEGs (default 64 of 640x480) to a temp dir and times, best of --repeats (interleaved):
  - "files": a list of paths (decode + resize + rescale/normalize), which both libraries accept;
  - "PIL":   already decoded PIL images (resize + rescale/normalize only).
vitc runs with each --workers count; the outputs are checked to be bit-identical to transformers first.
--photos adds the JPEGs in /work/shared/photos (real photos, various sizes) as a third input set.

    PYTHONPATH=. python benchmarks/bench_preprocess.py [--n 64] [--size 640x480] [--workers 1,2] [--photos]
"""
import argparse
import glob
import os
import tempfile
import time

import numpy as np
from PIL import Image

from vitc.image_processing import ViTImageProcessor

PHOTOS = "/work/shared/photos"


def write_jpegs(folder, count, width, height):
    """Smooth gradients + mild noise: JPEG sizes and decode cost like real photos, not like flat color."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(count):
        phase = rng.uniform(0, 2 * np.pi, 3)
        base = np.stack([127 + 100 * np.sin(x / (40 + 7 * c) + y / (60 + 5 * i % 50) + phase[c]) for c in range(3)], -1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        paths.append(os.path.join(folder, f"synthetic_{i:04d}.jpg"))
        Image.fromarray(pixels).save(paths[-1], quality=90)
    return paths


def best_times(fns, repeats):
    """Best wall time of each function; runs are interleaved so load from other processes hits all alike."""
    for fn in fns:
        fn()  # warm-up: first-touch allocations, lazy imports
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def bench_inputs(label, images, repeats, workers_list, hf, ours):
    want = hf(images, return_tensors="np")["pixel_values"]
    for workers in workers_list:
        got = ours(images, num_workers=workers)["pixel_values"]
        if not np.array_equal(got, want):
            raise SystemExit(f"{label}: vitc output differs from transformers with {workers} worker(s)")
    fns = [lambda: hf(images, return_tensors="np")]
    fns += [lambda w=w: ours(images, num_workers=w) for w in workers_list]
    hf_s, *ours_s = best_times(fns, repeats)
    count = len(images)
    print(f"{label:<28} {'transformers Pil':<18} {'1':>7} {hf_s * 1e3:9.1f} {count / hf_s:10.1f} {1.0:7.2f}x")
    for workers, s in zip(workers_list, ours_s):
        print(f"{label:<28} {'vitc':<18} {workers:>7} {s * 1e3:9.1f} {count / s:10.1f} {hf_s / s:7.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="number of synthetic images")
    parser.add_argument("--size", default="640x480", help="synthetic image WIDTHxHEIGHT")
    parser.add_argument("--workers", default="1,2", help="vitc thread counts to time, comma separated")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--photos", action="store_true", help=f"also time the JPEGs in {PHOTOS} if present")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    workers_list = [int(w) for w in args.workers.split(",")]

    from transformers import ViTImageProcessorPil

    hf, ours = ViTImageProcessorPil(), ViTImageProcessor()  # both: ViT defaults, 224x224 bilinear
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())  # other processes on the box skew thread scaling
    print(f"ViT defaults (224x224 bilinear, rescale, normalize); best of {args.repeats}; "
          f"cpus={os.cpu_count()}; load average {load}")
    print(f"{'input':<28} {'impl':<18} {'workers':>7} {'ms':>9} {'images/s':>10} {'vs HF':>8}")
    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(folder, args.n, width, height)
        bench_inputs(f"{args.n} JPEG files {width}x{height}", paths, args.repeats, workers_list, hf, ours)
        decoded = [Image.open(p).convert("RGB") for p in paths]
        bench_inputs(f"{args.n} PIL images {width}x{height}", decoded, args.repeats, workers_list, hf, ours)
    if args.photos:
        photos = sorted(p for p in glob.glob(os.path.join(PHOTOS, "*")) if p.lower().endswith((".jpg", ".jpeg")))
        if photos:
            bench_inputs(f"{len(photos)} photos (shared/photos)", photos, args.repeats, workers_list, hf, ours)
        else:
            print(f"(no JPEGs in {PHOTOS}: skipped)")


if __name__ == "__main__":
    main()
