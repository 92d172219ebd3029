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
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from serve_helpers import ServerProcess, b64, child_env, metric, model_folder, random_png  # noqa: E402


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
    p.add_argument("--client", default="aiohttp", choices=("aiohttp", "httpx"),
                   help="async HTTP client (httpx's pool tops out near 250 requests/s at 32 connections here)")
    p.add_argument("--protocol", default="openai", choices=("openai", "v2-binary"),
                   help="openai: /v1/embeddings, base64 in JSON; v2-binary: v2 infer with raw bytes both ways")
    p.add_argument("--no-ceiling", action="store_true", help="skip the no-op endpoint measurement")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


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


class _Answer:
    def __init__(self, status, body, headers):
        self.status, self.body, self.headers = status, body, headers


def requests_for(protocol, blobs):
    """(path, body, headers) of one request per image, and answer -> its embedding. "openai": /v1/embeddings
    with base64 in JSON; "v2-binary": Open Inference Protocol v2 with Triton's binary tensor extension (the
    image as raw bytes after a JSON header, the embedding back as raw float32, as tritonclient's
    binary_data=True sends and asks)."""
    from vitc.serve.codec import pack_bytes
    if protocol == "openai":
        out = [("/v1/embeddings", json.dumps({"input": [b64(b)]}).encode(), {"content-type": "application/json"})
               for b in blobs]
        return out, lambda r: np.float32(json.loads(r.body)["data"][0]["embedding"])
    out = []
    for b in blobs:
        tail = pack_bytes([b])
        head = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                       "parameters": {"binary_data_size": len(tail)}}],
                           "outputs": [{"name": "embedding", "parameters": {"binary_data": True}}]}).encode()
        out.append(("/v2/models/model/infer", head + tail, {"content-type": "application/octet-stream",
                                                              "inference-header-content-length": str(len(head))}))
    return out, lambda r: np.frombuffer(r.body[int(r.headers["inference-header-content-length"]):], "<f4")


async def _poster(kind, url, clients):
    """(post(path, body, headers) -> _Answer, close()) on `clients` keep-alive connections."""
    if kind == "httpx":
        import httpx
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        http = httpx.AsyncClient(base_url=url, timeout=600, limits=limits)

        async def post(path, body, headers):
            r = await http.post(path, content=body, headers=headers)
            return _Answer(r.status_code, r.content, r.headers)
        return post, http.aclose
    import aiohttp
    session = aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(limit=clients),
                                    timeout=aiohttp.ClientTimeout(total=600))

    async def post(path, body, headers):
        async with session.post(path, data=body, headers=headers) as r:
            return _Answer(r.status, await r.read(), r.headers)
    return post, session.close


async def load(url, payloads, expected, clients, requests, seconds, pid, rss_every, kind, embedding=None):
    """`clients` concurrent loops posting one image each (payloads: (path, body, headers)); every answer's
    embedding(answer) checked against `expected` (when given)."""
    latencies, rss, errors, sent = [], [], [], [0]
    stop_at = time.perf_counter() + seconds
    post, close = await _poster(kind, url, clients)

    async def client():
        while sent[0] < requests and time.perf_counter() < stop_at:
            i = sent[0] % len(payloads)
            sent[0] += 1
            t0 = time.perf_counter()
            r = await post(*payloads[i])
            latencies.append(time.perf_counter() - t0)
            if r.status != 200:
                errors.append(f"{r.status}: {r.body[:200]}")
            elif embedding is not None and not np.array_equal(embedding(r), expected[i]):
                errors.append(f"image {i}: embedding differs from model.embed")
            if pid and len(latencies) % rss_every == 0:
                rss.append((len(latencies), rss_mb(pid)))

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - t0
    finally:
        await close()
    return latencies, wall, errors, rss


async def noop_app(scope, receive, send):
    """The ceiling: an ASGI app that reads the body and answers a constant, on the server's HTTP stack."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"data": []}'})


def ceiling(payloads, clients, requests, seconds, kind):
    """Requests/s of the same client against a no-op endpoint served by uvicorn as `vitc serve` runs it."""
    from serve_helpers import free_port
    port = free_port()
    code = (f"import sys; sys.path.insert(0, {HERE!r}); import uvicorn, load_serve; "
            f"uvicorn.run(load_serve.noop_app, host='127.0.0.1', port={port}, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        url = f"http://127.0.0.1:{port}"
        import httpx
        for _ in range(200):
            try:
                httpx.post(url, content=b"{}")
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        lat, wall, errors, _ = asyncio.run(load(url, payloads, None, clients, requests, seconds, None, 1, kind))
        return (len(lat) - len(errors)) / wall
    finally:
        proc.kill()
        proc.wait()


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
    payloads, embedding = requests_for(args.protocol, blobs)
    del model
    baseline = in_process_throughput(folder, replicas, threads, blobs, args.max_batch_size,
                                     min(15.0, args.max_seconds / 2))
    print(f"{args.model}: in process, batch {args.max_batch_size}, {replicas} x {threads} threads: "
          f"{baseline:.1f} images/s (decode + preprocess + forward)", flush=True)

    server = ServerProcess(child_env(), "--replicas", str(replicas), "--threads", str(threads),
                           "--max-batch-size", str(args.max_batch_size),
                           "--max-queue-delay-ms", str(args.max_queue_delay_ms), "--max-queue", "4096",
                           "--request-timeout-s", str(args.request_timeout_s), "--name", "model", model=folder)
    results = []
    try:
        server.wait_ready(300)
        pid = server.proc.pid
        for clients in args.clients:
            page0 = _metrics(server.url)
            rss0 = rss_mb(pid)
            lat, wall, errors, rss = asyncio.run(load(server.url, payloads, expected, clients, args.requests,
                                                      args.max_seconds, pid, args.rss_every, args.client,
                                                      embedding))
            page1 = _metrics(server.url)
            inferred = metric(page1, "vitc_inference_count_total") - metric(page0, "vitc_inference_count_total")
            executions = metric(page1, "vitc_execution_count_total") - metric(page0, "vitc_execution_count_total")
            ok = len(lat) - len(errors)
            row = {"model": args.model, "protocol": args.protocol, "client": args.client, "clients": clients, "requests": len(lat), "errors": len(errors),
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
    for row in results if not args.no_ceiling else []:
        row["noop_requests_per_s"] = ceiling(payloads, row["clients"], args.requests, args.max_seconds, args.client)
        # a request's HTTP work and the model's work share the cores: at best 1 / (1/noop + 1/in_process) images/s
        bound = 1 / (1 / row["noop_requests_per_s"] + 1 / baseline)
        row["bound_ratio"] = bound / baseline
        print(f"{row['clients']:3d} clients, no-op endpoint (the HTTP ceiling, same client and bodies): "
              f"{row['noop_requests_per_s']:.1f} requests/s; HTTP + model on the same cores: at most "
              f"{bound:.1f} images/s = {row['bound_ratio']:.2f}x in process; vitc serve reached "
              f"{row['ratio']:.2f}x", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if any(r["errors"] for r in results) else 0


def _metrics(url):
    import httpx
    return httpx.get(url + "/metrics").text


if __name__ == "__main__":
    sys.exit(main())
