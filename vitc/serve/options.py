"""Command-line options of `vitc serve` (kept apart from server.py so `vitc --help` imports no web stack)."""
DEFAULT_PORT = 8000


def add_serve_arguments(p, default_model):
    p.add_argument("--model", default=default_model, help=f"Hub repo id or local folder (default {default_model})")
    p.add_argument("--name", default=None, help="model name in the URLs (default: the folder / repo name)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"(default {DEFAULT_PORT})")
    p.add_argument("--dtype", default=None, choices=("float32", "fp32", "bfloat16", "bf16", "int8"),
                   help="weights of the encoder layers: float32 (default), bfloat16 or int8")
    p.add_argument("--replicas", type=int, default=None,
                   help="model copies, each with its own threads (default: fits the cores with --threads; neither given: one per core for a model under 1 GFLOP per image, else one)")
    p.add_argument("--threads", type=int, default=None,
                   help="kernel threads per replica; replicas x threads <= cores (default: cores / replicas)")
    p.add_argument("--max-batch-size", type=int, default=8, help="images per forward (default 8)")
    p.add_argument("--max-queue-delay-ms", type=float, default=5.0,
                   help="how long the oldest image waits for a batch to fill (default 5 ms; less once every open "
                        "connection has its request queued)")
    p.add_argument("--max-queue", type=int, default=256, help="images waiting before 429 (default 256)")
    p.add_argument("--max-body-mb", type=float, default=16.0, help="request body limit, 413 above (default 16)")
    p.add_argument("--max-image-pixels", type=int, default=40_000_000,
                   help="decoded image size limit, 400 above (default 40e6, ~ 6300 x 6300)")
    p.add_argument("--request-timeout-s", type=float, default=30.0,
                   help="body upload + queue + compute deadline (checked every 50 ms): 408 while uploading, 503 after "
                        "(default 30)")
    p.add_argument("--top-k", type=int, default=5, help="labels per image when a request does not say")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--access-log", action="store_true", help="log every request (uvicorn's access log)")
