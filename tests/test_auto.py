"""vitc.AutoModel / AutoModelForImageClassification / AutoConfig / AutoImageProcessor pick the class from
config.json (model_type, architectures) and preprocessor_config.json as transformers' Auto classes do."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import checkpoints, pixels, relative_error, transformers  # noqa: E402,F401

import vitc  # noqa: E402
from vitc import auto  # noqa: E402


@pytest.mark.parametrize("name,auto_cls,expected", [
    ("small", vitc.AutoModelForImageClassification, "ViTForImageClassification"),
    ("small", vitc.AutoModel, "ViTModel"),
    ("deit", vitc.AutoModelForImageClassification, "DeiTForImageClassification"),
    ("deit_teacher", vitc.AutoModelForImageClassification, "DeiTForImageClassificationWithTeacher"),
    ("deit_model", vitc.AutoModel, "DeiTModel"),
])
def test_picks_the_class_transformers_picks(checkpoints, name, auto_cls, expected):
    torch = pytest.importorskip("torch")
    ckpt = checkpoints.get(name)
    model = auto_cls.from_pretrained(ckpt.path, threads=1)
    assert type(model) is getattr(vitc, expected)  # (vitc's DeiT names are aliases of the ViT classes)
    theirs = getattr(transformers, auto_cls.__name__).from_pretrained(ckpt.path, attn_implementation="eager")
    assert type(theirs).__name__ == expected
    x = pixels((2, 3) + tuple(model.config.image_hw))
    with torch.no_grad():
        ref = theirs.eval()(torch.from_numpy(x))
    key = "logits" if "Classification" in expected else "last_hidden_state"
    assert relative_error(getattr(model(x), key), getattr(ref, key)) <= 1e-4


def write_config(folder, **config):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    return str(folder)


def test_unsupported_model_type_lists_what_vitc_runs(tmp_path):
    folder = write_config(tmp_path, model_type="swin", architectures=["SwinModel"])
    with pytest.raises(ValueError, match=r"model_type 'swin' is not one vitc runs as a base model \(AutoModel\)\. "
                                         r"vitc runs: clip \(CLIPModel\), clip_text_model \(CLIPTextModel\), clip_vision_model "
                                         r"\(CLIPVisionModel\), deit \(DeiTModel\), dinov2 \(Dinov2Model\), "
                                         r"dinov2_with_registers \(Dinov2WithRegistersModel\), siglip \(SiglipModel\), "
                                         r"siglip_text_model \(SiglipTextModel\), siglip_vision_model "
                                         r"\(SiglipVisionModel\), vit \(ViTModel\)"):
        vitc.AutoModel.from_pretrained(folder)
    with pytest.raises(ValueError, match=r"vitc runs: deit \(DeiTForImageClassification / "
                                         r"DeiTForImageClassificationWithTeacher\), dinov2 "
                                         r"\(Dinov2ForImageClassification\), vit"):
        vitc.AutoModelForImageClassification.from_pretrained(folder)
    with pytest.raises(ValueError, match="no model_type in this config.json"):
        vitc.AutoModel.from_pretrained(write_config(tmp_path / "none", hidden_size=8))
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        (tmp_path / "bad" / "empty").mkdir(parents=True)
        (tmp_path / "bad" / "config.json").write_text("{")
        vitc.AutoModel.from_pretrained(str(tmp_path / "bad"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        vitc.AutoModel.from_pretrained(str(tmp_path / "bad" / "empty"))  # a folder without one
    with pytest.raises(TypeError, match="use AutoModel.from_pretrained"):
        vitc.AutoModel()


def test_a_registered_row_without_its_class_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(auto.MODEL_CLASSES, "clip_vision_model", "NoSuchVisionModel")
    folder = write_config(tmp_path, model_type="clip_vision_model")
    with pytest.raises(ValueError, match="maps to vitc.NoSuchVisionModel, which this vitc does not have"):
        vitc.AutoModel.from_pretrained(folder)


def test_register_adds_a_row(tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "MODEL_CLASSES", dict(auto.MODEL_CLASSES))
    monkeypatch.setattr(vitc.AutoModel, "_registry", auto.MODEL_CLASSES)

    class Echo:
        @classmethod
        def from_pretrained(cls, path, **kwargs):
            return (cls, path, kwargs)

    vitc.AutoModel.register("echo", Echo)
    folder = write_config(tmp_path, model_type="echo")
    assert vitc.AutoModel.from_pretrained(folder, threads=2) == (Echo, folder, {"revision": None, "cache_dir": None,
                                                                               "token": None, "threads": 2})
    assert "echo" in vitc.AutoModel.supported_model_types()


@pytest.mark.parametrize("config,expected", [
    ({"model_type": "vit"}, "ViTConfig"),
    ({"model_type": "deit"}, "ViTConfig"),
    ({"model_type": "clip"}, "CLIPConfig"),
    ({"model_type": "clip_vision_model"}, "CLIPVisionConfig"),
    ({"model_type": "siglip", "vision_config": {"image_size": 256}}, "SiglipConfig"),
    ({"model_type": "siglip_text_model"}, "SiglipTextConfig"),
    ({"model_type": "dinov2"}, "Dinov2Config"),
    ({"model_type": "dinov2_with_registers"}, "Dinov2WithRegistersConfig"),
])
def test_auto_config(tmp_path, config, expected):
    cfg = vitc.AutoConfig.from_pretrained(write_config(tmp_path, **config))
    assert type(cfg).__name__ == expected and cfg.model_type == config["model_type"]
    assert type(cfg) is getattr(vitc, expected)


def test_auto_config_refuses_siglip2_naflex(tmp_path):
    with pytest.raises(ValueError, match="model_type 'siglip2' is not one vitc runs"):
        vitc.AutoConfig.from_pretrained(write_config(tmp_path, model_type="siglip2"))


@pytest.mark.parametrize("preprocessor,model_type,expected_cls,theirs", [
    ({"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 64},
      "crop_size": {"height": 64, "width": 64}}, "clip", "CLIPImageProcessorPil", "CLIPImageProcessorPil"),
    ({"feature_extractor_type": "CLIPFeatureExtractor", "size": 64, "crop_size": 48}, "clip",
     "CLIPImageProcessorPil", "CLIPImageProcessorPil"),
    ({"image_processor_type": "SiglipImageProcessorFast", "resample": 2}, "siglip", "SiglipImageProcessorPil",
     "SiglipImageProcessorPil"),
    ({"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 256}}, "dinov2",
     "BitImageProcessorPil", "BitImageProcessorPil"),
    ({"image_processor_type": "DeiTImageProcessor"}, "deit", "ViTImageProcessor", "DeiTImageProcessorPil"),
    (None, "clip_vision_model", "CLIPImageProcessorPil", "CLIPImageProcessorPil"),
    (None, "siglip", "SiglipImageProcessorPil", "SiglipImageProcessorPil"),
    (None, "dinov2_with_registers", "BitImageProcessorPil", "BitImageProcessorPil"),
    (None, "deit", "ViTImageProcessor", "DeiTImageProcessorPil"),
    ({"do_resize": True, "size": 40}, "vit", "ViTImageProcessor", "ViTImageProcessorPil"),
])
def test_auto_image_processor(tmp_path, preprocessor, model_type, expected_cls, theirs):
    folder = write_config(tmp_path, model_type=model_type)
    if preprocessor is not None:
        (tmp_path / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    ours = vitc.AutoImageProcessor.from_pretrained(folder)
    assert type(ours).__name__ == expected_cls
    options = {k: v for k, v in (preprocessor or {}).items() if "_type" not in k}
    image = np.random.default_rng(0).integers(0, 256, (97, 130, 3), dtype=np.uint8)
    from PIL import Image
    want = getattr(transformers, theirs)(**options)(Image.fromarray(image), return_tensors="np")["pixel_values"]
    got = ours(Image.fromarray(image))["pixel_values"]
    assert got.shape == want.shape and np.abs(got - want).max() == 0


def test_auto_image_processor_errors(tmp_path):
    folder = write_config(tmp_path, model_type="swin")
    with pytest.raises(ValueError, match="no image processor is known for model_type 'swin'"):
        vitc.AutoImageProcessor.from_pretrained(folder)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "ConvNextImageProcessor"}))
    with pytest.raises(ValueError, match="image processor ConvNextImageProcessor is not one vitc has; it has: "
                                         "BeitImageProcessor, BitImageProcessor, CLIPImageProcessor"):
        vitc.AutoImageProcessor.from_pretrained(folder)


def test_import_vitc_does_not_import_the_auto_or_family_modules():
    code = ("import sys, vitc; print(sorted(m for m in sys.modules if m in ('vitc.auto', 'vitc.config_families', "
            "'PIL', 'tokenizers', 'vitc.tokenization')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(vitc.__file__)))
    assert out.stdout.strip() == "[]"
