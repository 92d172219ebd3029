"""The strict safetensors reader (hostile headers, dtypes, shards) and the checkpoint <-> config checks."""
import json
import os
import shutil
import struct
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import checkpoints, torch  # noqa: E402,F401

import vitc  # noqa: E402
from vitc.safetensors_reader import CheckpointReader, SafetensorsError, SafetensorsFile  # noqa: E402


def write_raw(path, header, data=b""):
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data)
    return str(path)


def test_float32_matches_safetensors(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"a": rng.standard_normal((3, 5)).astype(np.float32), "b": np.arange(7, dtype=np.float32),
               "scalar": np.array(2.5, dtype=np.float32), "empty": np.zeros((0, 4), np.float32)}
    save_file(tensors, str(tmp_path / "t.safetensors"), metadata={"format": "np"})
    with SafetensorsFile(tmp_path / "t.safetensors") as f:
        assert f.metadata == {"format": "np"}
        assert sorted(f.keys()) == sorted(tensors)
        for name, want in tensors.items():
            got = f.get_float32(name)
            assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
        kept = f.get_float32("a")
    np.testing.assert_array_equal(kept, tensors["a"])  # a copy: still valid after close


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_converted_dtypes_are_exact(tmp_path, dtype):
    from safetensors.torch import save_file as save_torch
    x = (torch.randn(4, 9, generator=torch.Generator().manual_seed(1)) * 100).to(dtype)
    x[0, :4] = torch.tensor([float("inf"), -0.0, 1e-8, -65504.0]).to(dtype)
    save_torch({"x": x}, str(tmp_path / "t.safetensors"))
    with SafetensorsFile(tmp_path / "t.safetensors") as f:
        assert f.tensors["x"].dtype == {torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}[dtype]
        got = f.get_float32("x")
    want = x.to(torch.float32).numpy()
    np.testing.assert_array_equal(got, want)
    assert np.signbit(got[0, 1])


def test_non_float_dtype_is_refused_when_read(tmp_path):
    save_file({"i": np.arange(4, dtype=np.int32), "f": np.ones(2, np.float32)}, str(tmp_path / "t.safetensors"))
    with SafetensorsFile(tmp_path / "t.safetensors") as f:
        np.testing.assert_array_equal(f.get_float32("f"), [1, 1])
        with pytest.raises(SafetensorsError, match=r"t.safetensors: tensor 'i' has dtype I32; expected a float"):
            f.get_float32("i")


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


@pytest.mark.parametrize("header,data,message", [
    (b"{", b"", "not valid UTF-8 JSON"),
    (b"\xff\xfe", b"", "not valid UTF-8 JSON"),
    ([1, 2], b"", "must be a JSON object"),
    ({"x": entry(dtype="F12")}, b"\0" * 8, "tensor 'x': unknown dtype 'F12'"),
    ({"x": entry(shape=(3,))}, b"\0" * 8, r"shape \[3\] x F32 needs 12 bytes but data_offsets \[0, 8\] span 8"),
    ({"x": entry(offsets=(0, 16))}, b"\0" * 8, "not inside the data area of 8 bytes"),
    ({"x": entry(offsets=(8, 0))}, b"\0" * 8, "not inside the data area"),
    ({"x": entry(offsets=(-8, 0))}, b"\0" * 8, "not inside the data area"),
    ({"x": entry(shape=(-2,))}, b"\0" * 8, "shape must be a list of non-negative ints"),
    ({"x": entry(shape=(2.0,))}, b"\0" * 8, "shape must be a list of non-negative ints"),
    ({"x": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "exactly dtype, shape, data_offsets"),
    ({"x": entry(), "y": entry(offsets=(4, 12))}, b"\0" * 12, "'y' at bytes \\[4, 12\\) overlaps"),
    ({"x": entry(), "y": entry(offsets=(0, 8))}, b"\0" * 8, "overlaps the previous tensor"),
    ({"x": entry(offsets=(4, 12))}, b"\0" * 12, "leaves a gap at byte 0"),
    ({"x": entry()}, b"\0" * 12, "tensors cover 8 bytes of a 12-byte data area"),
    ({"__metadata__": {"a": 1}}, b"", "__metadata__ must map strings to strings"),
])
def test_hostile_headers(tmp_path, header, data, message):
    path = write_raw(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(SafetensorsError, match=message) as info:
        SafetensorsFile(path)
    assert "bad.safetensors" in str(info.value)


def test_duplicate_key_and_bad_lengths(tmp_path):
    raw = b'{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "x": {"dtype": "F32", "shape": [1], ' \
          b'"data_offsets": [0, 4]}}'
    with pytest.raises(SafetensorsError, match="duplicate key 'x'"):
        SafetensorsFile(write_raw(tmp_path / "dup.safetensors", raw, b"\0" * 4))
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    with pytest.raises(SafetensorsError, match="too short"):
        SafetensorsFile(short)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(SafetensorsError, match="header length 1099511627776 does not fit"):
        SafetensorsFile(huge)


def make_shards(tmp_path, weight_map=None):
    save_file({"a": np.ones(3, np.float32), "a2": np.ones(1, np.float32)}, str(tmp_path / "s1.safetensors"))
    save_file({"b": np.full(2, 2, np.float32)}, str(tmp_path / "s2.safetensors"))
    index = {"metadata": {}, "weight_map": weight_map or {"a": "s1.safetensors", "a2": "s1.safetensors",
                                                          "b": "s2.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    return str(tmp_path / "model.safetensors.index.json")


def test_sharded_index(tmp_path):
    with CheckpointReader(make_shards(tmp_path)) as r:
        assert sorted(r.keys()) == ["a", "a2", "b"] and r.shape("a") == (3,)
        np.testing.assert_array_equal(r.get_float32("b"), [2, 2])


@pytest.mark.parametrize("weight_map,message", [
    ({"a": "s1.safetensors", "a2": "s1.safetensors", "b": "s1.safetensors"},
     "tensor 'b' is listed in s1.safetensors but that shard"),
    ({"a": "s1.safetensors", "b": "s2.safetensors"}, "tensor 'a2' is not listed in"),
    ({"a": "../s1.safetensors", "b": "s2.safetensors"}, "must be a plain \\*.safetensors file name"),
    ({"a": "/etc/passwd", "b": "s2.safetensors"}, "must be a plain"),
])
def test_sharded_index_errors(tmp_path, weight_map, message):
    with pytest.raises(SafetensorsError, match=message):
        CheckpointReader(make_shards(tmp_path, weight_map))


def test_sharded_index_missing_shard_or_map(tmp_path):
    index = make_shards(tmp_path, {"a": "s1.safetensors", "a2": "s1.safetensors", "b": "s3.safetensors"})
    with pytest.raises(FileNotFoundError, match="shard s3.safetensors listed in .*index.json is missing"):
        CheckpointReader(index)
    for bad in ({"metadata": {}}, {"weight_map": {}}, {"weight_map": {"a": 3}}, []):
        (tmp_path / "model.safetensors.index.json").write_text(json.dumps(bad))
        with pytest.raises(SafetensorsError, match='non-empty "weight_map"'):
            CheckpointReader(index)


def test_same_tensor_in_two_files(tmp_path):
    save_file({"a": np.ones(3, np.float32)}, str(tmp_path / "s1.safetensors"))
    save_file({"a": np.ones(3, np.float32)}, str(tmp_path / "s2.safetensors"))
    with pytest.raises(SafetensorsError, match="tensor 'a' is in both"):
        CheckpointReader([str(tmp_path / "s1.safetensors"), str(tmp_path / "s2.safetensors")])


# ---- checkpoint tensors vs config ------------------------------------------------------------------------
def edited_copy(src, dst, edit):
    """A copy of a checkpoint folder whose model.safetensors went through edit(dict) -> dict."""
    shutil.copytree(src, dst)
    tensors = edit(load_file(os.path.join(dst, "model.safetensors")))
    save_file(tensors, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    return str(dst)


def test_missing_tensor(checkpoints, tmp_path):
    name = "vit.encoder.layer.1.attention.attention.key.weight"
    path = edited_copy(checkpoints.get("small").path, tmp_path / "c",
                       lambda t: {k: v for k, v in t.items() if k != name})
    with pytest.raises(vitc.WeightsMismatchError, match=f"missing tensor\\(s\\) '{name}'.*hidden_size=40"):
        vitc.ViTForImageClassification.from_pretrained(path)


def test_unexpected_tensor(checkpoints, tmp_path):
    def add_layer(t):
        t = dict(t)
        t["vit.encoder.layer.3.output.dense.bias"] = np.zeros(40, np.float32)
        return t
    path = edited_copy(checkpoints.get("small").path, tmp_path / "c", add_layer)
    with pytest.raises(vitc.WeightsMismatchError, match="unexpected tensor\\(s\\) 'vit.encoder.layer.3.output"):
        vitc.ViTForImageClassification.from_pretrained(path)


def test_ignored_tensors_like_transformers(checkpoints, tmp_path):
    """mask_token (masked-image-modeling checkpoints) and a pooler under a classification head are dropped."""
    def add(t):
        t = dict(t)
        t["vit.embeddings.mask_token"] = np.zeros((1, 1, 40), np.float32)
        t["vit.pooler.dense.weight"] = np.zeros((40, 40), np.float32)
        t["vit.pooler.dense.bias"] = np.zeros(40, np.float32)
        return t
    ckpt = checkpoints.get("small")
    path = edited_copy(ckpt.path, tmp_path / "c", add)
    x = np.random.default_rng(0).standard_normal((1, 3, 30, 42)).astype(np.float32)
    np.testing.assert_array_equal(vitc.ViTForImageClassification.from_pretrained(path)(x).logits,
                                  vitc.ViTForImageClassification.from_pretrained(ckpt.path)(x).logits)


def test_misshaped_tensor(checkpoints, tmp_path):
    name = "vit.encoder.layer.0.intermediate.dense.weight"
    path = edited_copy(checkpoints.get("small").path, tmp_path / "c",
                       lambda t: {**t, name: np.zeros((66, 40), np.float32)})
    with pytest.raises(vitc.WeightsMismatchError, match=rf"'{name}' has shape \[66, 40\], expected \[67, 40\]"):
        vitc.ViTForImageClassification.from_pretrained(path)


def test_config_that_disagrees_with_weights(checkpoints, tmp_path):
    path = tmp_path / "c"
    shutil.copytree(checkpoints.get("small").path, path)
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "qkv_bias": False}))
    with pytest.raises(vitc.WeightsMismatchError, match="unexpected tensor.*attention.attention.*bias"):
        vitc.ViTForImageClassification.from_pretrained(str(path))
    (path / "config.json").write_text(json.dumps({**cfg, "id2label": {"0": "a", "1": "b"}}))
    with pytest.raises(vitc.WeightsMismatchError, match=r"'classifier.weight' has shape \[7, 40\], expected \[2, 40\]"):
        vitc.ViTForImageClassification.from_pretrained(str(path))


def test_non_float_weight_is_a_clear_error(checkpoints, tmp_path):
    name = "vit.layernorm.bias"
    path = edited_copy(checkpoints.get("small").path, tmp_path / "c",
                       lambda t: {**t, name: t[name].astype(np.int32)})
    with pytest.raises(SafetensorsError, match=f"tensor '{name}' has dtype I32"):
        vitc.ViTForImageClassification.from_pretrained(path)


def test_corrupt_checkpoint_file(checkpoints, tmp_path):
    path = tmp_path / "c"
    shutil.copytree(checkpoints.get("small").path, path)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])  # truncated download
    with pytest.raises(SafetensorsError, match="model.safetensors"):
        vitc.ViTForImageClassification.from_pretrained(str(path))


@pytest.mark.parametrize("name,dtype", [("f16", "F16"), ("bf16", "BF16"), ("small", "F32")])
def test_test_checkpoints_hold_the_intended_dtype(checkpoints, name, dtype):
    with SafetensorsFile(os.path.join(checkpoints.get(name).path, "model.safetensors")) as f:
        assert {t.dtype for t in f.tensors.values()} == {dtype}
