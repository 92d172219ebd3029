"""vitc.CLIPTokenizer / SiglipTokenizer / AutoTokenizer: token ids and masks equal to transformers' tokenizers
(CLIPTokenizer, GemmaTokenizer, Siglip2Tokenizer) on 200+ strings, for tokenizer files made here with the
`tokenizers` library and saved by transformers, in each variant of tokenizer_config.json a checkpoint can have."""
import importlib.util
import json
import os
import shutil

import numpy as np
import pytest
import tokenizers as tk
import transformers
from tokenizers import models, normalizers, trainers

import vitc
from vitc.tokenization import CLIPTokenizer, SiglipTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("clip_bpe", os.path.join(REPO, "scripts", "clip_bpe.py"))
clip_bpe = importlib.util.module_from_spec(_spec)  # the BPE the bundled digits CLIP is trained with
_spec.loader.exec_module(clip_bpe)

CORPUS = ["a photo of a cat", "a photo of a dog", "a photo of the digit seven", "handwritten 7",
          "Hello World! it's 2024, isn't it?", "naïve café déjà vu", "東京 タワー 北京", "🙂👍🏽 emoji",
          "the quick brown fox jumps over the lazy dog", "Привет мир", "مرحبا بالعالم"] * 10

# ---- the strings: Unicode, emoji, whitespace runs, punctuation, empty, over-length, special-token text ----
BASE = ["a photo of a cat", "A Photo Of A CAT", "handwritten 7", "the digit seven", "naïve café", "東京タワー",
        "Привет, мир!", "مرحبا", "🙂", "👍🏽👨‍👩‍👧", "it's they're we've I'm you'll he'd", "e\u0301 vs é",
        "ﬁ ligature", "ＦＵＬＬ　ｗｉｄｔｈ", "x", "12345 67.89", "C++ & C# / F#", "snake_case-kebab.case",
        "<|endoftext|>", "<|startoftext|>a<|endoftext|>", "<bos>hi<eos>", "<pad> <unk> <mask>", "",
        " ", "\t", "\n\n", "\u00a0", "\u200b", "\x00\x01\x7f", "ends with space ", " starts with space"]
TRANSFORMS = [lambda s: s, str.upper, lambda s: f"  {s}  ", lambda s: s.replace(" ", "   \t "),
              lambda s: f"{s}!!!???...", lambda s: f"({s}) — «{s}»", lambda s: f"{s} 🙂", lambda s: f"{s}\r\n{s}"]
TEXTS = list(dict.fromkeys(t(s) for s in BASE for t in TRANSFORMS))
TEXTS += ["word " * 200, "a" * 1000, "🙂" * 100, " ".join(CORPUS)]  # over-length: truncated
assert len(TEXTS) >= 200


def clip_files(folder):
    """A small CLIP BPE (byte-level, "</w>" word ends) trained here, saved by transformers' CLIPTokenizer."""
    clip_bpe.train_clip_bpe(CORPUS, 700, 77).save_pretrained(folder)
    write(folder, "config.json", {"model_type": "clip"})
    return folder


def gemma_files(folder):
    """A small Gemma-style BPE (byte fallback, "▁" for spaces), saved by transformers' GemmaTokenizer, in a
    model_type siglip checkpoint (as SigLIP2 FixRes ones are)."""
    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{i:02X}>" for i in range(256)]
    t = tk.Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    t.normalizer = normalizers.Replace(" ", "▁")
    t.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=500, special_tokens=specials, show_progress=False))
    model = json.loads(t.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    transformers.GemmaTokenizer(vocab=model["vocab"], merges=merges, model_max_length=64).save_pretrained(folder)
    write(folder, "config.json", {"model_type": "siglip"})
    return folder


def write(folder, name, data):
    with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
        json.dump(data, f)


def edit(folder, name, **changes):
    path = os.path.join(folder, name)
    data = json.load(open(path, encoding="utf-8")) if os.path.exists(path) else {}
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not None}
    write(folder, name, data)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    return {"clip": clip_files(str(root / "clip")), "gemma": gemma_files(str(root / "gemma"))}


def template(*specials):
    """tokenizer.json's post_processor adding these (token, id) around the text: "<bos>:0 $A:0 <eos>:0"."""
    from tokenizers import processors
    single = " ".join(f"{t}:0" if t != "$A" else "$A:0" for t, _ in specials)
    t = tk.Tokenizer(models.BPE())
    t.post_processor = processors.TemplateProcessing(single=single, special_tokens=[s for s in specials
                                                                                    if s[0] != "$A"])
    return json.loads(t.to_str())["post_processor"]


def variant(made, tmp_path, base, config=None, special_tokens_map=None, post_processor=None):
    folder = str(tmp_path / "variant")
    shutil.copytree(made[base], folder)
    if post_processor:
        edit(folder, "tokenizer.json", post_processor=post_processor)
    if config:
        edit(folder, "tokenizer_config.json", **config)
    if special_tokens_map:
        write(folder, "special_tokens_map.json", special_tokens_map)
    return folder


CLIP_ADDED = {"49": {"content": "<|startoftext|>", "lstrip": False, "normalized": True, "rstrip": False,
                     "single_word": False, "special": True}}
VARIANTS = {
    "clip_openai": ("clip", {}, None),
    # some LAION CLIP tokenizers pad with "!" (id 0); transformers uses its own post-processor, not the file's
    "clip_pad_bang": ("clip", {"pad_token": "!"}, None, template(("$A", 0), ("<|endoftext|>", 0))),
    # 2021-era files: AddedToken dicts, no backend key, special_tokens_map.json overriding them
    "clip_legacy": ("clip", {"backend": None, "unk_token": {"__type": "AddedToken", "content": "<|endoftext|>",
                                                            "lstrip": False, "normalized": True, "rstrip": False,
                                                            "single_word": False}, "do_lower_case": True},
                    {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                     "unk_token": "<|endoftext|>"}),
    "clip_left_padding": ("clip", {"padding_side": "left", "truncation_side": "left"}, None),
    "gemma_as_saved": ("gemma", {}, None),
    # Gemma's own tokenizer.json adds <bos>; the add_*_token flags are ignored where tokenizer.json exists
    "gemma_bos_right": ("gemma", {"add_bos_token": False, "add_eos_token": True, "padding_side": "right"}, None,
                        template(("<bos>", 2), ("$A", 0))),
    "gemma_bos_eos": ("gemma", {}, None, template(("<bos>", 2), ("$A", 0), ("<eos>", 1))),
    "gemma_eos_flags_only": ("gemma", {"add_bos_token": True, "add_eos_token": True}, None),
    "siglip2_lowercase": ("gemma", {"tokenizer_class": "Siglip2Tokenizer"}, None, template(("$A", 0), ("<eos>", 1))),
}


def reference(theirs, texts, **kwargs):
    out = theirs(texts, return_tensors="np", **kwargs)
    return {k: np.asarray(v) for k, v in out.items() if k in ("input_ids", "attention_mask")}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_token_ids_equal_transformers(made, tmp_path, name):
    base, config, special_map, *post_processor = VARIANTS[name]
    folder = variant(made, tmp_path, base, config, special_map, *post_processor)
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    ours = vitc.AutoTokenizer.from_pretrained(folder)
    assert type(ours) is (CLIPTokenizer if base == "clip" else SiglipTokenizer)
    # the way each family's processor is called: CLIP pads to the longest, SigLIP to max_length 64
    family = {"padding": True} if base == "clip" else {"padding": "max_length", "max_length": 64}
    want = reference(theirs, TEXTS, truncation=True, **family)
    got = ours(TEXTS)
    assert set(got) == set(want)
    for key in want:
        assert got[key].dtype == np.int64 and got[key].shape == want[key].shape, key
        bad = np.flatnonzero((got[key] != want[key]).any(axis=1))
        assert bad.size == 0, f"{key} differs for {[TEXTS[i] for i in bad[:3]]}"
    # one text at a time, no padding, and untruncated ids
    for text in TEXTS[::7]:
        one = ours(text, padding=False)["input_ids"]
        assert np.array_equal(one, reference(theirs, text, truncation=True)["input_ids"].reshape(1, -1)), text
        assert ours.encode(text) == theirs(text)["input_ids"], text
    # the other padding modes
    for kwargs in ({"padding": "max_length", "max_length": 20}, {"padding": "longest", "max_length": 9}):
        want = reference(theirs, TEXTS[:40], truncation=True, **kwargs)
        assert np.array_equal(ours(TEXTS[:40], **kwargs)["input_ids"], want["input_ids"]), kwargs
    assert ours.pad_token_id == theirs.pad_token_id and ours.eos_token_id == theirs.eos_token_id
    assert ours.bos_token_id == theirs.bos_token_id and ours.model_max_length == theirs.model_max_length
    assert ours.padding_side == theirs.padding_side
    ids = ours(TEXTS[3], padding=False)["input_ids"][0]
    assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True)


def test_over_length_text_is_truncated_ending_in_eos(made):
    ours = CLIPTokenizer.from_pretrained(made["clip"])
    out = ours(["word " * 200, "a cat"])
    assert out["input_ids"].shape == (2, 77) and out["input_ids"][0, -1] == ours.eos_token_id
    assert out["attention_mask"][1].sum() < 77 and out["input_ids"][1, 0] == ours.bos_token_id
    assert ours("word " * 200, truncation=False, padding=False)["input_ids"].shape[1] > 77


def test_siglip_defaults_are_its_processor_call(made):
    ours = SiglipTokenizer.from_pretrained(made["gemma"])
    out = ours(["a photo of a cat", ""])
    assert out["input_ids"].shape == (2, 64) and out["attention_mask"].dtype == np.int64


@pytest.mark.parametrize("bad,error,message", [
    (5, TypeError, "text must be a string or a list of strings, got int"),
    (b"bytes", TypeError, "got bytes"),
    (None, TypeError, "got NoneType"),
    (["ok", 3.5], TypeError, "text 1 is a float, expected a string"),
    ([], ValueError, "expected at least one text"),
])
def test_non_strings_are_refused(made, bad, error, message):
    ours = CLIPTokenizer.from_pretrained(made["clip"])
    with pytest.raises(error, match=message):
        ours(bad)


def test_bad_call_options(made):
    ours = CLIPTokenizer.from_pretrained(made["clip"])
    with pytest.raises(ValueError, match="padding must be"):
        ours("a", padding="yes")
    with pytest.raises(ValueError, match="max_length must be a positive int"):
        ours("a", max_length=0)
    with pytest.raises(ValueError, match="different token counts .* pass padding=True"):
        ours(["a", "a photo of a cat"], padding=False)
    with pytest.raises(ValueError, match="return_tensors must be 'np'"):
        ours("a", return_tensors="pt")


def test_sentencepiece_only_checkpoints_say_what_to_add(tmp_path):
    (tmp_path / "spiece.model").write_bytes(b"\x00")
    write(str(tmp_path), "config.json", {"model_type": "t5"})
    write(str(tmp_path), "tokenizer_config.json", {"tokenizer_class": "T5Tokenizer"})
    with pytest.raises(ValueError, match=r"only a sentencepiece model \(spiece.model\) and no tokenizer.json.*"
                                         r"save_pretrained\(folder\) writes it"):
        vitc.AutoTokenizer.from_pretrained(str(tmp_path))
    write(str(tmp_path), "tokenizer_config.json", {"tokenizer_class": "SiglipTokenizer"})
    with pytest.raises(ValueError, match=r"SigLIP \(v1\) tokenizer .* sentencepiece plus its own Python text "
                                         r"canonicalization"):
        vitc.AutoTokenizer.from_pretrained(str(tmp_path))
    os.remove(tmp_path / "spiece.model")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        vitc.AutoTokenizer.from_pretrained(str(tmp_path))


def test_siglip_v1_tokenizer_class_is_refused_even_with_a_tokenizer_json(made, tmp_path):
    folder = variant(made, tmp_path, "gemma", {"tokenizer_class": "SiglipTokenizer"})
    with pytest.raises(ValueError, match=r"SigLIP \(v1\) tokenizer"):
        vitc.AutoTokenizer.from_pretrained(folder)
    with pytest.raises(ValueError, match="tokenizer_class 'SiglipTokenizer' is not one vitc.SiglipTokenizer "
                                         "reproduces"):
        SiglipTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("change,message", [
    ({"tokenizer_class": "BertTokenizer"}, "tokenizer_class 'BertTokenizer' is not a tokenizer vitc has"),
    ({"padding_side": "middle"}, "padding_side must be 'left' or 'right'"),
    ({"model_max_length": "77"}, "model_max_length must be an int >= 2"),
    ({"pad_token": 5}, "a token must be a string or an object with a 'content' string"),
    ({"added_tokens_decoder": {"x": {"content": "a"}}}, "added_tokens_decoder keys must be token ids"),
])
def test_hostile_tokenizer_configs(made, tmp_path, change, message):
    folder = variant(made, tmp_path, "clip", change)
    with pytest.raises(ValueError, match=message):
        vitc.AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("content,message", [
    ("{", "tokenizer.json: not valid JSON"),
    ('{"model": {"type": "Unigram", "vocab": []}}', "expected a BPE model"),
    ('{"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}}', "model.vocab must map token strings to ids"),
    ('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a"]]}}', "model.merges must be a list of token pairs"),
    ('{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}', "cannot build the BPE model"),
])
def test_hostile_tokenizer_json(made, tmp_path, content, message):
    folder = variant(made, tmp_path, "clip")
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        f.write(content)
    with pytest.raises(ValueError, match=message):
        CLIPTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("base,processor", [("clip", "CLIPProcessor"), ("gemma", "SiglipProcessor")])
def test_auto_processor(made, tmp_path, base, processor):
    folder = variant(made, tmp_path, base)
    proc = vitc.AutoProcessor.from_pretrained(folder)
    assert type(proc).__name__ == processor
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    out = proc(text=["a photo of a cat", "a dog"], images=[image])
    assert out["pixel_values"].shape == (1, 3, 224, 224) and out["input_ids"].dtype == np.int64
    assert np.array_equal(out["input_ids"], proc.tokenizer(["a photo of a cat", "a dog"])["input_ids"])
    with pytest.raises(ValueError, match="pass text, images or both"):
        proc()
