"""embed() runs the last encoder layer on the CLS token alone (vitc/first_tokens.py) where the embedding reads
only that token (ViT, DeiT, CLIP, DINOv2): the embeddings are bit for bit those of the full forward
(encode()), on every ISA path, in every dtype and kernel set this CPU has, at awkward batch and sequence sizes;
the families whose embedding reads every token (SigLIP) or whose MLP differs (SwiGLU) keep the full layer."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import transformers  # noqa: E402
from family_checkpoints import build, pixels  # noqa: E402

import vitc  # noqa: E402
from vitc import _vitc, first_tokens, modeling  # noqa: E402

COMMON = dict(hidden_size=48, intermediate_size=100, num_hidden_layers=3, num_attention_heads=4,
              image_size=32, patch_size=8, attn_implementation="eager")  # 16 patches + CLS: 17 tokens
# family -> (vitc class, transformers class, config, does embed() take the first-token path)
FAMILIES = {
    "vit_pooler": (vitc.ViTModel, "ViTModel", lambda: transformers.ViTConfig(**COMMON), True),
    "vit_classifier": (vitc.ViTForImageClassification, "ViTForImageClassification",
                       lambda: transformers.ViTConfig(**COMMON, num_labels=5), True),
    "deit": (vitc.DeiTForImageClassification, "DeiTForImageClassification",
             lambda: transformers.DeiTConfig(**COMMON, num_labels=5), True),
    "clip": (vitc.CLIPVisionModelWithProjection, "CLIPVisionModelWithProjection",
             lambda: transformers.CLIPVisionConfig(**COMMON, projection_dim=24), True),
    "clip_gelu": (vitc.CLIPVisionModel, "CLIPVisionModel",
                  lambda: transformers.CLIPVisionConfig(**COMMON, hidden_act="gelu"), True),
    "dinov2": (vitc.Dinov2Model, "Dinov2Model", lambda: transformers.Dinov2Config(**COMMON), True),
    "dinov2_swiglu": (vitc.Dinov2Model, "Dinov2Model",
                      lambda: transformers.Dinov2Config(**COMMON, use_swiglu_ffn=True), False),
    "siglip": (vitc.SiglipVisionModel, "SiglipVisionModel", lambda: transformers.SiglipVisionConfig(**COMMON), False),
}
LOWP_CASES = [(d, _vitc.KERNEL_SETS[k]) for d in ("bfloat16", "int8") for k in _vitc.kernel_sets(_vitc.dtype_code(d))]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("first_tokens")
    return {name: build(root, hf, config(), seed=3, name=name)[0] for name, (_, hf, config, _) in FAMILIES.items()}


@pytest.fixture
def calls(monkeypatch):
    """How many times the first-token last layer ran."""
    count = [0]
    real = first_tokens.last_layer_first_tokens

    def spy(*args):
        count[0] += 1
        return real(*args)

    monkeypatch.setattr(first_tokens, "last_layer_first_tokens", spy)
    return count


def _assert_embed_is_full_forward(model, taken, calls, shapes=((1, 3, 32, 32), (3, 3, 32, 32))):
    for i, shape in enumerate(shapes):
        x = pixels(shape, seed=10 + i)
        before = calls[0]
        got = model.embed(x)
        assert calls[0] - before == (1 if taken else 0)
        full = model._embedding(model.encode(x))
        np.testing.assert_array_equal(got, full)
        np.testing.assert_array_equal(model.embed(x, normalize=True), modeling.l2_normalize(full))
        np.testing.assert_array_equal(model.embed(x, all_tokens=True), model.encode(x).last_hidden_state)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_float32_embed_bit_equal_on_every_isa(ckpts, isa_name, calls, family):
    cls, _, _, taken = FAMILIES[family]
    model = cls.from_pretrained(ckpts[family], threads=2)
    assert model.isa == isa_name
    _assert_embed_is_full_forward(model, taken, calls)


@pytest.mark.parametrize("family", ["vit_pooler", "deit", "clip", "dinov2"])
@pytest.mark.parametrize("dtype,kernel_set", LOWP_CASES)
def test_lowp_embed_bit_equal_on_every_kernel_set(ckpts, monkeypatch, calls, family, dtype, kernel_set):
    monkeypatch.setattr(modeling, "lowp_kernel_set", lambda isa, code: _vitc.kernel_set_code(kernel_set))
    cls, _, _, taken = FAMILIES[family]
    model = cls.from_pretrained(ckpts[family], dtype=dtype, threads=2)
    assert model.kernel_set == kernel_set and model.dtype == dtype
    _assert_embed_is_full_forward(model, taken, calls)


@pytest.mark.parametrize("dtype,kernel_set", LOWP_CASES)
def test_lowp_embed_bit_equal_where_attention_runs_in_bf16(tmp_path, monkeypatch, calls, dtype, kernel_set):
    """head_dim 32: bf16/int8 layers on the amx kernel set take the bf16 attention (attention_lowp.c), and the
    first-token layer must take the same one."""
    monkeypatch.setattr(modeling, "lowp_kernel_set", lambda isa, code: _vitc.kernel_set_code(kernel_set))
    config = transformers.ViTConfig(**dict(COMMON, hidden_size=64, num_attention_heads=2))
    path = build(tmp_path, "ViTModel", config, seed=4, name="vit_hd32")[0]
    model = vitc.ViTModel.from_pretrained(path, dtype=dtype, threads=2)
    assert _vitc.bf16_attention_applies(_vitc.kernel_set_code(kernel_set), 32) == (kernel_set == "amx")
    _assert_embed_is_full_forward(model, True, calls)


def test_dinov2_other_input_size_and_one_thread(ckpts, calls):
    model = vitc.Dinov2Model.from_pretrained(ckpts["dinov2"], threads=1)  # positions resized: 5x3 patches + CLS
    _assert_embed_is_full_forward(model, True, calls, shapes=((2, 3, 40, 24), (1, 3, 8, 8)))


def test_two_tower_embed_and_classify_take_it(tmp_path, calls):
    from text_checkpoints import build_two_tower, tokenizer_folders
    path = build_two_tower(tmp_path, "clip", tokenizer_folders(tmp_path)["clip"])[0]
    model = vitc.CLIPModel.from_pretrained(path)
    x = pixels((2, 3) + tuple(model.vision_model.config.image_hw), seed=5)
    got = model.embed(x, normalize=True)
    assert calls[0] == 1
    np.testing.assert_array_equal(got, model(input_ids=model.tokenizer(["a"])["input_ids"], pixel_values=x).image_embeds)


def test_profiled_calls_time_every_layer(ckpts, calls):
    model = vitc.CLIPVisionModelWithProjection.from_pretrained(ckpts["clip"])
    x = pixels((2, 3, 32, 32))
    with model.profile() as prof:
        got = model.embed(x)
    assert calls[0] == 0 and prof.calls == 1
    np.testing.assert_array_equal(got, model.embed(x))
