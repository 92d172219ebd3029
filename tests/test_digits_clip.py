"""The bundled two-tower vitc-digits-clip: held-out zero-shot accuracy with vitc, vitc == transformers on it,
a text query finding its digit, `vitc demo --zero-shot`, and the checkpoint being a real CLIPModel with a
real tokenizer.json (loaded by transformers' own classes)."""
import json
import os
import sys

import numpy as np
import torch
import transformers

import vitc
from vitc import cli

sys.path.insert(0, os.path.dirname(__file__))
from test_digits_model import digits_data  # noqa: E402  (scripts/digits_data.py, the training split)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(REPO, "vitc", "checkpoints", "vitc-digits-clip")
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATE = "a photo of the digit {}."
MIN_ACCURACY = 0.85


def test_zero_shot_accuracy_and_agreement_with_transformers():
    data = digits_data
    _, _, held_x, held_y, _ = data.load_digits_split()
    images = [data.render_digit(g) for g in held_x]
    model = vitc.CLIPModel.from_pretrained("vitc-digits-clip")
    ranked = model.classify(images, labels=WORDS, template=TEMPLATE, top_k=1)
    pred = np.array([WORDS.index(r[0][0]) for r in ranked])
    acc = float((pred == held_y).mean())
    assert acc >= MIN_ACCURACY, acc

    ref_model = transformers.CLIPModel.from_pretrained(MODEL_DIR, attn_implementation="eager").eval()
    processor = transformers.CLIPProcessor.from_pretrained(MODEL_DIR)
    inputs = processor(text=[TEMPLATE.format(w) for w in WORDS], images=images, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = ref_model(**inputs)
    ref_pred = ref.logits_per_image.argmax(-1).numpy()
    assert float((ref_pred == held_y).mean()) == acc  # the same accuracy, image by image
    np.testing.assert_array_equal(pred, ref_pred)
    got = model(input_ids=inputs["input_ids"].numpy(), attention_mask=inputs["attention_mask"].numpy(),
                pixel_values=inputs["pixel_values"].numpy())
    ref_logits = ref.logits_per_image.numpy()
    assert np.abs(got.logits_per_image - ref_logits).max() / np.abs(ref_logits).max() <= 1e-4


def test_checkpoint_is_small_real_clip_with_tokenizer_json():
    assert os.path.getsize(os.path.join(MODEL_DIR, "model.safetensors")) < 2 * 2**20
    with open(os.path.join(MODEL_DIR, "config.json")) as f:
        assert json.load(f)["model_type"] == "clip"
    theirs = transformers.AutoTokenizer.from_pretrained(MODEL_DIR)
    ours = vitc.AutoTokenizer.from_pretrained("vitc-digits-clip")
    texts = [TEMPLATE.format(w) for w in WORDS] + ["handwritten 7", "", "naïve 🙂"]
    np.testing.assert_array_equal(ours(texts)["input_ids"], theirs(texts, padding=True, truncation=True,
                                                                   return_tensors="np")["input_ids"])


def test_text_query_finds_its_digit():
    model = vitc.CLIPModel.from_pretrained("vitc-digits-clip")
    samples = [os.path.join(REPO, "vitc", "samples", f"digit_{i}.png") for i in range(10)]
    image = model.embed(samples, normalize=True)
    for query, digit in (("handwritten 7", 7), ("a photo of the digit three", 3), ("the number zero", 0)):
        assert int(np.argmax(image @ model.embed_text(query, normalize=True)[0])) == digit, query


def test_demo_zero_shot(capsys):
    assert cli.main(["demo", "--zero-shot", "--json", "--top-k", "1"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    labels = {row["image"]: row["predictions"][0]["label"] for row in lines if "image" in row}
    assert len(labels) == 10
    assert sum(labels[f"digit_{i}.png"] == WORDS[i] for i in range(10)) >= 8
    assert lines[-1]["query"] == "handwritten 7" and lines[-1]["best"] == "digit_7.png"
