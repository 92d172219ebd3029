"""model.save_pretrained(dir) at every dtype, for every model class vitc loads: the folder holds the converted
weights (BF16 / I8 + per-channel scales) with the scheme in the metadata, loading it gives bit-identical
outputs without converting again (no float32 read of those weights), a float32 checkpoint loaded as bf16 /
int8 equals its saved folder, transformers still reads config.json (and loads the bf16 folder), conflicting
dtypes are clear errors, and a failed write leaves nothing behind."""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import torch, transformers  # noqa: E402
from family_checkpoints import build, pixels  # noqa: E402
from text_checkpoints import build_two_tower, tokenizer_folders  # noqa: E402

import vitc  # noqa: E402
from vitc import _vitc, saving  # noqa: E402
from vitc.safetensors_reader import CheckpointReader, SafetensorsFile  # noqa: E402

DTYPES = ("float32", "bfloat16", "int8")
COMMON = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              attn_implementation="eager")
VISION = dict(COMMON, image_size=32, patch_size=8)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("save")
    toks = tokenizer_folders(root)
    out = {
        "vit": (vitc.ViTForImageClassification,
                build(root, "ViTForImageClassification", transformers.ViTConfig(**VISION, num_labels=5))[0]),
        "vit_base": (vitc.ViTModel, build(root, "ViTModel", transformers.ViTConfig(**VISION))[0]),
        "deit": (vitc.DeiTForImageClassificationWithTeacher,
                 build(root, "DeiTForImageClassificationWithTeacher", transformers.DeiTConfig(**VISION, num_labels=3))[0]),
        "clip_vision": (vitc.CLIPVisionModelWithProjection,
                        build(root, "CLIPVisionModelWithProjection",
                              transformers.CLIPVisionConfig(**VISION, projection_dim=16))[0]),
        "siglip_vision": (vitc.SiglipVisionModel,
                          build(root, "SiglipVisionModel", transformers.SiglipVisionConfig(**VISION))[0]),
        "dinov2": (vitc.Dinov2Model, build(root, "Dinov2Model", transformers.Dinov2Config(**VISION))[0]),
        "dinov2_swiglu": (vitc.Dinov2ForImageClassification,
                          build(root, "Dinov2ForImageClassification", transformers.Dinov2Config(
                              **VISION, use_swiglu_ffn=True, num_labels=4), name="swiglu")[0]),
        "clip": (vitc.CLIPModel, build_two_tower(root, "clip", toks["clip"], text=dict(hidden_size=32))[0]),
        "siglip": (vitc.SiglipModel, build_two_tower(root, "siglip", toks["siglip"], text=dict(hidden_size=32),
                                                     vision=dict(hidden_size=32))[0]),
    }
    out["clip_text"] = (vitc.CLIPTextModel, out["clip"][1])
    out["siglip_text"] = (vitc.SiglipTextModel, out["siglip"][1])
    return out


def _texts(model):
    return model.tokenizer(["a photo of a cat", "two dogs", "x"], padding="max_length"
                           if isinstance(model, (vitc.SiglipModel, vitc.SiglipTextModel)) else True)


def _outputs(model):
    """Every float output of a forward on fixed inputs, as a flat dict."""
    x = pixels((2, 3, 32, 32), seed=1)
    if hasattr(model, "vision_model"):
        enc = _texts(model)
        out = model(input_ids=enc["input_ids"], pixel_values=x, attention_mask=enc.get("attention_mask"))
        return {"logits": out.logits_per_image, "text": out.text_embeds, "image": out.image_embeds}
    if hasattr(model, "embed_text"):
        enc = _texts(model)
        out = model(input_ids=enc["input_ids"], attention_mask=enc.get("attention_mask"))
    else:
        out = model(x)
    return {k: v for k, v in out.items() if isinstance(v, np.ndarray)} if hasattr(out, "items") else \
        {k: getattr(out, k) for k in vars(out) if isinstance(getattr(out, k), np.ndarray)}


def _assert_identical(a, b):
    assert a.keys() == b.keys() and a
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("family", ["vit", "vit_base", "deit", "clip_vision", "siglip_vision", "dinov2",
                                    "dinov2_swiglu", "clip", "siglip", "clip_text", "siglip_text"])
def test_round_trip_is_bit_identical(ckpts, tmp_path, monkeypatch, family, dtype):
    cls, path = ckpts[family]
    model = cls.from_pretrained(path, dtype=dtype)
    ref = _outputs(model)
    folder = tmp_path / "saved"
    assert model.save_pretrained(folder) == str(folder)
    meta = SafetensorsFile(folder / "model.safetensors").metadata
    assert meta["vitc_dtype"] == dtype and meta["vitc_scheme"] == saving.SCHEMES[dtype]
    assert meta["vitc_version"] == vitc.__version__ and meta["format"] == "pt"
    config = json.loads((folder / "config.json").read_text())
    assert config["vitc_dtype"] == dtype
    # the converted weights are read as stored: no float32 read of any tensor stored as BF16 / I8
    reads = []
    orig = CheckpointReader.read_rows
    monkeypatch.setattr(CheckpointReader, "read_rows",
                        lambda self, name, row0, out: (reads.append((name, self.info(name).dtype)),
                                                       orig(self, name, row0, out))[1])
    again = cls.from_pretrained(folder)
    monkeypatch.undo()
    assert again.dtype == dtype and again.kernel_set == model.kernel_set
    if dtype != "float32":
        assert reads and not [r for r in reads if r[1] != "F32"]
    _assert_identical(_outputs(again), ref)
    # and the stored bytes are the model's: same packed weights
    for t_model, t_again in zip(_towers(model), _towers(again)):
        for la, lb in zip(t_model._layers, t_again._layers):
            for field in la.weights:
                np.testing.assert_array_equal(la.weights[field].buffer, lb.weights[field].buffer)


def _towers(model):
    return [model.vision_model, model.text_model] if hasattr(model, "vision_model") else [model]


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_saved_folder_layout(ckpts, tmp_path, dtype):
    cls, path = ckpts["vit"]
    model = cls.from_pretrained(path, dtype=dtype)
    model.save_pretrained(tmp_path / "s")
    f = SafetensorsFile(tmp_path / "s" / "model.safetensors")
    stored = saving.STORED[dtype]
    q = "vit.encoder.layer.0.attention.attention.query.weight"
    assert f.tensors[q].dtype == stored and f.tensors[q].shape == (32, 32)
    assert f.tensors["vit.encoder.layer.1.output.dense.weight"].dtype == stored
    for name in ("vit.embeddings.patch_embeddings.projection.weight", "classifier.weight",
                 "vit.encoder.layer.0.attention.attention.query.bias", "vit.layernorm.weight"):
        assert f.tensors[name].dtype == "F32"
    src = CheckpointReader(os.path.join(path, "model.safetensors"))
    w = src.get_float32(q)
    if dtype == "int8":
        scales = f.get_float32(q + "_scale")
        assert f.tensors[q + "_scale"].shape == (32,)
        raw = np.empty((32, 32), np.int8)
        f.read_raw_rows(q, 0, raw)
        # W[j] ~ scale[j] * q[j], symmetric per output channel: the largest |W| of each row maps to 127
        np.testing.assert_allclose(scales * 127, np.abs(w).max(axis=1), rtol=1e-6)
        np.testing.assert_allclose(raw * scales[:, None], w, atol=float(scales.max()) / 2 + 1e-7)
        assert np.abs(raw).max() == 127
    else:
        assert not any(n.endswith("_scale") for n in f.tensors)
        raw = np.empty((32, 32), np.uint16)
        f.read_raw_rows(q, 0, raw)
        np.testing.assert_allclose((raw.astype(np.uint32) << 16).view(np.float32), w, rtol=2 ** -8)
    assert os.path.isfile(tmp_path / "s" / "preprocessor_config.json")
    assert sorted(os.listdir(tmp_path)) == ["s"]  # no temporary folder left


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_converting_and_loading_the_saved_folder_agree(ckpts, tmp_path, dtype):
    cls, path = ckpts["dinov2"]  # a layer scale folded into the converted weights
    model = cls.from_pretrained(path, dtype=dtype)
    model.save_pretrained(tmp_path / "s")
    f = SafetensorsFile(tmp_path / "s" / "model.safetensors")
    np.testing.assert_array_equal(f.get_float32("encoder.layer.0.layer_scale1.lambda1"), np.ones(32, np.float32))
    x = pixels((3, 3, 32, 32), seed=5)
    _assert_identical({"p": model(x).pooler_output}, {"p": cls.from_pretrained(tmp_path / "s")(x).pooler_output})
    # re-saving the loaded folder writes the same file
    cls.from_pretrained(tmp_path / "s").save_pretrained(tmp_path / "t")
    assert (tmp_path / "s" / "model.safetensors").read_bytes() == (tmp_path / "t" / "model.safetensors").read_bytes()


def test_conflicting_dtype_is_a_clear_error(ckpts, tmp_path):
    cls, path = ckpts["vit"]
    cls.from_pretrained(path, dtype="int8").save_pretrained(tmp_path / "i8")
    for other in ("float32", "bf16"):
        with pytest.raises(ValueError, match="holds int8 weights saved by vitc; it loads only as dtype='int8'"):
            cls.from_pretrained(tmp_path / "i8", dtype=other)
    assert cls.from_pretrained(tmp_path / "i8", dtype="s8").dtype == "int8"
    # a saved float32 folder is a float32 checkpoint like any other
    cls.from_pretrained(path).save_pretrained(tmp_path / "f32")
    assert cls.from_pretrained(tmp_path / "f32", dtype="int8").dtype == "int8"


def _rewrite(path, edit, meta=None):
    """Rewrite a saved model.safetensors with edit({name: array}) applied (arrays as stored)."""
    f = SafetensorsFile(path)
    arrays = {}
    for n, info in f.tensors.items():
        if info.dtype == "F32":
            arrays[n] = f.get_float32(n)
        else:
            arrays[n] = np.empty(info.shape, saving._NUMPY[info.dtype])
            f.read_raw_rows(n, 0, arrays[n].reshape(info.shape[0], -1))
    stored = {n: f.tensors[n].dtype for n in f.tensors}
    edit(arrays)
    tensors = {n: saving._Tensor(stored.get(n, "F32") if a.dtype != np.int8 else "I8", a.shape, lambda a=a: a)
               for n, a in arrays.items()}
    meta = dict(f.metadata, **(meta or {}))
    saving.write_safetensors(str(path), tensors, {k: v for k, v in meta.items() if v is not None})


W = "vit.encoder.layer.0.output.dense.weight"
BAD_FOLDERS = [
    (lambda a: a.pop(W + "_scale"), None, f"int8 tensor '{W}' has no per-channel scales"),
    (lambda a: a.__setitem__(W + "_scale", a[W + "_scale"][:5]), None, r"is F32 \[5\], expected F32 \[32\]"),
    (lambda a: a.__setitem__(W + "_scale", a[W + "_scale"].reshape(32, 1)), None, r"expected F32 \[32\]"),
    (lambda a: a.__setitem__("vit.layernorm.weight", a["vit.layernorm.weight"].astype(np.int8)), None,
     "int8 tensor 'vit.layernorm.weight' has shape \\[32\\]; only 2-D Linear weights"),
    (lambda a: None, {"vitc_dtype": "int4"}, "metadata vitc_dtype = 'int4' is not one of"),
    (lambda a: a.__setitem__("vit.embeddings.patch_embeddings.projection.weight",
                             np.zeros((32, 3, 8, 8), np.int8)), None, "int8 tensor .* only 2-D"),
]
@pytest.mark.parametrize("edit,meta,message", BAD_FOLDERS)
def test_bad_converted_folder_is_a_clear_error(ckpts, tmp_path, edit, meta, message):
    cls, path = ckpts["vit"]
    cls.from_pretrained(path, dtype="int8").save_pretrained(tmp_path / "i8")
    _rewrite(tmp_path / "i8" / "model.safetensors", edit, meta)
    with pytest.raises(ValueError, match=message):
        cls.from_pretrained(tmp_path / "i8")


def test_int8_weights_of_another_writer_need_their_scales(ckpts, tmp_path):
    """Without vitc's metadata the _scale tensors are not hidden, and an I8 weight without one is refused."""
    cls, path = ckpts["vit"]
    cls.from_pretrained(path, dtype="int8").save_pretrained(tmp_path / "i8")
    _rewrite(tmp_path / "i8" / "model.safetensors", lambda a: a.pop(W + "_scale"), {"vitc_dtype": None})
    with pytest.raises(ValueError, match="unexpected tensor"):
        cls.from_pretrained(tmp_path / "i8", dtype="int8")  # the other weights' _scale tensors
    _rewrite(tmp_path / "i8" / "model.safetensors",
             lambda a: [a.pop(n) for n in [n for n in a if n.endswith("_scale")]])
    with pytest.raises(ValueError, match="int8 tensor '.*' has no per-channel scales '.*_scale'"):
        cls.from_pretrained(tmp_path / "i8", dtype="int8")
    with pytest.raises(ValueError, match="has dtype I8; expected a float dtype"):
        cls.from_pretrained(tmp_path / "i8")  # float32: I8 is not a float dtype


def test_int8_weight_where_a_float_one_belongs(ckpts, tmp_path):
    cls, path = ckpts["vit"]
    cls.from_pretrained(path, dtype="int8").save_pretrained(tmp_path / "i8")
    name = "classifier.weight"  # float32 in every dtype: an I8 one cannot be read as float
    _rewrite(tmp_path / "i8" / "model.safetensors",
             lambda a: (a.__setitem__(name, np.zeros((5, 32), np.int8)),
                        a.__setitem__(name + "_scale", np.ones(5, np.float32))))
    with pytest.raises(ValueError, match=f"'{name}' has dtype I8; expected a float dtype"):
        cls.from_pretrained(tmp_path / "i8")


def test_int8_layer_scale_must_be_folded(ckpts, tmp_path):
    cls, path = ckpts["dinov2"]
    cls.from_pretrained(path, dtype="int8").save_pretrained(tmp_path / "i8")
    name = "encoder.layer.1.layer_scale2.lambda1"
    _rewrite(tmp_path / "i8" / "model.safetensors", lambda a: a.__setitem__(name, a[name] * 2))
    with pytest.raises(ValueError, match="a layer scale other than ones cannot fold into int8 weights"):
        cls.from_pretrained(tmp_path / "i8")


def test_transformers_reads_the_saved_config_and_bf16_weights(ckpts, tmp_path):
    cls, path = ckpts["vit"]
    model = cls.from_pretrained(path, dtype="bfloat16")
    model.save_pretrained(tmp_path / "bf16")
    cfg = transformers.AutoConfig.from_pretrained(tmp_path / "bf16")
    assert cfg.model_type == "vit" and cfg.architectures == ["ViTForImageClassification"]
    hf = transformers.ViTForImageClassification.from_pretrained(tmp_path / "bf16", attn_implementation="eager")
    x = pixels((2, 3, 32, 32), seed=3)
    with torch.no_grad():
        ref = hf.float()(torch.from_numpy(x)).logits.numpy()
    got = model(x).logits
    assert np.max(np.abs(got - ref)) / np.max(np.abs(ref)) < 3e-2  # bf16 GEMM inputs vs float32 ones
    cls.from_pretrained(path, dtype="int8").save_pretrained(tmp_path / "i8")
    assert transformers.AutoConfig.from_pretrained(tmp_path / "i8").model_type == "vit"


def test_two_tower_folder_has_tokenizer_and_processor(ckpts, tmp_path):
    cls, path = ckpts["clip"]
    cls.from_pretrained(path, dtype="int8").save_pretrained(tmp_path / "c")
    names = set(os.listdir(tmp_path / "c"))
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "tokenizer.json"} <= names
    again = vitc.AutoModel.from_pretrained(tmp_path / "c")
    assert type(again) is vitc.CLIPModel and again.dtype == "int8"


def test_failed_write_leaves_nothing(ckpts, tmp_path, monkeypatch):
    cls, path = ckpts["vit"]
    model = cls.from_pretrained(path, dtype="int8")
    orig = saving.write_safetensors

    def write_half(p, tensors, meta):
        name = sorted(tensors)[len(tensors) // 2]
        t = tensors[name]
        tensors[name] = saving._Tensor(t.dtype, t.shape, lambda: (_ for _ in ()).throw(OSError("disk full")))
        return orig(p, tensors, meta)

    monkeypatch.setattr(saving, "write_safetensors", write_half)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "new")
    assert os.listdir(tmp_path) == []
    # an existing folder keeps its files when the write fails
    monkeypatch.undo()
    model.save_pretrained(tmp_path / "old")
    before = {n: (tmp_path / "old" / n).read_bytes() for n in os.listdir(tmp_path / "old")}
    monkeypatch.setattr(saving, "write_safetensors", write_half)
    with pytest.raises(OSError, match="disk full"):
        cls.from_pretrained(path, dtype="bfloat16").save_pretrained(tmp_path / "old")
    assert os.listdir(tmp_path) == ["old"]
    assert {n: (tmp_path / "old" / n).read_bytes() for n in os.listdir(tmp_path / "old")} == before


def test_changed_source_is_refused(ckpts, tmp_path):
    import shutil
    cls, path = ckpts["vit"]
    shutil.copytree(path, tmp_path / "src")
    model = cls.from_pretrained(tmp_path / "src", dtype="int8")
    os.utime(tmp_path / "src" / "model.safetensors", ns=(1, 1))
    with pytest.raises(ValueError, match="changed since the model was loaded"):
        model.save_pretrained(tmp_path / "out")
    assert not os.path.exists(tmp_path / "out")
