"""model.classify / model.embed / model.image_processor against transformers on the same images."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import checkpoints, relative_error, torch, transformers  # noqa: E402,F401

import vitc  # noqa: E402
from vitc.pipeline import scores_from_logits, top_k_labels  # noqa: E402


def noise_images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 31 + 5 * i, 3), dtype=np.uint8)) for i in range(n)]


def reference_pixels(ckpt, images):
    """transformers' Pillow processor at the checkpoint's image size (vitc's default without a config file)."""
    size = ckpt.config.image_size
    h, w = (size, size) if isinstance(size, int) else size
    proc = transformers.ViTImageProcessorPil(size={"height": h, "width": w})
    return proc(images, return_tensors="np")["pixel_values"]


def test_scores_softmax_and_sigmoid():
    logits = np.array([[1.0, 3.0, -2.0], [0.0, 0.0, 0.0]], np.float32)
    soft = scores_from_logits(logits)
    ref = np.exp(logits.astype(np.float64) - 3.0 * np.array([[1.0], [0.0]]))
    np.testing.assert_allclose(soft, ref / ref.sum(1, keepdims=True), rtol=1e-12)
    multi = scores_from_logits(logits, "multi_label_classification")
    np.testing.assert_allclose(multi, 1 / (1 + np.exp(-logits.astype(np.float64))), rtol=1e-12)
    single_output = scores_from_logits(logits[:, :1])  # one output: sigmoid, as transformers' pipeline
    np.testing.assert_allclose(single_output, 1 / (1 + np.exp(-logits[:, :1].astype(np.float64))), rtol=1e-12)


def test_top_k_order_labels_and_bounds():
    scores = np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4]])
    labels = {0: "cat", 1: "dog", 2: "eel"}
    assert top_k_labels(scores, labels, 2) == [[("dog", 0.5), ("eel", 0.4)], [("eel", 0.4), ("cat", 0.3)]]
    assert len(top_k_labels(scores, labels, 10)[0]) == 3
    with pytest.raises(ValueError, match="top_k"):
        top_k_labels(scores, labels, 0)


def test_classify_images_matches_transformers(checkpoints):
    ckpt = checkpoints.get("square")
    model = vitc.ViTForImageClassification.from_pretrained(ckpt.path)
    images = noise_images(3)
    got = model.classify(images, top_k=3)
    with torch.no_grad():
        logits = ckpt.reference(torch.from_numpy(reference_pixels(ckpt, images))).logits.numpy()
    probs = scores_from_logits(logits)
    for row, ranked in zip(probs, got):
        order = np.argsort(-row)[:3]
        assert [label for label, _ in ranked] == [ckpt.config.id2label[int(i)] for i in order]
        np.testing.assert_allclose([s for _, s in ranked], row[order], rtol=1e-4, atol=1e-6)


def test_classify_accepts_paths_and_pixel_arrays(checkpoints, tmp_path):
    ckpt = checkpoints.get("square")
    model = vitc.ViTForImageClassification.from_pretrained(ckpt.path)
    images = noise_images(2, seed=1)
    paths = []
    for i, im in enumerate(images):
        paths.append(str(tmp_path / f"im{i}.png"))
        im.save(paths[-1])
    from_paths = model.classify(paths, top_k=2)
    from_pixels = model.classify(reference_pixels(ckpt, images), top_k=2)
    assert [[l for l, _ in r] for r in from_paths] == [[l for l, _ in r] for r in from_pixels]


def test_embed_is_pooler_or_cls(checkpoints):
    images = noise_images(2, seed=2)
    # a ViTModel with a pooler: pooler_output
    ckpt = checkpoints.get("model_pooler")
    enc = vitc.ViTModel.from_pretrained(ckpt.path)
    ref = ckpt.reference_outputs(reference_pixels(ckpt, images))
    assert relative_error(enc.embed(images), ref.pooler_output) <= 1e-4
    assert relative_error(enc.embed(images, all_tokens=True), ref.last_hidden_state) <= 1e-4
    # a classification checkpoint has no pooler: the CLS token after the final LayerNorm
    ckpt = checkpoints.get("square")
    model = vitc.ViTForImageClassification.from_pretrained(ckpt.path)
    with torch.no_grad():
        px = torch.from_numpy(reference_pixels(ckpt, images))
        cls = ckpt.reference.vit(px).last_hidden_state[:, 0]
    assert relative_error(model.embed(images), cls) <= 1e-4


def test_image_processor_from_checkpoint_config(checkpoints, tmp_path):
    ckpt = checkpoints.get("square")
    model = vitc.ViTForImageClassification.from_pretrained(ckpt.path)
    assert model.image_processor(noise_images(1))["pixel_values"].shape == (1, 3, 24, 24)
    # a preprocessor_config.json next to the weights wins over the defaults
    folder = tmp_path / "with_proc"
    folder.mkdir()
    for name in os.listdir(ckpt.path):
        os.symlink(os.path.join(ckpt.path, name), folder / name)
    transformers.ViTImageProcessorPil(size={"height": 24, "width": 24}, image_mean=[0.2, 0.3, 0.4],
                                      image_std=[0.5, 0.6, 0.7]).save_pretrained(folder)
    model = vitc.ViTForImageClassification.from_pretrained(folder)
    images = noise_images(2, seed=3)
    ref = transformers.ViTImageProcessorPil.from_pretrained(folder)(images, return_tensors="np")["pixel_values"]
    assert np.array_equal(model.image_processor(images)["pixel_values"], ref)


def test_profile_times_every_phase_without_changing_outputs(checkpoints):
    ckpt = checkpoints.get("square")
    model = vitc.ViTForImageClassification.from_pretrained(ckpt.path)
    x = np.random.default_rng(5).standard_normal((2, 3, 24, 24)).astype(np.float32)
    plain = model(x).logits
    with model.profile() as prof:
        profiled = model(x).logits
        model(x)
    assert np.array_equal(plain, profiled)
    model(x)  # after the block: not counted
    assert prof.calls == 2
    phases = prof.as_dict()
    assert set(phases) == {"embeddings", "layernorm", "qkv", "attention", "proj", "fc1", "fc2", "other"}
    assert all(v >= 0 for v in phases.values()) and phases["fc1"] > 0 and phases["attention"] > 0
    assert sum(phases.values()) == pytest.approx(prof.total, rel=1e-6)
    assert 0 <= prof.outside_linear_fraction() <= 1
    assert "outside the linear layers" in prof.table()
