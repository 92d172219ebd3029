"""Test checkpoints built with transformers (save_pretrained), cached per test session.

`checkpoints` (a session fixture) returns a factory: `checkpoints.get(name)` -> Checkpoint(path, reference,
spec), where `reference` is the eager float32 transformers model holding exactly the saved weights (rounded
to F16/BF16 first for those specs). Parameters are re-drawn with O(1) scales (biases and LayerNorm too), so
a wrong bias, a swapped Q/K or a flat softmax cannot hide behind transformers' near-zero initialisation.
"""
import os

import numpy as np
import pytest

import torch  # noqa: E402  (a test dependency: CI installs it, never skip)
import transformers  # noqa: E402
torch.set_num_threads(1)  # the reference is tiny; OpenMP spinning on shared cores only slows every test

TINY = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24, image_size=8,
            patch_size=4, num_labels=3)
SMALL = dict(hidden_size=40, num_hidden_layers=3, num_attention_heads=5, intermediate_size=67,
             image_size=[30, 42], patch_size=6, num_labels=7)
SQUARE = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37, image_size=24,
              patch_size=4, num_labels=5)
VIT_B16 = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
               image_size=224, patch_size=16, num_labels=1000)

ACTIVATIONS = ("gelu", "gelu_python", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_python_tanh",
               "gelu_accurate", "quick_gelu", "relu", "silu", "swish", "tanh", "sigmoid", "linear")

# name -> (transformers class, constructor kwargs, config kwargs, save dtype, max_shard_size)
SPECS = {
    "small": ("ViTForImageClassification", {}, SMALL, None, None),
    "patch57": ("ViTForImageClassification", {}, dict(SMALL, patch_size=[5, 7], hidden_act="gelu_new"), None, None),
    "no_qkv_bias": ("ViTForImageClassification", {}, dict(SMALL, qkv_bias=False), None, None),
    "gray": ("ViTForImageClassification", {}, dict(TINY, num_channels=1, image_size=[12, 8]), None, None),
    "square": ("ViTForImageClassification", {}, SQUARE, None, None),
    "model_pooler": ("ViTModel", {"add_pooling_layer": True}, SMALL, None, None),
    "model_pooler_wide": ("ViTModel", {"add_pooling_layer": True},
                          dict(SQUARE, pooler_output_size=29, pooler_act="quick_gelu", layer_norm_eps=1e-6),
                          None, None),
    "model_no_pooler": ("ViTModel", {"add_pooling_layer": False}, SQUARE, None, None),
    "f16": ("ViTForImageClassification", {}, SMALL, "float16", None),
    "bf16": ("ViTForImageClassification", {}, SMALL, "bfloat16", None),
    "model_bf16": ("ViTModel", {"add_pooling_layer": True}, SQUARE, "bfloat16", None),
    "sharded": ("ViTForImageClassification", {}, SMALL, None, "40KB"),
    "deit": ("DeiTForImageClassification", {}, SQUARE, None, None),
    "deit_teacher": ("DeiTForImageClassificationWithTeacher", {}, SQUARE, None, None),
    "deit_model": ("DeiTModel", {"add_pooling_layer": True}, SQUARE, None, None),
    "vit_b16": ("ViTForImageClassification", {}, VIT_B16, None, None),
    # intermediate_size > 4 x hidden: the MLP rows, not Q|K|V + context + attention scratch, size the
    # layer workspace region they share (vit.c)
    "wide_mlp": ("ViTForImageClassification", {}, dict(TINY, intermediate_size=200), None, None),
}
for _act in ACTIVATIONS:
    SPECS[f"act_{_act}"] = ("ViTForImageClassification", {}, dict(TINY, hidden_act=_act), None, None)


class Checkpoint:
    def __init__(self, name, path, reference, spec):
        self.name, self.path, self.reference, self.spec = name, path, reference, spec

    @property
    def config(self):
        return self.reference.config

    def reference_outputs(self, pixels, **kwargs):
        with torch.no_grad():
            return self.reference(torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)),
                                  output_hidden_states=True, output_attentions=True, **kwargs)


def randomize_(model, seed):
    """O(1)-scale parameters: weights ~ N(0, 1/fan_in), biases ~ N(0, 0.1^2), LayerNorm gamma ~ 1 + N(0, 0.1^2),
    tokens and position embeddings ~ N(0, 0.5^2)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "layernorm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif name.endswith("weight"):
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(noise / np.sqrt(fan_in))
            else:
                p.copy_(0.5 * noise)


def build(name, root, seed=0):
    cls_name, kwargs, cfg_kwargs, dtype, shard = SPECS[name]
    cls = getattr(transformers, cls_name)
    config_cls = transformers.DeiTConfig if cls_name.startswith("DeiT") else transformers.ViTConfig
    config = config_cls(**cfg_kwargs, attn_implementation="eager")
    torch.manual_seed(seed)
    model = cls(config, **kwargs)
    randomize_(model, seed)
    if dtype is not None:  # round to the saved dtype; the float32 reference holds the rounded values
        model = model.to(getattr(torch, dtype))
    path = os.path.join(root, name)
    save_kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(path, **save_kwargs)
    model = model.to(torch.float32).eval()
    return Checkpoint(name, path, model, SPECS[name])


class CheckpointFactory:
    _cache = {}  # shared by every test module of the session

    def __init__(self, root):
        self.root = root

    def get(self, name):
        ckpt = self._cache.get(name)
        if ckpt is None:
            ckpt = self._cache[name] = build(name, str(self.root))
        return ckpt


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    return CheckpointFactory(tmp_path_factory.mktemp("checkpoints"))


def relative_error(got, ref):
    """max|got - ref| / max|ref| (shapes must match)."""
    ref = ref.detach().numpy() if hasattr(ref, "detach") else np.asarray(ref)
    got = np.asarray(got)
    assert got.shape == ref.shape, f"shape {got.shape} != reference {ref.shape}"
    scale = float(np.abs(ref).max())
    return float(np.abs(got.astype(np.float64) - ref).max()) / (scale if scale > 0 else 1.0)


def pixels(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)

