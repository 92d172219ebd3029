"""The HTTP side of `vitc serve`: routes for Open Inference Protocol v2, OpenAI-shaped embeddings, HF-shaped
classification, health and Prometheus metrics (Starlette's table; POSTs to the inference routes skip
Starlette's layers, see Direct).

A request's life: body read under a size cap and the request deadline (413 / 408), parsed (400 naming the
item), its encoded images queued (429 when full, 503 when draining), decoded with vitc.image_io's checks and
preprocessed by the replica that runs their batch (400 naming the image), awaited until the deadline (503),
answered. Per request the event loop runs no timer of its own and no thread hop; replicas wake it once per
burst of finished requests (LoopSide).
"""
import asyncio
import base64
import json
import logging
import threading
import time
import weakref

import numpy as np
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..families.two_tower import label_prompts
from ..image_io import ImageLoadError, load_image_bytes
from ..modeling import l2_normalize
from . import codec
from .codec import RequestError
from .engine import CLASSIFY, EMBED, EMBED_TEXT, NotAccepting, QueueFull

log = logging.getLogger("vitc.serve")


class Settings:
    def __init__(self, model_name, max_body_bytes, request_timeout_s, max_image_pixels, default_top_k=5):
        self.model_name = model_name
        self.max_body_bytes = max_body_bytes
        self.request_timeout_s = request_timeout_s
        self.max_image_pixels = max_image_pixels
        self.default_top_k = default_top_k


def create_app(engine, metrics, settings, lifespan=None):
    name = settings.model_name
    no_result = f"no result within the request timeout of {settings.request_timeout_s:g} s"

    # ---- shared steps --------------------------------------------------------------------------------
    async def read_body(request, deadline):
        declared = request.headers.get("content-length", "")
        limit = settings.max_body_bytes
        if declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"the body of {declared} bytes is over the limit of {limit}")
        chunks, size, more = [], 0, True
        try:
            while more:  # usually one message: the whole body
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunk, more = message.get("body", b""), message.get("more_body", False)
                size += len(chunk)
                if size > limit:
                    raise RequestError(413, f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)
        except asyncio.CancelledError:
            if not deadline.caught():
                raise
            raise RequestError(408, f"the request body did not arrive within {settings.request_timeout_s:g} s") from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def run(task, blobs, what, deadline, top_k=None, counted=True):
        """Queue encoded images (decoded by the replicas) and wait for each one's result (a list, in order)."""
        if engine.processor is None or not engine.loaded():  # a dead replica or draining: the others still serve
            raise RequestError(503, "the model is not ready")
        return await queue_and_wait(task, blobs, deadline, top_k, Decoder(what, settings.max_image_pixels), counted)

    async def queue_and_wait(task, inputs, deadline, top_k=None, prepare=None, counted=True):
        """Queue images (preprocessed, or encoded with prepare) or EMBED_TEXT strings and wait for each one's
        result, in order; the first failed image (in request order) fails the request. counted=False: the
        request's second job (engine.submit)."""
        if not engine.loaded():
            raise RequestError(503, "the model is not ready")
        if len(inputs) > engine.max_queue:
            raise RequestError(413, f"{len(inputs)} inputs in one request; the limit is {engine.max_queue}")
        side = deadline.side
        waiter = side.loop.create_future()
        try:
            job = engine.submit(task, inputs, top_k, prepare, side.wake, waiter, counted)
        except QueueFull as err:
            raise RequestError(429, str(err)) from None
        except NotAccepting as err:
            raise RequestError(503, str(err)) from None
        try:
            await waiter
        except asyncio.CancelledError:  # the deadline (see Deadline), or the task was cancelled otherwise
            engine.cancel(job)
            if not deadline.caught():
                raise
            raise RequestError(503, no_result) from None
        return job.outcome()

    def check_model(model, version=None):
        if model != name or version not in (None, "1"):
            shown = model if version is None else f"{model} version {version}"
            raise RequestError(404, f"unknown model {shown!r}; this server serves {name!r}")

    def need_classifier():
        if not engine.info["can_classify"]:
            zero_shot = " without the labels to choose from (parameters.candidate_labels)"
            raise RequestError(400, f"model {name!r} classifies zero-shot only: it was called" + zero_shot
                               if engine.info["zero_shot"] else
                               f"model {name!r} has no classification head (embeddings only)")

    def need_text_tower():
        if engine.info is None:
            raise RequestError(503, "the model is not ready")
        if not engine.info["zero_shot"]:
            raise RequestError(400, f"model {name!r} has no text tower: it embeds and classifies images only")

    async def zero_shot(blobs, what, deadline, labels, template, top_k):
        """Per image [(label, score)] over `labels`: both towers run batched in the engine, the scores here."""
        need_text_tower()
        try:
            labels, prompts = label_prompts(labels, template)
        except (TypeError, ValueError) as err:
            raise RequestError(400, f"parameters: {err}") from None
        images, texts = await asyncio.gather(run(EMBED, blobs, what, deadline),
                                             queue_and_wait(EMBED_TEXT, prompts, deadline, counted=False))
        return engine.rank_labels(l2_normalize(np.stack(texts)), l2_normalize(np.stack(images)), labels, top_k)

    def endpoint(label, handler, openai=False):
        async def wrapped(request):
            started = time.monotonic()
            clock = LoopSide.of(asyncio.get_running_loop())
            deadline = Deadline(started + settings.request_timeout_s, clock)
            clock.watch(deadline)
            try:
                response = await handler(request, deadline)
            except asyncio.CancelledError:
                if not deadline.caught():  # else passed while awaiting several jobs at once (asyncio.gather)
                    raise
                response = error_response(503, no_result, openai)
            except RequestError as err:
                response = error_response(err.status, err.message, openai)
            except ClientDisconnect:
                metrics.request(label, 499, time.monotonic() - started)  # nginx's "client closed request"
                return Response(status_code=499)
            except Exception as err:  # noqa: BLE001 - a bug answers 500 and is logged; the server goes on
                log.exception("%s failed", label)
                response = error_response(500, f"internal error: {type(err).__name__}: {err}", openai)
            finally:
                clock.forget(deadline)
            metrics.request(label, response.status_code, time.monotonic() - started)
            return response
        return wrapped

    # ---- health and metadata ---------------------------------------------------------------------------
    async def live(request, deadline):
        ok = not (engine.loaded() and engine.alive() == 0)  # every replica died: restart this process
        return JSONResponse({"live": ok}, status_code=200 if ok else 503)

    async def ready(request, deadline):
        ok = engine.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_metadata(request, deadline):
        from .. import __version__
        return JSONResponse({"name": "vitc", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def model_ready(request, deadline):
        check_model(request.path_params["name"], request.path_params.get("version"))
        return await ready(request, deadline)

    async def model_metadata(request, deadline):
        check_model(request.path_params["name"], request.path_params.get("version"))
        if engine.info is None:
            raise RequestError(503, "the model is still loading")
        outputs = [{"name": "embedding", "datatype": "FP32", "shape": [-1, engine.info["embedding_dim"]]}]
        if engine.info["can_classify"]:
            outputs += [{"name": "label", "datatype": "BYTES", "shape": [-1, -1]},
                        {"name": "score", "datatype": "FP32", "shape": [-1, -1]}]
        inputs = [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
        if engine.info["zero_shot"]:  # one of the two per request
            inputs.append({"name": "text", "datatype": "BYTES", "shape": [-1]})
        return JSONResponse({"name": name, "versions": ["1"], "platform": "vitc", "inputs": inputs,
                             "outputs": outputs})

    async def prometheus(request, deadline):
        gauges = {"vitc_queue_size": ("Images waiting in the queue.", engine.queued()),
                  "vitc_replicas_alive": ("Replica threads running.", engine.alive()),
                  "vitc_ready": ("1 when every replica is loaded, warmed and alive.", int(engine.ready()))}
        return PlainTextResponse(metrics.render(gauges), media_type="text/plain; version=0.0.4")

    # ---- inference -------------------------------------------------------------------------------------
    async def v2_infer(request, deadline):
        check_model(request.path_params["name"], request.path_params.get("version"))
        body = await read_body(request, deadline)
        req, binary = codec.v2_request(body, request.headers.get(codec.V2_HEADER))
        inputs = req.get("inputs")
        text = isinstance(inputs, list) and len(inputs) == 1 and isinstance(inputs[0], dict) \
            and inputs[0].get("name") == "text"  # a two-tower model's text tower: embeddings only
        if text:
            need_text_tower()
        blobs = codec.v2_images(req, binary, text)
        what = str(req["inputs"][0].get("name"))
        params = req.get("parameters") or {}
        if not isinstance(params, dict):
            raise RequestError(400, f"'parameters' must be an object, got {codec.json_type(params)}")
        available = ["embedding"] + (["label", "score"] if engine.info and engine.info["can_classify"]
                                     and not text else [])
        requested = req.get("outputs")
        if requested is None:
            requested = [{"name": n} for n in available]
        if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
            raise RequestError(400, "'outputs' must be an array of objects")
        wanted, binary_out = [], {}
        for out in requested:
            if out.get("name") not in available:
                raise RequestError(400, f"unknown output {out.get('name')!r}; model {name!r} has {available}")
            wanted.append(out["name"])
            oparams = out.get("parameters") or {}
            binary_out[out["name"]] = bool(oparams.get("binary_data", params.get("binary_data_output", False)))
        top_k = codec.top_k_of(params.get("top_k"), settings.default_top_k, "parameters.top_k")
        label = f"input {what!r} item"
        jobs = {}
        if "embedding" in wanted:
            jobs[EMBED] = (queue_and_wait(EMBED_TEXT, blobs, deadline) if text else
                           run(EMBED, blobs, lambda i: f"{label} {i}", deadline))
        if "label" in wanted or "score" in wanted:
            need_classifier()
            jobs[CLASSIFY] = run(CLASSIFY, blobs, lambda i: f"{label} {i}", deadline, top_k, counted=not jobs)
        if len(jobs) == 1:  # no task for gather to make
            results = {task: await job for task, job in jobs.items()}
        else:
            results = dict(zip(jobs, await asyncio.gather(*jobs.values())))
        arrays = {}
        if EMBED in results:
            arrays["embedding"] = ("FP32", np.stack(results[EMBED]).astype(np.float32))
        if CLASSIFY in results:
            ranked = results[CLASSIFY]
            arrays["label"] = ("BYTES", np.array([[lab for lab, _ in r] for r in ranked], dtype=object))
            arrays["score"] = ("FP32", np.array([[s for _, s in r] for r in ranked], dtype=np.float32))
        entries, blobs_out = codec.v2_response([(n,) + arrays[n] for n in wanted], binary_out)
        answer = {"model_name": name, "model_version": "1", "outputs": entries}
        if "id" in req:
            answer["id"] = req["id"]
        head = codec.to_json(answer)
        if not blobs_out:
            return Answer(head)
        return Answer(head + b"".join(blobs_out), content_type=b"application/octet-stream",
                      headers=[(b"inference-header-content-length", b"%d" % len(head))])

    async def embeddings(request, deadline):
        req = codec.parse_json(await read_body(request, deadline))
        if not isinstance(req, dict):
            raise RequestError(400, f"the request must be a JSON object, got {codec.json_type(req)}")
        if req.get("model") is not None:
            if not isinstance(req["model"], str):
                raise RequestError(400, f"'model' must be a string, got {codec.json_type(req['model'])}")
            check_model(req["model"])
        encoding = req.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise RequestError(400, f"encoding_format must be 'float' or 'base64', got {json.dumps(encoding)}")
        if "input" not in req:
            raise RequestError(400, "'input' is required: an image (data URI or base64) or an array of them")
        modality = req.get("modality", "image")  # infinity's field; "text" needs a two-tower model
        if modality not in ("image", "text"):
            raise RequestError(400, f"modality must be 'image' or 'text', got {json.dumps(modality)}")
        items, _ = codec.list_of(req["input"], "input")
        if modality == "text":
            need_text_tower()
            for i, item in enumerate(items):
                if not isinstance(item, str):
                    raise RequestError(400, f"input {i}: a text must be a string, got {codec.json_type(item)}")
            rows = await queue_and_wait(EMBED_TEXT, items, deadline)
        else:
            blobs = [codec.image_from_string(s, f"input {i}") for i, s in enumerate(items)]
            rows = await run(EMBED, blobs, lambda i: f"input {i}", deadline)
        data = []
        for i, row in enumerate(rows):
            vector = (base64.b64encode(np.asarray(row, "<f4").tobytes()).decode() if encoding == "base64"
                      else np.asarray(row, np.float32))
            data.append({"object": "embedding", "index": i, "embedding": vector})
        return json_response({"object": "list", "data": data, "model": name,
                              "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    async def classify(request, deadline):
        body = await read_body(request, deadline)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        top_k, many, labels, template = settings.default_top_k, False, None, "a photo of {}."
        if kind == "application/json":
            req = codec.parse_json(body)
            if not isinstance(req, dict) or "inputs" not in req:
                raise RequestError(400, "expected a JSON object {\"inputs\": image or [images], "
                                        "\"parameters\": {\"top_k\": k}}, or the raw image bytes as the body")
            params = req.get("parameters") or {}
            if not isinstance(params, dict):
                raise RequestError(400, f"'parameters' must be an object, got {codec.json_type(params)}")
            top_k = codec.top_k_of(params.get("top_k"), top_k, "parameters.top_k")
            labels = params.get("candidate_labels", params.get("labels"))  # HF zero-shot's name, or labels
            template = params.get("hypothesis_template", template)
            items, many = codec.list_of(req["inputs"], "inputs")
            blobs = [codec.image_from_string(s, f"inputs {i}") for i, s in enumerate(items)]
        else:
            blobs = [body]
        what = (lambda i: f"inputs {i}") if kind == "application/json" else (lambda i: "the request body")
        if labels is not None:
            ranked = await zero_shot(blobs, what, deadline, labels, template, top_k)
        else:
            need_classifier()
            ranked = await run(CLASSIFY, blobs, what, deadline, top_k)
        answer = [[{"label": lab, "score": s} for lab, s in r] for r in ranked]
        return json_response(answer if many else answer[0])

    async def not_found(request, exc):
        return error_response(404, f"no route {request.method} {request.url.path}", False)

    routes = [
        Route("/v2/health/live", endpoint("live", live)),
        Route("/v2/health/ready", endpoint("ready", ready)),
        Route("/v2", endpoint("server_metadata", server_metadata)),
        Route("/v2/models/{name}", endpoint("model_metadata", model_metadata)),
        Route("/v2/models/{name}/versions/{version}", endpoint("model_metadata", model_metadata)),
        Route("/v2/models/{name}/ready", endpoint("model_ready", model_ready)),
        Route("/v2/models/{name}/versions/{version}/ready", endpoint("model_ready", model_ready)),
        Route("/v2/models/{name}/infer", endpoint("v2_infer", v2_infer), methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", endpoint("v2_infer", v2_infer), methods=["POST"]),
        Route("/v1/embeddings", endpoint("embeddings", embeddings, openai=True), methods=["POST"]),
        Route("/classify", endpoint("classify", classify), methods=["POST"]),
        Route("/metrics", endpoint("metrics", prometheus)),
    ]
    return Direct(Starlette(routes=routes, exception_handlers={404: not_found}, lifespan=lifespan))


class Direct:
    """The ASGI app: POST to an inference route goes straight to its endpoint (the same function, found with
    the same route regex, as Starlette would call), everything else through Starlette (health, metadata,
    metrics, lifespan, 404 and 405). Starlette's middleware, router and Request cost about as much Python per
    request as the rest of the handler, which for a small model is as much as the model's own work."""

    def __init__(self, app):
        self.app = app
        self.routes = [(r.path_regex, r.param_convertors, r.endpoint) for r in app.routes if "POST" in r.methods]

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            for regex, convertors, endpoint in self.routes:
                match = regex.match(path)
                if match:
                    params = {k: convertors[k].convert(v) for k, v in match.groupdict().items()}
                    response = await endpoint(RawRequest(scope, receive, params))
                    await send({"type": "http.response.start", "status": response.status_code,
                                "headers": response.raw_headers})
                    await send({"type": "http.response.body", "body": response.body})
                    return
        await self.app(scope, receive, send)


class RawRequest:
    """What the endpoints read of a request, as starlette.requests.Request gives it: path_params, headers.get
    and receive."""
    __slots__ = ("receive", "path_params", "headers")

    def __init__(self, scope, receive, path_params):
        self.receive, self.path_params, self.headers = receive, path_params, RawHeaders(scope["headers"])


class Decoder:
    """The engine's prepare for encoded images: decode one with vitc.image_io's checks, and name it in the
    400 when it cannot be decoded or preprocessed (the replica preprocesses a batch of decoded images)."""

    def __init__(self, what, max_image_pixels):
        self.what, self.max_image_pixels = what, max_image_pixels

    def __call__(self, index, blob):
        try:
            return load_image_bytes(blob, self.what(index), self.max_image_pixels)
        except (ImageLoadError, ValueError, TypeError) as err:
            raise self.refuse(index, err) from None

    def refuse(self, index, err):
        if not isinstance(err, (ImageLoadError, ValueError, TypeError)):
            return err  # a bug or MemoryError: 500
        label, text = self.what(index), str(err)
        return RequestError(400, text if label in text else f"{label}: {text}")


class Deadline:
    """When a request must be answered by (time.monotonic()); LoopSide.sweep cancels its task once past (an
    await that sees the CancelledError with `passed` set answers 408 / 503). side: the LoopSide watching."""
    __slots__ = ("at", "task", "passed", "side")

    def __init__(self, at, side=None):
        self.at, self.task, self.passed, self.side = at, None, False, side

    def caught(self):
        """In an `except CancelledError`: True when the cancellation was this deadline's, now answered (the
        task uncancelled, Task.uncancel on Python 3.11+); False when it is to be re-raised."""
        if not self.passed:
            return False
        if hasattr(self.task, "uncancel"):
            self.task.uncancel()
        return True


class LoopSide:
    """What requests share per event loop, to spare it per-request work that costs as much as a small model's:
    - waiters settled from replica threads with one call_soon_threadsafe per burst: a replica finishing a
      batch of 16 requests wakes the loop once (Engine calls wake once per batch), not 16 times (each a write
      to the loop's wake-up fd and a thread switch);
    - deadlines checked every TICK_S by one timer (asyncio.timeout arms and cancels a timer per request:
      a fifth of the loop's Python work per request): a request's task is cancelled at most TICK_S late."""
    TICK_S = 0.05
    _of = weakref.WeakKeyDictionary()

    def __init__(self, loop):
        self.loop, self.ready, self.lock = loop, [], threading.Lock()
        self.deadlines, self.timer = {}, None  # in the order they were set: the order they pass (one timeout)

    @classmethod
    def of(cls, loop):
        side = cls._of.get(loop)
        if side is None:
            side = cls._of[loop] = cls(loop)
        return side

    def wake(self, jobs):
        """The engine's waker (from a replica thread, once per batch): settle the jobs' waiters."""
        self.settle([job.waiter for job in jobs])

    def settle(self, waiters):
        """From any thread: waiter.set_result(None) on the loop, soon, for each waiter."""
        with self.lock:
            first = not self.ready
            self.ready += waiters
        if first:  # else a drain is scheduled and has not taken the list yet: it settles these too
            self.loop.call_soon_threadsafe(self.drain)

    def drain(self):
        with self.lock:
            ready, self.ready = self.ready, []
        for waiter in ready:
            if not waiter.done():  # cancelled: its request timed out
                waiter.set_result(None)

    def watch(self, deadline):
        """Cancel the current task once `deadline` has passed, unless forgotten before."""
        deadline.task = asyncio.current_task()
        self.deadlines[deadline] = None
        if self.timer is None:
            self.timer = self.loop.call_later(self.TICK_S, self.sweep)

    def forget(self, deadline):
        self.deadlines.pop(deadline, None)

    def sweep(self):
        now, passed = time.monotonic(), []
        for deadline in self.deadlines:
            if deadline.at > now:
                break
            passed.append(deadline)
        for deadline in passed:
            del self.deadlines[deadline]
            deadline.passed = True
            deadline.task.cancel()
        self.timer = self.loop.call_later(self.TICK_S, self.sweep) if self.deadlines else None


class Answer:
    """A complete response (status, body, content type and any extra headers), as starlette's Response with
    none of its per-response header work: Direct sends it itself, Starlette calls it (ASGI)."""
    __slots__ = ("status_code", "body", "raw_headers")

    def __init__(self, body, status_code=200, content_type=b"application/json", headers=()):
        self.status_code, self.body = status_code, body
        self.raw_headers = [(b"content-length", b"%d" % len(body)), (b"content-type", content_type), *headers]

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(value):
    """A 200 JSON answer whose float32 arrays are written fast and exactly (codec.to_json)."""
    return Answer(codec.to_json(value))


class RawHeaders:
    """get(name): the first value of a header, any case (as starlette.datastructures.Headers.get)."""

    def __init__(self, raw):
        self.raw = raw

    def get(self, key, default=None):
        key = key.lower().encode("latin-1")
        for name, value in self.raw:
            if name == key:
                return value.decode("latin-1")
        return default


def error_response(status, message, openai=False):
    headers = [(b"retry-after", b"1")] if status in (429, 503) else ()
    if openai:
        body = {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                          "code": status}}
    else:
        body = {"error": message}
    return Answer(codec.to_json(body), status, headers=headers)
