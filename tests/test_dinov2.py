"""DINOv2 (with / without registers) == transformers' Dinov2Model, Dinov2WithRegistersModel and
Dinov2ForImageClassification (eager, float32), positions resized to every input size."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import relative_error, torch, transformers  # noqa: E402
from family_checkpoints import assert_outputs_match, build, pixels, reference  # noqa: E402

import vitc  # noqa: E402

TINY = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, mlp_ratio=3, layerscale_value=0.7,
            attn_implementation="eager")
# (patch, config image size, input sizes (h, w) to run)
SHAPES = [(14, 56, [(56, 56), (70, 70), (42, 84)]), (16, 64, [(64, 64), (48, 48), (256, 256)]),
          (14, 518, [(518, 518), (224, 224), (98, 98)])]


@pytest.mark.parametrize("patch,image,inputs", SHAPES)
def test_model_matches_transformers(tmp_path, isa_name, patch, image, inputs):
    path, ref_model = build(tmp_path, "Dinov2Model", transformers.Dinov2Config(**TINY, patch_size=patch,
                                                                               image_size=image))
    model = vitc.Dinov2Model.from_pretrained(path)
    for h, w in inputs:
        x = pixels((2, 3, h, w), seed=h * w)
        got = model(x, output_hidden_states=True, output_attentions=True)
        assert_outputs_match(got, reference(ref_model, x), ("last_hidden_state", "pooler_output"))


@pytest.mark.parametrize("registers", [0, 4, 1])
def test_with_registers_matches_transformers(tmp_path, isa_name, registers):
    config = transformers.Dinov2WithRegistersConfig(**TINY, patch_size=14, image_size=56,
                                                    num_register_tokens=registers)
    path, ref_model = build(tmp_path, "Dinov2WithRegistersModel", config)
    model = vitc.Dinov2WithRegistersModel.from_pretrained(path)
    for h, w in ((56, 56), (84, 84), (28, 70)):  # same grid, upsampled, downsampled + non-square (antialias)
        x = pixels((2, 3, h, w), seed=h + w)
        got = model(x, output_hidden_states=True, output_attentions=True)
        assert got.last_hidden_state.shape[1] == 1 + registers + (h // 14) * (w // 14)
        assert_outputs_match(got, reference(ref_model, x), ("last_hidden_state", "pooler_output"))


def test_classifier_on_cls_and_mean_of_patches(tmp_path):
    config = transformers.Dinov2Config(**TINY, patch_size=14, image_size=42, num_labels=5)
    path, ref_model = build(tmp_path, "Dinov2ForImageClassification", config)
    model = vitc.Dinov2ForImageClassification.from_pretrained(path)
    x = pixels((3, 3, 42, 56), seed=3)
    got = model(x, output_hidden_states=True, output_attentions=True)
    ref = reference(ref_model, x)
    assert relative_error(got.logits, ref.logits) <= 1e-4
    for g, r in zip(got.hidden_states + got.attentions, ref.hidden_states + ref.attentions):
        assert relative_error(g, r) <= 1e-4
    # the base model of the same checkpoint: embed() = CLS after LayerNorm, mean_patches = the classifier input
    base = vitc.Dinov2Model.from_pretrained(path)
    with torch.no_grad():
        seq = ref_model.dinov2(torch.from_numpy(x)).last_hidden_state
    assert relative_error(base.embed(x), seq[:, 0]) <= 1e-4
    want = torch.cat([seq[:, 0], seq[:, 1:].mean(dim=1)], dim=1)
    assert relative_error(base.embed(x, mean_patches=True), want) <= 1e-4
    e = base.embed(x, normalize=True)
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-6)
    with pytest.raises(vitc.WeightsMismatchError, match="dinov2"):
        vitc.Dinov2ForImageClassification.from_pretrained(build(tmp_path, "Dinov2Model", config, name="base")[0])


@pytest.mark.parametrize("cls_name", ["Dinov2Model", "Dinov2WithRegistersModel"])
def test_swiglu_ffn_matches_transformers(tmp_path, isa_name, cls_name):
    """DINOv2 giant's SwiGLU FFN (weights_in = gate | up rows, width 2/3 of mlp_ratio rounded up to 8)."""
    config = getattr(transformers, cls_name.replace("Model", "Config"))(
        **TINY, patch_size=14, image_size=42, use_swiglu_ffn=True)
    path, ref_model = build(tmp_path, cls_name, config)
    model = getattr(vitc, cls_name).from_pretrained(path)
    for h, w in ((42, 42), (56, 42)):
        x = pixels((2, 3, h, w), seed=h)
        assert_outputs_match(model(x, output_hidden_states=True, output_attentions=True), reference(ref_model, x),
                             ("last_hidden_state", "pooler_output"))
