"""Hostile requests against `vitc serve` (a subprocess on a loopback port): each is answered with the right
status and a message naming the problem, and the server goes on serving correct results.

The cases of issue 12: bodies over the limit, truncated/invalid base64, non-image bytes, decompression bombs,
0x0 / 1x1 / 100000x1 images, wrong JSON types, unknown model names, slow clients, clients that disconnect
mid-request; plus a full queue (429), a request past its deadline (503) and SIGTERM draining."""
import asyncio
import os
import signal
import socket
import sys
import time
import zlib

import httpx
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from serve_helpers import Direct, ServerProcess, b64, child_env, metric, random_png  # noqa: E402
from test_hostile_images import png  # noqa: E402  (PNG headers crafted at the format level)


MODEL = "vitc-digits"
BODY_LIMIT_MB = 1
TIMEOUT_S = 3


@pytest.fixture(scope="module")
def server():
    with ServerProcess(child_env(), "--max-body-mb", str(BODY_LIMIT_MB), "--request-timeout-s", str(TIMEOUT_S),
                       "--max-image-pixels", "20000000") as proc:
        yield proc


@pytest.fixture(scope="module")
def direct():
    return Direct.of(MODEL)


def still_serving(server, direct, seed=0):
    image = random_png(seed)
    r = httpx.post(server.url + "/v1/embeddings", json={"input": [b64(image)]}, timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.float32(r.json()["data"][0]["embedding"]), direct.embedding(image))


def v2(images_b64, **tensor):
    return {"inputs": [dict({"name": "image", "datatype": "BYTES", "shape": [len(images_b64)],
                             "data": images_b64}, **tensor)]}


def one_pixel_png(width, height):
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(width).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


GOOD = b64(random_png(1))
BOMB = png(60000, 60000, zlib.compress(b""))  # 3.6 G pixels declared in a 60-byte file

# (endpoint, json body, expected status, words of the message)
BAD_REQUESTS = {
    "truncated_base64": ("/v1/embeddings", {"input": [GOOD, GOOD[:-3]]}, 400, "input 1: invalid base64"),
    "invalid_base64_chars": ("/classify", {"inputs": ["!!not-base64!!"]}, 400, "inputs 0: invalid base64"),
    "non_image_bytes": ("/v1/embeddings", {"input": [GOOD, b64(b"<html>404</html>")]}, 400,
                        "input 1 is not an image"),
    "empty_image": ("/classify", {"inputs": [""]}, 400, "inputs 0 is empty"),
    "decompression_bomb": (f"/v2/models/{MODEL}/infer", v2([GOOD, b64(BOMB)]), 400, "item 1 is too large"),
    "zero_by_zero": ("/v1/embeddings", {"input": [b64(png(0, 0, zlib.compress(b"")))]}, 400, "input 0"),
    "truncated_png": ("/v1/embeddings", {"input": [b64(random_png(3)[:-40])]}, 400, "could not decode input 0"),
    "pdf_data_uri": ("/v1/embeddings", {"input": ["data:application/pdf;base64," + GOOD]}, 400, "expected image/"),
    "text_input": ("/v1/embeddings", {"input": ["a photo of a cat"]}, 400, "input 0: text input, but this model "
                   "has no text tower"),
    "url_input": ("/v1/embeddings", {"input": ["https://example.com/cat.png"]}, 400, "URLs are not fetched"),
    "input_is_number": ("/v1/embeddings", {"input": 5}, 400, "expected a string"),
    "input_is_object": ("/v1/embeddings", {"input": [{"image": GOOD}]}, 400, "input 0: expected a string"),
    "input_missing": ("/v1/embeddings", {"model": MODEL}, 400, "'input' is required"),
    "input_empty_list": ("/v1/embeddings", {"input": []}, 400, "empty array"),
    "body_is_array": ("/v1/embeddings", [GOOD], 400, "must be a JSON object"),
    "bad_encoding_format": ("/v1/embeddings", {"input": GOOD, "encoding_format": "int8"}, 400, "encoding_format"),
    "model_is_number": ("/v1/embeddings", {"input": GOOD, "model": 3}, 400, "'model' must be a string"),
    "unknown_model_openai": ("/v1/embeddings", {"input": GOOD, "model": "nope"}, 404, "unknown model 'nope'"),
    "unknown_model_v2": ("/v2/models/nope/infer", v2([GOOD]), 404, "unknown model 'nope'"),
    "unknown_version_v2": (f"/v2/models/{MODEL}/versions/7/infer", v2([GOOD]), 404, "version 7"),
    "top_k_string": ("/classify", {"inputs": GOOD, "parameters": {"top_k": "3"}}, 400, "top_k must be a positive"),
    "top_k_zero": ("/classify", {"inputs": GOOD, "parameters": {"top_k": 0}}, 400, "top_k must be a positive"),
    "parameters_list": ("/classify", {"inputs": GOOD, "parameters": [1]}, 400, "'parameters' must be an object"),
    "classify_no_inputs": ("/classify", {"image": GOOD}, 400, "expected a JSON object"),
    "v2_fp32_input": (f"/v2/models/{MODEL}/infer", v2([GOOD], datatype="FP32"), 400, "datatype must be BYTES"),
    "v2_wrong_shape": (f"/v2/models/{MODEL}/infer", v2([GOOD], shape=[3]), 400, "holds 3 items, got 1"),
    "v2_shape_strings": (f"/v2/models/{MODEL}/infer", v2([GOOD], shape=["1"]), 400, "shape must be"),
    "v2_data_not_list": (f"/v2/models/{MODEL}/infer", v2([GOOD], data=GOOD), 400, "'data' must be an array"),
    "v2_two_inputs": (f"/v2/models/{MODEL}/infer", {"inputs": v2([GOOD])["inputs"] * 2}, 400, "exactly one"),
    "v2_no_inputs": (f"/v2/models/{MODEL}/infer", {"id": "x"}, 400, "exactly one"),
    "v2_unknown_output": (f"/v2/models/{MODEL}/infer", dict(v2([GOOD]), outputs=[{"name": "logits"}]), 400,
                          "unknown output 'logits'"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_refused_and_server_goes_on(server, direct, case):
    path, body, status, words = BAD_REQUESTS[case]
    r = httpx.post(server.url + path, json=body, timeout=30)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in (error["message"] if isinstance(error, dict) else error)
    still_serving(server, direct)


def test_not_json_and_binary_header_lies(server, direct):
    r = httpx.post(server.url + "/v1/embeddings", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", content=b'{"inputs": []}',
                   headers={"Inference-Header-Content-Length": "999"})
    assert r.status_code == 400 and "does not fit" in r.json()["error"]
    header = b'{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":9}}]}'
    r = httpx.post(f"{server.url}/v2/models/{MODEL}/infer", content=header + b"\x40\0\0\0abcde",
                   headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 400 and "truncated in item 0" in r.json()["error"]
    r = httpx.post(server.url + "/classify", content=b"GIF89a-truncated", headers={"content-type": "image/gif"})
    assert r.status_code == 400 and "the request body" in r.json()["error"]
    still_serving(server, direct)


@pytest.mark.parametrize("width, height", [(1, 1), (100000, 1), (1, 3000)])
def test_degenerate_but_valid_images_are_answered(server, direct, width, height):
    image = one_pixel_png(width, height)
    r = httpx.post(server.url + "/v1/embeddings", json={"input": [b64(image)]}, timeout=30)
    assert r.status_code == 200, r.text
    np.testing.assert_array_equal(np.float32(r.json()["data"][0]["embedding"]), direct.embedding(image))
    r = httpx.post(server.url + "/classify", content=image, headers={"content-type": "image/png"}, timeout=30)
    assert r.json() == [{"label": lab, "score": s} for lab, s in direct.top_k(image, 5)]


def test_body_over_the_limit(server, direct):
    big = b"x" * (BODY_LIMIT_MB * 2 ** 20 + 1)
    r = httpx.post(server.url + "/classify", content=big, headers={"content-type": "image/png"})
    assert r.status_code == 413 and "over the limit" in r.json()["error"]

    def chunks():  # no Content-Length: the cap is enforced while reading
        for _ in range(BODY_LIMIT_MB * 4 + 1):
            yield b"y" * 2 ** 18

    r = httpx.post(server.url + "/classify", content=chunks(), headers={"content-type": "image/png"})
    assert r.status_code == 413
    still_serving(server, direct)


def raw_request(port, head, body=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(head.encode() + b"\r\n" + body)
    return s


def read_response(sock):
    """One whole HTTP/1.1 response from a raw socket (headers + Content-Length bytes; a recv may return less)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _content_length(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def _content_length(data):
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_slow_client_gets_408_while_others_are_served(server, direct):
    before = time.monotonic()
    slow = raw_request(server.port, "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    "Content-Length: 5000\r\n", b'{"input": ["')
    try:
        for seed in range(3):  # the slow upload holds no one else up
            still_serving(server, direct, seed)
        answer = read_response(slow)
        assert answer.startswith("HTTP/1.1 408") and "did not arrive" in answer
        assert time.monotonic() - before >= TIMEOUT_S * 0.9
    finally:
        slow.close()


def test_clients_disconnecting_mid_request(server, direct):
    image = b64(random_png(5)).encode()
    body = b'{"input": ["' + image + b'"]}'
    head = f"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    for cut in (0, len(body) // 2, len(body)):  # gone after the headers, mid-body, and before the answer
        raw_request(server.port, head, body[:cut]).close()
    s = raw_request(server.port, head, body)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    s.close()
    for seed in range(3):
        still_serving(server, direct, seed)
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200


def test_full_queue_429_and_deadline_503(tmp_path):
    """A queue of 4 images whose batch waits 2.5 s (max batch 64 never fills; an idle open connection could
    still send one, so the batch does not run early) behind a 1 s deadline."""
    proc = ServerProcess(child_env(), "--max-queue", "4", "--max-batch-size", "64", "--max-queue-delay-ms", "2500",
                         "--request-timeout-s", "1")
    idle = None
    try:
        proc.wait_ready()
        idle = socket.create_connection(("127.0.0.1", proc.port))

        async def scenario():
            async with httpx.AsyncClient(base_url=proc.url, timeout=30) as http:
                first = asyncio.ensure_future(http.post("/v1/embeddings", json={"input": [GOOD] * 4}))
                await asyncio.sleep(0.4)
                second = await http.post("/v1/embeddings", json={"input": [GOOD]})
                return await first, second

        first, second = asyncio.run(scenario())
        assert second.status_code == 429 and "queue is full" in second.json()["error"]["message"]
        assert second.headers["retry-after"] == "1"
        assert first.status_code == 503 and "request timeout" in first.json()["error"]["message"]
        too_many = httpx.post(proc.url + "/v1/embeddings", json={"input": [GOOD] * 5})
        assert too_many.status_code == 413
        page = httpx.get(proc.url + "/metrics").text
        assert metric(page, "vitc_requests_total", endpoint="embeddings", code=429) == 1
        assert metric(page, "vitc_requests_total", endpoint="embeddings", code=503) == 1
        assert metric(page, "vitc_requests_total", endpoint="embeddings", code=413) == 1
    finally:
        if idle is not None:
            idle.close()
        proc.stop()


def test_sigterm_drains_in_flight_requests_then_exits(direct):
    proc = ServerProcess(child_env(), "--max-batch-size", "64", "--max-queue-delay-ms", "1500")
    idle = None
    try:
        proc.wait_ready()
        idle = socket.create_connection(("127.0.0.1", proc.port))  # a client that could still send: no early batch
        images = [random_png(200 + i) for i in range(6)]

        async def scenario():
            async with httpx.AsyncClient(base_url=proc.url, timeout=30) as http:
                pending = [asyncio.ensure_future(http.post("/v1/embeddings", json={"input": [b64(x)]}))
                           for x in images]
                await asyncio.sleep(0.6)  # all six are queued, waiting for their batch
                proc.proc.send_signal(signal.SIGTERM)
                return await asyncio.gather(*pending)

        responses = asyncio.run(scenario())
        for image, r in zip(images, responses):
            assert r.status_code == 200, r.text
            np.testing.assert_array_equal(np.float32(r.json()["data"][0]["embedding"]), direct.embedding(image))
        assert proc.proc.wait(timeout=30) == 0  # drained cleanly: status 0, not "killed by SIGTERM"
    finally:
        if idle is not None:
            idle.close()
        proc.stop()


def test_model_that_cannot_load_exits_with_1(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    proc = ServerProcess(child_env(), model=str(tmp_path))
    try:
        assert proc.proc.wait(timeout=60) == 1
        assert "could not load the model" in proc.proc.stderr.read().decode()
    finally:
        proc.stop()
