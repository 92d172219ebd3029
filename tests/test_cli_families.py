"""`vitc classify` on a Dinov2ForImageClassification checkpoint: the labels and scores of transformers'
logits on the same preprocessed pixels; a bare Dinov2Model checkpoint is refused by name."""
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import torch, transformers  # noqa: E402
from family_checkpoints import build  # noqa: E402
from test_cli import run  # noqa: E402

import vitc  # noqa: E402

DINO = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, mlp_ratio=3, patch_size=14, image_size=42,
            attn_implementation="eager")


def test_classify_dinov2_checkpoint(capsys, tmp_path):
    labels = {i: f"class {i}" for i in range(6)}
    config = transformers.Dinov2Config(**DINO, num_labels=6, id2label=labels, label2id={v: k for k, v in labels.items()})
    path, ref = build(tmp_path, "Dinov2ForImageClassification", config)
    rng = np.random.default_rng(0)
    images = []
    for i, (h, w) in enumerate([(50, 60), (42, 42), (90, 30)]):
        images.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images[-1])
    code, out, err = run(capsys, "classify", *images, "--model", path, "--json", "--top-k", "3")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    processor = vitc.Dinov2ForImageClassification.from_pretrained(path).image_processor
    for row, image in zip(rows, images):
        pixels = processor(Image.open(image))["pixel_values"]
        with torch.no_grad():
            logits = ref(torch.from_numpy(pixels)).logits[0].double().numpy()
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = np.argsort(-probs)[:3]
        assert row["image"] == image
        assert [p["label"] for p in row["predictions"]] == [labels[int(j)] for j in best]
        np.testing.assert_allclose([p["score"] for p in row["predictions"]], probs[best], rtol=0, atol=1e-5)


def test_classify_refuses_a_checkpoint_without_head(capsys, tmp_path):
    path, _ = build(tmp_path, "Dinov2Model", transformers.Dinov2Config(**DINO))
    code, _, err = run(capsys, "classify", str(tmp_path), "--model", path)
    assert code != 0 and "without a classification head" in err and "Dinov2Model" in err
