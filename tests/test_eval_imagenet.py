"""benchmarks/eval_imagenet.py on a tiny generated ImageNet-style folder: 3 class subfolders of generated
images and a random 3-label ViT saved by transformers. The report's numbers are recomputed here from the
models themselves, vitc float32 and transformers float32 agree, and the labels-file form gives the same."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import randomize_, torch, transformers  # noqa: E402

import vitc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "eval_imagenet.py")
CLASSES = ("cat", "dog", "fish")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    config = transformers.ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, image_size=32, patch_size=8,
                                    id2label=dict(enumerate(CLASSES)), label2id={c: i for i, c in enumerate(CLASSES)},
                                    attn_implementation="eager")
    torch.manual_seed(0)
    hf = transformers.ViTForImageClassification(config)
    randomize_(hf, 0)
    model = str(root / "model")
    hf.save_pretrained(model)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(model)
    rng = np.random.default_rng(0)
    folder, flat = root / "val", root / "flat"
    flat.mkdir()
    lines = []
    for c in CLASSES:
        (folder / c).mkdir(parents=True)
        for i in range(5):
            img = Image.fromarray(rng.integers(0, 256, (40 + i, 36, 3), dtype=np.uint8))
            img.save(folder / c / f"{i}.png")
            img.save(flat / f"{c}_{i}.png")
            lines.append(f"{c}_{i}.png {c if i % 2 else CLASSES.index(c)}")  # names and indices both work
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    return model, str(folder), str(flat), str(root / "labels.txt")


def _run(subprocess_env, tmp_path, *args):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, SCRIPT, *args, "--batch", "4", "--json", str(out)], capture_output=True,
                          text=True, env=subprocess_env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def _expected(model, folder, dtype):
    """top-1 / top-3 of vitc at dtype over the class folders, computed here."""
    m = vitc.ViTForImageClassification.from_pretrained(model, dtype=dtype)
    paths = [(os.path.join(folder, c, f), i) for i, c in enumerate(CLASSES) for f in sorted(os.listdir(
        os.path.join(folder, c)))]
    logits = m(m.image_processor([p for p, _ in paths])["pixel_values"]).logits
    labels = np.array([c for _, c in paths])
    return float(np.mean(logits.argmax(1) == labels)), logits.argmax(1)


def test_report_on_class_folders(data, subprocess_env, tmp_path):
    model, folder, _, _ = data
    report, out = _run(subprocess_env, tmp_path, model, folder)
    assert report["images"] == 15 and report["classes"] == 3 and report["top_k"] == 3
    assert list(report["results"]) == ["vitc float32", "vitc bfloat16", "vitc int8", "transformers float32"]
    results = report["results"]
    top1_f32, pred_f32 = _expected(model, folder, "float32")
    assert results["vitc float32"]["top1"] == pytest.approx(top1_f32)
    assert results["vitc float32"]["agree_top1"] == 1.0
    # transformers float32 on the same pixels predicts the same classes as vitc float32
    assert results["transformers float32"]["top1"] == results["vitc float32"]["top1"]
    assert results["transformers float32"]["agree_top1"] == 1.0
    for dtype in ("bfloat16", "int8"):
        top1, pred = _expected(model, folder, dtype)
        r = results[f"vitc {dtype}"]
        assert r["top1"] == pytest.approx(top1)
        assert r["agree_top1"] == pytest.approx(float(np.mean(pred == pred_f32)))
    for r in results.values():
        assert 0 <= r["top1"] <= r["top5"] == 1.0 and r["seconds"] > 0  # 3 classes: top-3 always holds
    assert "| vitc int8 |" in out and "top-1 agrees with vitc float32" in out


def test_labels_file_gives_the_same_numbers(data, subprocess_env, tmp_path):
    model, folder, flat, labels = data
    by_folder, _ = _run(subprocess_env, tmp_path, model, folder, "--dtypes", "float32,int8", "--no-transformers")
    by_file, _ = _run(subprocess_env, tmp_path, model, flat, "--labels", labels, "--dtypes", "float32,int8",
                      "--no-transformers")
    assert by_file["images"] == 15 and list(by_file["results"]) == ["vitc float32", "vitc int8"]
    for name in by_file["results"]:
        for key in ("top1", "top5", "agree_top1"):
            assert by_file["results"][name][key] == by_folder["results"][name][key]


def test_bad_data_is_a_clear_error(data, subprocess_env, tmp_path):
    model, _, flat, _ = data
    bad = tmp_path / "labels.txt"
    bad.write_text("cat_0.png zebra\n")
    proc = subprocess.run([sys.executable, SCRIPT, model, flat, "--labels", str(bad)], capture_output=True, text=True,
                          env=subprocess_env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 1 and "label 'zebra' is not one of the checkpoint's labels" in proc.stderr
    proc = subprocess.run([sys.executable, SCRIPT, model, flat], capture_output=True, text=True,
                          env=subprocess_env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 1 and "no class subfolders" in proc.stderr
