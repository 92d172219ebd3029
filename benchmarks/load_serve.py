"""Load test of `vitc serve`: async clients on loopback vs the same model batched in process.

    python benchmarks/load_serve.py --model vitc-digits --clients 8 32 --requests 2000 --max-seconds 60
    python benchmarks/load_serve.py --model b16 ...      # a random ViT-B/16-shaped checkpoint (benchmarks/common.py)

For each client count: N requests of one image each to POST /v1/embeddings (bounded by --requests and
--max-seconds), every answer checked against model.embed of its own image; reported: images/s vs the
in-process pipeline (decode + preprocess + batched forward from the same bytes, same threads), p50/p99
latency, average batch size (inference_count / execution_count from /metrics) and the server's RSS before
and after (and every --rss-every requests). The client runs on the same cores as the server.
"""
import argparse
import asyncio
import io
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from serve_helpers import ServerProcess, b64, child_env, metric, random_png  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vitc-digits", help="model id/folder, or b16 / s16 / ti16 (random, cached)")
    p.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    p.add_argument("--requests", type=int, default=2000, help="requests per client count (upper bound)")
    p.add_argument("--max-seconds", type=float, default=60.0, help="time bound per client count")
    p.add_argument("--images", type=int, default=64, help="distinct images cycled through")
    p.add_argument("--replicas", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--max-queue-delay-ms", type=float, default=5.0)
    p.add_argument("--request-timeout-s", type=float, default=600.0, help="server deadline (a slow model "
                   "with many clients queues for long)")
    p.add_argument("--rss-every", type=int, default=1000)
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def model_folder(name):
    sys.path.insert(0, HERE)
    from common import MODEL_SPECS, build_checkpoint
    return str(build_checkpoint(name)) if name in MODEL_SPECS else name


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def in_process_throughput(folder, replicas, threads, blobs, batch, seconds):
    """Images/s of decode + preprocess + batched forward from the same encoded bytes, laid out as the server
    is: `replicas` Python threads, each its own model object with `threads` kernel threads."""
    from concurrent.futures import ThreadPoolExecutor

    import vitc
    from vitc.image_io import load_image_bytes
    models = [vitc.ViTForImageClassification.from_pretrained(folder, threads=threads) for _ in range(replicas)]

    def worker(model):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            chunk = [blobs[(done + i) % len(blobs)] for i in range(batch)]
            images = [load_image_bytes(b) for b in chunk]
            model.embed(model.image_processor(images, num_workers=1)["pixel_values"])
            done += batch
        return done, time.perf_counter() - start

    for model in models:  # warm-up: buffers for this batch size
        model.embed(model.image_processor([load_image_bytes(b) for b in blobs[:batch]])["pixel_values"])
    with ThreadPoolExecutor(replicas) as pool:
        counts = list(pool.map(worker, models))
    return sum(n for n, _ in counts) / max(t for _, t in counts)


async def load(url, payloads, expected, clients, requests, seconds, pid, rss_every):
    import httpx
    latencies, rss, errors, sent = [], [], [], [0]
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        async def client():
            while sent[0] < requests and time.perf_counter() < stop_at:
                i = sent[0] % len(payloads)
                sent[0] += 1
                t0 = time.perf_counter()
                r = await http.post("/v1/embeddings", content=payloads[i], headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors.append(f"{r.status_code}: {r.text[:200]}")
                elif not np.array_equal(np.float32(r.json()["data"][0]["embedding"]), expected[i]):
                    errors.append(f"image {i}: embedding differs from model.embed")
                if len(latencies) % rss_every == 0:
                    rss.append((len(latencies), rss_mb(pid)))

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return latencies, wall, errors, rss


def main(argv=None):
    args = parse_args(argv)
    import vitc
    from vitc.runtime import default_num_threads
    from vitc.serve.server import plan_cores
    folder = model_folder(args.model)
    replicas, threads = plan_cores(args.replicas, args.threads, default_num_threads())
    model = vitc.ViTForImageClassification.from_pretrained(folder, threads=threads)
    size = model.config.image_hw[1]
    blobs = [random_png(i, size, size) for i in range(args.images)]
    from PIL import Image
    expected = [model.embed(Image.open(io.BytesIO(b)))[0] for b in blobs]
    payloads = [json.dumps({"input": [b64(b)]}).encode() for b in blobs]
    del model
    baseline = in_process_throughput(folder, replicas, threads, blobs, args.max_batch_size,
                                     min(15.0, args.max_seconds / 2))
    print(f"{args.model}: in process, batch {args.max_batch_size}, {replicas} x {threads} threads: "
          f"{baseline:.1f} images/s (decode + preprocess + forward)", flush=True)

    server = ServerProcess(child_env(), "--replicas", str(replicas), "--threads", str(threads),
                           "--max-batch-size", str(args.max_batch_size),
                           "--max-queue-delay-ms", str(args.max_queue_delay_ms), "--max-queue", "4096",
                           "--request-timeout-s", str(args.request_timeout_s), model=folder)
    results = []
    try:
        server.wait_ready(300)
        pid = server.proc.pid
        for clients in args.clients:
            page0 = _metrics(server.url)
            rss0 = rss_mb(pid)
            lat, wall, errors, rss = asyncio.run(load(server.url, payloads, expected, clients, args.requests,
                                                      args.max_seconds, pid, args.rss_every))
            page1 = _metrics(server.url)
            inferred = metric(page1, "vitc_inference_count_total") - metric(page0, "vitc_inference_count_total")
            executions = metric(page1, "vitc_execution_count_total") - metric(page0, "vitc_execution_count_total")
            ok = len(lat) - len(errors)
            row = {"model": args.model, "clients": clients, "requests": len(lat), "errors": len(errors),
                   "images_per_s": ok / wall, "in_process_images_per_s": baseline,
                   "ratio": ok / wall / baseline, "p50_ms": 1e3 * float(np.percentile(lat, 50)),
                   "p99_ms": 1e3 * float(np.percentile(lat, 99)), "avg_batch": inferred / max(executions, 1),
                   "rss_mb_before": rss0, "rss_mb_after": rss_mb(pid), "rss_mb_samples": rss,
                   "replicas": replicas, "threads": threads}
            results.append(row)
            print(f"{clients:3d} clients: {row['requests']} requests ({row['errors']} errors) "
                  f"{row['images_per_s']:.1f} images/s = {row['ratio']:.2f}x in process; "
                  f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms; avg batch {row['avg_batch']:.1f}; "
                  f"RSS {rss0:.0f} -> {row['rss_mb_after']:.0f} MB", flush=True)
            for e in errors[:5]:
                print("   ", e)
    finally:
        server.stop()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if any(r["errors"] for r in results) else 0


def _metrics(url):
    import httpx
    return httpx.get(url + "/metrics").text


if __name__ == "__main__":
    sys.exit(main())
