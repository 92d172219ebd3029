"""vitc.ray beyond ViT: a Dinov2Model checkpoint embedded on a local Ray cluster equals model.embed; a
CLIPModel classifies zero-shot over the labels given to the callable class."""
import io
import logging
import os
import sys
import threading

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import transformers  # noqa: E402
from family_checkpoints import build  # noqa: E402
from serve_helpers import random_png  # noqa: E402
from text_checkpoints import build_two_tower, tokenizer_folders  # noqa: E402
from test_ray import RAY_TIMEOUT_S  # noqa: E402

import vitc  # noqa: E402
import vitc.ray as vray  # noqa: E402

LABELS = ["cat", "dog", "bird"]


def test_clip_zero_shot_in_the_callable_class(tmp_path):
    path, _, _ = build_two_tower(tmp_path, "clip", tokenizer_folders(tmp_path)["clip"])
    model = vitc.CLIPModel.from_pretrained(path)
    blobs = [random_png(40 + i) for i in range(3)]
    out = vray.ImageModel(path, threads=1, task="classify", top_k=2, labels=LABELS)(
        {"bytes": np.array(blobs, dtype=object)})
    for i, blob in enumerate(blobs):
        want = model.classify(Image.open(io.BytesIO(blob)), LABELS, top_k=2)[0]
        assert out["labels"][i] == [lab for lab, _ in want]
        np.testing.assert_allclose(out["scores"][i], [s for _, s in want], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="pass labels"):
        vray.ImageModel(path, threads=1, task="classify")


def test_dinov2_embeddings_on_a_local_cluster(tmp_path, subprocess_env):
    import ray
    config = transformers.Dinov2Config(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, mlp_ratio=3,
                                       patch_size=14, image_size=42, attn_implementation="eager")
    path, _ = build(tmp_path, "Dinov2Model", config)
    model = vitc.Dinov2Model.from_pretrained(path)
    with pytest.raises(ValueError, match="labels are for two-tower"):
        vray.ImageModel(path, threads=1, labels=LABELS)
    folder = tmp_path / "images"
    folder.mkdir()
    images = {f"img{i}.png": random_png(50 + i) for i in range(5)}
    for name, data in images.items():
        (folder / name).write_bytes(data)
    env = {"PYTHONPATH": subprocess_env["PYTHONPATH"]} if subprocess_env.get("PYTHONPATH") else {}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, logging_level=logging.WARNING)
    watchdog = threading.Timer(RAY_TIMEOUT_S, ray.shutdown)  # bounded: a stuck job is shut down, the test fails
    watchdog.start()
    try:
        rows = vray.embed_images(str(folder), path, threads=1, batch_size=2).take_all()
    finally:
        watchdog.cancel()
        ray.shutdown()
    got = {os.path.basename(r["path"]): r["embedding"] for r in rows}
    assert sorted(got) == sorted(images)
    for name, data in images.items():
        np.testing.assert_array_equal(got[name], model.embed(Image.open(io.BytesIO(data)))[0])
