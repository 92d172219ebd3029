"""CLIP / SigLIP / DINOv2 configs: every field vitc reads equals transformers' for configs written by
transformers and for minimal Hub-style configs; hostile configs raise errors naming the field."""
import json

import pytest

import transformers
from vitc import config_families as fam

# (vitc class, transformers class, kwargs for several configs); the kwargs change every field vitc reads
CASES = {
    "clip_vision": (fam.CLIPVisionConfig, transformers.CLIPVisionConfig, [
        {}, {"hidden_size": 48, "intermediate_size": 70, "num_hidden_layers": 2, "num_attention_heads": 3,
             "image_size": 64, "patch_size": 14, "hidden_act": "gelu", "layer_norm_eps": 1e-6,
             "projection_dim": 24, "num_channels": 1}]),
    "clip_text": (fam.CLIPTextConfig, transformers.CLIPTextConfig, [
        {}, {"hidden_size": 40, "intermediate_size": 50, "num_hidden_layers": 3, "num_attention_heads": 5,
             "vocab_size": 300, "max_position_embeddings": 20, "projection_dim": 16, "eos_token_id": 2,
             "bos_token_id": 0, "pad_token_id": 0, "hidden_act": "gelu"}]),
    "siglip_vision": (fam.SiglipVisionConfig, transformers.SiglipVisionConfig, [
        {}, {"hidden_size": 36, "intermediate_size": 44, "num_hidden_layers": 2, "num_attention_heads": 6,
             "image_size": [48, 64], "patch_size": 16, "vision_use_head": False, "layer_norm_eps": 1e-5}]),
    "siglip_text": (fam.SiglipTextConfig, transformers.SiglipTextConfig, [
        {}, {"hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 1, "num_attention_heads": 2,
             "vocab_size": 256000, "max_position_embeddings": 64, "projection_size": 24, "eos_token_id": 1,
             "pad_token_id": 0, "bos_token_id": 2}]),
    "dinov2": (fam.Dinov2Config, transformers.Dinov2Config, [
        {}, {"hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "mlp_ratio": 3,
             "image_size": 518, "patch_size": 14, "layerscale_value": 1e-5, "use_swiglu_ffn": True,
             "qkv_bias": False, "hidden_act": "silu", "id2label": {0: "a", 1: "b", 2: "c"}}]),
    "dinov2_registers": (fam.Dinov2WithRegistersConfig, transformers.Dinov2WithRegistersConfig, [
        {}, {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_register_tokens": 0},
        {"num_register_tokens": 7, "patch_size": 14, "image_size": 98, "use_swiglu_ffn": True}]),
}
PARAMS = [(name, i) for name, (_, _, configs) in CASES.items() for i in range(len(configs))]


def assert_same_fields(ours, theirs):
    for name in ours.FIELDS:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.id2label == theirs.id2label and ours.model_type == theirs.model_type
    if hasattr(theirs, "num_register_tokens") or hasattr(ours, "mlp_ratio"):
        return
    assert ours.head_dim == theirs.hidden_size // theirs.num_attention_heads


@pytest.mark.parametrize("name,index", PARAMS)
def test_tower_config_equals_transformers(tmp_path, name, index):
    ours_cls, theirs_cls, configs = CASES[name]
    theirs_cls(**configs[index]).save_pretrained(tmp_path)
    ours, theirs = ours_cls.from_pretrained(str(tmp_path)), theirs_cls.from_pretrained(tmp_path)
    assert_same_fields(ours, theirs)
    assert ours_cls.from_dict(ours.to_dict()) == ours  # round trip


def test_dinov2_mlp_width_is_transformers_layer_width():
    torch = pytest.importorskip("torch")
    for kwargs in ({"hidden_size": 48, "mlp_ratio": 3}, {"hidden_size": 60, "use_swiglu_ffn": True},
                   {"hidden_size": 1536, "num_attention_heads": 24, "use_swiglu_ffn": True}):
        theirs = transformers.Dinov2Config(num_hidden_layers=1, **kwargs)
        layer = transformers.models.dinov2.modeling_dinov2.Dinov2Layer(theirs)
        first = layer.mlp.fc1 if hasattr(layer.mlp, "fc1") else layer.mlp.up_proj
        assert isinstance(first, torch.nn.Linear)
        assert fam.Dinov2Config(num_hidden_layers=1, **kwargs).intermediate_size == first.out_features, kwargs


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_towers_read_from_a_two_tower_config(tmp_path, kind):
    if kind == "clip":
        theirs = transformers.CLIPConfig(
            text_config={"hidden_size": 40, "num_attention_heads": 4, "projection_dim": 8, "vocab_size": 99},
            vision_config={"hidden_size": 24, "num_attention_heads": 2, "patch_size": 14, "projection_dim": 8},
            projection_dim=8, logit_scale_init_value=1.5)
        classes = fam.CLIPConfig, fam.CLIPTextConfig, fam.CLIPVisionConfig
        towers = transformers.CLIPTextConfig, transformers.CLIPVisionConfig
    else:
        theirs = transformers.SiglipConfig(text_config={"hidden_size": 40, "num_attention_heads": 4},
                                           vision_config={"hidden_size": 24, "num_attention_heads": 2})
        classes = fam.SiglipConfig, fam.SiglipTextConfig, fam.SiglipVisionConfig
        towers = transformers.SiglipTextConfig, transformers.SiglipVisionConfig
    theirs.save_pretrained(tmp_path)
    ours = classes[0].from_pretrained(str(tmp_path))
    assert_same_fields(ours.text_config, theirs.text_config)
    assert_same_fields(ours.vision_config, theirs.vision_config)
    for name in ours.FIELDS:
        assert getattr(ours, name) == getattr(theirs, name)
    for our_tower, their_tower in zip(classes[1:], towers):  # as CLIPVisionModel.from_pretrained reads it
        assert_same_fields(our_tower.from_pretrained(str(tmp_path)), their_tower.from_pretrained(tmp_path))
    assert classes[0].from_dict(ours.to_dict()) == ours


# config.json as published (fields trimmed to those that differ from the defaults, as on the Hub)
HUB_CONFIGS = {
    # openai/clip-vit-large-patch14: legacy *_config_dict fields, applied over the nested configs
    "clip_legacy_dicts": (fam.CLIPConfig, transformers.CLIPConfig, {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 768,
        "text_config": {"hidden_size": 512, "model_type": "clip_text_model"},
        "text_config_dict": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                             "num_hidden_layers": 12, "projection_dim": 768},
        "vision_config": None,
        "vision_config_dict": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                               "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768}}),
    # laion CLIP: gelu instead of quick_gelu
    "clip_laion": (fam.CLIPConfig, transformers.CLIPConfig, {
        "model_type": "clip", "projection_dim": 512, "text_config": {"hidden_act": "gelu"},
        "vision_config": {"hidden_act": "gelu", "patch_size": 16}}),
    # google/siglip-base-patch16-224: almost empty towers
    "siglip_minimal": (fam.SiglipConfig, transformers.SiglipConfig, {
        "model_type": "siglip", "text_config": {"model_type": "siglip_text_model"},
        "vision_config": {"model_type": "siglip_vision_model"}}),
    # google/siglip2-base-patch16-256 (FixRes): model_type siglip, Gemma vocabulary
    "siglip2_fixres": (fam.SiglipConfig, transformers.SiglipConfig, {
        "model_type": "siglip", "text_config": {"vocab_size": 256000, "model_type": "siglip_text_model"},
        "vision_config": {"image_size": 256, "model_type": "siglip_vision_model"}}),
    # google/siglip-so400m-patch14-384
    "siglip_so400m": (fam.SiglipConfig, transformers.SiglipConfig, {
        "model_type": "siglip",
        "text_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16,
                        "num_hidden_layers": 27, "projection_size": None},
        "vision_config": {"hidden_size": 1152, "image_size": 384, "intermediate_size": 4304,
                          "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14}}),
    # facebook/dinov2-giant
    "dinov2_giant": (fam.Dinov2Config, transformers.Dinov2Config, {
        "model_type": "dinov2", "hidden_size": 1536, "num_attention_heads": 24, "num_hidden_layers": 40,
        "image_size": 518, "layerscale_value": 1.0, "mlp_ratio": 4, "use_swiglu_ffn": True}),
    # facebook/dinov2-with-registers-small
    "dinov2_registers_small": (fam.Dinov2WithRegistersConfig, transformers.Dinov2WithRegistersConfig, {
        "model_type": "dinov2_with_registers", "hidden_size": 384, "num_attention_heads": 6, "image_size": 518,
        "patch_size": 14, "num_register_tokens": 4}),
}


@pytest.mark.parametrize("name", sorted(HUB_CONFIGS))
def test_minimal_hub_configs_get_transformers_defaults(tmp_path, name):
    ours_cls, theirs_cls, config = HUB_CONFIGS[name]
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours, theirs = ours_cls.from_pretrained(str(tmp_path)), theirs_cls.from_pretrained(tmp_path)
    if hasattr(ours, "text_config"):
        assert_same_fields(ours.text_config, theirs.text_config)
        assert_same_fields(ours.vision_config, theirs.vision_config)
        for field in ours.FIELDS:
            assert getattr(ours, field) == getattr(theirs, field)
    else:
        assert_same_fields(ours, theirs)


def test_legacy_config_dict_overrides_the_nested_config():
    cfg = fam.CLIPConfig.from_dict(HUB_CONFIGS["clip_legacy_dicts"][2])
    assert cfg.text_config.hidden_size == 768 and cfg.vision_config.num_hidden_layers == 24
    assert fam.CLIPVisionConfig.from_dict(HUB_CONFIGS["clip_legacy_dicts"][2]).patch_size == 14


@pytest.mark.parametrize("cls,config,message", [
    (fam.CLIPVisionConfig, {"hidden_size": 0}, "hidden_size must be a positive int, got 0"),
    (fam.CLIPVisionConfig, {"hidden_size": "768"}, "hidden_size must be a positive int, got '768'"),
    (fam.CLIPVisionConfig, {"num_hidden_layers": 10 ** 9}, "num_hidden_layers = 1000000000 is larger than"),
    (fam.CLIPVisionConfig, {"hidden_size": 100, "num_attention_heads": 12},
     r"hidden_size \(100\) must be divisible by num_attention_heads \(12\)"),
    (fam.CLIPVisionConfig, {"head_dim": 32}, "head_dim = 32 is not hidden_size / num_attention_heads = 64"),
    (fam.CLIPVisionConfig, {"patch_size": 32, "image_size": 16}, "patch_size .* is larger than image_size"),
    (fam.CLIPVisionConfig, {"image_size": [224]}, "image_size must be an int or a"),
    (fam.CLIPVisionConfig, {"hidden_act": "mish"}, "hidden_act 'mish' is not supported"),
    (fam.CLIPVisionConfig, {"layer_norm_eps": None}, "layer_norm_eps must be a number > 0"),
    (fam.CLIPVisionConfig, {"model_type": "vit"}, "model_type 'vit' is not a CLIPVisionConfig: expected "
     r"clip_vision_model or clip \(whose vision_config is read\)"),
    (fam.CLIPVisionConfig, {"model_type": "siglip", "vision_config": {}}, "model_type 'siglip' is not a"),
    (fam.CLIPTextConfig, {"vocab_size": 1 << 30}, "vocab_size = 1073741824 is larger than"),
    (fam.CLIPTextConfig, {"eos_token_id": -1}, "eos_token_id must be a token id"),
    (fam.CLIPTextConfig, {"eos_token_id": [2, "x"]}, "eos_token_id must be a token id"),
    (fam.CLIPTextConfig, {"max_position_embeddings": 0}, "max_position_embeddings must be a positive int"),
    (fam.CLIPConfig, {"text_config": [1, 2]}, "config.text_config must be an object"),
    (fam.CLIPConfig, {"vision_config": {"model_type": "clip"}},
     "config.vision_config.model_type is 'clip', expected clip_vision_model"),
    (fam.CLIPConfig, {"vision_config": {"hidden_size": -1}}, "vision_config: config.hidden_size must be"),
    (fam.CLIPConfig, {"text_config_dict": "big"}, "config.text_config_dict must be an object"),
    (fam.CLIPConfig, {"vision_config_dict": {"patch_size": 0}}, "vision_config_dict: config.patch_size must"),
    (fam.CLIPConfig, {"logit_scale_init_value": float("nan")}, "logit_scale_init_value must be a finite number"),
    (fam.CLIPConfig, {"model_type": "siglip"}, "model_type 'siglip' is not a CLIPConfig: expected clip"),
    (fam.SiglipConfig, {"model_type": "siglip2"}, "model_type 'siglip2' is not a SiglipConfig"),
    (fam.SiglipVisionConfig, {"vision_use_head": 1}, "vision_use_head must be true or false"),
    (fam.SiglipTextConfig, {"projection_size": 0}, "projection_size must be a positive int"),
    (fam.Dinov2Config, {"mlp_ratio": 0}, "mlp_ratio must be a positive int"),
    (fam.Dinov2Config, {"mlp_ratio": 2.5}, "mlp_ratio must be a positive int"),  # transformers: int too
    (fam.Dinov2Config, {"mlp_ratio": 100000}, "mlp_ratio 100000 gives an MLP width of"),
    (fam.Dinov2Config, {"use_swiglu_ffn": "yes"}, "use_swiglu_ffn must be true or false"),
    (fam.Dinov2Config, {"layerscale_value": float("inf")}, "layerscale_value must be a finite number"),
    (fam.Dinov2Config, {"model_type": "dinov2_with_registers"}, "is not a Dinov2Config: expected dinov2"),
    (fam.Dinov2WithRegistersConfig, {"num_register_tokens": -1}, "num_register_tokens must be an int in 0.."),
    (fam.Dinov2WithRegistersConfig, {"id2label": {"0": "a", "5": "b"}}, r"ids must be 0..1"),
])
def test_hostile_configs(tmp_path, cls, config, message):
    with pytest.raises(ValueError, match=message):
        cls.from_dict(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"config.json: .*{message}"):  # the file is named
        cls.from_pretrained(str(tmp_path))


@pytest.mark.parametrize("text", ["[1, 2]", "{", "\"clip\""])
def test_unreadable_files(tmp_path, text):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match="config.json: "):
        fam.SiglipConfig.from_pretrained(str(tmp_path))
