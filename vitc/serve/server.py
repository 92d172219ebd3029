"""`vitc serve`: wire the engine, the app and uvicorn together; SIGTERM drains in-flight requests, then exits.

    vitc serve --model ID_OR_DIR [--replicas R] [--threads T] [--max-batch-size B] [--max-queue-delay-ms D] ...
"""
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading

log = logging.getLogger("vitc.serve")


# Below this many GFLOPs per image the default is one single-threaded replica per core, above it one replica
# with every core. A forward this short spends more on waking and joining its kernel threads than they save:
# vitc-digits (0.02 GFLOPs) took 0.64-0.78 ms CPU per image in 1 x 2 against 0.36-0.39 in 2 x 1 (served at 32
# clients: 940-1240 against 1450-1620 images/s); ViT-Ti/16 (2.5 GFLOPs) 22.4 against 21.1 ms, where one
# replica keeps half the latency for 6 % more CPU (2 cores, docs/deploy.md).
SMALL_MODEL_GFLOPS = 1.0


def plan_cores(replicas, threads, cores, gflops=None):
    """(replicas, threads) with replicas x threads <= cores; the defaults fill the machine: one replica per
    core for a model of fewer than SMALL_MODEL_GFLOPS per image (`gflops`, None: unknown), else one replica
    with every core."""
    for flag, value in (("--replicas", replicas), ("--threads", threads)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if replicas is None and threads is None:
        small = gflops is not None and gflops < SMALL_MODEL_GFLOPS
        replicas, threads = (cores, 1) if small else (1, cores)
    elif threads is None:
        threads = max(1, cores // replicas)
    elif replicas is None:
        replicas = max(1, cores // threads)
    if replicas * threads > cores:
        raise ValueError(f"--replicas {replicas} x --threads {threads} = {replicas * threads} threads exceed the "
                         f"{cores} cores this process may use (OMP_NUM_THREADS / affinity / cgroup quota)")
    return replicas, threads


def served_name(model, name=None):
    return name or os.path.basename(os.path.normpath(str(model))) or str(model)


def check_limits(args):
    for flag in ("max_batch_size", "max_queue", "max_image_pixels", "top_k"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    for flag in ("max_queue_delay_ms", "max_body_mb", "request_timeout_s"):
        value = getattr(args, flag)
        if not value >= 0 or (flag != "max_queue_delay_ms" and value == 0):
            raise ValueError(f"--{flag.replace('_', '-')} must be > 0, got {value}")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be 1..65535, got {args.port}")


def main(args):
    try:
        import uvicorn
        import orjson  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as err:
        print(f"vitc serve needs the serve extra ({err.name} is missing): pip install 'vitc[serve]'", file=sys.stderr)
        return 2
    from ..runtime import default_num_threads
    from .app import Settings, create_app
    from .engine import Engine
    from .loading import image_gflops, load_model
    from .metrics import Metrics

    check_limits(args)
    gflops = image_gflops(args.model) if args.replicas is None and args.threads is None else None
    replicas, threads = plan_cores(args.replicas, args.threads, default_num_threads(), gflops)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    name = served_name(args.model, args.name)
    metrics = Metrics(name)
    engine = Engine(lambda t: load_model(args.model, t, args.dtype), replicas, threads, args.max_batch_size,
                    args.max_queue_delay_ms / 1e3, args.max_queue, metrics)
    settings = Settings(name, int(args.max_body_mb * 2 ** 20), args.request_timeout_s, args.max_image_pixels,
                        default_top_k=args.top_k)
    status = {"code": 0}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        log.info("loading %s as %r: %d replica(s) x %d thread(s)", args.model, name, replicas, threads)
        engine.start()
        watcher = asyncio.get_running_loop().create_task(watch())
        yield
        watcher.cancel()
        engine.stop()  # uvicorn has answered every in-flight request by now; finish anything still queued
        log.info("stopped")

    async def watch():
        """Exit with status 1 when the model cannot be loaded; say once when it is ready."""
        said = False
        while True:
            if engine.failed and not engine.loaded():
                status["code"] = 1
                server.should_exit = True
                return
            if engine.ready() and not said:
                log.info("ready: http://%s:%d/v2/models/%s", args.host, args.port, name)
                said = True
                gc.freeze()  # the models and the web stack, loaded for good: no collection walks them again
            await asyncio.sleep(0.05)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            engine.draining = True  # readiness false at once; in-flight requests still finish
            status["interrupted"] = status.get("interrupted") or sig == signal.SIGINT
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            """uvicorn's, except that a SIGTERM, once drained, exits 0 (uvicorn >= 0.29 re-raises it, so a
            supervisor saw "killed by signal 15" after a clean shutdown); Ctrl-C still ends as SIGINT does."""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            caught = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in caught}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            if status.get("interrupted"):
                signal.raise_signal(signal.SIGINT)

    # X-Forwarded-For is read only for the access log (the app never uses the client's address): without it,
    # uvicorn's proxy-headers middleware is one more coroutine per request; no "server: uvicorn" header either
    config = uvicorn.Config(create_app(engine, metrics, settings, lifespan), host=args.host, port=args.port,
                            log_level=args.log_level, access_log=args.access_log, lifespan="on",
                            proxy_headers=args.access_log, server_header=False)
    server = Server(config)
    # each open connection can hold one request (HTTP/1.1 answers in order): once that many are in the engine,
    # no request can arrive before an answer goes out, and a filling batch runs at once (Engine)
    engine.open_connections = lambda: len(server.server_state.connections)
    server.run()
    return status["code"]
