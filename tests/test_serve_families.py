"""`vitc serve` on families beyond ViT, loaded through the Auto classes: tiny CLIPModel and SiglipModel
(image and text embeddings, zero-shot /classify over the request's labels) and a Dinov2Model (embeddings
only), each row equal to the model's own embed / embed_text / classify."""
import os
import sys

import httpx
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import transformers  # noqa: E402
from family_checkpoints import build  # noqa: E402
from serve_helpers import ServerProcess, b64, child_env, random_png  # noqa: E402
from text_checkpoints import build_two_tower, tokenizer_folders  # noqa: E402

import vitc  # noqa: E402

TIMEOUT = 60
TEXTS = ["a photo of a cat.", "a dog", "two red birds on a wire"]
LABELS = ["cat", "dog", "bird"]


@pytest.fixture(scope="module", params=["clip", "siglip"])
def two_tower(request, tmp_path_factory):
    """A served two-tower model (CLIPModel, then SiglipModel: softmax vs sigmoid scores) and the model itself."""
    family = request.param
    root = tmp_path_factory.mktemp(f"serve_{family}")
    path, _, _ = build_two_tower(root, family, tokenizer_folders(root)[family])
    with ServerProcess(child_env(), "--threads", "1", "--max-batch-size", "4", "--name", "clip", model=path) as proc:
        yield proc, vitc.AutoModel.from_pretrained(path)


@pytest.fixture(scope="module")
def dinov2(tmp_path_factory):
    config = transformers.Dinov2Config(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, mlp_ratio=3,
                                       patch_size=14, image_size=42, attn_implementation="eager")
    path, _ = build(tmp_path_factory.mktemp("serve_dinov2"), "Dinov2Model", config)
    with ServerProcess(child_env(), "--threads", "1", "--name", "dinov2", model=path) as proc:
        yield proc, vitc.Dinov2Model.from_pretrained(path)


def images(seed, n):
    return [random_png(seed + i) for i in range(n)]


def pil(data):
    import io
    from PIL import Image
    return Image.open(io.BytesIO(data))


def embeddings(url, inputs, **extra):
    r = httpx.post(url + "/v1/embeddings", json={"input": inputs, **extra}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    return np.array([row["embedding"] for row in r.json()["data"]], np.float32)


def test_two_tower_image_and_text_embeddings(two_tower):
    server, model = two_tower
    blobs = images(0, 3)
    got = embeddings(server.url, [b64(x) for x in blobs])
    np.testing.assert_allclose(got, np.concatenate([model.embed(pil(x)) for x in blobs]), rtol=0, atol=1e-5)
    got = embeddings(server.url, TEXTS, modality="text")
    np.testing.assert_allclose(got, model.embed_text(TEXTS), rtol=0, atol=1e-5)
    r = httpx.post(server.url + "/v1/embeddings", json={"input": "x", "modality": "audio"}, timeout=TIMEOUT)
    assert r.status_code == 400 and "modality" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/embeddings", json={"input": [3], "modality": "text"}, timeout=TIMEOUT)
    assert r.status_code == 400 and "input 0" in r.json()["error"]["message"]


def test_two_tower_v2_embedding_output(two_tower):
    server, model = two_tower
    blobs = images(5, 2)
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": [b64(x) for x in blobs]}]}
    r = httpx.post(server.url + "/v2/models/clip/infer", json=body, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]  # embeddings only: CLIP has no labels of its own
    assert out["name"] == "embedding" and out["shape"][0] == 2
    np.testing.assert_allclose(np.float32(out["data"]).reshape(out["shape"]),
                               np.concatenate([model.embed(pil(x)) for x in blobs]), rtol=0, atol=1e-5)


def test_two_tower_v2_text_input_with_tritonclient(two_tower):
    import tritonclient.http as triton
    server, model = two_tower
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    meta = client.get_model_metadata("clip")
    assert [i["name"] for i in meta["inputs"]] == ["image", "text"]
    for binary in (False, True):
        inp = triton.InferInput("text", [len(TEXTS)], "BYTES")
        inp.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object), binary_data=binary)
        out = client.infer("clip", [inp], outputs=[triton.InferRequestedOutput("embedding", binary_data=binary)])
        np.testing.assert_allclose(out.as_numpy("embedding"), model.embed_text(TEXTS), rtol=0, atol=1e-5)
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [7]}]}
    r = httpx.post(server.url + "/v2/models/clip/infer", json=body, timeout=TIMEOUT)
    assert r.status_code == 400 and "item 0" in r.json()["error"]


def test_two_tower_zero_shot_classify(two_tower):
    server, model = two_tower
    blobs = images(10, 2)
    r = httpx.post(server.url + "/classify", json={"inputs": [b64(x) for x in blobs],
                                                    "parameters": {"candidate_labels": LABELS, "top_k": 2}},
                   timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    for answer, blob in zip(r.json(), blobs):
        want = model.classify(pil(blob), LABELS, top_k=2)[0]
        assert [a["label"] for a in answer] == [lab for lab, _ in want]
        np.testing.assert_allclose([a["score"] for a in answer], [s for _, s in want], rtol=0, atol=1e-5)
    r = httpx.post(server.url + "/classify", content=blobs[0], timeout=TIMEOUT)  # no labels: nothing to rank
    assert r.status_code == 400 and "candidate_labels" in r.json()["error"]


def test_dinov2_embeddings_and_no_text_tower(dinov2):
    server, model = dinov2
    blobs = images(20, 3)
    got = embeddings(server.url, [b64(x) for x in blobs], encoding_format="float")
    np.testing.assert_allclose(got, np.concatenate([model.embed(pil(x)) for x in blobs]), rtol=0, atol=1e-5)
    r = httpx.post(server.url + "/v1/embeddings", json={"input": "a cat", "modality": "text"}, timeout=TIMEOUT)
    assert r.status_code == 400 and "no text tower" in r.json()["error"]["message"]
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a cat"]}]}
    r = httpx.post(server.url + "/v2/models/dinov2/infer", json=body, timeout=TIMEOUT)
    assert r.status_code == 400 and "no text tower" in r.json()["error"]
    r = httpx.post(server.url + "/classify", content=blobs[0], timeout=TIMEOUT)
    assert r.status_code == 400 and "no classification head" in r.json()["error"]
    r = httpx.post(server.url + "/classify", json={"inputs": b64(blobs[0]), "parameters": {"labels": ["a"]}},
                   timeout=TIMEOUT)
    assert r.status_code == 400 and "no text tower" in r.json()["error"]


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_served_reduced_precision_equals_the_model_at_that_dtype(tmp_path, dtype):
    """`vitc serve --dtype`: the served rows are the model's own at that dtype (image and text towers)."""
    path, _, _ = build_two_tower(tmp_path, "clip", tokenizer_folders(tmp_path)["clip"])
    model = vitc.AutoModel.from_pretrained(path, dtype=dtype)
    assert model.dtype == dtype
    with ServerProcess(child_env(), "--threads", "1", "--dtype", dtype, model=path) as server:
        blobs = images(20, 2)
        got = embeddings(server.url, [b64(x) for x in blobs])
        np.testing.assert_allclose(got, np.concatenate([model.embed(pil(x)) for x in blobs]), rtol=0, atol=1e-5)
        got = embeddings(server.url, TEXTS, modality="text")
        np.testing.assert_allclose(got, model.embed_text(TEXTS), rtol=0, atol=1e-5)
