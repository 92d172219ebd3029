"""Boundary 2, config.json: missing fields, wrong types, non-positive, inconsistent or absurd sizes, unknown
activations: a ValueError naming the field before any weight is read or buffer allocated.

tests/test_config.py has the field-by-field cases against transformers; this module adds the hostile ones."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from robust_helpers import write_checkpoint  # noqa: E402

import vitc  # noqa: E402
from vitc.config import MAX_SIZES, ViTConfig  # noqa: E402


@pytest.mark.parametrize("change,words", [
    ({"hidden_act": ["gelu"]}, r"config.hidden_act \['gelu'\] is not supported"),
    ({"hidden_act": {"a": 1}}, "config.hidden_act .* is not supported"),
    ({"hidden_act": "swiglu"}, "config.hidden_act 'swiglu' is not supported: expected one of"),
    ({"pooler_act": None}, "config.pooler_act None is not supported"),
    ({"model_type": ["vit"]}, r"config.model_type \['vit'\] is not supported"),
    ({"model_type": "swin"}, "config.model_type 'swin' is not supported"),
    ({"hidden_size": 2 ** 40, "num_attention_heads": 1}, f"hidden_size = {2 ** 40} is larger than"),
    ({"num_hidden_layers": 10 ** 9}, "num_hidden_layers = 1000000000 is larger than"),
    ({"intermediate_size": 10 ** 12}, "intermediate_size = 1000000000000 is larger than"),
    ({"num_channels": 2 ** 31}, "num_channels = 2147483648 is larger than"),
    ({"image_size": 10 ** 9}, "config.image_size .* is larger than"),
    ({"image_size": [224, 10 ** 9]}, "config.image_size .* is larger than"),
    ({"patch_size": [16]}, r"patch_size must be an int or a \[height, width\] pair"),
    ({"patch_size": 0}, "patch_size must be positive"),
    ({"patch_size": 32, "image_size": 16}, r"patch_size \[32, 32\] is larger than image_size \[16, 16\]"),
    ({"patch_size": [4, 32], "image_size": [64, 16]}, r"patch_size \[4, 32\] is larger than image_size"),
    ({"hidden_size": 30, "num_attention_heads": 4}, r"hidden_size \(30\) must be divisible by num_attention_heads"),
    ({"hidden_size": 32, "num_attention_heads": 64}, "must be divisible"),
    ({"head_dim": 7}, "config.head_dim = 7 is not hidden_size / num_attention_heads"),
    ({"layer_norm_eps": 0}, "layer_norm_eps must be a number > 0"),
    ({"layer_norm_eps": -1e-6}, "layer_norm_eps must be a number > 0"),
    ({"layer_norm_eps": float("nan")}, "layer_norm_eps must be a number > 0"),
    ({"layer_norm_eps": float("inf")}, "layer_norm_eps must be a number > 0"),
    ({"layer_norm_eps": 1e-50}, "layer_norm_eps must be a number > 0 that float32 can hold"),
    ({"layer_norm_eps": "1e-12"}, "layer_norm_eps must be a number"),
    ({"qkv_bias": "true"}, "qkv_bias must be true or false"),
    ({"qkv_bias": 1}, "qkv_bias must be true or false"),
    ({"num_labels": 10 ** 9, "id2label": None}, "num_labels = 1000000000 is larger than"),
    ({"id2label": {"x" * 100000: "a"}}, r"is not an integer id"),
    ({"pooler_output_size": -3}, "pooler_output_size must be a positive int"),
    ({"hidden_size": None}, "hidden_size must be a positive int, got None"),
    ({"hidden_size": "x" * 100000}, r"hidden_size must be a positive int, got 'xxx.*\(100002 characters\)"),
])
def test_hostile_values(change, words):
    base = {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "image_size": 32,
            "patch_size": 8, "num_hidden_layers": 2}
    with pytest.raises(ValueError, match=words) as info:
        ViTConfig.from_dict({**base, **change})
    assert len(str(info.value)) < 2000  # a hostile value is not echoed in full


def test_bounds_accept_the_largest_published_vits():
    """ViT-22B (hidden 6144, 48 layers, 48 heads, MLP 24576) and ViT-H/14 at 518 px are within the bounds."""
    ViTConfig(hidden_size=6144, num_hidden_layers=48, num_attention_heads=48, intermediate_size=24576,
              image_size=224, patch_size=14)
    ViTConfig(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120,
              image_size=518, patch_size=14)
    assert MAX_SIZES["num_hidden_layers"] >= 48 and MAX_SIZES["hidden_size"] >= 6144


def test_missing_fields_take_transformers_defaults():
    """transformers' ViTConfig fills every absent field; so does vitc (an empty config is ViT-B/16)."""
    cfg = ViTConfig.from_dict({})
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.image_hw, cfg.patch_hw) == (768, 12, (224, 224), (16, 16))


def test_keys_that_are_not_python_identifiers_or_self():
    """config.json keys are data, never keyword arguments: a key named "self" or "cls" must not break loading."""
    cfg = ViTConfig.from_dict({"self": 1, "cls": 2, "a b": 3, "hidden_size": 64, "num_attention_heads": 4})
    assert cfg.extra["self"] == 1 and cfg.to_dict()["a b"] == 3
    with pytest.raises(ValueError, match="config keys must be strings"):
        ViTConfig.from_dict({1: 2})
    for bad in ([], "x", None, 3):
        with pytest.raises(ValueError, match="must be a JSON object"):
            ViTConfig.from_dict(bad)


@pytest.mark.parametrize("content,error,words", [
    (b"\xff\xfe{}", ValueError, "config.json: not UTF-8 text"),
    (b"[" * 100000, ValueError, "config.json: the JSON is nested too deeply"),
    (b'{"hidden_size": ' + b"7" * 5000 + b"}", ValueError, "config.json: unreadable JSON value"),
    (b"", ValueError, "config.json: not valid JSON"),
    (b'{"hidden_size": 64, "num_attention_heads": 4, "hidden_act": "nope"}', ValueError,
     "config.json: config.hidden_act 'nope' is not supported"),
])
def test_hostile_config_files(tmp_path, content, error, words):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(error, match=words) as info:
        ViTConfig.from_json_file(str(path))
    assert str(path) in str(info.value)


def test_config_that_is_a_directory(tmp_path):
    (tmp_path / "config.json").mkdir()
    with pytest.raises(IsADirectoryError, match="config.json: is a directory"):
        ViTConfig.from_json_file(str(tmp_path / "config.json"))


def test_absurd_config_fails_before_the_weights_are_opened(tmp_path):
    """num_hidden_layers = 10**9 with a valid weights file: a ValueError at once (no billion-entry plan)."""
    folder = write_checkpoint(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 10 ** 9}))
    with pytest.raises(ValueError, match="num_hidden_layers = 1000000000 is larger than"):
        vitc.ViTForImageClassification.from_pretrained(folder)
    # consistent-looking config, wrong for these weights: named tensors, before any packing
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 3}))
    with pytest.raises(vitc.WeightsMismatchError, match="missing tensor.*encoder.layer.2"):
        vitc.ViTForImageClassification.from_pretrained(folder)
