"""CLI text side with a random-weight CLIP / SigLIP checkpoint: classify --labels equals model.classify, embed
--text equals embed_text, search ranks by cosine and its cache is reused while files are unchanged and
redone for a changed file."""
import json
import os
import sys
import time

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from text_checkpoints import build_two_tower, tokenizer_folders  # noqa: E402

import vitc  # noqa: E402
from vitc import cli  # noqa: E402
from vitc.cli_text import CACHE_NAME, load_cache  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_text")
    toks = tokenizer_folders(root)
    return {f: build_two_tower(root, f, toks[f])[0] for f in ("clip", "siglip")}


def _photos(folder, n=5):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(os.path.join(folder, f"p{i}.png"))
    return str(folder)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_classify_labels_equals_model_classify(tmp_path, models, family, capsys):
    photos = _photos(tmp_path / "photos", 3)
    assert cli.main(["classify", photos, "--labels", "cat,dog,car", "--model", models[family], "--json",
                     "--top-k", "3"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    model = vitc.AutoModel.from_pretrained(models[family])
    assert type(model).__name__ == {"clip": "CLIPModel", "siglip": "SiglipModel"}[family]
    files = sorted(os.path.join(photos, f) for f in os.listdir(photos))
    want = model.classify(files, labels=["cat", "dog", "car"])
    assert [r["image"] for r in rows] == files
    for row, ranked in zip(rows, want):
        assert [p["label"] for p in row["predictions"]] == [lab for lab, _ in ranked]
        np.testing.assert_allclose([p["score"] for p in row["predictions"]], [s for _, s in ranked], rtol=1e-5)


def test_classify_labels_needs_a_two_tower_model(tmp_path, capsys):
    folder = tmp_path / "vit"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit"}))
    assert cli.main(["classify", _photos(tmp_path / "p", 1), "--labels", "a,b", "--model", str(folder)]) == 2
    assert "no text tower" in capsys.readouterr().err


def test_embed_text(tmp_path, models, capsys):
    out = str(tmp_path / "t.npz")
    texts = ["a red apple", "", "naïve 🙂\x07"]
    argv = ["embed", "--model", models["clip"], "--out", out, "--normalize"]
    for t in texts:
        argv += ["--text", t]
    assert cli.main(argv) == 0
    z = np.load(out)
    want = vitc.CLIPModel.from_pretrained(models["clip"]).embed_text(texts, normalize=True)
    np.testing.assert_allclose(z["embeddings"], want, rtol=1e-6, atol=1e-7)
    assert list(z["texts"]) == texts
    assert cli.main(["embed", "--model", models["clip"], "--text", "a cat"]) == 0
    assert len(json.loads(capsys.readouterr().out)["embedding"]) == want.shape[1]


def test_search_ranks_and_caches(tmp_path, models, capsys):
    photos = _photos(tmp_path / "photos", 5)
    argv = ["search", photos, "a red apple", "--top-k", "3", "--model", models["clip"], "--json"]
    assert cli.main(argv) == 0
    first = capsys.readouterr()
    hits = [json.loads(line) for line in first.out.splitlines()]
    assert "(0 from" in first.err and len(hits) == 3
    model = vitc.CLIPModel.from_pretrained(models["clip"])
    files = sorted(os.path.join(photos, f) for f in os.listdir(photos) if f.endswith(".png"))
    scores = model.embed(files, normalize=True) @ model.embed_text("a red apple", normalize=True)[0]
    best = [files[j] for j in np.argsort(-scores, kind="stable")[:3]]
    assert [h["image"] for h in hits] == best
    np.testing.assert_allclose([h["score"] for h in hits], np.sort(scores)[::-1][:3], rtol=1e-5, atol=1e-6)

    cache = os.path.join(photos, CACHE_NAME)
    assert len(load_cache(cache, os.path.abspath(models["clip"]))) == 5
    assert cli.main(argv) == 0
    again = capsys.readouterr()
    assert "(5 from" in again.err and again.out == first.out  # unchanged files: all reused

    # one file changes (new pixels, new mtime): only it is embedded again, and its new embedding is used
    changed = files[0]
    time.sleep(0.01)
    Image.fromarray(np.full((33, 41, 3), 200, np.uint8)).save(changed)
    assert cli.main(argv) == 0
    third = capsys.readouterr()
    assert "(4 from" in third.err
    entries = load_cache(cache, os.path.abspath(models["clip"]))
    np.testing.assert_allclose(entries[changed][2], model.embed([changed], normalize=True)[0], rtol=1e-5, atol=1e-6)
    # a given cache file; another model's cache is not reused
    own = str(tmp_path / "own.npz")
    assert cli.main(argv + ["--cache", own]) == 0 and os.path.exists(own)
    assert "(0 from" in capsys.readouterr().err
    assert cli.main(["search", photos, "x", "--model", models["siglip"], "--cache", own]) == 0
    assert "(0 from" in capsys.readouterr().err
