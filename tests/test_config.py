"""ViTConfig: reads transformers' config.json, validates every field before anything is allocated."""
import json

import pytest

import vitc
from vitc.config import ACTIVATION_CODES, ViTConfig

import transformers  # noqa: E402


def transformers_config_dict(tmp_path, **kwargs):
    cfg = transformers.ViTConfig(**kwargs)
    cfg.save_pretrained(tmp_path)
    return json.loads((tmp_path / "config.json").read_text())


def test_reads_transformers_config_json(tmp_path):
    transformers.ViTConfig(hidden_size=40, num_attention_heads=5, intermediate_size=67, image_size=[30, 42],
                           patch_size=[5, 7], num_channels=1, qkv_bias=False, hidden_act="gelu_new",
                           layer_norm_eps=1e-6, id2label={0: "cat", 1: "dog", 2: "eel"},
                           problem_type="single_label_classification").save_pretrained(tmp_path)
    cfg = ViTConfig.from_pretrained(str(tmp_path))
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == (40, 5, 67)
    assert cfg.image_hw == (30, 42) and cfg.patch_hw == (5, 7) and cfg.grid == (6, 6) and cfg.num_patches == 36
    assert cfg.num_channels == 1 and cfg.qkv_bias is False and cfg.layer_norm_eps == 1e-6
    assert cfg.hidden_act_code == 2 and cfg.pooler_act_code == 6 and cfg.head_dim == 8
    assert cfg.id2label == {0: "cat", 1: "dog", 2: "eel"} and cfg.label2id == {"cat": 0, "dog": 1, "eel": 2}
    assert cfg.num_labels == 3 and cfg.problem_type == "single_label_classification"
    assert cfg.pooler_output_size == 40  # null in transformers means hidden_size
    assert cfg.extra["encoder_stride"] == 16  # unused fields are kept
    assert ViTConfig.from_dict(cfg.to_dict()) == cfg
    assert ViTConfig.from_json_file(str(tmp_path / "config.json")) == cfg


def test_defaults_are_transformers_defaults(tmp_path):
    ours, theirs = ViTConfig(), transformers.ViTConfig()
    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
                 "layer_norm_eps", "image_size", "patch_size", "num_channels", "qkv_bias", "pooler_output_size",
                 "pooler_act", "num_labels", "id2label", "model_type"):
        assert getattr(ours, name) == getattr(theirs, name), name


def test_activation_names_cover_transformers():
    from transformers.activations import ACT2FN
    for name in ACTIVATION_CODES:
        assert name in ACT2FN, name


@pytest.mark.parametrize("change,message", [
    ({"hidden_size": 0}, "hidden_size must be a positive int, got 0"),
    ({"hidden_size": 64.0}, "hidden_size must be a positive int, got 64.0"),
    ({"num_hidden_layers": True}, "num_hidden_layers must be a positive int, got True"),
    ({"num_attention_heads": -1}, "num_attention_heads must be a positive int"),
    ({"intermediate_size": "3072"}, "intermediate_size must be a positive int"),
    ({"num_channels": None}, "num_channels must be a positive int"),
    ({"hidden_size": 100, "num_attention_heads": 12},
     r"hidden_size \(100\) must be divisible by num_attention_heads \(12\)"),
    ({"patch_size": 32, "image_size": 16}, r"patch_size \[32, 32\] is larger than image_size \[16, 16\]"),
    ({"patch_size": [4, 40], "image_size": [30, 30]}, "is larger than image_size"),
    ({"image_size": [224]}, r"image_size must be an int or a \[height, width\] pair"),
    ({"image_size": 0}, "image_size must be positive"),
    ({"patch_size": "16"}, "patch_size must be an int"),
    ({"hidden_act": "gelu_10"}, "hidden_act 'gelu_10' is not supported: expected one of"),
    ({"hidden_act": "mish"}, "hidden_act 'mish' is not supported"),
    ({"pooler_act": "softmax"}, "pooler_act 'softmax' is not supported"),
    ({"layer_norm_eps": 0}, "layer_norm_eps must be a number > 0"),
    ({"layer_norm_eps": "1e-12"}, "layer_norm_eps must be a number > 0"),
    ({"qkv_bias": 1}, "qkv_bias must be true or false"),
    ({"model_type": "swin"}, "model_type 'swin' is not supported: expected one of vit, deit"),
    ({"pooler_output_size": -3}, "pooler_output_size must be a positive int"),
    ({"head_dim": 32}, "head_dim = 32 is not hidden_size / num_attention_heads = 64"),
    ({"id2label": {"zero": "a"}}, "key 'zero' is not an integer id"),
    ({"id2label": {"0": "a", "2": "b"}}, r"ids must be 0..1"),
    ({"id2label": ["a"]}, "id2label must be an object"),
    ({"id2label": {"0": "a"}, "num_labels": 2}, "num_labels = 2 but id2label has 1 entries"),
    ({"num_labels": -1, "id2label": None}, "num_labels must be an int >= 0"),
    ({"label2id": {"a": "0"}}, "label2id must map label strings to int ids"),
])
def test_bad_values(change, message):
    base = {"hidden_size": 768, "num_attention_heads": 12}
    with pytest.raises(ValueError, match=message):
        ViTConfig.from_dict({**base, **change})


def test_bad_files(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        ViTConfig.from_json_file(str(tmp_path / "config.json"))
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must be a JSON object"):
        ViTConfig.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 7}))
    with pytest.raises(ValueError, match=r"config.json: config.hidden_size \(7\) must be divisible"):
        ViTConfig.from_pretrained(str(tmp_path / "config.json"))


def test_bad_config_fails_before_reading_weights(tmp_path):
    """A config error is reported even though the weights file is garbage: nothing is read or allocated."""
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 768, "num_attention_heads": 7}))
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="must be divisible by num_attention_heads"):
        vitc.ViTForImageClassification.from_pretrained(str(tmp_path))


def test_deit_config(tmp_path):
    transformers.DeiTConfig(hidden_size=24, num_attention_heads=3, image_size=32).save_pretrained(tmp_path)
    cfg = ViTConfig.from_pretrained(str(tmp_path))
    assert cfg.model_type == "deit" and cfg.hidden_size == 24 and cfg.grid == (2, 2)
