"""Tiny CLIP / SigLIP / DINOv2 checkpoints built with transformers (random O(1) weights, fixed seed,
save_pretrained), and the comparison of every output vitc and transformers share."""
import os

import numpy as np
import torch
import transformers

from checkpoints import randomize_, relative_error

TOL = 1e-4


def build(root, cls_name, config, seed=0, name=None, dtype=None):
    """(folder, eager float32 transformers model) of a freshly saved checkpoint; dtype (e.g. "bfloat16"):
    saved in that dtype, the float32 reference holding the rounded values."""
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(config)
    randomize_(model, seed)
    if dtype is not None:
        model = model.to(getattr(torch, dtype))
    path = os.path.join(str(root), name or cls_name)
    model.save_pretrained(path)
    model = model.float().eval()
    return path, model


def reference(model, x, **kwargs):
    with torch.no_grad():
        return model(torch.from_numpy(x), output_hidden_states=True, output_attentions=True, **kwargs)


def assert_outputs_match(got, ref, fields):
    """Every field, and every hidden state and attention map, within TOL (relative to max|ref|)."""
    for field in fields:
        err = relative_error(getattr(got, field), getattr(ref, field))
        assert err <= TOL, (field, err)
    assert len(got.hidden_states) == len(ref.hidden_states)
    for i, (g, r) in enumerate(zip(got.hidden_states, ref.hidden_states)):
        assert relative_error(g, r) <= TOL, ("hidden_states", i, relative_error(g, r))
    assert len(got.attentions) == len(ref.attentions)
    for i, (g, r) in enumerate(zip(got.attentions, ref.attentions)):
        assert relative_error(g, r) <= TOL, ("attentions", i, relative_error(g, r))


def pixels(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
