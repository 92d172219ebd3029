"""vitc models against transformers (eager, float32) on the same checkpoints and inputs, on every ISA path."""
import os
import pickle
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import ACTIVATIONS, checkpoints, pixels, relative_error, torch  # noqa: E402,F401

import vitc  # noqa: E402
from vitc import modeling  # noqa: E402

TOL = 1e-4


def image_shape(ckpt, batch=2):
    cfg = ckpt.config
    size = cfg.image_size if isinstance(cfg.image_size, (list, tuple)) else (cfg.image_size, cfg.image_size)
    return (batch, cfg.num_channels, *size)


def load(ckpt, **kwargs):
    cls = vitc.ViTModel if "Model" in ckpt.spec[0] else vitc.ViTForImageClassification
    return cls.from_pretrained(ckpt.path, **kwargs)


def assert_matches(out, ref, with_details=True):
    """Every output of a vitc call against the transformers reference."""
    if hasattr(ref, "logits"):
        assert relative_error(out.logits, ref.logits) <= TOL
        np.testing.assert_array_equal(out.logits.argmax(-1), ref.logits.numpy().argmax(-1))
        if hasattr(ref, "cls_logits"):
            assert relative_error(out.cls_logits, ref.cls_logits) <= TOL
            assert relative_error(out.distillation_logits, ref.distillation_logits) <= TOL
    else:
        assert relative_error(out.last_hidden_state, ref.last_hidden_state) <= TOL
        if ref.pooler_output is None:
            assert out.pooler_output is None
        else:
            assert relative_error(out.pooler_output, ref.pooler_output) <= TOL
    if with_details:
        assert len(out.hidden_states) == len(ref.hidden_states)
        for got, want in zip(out.hidden_states, ref.hidden_states):
            assert relative_error(got, want) <= TOL
        assert len(out.attentions) == len(ref.attentions)
        for got, want in zip(out.attentions, ref.attentions):
            assert relative_error(got, want) <= TOL


SMALL_SPECS = ["small", "patch57", "no_qkv_bias", "gray", "model_pooler", "model_pooler_wide",
               "model_no_pooler", "f16", "bf16", "model_bf16", "sharded", "deit", "deit_teacher", "deit_model",
               "wide_mlp"]


@pytest.mark.parametrize("name", SMALL_SPECS)
def test_matches_transformers(checkpoints, isa_name, name):
    ckpt = checkpoints.get(name)
    model = load(ckpt)
    assert model.isa == isa_name
    x = pixels(image_shape(ckpt), seed=1)
    out = model(x, output_hidden_states=True, output_attentions=True)
    assert_matches(out, ckpt.reference_outputs(x))
    assert model.num_parameters() == ckpt.reference.num_parameters()


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_hidden_act(checkpoints, isa_name, act):
    ckpt = checkpoints.get(f"act_{act}")
    x = pixels(image_shape(ckpt, batch=1), seed=2)
    out = load(ckpt)(x, output_hidden_states=True, output_attentions=True)
    assert_matches(out, ckpt.reference_outputs(x))


def test_vit_base_patch16_224(checkpoints):
    """The real google/vit-base-patch16-224 shapes, once, on the default ISA only (scalar is slow)."""
    ckpt = checkpoints.get("vit_b16")
    model = load(ckpt)
    x = pixels((1, 3, 224, 224), seed=3)
    out = model(x, output_hidden_states=True, output_attentions=True)
    assert out.logits.shape == (1, 1000)
    assert_matches(out, ckpt.reference_outputs(x))
    assert model.num_parameters() == ckpt.reference.num_parameters()
    assert model.config.id2label[999] == ckpt.config.id2label[999]


# ---- interpolate_pos_encoding -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["square", "model_pooler_wide", "deit_teacher"])
@pytest.mark.parametrize("hw", [(24, 24), (32, 44), (16, 16), (20, 28), (27, 13), (48, 32)])
def test_interpolate_pos_encoding(checkpoints, isa_name, name, hw):
    ckpt = checkpoints.get(name)
    model = load(ckpt)
    x = pixels((2, 3, *hw), seed=4)
    out = model(x, output_hidden_states=True, output_attentions=True, interpolate_pos_encoding=True)
    assert_matches(out, ckpt.reference_outputs(x, interpolate_pos_encoding=True))


@pytest.mark.parametrize("grid,new", [((6, 6), (8, 11)), ((6, 6), (4, 4)), ((5, 7), (5, 7)), ((5, 7), (9, 3)),
                                      ((1, 1), (3, 2)), ((4, 3), (1, 1)), ((14, 14), (24, 24))])
def test_bicubic_matches_torch(grid, new):
    g = np.random.default_rng(5).standard_normal((*grid, 6)).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(g).permute(2, 0, 1)[None], size=new, mode="bicubic",
                                          align_corners=False)[0].permute(1, 2, 0).numpy()
    got = modeling.bicubic_resize(g, *new)
    assert got.dtype == np.float32 and got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * np.abs(ref).max())


def test_interpolate_on_non_square_grid(checkpoints):
    """transformers only handles a square position grid; vitc resizes the config's own 5x7 grid."""
    ckpt = checkpoints.get("small")
    model = load(ckpt)
    x = pixels((1, 3, 36, 36), seed=6)
    out = model(x, output_hidden_states=True, interpolate_pos_encoding=True)
    pos = ckpt.reference.vit.embeddings.position_embeddings.detach()[0]
    patch = pos[1:].reshape(1, 5, 7, -1).permute(0, 3, 1, 2)
    resized = torch.nn.functional.interpolate(patch, size=(6, 6), mode="bicubic", align_corners=False)
    pos_ref = torch.cat([pos[:1], resized[0].permute(1, 2, 0).reshape(36, -1)])
    emb = ckpt.reference.vit.embeddings
    with torch.no_grad():
        patches = emb.patch_embeddings.projection(torch.from_numpy(x)).flatten(2).transpose(1, 2)
        ref = torch.cat([emb.cls_token, patches], dim=1) + pos_ref
    assert relative_error(out.hidden_states[0], ref) <= TOL
    # at the configured size (a non-square input, so transformers' rule resizes) the resize is the identity
    same = pixels((1, 3, 30, 42), seed=13)
    np.testing.assert_array_equal(model(same, interpolate_pos_encoding=True).logits, model(same).logits)


# ---- API behaviour ------------------------------------------------------------------------------------
def test_output_access_like_transformers(checkpoints):
    ckpt = checkpoints.get("model_pooler")
    model = load(ckpt)
    x = pixels(image_shape(ckpt), seed=7)
    out = model(x)
    assert out.hidden_states is None and out.attentions is None
    assert list(out.keys()) == ["last_hidden_state", "pooler_output"]
    assert out[0] is out.last_hidden_state and out["pooler_output"] is out.pooler_output
    assert len(out.to_tuple()) == 2
    tup = model(x, return_dict=False)
    assert isinstance(tup, tuple) and np.array_equal(tup[0], out[0])
    again = pickle.loads(pickle.dumps(out))
    assert np.array_equal(again.pooler_output, out.pooler_output)
    cls = load(checkpoints.get("small"))
    full = cls(pixels(image_shape(checkpoints.get("small"))), output_attentions=True)
    assert list(full.keys()) == ["logits", "attentions"] and full[1] is full.attentions


def test_buffers_reused_and_outputs_independent(checkpoints):
    ckpt = checkpoints.get("small")
    model = load(ckpt)
    x1, x2 = pixels(image_shape(ckpt), seed=8), pixels(image_shape(ckpt), seed=9)
    out1 = model(x1, output_hidden_states=True, output_attentions=True)
    bufs = list(model._buffers.values())
    assert len(bufs) == 1
    hidden_ptr = bufs[0].hidden.ctypes.data
    first = [h.copy() for h in out1.hidden_states], out1.logits.copy()
    out2 = model(x2, output_hidden_states=True, output_attentions=True)
    assert list(model._buffers.values()) == bufs and bufs[0].hidden.ctypes.data == hidden_ptr
    # the second call must not have written into the first call's outputs
    for h, h0 in zip(out1.hidden_states, first[0]):
        np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(out1.logits, first[1])
    assert not np.array_equal(out1.logits, out2.logits)
    # a different batch gets its own buffers; the cache stays bounded
    for b in (1, 3, 4):
        model(pixels(image_shape(ckpt, batch=b)))
    assert len(model._buffers) <= modeling._ViTBase._max_cached_shapes


def test_batch_rows_are_independent_and_dtypes_accepted(checkpoints):
    ckpt = checkpoints.get("small")
    model = load(ckpt)
    x = pixels(image_shape(ckpt, batch=3), seed=10)
    together = model(x).logits
    for i in range(3):
        np.testing.assert_allclose(model(x[i:i + 1]).logits[0], together[i], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(x.astype(np.float64)).logits, together, rtol=1e-6, atol=1e-6)
    strided = np.asfortranarray(x)  # not C-contiguous: copied
    np.testing.assert_array_equal(model(strided).logits, together)
    np.testing.assert_array_equal(model(torch.from_numpy(x)).logits, together)


def test_threads_give_the_same_answer(checkpoints):
    ckpt = checkpoints.get("small")
    x = pixels(image_shape(ckpt), seed=11)
    one = load(ckpt, threads=1)(x).logits
    two = load(ckpt, threads=2)(x).logits
    np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="threads"):
        load(ckpt, threads=0)


def test_config_and_labels(checkpoints):
    ckpt = checkpoints.get("small")
    model = load(ckpt)
    assert model.config.id2label == {i: f"LABEL_{i}" for i in range(7)}
    assert model.config.label2id["LABEL_3"] == 3
    assert model.config.hidden_size == 40 and model.config.image_size == [30, 42]
    assert "ViTForImageClassification" in repr(model)


def test_base_model_from_classification_checkpoint(checkpoints):
    """ViTModel loads the `vit.` encoder of a classification checkpoint (no pooler there: None)."""
    ckpt = checkpoints.get("small")
    enc = vitc.ViTModel.from_pretrained(ckpt.path)
    x = pixels(image_shape(ckpt), seed=12)
    out = enc(x)
    assert out.pooler_output is None
    with torch.no_grad():
        ref = ckpt.reference.vit(torch.from_numpy(x))
    assert relative_error(out.last_hidden_state, ref.last_hidden_state) <= TOL


def test_classification_from_base_checkpoint_is_an_error(checkpoints):
    with pytest.raises(vitc.WeightsMismatchError, match="load it with ViTModel"):
        vitc.ViTForImageClassification.from_pretrained(checkpoints.get("model_pooler").path)


# ---- input errors -------------------------------------------------------------------------------------
def test_input_errors(checkpoints):
    ckpt = checkpoints.get("small")
    model = load(ckpt)
    good = pixels(image_shape(ckpt, batch=1))
    with pytest.raises(ValueError, match=r"4-D \[batch, channels, height, width\], got 3-D.*x\[None\]"):
        model(good[0])
    with pytest.raises(ValueError, match="got 5-D"):
        model(good[None])
    with pytest.raises(ValueError, match="has 1 channels, expected 3"):
        model(good[:, :1])
    with pytest.raises(ValueError, match=r"Input image size \(30\*40\) doesn't match model \(30\*42\)"):
        model(good[..., :40])
    with pytest.raises(ValueError, match="smaller than one patch"):
        model(good[..., :5, :], interpolate_pos_encoding=True)
    with pytest.raises(ValueError, match="empty batch"):
        model(good[:0])
    with pytest.raises(TypeError, match="real-valued"):
        model(good.astype(np.complex64))


def test_concurrent_calls_share_one_model(checkpoints):
    """Calls from several Python threads on one model (shared buffers) each get their own right answer."""
    import threading
    ckpt = checkpoints.get("small")
    model = load(ckpt)
    inputs = [pixels(image_shape(ckpt, batch=1), seed=20 + i) for i in range(4)]
    want = [model(x).logits for x in inputs]
    got = [None] * len(inputs)

    def run(i):
        for _ in range(3):
            got[i] = model(inputs[i]).logits

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
