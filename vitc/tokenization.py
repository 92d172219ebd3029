"""Text tokenizers for the CLIP and SigLIP text towers, without transformers: HF's `tokenizers` (Rust) library
reading the checkpoint's tokenizer.json, set up the way the installed transformers sets it up.

transformers (v5) rebuilds a CLIP or Gemma tokenizer from the vocabulary and merges of tokenizer.json with its
own class's normalizer, pre-tokenizer and BPE options, adds the special and added tokens that
tokenizer_config.json lists (legacy checkpoints: special_tokens_map.json and tokenizer.json's added_tokens),
and takes padding side, pad token and model_max_length from tokenizer_config.json. This module does the same,
so the token ids are equal:
  - CLIPTokenizer (tokenizer_class CLIPTokenizer / CLIPTokenizerFast, or model_type clip): byte-level BPE with
    "</w>" word ends, NFC + whitespace runs -> " " + lowercase, <|startoftext|> ... <|endoftext|>; pads right.
  - SiglipTokenizer (tokenizer_class GemmaTokenizer, as SigLIP2 FixRes checkpoints name it; Siglip2Tokenizer adds
    lowercasing): Gemma BPE with byte fallback, " " -> "▁", special tokens from tokenizer.json's post-processor
    or add_bos_token / add_eos_token; pads left unless tokenizer_config.json says otherwise.
SigLIP (v1) checkpoints tokenize with sentencepiece plus Python-side text canonicalization (transformers'
SiglipTokenizer), which has no tokenizer.json form: they get an error saying so.

Calls default to what each family's processor is used with: CLIP pads to the longest text, SigLIP to
max_length 64 (padding="max_length", as SigLIP was trained); both truncate to model_max_length (transformers
would leave an over-long text for the model to fail on). Output: numpy int64 input_ids (+ attention_mask).
"""
import json
import os

import numpy as np

from .config import _clip
from .outputs import BatchFeature

__all__ = ["CLIPTokenizer", "SiglipTokenizer", "BatchEncoding", "TOKENIZER_CLASSES"]

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
SENTENCEPIECE_FILES = ("spiece.model", "tokenizer.model", "sentencepiece.bpe.model")
SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
MAX_TEXTS = 1 << 20


class BatchEncoding(BatchFeature):
    """dict of model inputs ({"input_ids": int64 [N, L], "attention_mask": int64 [N, L]}); keys also attributes."""


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise ImportError("vitc's tokenizers need the `tokenizers` package: pip install tokenizers") from None
    return tokenizers


# ---- files -----------------------------------------------------------------------------------------------
def _checkpoint_file(location, name, revision, cache_dir, token):
    """Path of an optional file of a local folder or a Hub repo, None where it has none."""
    if os.path.isdir(location):
        path = os.path.join(location, name)
        return path if os.path.isfile(path) else None
    from .hub import cached_file
    return cached_file(location, name, revision, cache_dir, token)


def _read_json_object(path):
    from .config import read_json
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


class TokenizerFiles:
    """The tokenizer files of a checkpoint, read: tokenizer.json (parsed), tokenizer_config.json,
    special_tokens_map.json and config.json's model_type (each {} / None where absent)."""

    def __init__(self, path_or_repo_id, revision=None, cache_dir=None, token=None):
        location = os.fspath(path_or_repo_id)
        from .checkpoints import bundled_model_path
        if not os.path.exists(location) and bundled_model_path(location):
            location = bundled_model_path(location)
        self.source = location

        def find(name):
            return _checkpoint_file(location, name, revision, cache_dir, token)

        self.tokenizer_file = find(TOKENIZER_FILE)
        config_file = find(TOKENIZER_CONFIG_FILE)
        self.tokenizer_config = _read_json_object(config_file) if config_file else {}
        special_file = find(SPECIAL_TOKENS_MAP_FILE)
        self.special_tokens_map = _read_json_object(special_file) if special_file else {}
        model_config = find("config.json")
        self.model_type = _read_json_object(model_config).get("model_type") if model_config else None
        self.tokenizer_class = str(self.tokenizer_config.get("tokenizer_class") or "").removesuffix("Fast")
        self.tokenizer_json = None
        if self.tokenizer_file is None:
            spm = [n for n in SENTENCEPIECE_FILES if find(n)]
            if spm:
                raise ValueError(_sentencepiece_only_message(location, spm[0], self.tokenizer_class))
            raise FileNotFoundError(f"{location}: no {TOKENIZER_FILE}, so there is no tokenizer to load (vitc reads "
                                    f"the tokenizer.json that transformers' save_pretrained writes)")

    def load_tokenizer_json(self):
        if self.tokenizer_json is None:
            self.tokenizer_json = _read_json_object(self.tokenizer_file)
        return self.tokenizer_json


def _sentencepiece_only_message(location, spm_name, tokenizer_class):
    if tokenizer_class == "SiglipTokenizer":
        return (f"{location}: this is a SigLIP (v1) tokenizer ({spm_name}, tokenizer_class SiglipTokenizer): "
                f"transformers tokenizes it with sentencepiece plus its own Python text canonicalization, which "
                f"has no tokenizer.json form, so vitc cannot reproduce its token ids yet. Tokenize with "
                f"transformers' SiglipTokenizer (pip install sentencepiece) and pass input_ids to the model.")
    return (f"{location}: has only a sentencepiece model ({spm_name}) and no {TOKENIZER_FILE}; vitc tokenizes with "
            f"the `tokenizers` library, which reads {TOKENIZER_FILE}. Add one next to it: where transformers is "
            f"installed, transformers.AutoTokenizer.from_pretrained(folder).save_pretrained(folder) writes it for "
            f"tokenizers-backed classes (CLIPTokenizer, GemmaTokenizer).")


# ---- special and added tokens, as transformers' from_pretrained collects them ----------------------------
def _added_token(value, special, force_special=False):
    """tokenizers.AddedToken from a config value: a string or an AddedToken dict (whose own "special" flag
    counts unless force_special: transformers makes the named special tokens special)."""
    AddedToken = _tokenizers().AddedToken
    if isinstance(value, str):
        return AddedToken(value, special=special, normalized=not special)
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        props = {k: value[k] for k in ("single_word", "lstrip", "rstrip", "normalized") if k in value}
        bad = [k for k, v in props.items() if not isinstance(v, bool)]
        if bad:
            raise ValueError(f"added token {_clip(value)}: {bad[0]} must be true or false")
        special = special if force_special else bool(value.get("special", special))
        return AddedToken(value["content"], special=special, **props)
    raise ValueError(f"a token must be a string or an object with a 'content' string, got {_clip(value)}")


def _special_and_added_tokens(files, defaults):
    """({key: AddedToken or None} for bos/eos/unk/pad/..., [AddedToken in id order], [extra special tokens])."""
    init = {**defaults, **{k: files.tokenizer_config[k] for k in SPECIAL_TOKEN_KEYS if k in files.tokenizer_config}}
    added = []
    decoder = files.tokenizer_config.get("added_tokens_decoder")
    if decoder is not None:
        if not isinstance(decoder, dict):
            raise ValueError(f"{TOKENIZER_CONFIG_FILE}: added_tokens_decoder must be an object")
        try:
            items = sorted((int(k), v) for k, v in decoder.items())
        except (TypeError, ValueError):
            raise ValueError(f"{TOKENIZER_CONFIG_FILE}: added_tokens_decoder keys must be token ids") from None
        added = [_added_token(v, special=False) for _, v in items]
    else:  # legacy checkpoints: special_tokens_map.json wins over tokenizer_config.json, then tokenizer.json's list
        init.update({k: v for k, v in files.special_tokens_map.items() if k in SPECIAL_TOKEN_KEYS})
        entries = files.load_tokenizer_json().get("added_tokens") or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError(f"{TOKENIZER_FILE}: added_tokens must be a list of objects")
        added = [_added_token(e, special=False) for e in sorted(entries, key=lambda e: e.get("id", 0))]
    by_content = {t.content: t for t in added}
    special = {}
    for key, value in init.items():
        if value is None:
            special[key] = None
            continue
        token = _added_token(value, special=True, force_special=True)
        special[key] = by_content.get(token.content, token)
    extra = files.tokenizer_config.get("extra_special_tokens") or \
        files.tokenizer_config.get("additional_special_tokens") or []
    extra = [_added_token(t, special=True) for t in (extra if isinstance(extra, list) else [])]
    return special, added, extra


# ---- the tokenizers -------------------------------------------------------------------------------------
class _Tokenizer:
    """A tokenizers.Tokenizer built as transformers builds the class named by tokenizer_config.json."""

    class_names = ()              # tokenizer_class values (without Fast) this class reproduces
    default_special_tokens = {}
    default_padding_side = "right"
    default_padding = True        # how the family's processor is called
    default_max_length = None     # when tokenizer_config.json has no model_max_length
    model_input_names = ("input_ids", "attention_mask")

    def __init__(self, files):
        tk = _tokenizers()
        data = files.load_tokenizer_json()
        model = data.get("model")
        if not isinstance(model, dict) or model.get("type", "BPE") != "BPE":
            raise ValueError(f"{files.tokenizer_file}: expected a BPE model in tokenizer.json, got "
                             f"{_clip(model.get('type') if isinstance(model, dict) else model)}")
        vocab, merges = model.get("vocab"), model.get("merges") or []
        if not isinstance(vocab, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in vocab.items()):
            raise ValueError(f"{files.tokenizer_file}: model.vocab must map token strings to ids")
        try:
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
        except TypeError:
            raise ValueError(f"{files.tokenizer_file}: model.merges must be a list of pairs") from None
        if not all(len(m) == 2 and all(isinstance(p, str) for p in m) for m in merges):
            raise ValueError(f"{files.tokenizer_file}: model.merges must be a list of token pairs")
        config = files.tokenizer_config
        special, added, extra = _special_and_added_tokens(files, self.default_special_tokens)
        unk = special.get("unk_token")
        try:
            self._tokenizer = self._build(tk, vocab, merges, None if unk is None else unk.content, config)
        except Exception as exc:  # the Rust side reports bad merges (a token not in the vocabulary) as Exception
            raise ValueError(f"{files.tokenizer_file}: cannot build the BPE model ({exc})") from None
        backend = tk.Tokenizer.from_str(json.dumps({**data, "model": {**model, "vocab": {}, "merges": []},
                                                    "added_tokens": []})) if data.get("post_processor") else None
        self._json_post_processor = backend.post_processor if backend is not None else None
        json_padding = backend.padding if backend is not None else (data.get("padding") or None)
        self._tokenizer.add_tokens(added)
        present = {t.content for t in added}
        for token in [t for t in special.values() if t is not None] + extra:
            if token.content not in present:
                self._tokenizer.add_tokens([token])
                present.add(token.content)
        self.special_tokens = {k: (None if t is None else t.content) for k, t in special.items()}
        pad_default = json_padding.get("pad_token") if isinstance(json_padding, dict) else None
        if self.special_tokens.get("pad_token") is None and pad_default:
            self.special_tokens["pad_token"] = pad_default
        self.padding_side = config.get("padding_side") or \
            (json_padding.get("direction") if isinstance(json_padding, dict) else None) or self.default_padding_side
        self.truncation_side = config.get("truncation_side") or "right"
        for name in ("padding_side", "truncation_side"):
            if getattr(self, name) not in ("left", "right"):
                raise ValueError(f"{TOKENIZER_CONFIG_FILE}: {name} must be 'left' or 'right', got "
                                 f"{_clip(getattr(self, name))}")
        max_length = config.get("model_max_length")
        if max_length is None or (isinstance(max_length, (int, float)) and max_length >= 1e20):
            max_length = self.default_max_length  # transformers: unbounded (1e30)
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or
                                       max_length < 2):
            raise ValueError(f"{TOKENIZER_CONFIG_FILE}: model_max_length must be an int >= 2, got "
                             f"{_clip(max_length)}")
        self.model_max_length = max_length
        self._tokenizer.post_processor = self._post_processor(config)
        self.name_or_path = files.source

    # ---- construction --------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, token=None):
        """The tokenizer of a local folder or Hub repo holding tokenizer.json (+ tokenizer_config.json)."""
        files = TokenizerFiles(path_or_repo_id, revision, cache_dir, token)
        if files.tokenizer_class and files.tokenizer_class not in cls.class_names:
            raise ValueError(f"{files.source}: tokenizer_class {files.tokenizer_class!r} is not one "
                             f"vitc.{cls.__name__} reproduces ({', '.join(cls.class_names)}); "
                             f"vitc.AutoTokenizer picks the class from it")
        return cls(files)

    def _token_id(self, key):
        content = self.special_tokens.get(key)
        return None if content is None else self._tokenizer.token_to_id(content)

    @property
    def backend_tokenizer(self):
        return self._tokenizer

    @property
    def vocab_size(self):
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    bos_token_id = property(lambda self: self._token_id("bos_token"))
    eos_token_id = property(lambda self: self._token_id("eos_token"))
    pad_token_id = property(lambda self: self._token_id("pad_token"))
    unk_token_id = property(lambda self: self._token_id("unk_token"))

    # ---- tokenizing ----------------------------------------------------------------------------------
    def __call__(self, text, padding=None, truncation=True, max_length=None, return_attention_mask=None,
                 return_tensors="np"):
        """Token ids of a string or a list of strings: BatchEncoding(input_ids=int64 [N, L], attention_mask=...).

        padding: True / "longest" (to the longest text), "max_length" (to max_length), False / "do_not_pad"
        (texts of unequal length then raise: numpy arrays are rectangular); None = the family's default.
        truncation: True cuts each text to max_length tokens, special tokens included (as transformers'
        longest_first strategy on one text); False does not. max_length: None = model_max_length."""
        if return_tensors not in ("np", None):
            raise ValueError(f"return_tensors must be 'np' or None (vitc returns numpy arrays), got {return_tensors!r}")
        texts = _text_list(text)
        padding = self.default_padding if padding is None else padding
        if padding not in (True, False, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be True, False, 'longest', 'max_length' or 'do_not_pad', got "
                             f"{_clip(padding)}")
        if not isinstance(truncation, bool) and truncation not in ("longest_first", "do_not_truncate"):
            raise ValueError(f"truncation must be true or false, got {_clip(truncation)}")
        truncation = truncation in (True, "longest_first")
        max_length = self.model_max_length if max_length is None else max_length
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or
                                       max_length < 1):
            raise ValueError(f"max_length must be a positive int, got {_clip(max_length)}")
        if max_length is None and (truncation or padding == "max_length"):
            raise ValueError("max_length is needed to truncate or pad to max_length: this tokenizer_config.json "
                             "has no model_max_length")
        tok = self._tokenizer
        if truncation:
            tok.enable_truncation(max_length, stride=0, strategy="longest_first", direction=self.truncation_side)
        else:
            tok.no_truncation()
        if padding in (False, "do_not_pad"):
            tok.no_padding()
        else:
            pad_id = self.pad_token_id
            if pad_id is None:
                raise ValueError(f"this tokenizer has no pad token, so texts cannot be padded (pad_token of "
                                 f"{TOKENIZER_CONFIG_FILE}); pass padding=False for one text")
            tok.enable_padding(direction=self.padding_side, pad_id=pad_id, pad_token=self.special_tokens["pad_token"],
                               length=max_length if padding == "max_length" else None)
        encodings = tok.encode_batch(texts, add_special_tokens=True)
        lengths = {len(e.ids) for e in encodings}
        if len(lengths) > 1:
            raise ValueError(f"the texts have different token counts {sorted(lengths)[:4]} and padding is off: "
                             "pass padding=True")
        out = BatchEncoding(input_ids=np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), -1))
        want_mask = "attention_mask" in self.model_input_names if return_attention_mask is None \
            else bool(return_attention_mask)
        if want_mask:
            out["attention_mask"] = np.array([e.attention_mask for e in encodings],
                                             dtype=np.int64).reshape(len(texts), -1)
        return out

    def encode(self, text, add_special_tokens=True):
        """Token ids (a list) of one string, untruncated and unpadded."""
        _text_list(text)
        if not isinstance(text, str):
            raise TypeError(f"encode takes one string, got {type(text).__name__}")
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens=True):
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"decode takes a 1-D sequence of token ids, got {ids.dtype} of shape {ids.shape}")
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def __repr__(self):
        return (f"vitc.{type(self).__name__}(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
                f"model_max_length={self.model_max_length}, padding_side={self.padding_side!r}, "
                f"special_tokens={self.special_tokens})")


def _text_list(text):
    if isinstance(text, str):
        return [text]
    if isinstance(text, (list, tuple)):
        if not text:
            raise ValueError("expected at least one text, got an empty list")
        if len(text) > MAX_TEXTS:
            raise ValueError(f"{len(text)} texts in one call: more than {MAX_TEXTS}; split the batch")
        for i, t in enumerate(text):
            if not isinstance(t, str):
                raise TypeError(f"text {i} is a {type(t).__name__}, expected a string")
        return list(text)
    raise TypeError(f"text must be a string or a list of strings, got {type(text).__name__}")


class CLIPTokenizer(_Tokenizer):
    """transformers' CLIPTokenizer (the fast one) from tokenizer.json: [<|startoftext|>] text [<|endoftext|>],
    padded on the right with the checkpoint's pad token (<|endoftext|> for OpenAI, "!" for some LAION ones) to
    the longest text; model_max_length 77."""

    class_names = ("CLIPTokenizer",)
    default_special_tokens = {"unk_token": "<|endoftext|>", "bos_token": "<|startoftext|>",
                              "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}
    default_max_length = 77

    def _build(self, tk, vocab, merges, unk, config):
        tokenizer = tk.Tokenizer(tk.models.BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                                               end_of_word_suffix="</w>", fuse_unk=False, unk_token=unk))
        tokenizer.normalizer = tk.normalizers.Sequence(
            [tk.normalizers.NFC(), tk.normalizers.Replace(tk.Regex(r"\s+"), " "), tk.normalizers.Lowercase()])
        tokenizer.pre_tokenizer = tk.pre_tokenizers.Sequence([
            tk.pre_tokenizers.Split(tk.Regex(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|"
                                             r"[\p{N}]|[^\s\p{L}\p{N}]+"), behavior="removed", invert=True),
            tk.pre_tokenizers.ByteLevel(add_prefix_space=False)])
        tokenizer.decoder = tk.decoders.ByteLevel()
        return tokenizer

    def _post_processor(self, config):
        bos, eos = self.special_tokens["bos_token"], self.special_tokens["eos_token"]
        tk = _tokenizers()
        return tk.processors.RobertaProcessing((eos, self._tokenizer.token_to_id(eos)),
                                               (bos, self._tokenizer.token_to_id(bos)), False, False)

    def decode(self, ids, skip_special_tokens=True):
        return super().decode(ids, skip_special_tokens).replace("</w>", " ").strip()


class SiglipTokenizer(_Tokenizer):
    """transformers' GemmaTokenizer (SigLIP2 FixRes checkpoints, model_type siglip) or Siglip2Tokenizer (the
    same, lowercased) from tokenizer.json; called like SiglipProcessor is: padding="max_length", max_length 64."""

    class_names = ("GemmaTokenizer", "Siglip2Tokenizer")
    default_special_tokens = {"unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>",
                              "pad_token": "<pad>", "mask_token": "<mask>"}
    default_padding_side = "left"
    default_padding = "max_length"
    default_max_length = 64

    def _build(self, tk, vocab, merges, unk, config):
        tokenizer = tk.Tokenizer(tk.models.BPE(vocab=vocab, merges=merges, fuse_unk=True, unk_token=unk,
                                               dropout=None, byte_fallback=True))
        tokenizer.pre_tokenizer = tk.pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
        tokenizer.decoder = tk.decoders.Sequence([tk.decoders.Replace("▁", " "), tk.decoders.ByteFallback(),
                                                 tk.decoders.Fuse()])
        normalizer = tk.normalizers.Replace(" ", "▁")
        if str(config.get("tokenizer_class") or "").removesuffix("Fast") == "Siglip2Tokenizer":
            normalizer = tk.normalizers.Sequence([tk.normalizers.Lowercase(), normalizer])
        tokenizer.normalizer = normalizer
        return tokenizer

    def _post_processor(self, config):
        """tokenizer.json's post-processor (Gemma's adds <bos>); none there: no special tokens. transformers
        ignores tokenizer_config.json's add_bos_token / add_eos_token when there is a tokenizer.json."""
        if self._json_post_processor is not None:
            return self._json_post_processor
        return _tokenizers().processors.TemplateProcessing(single="$A:0", pair="$A:0 $B:1", special_tokens=[])


# tokenizer_class (without Fast) -> vitc class; and model_type -> vitc class where tokenizer_config names none
TOKENIZER_CLASSES = {name: cls for cls in (CLIPTokenizer, SiglipTokenizer) for name in cls.class_names}
MODEL_TYPE_TOKENIZERS = {"clip": CLIPTokenizer, "clip_text_model": CLIPTokenizer}


def auto_tokenizer(path_or_repo_id, revision=None, cache_dir=None, token=None):
    """The tokenizer class tokenizer_config.json's tokenizer_class names (else config.json's model_type's)."""
    files = TokenizerFiles(path_or_repo_id, revision, cache_dir, token)
    name = files.tokenizer_class
    cls = TOKENIZER_CLASSES.get(name) if name else MODEL_TYPE_TOKENIZERS.get(files.model_type)
    if cls is None:
        if name == "SiglipTokenizer" or (not name and files.model_type in ("siglip", "siglip_text_model")):
            raise ValueError(_sentencepiece_only_message(files.source, "tokenizer.json", "SiglipTokenizer"))
        what = f"tokenizer_class {name!r}" if name else f"model_type {files.model_type!r} (no tokenizer_class)"
        raise ValueError(f"{files.source}: {what} is not a tokenizer vitc has; it has: "
                         f"{', '.join(sorted(TOKENIZER_CLASSES))}")
    return cls(files)
