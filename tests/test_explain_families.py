"""Attention maps of the families beyond ViT/DeiT vs a float64 numpy reference from transformers'
output_attentions on the same checkpoint: CLIP (CLS first, also through a two-tower CLIPModel), DINOv2 (CLS),
DINOv2 with registers (CLS + registers skipped) and SigLIP (no CLS: the pooling head's attention, which
transformers computes in nn.MultiheadAttention and drops, read from that module here)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import relative_error, torch, transformers  # noqa: E402
from family_checkpoints import build, pixels  # noqa: E402
from test_explain_maps import TOLERANCE, rollout_ref  # noqa: E402
from test_cli import run  # noqa: E402

import vitc  # noqa: E402
from vitc.explain import AttentionMaps  # noqa: E402

TOWER = dict(hidden_size=48, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
             attn_implementation="eager")
DINO = dict(hidden_size=24, num_hidden_layers=3, num_attention_heads=3, mlp_ratio=3, patch_size=14,
            image_size=42, attn_implementation="eager")
# (name, transformers class, config, vitc class, input [H, W], prefix tokens, grid)
CASES = [
    ("clip", "CLIPVisionModel", lambda: transformers.CLIPVisionConfig(**TOWER, image_size=32, patch_size=8),
     "CLIPVisionModel", (32, 32), 1, (4, 4)),
    ("dinov2", "Dinov2Model", lambda: transformers.Dinov2Config(**DINO), "Dinov2Model", (42, 56), 1, (3, 4)),
    ("registers", "Dinov2WithRegistersModel",
     lambda: transformers.Dinov2WithRegistersConfig(**DINO, num_register_tokens=3), "Dinov2WithRegistersModel",
     (42, 42), 4, (3, 3)),
    ("siglip", "SiglipVisionModel", lambda: transformers.SiglipVisionConfig(**TOWER, image_size=32, patch_size=8),
     "SiglipVisionModel", (32, 24), 0, (4, 3)),
]


def siglip_head_attention(ref, last):
    """[N, heads, S]: the probe's per-head attention weights from transformers' own pooling-head module."""
    head = ref.head
    with torch.no_grad():
        probe = head.probe.repeat(last.shape[0], 1, 1)
        weights = head.attention(probe, last, last, need_weights=True, average_attn_weights=False)[1]
    return weights.numpy()[:, :, 0]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def case(request, tmp_path_factory):
    name, ref_cls, config, cls, size, prefix, grid = request.param
    path, ref = build(tmp_path_factory.mktemp(name), ref_cls, config())
    x = pixels((2, 3) + size, seed=len(name))
    interpolate = size != (ref.config.image_size, ref.config.image_size) and name != "dinov2"
    kwargs = {"interpolate_pos_encoding": True} if interpolate else {}
    with torch.no_grad():
        out = ref(torch.from_numpy(x), output_attentions=True, **kwargs)
    atts = [a.numpy() for a in out.attentions]
    readout = siglip_head_attention(ref, out.last_hidden_state) if name == "siglip" else None
    return getattr(vitc, cls).from_pretrained(path), x, atts, readout, prefix, grid


@pytest.mark.parametrize("fusion,discard", [("mean", 0.0), ("max", 0.3), ("min", 0.9)])
def test_rollout_matches_reference(case, fusion, discard):
    model, x, atts, readout, prefix, grid = case
    query = None if readout is not None else 0
    ref = rollout_ref(atts, prefix, grid, fusion, discard, query=query, readout=readout)
    got = vitc.attention_rollout(model, x, head_fusion=fusion, discard_ratio=discard)
    assert got.dtype == np.float32 and got.shape == (2,) + grid
    assert relative_error(got, ref) <= TOLERANCE


def test_cls_attention_matches_reference(case):
    model, x, atts, readout, prefix, grid = case
    maps = AttentionMaps.compute(model, x)
    if readout is not None:  # SigLIP: the pooling head's attention is the only map
        assert relative_error(maps.cls_attention(-1), readout.mean(axis=1).reshape((2,) + grid)) <= TOLERANCE
        assert relative_error(maps.cls_attention(-1, "all"), readout.reshape((2, -1) + grid)) <= TOLERANCE
        with pytest.raises(ValueError, match="no CLS token"):
            maps.cls_attention(0)
        return
    for layer in range(len(atts)):
        row = atts[layer][:, :, 0, prefix:].astype(np.float64)
        assert relative_error(maps.cls_attention(layer), row.mean(axis=1).reshape((2,) + grid)) <= TOLERANCE
        assert relative_error(maps.cls_attention(layer, 1), row[:, 1].reshape((2,) + grid)) <= TOLERANCE


def test_two_tower_model_maps_are_its_image_towers(tmp_path):
    from text_checkpoints import build_two_tower, tokenizer_folders
    path, ref, _ = build_two_tower(tmp_path, "clip", tokenizer_folders(tmp_path)["clip"])
    x = pixels((1, 3, 32, 32), seed=2)
    with torch.no_grad():
        atts = [a.numpy() for a in ref.vision_model(torch.from_numpy(x), output_attentions=True).attentions]
    got = vitc.attention_rollout(vitc.CLIPModel.from_pretrained(path), x)
    assert relative_error(got, rollout_ref(atts, 1, (2, 2))) <= TOLERANCE


def test_siglip_without_pooling_head_says_so(tmp_path):
    config = transformers.SiglipVisionConfig(**TOWER, image_size=16, patch_size=8, vision_use_head=False)
    path, _ = build(tmp_path, "SiglipVisionModel", config)
    model = vitc.SiglipVisionModel.from_pretrained(path)
    assert model(pixels((1, 3, 16, 16)), output_attentions=True).pooler_attentions is None
    with pytest.raises(ValueError, match="no attention-pooling head"):
        vitc.attention_rollout(model, pixels((1, 3, 16, 16)))


@pytest.mark.parametrize("ref_cls,config", [
    ("Dinov2Model", lambda: transformers.Dinov2Config(**DINO)),
    ("SiglipVisionModel", lambda: transformers.SiglipVisionConfig(**TOWER, image_size=32, patch_size=8))])
def test_explain_cli_on_families(capsys, tmp_path, ref_cls, config):
    from PIL import Image
    path, _ = build(tmp_path, ref_cls, config())
    image = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)).save(image)
    code, out, err = run(capsys, "explain", str(image), "--model", path, "--out", str(tmp_path / "maps"))
    assert code == 0, err
    with Image.open(tmp_path / "maps" / "a.rollout.png") as png:
        assert png.size == (60, 50)
