"""The inference routes' direct path (app.Direct: POST straight to the endpoint, no Starlette) answers exactly
as Starlette's routing of the same endpoints does: status, headers, body and metrics, for good requests and
the hostile ones of test_serve_hostile; and the per-event-loop machinery under it (LoopSide): waiters woken
in bursts, deadlines on one sweep (503 while awaiting several jobs, 408 while reading the body)."""
import asyncio
import os
import sys
import time

import numpy as np
import pytest
from starlette.testclient import TestClient

sys.path.insert(0, os.path.dirname(__file__))
from serve_helpers import b64, random_png  # noqa: E402
from test_serve_engine import make, wait_for  # noqa: E402
from test_serve_hostile import BAD_REQUESTS, GOOD, MODEL, v2  # noqa: E402

import vitc  # noqa: E402
from vitc.serve.app import Deadline, Direct, LoopSide, Settings, create_app  # noqa: E402
from vitc.serve.codec import pack_bytes  # noqa: E402
from vitc.serve.engine import Engine  # noqa: E402
from vitc.serve.metrics import Metrics  # noqa: E402

IMAGE = random_png(11)
BINARY_TAIL = pack_bytes([IMAGE, random_png(12)])
BINARY_HEAD = (b'{"id":"b","inputs":[{"name":"image","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":'
               + str(len(BINARY_TAIL)).encode() + b'}}],"outputs":[{"name":"embedding","parameters":'
               b'{"binary_data":true}},{"name":"label"}]}')

# (method, path, httpx keyword arguments)
GOOD_REQUESTS = [
    ("POST", "/v1/embeddings", {"json": {"input": [b64(IMAGE), GOOD], "model": MODEL}}),
    ("POST", "/v1/embeddings", {"json": {"input": "data:image/png;base64," + GOOD, "encoding_format": "base64"}}),
    ("POST", "/classify", {"json": {"inputs": [GOOD, b64(IMAGE)], "parameters": {"top_k": 2}}}),
    ("POST", "/classify", {"content": IMAGE, "headers": {"content-type": "image/png"}}),
    ("POST", f"/v2/models/{MODEL}/infer", {"json": dict(v2([GOOD, b64(IMAGE)]), id="x")}),
    ("POST", f"/v2/models/{MODEL}/versions/1/infer", {"json": dict(v2([GOOD]), outputs=[{"name": "score"}])}),
    ("POST", f"/v2/models/{MODEL}/infer", {"content": BINARY_HEAD + BINARY_TAIL,
                                          "headers": {"Inference-Header-Content-Length": str(len(BINARY_HEAD))}}),
]
OTHER_REQUESTS = [
    ("POST", "/v1/embeddings", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("POST", f"/v2/models/{MODEL}/infer", {"content": b'{"inputs": []}',
                                          "headers": {"Inference-Header-Content-Length": "999"}}),
    ("POST", "/classify", {"content": b"x" * (2 ** 20 + 1), "headers": {"content-type": "image/png"}}),  # 413
    ("POST", "/classify", {"json": {"inputs": GOOD, "parameters": {"candidate_labels": ["a", "b"]}}}),
    ("POST", "/v2/models/x/infer/more", {"json": {}}),  # no route: 404 from Starlette, both ways
    ("GET", "/v1/embeddings", {}),  # 405 from Starlette, both ways
    ("GET", f"/v2/models/{MODEL}", {}),
    ("GET", "/v2/health/ready", {}),
]
CASES = GOOD_REQUESTS + OTHER_REQUESTS + [("POST", path, {"json": body}) for path, body, _, _ in BAD_REQUESTS.values()]


@pytest.fixture(scope="module")
def served():
    engine, app, _ = make(1)
    assert isinstance(app, Direct)
    engine.start()
    assert wait_for(engine.ready)
    yield engine, app
    engine.stop(30)


def answer(client, engine, method, path, kwargs):
    before = dict(engine.metrics.requests), engine.metrics.inference_count
    r = client.request(method, path, **kwargs)
    counted = {k: v - before[0].get(k, 0) for k, v in engine.metrics.requests.items() if v != before[0].get(k, 0)}
    return r.status_code, r.headers.multi_items(), r.content, counted, engine.metrics.inference_count - before[1]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_direct_path_answers_as_starlette_routing_does(served, case):
    engine, app = served
    method, path, kwargs = CASES[case]
    with TestClient(app) as direct, TestClient(app.app) as routed:
        got, want = answer(direct, engine, method, path, kwargs), answer(routed, engine, method, path, kwargs)
    assert got[:4] == want[:4]  # status, headers, body, requests counted by endpoint and code
    if CASES[case] in GOOD_REQUESTS:  # images inferred (a refused request may answer before its other images ran)
        assert got[0] == 200 and got[4] == want[4] > 0


def test_client_gone_mid_body_is_a_499_both_ways(served):
    """uvicorn's http.disconnect while the body is read: status 499 counted, as Starlette's Request did."""
    engine, app = served

    async def call(target):
        messages = iter([{"type": "http.request", "body": b'{"input": ["', "more_body": True},
                         {"type": "http.disconnect"}])
        sent = []

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message)
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/embeddings", "raw_path": b"/v1/embeddings", "root_path": "",
                 "query_string": b"", "headers": [(b"content-type", b"application/json"), (b"content-length", b"900")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        await target(scope, receive, send)
        return sent

    for target in (app, app.app):
        before = engine.metrics.requests.get(("embeddings", 499), 0)
        sent = asyncio.run(call(target))
        assert sent[0]["status"] == 499 and sent[1]["body"] == b""
        assert engine.metrics.requests[("embeddings", 499)] == before + 1


def test_good_requests_answer_200_with_their_rows(served):
    engine, app = served
    with TestClient(app) as client:
        for method, path, kwargs in GOOD_REQUESTS:
            assert client.request(method, path, **kwargs).status_code == 200
        r = client.request(*GOOD_REQUESTS[-1][:2], **GOOD_REQUESTS[-1][2])
    head = int(r.headers["inference-header-content-length"])
    rows = np.frombuffer(r.content[head:], "<f4").reshape(2, -1)
    from serve_helpers import Direct as Reference
    np.testing.assert_array_equal(rows[0], Reference.of(MODEL).embedding(IMAGE))


class Slow:
    """A model whose forwards take `seconds` (the deadline passes while a request awaits them)."""

    def __init__(self, model, seconds):
        self.model, self.seconds = model, seconds
        self.config, self.image_processor = model.config, model.image_processor

    def embed(self, pixels):
        time.sleep(self.seconds)
        return self.model.embed(pixels)

    def classify(self, pixels, top_k=5):
        time.sleep(self.seconds)
        return self.model.classify(pixels, top_k)


def test_deadline_passing_while_awaiting_two_jobs_answers_503_both_ways():
    slow = []

    def load(threads):
        slow.append(Slow(vitc.ViTForImageClassification.from_pretrained(MODEL, threads=threads), 0.0))
        return slow[-1]
    engine = Engine(load, 1, 1, max_batch_size=4, max_queue_delay_s=0.001, max_queue=16, metrics=Metrics(MODEL))
    app = create_app(engine, engine.metrics, Settings(MODEL, 2 ** 20, 0.3, 10 ** 7))
    engine.start()
    try:
        assert wait_for(engine.ready)
        slow[0].seconds = 0.8
        for target in (app, app.app):
            with TestClient(target) as client:
                started = time.monotonic()
                r = client.post(f"/v2/models/{MODEL}/infer", json=v2([GOOD]))  # embedding and label: two jobs
                took = time.monotonic() - started
            assert r.status_code == 503, r.text
            assert r.json() == {"error": "no result within the request timeout of 0.3 s"}
            assert r.headers["retry-after"] == "1"
            assert 0.3 <= took < 0.3 + LoopSide.TICK_S + 0.5
        assert engine.metrics.requests == {("v2_infer", 503): 2}
    finally:
        engine.stop(30)


def test_loop_side_settles_a_burst_with_one_wake_up():
    class Counting:
        def __init__(self, loop):
            self.loop, self.calls = loop, 0

        def call_soon_threadsafe(self, callback):
            self.calls += 1
            return self.loop.call_soon_threadsafe(callback)

    async def scenario():
        loop = asyncio.get_running_loop()
        side = LoopSide(Counting(loop))
        waiters = [loop.create_future() for _ in range(50)]
        waiters[7].cancel()  # its request gave up: skipped
        for w in waiters:
            side.settle([w])  # no await in between: the drain cannot run yet
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert all(w.done() for w in waiters) and side.loop.calls == 1
        side.settle([loop.create_future()])
        assert side.loop.calls == 2  # the next burst wakes the loop again
    asyncio.run(scenario())


def test_loop_side_cancels_only_passed_deadlines():
    async def scenario():
        loop = asyncio.get_running_loop()
        side = LoopSide.of(loop)
        assert LoopSide.of(loop) is side

        async def request(seconds, forget_after=None):
            deadline = Deadline(time.monotonic() + seconds)
            side.watch(deadline)
            try:
                await asyncio.sleep(forget_after if forget_after is not None else 10)
                return "done"
            except asyncio.CancelledError:
                if not deadline.caught():
                    raise
                return "timed out"
            finally:
                side.forget(deadline)

        started = time.monotonic()
        got = await asyncio.gather(request(0.1), request(0.2), request(5, forget_after=0.3), request(0.5, 0.05))
        assert got == ["timed out", "timed out", "done", "done"]
        assert time.monotonic() - started < 0.3 + 2 * LoopSide.TICK_S + 0.5
        assert not side.deadlines
        await asyncio.sleep(2 * LoopSide.TICK_S)
        assert side.timer is None  # nothing left to watch: no timer runs
    asyncio.run(scenario())
