"""CLIP image tower == transformers' CLIPVisionModel / CLIPVisionModelWithProjection (eager, float32)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import relative_error, torch, transformers  # noqa: E402
from family_checkpoints import assert_outputs_match, build, pixels, reference  # noqa: E402

import vitc  # noqa: E402
from vitc.config_families import CLIPVisionConfig  # noqa: E402

TINY = dict(hidden_size=32, intermediate_size=52, num_hidden_layers=2, num_attention_heads=4, projection_dim=24,
            attn_implementation="eager")
# (patch, image, hidden_act, heads)
SHAPES = [(32, 224, "quick_gelu", 4), (16, 64, "gelu", 2), (14, 56, "quick_gelu", 8), (16, 256, "gelu", 16),
          (14, 224, "quick_gelu", 16)]


def _config(patch, image, act, heads):
    return transformers.CLIPVisionConfig(**dict(TINY, patch_size=patch, image_size=image, hidden_act=act,
                                                num_attention_heads=heads))


@pytest.mark.parametrize("patch,image,act,heads", SHAPES)
def test_with_projection_matches_transformers(tmp_path, isa_name, patch, image, act, heads):
    path, ref_model = build(tmp_path, "CLIPVisionModelWithProjection", _config(patch, image, act, heads))
    model = vitc.CLIPVisionModelWithProjection.from_pretrained(path)
    x = pixels((2, 3, image, image))
    got = model(x, output_hidden_states=True, output_attentions=True)
    assert_outputs_match(got, reference(ref_model, x), ("image_embeds", "last_hidden_state"))
    assert got.image_embeds.shape == (2, 24)


@pytest.mark.parametrize("patch,image,act,heads", SHAPES[:2])
def test_vision_model_matches_transformers(tmp_path, patch, image, act, heads):
    path, ref_model = build(tmp_path, "CLIPVisionModel", _config(patch, image, act, heads))
    model = vitc.CLIPVisionModel.from_pretrained(path)
    x = pixels((3, 3, image, image), seed=1)
    got = model(x, output_hidden_states=True, output_attentions=True)
    assert_outputs_match(got, reference(ref_model, x), ("last_hidden_state", "pooler_output"))


def test_interpolated_positions_match_transformers(tmp_path):
    path, ref_model = build(tmp_path, "CLIPVisionModelWithProjection", _config(16, 64, "quick_gelu", 4))
    model = vitc.CLIPVisionModelWithProjection.from_pretrained(path)
    for h, w in ((96, 96), (48, 80)):
        x = pixels((1, 3, h, w), seed=h + w)
        got = model(x, output_hidden_states=True, output_attentions=True, interpolate_pos_encoding=True)
        assert_outputs_match(got, reference(ref_model, x, interpolate_pos_encoding=True),
                             ("image_embeds", "last_hidden_state"))
    with pytest.raises(ValueError, match="doesn't match model"):
        model(pixels((1, 3, 96, 96)))


def test_tower_loads_from_a_full_clip_model(tmp_path):
    """A CLIPModel checkpoint (vision_model.* + visual_projection + text tower): the text weights and the
    int64 position_ids are ignored, the nested vision_config is read, as transformers does."""
    config = transformers.CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=20, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=50, max_position_embeddings=12, projection_dim=24),
        vision_config=dict(TINY, patch_size=16, image_size=48), projection_dim=24)
    config._attn_implementation = "eager"
    path, full = build(tmp_path, "CLIPModel", config)
    ref_model = transformers.CLIPVisionModelWithProjection.from_pretrained(path, attn_implementation="eager").eval()
    model = vitc.CLIPVisionModelWithProjection.from_pretrained(path)
    assert model.config.model_type == "clip_vision_model" and model.config.hidden_size == 32
    x = pixels((2, 3, 48, 48))
    got = model(x, output_hidden_states=True, output_attentions=True)
    assert_outputs_match(got, reference(ref_model, x), ("image_embeds", "last_hidden_state"))
    with torch.no_grad():
        want = full.get_image_features(pixel_values=torch.from_numpy(x))
    want = getattr(want, "pooler_output", want)
    assert relative_error(model.embed(x), want) <= 1e-4
    e = model.embed(x, normalize=True)
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-6)
    assert relative_error(e, want / want.norm(dim=-1, keepdim=True)) <= 1e-4
    base = vitc.CLIPVisionModel.from_pretrained(path)  # visual_projection ignored here
    assert relative_error(base.embed(x), got.last_hidden_state[:, 0] * 0 + base(x).pooler_output) == 0


def test_config_reads_the_nested_vision_config():
    c = CLIPVisionConfig.from_dict({"model_type": "clip", "vision_config": {"hidden_size": 64,
                                    "num_attention_heads": 4, "intermediate_size": 80}})
    assert (c.hidden_size, c.patch_size, c.hidden_act, c.layer_norm_eps) == (64, 32, "quick_gelu", 1e-5)


def test_cli_embed_and_info_pick_the_family(tmp_path, capsys):
    """`vitc embed --model` writes the family's embedding (CLIP: image_embeds), `vitc info` names the family."""
    from PIL import Image
    from vitc.cli import main
    path, ref_model = build(tmp_path, "CLIPVisionModelWithProjection", _config(16, 32, "quick_gelu", 4))
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32).save_pretrained(path)
    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "e.npy"
    assert main(["embed", str(img), "--model", path, "--out", str(out)]) == 0
    model = vitc.CLIPVisionModelWithProjection.from_pretrained(path)
    assert np.array_equal(np.load(out), model.embed(str(img)))
    assert np.load(out).shape == (1, 24)
    capsys.readouterr()
    assert main(["info", path]) == 0
    shown = capsys.readouterr().out
    assert "CLIP" in shown and "CLIPVisionModelWithProjection" in shown
