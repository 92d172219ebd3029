"""The bundled vitc-digits checkpoint: accuracy on the held-out split, vitc == transformers on every image.

The held-out split and the rendering come from scripts/digits_data.py, the module the training script used.
"""
import glob
import importlib.util
import filecmp
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

import torch  # torch, transformers and scikit-learn: the `test` extra of pyproject.toml
import transformers

import vitc
from vitc.checkpoints import BUNDLED, bundled_model_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(REPO, "vitc", "checkpoints", "vitc-digits")
SAMPLES = sorted(glob.glob(os.path.join(REPO, "vitc", "samples", "digit_*.png")))
MIN_ACCURACY = 0.95


def _load_digits_data():
    spec = importlib.util.spec_from_file_location("digits_data", os.path.join(REPO, "scripts", "digits_data.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


digits_data = _load_digits_data()


def _rel_err(got, ref):
    return float(np.max(np.abs(got.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def _sample_label(path):
    return int(re.fullmatch(r"digit_(\d)\.png", os.path.basename(path)).group(1))


@pytest.fixture(scope="module")
def held_out():
    """(pixel_values float32 [N, 3, 32, 32], labels int64 [N]) through the saved transformers preprocessor."""
    _, _, held_x, held_y, _ = digits_data.load_digits_split()
    processor = transformers.ViTImageProcessorPil.from_pretrained(MODEL_DIR)
    images = [digits_data.render_digit(g) for g in held_x]
    pixels = processor(images, return_tensors="np")["pixel_values"]
    return np.ascontiguousarray(pixels, dtype=np.float32), held_y


@pytest.fixture(scope="module")
def hf_model():
    return transformers.ViTForImageClassification.from_pretrained(MODEL_DIR).eval()


@pytest.fixture(scope="module")
def hf_logits(held_out, hf_model):
    with torch.no_grad():
        return hf_model(pixel_values=torch.from_numpy(held_out[0])).logits.double().numpy()


def test_bundled_files_are_small_and_labelled():
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md"):
        assert os.path.isfile(os.path.join(MODEL_DIR, name)), f"missing {name} in {MODEL_DIR}"
    assert os.path.getsize(os.path.join(MODEL_DIR, "model.safetensors")) < 5 * 2**20
    with open(os.path.join(MODEL_DIR, "config.json")) as f:
        config = json.load(f)
    assert config["id2label"] == {str(i): str(i) for i in range(10)}
    assert config["num_channels"] == 3 and config["image_size"] == digits_data.IMAGE_SIZE


def test_bundled_model_path_resolves_by_name():
    resolved = bundled_model_path("vitc-digits")  # the repo's copy, or the installed package's
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert filecmp.cmp(os.path.join(resolved, name), os.path.join(MODEL_DIR, name), shallow=False), name
    assert set(BUNDLED) == {"vitc-digits", "vitc-digits-clip"}
    assert bundled_model_path("google/vit-base-patch16-224") is None
    assert bundled_model_path("checkpoints") is None


def test_split_is_stratified_and_fixed():
    train_x, train_y, held_x, held_y, held_idx = digits_data.load_digits_split()
    assert len(train_y) + len(held_y) == 1797 and len(held_y) == 359
    assert np.all(np.diff(held_idx) > 0) and held_idx[0] >= 0 and held_idx[-1] < 1797
    assert np.all(np.abs(np.bincount(held_y, minlength=10) / np.bincount(train_y, minlength=10) - 0.25) < 0.02)
    _, _, _, _, again = digits_data.load_digits_split()
    np.testing.assert_array_equal(held_idx, again)
    # Pinned: the split the bundled model was trained on; a changed split would score it on training images.
    np.testing.assert_array_equal(held_idx[:10], [3, 7, 13, 19, 36, 38, 43, 48, 53, 55])


def test_transformers_held_out_accuracy(held_out, hf_logits):
    _, labels = held_out
    accuracy = float((hf_logits.argmax(-1) == labels).mean())
    assert accuracy >= MIN_ACCURACY, f"held-out accuracy {accuracy:.4f} < {MIN_ACCURACY}"


def test_vitc_matches_transformers_on_every_held_out_image(isa_name, held_out, hf_logits):
    pixels, labels = held_out
    model = vitc.ViTForImageClassification.from_pretrained(MODEL_DIR)
    logits = np.asarray(model(pixels).logits)
    assert logits.shape == hf_logits.shape and logits.dtype == np.float32
    accuracy = float((logits.argmax(-1) == labels).mean())
    assert accuracy >= MIN_ACCURACY, f"vitc held-out accuracy {accuracy:.4f} on {isa_name}"
    mismatched = np.flatnonzero(logits.argmax(-1) != hf_logits.argmax(-1))
    assert mismatched.size == 0, f"top-1 differs from transformers on held-out positions {mismatched.tolist()}"
    assert _rel_err(logits, hf_logits) <= 1e-4


def test_vitc_resolves_bundled_name(held_out):
    pixels = held_out[0][:8]
    by_name = np.asarray(vitc.ViTForImageClassification.from_pretrained("vitc-digits")(pixels).logits)
    by_path = np.asarray(vitc.ViTForImageClassification.from_pretrained(MODEL_DIR)(pixels).logits)
    np.testing.assert_array_equal(by_name, by_path)


def test_one_sample_per_class_taken_from_held_out():
    assert [_sample_label(p) for p in SAMPLES] == list(range(10))
    train_x, _, held_x, held_y, _ = digits_data.load_digits_split()
    held = np.stack([np.asarray(digits_data.render_digit(g)) for g in held_x])
    train = np.stack([np.asarray(digits_data.render_digit(g)) for g in train_x])
    side = 64  # SAMPLE_SIDE of scripts/train_digits.py
    for path in SAMPLES:
        image = np.asarray(Image.open(path).convert("RGB"))
        assert image.shape == (side, side, 3)
        small = image[:: side // 8, :: side // 8]  # undo the nearest upscaling
        np.testing.assert_array_equal(np.asarray(digits_data.upscale_nearest(Image.fromarray(small), side)), image)
        matches = np.flatnonzero((held == small).all(axis=(1, 2, 3)))
        assert matches.size and np.all(held_y[matches] == _sample_label(path)), path
        assert not (train == small).all(axis=(1, 2, 3)).any(), f"{path} is also a training image"


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_sample_classified_by_transformers(path, hf_model):
    processor = transformers.ViTImageProcessorPil.from_pretrained(MODEL_DIR)
    pixels = processor(Image.open(path), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        predicted = int(hf_model(pixel_values=pixels).logits.argmax(-1))
    assert hf_model.config.id2label[predicted] == str(_sample_label(path))


@pytest.mark.parametrize("path", SAMPLES, ids=os.path.basename)
def test_sample_classified_by_vitc(path):
    from vitc.image_processing import ViTImageProcessor

    image = Image.open(path)
    pixels = np.asarray(ViTImageProcessor.from_pretrained(MODEL_DIR)(image)["pixel_values"])
    reference = transformers.ViTImageProcessorPil.from_pretrained(MODEL_DIR)(image, return_tensors="np")
    np.testing.assert_array_equal(pixels, reference["pixel_values"])
    model = vitc.ViTForImageClassification.from_pretrained(MODEL_DIR)
    predicted = int(np.asarray(model(np.ascontiguousarray(pixels, dtype=np.float32)).logits).argmax(-1)[0])
    assert predicted == _sample_label(path)  # id2label is {i: str(i)} (test_bundled_files_are_small_and_labelled)
