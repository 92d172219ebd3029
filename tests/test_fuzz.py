"""Property-based fuzzing (hypothesis) of the parsers a hostile file reaches: the safetensors reader, the
config loader, and the model's pixel_values boundary. Bounded and reproducible: derandomize=True (the same
examples on every run and machine), a fixed max_examples, no example database.

The property: any input either loads (and then every tensor reads back with its declared shape) or raises
the documented exception (SafetensorsError / ValueError / TypeError) - never another exception, a hang or a
crash. Inputs that once broke that are kept in tests/fuzz_corpus/ and replayed by test_corpus_*.
"""
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))
from robust_helpers import write_checkpoint  # noqa: E402

import vitc  # noqa: E402
from vitc.config import ViTConfig  # noqa: E402
from vitc.safetensors_reader import DTYPES, SafetensorsError, SafetensorsFile  # noqa: E402

CORPUS = os.path.join(os.path.dirname(__file__), "fuzz_corpus")
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def check_safetensors_bytes(blob):
    """The property for one file content."""
    with tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False) as f:
        f.write(blob)
        path = f.name
    try:
        try:
            st_file = SafetensorsFile(path)
        except SafetensorsError as exc:
            assert path in str(exc)
            return "refused"
        with st_file:
            for name, info in st_file.tensors.items():
                assert info.end - info.begin >= 0
                try:
                    arr = st_file.get_float32(name)
                except SafetensorsError as exc:
                    assert "expected a float dtype" in str(exc)
                    continue
                assert arr.dtype == np.float32 and arr.shape == info.shape
        return "loaded"
    finally:
        os.remove(path)


def safetensors_blob(header, data):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


# ---- safetensors ---------------------------------------------------------------------------------------------
@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_safetensors_random_bytes(blob):
    check_safetensors_bytes(blob)


@FUZZ
@given(st.binary(max_size=200), st.binary(max_size=64))
def test_fuzz_safetensors_random_header_bytes(raw_header, data):
    check_safetensors_bytes(struct.pack("<Q", len(raw_header)) + raw_header + data)


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
                         st.floats(allow_nan=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                                                max_size=4),
                           max_leaves=12)
dims = st.one_of(st.integers(min_value=0, max_value=6), st.integers(min_value=-3, max_value=2 ** 65),
                 st.sampled_from([2 ** 31, 2 ** 32, 2 ** 62, 2 ** 63, 2 ** 64 - 1]))
offsets = st.one_of(st.integers(min_value=0, max_value=80), st.integers(min_value=-2 ** 64, max_value=2 ** 65))


@st.composite
def tensor_entries(draw):
    """Mostly well-formed entries with hostile values, sometimes garbage."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    dtype = draw(st.one_of(st.sampled_from(sorted(DTYPES)), st.text(max_size=5), json_scalars))
    shape = draw(st.one_of(st.lists(dims, max_size=5), st.lists(st.integers(1, 2), min_size=30, max_size=40),
                           json_values))
    offs = draw(st.one_of(st.lists(offsets, min_size=2, max_size=2), json_values))
    entry = {"dtype": dtype, "shape": shape, "data_offsets": offs}
    if draw(st.integers(0, 9)) == 0:
        entry[draw(st.text(max_size=4))] = draw(json_scalars)
    return entry


@FUZZ
@given(st.dictionaries(st.text(max_size=6), tensor_entries(), max_size=4),
       st.one_of(st.none(), st.dictionaries(st.text(max_size=4), json_values, max_size=2)),
       st.binary(max_size=96))
def test_fuzz_safetensors_structured_headers(tensors, metadata, data):
    header = dict(tensors)
    if metadata is not None:
        header["__metadata__"] = metadata
    check_safetensors_bytes(safetensors_blob(header, data))


@st.composite
def consistent_file_then_mutated(draw):
    """A valid file (random float/int dtypes and shapes) with a few bytes flipped, cut or appended."""
    names = draw(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=4, unique=True))
    header, data = {}, b""
    for name in names:
        dtype = draw(st.sampled_from(sorted(DTYPES)))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        n = DTYPES[dtype][0] * math.prod(shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += draw(st.binary(min_size=n, max_size=n))
    blob = bytearray(safetensors_blob(header, data))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "cut", "append"]))
        if kind == "flip" and blob:
            i = draw(st.integers(0, len(blob) - 1))
            blob[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del blob[draw(st.integers(0, len(blob))):]
        else:
            blob += draw(st.binary(min_size=1, max_size=8))
    return bytes(blob)


@FUZZ
@given(consistent_file_then_mutated())
def test_fuzz_safetensors_mutated_valid_files(blob):
    check_safetensors_bytes(blob)


# ---- config ----------------------------------------------------------------------------------------------------
FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
          "hidden_act", "layer_norm_eps", "image_size", "patch_size", "num_channels", "qkv_bias",
          "pooler_output_size", "pooler_act", "id2label", "label2id", "num_labels", "head_dim", "self")
plausible = st.one_of(st.integers(min_value=-2, max_value=70), st.sampled_from([2 ** 31, 10 ** 12, 2 ** 64]),
                      st.lists(st.integers(-1, 40), max_size=3), st.sampled_from(["gelu", "vit", "deit", "relu"]),
                      st.floats(), json_values)


def check_config(d):
    try:
        cfg = ViTConfig.from_dict(d)
    except ValueError:
        return
    # accepted: every invariant the model code relies on holds
    assert cfg.hidden_size % cfg.num_attention_heads == 0
    (ih, iw), (ph, pw) = cfg.image_hw, cfg.patch_hw
    assert 0 < ph <= ih and 0 < pw <= iw and cfg.num_patches >= 1
    assert cfg.num_hidden_layers >= 1 and cfg.intermediate_size >= 1 and cfg.num_channels >= 1
    assert isinstance(cfg.hidden_act_code, int) and isinstance(cfg.pooler_act_code, int)
    assert 0 < np.float32(cfg.layer_norm_eps) < np.inf
    assert sorted(cfg.id2label) == list(range(cfg.num_labels))
    assert ViTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # round trip


@FUZZ
@given(st.dictionaries(st.sampled_from(FIELDS), plausible, max_size=10))
def test_fuzz_config_fields(d):
    check_config(d)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_config_file_bytes(blob):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        f.write(blob)
        path = f.name
    try:
        ViTConfig.from_json_file(path)
    except ValueError as exc:
        assert path in str(exc)
    finally:
        os.remove(path)


# ---- pixel_values at a tiny model ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = write_checkpoint(tmp_path_factory.mktemp("fuzz") / "m", hidden_size=8, num_attention_heads=2,
                              intermediate_size=8, num_hidden_layers=1, image_size=8, patch_size=4)
    return vitc.ViTForImageClassification.from_pretrained(folder, threads=1)


@FUZZ
@given(shape=st.lists(st.integers(0, 13), min_size=0, max_size=5),
       dtype=st.sampled_from(["float32", "float64", "float16", "int32", "uint8", "bool", "complex64", "object"]),
       interpolate=st.booleans(), fill=st.sampled_from([0.0, 1.0, np.nan, np.inf, -1e39]))
def test_fuzz_pixel_values(tiny_model, shape, dtype, interpolate, fill):
    with np.errstate(all="ignore"):  # -1e39 overflows float32/float16 on purpose
        x = np.full(shape, fill if dtype.startswith(("float", "complex")) else 1).astype(dtype)
        try:
            out = tiny_model(x, interpolate_pos_encoding=interpolate)
        except (ValueError, TypeError):
            return
    assert out.logits.shape == (shape[0], 5) and out.logits.dtype == np.float32


# ---- regression corpus -----------------------------------------------------------------------------------------
def corpus(kind):
    folder = os.path.join(CORPUS, kind)
    return sorted(os.path.join(folder, n) for n in os.listdir(folder))


@pytest.mark.parametrize("path", corpus("safetensors"), ids=os.path.basename)
def test_corpus_safetensors(path):
    """Each once crashed or misreported a reader (see the README in fuzz_corpus); now a SafetensorsError."""
    with open(path, "rb") as f:
        assert check_safetensors_bytes(f.read()) == "refused"


@pytest.mark.parametrize("path", corpus("config"), ids=os.path.basename)
def test_corpus_config(path):
    with pytest.raises(ValueError) as info:
        ViTConfig.from_json_file(path)
    assert path in str(info.value)
