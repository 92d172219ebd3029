"""Boundary 1, model files: hostile safetensors files (the cases of docs/robustness.md), each a clear exception
naming the file and the problem; nothing read outside the file; nothing half-loaded; NaN/Inf weights reported.

tests/test_weights.py covers more header shapes and the shard index; tests/test_fuzz.py throws random bytes."""
import contextlib
import io
import os
import stat

import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
from robust_helpers import SMALL, image_batch, write_checkpoint, write_raw  # noqa: E402

import vitc  # noqa: E402
from vitc import cli  # noqa: E402
from vitc.safetensors_reader import MAX_NDIM, CheckpointReader, SafetensorsError, SafetensorsFile  # noqa: E402


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


HOSTILE = {
    # name: (header, data bytes, header-length override or None, words the message must contain)
    "length_past_end": ({"x": entry()}, b"\0" * 8, 1000, "header length 1000 does not fit in a file of"),
    "length_2**64-1": ({}, b"", 2 ** 64 - 1, "header length 18446744073709551615 does not fit"),
    "length_zero": (b"", b"\0" * 8, None, "not valid UTF-8 JSON"),
    "not_json": (b"hello", b"", None, "not valid UTF-8 JSON"),
    "not_utf8": (b'{"\xff": 1}', b"", None, "not valid UTF-8 JSON"),
    "json_list": ([], b"", None, "must be a JSON object, got list"),
    "json_string": (b'"x"', b"", None, "must be a JSON object, got str"),
    "json_null": (b"null", b"", None, "must be a JSON object, got NoneType"),
    "deep_nesting": (b"[" * 100000 + b"]" * 100000, b"", None, "nested too deeply"),
    "giant_integer": (b'{"x": ' + b"9" * 5000 + b"}", b"", None, "unreadable value"),
    "entry_not_object": ({"x": [1, 2]}, b"", None, "tensor 'x': expected an object with exactly dtype"),
    "entry_extra_key": ({"x": {**entry(), "extra": 1}}, b"\0" * 8, None, "exactly dtype, shape, data_offsets"),
    "dtype_unknown": ({"x": entry(dtype="F128")}, b"\0" * 8, None, "tensor 'x': unknown dtype 'F128'"),
    "dtype_not_string": ({"x": entry(dtype=["F32"])}, b"\0" * 8, None, "unknown dtype \\['F32'\\]"),
    "shape_not_list": ({"x": {**entry(), "shape": 2}}, b"\0" * 8, None, "shape must be a list"),
    "shape_negative": ({"x": entry(shape=(-1, -2))}, b"\0" * 8, None, "non-negative ints"),
    "shape_bool": ({"x": entry(shape=(True, 2))}, b"\0" * 8, None, "non-negative ints"),
    "shape_too_many_dims": ({"x": entry(shape=(1,) * (MAX_NDIM + 1), offsets=(0, 4))}, b"\0" * 4, None,
                            f"{MAX_NDIM + 1} dimensions, at most {MAX_NDIM}"),
    "shape_overflow": ({"x": entry(shape=(2 ** 32, 2 ** 32, 2 ** 32))}, b"\0" * 8, None, "overflows 2\\*\\*63 bytes"),
    "shape_overflow_u64_wrap": ({"x": entry(shape=(2 ** 62, 4), offsets=(0, 0))}, b"", None, "overflows"),
    "zero_dim_with_huge_dims": ({"x": entry(shape=(0, 2 ** 62, 2 ** 62), offsets=(0, 0))}, b"", None,
                                "overflows"),
    "size_mismatch": ({"x": entry(shape=(3,))}, b"\0" * 8, None, "needs 12 bytes but data_offsets \\[0, 8\\] span 8"),
    "offsets_past_end": ({"x": entry(offsets=(0, 16))}, b"\0" * 8, None, "not inside the data area of 8 bytes"),
    "offsets_reversed": ({"x": entry(offsets=(8, 0))}, b"\0" * 8, None, "not inside the data area"),
    "offsets_negative": ({"x": entry(offsets=(-8, 0))}, b"\0" * 8, None, "not inside the data area"),
    "offsets_three": ({"x": entry(offsets=(0, 4, 8))}, b"\0" * 8, None, "not inside the data area"),
    "offsets_float": ({"x": entry(offsets=(0.0, 8.0))}, b"\0" * 8, None, "not inside the data area"),
    "offsets_huge": ({"x": entry(offsets=(2 ** 64, 2 ** 64 + 8))}, b"\0" * 8, None, "not inside the data area"),
    "overlap": ({"x": entry(), "y": entry(offsets=(4, 12))}, b"\0" * 12, None, "'y' at bytes \\[4, 12\\) overlaps"),
    "alias": ({"x": entry(), "y": entry()}, b"\0" * 8, None, "overlaps the previous tensor"),
    "gap": ({"x": entry(offsets=(4, 12))}, b"\0" * 12, None, "leaves a gap at byte 0"),
    "trailing_bytes": ({"x": entry()}, b"\0" * 9, None, "tensors cover 8 bytes of a 9-byte data area"),
    "truncated_data": ({"x": entry(shape=(4,), offsets=(0, 16))}, b"\0" * 10, None, "not inside the data area of 10"),
    "metadata_not_strings": ({"__metadata__": {"format": 1}}, b"", None, "__metadata__ must map strings"),
    "duplicate_name": (b'{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                       b'"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4, None,
                       "duplicate key 'x'"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_is_a_clear_error(tmp_path, case):
    header, data, length, words = HOSTILE[case]
    path = write_raw(tmp_path / f"{case}.safetensors", header, data, length)
    with pytest.raises(SafetensorsError, match=words) as info:
        SafetensorsFile(path)
    assert path in str(info.value)  # names the file
    assert len(str(info.value)) < 1000  # a hostile value is not echoed in full


def test_out_of_order_offsets_that_tile_are_read_correctly(tmp_path):
    """JSON order does not matter (as in the reference implementation): the offsets alone place tensors."""
    data = np.arange(2, dtype="<f4").tobytes() + np.arange(10, 13, dtype="<f4").tobytes()
    path = write_raw(tmp_path / "o.safetensors", {"late": entry(shape=(3,), offsets=(8, 20)),
                                                  "early": entry(offsets=(0, 8))}, data)
    with SafetensorsFile(path) as f:
        np.testing.assert_array_equal(f.get_float32("late"), [10, 11, 12])
        np.testing.assert_array_equal(f.get_float32("early"), [0, 1])


def test_zero_size_tensors(tmp_path):
    path = write_raw(tmp_path / "z.safetensors", {"a": entry(shape=(0, 7), offsets=(0, 0)),
                                                  "b": entry(shape=(5, 0, 2 ** 40), offsets=(0, 0)),
                                                  "c": entry(shape=(), offsets=(0, 4))}, b"\0\0\x80\x3f")
    with SafetensorsFile(path) as f:
        assert f.get_float32("a").shape == (0, 7) and f.get_float32("b").shape == (5, 0, 2 ** 40)
        assert f.get_float32("c").shape == () and f.get_float32("c") == 1.0


def test_file_shorter_than_8_bytes_and_empty(tmp_path):
    for n in (0, 7):
        (tmp_path / "s.safetensors").write_bytes(b"\0" * n)
        with pytest.raises(SafetensorsError, match=f"s.safetensors: {n} bytes is too short"):
            SafetensorsFile(tmp_path / "s.safetensors")


def test_truncated_while_open_is_an_error_not_sigbus(tmp_path):
    """The header was valid when opened; the file then shrinks (another process rewriting it). A mapped
    read would die with SIGBUS; vitc's pread comes back short and says so."""
    save_file({"a": np.ones(1000, np.float32), "b": np.ones(1000, np.float32)}, str(tmp_path / "t.safetensors"))
    with SafetensorsFile(tmp_path / "t.safetensors") as f:
        os.truncate(tmp_path / "t.safetensors", 200)
        with pytest.raises(SafetensorsError, match="t.safetensors: tensor '.': the file ended at byte"):
            f.get_float32("a"), f.get_float32("b")


def test_directory_fifo_missing_unreadable(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory, expected a .safetensors file") as info:
        SafetensorsFile(tmp_path)
    assert str(tmp_path) in str(info.value)
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)  # open() for reading would block forever
    with pytest.raises(SafetensorsError, match="pipe.safetensors: not a regular file"):
        SafetensorsFile(fifo)
    with pytest.raises(SafetensorsError, match="not a regular file"):
        SafetensorsFile("/dev/zero")
    with pytest.raises(FileNotFoundError, match="nope.safetensors: no such safetensors file"):
        SafetensorsFile(tmp_path / "nope.safetensors")
    locked = tmp_path / "locked.safetensors"
    save_file({"a": np.ones(1, np.float32)}, str(locked))
    locked.chmod(0)
    # root reads mode-000 files; /proc/sys/vm/drop_caches is a regular file even root cannot read
    path = str(locked) if os.geteuid() != 0 else "/proc/sys/vm/drop_caches"
    with pytest.raises(PermissionError, match="permission denied") as info:
        SafetensorsFile(path)
    assert path in str(info.value)


def test_bad_index_files(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    for content, words in ((b"[" * 100000, "nested too deeply"), (b"\xff\xfe", "not valid JSON"),
                           (b'{"weight_map": ' + b"1" * 5000 + b"}", "unreadable JSON value")):
        index.write_bytes(content)
        with pytest.raises(SafetensorsError, match=words) as info:
            CheckpointReader(str(index))
        assert str(index) in str(info.value)


def open_fds():
    return len(os.listdir("/proc/self/fd"))


# ---- model loading: errors leave nothing behind ------------------------------------------------------------
def test_failed_load_leaves_no_model_and_no_open_file(tmp_path):
    """A tensor that cannot be read comes after others were loaded: the exception propagates out of
    from_pretrained, so no model object exists, and every shard file was closed."""
    folder = write_checkpoint(tmp_path / "m", edit=lambda t: {**t, "classifier.bias": t["classifier.bias"]
                                                               .astype(np.int16)})
    before = open_fds()
    for _ in range(3):
        with pytest.raises(SafetensorsError, match="tensor 'classifier.bias' has dtype I16") as info:
            vitc.ViTForImageClassification.from_pretrained(folder)
        assert "model.safetensors" in str(info.value)
    assert open_fds() == before


def test_hostile_weights_file_in_a_model_folder(tmp_path):
    folder = write_checkpoint(tmp_path / "m")
    write_raw(os.path.join(folder, "model.safetensors"), b"[" * 50000)
    with pytest.raises(SafetensorsError, match="model.safetensors: the header JSON is nested too deeply"):
        vitc.ViTModel.from_pretrained(folder)
    os.remove(os.path.join(folder, "model.safetensors"))
    os.mkdir(os.path.join(folder, "model.safetensors"))  # a directory where the weights file should be
    with pytest.raises(FileNotFoundError, match=r"m: no model.safetensors .*in this folder"):
        vitc.ViTModel.from_pretrained(folder)


# ---- NaN / Inf weights: loaded, reported ----------------------------------------------------------------------
def poison(tensors):
    t = dict(tensors)
    w = t["vit.encoder.layer.1.intermediate.dense.weight"].copy()
    w[0, :3] = [np.nan, np.inf, -np.inf]
    t["vit.encoder.layer.1.intermediate.dense.weight"] = w
    b = t["classifier.bias"].copy()
    b[2] = np.nan
    t["classifier.bias"] = b
    return t


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_nonfinite_weights_are_counted_and_reported(tmp_path, dtype):
    def edit(t):
        return {k: v.astype(dtype) for k, v in poison(t).items()}
    folder = write_checkpoint(tmp_path / "m", edit=edit)
    model = vitc.ViTForImageClassification.from_pretrained(folder)  # loading is allowed
    assert model.nonfinite_weights() == {"vit.encoder.layer.1.intermediate.dense.weight": 3, "classifier.bias": 1}
    with pytest.raises(ValueError, match=r"non-finite weights.*classifier.bias: 1.*intermediate.dense.weight: 3"):
        model.check_weights()
    logits = model(image_batch(model.config, 2)).logits  # runs; the poisoned outputs are NaN, no crash
    assert np.isnan(logits).any()
    clean = vitc.ViTForImageClassification.from_pretrained(write_checkpoint(tmp_path / "c"))
    assert clean.nonfinite_weights() == {} and clean.check_weights() is clean
    # `vitc info` prints the same dict
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["info", folder]) == 0
    assert "nonfinite_weights" in out.getvalue() and "'classifier.bias': 1" in out.getvalue()


def test_nonfinite_count_is_exact_on_large_tensors():
    from vitc.guards import count_nonfinite
    x = np.random.default_rng(0).standard_normal(1_000_003).astype(np.float32)
    assert count_nonfinite(x) == 0
    x[[0, 17, 999_999]] = [np.nan, np.inf, -np.inf]
    assert count_nonfinite(x) == 3
    big = np.full(10, np.finfo(np.float32).max, np.float32)  # finite values whose float32 sum overflows
    assert count_nonfinite(big) == 0
    assert count_nonfinite(np.empty(0, np.float32)) == 0


def test_model_folder_problems(tmp_path):
    with pytest.raises(FileNotFoundError):
        vitc.ViTModel.from_pretrained(str(tmp_path / "missing_folder"))
    folder = write_checkpoint(tmp_path / "m")
    os.remove(os.path.join(folder, "model.safetensors"))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        vitc.ViTModel.from_pretrained(folder)


def test_unchanged_weights_after_load_drop_pread(tmp_path):
    """The pread reader returns exactly what safetensors' own loader returns, for every tensor."""
    folder = write_checkpoint(tmp_path / "m", seed=3)
    ref = load_file(os.path.join(folder, "model.safetensors"))
    with CheckpointReader(os.path.join(folder, "model.safetensors")) as r:
        for name, want in ref.items():
            np.testing.assert_array_equal(r.get_float32(name), want)
    assert stat.S_ISREG(os.stat(os.path.join(folder, "model.safetensors")).st_mode)
    assert SMALL["hidden_size"] == vitc.ViTModel.from_pretrained(folder).config.hidden_size
