"""docs/extending.md walked through: a toy family (a ViT with layer scale after attention and MLP) added with
only what the document says (a config reader, a table, a model class), checked against transformers' ViTModel
with the layer scales applied by forward hooks."""
import os
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import randomize_, relative_error, torch, transformers  # noqa: E402

import vitc  # noqa: E402
from vitc.families import vit  # noqa: E402
from vitc.families.table import Param, WeightPlan  # noqa: E402
from vitc.modeling import _ViTBase  # noqa: E402

# 1. the config reader: ViT's fields are enough (the doc: reuse vitc.ViTConfig)
# 2. the table: ViT's layer rows, with a layer-scale vector folded into the two projections
_SCALES = {"proj_w": "encoder.layer.{i}.ls1", "proj_b": "encoder.layer.{i}.ls1",
           "fc2_w": "encoder.layer.{i}.ls2", "fc2_b": "encoder.layer.{i}.ls2"}
LAYER = tuple(Param(p.field, p.names, p.shape, packed=p.packed, when=p.when, scale=_SCALES.get(p.field))
              for p in vit.LAYER)


# 3. the model class: only the hooks that differ
class LayerScaleViTModel(_ViTBase):
    def _plan(self, config, keys, shape_of, source):
        return WeightPlan(config, keys, shape_of, (vit.embeddings(config), LAYER, ()), "", source,
                          ignored=lambda k: k == "embeddings.mask_token")

    def _setup(self, plan, model, head):
        self._pooler, self._heads, self._head_kind = None, [], None

    __call__ = _ViTBase.encode


def _reference_with_layer_scale(model, scales):
    """transformers' ViTModel with lambda * output hooks on each attention / MLP projection."""
    for i, layer in enumerate(model.layers):  # transformers 5 module names (the saved names are the old ones)
        for module, key in ((layer.attention.o_proj, f"encoder.layer.{i}.ls1"),
                            (layer.mlp.fc2, f"encoder.layer.{i}.ls2")):
            lam = torch.from_numpy(scales[key])
            module.register_forward_hook(lambda m, inp, out, lam=lam: out * lam)
    return model


@pytest.mark.parametrize("patch,image", [(4, 16), (7, 21)])
def test_toy_layer_scale_family_matches_transformers(tmp_path, isa_name, patch, image):
    config = transformers.ViTConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                                    intermediate_size=40, image_size=image, patch_size=patch,
                                    attn_implementation="eager")
    torch.manual_seed(0)
    ref = transformers.ViTModel(config, add_pooling_layer=False)
    randomize_(ref, 0)
    ref.eval().save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    rng = np.random.default_rng(1)
    scales = {f"encoder.layer.{i}.ls{j}": (0.5 + rng.random(24)).astype(np.float32)
              for i in range(2) for j in (1, 2)}
    save_file({**tensors, **scales}, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    ref = _reference_with_layer_scale(ref, scales)

    model = LayerScaleViTModel.from_pretrained(str(tmp_path))
    x = np.random.default_rng(2).standard_normal((2, 3, image, image)).astype(np.float32)
    got = model(x, output_hidden_states=True, output_attentions=True)
    with torch.no_grad():
        want = ref(torch.from_numpy(x), output_hidden_states=True, output_attentions=True)
    assert relative_error(got.last_hidden_state, want.last_hidden_state) <= 1e-4
    for g, r in zip(got.hidden_states + got.attentions, want.hidden_states + want.attentions):
        assert relative_error(g, r) <= 1e-4
    # the scale is part of the result: the same weights without it differ
    plain = vitc.ViTModel.from_pretrained(_without(tmp_path, tensors))
    assert relative_error(plain(x).last_hidden_state, want.last_hidden_state) > 1e-2
    # a missing scale vector is named
    save_file({**tensors, **{k: v for k, v in scales.items() if k != "encoder.layer.1.ls2"}},
              str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(vitc.WeightsMismatchError, match="encoder.layer.1.ls2"):
        LayerScaleViTModel.from_pretrained(str(tmp_path))


def _without(tmp_path, tensors):
    folder = tmp_path / "plain"
    folder.mkdir(exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text((tmp_path / "config.json").read_text())
    return str(folder)
