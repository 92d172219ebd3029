"""SigLIP image tower == transformers' SiglipVisionModel (eager, float32), incl. the attention-pooling head."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import relative_error, torch, transformers  # noqa: E402
from family_checkpoints import assert_outputs_match, build, pixels, reference  # noqa: E402

import vitc  # noqa: E402

TINY = dict(hidden_size=32, intermediate_size=44, num_hidden_layers=2, num_attention_heads=4,
            attn_implementation="eager")
# (patch, image, heads, act)
SHAPES = [(16, 64, 4, "gelu_pytorch_tanh"), (14, 56, 2, "gelu_pytorch_tanh"), (32, 96, 8, "gelu"),
          (14, 384, 16, "gelu_pytorch_tanh"), (16, 256, 4, "gelu_pytorch_tanh")]  # 384/14: a 27x27 grid


@pytest.mark.parametrize("patch,image,heads,act", SHAPES)
def test_vision_model_matches_transformers(tmp_path, isa_name, patch, image, heads, act):
    config = transformers.SiglipVisionConfig(**dict(TINY, patch_size=patch, image_size=image,
                                                    num_attention_heads=heads, hidden_act=act))
    path, ref_model = build(tmp_path, "SiglipVisionModel", config)
    model = vitc.SiglipVisionModel.from_pretrained(path)
    x = pixels((2, 3, image, image))
    got = model(x, output_hidden_states=True, output_attentions=True)
    assert got.last_hidden_state.shape == (2, (image // patch) ** 2, 32)
    assert_outputs_match(got, reference(ref_model, x), ("last_hidden_state", "pooler_output"))


def test_interpolated_positions_and_no_head(tmp_path):
    config = transformers.SiglipVisionConfig(**dict(TINY, patch_size=16, image_size=64, vision_use_head=False))
    path, ref_model = build(tmp_path, "SiglipVisionModel", config)
    model = vitc.SiglipVisionModel.from_pretrained(path)
    for h, w in ((64, 64), (96, 96), (48, 80)):
        x = pixels((1, 3, h, w), seed=h * w)
        got = model(x, output_hidden_states=True, output_attentions=True, interpolate_pos_encoding=True)
        ref = reference(ref_model, x, interpolate_pos_encoding=True)
        assert got.pooler_output is None and ref.pooler_output is None
        assert_outputs_match(got, ref, ("last_hidden_state",))


def test_tower_loads_from_a_full_siglip_model(tmp_path):
    config = transformers.SiglipConfig(
        text_config=dict(hidden_size=16, intermediate_size=20, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=50, max_position_embeddings=12),
        vision_config=dict(TINY, patch_size=16, image_size=48))
    config._attn_implementation = "eager"
    path, full = build(tmp_path, "SiglipModel", config)
    model = vitc.SiglipVisionModel.from_pretrained(path)
    assert model.config.model_type == "siglip_vision_model" and model.config.hidden_size == 32
    x = pixels((3, 3, 48, 48), seed=2)
    with torch.no_grad():
        ref = full.vision_model(torch.from_numpy(x), output_hidden_states=True, output_attentions=True)
        want = full.get_image_features(pixel_values=torch.from_numpy(x))
    assert_outputs_match(model(x, output_hidden_states=True, output_attentions=True), ref,
                         ("last_hidden_state", "pooler_output"))
    want = getattr(want, "pooler_output", want)
    assert relative_error(model.embed(x), want) <= 1e-4
    assert np.allclose(np.linalg.norm(model.embed(x, normalize=True), axis=1), 1, atol=1e-6)


def test_config_defaults():
    c = vitc.SiglipVisionConfig.from_dict({"model_type": "siglip", "vision_config": {}})
    assert (c.hidden_act, c.layer_norm_eps, c.patch_size, c.vision_use_head) == ("gelu_pytorch_tanh", 1e-6, 16, True)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_checkpoints_load(tmp_path, dtype):
    config = transformers.SiglipVisionConfig(**dict(TINY, patch_size=16, image_size=32))
    path, ref_model = build(tmp_path, "SiglipVisionModel", config, dtype=dtype)
    model = vitc.SiglipVisionModel.from_pretrained(path)
    x = pixels((2, 3, 32, 32))
    assert_outputs_match(model(x, output_hidden_states=True, output_attentions=True), reference(ref_model, x),
                         ("last_hidden_state", "pooler_output"))


def test_a_mis_shaped_head_tensor_is_named(tmp_path):
    from safetensors.numpy import load_file, save_file
    config = transformers.SiglipVisionConfig(**dict(TINY, patch_size=16, image_size=32))
    path, _ = build(tmp_path, "SiglipVisionModel", config)
    file = os.path.join(path, "model.safetensors")
    tensors = load_file(file)
    key = next(k for k in tensors if k.endswith("head.attention.in_proj_weight"))
    tensors[key] = tensors[key][:64]
    save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(vitc.WeightsMismatchError, match=r"in_proj_weight.*shape \[64, 32\], expected \[96, 32\]"):
        vitc.SiglipVisionModel.from_pretrained(path)
    del tensors[key]
    save_file(tensors, file, metadata={"format": "pt"})
    with pytest.raises(vitc.WeightsMismatchError, match="missing tensor.*in_proj_weight"):
        vitc.SiglipVisionModel.from_pretrained(path)
