"""Load test of `vitc serve`: async clients on loopback vs the same model batched in process.

    python benchmarks/load_serve.py --model vitc-digits --clients 8 32 --protocol openai v2-binary --rounds 3
    python benchmarks/load_serve.py --model b16 ...      # a random ViT-B/16-shaped checkpoint (benchmarks/common.py)

Each round measures, one after the other on the same cores: the in-process pipeline (decode + preprocess +
batched forward from the same bytes, same replicas x threads), then for each protocol and client count N
requests of one image each (bounded by --requests and --max-seconds) against the server, then the same
requests against a no-op endpoint on the same HTTP stack (the ceiling). Ratios are taken within a round, so
load from other jobs on a shared machine moves both sides of each; reported: the median ratio over rounds
and each round's, p50/p99 latency, average batch size (inference_count / execution_count from /metrics),
CPU time per image (server event loop, server replicas, client; the in-process pipeline's), and the
server's RSS before and after (and every --rss-every requests). Every answer is checked against model.embed
of its own image, after the timed window (the in-process side compares nothing either). The client runs on
the same cores as the server.

On a shared machine the wall-clock ratio swings with the neighbours (the served side, with more threads
runnable, can even get a larger share of the cores than the in-process side): the CPU-time ratio, the
in-process CPU time per image over the served one (server loop + replicas + client), is what the
throughput ratio would be on cores this test had alone, and moves much less. "Server alone" leaves the
client's CPU out (in-process over server loop + replicas; its ceiling: over in-process + the no-op server's),
as when clients run on other machines.
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
    p.add_argument("--requests", type=int, default=6000, help="requests per client count (upper bound; the "
                   "server's CPU per thread is counted in 10 ms ticks: 0.002 ms per request at 6000)")
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
    p.add_argument("--protocol", nargs="+", default=["openai"], choices=("openai", "v2-binary"),
                   help="openai: /v1/embeddings, base64 in JSON; v2-binary: v2 infer with raw bytes both ways")
    p.add_argument("--rounds", type=int, default=1, help="in-process, served and no-op measured in turn, "
                   "this many times (ratios within a round; the median reported)")
    p.add_argument("--in-process-seconds", type=float, default=5.0, help="in-process measurement per round")
    p.add_argument("--no-ceiling", action="store_true", help="skip the no-op endpoint measurement")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def thread_cpu_s(pid):
    """(CPU seconds of the main thread, of all the others) of a process, from /proc."""
    main = rest = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        if tid == str(pid):
            main += seconds
        else:
            rest += seconds
    return main, rest


class InProcess:
    """decode + preprocess + batched forward from the same encoded bytes, laid out as the server is:
    `replicas` Python threads, each its own model object with `threads` kernel threads."""

    def __init__(self, folder, replicas, threads, blobs, batch):
        import vitc
        self.models = [vitc.ViTForImageClassification.from_pretrained(folder, threads=threads)
                       for _ in range(replicas)]
        self.blobs, self.batch = blobs, batch
        for model in self.models:  # warm-up: buffers for this batch size
            self._run(model, blobs[:batch])

    @staticmethod
    def _run(model, chunk):
        from vitc.image_io import load_image_bytes
        model.embed(model.image_processor([load_image_bytes(b) for b in chunk], num_workers=1)["pixel_values"])

    def measure(self, seconds):
        """(images/s, CPU seconds per image)."""
        from concurrent.futures import ThreadPoolExecutor

        def worker(model):
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                self._run(model, [self.blobs[(done + i) % len(self.blobs)] for i in range(self.batch)])
                done += self.batch
            return done, time.perf_counter() - start

        cpu0 = time.process_time()
        with ThreadPoolExecutor(len(self.models)) as pool:
            counts = list(pool.map(worker, self.models))
        images = sum(n for n, _ in counts)
        return images / max(t for _, t in counts), (time.process_time() - cpu0) / images


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


async def load(url, payloads, clients, requests, seconds, pid, rss_every, kind):
    """`clients` concurrent loops posting one image each (payloads: (path, body, headers)). Returns the
    latencies, the wall time, the answers [(payload index, _Answer)], RSS samples [(requests, MB)] of `pid`
    and the CPU seconds used (client, server main thread, server other threads)."""
    latencies, rss, answers, sent = [], [], [], [0]
    stop_at = time.perf_counter() + seconds
    post, close = await _poster(kind, url, clients)

    async def client():
        while sent[0] < requests and time.perf_counter() < stop_at:
            i = sent[0] % len(payloads)
            sent[0] += 1
            t0 = time.perf_counter()
            r = await post(*payloads[i])
            latencies.append(time.perf_counter() - t0)
            answers.append((i, r))
            if len(latencies) % rss_every == 0:
                rss.append((len(latencies), rss_mb(pid)))

    try:
        server0, client0, t0 = thread_cpu_s(pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall, client1, server1 = time.perf_counter() - t0, time.process_time(), thread_cpu_s(pid)
    finally:
        await close()
    cpu = (client1 - client0, server1[0] - server0[0], server1[1] - server0[1])
    return latencies, wall, answers, rss, cpu


def check(answers, expected, embedding):
    """Messages for the answers that are not 200 or whose embedding differs from model.embed's."""
    errors = []
    for i, r in answers:
        if r.status != 200:
            errors.append(f"{r.status}: {r.body[:200]}")
        elif expected is not None and not np.array_equal(embedding(r), expected[i]):
            errors.append(f"image {i}: embedding differs from model.embed")
    return errors


async def noop_app(scope, receive, send):
    """The ceiling: an ASGI app that reads the body and answers a constant, on the server's HTTP stack."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"data": []}'})


class NoopServer:
    """The no-op endpoint served by uvicorn as `vitc serve` runs it (uvloop + httptools when installed)."""

    def __init__(self):
        from serve_helpers import free_port
        port = free_port()
        code = (f"import sys; sys.path.insert(0, {HERE!r}); import uvicorn, load_serve; "
                f"uvicorn.run(load_serve.noop_app, host='127.0.0.1', port={port}, log_level='warning')")
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        self.url = f"http://127.0.0.1:{port}"
        import httpx
        for _ in range(200):
            try:
                httpx.post(self.url, content=b"{}")
                break
            except httpx.HTTPError:
                time.sleep(0.05)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def main(argv=None):
    args = parse_args(argv)
    import vitc
    from vitc.runtime import default_num_threads
    from vitc.serve.server import plan_cores
    from vitc.serve.loading import image_gflops
    folder = model_folder(args.model)
    replicas, threads = plan_cores(args.replicas, args.threads, default_num_threads(), image_gflops(folder))
    model = vitc.ViTForImageClassification.from_pretrained(folder, threads=threads)
    size = model.config.image_hw[1]
    blobs = [random_png(i, size, size) for i in range(args.images)]
    from PIL import Image
    expected = [model.embed(Image.open(io.BytesIO(b)))[0] for b in blobs]
    del model
    in_process = InProcess(folder, replicas, threads, blobs, args.max_batch_size)
    server = ServerProcess(child_env(), "--replicas", str(replicas), "--threads", str(threads),
                           "--max-batch-size", str(args.max_batch_size),
                           "--max-queue-delay-ms", str(args.max_queue_delay_ms), "--max-queue", "4096",
                           "--request-timeout-s", str(args.request_timeout_s), "--name", "model", model=folder)
    noop = None if args.no_ceiling else NoopServer()
    results, errors = [], 0
    print(f"{args.model}: {replicas} x {threads} threads, batch {args.max_batch_size}, {args.client} client; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    try:
        server.wait_ready(300)
        pid = server.proc.pid
        for round_ in range(args.rounds):
            baseline, baseline_cpu = in_process.measure(args.in_process_seconds)
            print(f"round {round_ + 1}: in process {baseline:.1f} images/s (decode + preprocess + forward), "
                  f"{1e3 * baseline_cpu:.3f} ms CPU per image", flush=True)
            for protocol in args.protocol:
                payloads, embedding = requests_for(protocol, blobs)
                for clients in args.clients:
                    row = serve_row(args, server, pid, payloads, expected, embedding, clients)
                    row.update(model=args.model, protocol=protocol, client=args.client, clients=clients,
                               round=round_ + 1, in_process_images_per_s=baseline,
                               in_process_cpu_ms=1e3 * baseline_cpu, ratio=row["images_per_s"] / baseline,
                               replicas=replicas, threads=threads)
                    server_cpu = row["cpu_ms_server_loop"] + row["cpu_ms_server_replicas"]
                    row["cpu_ratio"] = row["in_process_cpu_ms"] / (server_cpu + row["cpu_ms_client"])
                    row["server_cpu_ratio"] = row["in_process_cpu_ms"] / server_cpu  # the client elsewhere
                    if noop is not None:
                        lat, wall, answers, _, cpu = asyncio.run(load(noop.url, payloads, clients, args.requests,
                                                                      args.max_seconds, noop.proc.pid, 10 ** 9,
                                                                      args.client))
                        row["noop_requests_per_s"] = sum(r.status == 200 for _, r in answers) / wall
                        # a request's HTTP work and the model's share the cores: 1 / (1/noop + 1/in_process)
                        row["bound_ratio"] = 1 / (1 + baseline / row["noop_requests_per_s"])
                        row["noop_cpu_ms"] = 1e3 * sum(cpu) / max(len(lat), 1)  # client + no-op server
                        row["noop_cpu_ms_client"] = 1e3 * cpu[0] / max(len(lat), 1)
                        row["cpu_bound_ratio"] = row["in_process_cpu_ms"] / (row["in_process_cpu_ms"]
                                                                             + row["noop_cpu_ms"])
                        row["server_cpu_bound_ratio"] = row["in_process_cpu_ms"] / (
                            row["in_process_cpu_ms"] + row["noop_cpu_ms"] - row["noop_cpu_ms_client"])
                    results.append(row)
                    errors += row["errors"]
                    print_row(row)
    finally:
        server.stop()
        if noop is not None:
            noop.stop()
    summarize(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if errors else 0


def serve_row(args, server, pid, payloads, expected, embedding, clients):
    page0 = _metrics(server.url)
    rss0 = rss_mb(pid)
    lat, wall, answers, rss, cpu = asyncio.run(load(server.url, payloads, clients, args.requests,
                                                    args.max_seconds, pid, args.rss_every, args.client))
    page1 = _metrics(server.url)
    inferred = metric(page1, "vitc_inference_count_total") - metric(page0, "vitc_inference_count_total")
    executions = metric(page1, "vitc_execution_count_total") - metric(page0, "vitc_execution_count_total")
    errors = check(answers, expected, embedding)
    for e in errors[:5]:
        print("   ", e)
    ok, n = len(lat) - len(errors), max(len(lat), 1)
    return {"requests": len(lat), "errors": len(errors), "images_per_s": ok / wall,
            "p50_ms": 1e3 * float(np.percentile(lat, 50)), "p99_ms": 1e3 * float(np.percentile(lat, 99)),
            "avg_batch": inferred / max(executions, 1), "rss_mb_before": rss0, "rss_mb_after": rss_mb(pid),
            "rss_mb_samples": rss, "cpu_ms_client": 1e3 * cpu[0] / n, "cpu_ms_server_loop": 1e3 * cpu[1] / n,
            "cpu_ms_server_replicas": 1e3 * cpu[2] / n, "load_average": os.getloadavg()[0]}


def print_row(row):
    line = (f"  {row['protocol']:9s} {row['clients']:3d} clients: {row['requests']} requests ({row['errors']} errors) "
            f"{row['images_per_s']:.1f} images/s = {row['ratio']:.2f}x in process; p50 {row['p50_ms']:.1f} ms, "
            f"p99 {row['p99_ms']:.1f} ms; avg batch {row['avg_batch']:.1f}; RSS {row['rss_mb_before']:.0f} -> "
            f"{row['rss_mb_after']:.0f} MB; CPU ms per image: server loop {row['cpu_ms_server_loop']:.3f}, "
            f"replicas {row['cpu_ms_server_replicas']:.3f}, client {row['cpu_ms_client']:.3f} (in process "
            f"{row['in_process_cpu_ms']:.3f}: {row['cpu_ratio']:.2f}x; server alone {row['server_cpu_ratio']:.2f}x)")
    if "noop_requests_per_s" in row:
        line += (f"\n  {'':9s} {row['clients']:3d} clients, no-op endpoint (the HTTP ceiling, same client and "
                 f"bodies): {row['noop_requests_per_s']:.1f} requests/s; HTTP + model on the same cores: at most "
                 f"{row['bound_ratio']:.2f}x in process; {row['noop_cpu_ms']:.3f} ms CPU per request (client "
                 f"{row['noop_cpu_ms_client']:.3f} + server {row['noop_cpu_ms'] - row['noop_cpu_ms_client']:.3f}): "
                 f"at most {row['cpu_bound_ratio']:.2f}x in CPU time, {row['server_cpu_bound_ratio']:.2f}x server alone")
    print(line, flush=True)


def summarize(results):
    """The median over rounds of each protocol and client count."""
    keys = sorted({(r["protocol"], r["clients"]) for r in results})
    if len({r["round"] for r in results}) < 2:
        return
    print("median over rounds:")
    for protocol, clients in keys:
        rows = [r for r in results if (r["protocol"], r["clients"]) == (protocol, clients)]
        med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]
               if isinstance(rows[0][k], float) and k != "load_average"}
        bound = f", ceiling {med['bound_ratio']:.2f}x" if "bound_ratio" in med else ""
        cpu_bound = f", ceiling {med['cpu_bound_ratio']:.2f}x" if "cpu_bound_ratio" in med else ""
        alone = f", ceiling {med['server_cpu_bound_ratio']:.2f}x" if "server_cpu_bound_ratio" in med else ""
        print(f"  {protocol:9s} {clients:3d} clients: wall {med['ratio']:.2f}x in process{bound} (rounds: "
              + ", ".join(f"{r['ratio']:.2f}" for r in rows) + f"); CPU time {med['cpu_ratio']:.2f}x{cpu_bound} ("
              + ", ".join(f"{r['cpu_ratio']:.2f}" for r in rows) + f"), server alone "
              f"{med['server_cpu_ratio']:.2f}x{alone} "
              f"(server loop {med['cpu_ms_server_loop']:.3f} + replicas {med['cpu_ms_server_replicas']:.3f} + "
              f"client {med['cpu_ms_client']:.3f} ms vs {med['in_process_cpu_ms']:.3f}); p50 {med['p50_ms']:.1f} ms, "
              f"p99 {med['p99_ms']:.1f} ms, avg batch {med['avg_batch']:.1f}", flush=True)


def _metrics(url):
    import httpx
    return httpx.get(url + "/metrics").text


if __name__ == "__main__":
    sys.exit(main())
