"""`vitc serve`: an HTTP inference server for any model vitc loads (extra `vitc[serve]`: Starlette + uvicorn).

Protocols: Open Inference Protocol v2 (/v2/...), OpenAI-shaped POST /v1/embeddings, POST /classify and
Prometheus GET /metrics. Concurrent requests are coalesced into batches (engine.py) run by R replicas, each
its own model object with T kernel threads (R x T <= cores).

Importing this package is cheap: Starlette and uvicorn are imported by app.py / server.py only.
"""
from .loading import load_model

__all__ = ["load_model"]
