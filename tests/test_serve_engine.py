"""The batching engine and app in process: readiness waits for loading and warm-up and drops when a replica
dies (the others keep serving), a failing batch answers 500 without killing its replica, the core plan."""
import json
import os
import sys
import threading
import time

import numpy as np
import pytest
from starlette.testclient import TestClient

sys.path.insert(0, os.path.dirname(__file__))
from serve_helpers import Direct, b64, random_png  # noqa: E402

import vitc  # noqa: E402
from vitc.serve.app import Decoder, Settings, create_app  # noqa: E402
from vitc.serve.codec import RequestError  # noqa: E402
from vitc.serve.engine import EMBED, Engine  # noqa: E402
from vitc.serve.loading import image_gflops  # noqa: E402
from vitc.serve.metrics import Metrics  # noqa: E402
from vitc.serve.server import SMALL_MODEL_GFLOPS, plan_cores  # noqa: E402


class Flaky:
    """A real model whose embed raises what `fail` holds (once), for fault injection."""

    def __init__(self, model):
        self.model, self.fail = model, None
        self.config, self.image_processor = model.config, model.image_processor

    def embed(self, pixels):
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        return self.model.embed(pixels)

    def classify(self, pixels, top_k=5):
        return self.model.classify(pixels, top_k)


def make(replicas, gate=None):
    models = []

    def load(threads):
        if gate is not None:
            gate.wait(30)
        m = Flaky(vitc.ViTForImageClassification.from_pretrained("vitc-digits", threads=threads))
        models.append(m)
        return m

    engine = Engine(load, replicas, 1, max_batch_size=4, max_queue_delay_s=0.001, max_queue=16,
                    metrics=Metrics("vitc-digits"))
    app = create_app(engine, engine.metrics, Settings("vitc-digits", 2 ** 20, 30, 10 ** 7))
    return engine, app, models


def wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_ready_only_after_load_and_warm_up():
    gate = threading.Event()
    engine, app, _ = make(1, gate)
    with TestClient(app) as client:
        engine.start()
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/health/live").status_code == 200
        r = client.post("/v1/embeddings", json={"input": b64(random_png(0))})
        assert r.status_code == 503 and "not ready" in r.json()["error"]["message"]
        gate.set()
        assert wait_for(engine.ready)
        assert client.get("/v2/health/ready").json() == {"ready": True}
    engine.stop(30)


def test_dead_replica_makes_readiness_false_and_the_other_serves():
    engine, app, models = make(2)
    image = random_png(1)
    want = Direct.of("vitc-digits").embedding(image)
    with TestClient(app) as client:
        engine.start()
        assert wait_for(engine.ready)
        for m in models:
            m.fail = SystemExit("injected")  # whichever replica runs the next batch dies
        r = client.post("/v1/embeddings", json={"input": b64(image)})
        assert r.status_code == 500 and "died" in r.json()["error"]["message"]
        assert wait_for(lambda: engine.alive() == 1)
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/health/live").status_code == 200  # one replica still runs
        for m in models:
            m.fail = None
        r = client.post("/v1/embeddings", json={"input": b64(image)})
        assert r.status_code == 200
        np.testing.assert_array_equal(np.float32(r.json()["data"][0]["embedding"]), want)
        assert "vitc_replicas_alive{model=\"vitc-digits\"} 1" in client.get("/metrics").text
    engine.stop(30)


def test_failing_batch_answers_500_and_the_replica_goes_on():
    engine, app, models = make(1)
    with TestClient(app) as client:
        engine.start()
        assert wait_for(engine.ready)
        models[0].fail = MemoryError("injected")
        r = client.post("/v1/embeddings", json={"input": b64(random_png(2))})
        assert r.status_code == 500 and "MemoryError" in r.json()["error"]["message"]
        assert engine.ready() and client.post("/v1/embeddings", json={"input": b64(random_png(2))}).status_code == 200
    engine.stop(30)


def test_replica_decodes_and_preprocesses_a_batch_and_a_bad_image_fails_alone():
    engine, _, models = make(1)
    engine.start()
    assert wait_for(engine.ready)
    processor = models[0].image_processor

    class Picky:  # the model's own processor, refusing 77-pixel-wide images (which vitc.image_io accepts)
        def __call__(self, images, **kw):
            for image in images if isinstance(images, list) else [images]:
                if image.size[0] == 77:
                    raise ValueError("77 pixels wide")
            return processor(images, **kw)
    models[0].image_processor = Picky()
    blobs = [random_png(3, 40, 30), b"not an image", random_png(4, 77, 20), random_png(5, 50, 60)]
    job = engine.submit(EMBED, blobs, prepare=Decoder(lambda i: f"input {i}", 10 ** 7))
    with pytest.raises(RequestError, match="input 1"):  # the first failed image, in request order
        job.wait(30)
    direct = Direct.of("vitc-digits")
    assert job.failed == [False, True, True, False]
    np.testing.assert_array_equal(job.results[0], direct.embedding(blobs[0]))
    np.testing.assert_array_equal(job.results[3], direct.embedding(blobs[3]))
    for i, why in ((1, "input 1"), (2, "input 2: 77 pixels wide")):
        err = job.results[i]
        assert isinstance(err, RequestError) and err.status == 400 and why in err.message, err
    assert engine.metrics.execution_count == 1  # the two good ones ran as one batch
    engine.stop(30)


def test_engine_batches_and_keeps_rows_apart():
    engine, _, _ = make(1)
    engine.start()
    assert wait_for(engine.ready)
    pixels = np.random.default_rng(0).standard_normal((10, 3, 32, 32)).astype(np.float32)
    rows = np.stack(engine.submit(EMBED, list(pixels)).wait(30))
    model = vitc.ViTForImageClassification.from_pretrained("vitc-digits")
    np.testing.assert_array_equal(rows, model.embed(pixels))
    assert engine.metrics.inference_count == 10 and engine.metrics.execution_count >= 3  # max batch 4
    engine.stop(30)
    assert engine.alive() == 0


@pytest.mark.parametrize("replicas, threads, cores, want", [
    (None, None, 8, (1, 8)), (4, None, 8, (4, 2)), (None, 2, 8, (4, 2)), (3, None, 8, (3, 2)),
    (2, 4, 8, (2, 4)), (None, None, 1, (1, 1)),
])
def test_plan_cores(replicas, threads, cores, want):
    assert plan_cores(replicas, threads, cores) == want


@pytest.mark.parametrize("gflops, want", [(0.02, (8, 1)), (0.99, (8, 1)), (1.0, (1, 8)), (35.0, (1, 8)),
                                           (None, (1, 8))])
def test_plan_cores_default_by_model_cost(gflops, want):
    """Left to choose, a model under SMALL_MODEL_GFLOPS per image gets a single-threaded replica per core, a
    larger or unknown one a replica with every core; a layout given is kept whatever the model."""
    assert SMALL_MODEL_GFLOPS == 1.0
    assert plan_cores(None, None, 8, gflops) == want
    assert plan_cores(2, None, 8, gflops) == (2, 4) and plan_cores(None, 4, 8, gflops) == (2, 4)


def test_image_gflops_from_config(tmp_path):
    """The estimate from config.json: the bundled vitc-digits, a two-tower config (its vision tower, image and
    patch sizes as lists), and None where the config lacks a field or cannot be read."""
    h, inter, layers, tokens = 64, 128, 4, (32 // 4) ** 2 + 1  # vitc-digits
    want = layers * tokens * (2 * (4 * h * h + 2 * h * inter) + 4 * tokens * h) / 1e9
    assert image_gflops("vitc-digits") == pytest.approx(want) and want < SMALL_MODEL_GFLOPS
    vision = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "image_size": [224, 224],
              "patch_size": [16, 16]}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip", "vision_config": vision}))
    assert image_gflops(str(tmp_path)) == pytest.approx(34.9, abs=0.1)  # ViT-B/16: about 17.5 GMACs
    del vision["intermediate_size"]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit", **vision}))
    assert image_gflops(str(tmp_path)) is None
    assert image_gflops(str(tmp_path / "missing")) is None


def test_cli_refuses_more_threads_than_cores(capsys):
    from vitc import cli
    assert cli.main(["serve", "--model", "vitc-digits", "--replicas", "1000", "--threads", "1000"]) == 1
    assert "exceed the" in capsys.readouterr().err


@pytest.mark.parametrize("replicas, threads", [(3, 3), (9, None), (None, 9), (0, 1)])
def test_plan_cores_refuses_oversubscription(replicas, threads):
    with pytest.raises(ValueError, match="exceed|>= 1"):
        plan_cores(replicas, threads, 8)


def test_batch_runs_early_when_every_open_connection_has_its_request_queued():
    """A batch that could wait a minute runs as soon as every client that could send one more image has its
    request in the engine (open_connections); each request still gets its own row."""
    connections = [3]
    engine = Engine(lambda t: vitc.ViTForImageClassification.from_pretrained("vitc-digits", threads=t), 1, 1,
                    max_batch_size=64, max_queue_delay_s=60, max_queue=64, metrics=Metrics("vitc-digits"),
                    open_connections=lambda: connections[0])
    engine.start()
    try:
        assert wait_for(engine.ready)
        executions = engine.metrics.execution_count  # the warm-up runs none through the queue
        pixels = np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float32)
        model = vitc.ViTForImageClassification.from_pretrained("vitc-digits")
        want = model.embed(pixels)
        first = engine.submit(EMBED, [pixels[0]])
        second = engine.submit(EMBED, [pixels[1], pixels[2]])
        assert not first.done() and not second.done()  # (a batch of 64 with a minute to fill)
        time.sleep(0.3)
        assert not first.done()  # a third connection could still send: the batch keeps filling
        third = engine.submit(EMBED, [pixels[3]])  # every connection has its request in: run now
        rows = first.wait(30) + second.wait(30) + third.wait(30)
        np.testing.assert_array_equal(np.stack(rows), want[:4])
        assert engine.metrics.execution_count == executions + 1  # the four images as one batch

        connections[0] = 2  # a request's second job (v2 asking embedding and label) is no second client
        one = engine.submit(EMBED, [pixels[4]])
        also = engine.submit(EMBED, [pixels[0]], counted=False)
        time.sleep(0.3)
        assert not one.done() and not also.done()
        last = engine.submit(EMBED, [pixels[1]])  # the second client's request
        np.testing.assert_array_equal(np.stack(one.wait(30) + also.wait(30) + last.wait(30)), want[[4, 0, 1]])
        assert engine.metrics.execution_count == executions + 2 and engine.metrics.inference_count == 7

        gone = engine.submit(EMBED, [pixels[2]])
        engine.cancel(gone)  # its request gave up: its client may send again, and its image is skipped
        one = engine.submit(EMBED, [pixels[3]])
        time.sleep(0.3)
        assert not one.done()
        last = engine.submit(EMBED, [pixels[4]])
        np.testing.assert_array_equal(np.stack(one.wait(30) + last.wait(30)), want[[3, 4]])
        assert not gone.done() and engine.metrics.inference_count == 9
    finally:
        engine.stop(30)
