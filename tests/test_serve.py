"""`vitc serve` as a subprocess on a loopback port, driven by real clients (httpx async, tritonclient[http]):
every response equals the model's own result for its own image, whatever batch it ran in; metadata, health
and /metrics are consistent with what was sent."""
import asyncio
import base64
import os
import sys

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

sys.path.insert(0, os.path.dirname(__file__))
from serve_helpers import Direct, ServerProcess, b64, child_env, metric, random_png  # noqa: E402


MODEL = "vitc-digits"


@pytest.fixture(scope="module")
def server():
    # two replicas x one thread: batches run concurrently on both, the case where rows could get mixed up
    with ServerProcess(child_env(), "--replicas", "2", "--threads", "1", "--max-batch-size", "8",
                       "--max-queue-delay-ms", "20") as proc:
        yield proc


@pytest.fixture(scope="module")
def direct():
    return Direct.of(MODEL)


def test_health_and_metadata(server):
    assert httpx.get(server.url + "/v2/health/live").json() == {"live": True}
    assert httpx.get(server.url + "/v2/health/ready").json() == {"ready": True}
    meta = httpx.get(f"{server.url}/v2/models/{MODEL}").json()
    assert meta["name"] == MODEL and meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: o["shape"] for o in meta["outputs"]}["embedding"] == [-1, 64]
    assert httpx.get(f"{server.url}/v2/models/{MODEL}/ready").status_code == 200
    assert httpx.get(f"{server.url}/v2/models/other/ready").status_code == 404


def test_answers_carry_a_date_and_no_server_header(server):
    r = httpx.post(server.url + "/v1/embeddings", json={"input": b64(random_png(3))})
    assert r.status_code == 200 and "date" in r.headers and "server" not in r.headers
    assert int(r.headers["content-length"]) == len(r.content)


def test_tritonclient_binary_and_json(server, direct):
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    assert client.get_model_metadata(MODEL)["outputs"][0]["name"] == "embedding"
    images = [random_png(seed) for seed in range(5)]
    for binary in (True, False):
        inp = triton.InferInput("image", [len(images)], "BYTES")
        data = images if binary else [b64(x).encode() for x in images]  # JSON: base64 strings
        inp.set_data_from_numpy(np.array(data, dtype=object), binary_data=binary)
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("embedding", "label", "score")]
        result = client.infer(MODEL, [inp], outputs=outputs, parameters={"top_k": 3})
        emb, labels, scores = (result.as_numpy(n) for n in ("embedding", "label", "score"))
        assert emb.dtype == np.float32 and emb.shape == (5, 64) and labels.shape == scores.shape == (5, 3)
        for i, image in enumerate(images):
            np.testing.assert_array_equal(emb[i], direct.embedding(image))
            want = direct.top_k(image, 3)
            got_labels = [x.decode() if isinstance(x, bytes) else x for x in labels[i]]
            assert got_labels == [lab for lab, _ in want]
            np.testing.assert_array_equal(scores[i], np.float32([s for _, s in want]))
    inp = triton.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([images[0]], dtype=object))
    with pytest.raises(InferenceServerException, match="unknown model 'nope'"):
        client.infer("nope", [inp])
    client.close()


def test_openai_embeddings_float_and_base64(server, direct):
    images = [random_png(10 + i) for i in range(3)]
    inputs = ["data:image/png;base64," + b64(images[0]), b64(images[1]), "data:image/png;base64," + b64(images[2])]
    got = httpx.post(server.url + "/v1/embeddings", json={"model": MODEL, "input": inputs}).json()
    assert got["object"] == "list" and [d["index"] for d in got["data"]] == [0, 1, 2]
    packed = httpx.post(server.url + "/v1/embeddings", json={"input": inputs, "encoding_format": "base64"}).json()
    for i, image in enumerate(images):
        want = direct.embedding(image)
        np.testing.assert_array_equal(np.float32(got["data"][i]["embedding"]), want)
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(packed["data"][i]["embedding"]), "<f4"), want)
    one = httpx.post(server.url + "/v1/embeddings", json={"input": b64(images[0])}).json()
    assert len(one["data"]) == 1


def test_classify_json_and_raw_body(server, direct):
    image = random_png(20)
    want = [{"label": lab, "score": s} for lab, s in direct.top_k(image, 2)]
    assert httpx.post(server.url + "/classify", json={"inputs": b64(image), "parameters": {"top_k": 2}}).json() == want
    raw = httpx.post(server.url + "/classify", content=image, headers={"content-type": "image/png"}).json()
    assert raw == [{"label": lab, "score": s} for lab, s in direct.top_k(image, 5)]
    many = httpx.post(server.url + "/classify", json={"inputs": [b64(image)] * 2, "parameters": {"top_k": 2}})
    assert many.json() == [want, want]


async def _hammer(url, images, clients, requests_per_client):
    """clients concurrent connections, each sending requests of 1-3 images to a rotating endpoint."""
    results = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        async def client(c):
            for r in range(requests_per_client):
                idx = [(c * 7 + r * 3 + j) % len(images) for j in range(1 + (c + r) % 3)]
                kind = ("embed", "v2", "classify")[(c + r) % 3]
                if kind == "embed":
                    resp = await http.post("/v1/embeddings", json={"input": [b64(images[i]) for i in idx]})
                elif kind == "v2":
                    resp = await http.post(f"/v2/models/{MODEL}/infer", json={"inputs": [
                        {"name": "image", "datatype": "BYTES", "shape": [len(idx)], "data": [b64(images[i]) for i in idx]}]})
                else:
                    resp = await http.post("/classify", json={"inputs": [b64(images[i]) for i in idx],
                                                              "parameters": {"top_k": 3}})
                results.append((kind, idx, resp.status_code, resp.json()))
        await asyncio.gather(*(client(c) for c in range(clients)))
    return results


def test_concurrent_clients_get_their_own_rows(server, direct):
    images = [random_png(100 + i) for i in range(23)]
    embeddings = [direct.embedding(x) for x in images]
    ranked = [direct.top_k(x, 5) for x in images]
    before = httpx.get(server.url + "/metrics").text
    results = asyncio.run(_hammer(server.url, images, clients=16, requests_per_client=6))
    assert len(results) == 96
    n_images = 0
    for kind, idx, status, body in results:
        assert status == 200, body
        n_images += len(idx) * (2 if kind == "v2" else 1)  # v2 without 'outputs' asks for embedding and top-k
        if kind == "embed":
            for row, i in zip(body["data"], idx):
                np.testing.assert_array_equal(np.float32(row["embedding"]), embeddings[i])
        elif kind == "v2":
            out = {o["name"]: o for o in body["outputs"]}
            emb = np.float32(out["embedding"]["data"]).reshape(out["embedding"]["shape"])
            for row, i in zip(emb, idx):
                np.testing.assert_array_equal(row, embeddings[i])
            labels = np.array(out["label"]["data"]).reshape(out["label"]["shape"])
            for row, i in zip(labels, idx):
                assert list(row) == [lab for lab, _ in ranked[i]]
        else:
            for row, i in zip(body, idx):
                assert row == [{"label": lab, "score": s} for lab, s in ranked[i][:3]]
    after = httpx.get(server.url + "/metrics").text
    inferred = metric(after, "vitc_inference_count_total") - metric(before, "vitc_inference_count_total")
    executions = metric(after, "vitc_execution_count_total") - metric(before, "vitc_execution_count_total")
    assert inferred == n_images
    assert 0 < executions < inferred  # concurrent requests were batched together
    assert metric(after, "vitc_queue_duration_seconds_count") == metric(after, "vitc_inference_count_total")
    assert metric(after, "vitc_compute_duration_seconds_count") == metric(after, "vitc_execution_count_total")
    for endpoint in ("embeddings", "v2_infer", "classify"):
        sent = sum(1 for kind, *_ in results if {"embed": "embeddings", "v2": "v2_infer"}.get(kind, kind) == endpoint)
        delta = (metric(after, "vitc_requests_total", endpoint=endpoint, code=200)
                 - metric(before, "vitc_requests_total", endpoint=endpoint, code=200))
        assert delta == sent
        assert metric(after, "vitc_request_duration_seconds_count", endpoint=endpoint) == \
            sum(metric(after, "vitc_requests_total", endpoint=endpoint, code=c) for c in (200, 400, 404, 413, 429, 503))
    assert metric(after, "vitc_ready") == 1 and metric(after, "vitc_replicas_alive") == 2


def test_batch_runs_once_every_connection_waits_not_after_the_queue_delay(direct):
    """With a queue delay of ten minutes and batches of 64, concurrent clients on keep-alive connections are
    answered (within the client's 30 s timeout): a batch runs once every open connection has its request in
    the engine. Each answer is its own image's row, over several rounds on the same connections."""
    images = [random_png(300 + i) for i in range(4)]
    env = dict(child_env(), OMP_NUM_THREADS="2")  # no layout given: vitc-digits is small, one replica per core
    with ServerProcess(env, "--max-batch-size", "64", "--max-queue-delay-ms", "600000") as proc:
        async def scenario():
            async with httpx.AsyncClient(base_url=proc.url, timeout=30) as http:
                async def client(image):
                    return [await http.post("/v1/embeddings", json={"input": [b64(image)]}) for _ in range(3)]
                return await asyncio.gather(*(client(x) for x in images))

        answers = asyncio.run(scenario())
        for image, responses in zip(images, answers):
            for r in responses:
                assert r.status_code == 200, r.text
                np.testing.assert_array_equal(np.float32(r.json()["data"][0]["embedding"]), direct.embedding(image))
        page = httpx.get(proc.url + "/metrics").text
        assert metric(page, "vitc_inference_count_total") == 12 and metric(page, "vitc_replicas_alive") == 2
