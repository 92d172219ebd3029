"""Helpers of the robustness tests: raw safetensors files and random checkpoints without torch.

A random checkpoint uses the tensor names and shapes vitc's weight plan expects (the same as transformers',
checked by tests/test_weights.py), so these tests load models in milliseconds and need no reference model.
"""
import json
import os
import struct

import numpy as np
from safetensors.numpy import save_file

from vitc.config import ViTConfig
from vitc.families.vit import expected_base_tensors as _expected_base_tensors

# small enough to run fast on every ISA path, big enough to have several heads, layers and patches
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, image_size=16,
             patch_size=4, num_labels=5)


def write_raw(path, header, data=b"", length=None):
    """A safetensors file from a header (dict/list -> JSON, or raw bytes) and data bytes; `length` overrides
    the 8-byte header length field."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return str(path)


def random_tensors(config, seed=0, head=True):
    """{name: float32 array} of a ViTForImageClassification (head=True, `vit.` prefix) or a ViTModel."""
    rng = np.random.default_rng(seed)
    prefix = "vit." if head else ""
    tensors = {}
    for name, shape in _expected_base_tensors(config, 1).items():
        scale = 1.0 if name.endswith("layernorm_before.weight") or name.endswith("layernorm_after.weight") \
            else 1.0 / np.sqrt(shape[-1])
        t = rng.standard_normal(shape).astype(np.float32) * np.float32(scale)
        if "layernorm" in name and name.endswith("weight"):
            t = 1 + 0.1 * t
        tensors[prefix + name] = np.ascontiguousarray(t, dtype=np.float32)
    if head:
        n, d = config.num_labels, config.hidden_size
        tensors["classifier.weight"] = (rng.standard_normal((n, d)) / np.sqrt(d)).astype(np.float32)
        tensors["classifier.bias"] = (0.1 * rng.standard_normal(n)).astype(np.float32)
    return tensors


def write_checkpoint(folder, seed=0, head=True, edit=None, **config_overrides):
    """A model folder (config.json + model.safetensors) with random O(1) weights; edit(tensors) may change
    the tensors before saving. Returns the folder path as str."""
    os.makedirs(folder, exist_ok=True)
    fields = dict(SMALL, **config_overrides)
    num_labels = fields.pop("num_labels")
    config = ViTConfig(**fields, id2label={i: f"class_{i}" for i in range(num_labels)})
    tensors = random_tensors(config, seed, head)
    if edit is not None:
        tensors = edit(tensors)
    save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config.to_dict(), f)
    return str(folder)


def image_batch(config, batch, seed=0):
    h, w = config.image_hw
    return np.random.default_rng(seed).standard_normal((batch, config.num_channels, h, w)).astype(np.float32)
