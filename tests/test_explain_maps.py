"""Attention rollout and CLS maps vs a float64 numpy reference computed from transformers' output_attentions
on the same checkpoint (eager, float32), plus the per-family prefix / readout hooks."""
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import checkpoints, pixels, relative_error  # noqa: E402,F401

import vitc  # noqa: E402
from vitc import explain  # noqa: E402
from vitc.explain import AttentionMaps, AttentionSource  # noqa: E402

TOLERANCE = 1e-5


def fuse_ref(att, fusion):
    return {"mean": att.mean(axis=1), "max": att.max(axis=1), "min": att.min(axis=1)}[fusion]


def rollout_ref(attentions, prefix, grid, fusion="mean", discard=0.0, query=0, readout=None):
    """Abnar & Zuidema: R = Â_L ... Â_1 with Â = rownorm(fuse(A) with the lowest entries dropped + I), as full
    float64 matrix products; the query row (or the fused readout row times R) over the patch tokens."""
    atts = [np.asarray(a, np.float64) for a in attentions]
    n, _, s, _ = atts[0].shape
    result = np.broadcast_to(np.eye(s), (n, s, s)).copy()
    for att in atts:
        fused = fuse_ref(att, fusion)
        if discard:
            count = int(s * s * discard)
            for i in range(n):
                flat = fused[i].reshape(-1)
                threshold = np.partition(flat, count - 1)[count - 1]
                drop = flat <= threshold
                if query is not None:
                    drop[query * s + query] = False
                flat[drop] = 0.0
        a = fused + np.eye(s)
        a = a / a.sum(axis=-1, keepdims=True)
        result = a @ result
    row = result[:, query] if readout is None else np.einsum("ns,nst->nt", fuse_ref(readout, fusion), result)
    return row[:, prefix:].reshape((n,) + grid)


def torch_attentions(ckpt, x, **kwargs):
    return [a.numpy() for a in ckpt.reference_outputs(x, **kwargs).attentions]


# (checkpoint, prefix tokens, input [H, W], grid): ViT with a non-square grid, DeiT (CLS + distillation
# token) with and without teacher heads, a base ViTModel, and inputs at another size (interpolated)
CASES = [("small", 1, (30, 42), (5, 7)), ("deit", 2, (24, 24), (6, 6)), ("deit_teacher", 2, (24, 24), (6, 6)),
         ("model_pooler", 1, (30, 42), (5, 7)), ("square", 1, (32, 40), (8, 10)), ("deit", 2, (28, 20), (7, 5))]


def load(ckpt):
    cls = vitc.ViTModel if ckpt.spec[0].endswith("Model") else vitc.ViTForImageClassification
    return cls.from_pretrained(ckpt.path)


@pytest.mark.parametrize("name,prefix,size,grid", CASES)
@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.3, 0.9])
def test_rollout_matches_reference(checkpoints, name, prefix, size, grid, fusion, discard):
    ckpt = checkpoints.get(name)
    model = load(ckpt)
    x = pixels((3, 3) + size, seed=len(name))
    interpolate = size != tuple(model.config.image_hw)
    ref = rollout_ref(torch_attentions(ckpt, x, interpolate_pos_encoding=interpolate), prefix, grid, fusion, discard)
    got = vitc.attention_rollout(model, x, head_fusion=fusion, discard_ratio=discard)
    assert got.dtype == np.float32 and got.shape == (3,) + grid
    assert relative_error(got, ref) <= TOLERANCE


@pytest.mark.parametrize("name,prefix,size,grid", CASES)
def test_cls_attention_matches_reference(checkpoints, name, prefix, size, grid):
    ckpt = checkpoints.get(name)
    model = load(ckpt)
    x = pixels((2, 3) + size, seed=5)
    interpolate = size != tuple(model.config.image_hw)
    atts = torch_attentions(ckpt, x, interpolate_pos_encoding=interpolate)
    maps = AttentionMaps.compute(model, x)
    heads = model.config.num_attention_heads
    for layer in range(-len(atts), len(atts)):
        row = atts[layer][:, :, 0, prefix:].astype(np.float64)  # CLS query over the patches
        got = maps.cls_attention(layer)
        assert got.dtype == np.float32 and got.shape == (2,) + grid
        assert relative_error(got, row.mean(axis=1).reshape((2,) + grid)) <= TOLERANCE
        assert relative_error(maps.cls_attention(layer, "all"), row.reshape((2, heads) + grid)) <= TOLERANCE
        for head in (0, heads - 1, -1):
            assert relative_error(maps.cls_attention(layer, head), row[:, head].reshape((2,) + grid)) <= TOLERANCE
    np.testing.assert_array_equal(vitc.cls_attention(model, x, layer=1, head=0), maps.cls_attention(1, 0))


def test_every_isa_path(checkpoints, isa_name):
    ckpt = checkpoints.get("deit")
    model = load(ckpt)
    x = pixels((2, 3, 24, 24), seed=1)
    ref = rollout_ref(torch_attentions(ckpt, x), 2, (6, 6), "max", 0.5)
    assert relative_error(vitc.attention_rollout(model, x, head_fusion="max", discard_ratio=0.5), ref) <= TOLERANCE


def test_images_go_through_the_models_processor(checkpoints, tmp_path):
    from PIL import Image
    model = load(checkpoints.get("small"))
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    x = model.image_processor(rgb)["pixel_values"]
    expected = vitc.attention_rollout(model, x)
    for images in (str(tmp_path / "a.png"), [tmp_path / "a.png"], Image.fromarray(rgb), rgb):
        np.testing.assert_array_equal(vitc.attention_rollout(model, images), expected)
    # another processor size: the maps are on that input's own grid (interpolated position embeddings)
    big = vitc.ViTImageProcessor(size={"height": 42, "width": 54})
    assert vitc.cls_attention(model, rgb, processor=big).shape == (1, 7, 9)


def test_bad_arguments_are_named(checkpoints):
    model = load(checkpoints.get("square"))
    maps = AttentionMaps.compute(model, pixels((1, 3, 24, 24)))
    with pytest.raises(ValueError, match="head_fusion"):
        maps.rollout("median")
    for ratio in (-0.1, 1.0, True, "0.5"):
        with pytest.raises(ValueError, match="discard_ratio"):
            maps.rollout("mean", ratio)
    with pytest.raises(ValueError, match=r"layer must be an int in \[-2, 2\)"):
        maps.cls_attention(2)
    with pytest.raises(ValueError, match=r"head must be None, 'all' or an int in \[-3, 3\)"):
        maps.cls_attention(-1, 3)
    with pytest.raises(ValueError, match="output_attentions=True"):
        AttentionMaps(model(pixels((1, 3, 24, 24))), (6, 6), explain.FAMILIES["vit"], 1)


# ---- family hooks: prefix tokens and pooling-head readouts ---------------------------------------------
class FakeOutputs:
    def __init__(self, attentions, pooler_attentions=None):
        self.attentions, self.pooler_attentions = attentions, pooler_attentions


def random_attentions(rng, layers, n, heads, s, query=1):
    """Row-stochastic [N, H, query, S] maps (softmax of random scores), float32 as a model returns them."""
    out = []
    for _ in range(layers):
        e = np.exp(rng.standard_normal((n, heads, query if query else s, s)) * 2)
        out.append((e / e.sum(axis=-1, keepdims=True)).astype(np.float32))
    return out


def test_register_tokens_are_skipped():
    """A DINOv2-with-registers-like family: [CLS, 4 registers, patches]."""
    rng = np.random.default_rng(3)
    atts = random_attentions(rng, 3, 2, 4, 5 + 12, query=0)
    source = AttentionSource(prefix_tokens=lambda config: 1 + config["num_register_tokens"])
    maps = AttentionMaps(FakeOutputs(atts), (3, 4), source, source.prefix_tokens({"num_register_tokens": 4}))
    for fusion in ("mean", "min"):
        ref = rollout_ref(atts, 5, (3, 4), fusion, 0.2)
        assert relative_error(maps.rollout(fusion, 0.2), ref) <= TOLERANCE
    np.testing.assert_allclose(maps.cls_attention(0, 2), atts[0][:, 2, 0, 5:].reshape(2, 3, 4), rtol=1e-6)


def test_pooling_head_readout_family():
    """A SigLIP-like family: no prefix token, no CLS; a pooling head's query attends over the output tokens.
    Rollout = fused readout row @ R; cls_attention(-1) is the head's attention; other layers are refused."""
    rng = np.random.default_rng(4)
    atts = random_attentions(rng, 2, 3, 2, 6, query=0)
    pool = random_attentions(rng, 1, 3, 2, 6, query=1)[0]  # [N, H, 1, S]
    source = AttentionSource(prefix_tokens=lambda config: 0, query_token=None,
                             readout=lambda out: out.pooler_attentions[:, :, 0])
    explain.register_family("fake-siglip", source)
    try:
        class Config:
            model_type = "fake-siglip"
        assert explain.family_of(Config()) is source
    finally:
        del explain.FAMILIES["fake-siglip"]
    maps = AttentionMaps(FakeOutputs(atts, pool), (2, 3), source, 0)
    for fusion in ("mean", "max"):
        ref = rollout_ref(atts, 0, (2, 3), fusion, readout=pool[:, :, 0], query=None)
        assert relative_error(maps.rollout(fusion), ref) <= TOLERANCE
    np.testing.assert_allclose(maps.cls_attention(-1), pool[:, :, 0].mean(axis=1).reshape(3, 2, 3), rtol=1e-6)
    with pytest.raises(ValueError, match="no CLS token"):
        maps.cls_attention(0)
    with pytest.raises(ValueError, match="readout"):
        AttentionSource(prefix_tokens=lambda config: 0, query_token=None)


def test_unknown_family_and_token_count_are_errors():
    class Config:
        model_type = "swin"
    with pytest.raises(ValueError, match="no attention-map rule for model_type 'swin'.*register_family"):
        explain.family_of(Config())
    atts = random_attentions(np.random.default_rng(0), 1, 1, 1, 10, query=0)
    with pytest.raises(ValueError, match=r"expected 1 prefix tokens \+ 3x4 patches = 13"):
        AttentionMaps(FakeOutputs(atts), (3, 4), explain.FAMILIES["vit"], 1)


def test_import_vitc_stays_light(subprocess_env, tmp_path):
    code = "import sys, vitc; print(sorted(m for m in ('PIL', 'vitc.explain', 'vitc.heatmap') if m in sys.modules))"
    # run outside the repository: `python -c` puts its working directory first on sys.path
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env,
                         cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
    assert vitc.attention_rollout is explain.attention_rollout and callable(vitc.overlay)
