"""from_pretrained(dtype=...): bf16 / int8 encoder layers against vitc float32 on the same inputs, every
family, every kernel set this CPU has for the dtype (forced), the bundled digits model on all 1,797 digits,
and the weights' memory."""
import importlib.util
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import torch, transformers  # noqa: E402
from family_checkpoints import build, pixels  # noqa: E402
from text_checkpoints import build_two_tower, tokenizer_folders  # noqa: E402

import vitc  # noqa: E402
from vitc import _vitc, modeling  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOWP = ("bfloat16", "int8")
COMMON = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
              attn_implementation="eager")


def _kernel_sets(dtype):
    return [_vitc.KERNEL_SETS[k] for k in _vitc.kernel_sets(_vitc.dtype_code(dtype))]


CASES = [(d, k) for d in LOWP for k in _kernel_sets(d)]


def _cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def _check(got, ref, dtype):
    cos = _cosine(got, ref)
    if dtype == "bfloat16":
        assert _rel(got, ref) <= 2e-2 and cos >= 0.999, (_rel(got, ref), cos)
    else:
        assert cos >= 0.99, cos


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("dtype")
    vit = dict(COMMON, image_size=32, patch_size=8, num_labels=10)
    out = {
        "vit": (vitc.ViTForImageClassification,
                build(root, "ViTForImageClassification", transformers.ViTConfig(**vit))[0], "logits"),
        "deit": (vitc.DeiTForImageClassification,
                 build(root, "DeiTForImageClassification", transformers.DeiTConfig(**vit))[0], "logits"),
        "clip": (vitc.CLIPVisionModelWithProjection,
                 build(root, "CLIPVisionModelWithProjection",
                       transformers.CLIPVisionConfig(**COMMON, image_size=32, patch_size=8, projection_dim=24))[0],
                 "image_embeds"),
        "siglip": (vitc.SiglipVisionModel,
                   build(root, "SiglipVisionModel",
                         transformers.SiglipVisionConfig(**COMMON, image_size=32, patch_size=8))[0], "pooler_output"),
        "dinov2": (vitc.Dinov2Model,
                   build(root, "Dinov2Model", transformers.Dinov2Config(**COMMON, image_size=32, patch_size=8))[0],
                   "pooler_output"),
        "dinov2_swiglu": (vitc.Dinov2Model,
                          build(root, "Dinov2Model", transformers.Dinov2Config(
                              **COMMON, image_size=32, patch_size=8, use_swiglu_ffn=True), name="swiglu")[0],
                          "pooler_output"),
    }
    toks = tokenizer_folders(root)
    out["clip_text"] = (vitc.CLIPModel, build_two_tower(root, "clip", toks["clip"], text=dict(hidden_size=64))[0],
                        "text_embeds")
    return out


def _outputs(cls, path, field, **kwargs):
    model = cls.from_pretrained(path, **kwargs)
    if field == "text_embeds":
        enc = model.tokenizer(["a photo of a cat", "two dogs playing in the snow", "x"], padding=True)
        return model, model.get_text_features(enc["input_ids"], enc["attention_mask"])
    return model, getattr(model(pixels((3, 3, 32, 32), seed=1)), field)


@pytest.mark.parametrize("family", ["vit", "deit", "clip", "siglip", "dinov2", "dinov2_swiglu", "clip_text"])
@pytest.mark.parametrize("dtype,kernel_set", CASES)
def test_lowp_close_to_float32(ckpts, monkeypatch, family, dtype, kernel_set):
    cls, path, field = ckpts[family]
    ref_model, ref = _outputs(cls, path, field)
    assert ref_model.dtype == "float32"
    monkeypatch.setattr(modeling, "lowp_kernel_set", lambda isa, code: _vitc.kernel_set_code(kernel_set))
    model, got = _outputs(cls, path, field, dtype=dtype)
    assert model.dtype == dtype
    tower = getattr(model, "text_model", model)
    assert tower.kernel_set == kernel_set and model.kernel_set == kernel_set
    assert {w.dtype for layer in tower._layers for w in layer.weights.values()} == {dtype}
    _check(got, ref, dtype)


def test_float32_aliases_are_the_default(ckpts):
    cls, path, field = ckpts["vit"]
    _, ref = _outputs(cls, path, field)
    for name in ("float32", "fp32", "FP32"):
        model, got = _outputs(cls, path, field, dtype=name)
        assert model.dtype == "float32" and model.kernel_set == model.isa
        np.testing.assert_array_equal(got, ref)
    assert _outputs(cls, path, field, dtype="bf16")[0].dtype == "bfloat16"


def test_unknown_dtype_is_a_clear_error(ckpts):
    cls, path, _ = ckpts["vit"]
    with pytest.raises(ValueError, match="unknown dtype 'float16'"):
        cls.from_pretrained(path, dtype="float16")


@pytest.mark.parametrize("dtype", LOWP)
def test_forced_isa_picks_its_fallback_kernel_set(ckpts, isa_name, dtype):
    cls, path, field = ckpts["vit"]
    model = cls.from_pretrained(path, dtype=dtype, isa=isa_name)
    want = isa_name if isa_name != "avx512" else _kernel_sets(dtype)[-1]
    assert model.kernel_set == want


@pytest.mark.parametrize("kernel_set", _kernel_sets("int8"))
def test_outlier_layernorm_channels_int8(tmp_path, monkeypatch, kernel_set):
    """Trained ViTs have a few LayerNorm channels x20..x50: per-row activation scales must survive them."""
    config = transformers.ViTConfig(**dict(COMMON, hidden_size=96, num_attention_heads=4, intermediate_size=256),
                                    image_size=32, patch_size=8, num_labels=10)
    torch.manual_seed(0)
    hf = transformers.ViTForImageClassification(config)
    from checkpoints import randomize_
    randomize_(hf, 0)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                idx = rng.choice(p.shape[0], 3, replace=False)
                p[idx] *= torch.from_numpy(rng.uniform(20, 50, 3).astype(np.float32))
    path = str(tmp_path / "outliers")
    hf.save_pretrained(path)
    x = pixels((4, 3, 32, 32), seed=2)
    ref = vitc.ViTForImageClassification.from_pretrained(path)(x).logits
    monkeypatch.setattr(modeling, "lowp_kernel_set", lambda isa, code: _vitc.kernel_set_code(kernel_set))
    got = vitc.ViTForImageClassification.from_pretrained(path, dtype="int8")(x).logits
    _check(got, ref, "int8")


def _digits_pixels():
    spec = importlib.util.spec_from_file_location("digits_data", os.path.join(REPO, "scripts", "digits_data.py"))
    digits_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(digits_data)
    from sklearn.datasets import load_digits
    model_dir = os.path.join(REPO, "vitc", "checkpoints", "vitc-digits")
    processor = transformers.ViTImageProcessorPil.from_pretrained(model_dir)
    images = [digits_data.render_digit(g) for g in load_digits().images]
    return np.ascontiguousarray(processor(images, return_tensors="np")["pixel_values"], dtype=np.float32)


@pytest.fixture(scope="module")
def digits():
    x = _digits_pixels()
    ref = vitc.ViTForImageClassification.from_pretrained("vitc-digits")(x).logits.argmax(-1)
    return x, ref


@pytest.mark.parametrize("dtype,min_agree", [("bfloat16", 0.995), ("int8", 0.99)])
def test_digits_top1_agrees_with_float32(digits, dtype, min_agree):
    x, ref = digits
    assert len(x) == 1797
    got = vitc.ViTForImageClassification.from_pretrained("vitc-digits", dtype=dtype)(x).logits.argmax(-1)
    assert np.mean(got == ref) >= min_agree, np.mean(got == ref)


def test_weight_bytes_shrink(tmp_path):
    config = transformers.ViTConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                                    num_attention_heads=4, image_size=32, patch_size=8, num_labels=10)
    path, _ = build(tmp_path, "ViTForImageClassification", config)
    sizes = {d: vitc.ViTForImageClassification.from_pretrained(path, dtype=d).weight_bytes()
             for d in ("float32", "bfloat16", "int8")}
    assert 0.45 <= sizes["bfloat16"] / sizes["float32"] <= 0.58, sizes
    assert 0.2 <= sizes["int8"] / sizes["float32"] <= 0.33, sizes


def test_cli_dtype_on_info_classify_and_embed(capsys, tmp_path):
    from vitc import cli
    sample = os.path.join(os.path.dirname(cli.__file__), "samples", "digit_3.png")
    for dtype, kset in (("float32", None), ("bf16", _kernel_sets("bfloat16")[-1]), ("int8", _kernel_sets("int8")[-1])):
        assert cli.main(["info", "vitc-digits", "--dtype", dtype]) == 0
        fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in capsys.readouterr().out.splitlines())}
        assert fields["dtype"] == _vitc.DTYPES[_vitc.dtype_code(dtype)]
        assert fields["kernel_set"] == (kset or fields["runtime_isa"])
        assert cli.main(["classify", sample, "--model", "vitc-digits", "--dtype", dtype, "--top-k", "1"]) == 0
        assert capsys.readouterr().out.splitlines()[1].strip().endswith(" 3")
        out = tmp_path / f"{dtype}.npy"
        assert cli.main(["embed", sample, "--model", "vitc-digits", "--dtype", dtype, "--out", str(out)]) == 0
        assert np.load(out).shape[0] == 1
    out = tmp_path / "text.npy"
    assert cli.main(["embed", "--text", "seven", "--model", "vitc-digits-clip", "--dtype", "int8", "--out",
                     str(out)]) == 0
    assert np.load(out).shape[0] == 1
    with pytest.raises(SystemExit):
        cli.main(["info", "vitc-digits", "--dtype", "float16"])


def test_encoder_layer_rejects_mixed_weight_dtypes():
    d, i = 16, 24
    rng = np.random.default_rng(0)
    isa = _vitc.ISA_NAMES.index(vitc.get_isa())
    vec = {f: rng.standard_normal(n).astype(np.float32) for f, n in
           dict(ln1_g=d, ln1_b=d, ln2_g=d, ln2_b=d, qkv_b=3 * d, proj_b=d, fc1_b=i, fc2_b=d).items()}
    raw = dict(qkv_w=(3 * d, d), proj_w=(d, d), fc1_w=(i, d), fc2_w=(d, i))
    w = {f: _vitc.gemm_pack_nk(isa, rng.standard_normal(s).astype(np.float32)) for f, s in raw.items()}
    w["fc1_w"] = _vitc.gemm_pack_weight(_vitc.kernel_sets(1)[-1], 1, rng.standard_normal(raw["fc1_w"]).astype(np.float32))
    with pytest.raises(ValueError, match="share one kernel set and dtype"):
        _vitc.EncoderLayer(isa, d, 2, i, 1e-6, 1, dict(vec, **w))
    w["fc1_w"] = _vitc.gemm_pack_weight(_vitc.kernel_sets(1)[-1], 1, rng.standard_normal((d, d)).astype(np.float32))
    with pytest.raises(ValueError, match="fc1_w: expected a \\[24, 16\\] weight"):
        _vitc.EncoderLayer(isa, d, 2, i, 1e-6, 1, dict(vec, **w))
