"""`vitc bench --compare torch,onnxruntime,openvino` on a tiny random checkpoint of every family vitc loads: the
output families.TARGETS names (image_embeds, pooler_output, logits...) is what every engine returns, is
checked against PyTorch eager and agrees; the FLOP count equals torch's own count of the same forward."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import torch, transformers  # noqa: E402
from family_checkpoints import build  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from vitc import cli  # noqa: E402
from vitc.bench.checkpoint import Checkpoint  # noqa: E402
from vitc.bench.families import TARGETS, architecture_of  # noqa: E402

PEERS = "torch,onnxruntime,openvino"
ALL = ["vitc", "torch-eager", "torch-sdpa", "onnxruntime", "openvino"]
LAYERS = dict(num_hidden_layers=2, num_attention_heads=4)
VISION = dict(hidden_size=32, intermediate_size=52, image_size=32, patch_size=8, **LAYERS)
TEXT = dict(hidden_size=16, intermediate_size=20, num_hidden_layers=1, num_attention_heads=2, vocab_size=50,
            max_position_embeddings=12)
DINO = dict(hidden_size=32, image_size=28, patch_size=7, **LAYERS)

# architecture -> (config, output, output width, image size timed or None = the config's)
FAMILIES = {
    "CLIPVisionModel": (lambda: transformers.CLIPVisionConfig(**VISION), "pooler_output", 32, None),
    "CLIPVisionModelWithProjection": (lambda: transformers.CLIPVisionConfig(**VISION, projection_dim=24),
                                      "image_embeds", 24, None),
    "CLIPModel": (lambda: transformers.CLIPConfig(text_config=dict(TEXT, projection_dim=24), projection_dim=24,
                                                  vision_config=dict(VISION, projection_dim=24)),
                  "image_embeds", 24, None),
    "SiglipVisionModel": (lambda: transformers.SiglipVisionConfig(**VISION), "pooler_output", 32, None),
    "SiglipModel": (lambda: transformers.SiglipConfig(text_config=TEXT, vision_config=VISION),
                    "pooler_output", 32, None),
    "Dinov2Model": (lambda: transformers.Dinov2Config(**DINO), "pooler_output", 32, 42),  # interpolated
    "Dinov2WithRegistersModel": (lambda: transformers.Dinov2WithRegistersConfig(**DINO, num_register_tokens=4),
                                 "pooler_output", 32, None),
    "Dinov2ForImageClassification": (lambda: transformers.Dinov2Config(**DINO, num_labels=5), "logits", 5, None),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("bench-cache"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {arch: build(root, arch, make(), seed=3)[0] for arch, (make, *_) in FAMILIES.items()}


def test_every_family_vitc_loads_has_a_row():
    assert set(FAMILIES) | {"ViTModel", "ViTForImageClassification", "DeiTModel", "DeiTForImageClassification",
                            "DeiTForImageClassificationWithTeacher"} == set(TARGETS)
    for arch, target in TARGETS.items():
        assert hasattr(transformers, target.torch_class) and target.output in (
            "logits", "last_hidden_state", "pooler_output", "image_embeds"), arch


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_family_output_is_checked_against_torch_and_agrees(capsys, tmp_path, cache, folders, arch):
    _, output, width, size = FAMILIES[arch]
    out_json = tmp_path / "r.json"
    argv = ["bench", "--model", folders[arch], "--compare", PEERS, "--batch", "1", "3", "--threads", "1",
            "--rounds", "2", "--min-rounds", "1", "--gap-ms", "0", "--cache-dir", cache, "--json", str(out_json)]
    code = cli.main(argv + (["--image-size", str(size)] if size else []))
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert report["architecture"] == arch and report["output"] == output and report["engines"] == ALL
    assert f"output timed and checked: {output}" in out
    if size:
        assert report["image_size"] == [size, size]
    for cell in report["cells"]:
        assert cell["reference"] == "torch-eager" and cell["output_shape"] == [cell["batch"], width]
        for name, s in cell["results"].items():
            assert s["rel_err"] <= 1e-4, (name, s["rel_err"])


def test_outputs_that_disagree_stop_the_run(capsys, cache, folders, monkeypatch):
    """The check is not vacuous: a peer returning another model's output is reported, nothing is timed."""
    from vitc.bench import engines

    real = engines.OnnxRuntimeEngine.run
    monkeypatch.setattr(engines.OnnxRuntimeEngine, "run", lambda self, px: real(self, px) * 1.01)
    code = cli.main(["bench", "--model", folders["SiglipVisionModel"], "--compare", "onnxruntime", "--batch", "2",
                     "--threads", "1", "--rounds", "1", "--cache-dir", cache])
    err = capsys.readouterr().err
    assert code == 1 and "OUTPUTS DISAGREE (pooler_output, batch 2" in err and "onnxruntime" in err


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_flops_equal_torchs_count(folders, cache, arch):
    _, _, _, size = FAMILIES[arch]
    ckpt = Checkpoint(folders[arch], cache, size)
    model = ckpt.torch_model("eager")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(pixel_values=torch.zeros(ckpt.input_shape(1)))
    assert ckpt.flops_per_image() == counter.get_total_flops()


def test_architecture_from_model_type_and_unknown_ones():
    assert architecture_of({"model_type": "siglip"}) == "SiglipModel"  # Hub configs without `architectures`
    assert architecture_of({"model_type": "dinov2", "architectures": ["Dinov2ForImageClassification"]}) == \
        "Dinov2ForImageClassification"
    with pytest.raises(ValueError, match="does not time architecture 'CLIPTextModel'; it times ViTModel"):
        architecture_of({"model_type": "clip_text_model", "architectures": ["CLIPTextModel"]}, "x/config.json")
    with pytest.raises(ValueError, match="model_type 'bert'"):
        architecture_of({"model_type": "bert"})


@pytest.mark.parametrize("dtype, runs", [("bfloat16", ["vitc", "torch-eager", "torch-sdpa", "openvino"]),
                                         ("int8", ["vitc", "onnxruntime"])])
def test_lowp_dtypes_time_the_family_output(capsys, tmp_path, cache, folders, dtype, runs):
    out_json = tmp_path / "r.json"
    code = cli.main(["bench", "--model", folders["CLIPVisionModelWithProjection"], "--compare", PEERS, "--dtype",
                     dtype, "--batch", "2", "--threads", "1", "--rounds", "1", "--gap-ms", "0", "--cache-dir", cache,
                     "--json", str(out_json)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out_json.read_text())
    cell = report["cells"][0]
    assert report["engines"] == runs and cell["reference"] == "vitc-float32" and cell["output_shape"] == [2, 24]
    for s in cell["results"].values():
        assert 0 < s["rel_err"] <= report["tol"]


def test_reference_is_pytorch_eager_else_sdpa_else_vitc():
    from vitc.bench.runner import reference_name

    assert reference_name(["vitc", "torch-sdpa", "torch-eager"], "float32") == "torch-eager"
    assert reference_name(["vitc", "torch-sdpa", "onnxruntime"], "float32") == "torch-sdpa"
    assert reference_name(["vitc", "onnxruntime"], "float32") == "vitc"
    assert reference_name(["vitc", "torch-sdpa"], "int8") == "vitc-float32"
