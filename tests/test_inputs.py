"""Boundary 3, pixel_values at run time: rank, channels, dtypes, strides, read-only memory, empty batches,
NaN/Inf (confined to their image), sizes not divisible by the patch, and huge batches (MemoryError before any
allocation). The dtype policy (docs/robustness.md): float16/float64/ints/uints are converted to float32;
bool, complex, object and strings are refused with a TypeError."""
import os
import re
import sys
import tracemalloc

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from robust_helpers import image_batch, write_checkpoint  # noqa: E402

import vitc  # noqa: E402
from vitc import guards  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("inputs") / "m", seed=1)


@pytest.fixture(scope="module")
def model(folder):
    return vitc.ViTForImageClassification.from_pretrained(folder, threads=1)


@pytest.fixture(scope="module")
def encoder(folder):
    return vitc.ViTModel.from_pretrained(folder, threads=1)


@pytest.fixture(scope="module")
def x(model):
    return image_batch(model.config, 3, seed=2)


# ---- shapes -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,error,words", [
    ((16, 16), ValueError, r"must be 4-D \[batch, channels, height, width\], got 2-D shape \(16, 16\)"),
    ((3, 16, 16), ValueError, r"got 3-D shape \(3, 16, 16\) \(add a batch axis: x\[None\]\)"),
    ((1, 1, 3, 16, 16), ValueError, "got 5-D"),
    ((), ValueError, "got 0-D"),
    ((2, 1, 16, 16), ValueError, r"has 1 channels, expected 3 \(config.num_channels\)"),
    ((2, 16, 16, 3), ValueError, r"has 16 channels, expected 3.*must be \[batch, channels, height, width\]"),
    ((0, 3, 16, 16), ValueError, "pixel_values has an empty batch"),
    ((1, 3, 16, 12), ValueError, r"Input image size \(16\*12\) doesn't match model \(16\*16\).*interpolate_pos"),
    ((1, 3, 0, 16), ValueError, "doesn't match model"),
])
def test_bad_shapes(model, shape, error, words):
    with pytest.raises(error, match=words):
        model(np.zeros(shape, np.float32))


@pytest.mark.parametrize("shape", [(1, 3, 3, 16), (1, 3, 16, 0), (1, 3, 0, 0)])
def test_smaller_than_a_patch_with_interpolation(model, shape):
    with pytest.raises(ValueError, match=r"is smaller than one patch \(4\*4\)"):
        model(np.zeros(shape, np.float32), interpolate_pos_encoding=True)


def test_sizes_not_divisible_by_the_patch_drop_the_remainder(model):
    """As transformers' Conv2d(stride = patch): rows/columns past the last whole patch are ignored, even NaN."""
    odd = np.full((2, 3, 18, 19), np.nan, np.float32)
    odd[:, :, :16, :16] = image_batch(model.config, 2, seed=3)
    # grid 4 x 4 in both; neither input is square, so the same position table is used
    np.testing.assert_array_equal(model(odd, interpolate_pos_encoding=True).logits,
                                  model(odd[:, :, :16, :17], interpolate_pos_encoding=True).logits)
    assert np.isfinite(model(odd, interpolate_pos_encoding=True).logits).all()


# ---- dtypes -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "float64", "longdouble", "int8", "int32", "int64", "uint8", "uint16"])
def test_real_dtypes_are_converted_to_float32(model, x, dtype):
    cast = (x * 10).astype(dtype)
    want = model(cast.astype(np.float32)).logits
    np.testing.assert_array_equal(model(cast).logits, want)


@pytest.mark.parametrize("dtype", ["bool", "complex64", "complex128", "object", "<U3", "S3", "datetime64[s]"])
def test_other_dtypes_are_refused(model, x, dtype):
    bad = np.zeros(x.shape, dtype=dtype)
    with pytest.raises(TypeError, match=re.escape(f"pixel_values must be a real-valued array, got dtype {np.dtype(dtype)}")):
        model(bad)


def test_lists_and_ragged_lists(model, x):
    np.testing.assert_array_equal(model(x.tolist()).logits, model(x).logits)
    with pytest.raises(ValueError):
        model([x[0].tolist(), x[1, :, :8].tolist()])


# ---- memory layouts -----------------------------------------------------------------------------------------
def layouts(x):
    flipped = np.ascontiguousarray(x[..., ::-1])
    wide = np.zeros((x.shape[0] * 2, x.shape[1], x.shape[2] + 5, x.shape[3] * 3), np.float32)
    wide[::2, :, 5:, ::3] = x
    read_only = x.copy()
    read_only.flags.writeable = False
    from_bytes = np.frombuffer(x.tobytes(), np.float32).reshape(x.shape)  # read-only memory
    return {
        "fortran": np.asfortranarray(x),
        "negative_stride": flipped[..., ::-1],
        "all_axes_reversed": np.ascontiguousarray(x[::-1, ::-1, ::-1, ::-1])[::-1, ::-1, ::-1, ::-1],
        "strided_view": wide[::2, :, 5:, ::3],
        "nhwc_transposed": np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
        "read_only": read_only,
        "read_only_bytes": from_bytes,
        "unaligned": np.frombuffer(b"\0" + x.tobytes(), np.float32, offset=1).reshape(x.shape),
    }


@pytest.mark.parametrize("layout", ["fortran", "negative_stride", "all_axes_reversed", "strided_view",
                                    "nhwc_transposed", "read_only", "read_only_bytes", "unaligned"])
def test_any_memory_layout_gives_the_same_result(model, encoder, x, layout):
    view = layouts(x)[layout]
    np.testing.assert_array_equal(view, x)
    snapshot = view.copy()
    np.testing.assert_array_equal(model(view).logits, model(x).logits)
    np.testing.assert_array_equal(encoder(view).last_hidden_state, encoder(x).last_hidden_state)
    np.testing.assert_array_equal(view, snapshot)  # the input is never written


def test_broadcast_zero_stride_batch(model, x):
    same = np.broadcast_to(x[:1], (4, *x.shape[1:]))
    logits = model(same).logits
    for i in range(4):
        np.testing.assert_array_equal(logits[i], logits[0])


# ---- NaN / Inf ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 3e38])
@pytest.mark.parametrize("where", ["one_pixel", "whole_image"])
def test_nonfinite_pixels_stay_in_their_image(model, encoder, x, value, where):
    bad = x.copy()
    if where == "one_pixel":
        bad[1, 2, 7, 9] = value
    else:
        bad[1] = value
    clean = model(x, output_hidden_states=True, output_attentions=True)
    with np.errstate(all="ignore"):
        out = model(bad, output_hidden_states=True, output_attentions=True)
    for i in (0, 2):  # the other images: bit for bit what they were in a clean batch
        np.testing.assert_array_equal(out.logits[i], clean.logits[i])
        for got, want in zip(out.hidden_states + out.attentions, clean.hidden_states + clean.attentions):
            np.testing.assert_array_equal(got[i], want[i])
    if value == 3e38:  # finite but huge: overflows inside the image (inf - inf), still confined to it
        assert not np.array_equal(out.logits[1], clean.logits[1])
    else:
        assert np.isnan(out.logits[1]).all()
    enc_clean = encoder(x).last_hidden_state
    with np.errstate(all="ignore"):
        enc = encoder(bad).last_hidden_state
    np.testing.assert_array_equal(enc[[0, 2]], enc_clean[[0, 2]])


def test_float64_beyond_float32_range_becomes_inf_and_stays_in_its_image(model, x):
    bad = x.astype(np.float64)
    bad[0, 0, 0, 0] = 1e300
    with np.errstate(over="ignore"):
        logits = model(bad).logits
    assert np.isnan(logits[0]).all()
    np.testing.assert_array_equal(logits[1:], model(x).logits[1:])


# ---- huge batches -----------------------------------------------------------------------------------------------
def test_huge_batch_is_a_memory_error_before_allocating(model, encoder, x):
    """10 million images as a zero-stride view (no memory): refused at once, naming the batch and the bytes."""
    huge = np.broadcast_to(x[:1], (10_000_000, *x.shape[1:]))
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=r"batch 10000000 of 3x16x16 float32 images needs about [\d.]+ GiB "
                                              r"\(\d+ bytes\).*is available: split the batch"):
            model(huge)
        with pytest.raises(MemoryError, match="batch 10000000"):
            encoder(huge, output_hidden_states=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2 ** 20  # nothing big was allocated on the way to the error


def test_memory_guard_counts_requested_outputs(model, x, monkeypatch):
    cfg = model.config
    plain = guards.forward_bytes(cfg, 1, x.shape, 1, input_copy=False)
    full = guards.forward_bytes(cfg, 1, x.shape, 1, hidden_states=True, attentions=True, input_copy=False)
    assert full > plain
    fresh = vitc.ViTForImageClassification.from_pretrained(model.name_or_path, threads=1)
    monkeypatch.setattr(guards, "available_memory_bytes", lambda: (plain + full) // 2)
    with pytest.raises(MemoryError, match="with hidden_states and attentions needs about"):
        fresh(x, output_hidden_states=True, output_attentions=True)
    fresh(x)  # fits
    monkeypatch.setattr(guards, "available_memory_bytes", lambda: None)  # unknown: no guard
    fresh(x, output_hidden_states=True, output_attentions=True)


def test_memory_estimate_covers_what_a_call_allocates(folder, x):
    """The guard's estimate is an upper bound of the call's peak allocations, and not wildly above it."""
    for cls, kwargs in ((vitc.ViTForImageClassification, {}),
                        (vitc.ViTModel, dict(output_hidden_states=True, output_attentions=True))):
        m = cls.from_pretrained(folder, threads=1)
        batch = np.asfortranarray(np.concatenate([x] * 4))  # not contiguous: the float32 copy counts too
        tracemalloc.start()
        try:
            m(batch, **kwargs)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        estimate = guards.forward_bytes(m.config, 1, batch.shape, 1, hidden_states=bool(kwargs),
                                        attentions=bool(kwargs))
        assert 0.5 * estimate <= peak <= estimate + 64 * 1024, (cls.__name__, peak, estimate)


def test_available_memory_is_sane():
    avail = guards.available_memory_bytes()
    assert avail is None or 0 <= avail <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
