"""CLIP / SigLIP text towers and two-tower models == transformers' CLIPModel, CLIPTextModel(WithProjection),
SiglipModel, SiglipTextModel (eager, float32): text_embeds, image_embeds, logits, every hidden state and
attention map within 1e-4 (max|Δ|/max|ref|), with token ids from vitc's tokenizer equal to transformers'."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import relative_error, torch, transformers  # noqa: E402
from family_checkpoints import TOL, build, pixels  # noqa: E402
from text_checkpoints import build_two_tower, tokenizer_folders  # noqa: E402

import vitc  # noqa: E402

TEXTS = ["a photo of a cat", "handwritten 7", "", "naïve café 東京 🙂", "tabs\tand\nnewlines \x00\x07 ctrl",
         "word " * 120, "A PHOTO OF THE DIGIT SEVEN!!!"]


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
    return tokenizer_folders(tmp_path_factory.mktemp("tok"))


def _ref(model, **inputs):
    with torch.no_grad():
        return model(**{k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}, output_hidden_states=True,
                     output_attentions=True)


def _match_states(got, ref):
    for name in ("hidden_states", "attentions"):
        g, r = getattr(got, name), getattr(ref, name)
        assert len(g) == len(r), name
        for i, (a, b) in enumerate(zip(g, r)):
            assert relative_error(a, b) <= TOL, (name, i, relative_error(a, b))


def _check_two_tower(got, ref):
    for field in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
        assert relative_error(getattr(got, field), getattr(ref, field)) <= TOL, field
    for tower in ("text_model_output", "vision_model_output"):
        g, r = getattr(got, tower), getattr(ref, tower)
        assert relative_error(g.last_hidden_state, r.last_hidden_state) <= TOL, tower
        _match_states(g, r)


# (text hidden, heads, layers, act, image, patch)
CLIP_SIZES = [(32, 4, 2, "quick_gelu", 32, 16), (48, 2, 1, "gelu", 48, 16), (64, 16, 3, "quick_gelu", 28, 14)]


@pytest.mark.parametrize("hidden,heads,layers,act,image,patch", CLIP_SIZES)
def test_clip_model_matches_transformers(tmp_path, toks, isa_name, hidden, heads, layers, act, image, patch):
    path, ref_model, tok = build_two_tower(
        tmp_path, "clip", toks["clip"], text=dict(hidden_size=hidden, num_attention_heads=heads,
                                                  num_hidden_layers=layers, hidden_act=act),
        vision=dict(image_size=image, patch_size=patch, hidden_act=act), seed=hidden)
    model = vitc.CLIPModel.from_pretrained(path)
    enc = model.tokenizer(TEXTS, padding=True)
    theirs = tok(TEXTS, padding=True, truncation=True, return_tensors="np")
    np.testing.assert_array_equal(enc["input_ids"], theirs["input_ids"])
    np.testing.assert_array_equal(enc["attention_mask"], theirs["attention_mask"])
    x = pixels((2, 3, image, image), seed=hidden)
    got = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=x,
                output_hidden_states=True, output_attentions=True)
    ref = _ref(ref_model, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=x)
    _check_two_tower(got, ref)
    assert got.logits_per_image.shape == (2, len(TEXTS))
    # the features alone, as transformers' get_*_features (projected, not normalized)
    with torch.no_grad():
        rt = ref_model.get_text_features(input_ids=torch.from_numpy(enc["input_ids"]),
                                         attention_mask=torch.from_numpy(enc["attention_mask"]))
        ri = ref_model.get_image_features(pixel_values=torch.from_numpy(x))
    rt, ri = getattr(rt, "pooler_output", rt), getattr(ri, "pooler_output", ri)
    assert relative_error(model.get_text_features(enc["input_ids"], enc["attention_mask"]), rt) <= TOL
    assert relative_error(model.get_image_features(x), ri) <= TOL


def test_clip_without_attention_mask_and_legacy_eos(tmp_path, toks):
    """No attention_mask: causal only (padding tokens attended, as transformers). eos_token_id 2 (configs
    before transformers#24773): pooled at the largest id."""
    path, ref_model, tok = build_two_tower(tmp_path, "clip", toks["clip"], text=dict(eos_token_id=2))
    model = vitc.CLIPModel.from_pretrained(path)
    ids = tok(TEXTS[:4], padding=True, truncation=True, return_tensors="np")["input_ids"]
    x = pixels((1, 3, 32, 32))
    _check_two_tower(model(input_ids=ids, pixel_values=x, output_hidden_states=True, output_attentions=True),
                     _ref(ref_model, input_ids=ids, pixel_values=x))


@pytest.mark.parametrize("cls_name", ["CLIPTextModel", "CLIPTextModelWithProjection"])
def test_clip_text_model_own_checkpoint(tmp_path, toks, cls_name):
    tok = transformers.AutoTokenizer.from_pretrained(toks["clip"])
    config = transformers.CLIPTextConfig(hidden_size=40, intermediate_size=36, num_hidden_layers=2,
                                         num_attention_heads=5, vocab_size=len(tok), projection_dim=12,
                                         eos_token_id=tok.eos_token_id, attn_implementation="eager")
    path, ref_model = build(tmp_path, cls_name, config)
    model = getattr(vitc, cls_name).from_pretrained(path)
    enc = tok(TEXTS, padding=True, truncation=True, return_tensors="np")
    got = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True,
                output_attentions=True)
    ref = _ref(ref_model, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    fields = ("text_embeds",) if cls_name.endswith("Projection") else ("pooler_output",)
    for f in fields + ("last_hidden_state",):
        assert relative_error(getattr(got, f), getattr(ref, f)) <= TOL, f
    _match_states(got, ref)


@pytest.mark.parametrize("hidden,heads,layers", [(32, 4, 2), (48, 3, 1), (64, 8, 3)])
def test_siglip_model_matches_transformers(tmp_path, toks, isa_name, hidden, heads, layers):
    path, ref_model, tok = build_two_tower(
        tmp_path, "siglip", toks["siglip"], text=dict(hidden_size=hidden, num_attention_heads=heads,
                                                      num_hidden_layers=layers), seed=hidden)
    model = vitc.SiglipModel.from_pretrained(path)
    enc = model.tokenizer(TEXTS, padding="max_length", max_length=64)
    theirs = tok(TEXTS, padding="max_length", max_length=64, truncation=True, return_tensors="np")
    np.testing.assert_array_equal(enc["input_ids"], theirs["input_ids"])
    assert enc["input_ids"].shape == (len(TEXTS), 64)
    x = pixels((3, 3, 32, 32), seed=hidden)
    got = model(input_ids=enc["input_ids"], pixel_values=x, output_hidden_states=True, output_attentions=True)
    ref = _ref(ref_model, input_ids=enc["input_ids"], pixel_values=x)
    _check_two_tower(got, ref)
    # SigLIP's text tower takes a padding mask when one is passed (its processor passes none)
    mask = np.asarray(theirs["attention_mask"]) if "attention_mask" in theirs else (enc["input_ids"] != tok.pad_token_id)
    mask = mask.astype(np.int64)
    mask[:, 0] = 1
    got = model.text_model(input_ids=enc["input_ids"], attention_mask=mask, output_hidden_states=True,
                           output_attentions=True)
    with torch.no_grad():
        ref = ref_model.text_model(input_ids=torch.from_numpy(enc["input_ids"]), attention_mask=torch.from_numpy(mask),
                                   output_hidden_states=True, output_attentions=True)
    assert relative_error(got.pooler_output, ref.pooler_output) <= TOL
    _match_states(got, ref)


def test_siglip_text_model_own_checkpoint(tmp_path, toks):
    tok = transformers.AutoTokenizer.from_pretrained(toks["siglip"])
    config = transformers.SiglipTextConfig(hidden_size=24, intermediate_size=30, num_hidden_layers=2,
                                           num_attention_heads=2, vocab_size=len(tok), projection_size=20,
                                           attn_implementation="eager")
    path, ref_model = build(tmp_path, "SiglipTextModel", config)
    model = vitc.SiglipTextModel.from_pretrained(path)
    ids = tok(TEXTS, padding="max_length", max_length=64, truncation=True, return_tensors="np")["input_ids"]
    got = model(input_ids=ids, output_hidden_states=True, output_attentions=True)
    ref = _ref(ref_model, input_ids=ids)
    assert got.pooler_output.shape == (len(TEXTS), 20)
    for f in ("pooler_output", "last_hidden_state"):
        assert relative_error(getattr(got, f), getattr(ref, f)) <= TOL, f
    _match_states(got, ref)


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_embed_text_and_hostile_text(tmp_path, toks, family):
    """embed_text tokenizes as the family's processor (CLIP: pad to longest; SigLIP: max_length 64); empty,
    over-length, non-ASCII and control-character texts work; a non-string is a TypeError naming it."""
    path, ref_model, tok = build_two_tower(tmp_path, family, toks[family])
    model = (vitc.CLIPModel if family == "clip" else vitc.SiglipModel).from_pretrained(path)
    got = model.embed_text(TEXTS)
    kw = dict(padding=True) if family == "clip" else dict(padding="max_length", max_length=64)
    enc = tok(TEXTS, truncation=True, return_tensors="pt", **kw)
    with torch.no_grad():
        ref = ref_model.get_text_features(**{k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")})
    assert relative_error(got, getattr(ref, "pooler_output", ref)) <= TOL
    unit = model.embed_text("a photo of a cat", normalize=True)
    assert unit.shape[0] == 1 and abs(float(np.linalg.norm(unit)) - 1) < 1e-5
    for bad in (None, 3, ["ok", b"bytes"]):
        with pytest.raises(TypeError, match="string"):
            model.embed_text(bad)


def test_bad_token_inputs_are_clear_errors(tmp_path, toks):
    path, _, _ = build_two_tower(tmp_path, "clip", toks["clip"])
    text = vitc.CLIPModel.from_pretrained(path).text_model
    with pytest.raises(ValueError, match="outside the vocabulary"):
        text(input_ids=np.array([[1, 10 ** 6]]))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        text(input_ids=np.ones((1, 78), np.int64))
    with pytest.raises(TypeError, match="integer"):
        text(input_ids=np.ones((1, 3), np.float32))
    with pytest.raises(TypeError, match="tokenizer"):
        text(input_ids="a cat")
    with pytest.raises(ValueError, match="attention_mask shape"):
        text(input_ids=np.ones((2, 3), np.int64), attention_mask=np.ones((2, 4)))
    with pytest.raises(ValueError, match="only 0"):
        text(input_ids=np.ones((1, 3), np.int64), attention_mask=np.array([[1, 2, 0]]))
    with pytest.raises(ValueError, match="input_ids"):
        text()


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_zero_shot_matches_transformers_pipeline(tmp_path, toks, family):
    """model.classify == transformers' zero-shot-image-classification pipeline (softmax for CLIP, sigmoid for
    SigLIP), same labels and template, images through each library's own processor."""
    from PIL import Image
    path, _, _ = build_two_tower(tmp_path, family, toks[family])
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(3)]
    labels = ["cat", "dog", "handwritten 7", "naïve café"]
    model = (vitc.CLIPModel if family == "clip" else vitc.SiglipModel).from_pretrained(path)
    got = model.classify(images, labels=labels, template="a photo of {}.")
    pipe = transformers.pipeline("zero-shot-image-classification", model=path)
    for image, mine in zip(images, got):
        theirs = pipe(image, candidate_labels=labels, hypothesis_template="a photo of {}.")
        ref = {r["label"]: r["score"] for r in theirs}
        assert [lab for lab, _ in mine] == [r["label"] for r in theirs]
        for label, score in mine:
            assert abs(score - ref[label]) <= 1e-5 * max(1.0, abs(ref[label])), (label, score, ref[label])
    if family == "clip":
        assert all(abs(sum(s for _, s in row) - 1) < 1e-5 for row in got)
    with pytest.raises(ValueError, match="labels"):
        model.classify(images, labels=[])
    with pytest.raises(ValueError, match="template"):
        model.classify(images, labels=labels, template="no slot")
