"""ViTImageProcessor: bit-for-bit against transformers' Pillow processors, input handling, errors, configs."""
import io
import json
import sys
import types

import numpy as np
import pytest
from PIL import Image

from vitc.image_processing import CONFIG_NAME, ImageLoadError, ViTImageProcessor

import transformers  # noqa: E402
from transformers import BitImageProcessorPil, DeiTImageProcessorPil, ViTImageProcessorPil  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

# preprocessor_config.json as found on the Hub, one per resize/crop style, with the transformers class to match.
CONFIGS = {
    # google/vit-base-patch16-224: the legacy feature-extractor form (int size, no rescale keys, no resample).
    "legacy_vit": (ViTImageProcessorPil, {
        "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": 224,
    }),
    # modern form; non-square size catches any height/width swap.
    "modern_vit": (ViTImageProcessorPil, {
        "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD, "image_processor_type": "ViTImageProcessor",
        "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"height": 160, "width": 192},
    }),
    # facebook/deit-*: resize to a square, then center crop.
    "deit_center_crop": (DeiTImageProcessorPil, {
        "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_normalize": True,
        "do_rescale": True, "do_resize": True, "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD,
        "image_processor_type": "DeiTImageProcessor", "resample": 3, "rescale_factor": 1 / 255,
        "size": {"height": 256, "width": 256},
    }),
    # facebook/dinov2-*: shortest edge, then center crop (BitImageProcessor).
    "bit_shortest_edge": (BitImageProcessorPil, {
        "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD, "image_processor_type": "BitImageProcessor", "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 256},
    }),
    # facebook/deit-base-patch16-224 as first published: feature-extractor form, int sizes, square resize.
    "legacy_deit_int_sizes": (DeiTImageProcessorPil, {
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "DeiTFeatureExtractor", "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD,
        "resample": 3, "size": 256,
    }),
    # legacy int sizes on a shortest-edge family: size 240 means the shortest edge, crop 224 a square.
    "legacy_bit_int_sizes": (BitImageProcessorPil, {
        "crop_size": 224, "do_center_crop": True, "image_processor_type": "BitImageProcessor", "size": 240,
    }),
}

# (height, width): degenerate, thin both ways, exact, down- and upsampling, odd crops.
SIZES = [(1, 1), (2, 3), (7, 300), (300, 7), (224, 224), (333, 500), (500, 333), (61, 90), (750, 1000)]


def noise_image(height, width, seed=0, channels=3):
    """Uniform noise: every resampling tap matters, so any filter/rounding difference shows."""
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed + 7919 * height + width).integers(0, 256, shape, dtype=np.uint8)


def gradient_image(height, width):
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], axis=-1)
    return rgb.astype(np.uint8)


def reference(cls, folder, images, **kwargs):
    return cls.from_pretrained(folder, **kwargs)(images, return_tensors="np")["pixel_values"]


@pytest.fixture(params=sorted(CONFIGS))
def config_case(request, tmp_path):
    cls, config = CONFIGS[request.param]
    (tmp_path / CONFIG_NAME).write_text(json.dumps(config))
    return cls, tmp_path


# ---- bit-for-bit against transformers ---------------------------------------------------------------------


def test_matches_transformers_bit_for_bit(config_case):
    cls, folder = config_case
    arrays = [noise_image(h, w) for h, w in SIZES] + [gradient_image(333, 500), gradient_image(20, 30)]
    want = reference(cls, folder, [Image.fromarray(a) for a in arrays])
    processor = ViTImageProcessor.from_pretrained(folder)
    got_pil = processor([Image.fromarray(a) for a in arrays], num_workers=2)["pixel_values"]
    got_np = processor(arrays, num_workers=1)["pixel_values"]
    assert got_pil.dtype == np.float32 and got_pil.flags.c_contiguous
    assert got_pil.shape == want.shape and want.shape[:2] == (len(arrays), 3)
    assert np.array_equal(got_pil, want)
    assert np.array_equal(got_np, want)


def test_matches_transformers_from_png_paths(config_case, tmp_path):
    cls, folder = config_case
    paths = []
    for i, (h, w) in enumerate([(1, 1), (300, 7), (500, 333)]):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(noise_image(h, w, seed=i)).save(paths[-1])
    assert np.array_equal(ViTImageProcessor.from_pretrained(folder)(paths)["pixel_values"],
                          reference(cls, folder, paths))


@pytest.mark.parametrize("resample", [0, 1, 2, 3, 4, 5])
def test_every_resample_filter(resample):
    images = [Image.fromarray(noise_image(h, w)) for h, w in [(7, 300), (500, 333), (61, 90)]]
    options = {"resample": resample, "size": {"height": 96, "width": 128}}
    want = ViTImageProcessorPil(**options)(images, return_tensors="np")["pixel_values"]
    assert np.array_equal(ViTImageProcessor(**options)(images)["pixel_values"], want)


@pytest.mark.parametrize("size", [
    {"shortest_edge": 100},
    {"shortest_edge": 100, "longest_edge": 150},
    {"shortest_edge": 100, "longest_edge": 1000},
    {"max_height": 120, "max_width": 90},
])
@pytest.mark.parametrize("hw", [(1, 1), (7, 300), (300, 7), (100, 100), (333, 500), (61, 90)])
def test_aspect_preserving_sizes_without_crop(size, hw):
    image = Image.fromarray(noise_image(*hw))
    want = ViTImageProcessorPil(size=size, resample=3)(image, return_tensors="np")["pixel_values"]
    got = ViTImageProcessor(size=size, resample=3)(image)["pixel_values"]
    assert got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.parametrize("resize, crop", [
    (None, {"height": 224, "width": 224}),  # no resize: small images are zero-padded by the crop
    ({"height": 200, "width": 181}, {"height": 224, "width": 224}),  # crop larger than the resized image
    ({"height": 230, "width": 240}, {"height": 223, "width": 97}),  # odd margins
])
def test_center_crop_with_padding(resize, crop):
    images = [Image.fromarray(noise_image(h, w)) for h, w in [(1, 1), (100, 300), (301, 150), (224, 224)]]
    options = {"do_resize": resize is not None, "crop_size": crop, "do_center_crop": True, "resample": 3}
    if resize is not None:
        options["size"] = resize
    for image in images:  # each separately: without a resize the uncropped sizes differ
        want = DeiTImageProcessorPil(**options)(image, return_tensors="np")["pixel_values"]
        assert np.array_equal(ViTImageProcessor(**options)(image)["pixel_values"], want)


@pytest.mark.parametrize("do_rescale, do_normalize", [(True, False), (False, True), (False, False)])
def test_rescale_and_normalize_switched_off(do_rescale, do_normalize):
    image = Image.fromarray(noise_image(50, 70))
    options = {"do_rescale": do_rescale, "do_normalize": do_normalize, "image_mean": IMAGENET_MEAN,
               "image_std": IMAGENET_STD, "rescale_factor": 1 / 127.5}
    want = ViTImageProcessorPil(**options)(image, return_tensors="np")["pixel_values"]
    got = ViTImageProcessor(**options)(image)["pixel_values"]
    assert got.dtype == np.float32 and np.array_equal(got, want)  # transformers gives uint8 with both off


def test_all_256_values_exactly_as_transformers_per_channel():
    # A 256x3 image holding every value in every channel, no resize: pins the rescale/normalize table itself.
    values = np.stack([np.arange(256, dtype=np.uint8)] * 3, axis=-1)[None].repeat(3, axis=0)
    values[1] = values[1, ::-1]
    options = {"do_resize": False, "image_mean": [0.1, 0.7, 0.45], "image_std": [0.3, 0.01, 1.7]}
    want = ViTImageProcessorPil(**options)(Image.fromarray(values), return_tensors="np")["pixel_values"]
    assert np.array_equal(ViTImageProcessor(**options)(values)["pixel_values"], want)


# ---- image modes, EXIF, numpy layouts ----------------------------------------------------------------------


def _pil_modes():
    rgba = noise_image(45, 67, channels=4)
    rgba[:10, :, 3] = 0
    palette = Image.fromarray(noise_image(45, 67)).quantize(colors=16)
    palette_transparent = palette.copy()
    palette_transparent.info["transparency"] = 3
    return {
        "L": Image.fromarray(noise_image(45, 67, channels=1), "L"),
        "LA": Image.fromarray(rgba[:, :, 2:], "LA"),
        "RGBA": Image.fromarray(rgba, "RGBA"),
        "P": palette,
        "P+transparency": palette_transparent,
        "1": Image.fromarray(noise_image(45, 67, channels=1) > 127),
    }


@pytest.mark.parametrize("mode", sorted(_pil_modes()))
def test_modes_match_transformers_convert_to_rgb(mode):
    # transformers composites alpha on white too, but only when do_convert_rgb is on; compare with it on.
    image = _pil_modes()[mode]
    want = ViTImageProcessorPil(do_convert_rgb=True, resample=3)(image, return_tensors="np")["pixel_values"]
    assert np.array_equal(ViTImageProcessor(resample=3)(image)["pixel_values"], want)


def test_alpha_is_composited_on_white():
    pixels = np.zeros((4, 5, 4), dtype=np.uint8)  # fully transparent black
    pixels[0, 0] = (10, 20, 30, 255)  # one opaque pixel
    out = ViTImageProcessor(do_resize=False, do_rescale=False, do_normalize=False)(pixels)["pixel_values"][0]
    assert np.array_equal(out[:, 0, 0], [10, 20, 30])
    assert np.all(out.reshape(3, -1)[:, 1:] == 255)


def test_cmyk_and_16_bit_become_rgb():
    rgb = noise_image(33, 47)
    cmyk = Image.fromarray(rgb).convert("CMYK")
    want = ViTImageProcessorPil()(cmyk.convert("RGB"), return_tensors="np")["pixel_values"]
    assert np.array_equal(ViTImageProcessor()(cmyk)["pixel_values"], want)

    deep = np.random.default_rng(1).integers(0, 65536, (33, 47), dtype=np.uint16)
    as_8bit = Image.fromarray(((deep.astype(np.int64) + 128) // 257).astype(np.uint8), "L")
    want = ViTImageProcessorPil(do_convert_rgb=True)(as_8bit, return_tensors="np")["pixel_values"]
    buffer = io.BytesIO()
    Image.fromarray(deep).save(buffer, "PNG")  # a 16-bit grayscale PNG opens as I;16
    for image in (Image.fromarray(deep), Image.fromarray(deep.astype(np.int32)), Image.open(buffer)):
        assert image.mode in ("I;16", "I")
        assert np.array_equal(ViTImageProcessor()(image)["pixel_values"], want)
    assert as_8bit.getextrema() != (255, 255)  # not clipped to white, which Pillow's convert("RGB") would do


def test_exif_orientation_applied(tmp_path):
    stored = gradient_image(40, 80)  # as stored in the file: 40 rows, 80 columns
    stored[:10, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise -> upright image is 80 x 40
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())

    no_resize = ViTImageProcessor(do_resize=False)
    upright = no_resize(path)["pixel_values"]
    assert upright.shape == (1, 3, 80, 40)
    assert np.array_equal(no_resize(Image.open(path))["pixel_values"], upright)  # PIL input: applied too
    decoded = np.asarray(Image.open(path))  # pixels as stored, orientation ignored
    assert np.array_equal(no_resize(np.rot90(decoded, k=-1))["pixel_values"], upright)
    # transformers' load_image also applies EXIF orientation to paths: identical to it.
    want = ViTImageProcessorPil()(str(path), return_tensors="np")["pixel_values"]
    assert np.array_equal(ViTImageProcessor()(path)["pixel_values"], want)


def test_grayscale_and_numpy_layouts():
    gray = noise_image(37, 53, channels=1)
    want = ViTImageProcessorPil(do_convert_rgb=True)(Image.fromarray(gray).convert("RGB"),
                                                     return_tensors="np")["pixel_values"]
    processor = ViTImageProcessor()
    for variant in (gray, gray[:, :, None], np.repeat(gray[:, :, None], 3, axis=2), Image.fromarray(gray)):
        assert np.array_equal(processor(variant)["pixel_values"], want)
    wide = noise_image(37, 106)
    strided = wide[:, ::2]  # not contiguous
    want = ViTImageProcessorPil()(Image.fromarray(np.ascontiguousarray(strided)), return_tensors="np")["pixel_values"]
    assert np.array_equal(processor(strided)["pixel_values"], want)


def test_mixed_list_and_batch_array(tmp_path):
    arrays = [noise_image(30 + i, 50 - i, seed=i) for i in range(4)]
    path = tmp_path / "a.png"
    Image.fromarray(arrays[0]).save(path)
    processor = ViTImageProcessor(size={"height": 32, "width": 24})
    mixed = processor([path, str(path), Image.fromarray(arrays[1]), arrays[2], arrays[3]])["pixel_values"]
    singles = [processor(a)["pixel_values"][0] for a in (arrays[0], arrays[0], arrays[1], arrays[2], arrays[3])]
    assert mixed.shape == (5, 3, 32, 24) and np.array_equal(mixed, np.stack(singles))
    batch = np.stack([noise_image(30, 50, seed=i) for i in range(3)])  # (N, H, W, C)
    assert processor(batch)["pixel_values"].shape == (3, 3, 32, 24)


def test_threads_do_not_change_results():
    images = [noise_image(h, w) for h, w in SIZES]
    processor = ViTImageProcessor(resample=1)
    one = processor(images, num_workers=1)["pixel_values"]
    assert np.array_equal(processor(images, num_workers=2)["pixel_values"], one)
    assert np.array_equal(ViTImageProcessor(num_workers=3, resample=1)(images)["pixel_values"], one)


def test_same_lazily_opened_image_twice_with_threads(tmp_path):
    path = tmp_path / "a.jpg"
    Image.fromarray(noise_image(300, 200)).save(path)
    want = ViTImageProcessor()(path)["pixel_values"][0]
    lazy = Image.open(path)  # not decoded yet: each thread would otherwise call load() on the same object
    out = ViTImageProcessor()([lazy] * 4 + [Image.open(path)], num_workers=2)["pixel_values"]
    assert all(np.array_equal(o, want) for o in out)


def test_batch_feature_and_overrides():
    processor = ViTImageProcessor()
    out = processor.preprocess(noise_image(10, 10), size={"height": 16, "width": 8})
    assert out.pixel_values is out["pixel_values"] and out["pixel_values"].shape == (1, 3, 16, 8)
    assert processor.size == {"height": 224, "width": 224}  # the override was for that call only
    assert processor(noise_image(10, 10), return_tensors=None)["pixel_values"].shape == (1, 3, 224, 224)


# ---- errors --------------------------------------------------------------------------------------------


def _bad_files(tmp_path):
    good = io.BytesIO()
    Image.fromarray(noise_image(64, 64)).save(good, "JPEG")
    files = {
        "missing": (tmp_path / "does_not_exist.jpg", "not found"),
        "directory": (tmp_path, "directory"),
        "empty": (tmp_path / "empty.jpg", "empty"),
        "not_an_image": (tmp_path / "notes.png", "not an image"),
        "truncated": (tmp_path / "truncated.jpg", "truncated"),
    }
    files["empty"][0].write_bytes(b"")
    files["not_an_image"][0].write_text("hello, I am text")
    files["truncated"][0].write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    return files


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "not_an_image", "truncated"])
def test_bad_files_raise_image_load_error_naming_the_file(tmp_path, case):
    path, words = _bad_files(tmp_path)[case]
    with pytest.raises(ImageLoadError, match=words) as info:
        ViTImageProcessor()(path)
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)


def test_bad_file_in_a_threaded_list_names_it(tmp_path):
    path, _ = _bad_files(tmp_path)["truncated"]
    with pytest.raises(ImageLoadError, match=r"image 2: .*truncated\.jpg"):
        ViTImageProcessor()([noise_image(9, 9), noise_image(9, 9), path, noise_image(9, 9)], num_workers=2)


def test_decompression_bomb_limit_is_kept(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(noise_image(64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2 x 1000: Pillow's error threshold
    with pytest.raises(ImageLoadError, match="decompression-bomb") as info:
        ViTImageProcessor()(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("array, words", [
    (np.zeros((8, 8, 3), np.float32), "uint8.*got dtype float32"),
    (np.zeros((8, 8, 3), np.uint16), "uint8.*got dtype uint16"),
    (np.zeros((3, 8, 8), np.uint8), r"got shape \(3, 8, 8\).*channels-first"),
    (np.zeros((8, 8, 2), np.uint8), r"got shape \(8, 8, 2\)"),
    (np.zeros((8,), np.uint8), r"got shape \(8,\)"),
    (np.zeros((0, 8, 3), np.uint8), r"height and width >= 1"),
])
def test_bad_arrays_say_expected_and_got(array, words):
    with pytest.raises(ValueError, match=words):
        ViTImageProcessor()(array)


def test_bad_inputs():
    with pytest.raises(TypeError, match="got builtins.int"):
        ViTImageProcessor()(42)
    with pytest.raises(ValueError, match="empty list"):
        ViTImageProcessor()([])
    with pytest.raises(ValueError, match="empty list"):
        ViTImageProcessor()(np.zeros((0, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="return_tensors"):
        ViTImageProcessor()(noise_image(4, 4), return_tensors="pt")
    with pytest.raises(ValueError, match="different shapes"):
        ViTImageProcessor(size={"shortest_edge": 8})([noise_image(4, 4), noise_image(4, 8)])


@pytest.mark.parametrize("options, error, words", [
    ({"size": {"height": 224}}, ValueError, "key sets"),
    ({"size": {"height": 0, "width": 4}}, ValueError, "positive int"),
    ({"resample": 9}, ValueError, "filter codes"),
    ({"image_mean": [0.5, 0.5]}, ValueError, "3 values"),
    ({"do_center_crop": True}, ValueError, "crop_size"),
    ({"rescale_factor": "1/255"}, ValueError, "finite number"),
    ({"do_resize": "yes"}, ValueError, "true or false"),
    ({"sizee": 224}, TypeError, "unknown"),
    ({"num_workers": 0}, ValueError, "positive int"),
])
def test_bad_options(options, error, words):
    with pytest.raises(error, match=words):
        ViTImageProcessor(**options)


@pytest.mark.parametrize("config", [{"do_pad": True}, {"crop_pct": 0.875}, {"do_flip_channel_order": True}])
def test_unsupported_pixel_changing_options_are_refused(config):
    with pytest.raises(ValueError, match="not supported"):
        ViTImageProcessor.from_dict(config)


# ---- configs: files, Hub, round trips ----------------------------------------------------------------------


def test_folder_without_config_gets_vit_defaults(tmp_path):
    processor = ViTImageProcessor.from_pretrained(tmp_path)
    assert processor.to_dict() == ViTImageProcessor().to_dict()
    assert processor.size == {"height": 224, "width": 224} and processor.resample == 2
    assert processor.image_mean == processor.image_std == (0.5, 0.5, 0.5)
    image = Image.fromarray(noise_image(100, 150))
    assert np.array_equal(processor(image)["pixel_values"],
                          ViTImageProcessorPil()(image, return_tensors="np")["pixel_values"])


def test_config_file_path_and_missing_path(tmp_path):
    path = tmp_path / CONFIG_NAME
    path.write_text(json.dumps(CONFIGS["deit_center_crop"][1]))
    assert ViTImageProcessor.from_pretrained(path).crop_size == {"height": 224, "width": 224}
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        ViTImageProcessor.from_pretrained(str(tmp_path / "nope" / "deeper" / "model"))
    path.write_text("{not json")
    with pytest.raises(ValueError, match="could not read"):
        ViTImageProcessor.from_pretrained(tmp_path)


def test_round_trip_and_transformers_reads_our_config(tmp_path):
    _, config = CONFIGS["bit_shortest_edge"]
    processor = ViTImageProcessor.from_dict(config)
    assert ViTImageProcessor.from_dict(processor.to_dict()).to_dict() == processor.to_dict()
    folder = tmp_path / "saved"
    processor.save_pretrained(folder)
    assert ViTImageProcessor.from_pretrained(folder).to_dict() == processor.to_dict()
    image = Image.fromarray(noise_image(300, 200))
    want = BitImageProcessorPil.from_pretrained(folder)(image, return_tensors="np")["pixel_values"]
    assert np.array_equal(processor(image)["pixel_values"], want)
    assert ViTImageProcessor.from_pretrained(folder, size={"height": 8, "width": 8}).size == {"height": 8, "width": 8}


def _fake_hub(monkeypatch, behaviour):
    calls = []

    def cached_file(repo_id, filename, revision, cache_dir, token):
        calls.append((repo_id, filename, revision, cache_dir, token))
        return behaviour()

    monkeypatch.setitem(sys.modules, "vitc.hub", types.SimpleNamespace(cached_file=cached_file))
    return calls


def test_hub_repo_id_goes_through_vitc_hub(tmp_path, monkeypatch):
    path = tmp_path / CONFIG_NAME
    path.write_text(json.dumps(CONFIGS["legacy_vit"][1]))
    calls = _fake_hub(monkeypatch, lambda: str(path))
    processor = ViTImageProcessor.from_pretrained("google/vit-base-patch16-224", revision="main",
                                                  cache_dir="/tmp/c", token="t")
    assert calls == [("google/vit-base-patch16-224", CONFIG_NAME, "main", "/tmp/c", "t")]
    assert processor.size == {"height": 224, "width": 224}


def test_hub_repo_without_the_file_gets_defaults_but_offline_misses_raise(monkeypatch):
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    def missing():
        raise EntryNotFoundError("404")

    _fake_hub(monkeypatch, missing)
    assert ViTImageProcessor.from_pretrained("org/model").to_dict() == ViTImageProcessor().to_dict()
    _fake_hub(monkeypatch, lambda: None)
    assert ViTImageProcessor.from_pretrained("org/model").to_dict() == ViTImageProcessor().to_dict()

    def offline():
        raise LocalEntryNotFoundError("offline and not cached")

    _fake_hub(monkeypatch, offline)
    with pytest.raises(LocalEntryNotFoundError):
        ViTImageProcessor.from_pretrained("org/model")
