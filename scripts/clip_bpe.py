"""A small CLIP byte-level BPE trained on a corpus with the `tokenizers` library, as transformers'
CLIPTokenizer: the tokenizer scripts/train_digits_clip.py bundles and the one tests/test_tokenization.py
checks vitc's tokenizer against. Needs tokenizers and transformers (training/test dependencies only)."""
import json

import transformers
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers


def train_clip_bpe(corpus, vocab_size, model_max_length):
    """CLIP's BPE layout (lower-cased, "</w>" word ends, every byte alone and as a word end) trained on corpus
    (a list of strings); returns the transformers.CLIPTokenizer, for the caller to save_pretrained."""
    t = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    t.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                         normalizers.Lowercase()])
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    t.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet,
                                                      show_progress=False, end_of_word_suffix="</w>"))
    model = json.loads(t.to_str())["model"]
    vocab = model["vocab"]
    for ch in sorted(alphabet):  # as CLIP's vocabulary: every byte alone and as a word end
        for token in (ch, ch + "</w>"):
            vocab.setdefault(token, len(vocab))
    for token in ("<|startoftext|>", "<|endoftext|>"):
        vocab[token] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return transformers.CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
