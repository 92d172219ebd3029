"""The wire formats alone (no server): float32 arrays written as JSON text exactly and fast, and what cannot
be JSON refused rather than written as invalid JSON."""
import json

import numpy as np
import pytest

from vitc.serve import codec


def awkward_float32():
    rng = np.random.default_rng(0)
    special = np.float32([0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 1.17549435e-38, 3.4028235e38, -3.4028235e38,
                          1 / 3, 0.1, 123456789.0, 1e-7, 16777217.0])
    bits = rng.integers(0, 2 ** 32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    return np.concatenate([special, rng.standard_normal(5000).astype(np.float32), bits[np.isfinite(bits)]])


@pytest.mark.parametrize("negative_zero", [False, True])
def test_float32_arrays_round_trip_bit_exactly(negative_zero):
    values = awkward_float32()
    values = values if negative_zero else values[~((values == 0) & np.signbit(values))]
    text = codec.to_json(values)
    back = np.asarray(json.loads(text), dtype=np.float64).astype(np.float32)
    np.testing.assert_array_equal(back.view(np.uint32), values.view(np.uint32))  # denormals, extremes, -0.0


def test_nested_values_match_json_dumps():
    row = np.float32([0.5, -2.25, 3.0])
    value = {"object": "list", "data": [{"index": 0, "embedding": row, "ok": True, "none": None}],
             "model": 'quo"te\u00e9', "usage": {"n": 1, "f": 0.125}, "empty": np.zeros(0, np.float32)}
    plain = dict(value, data=[dict(value["data"][0], embedding=row.tolist())], empty=[])
    assert json.loads(codec.to_json(value)) == plain
    strided = np.float32([[1.5, 2.5], [3.5, 4.5]])[:, 0]  # not C-contiguous: orjson leaves it to `default`
    assert json.loads(codec.to_json({"e": strided})) == {"e": [1.5, 3.5]}
    with_nulls = {"id": "null", "none": None, "data": [np.float32([0.5, 1.0]), 2.5]}  # checked, and fine
    assert json.loads(codec.to_json(with_nulls)) == {"id": "null", "none": None, "data": [[0.5, 1.0], 2.5]}


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_values_are_refused(bad):
    with pytest.raises(ValueError, match="not JSON compliant"):
        codec.to_json({"embedding": np.float32([1.0, bad])})
    with pytest.raises(ValueError, match="not JSON compliant"):
        codec.to_json({"score": float(bad)})
    with pytest.raises(ValueError, match="not JSON compliant"):
        codec.to_json([{"score": np.float32(bad)}])
