"""ViTImageProcessor: turn images into the float32 [N, 3, H, W] pixel_values a ViT takes, without torch.

Output is bit-identical to transformers' Pillow backend (ViTImageProcessorPil, DeiTImageProcessorPil,
BitImageProcessorPil, ...) for the same RGB image and config, because every step is done the same way:
  1. resize with Pillow (the configured resample filter, reducing_gap=None) to the size the config asks for;
  2. center crop (zero padding where the image is smaller than the crop), still in uint8;
  3. rescale in float64 (x * rescale_factor), cast to float32; then normalize in float32: (x - mean) / std.
Step 3 depends only on (channel, uint8 value), so it is evaluated once for the 3 x 256 possible inputs, with
the very same numpy operations transformers uses, into a lookup table; each image is then a table gather
written straight into a preallocated output. Same bits, and no float64 temporaries per image.

Inputs: paths, PIL images, numpy uint8 HWC/HW arrays, or a list of them (mixed). Unlike transformers, EXIF
orientation is applied, transparency is composited on white and 16-bit/CMYK/palette/grayscale images become
RGB (see vitc.image_io). Decode + resize run on a thread pool (Pillow releases the GIL there).
"""
import json
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from .image_io import ImageLoadError, load_image
from .outputs import BatchFeature

__all__ = ["ViTImageProcessor", "CLIPImageProcessorPil", "SiglipImageProcessorPil", "BitImageProcessorPil",
           "BatchFeature", "ImageLoadError", "CONFIG_NAME"]

CONFIG_NAME = "preprocessor_config.json"

# ViT defaults (transformers ViTImageProcessor): what a model folder without preprocessor_config.json gets.
_DEFAULTS = {
    "do_resize": True,
    "size": {"height": 224, "width": 224},
    "resample": int(Image.Resampling.BILINEAR),
    "do_center_crop": False,
    "crop_size": None,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": (0.5, 0.5, 0.5),
    "image_std": (0.5, 0.5, 0.5),
    "do_convert_rgb": True,
    "default_to_square": True,
}
_OPTION_NAMES = tuple(_DEFAULTS)

# Class defaults of other transformers processors that ViT-style models use (DINOv2 uses Bit's): what a
# config naming that image_processor_type gets for the keys it leaves out, as transformers would give it.
_CLIP_MEAN, _CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
_SQUARE_224 = {"height": 224, "width": 224}
_FAMILY_DEFAULTS = {
    "DeiT": {"resample": 3, "size": {"height": 256, "width": 256}, "do_center_crop": True, "crop_size": _SQUARE_224},
    "Beit": {"resample": 3, "crop_size": _SQUARE_224},
    "Bit": {"resample": 3, "size": {"shortest_edge": 224}, "default_to_square": False, "do_center_crop": True,
            "crop_size": _SQUARE_224, "image_mean": _CLIP_MEAN, "image_std": _CLIP_STD},
}
_FAMILY_DEFAULTS["CLIP"] = _FAMILY_DEFAULTS["Bit"]
_FAMILY_DEFAULTS["Siglip"] = {"resample": 3, "default_to_square": False}  # 224x224, mean = std = 0.5 as ViT

# Options some processors have that change the pixels in ways this class does not implement: refuse them
# rather than silently produce different inputs. Value = the setting that means "off".
_UNSUPPORTED_OPTIONS = {"do_pad": False, "crop_pct": None, "do_flip_channel_order": False}

_SIZE_KEY_SETS = (
    {"height", "width"},
    {"shortest_edge"},
    {"shortest_edge", "longest_edge"},
    {"max_height", "max_width"},
)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ViTImageProcessor:
    """Image preprocessing for ViT-family models, bit-identical to transformers' Pillow image processors.

    Options (the preprocessor_config.json keys; legacy and modern forms both accepted):
        do_resize, size ({"height", "width"} | {"shortest_edge"} | {"shortest_edge", "longest_edge"} |
        {"max_height", "max_width"} | an int: a square, or the shortest edge if default_to_square is False),
        resample (Pillow filter code: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming),
        do_center_crop, crop_size, do_rescale, rescale_factor, do_normalize, image_mean, image_std,
        do_convert_rgb (images always become RGB here: the model takes 3 channels; kept for round trips).
    num_workers: threads that decode and resize a list of images; None = vitc.get_num_threads().

    Images: a path (str / os.PathLike), a PIL.Image.Image, a uint8 numpy array (H, W, 3|4|1) or (H, W), a
    (N, H, W, C) uint8 array, or a list/tuple mixing them. Beyond transformers:
      - EXIF orientation is applied (ImageOps.exif_transpose), to files and PIL images;
      - alpha (RGBA, LA, PA, palette or grayscale with transparency) is composited on WHITE;
      - grayscale, palette, CMYK, 1-bit, 16-bit (I;16, I: scaled by 1/257) and float images become RGB.
    A file that is missing, a directory, empty, truncated, corrupt or over Pillow's decompression-bomb limit
    raises ImageLoadError (a ValueError) naming it. Without rescale and normalize the output is still float32
    (transformers would return the uint8 values).
    """

    # transformers class this one reproduces: its name goes into saved configs, its defaults fill the options
    # a config leaves out (None: ViTImageProcessor's own, the class named by the config's image_processor_type)
    _family_name = None

    def __init__(self, *, num_workers=None, **options):
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise TypeError(f"unknown ViTImageProcessor option(s) {unknown}; expected some of {list(_OPTION_NAMES)}")
        self.num_workers = _check_workers(num_workers)
        resolved = _resolve_options({**self._defaults(), **{k: v for k, v in options.items() if v is not None}})
        for name, value in resolved.items():
            setattr(self, name, value)

    # ---- construction -------------------------------------------------------------------------------

    @classmethod
    def _defaults(cls, family=None):
        return {**_DEFAULTS, **_FAMILY_DEFAULTS.get(cls._family_name or family, {})}

    @classmethod
    def from_dict(cls, config, **overrides):
        """Build from a preprocessor_config.json dict (legacy or modern); keyword overrides win.

        Keys left out (or null) take the defaults of the transformers class named by image_processor_type /
        feature_extractor_type (ViT, DeiT, Beit, Bit, CLIP, Siglip; ViT's for any other), as transformers does;
        on a family class (CLIPImageProcessorPil, ...) those of that class, as transformers' from_dict does.
        """
        if not isinstance(config, dict):
            raise TypeError(f"expected a dict of preprocessing options, got {type(config).__name__}")
        for name, off in _UNSUPPORTED_OPTIONS.items():
            value = config.get(name, off)
            if value is not None and value != off:
                raise ValueError(f"preprocessing option {name}={value!r} is not supported by vitc.{cls.__name__}")
        options = cls._defaults(_family(config))
        options.update({k: config[k] for k in _OPTION_NAMES if config.get(k) is not None})
        options.update(overrides)
        return cls(**options)

    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, token=None, **overrides):
        """Read preprocessor_config.json from a model folder, a JSON file or a Hub repo id.

        A folder (or repo) without the file gets ViT defaults: 224x224 bilinear, rescale 1/255, mean=std=0.5.
        """
        config_file = _find_config_file(path_or_repo_id, revision, cache_dir, token)
        if config_file is None:
            return cls(**overrides)
        try:
            with open(config_file, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError) as err:
            raise ValueError(f"could not read image processor config {config_file!r}: {err}") from err
        return cls.from_dict(config, **overrides)

    def to_dict(self):
        """The options as a modern preprocessor_config.json dict (from_dict(to_dict()) round-trips)."""
        config = {"image_processor_type": f"{self._family_name or 'ViT'}ImageProcessor"}
        for name in _OPTION_NAMES:
            if name == "default_to_square":
                continue  # only meaningful for an int size, which is already resolved into `size`
            value = getattr(self, name)
            if isinstance(value, dict):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            config[name] = value
        return config

    def to_json_string(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, folder):
        """Write preprocessor_config.json into folder (created if needed); returns the file path."""
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, CONFIG_NAME)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json_string())
        return path

    def __repr__(self):
        return f"{type(self).__name__} {self.to_json_string()}"

    # ---- preprocessing ------------------------------------------------------------------------------

    def __call__(self, images, return_tensors="np", num_workers=None, **options):
        return self.preprocess(images, return_tensors=return_tensors, num_workers=num_workers, **options)

    def preprocess(self, images, return_tensors="np", num_workers=None, **options):
        """Preprocess one image or a list; returns BatchFeature(pixel_values=float32 [N, 3, H, W]).

        options: per-call overrides of the processor's options (same names as the constructor's).
        """
        if return_tensors not in (None, "np"):
            raise ValueError(f"return_tensors must be 'np' or None (vitc returns numpy arrays), got {return_tensors!r}")
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise TypeError(f"unknown preprocessing option(s) {unknown}; expected some of {list(_OPTION_NAMES)}")
        current = {name: getattr(self, name) for name in _OPTION_NAMES}
        plan = _Plan(_resolve_options({**current, **{k: v for k, v in options.items() if v is not None}}))
        sources = _as_list(images)
        workers = _check_workers(num_workers) or self.num_workers or _default_workers()
        return BatchFeature(pixel_values=plan.run(sources, min(workers, len(sources))))


class CLIPImageProcessorPil(ViTImageProcessor):
    """transformers' CLIPImageProcessorPil, bit for bit: shortest edge 224 (bicubic), center crop 224, CLIP mean/std.
    Options and inputs as ViTImageProcessor; a config's missing options take these defaults."""
    _family_name = "CLIP"


class SiglipImageProcessorPil(ViTImageProcessor):
    """transformers' SiglipImageProcessorPil, bit for bit: straight resize to 224x224 (bicubic; SigLIP2 FixRes
    configs name bilinear), no crop, mean = std = 0.5. An int size means the shortest edge, as there."""
    _family_name = "Siglip"


class BitImageProcessorPil(ViTImageProcessor):
    """transformers' BitImageProcessorPil (DINOv2's), bit for bit: the CLIP defaults; DINOv2 configs name
    shortest edge 256, crop 224 and the ImageNet mean/std."""
    _family_name = "Bit"


CLIPImageProcessor, SiglipImageProcessor, BitImageProcessor = (
    CLIPImageProcessorPil, SiglipImageProcessorPil, BitImageProcessorPil)  # transformers' names for their configs

# image_processor_type (without Fast/Pil) -> the vitc class that reproduces it
IMAGE_PROCESSOR_CLASSES = {"ViT": ViTImageProcessor, "DeiT": ViTImageProcessor, "Beit": ViTImageProcessor,
                           "CLIP": CLIPImageProcessorPil, "Siglip": SiglipImageProcessorPil,
                           "Bit": BitImageProcessorPil}


class _Plan:
    """Resolved options for one call: output size, per-image steps and the rescale/normalize table."""

    def __init__(self, opts):
        self.opts = opts
        self.table = _value_table(opts)  # float32 [3, 256]: output value per (channel, uint8 input)
        if opts["do_center_crop"]:
            self.fixed_hw = (opts["crop_size"]["height"], opts["crop_size"]["width"])
        elif opts["do_resize"] and "height" in opts["size"]:
            self.fixed_hw = (opts["size"]["height"], opts["size"]["width"])
        else:
            self.fixed_hw = None  # depends on each image's size

    def run(self, sources, workers):
        count = len(sources)
        out = None if self.fixed_hw is None else np.empty((count, 3) + self.fixed_hw, dtype=np.float32)

        def one(index):
            try:
                pixels = self.pixels_uint8(sources[index])
            except (ValueError, TypeError) as err:
                if count == 1 or type(err) not in (ValueError, TypeError, ImageLoadError):
                    raise
                raise type(err)(f"image {index}: {err}") from err  # say which image of the list
            target = out[index] if out is not None else np.empty((3,) + pixels.shape[:2], dtype=np.float32)
            _gather(self.table, pixels, target)
            return target

        if workers <= 1:
            results = [one(i) for i in range(count)]
        else:
            _load_shared_pil_images(sources)
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitc-image")
            try:
                results = list(pool.map(one, range(count)))
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        if out is not None:
            return out
        shapes = sorted({r.shape for r in results})
        if len(shapes) > 1:
            raise ValueError(
                f"images were resized to different shapes {shapes[:4]} and cannot be stacked into one array: "
                "use a fixed size {'height', 'width'} or do_center_crop with a crop_size"
            )
        return np.stack(results)

    def pixels_uint8(self, source):
        """Decode, resize and crop one image: uint8 [H, W, 3] or grayscale [H, W]."""
        opts = self.opts
        image = load_image(source)
        if opts["do_resize"]:
            height, width = _resized_hw(image.height, image.width, opts["size"])
            if (width, height) != image.size:  # Pillow returns a plain copy for an equal size anyway
                image = image.resize((width, height), resample=opts["resample"])
        pixels = np.asarray(image)
        if opts["do_center_crop"]:
            pixels = _center_crop(pixels, opts["crop_size"]["height"], opts["crop_size"]["width"])
        return pixels


def _load_shared_pil_images(sources):
    """Decode, here, a lazily opened PIL image listed more than once: two threads must not load one object."""
    seen = set()
    for source in sources:
        if isinstance(source, Image.Image):
            if id(source) in seen:
                source.load()
            seen.add(id(source))


def _gather(table, pixels, out):
    """out[c] = table[c][pixels[..., c]] (grayscale: the one channel for all three). out is [3, H, W]."""
    for c in range(3):
        index = pixels if pixels.ndim == 2 else pixels[:, :, c]
        np.take(table[c], index, out=out[c], mode="clip")  # mode='clip': no buffered bounds check; uint8 is in range


def _value_table(opts):
    """The transformers PilBackend rescale + normalize, evaluated on every uint8 value of every channel."""
    values = np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 1, 256))  # a [C, H=1, W=256] image
    if opts["do_rescale"]:
        values = (values.astype(np.float64) * opts["rescale_factor"]).astype(np.float32)
    if opts["do_normalize"]:
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float32)
        mean = np.array(opts["image_mean"], dtype=values.dtype)
        std = np.array(opts["image_std"], dtype=values.dtype)
        values = ((values.T - mean) / std).T
    return np.ascontiguousarray(values.reshape(3, 256), dtype=np.float32)


def _resized_hw(height, width, size):
    """Target (height, width) for an image of this size, the way transformers' PilBackend.resize computes it."""
    if "shortest_edge" in size and "longest_edge" in size:
        return _shortest_longest_hw(height, width, size["shortest_edge"], size["longest_edge"])
    if "shortest_edge" in size:
        target = size["shortest_edge"]
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(target * long / short)
        return (new_long, target) if width <= height else (target, new_long)
    if "max_height" in size:
        scale = min(size["max_height"] / height, size["max_width"] / width)
        return int(height * scale), int(width * scale)
    return size["height"], size["width"]


def _shortest_longest_hw(height, width, shortest, longest):
    # Shortest edge -> `shortest` unless the long edge would pass `longest`; then the long edge -> `longest`.
    raw = None
    lo, hi = float(min(height, width)), float(max(height, width))
    if hi / lo * shortest > longest:
        raw = longest * lo / hi
        shortest = int(round(raw))
    if (height <= width and height == shortest) or (width <= height and width == shortest):
        return height, width
    if width < height:
        return (int(raw * height / width) if raw is not None else int(shortest * height / width)), shortest
    return shortest, (int(raw * width / height) if raw is not None else int(shortest * width / height))


def _center_crop(pixels, crop_h, crop_w):
    """Center crop [H, W(, C)] to [crop_h, crop_w(, C)], zero-padding (before normalization) where smaller."""
    height, width = pixels.shape[:2]
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    if top >= 0 and left >= 0:
        return pixels[top : top + crop_h, left : left + crop_w]
    # The image is smaller than the crop on some side: center it on a zero canvas, then crop that.
    canvas_h, canvas_w = max(crop_h, height), max(crop_w, width)
    pad_top, pad_left = math.ceil((canvas_h - height) / 2), math.ceil((canvas_w - width) / 2)
    canvas = np.zeros((canvas_h, canvas_w) + pixels.shape[2:], dtype=pixels.dtype)
    canvas[pad_top : pad_top + height, pad_left : pad_left + width] = pixels
    top, left = top + pad_top, left + pad_left
    return canvas[max(0, top) : min(canvas_h, top + crop_h), max(0, left) : min(canvas_w, left + crop_w)]


# ---- options --------------------------------------------------------------------------------------------


def _resolve_options(opts):
    """Validate and normalize every option (legacy forms -> modern); returns a new dict."""
    out = {}
    for flag in ("do_resize", "do_center_crop", "do_rescale", "do_normalize", "do_convert_rgb", "default_to_square"):
        if not isinstance(opts[flag], (bool, np.bool_)):
            raise ValueError(f"{flag} must be true or false, got {opts[flag]!r}")
        out[flag] = bool(opts[flag])
    out["size"] = _size_dict(opts["size"], "size", out["default_to_square"])
    out["crop_size"] = None if opts["crop_size"] is None else _size_dict(opts["crop_size"], "crop_size", True)
    if out["crop_size"] is not None and set(out["crop_size"]) != {"height", "width"}:
        raise ValueError(f"crop_size must have keys height and width, got {out['crop_size']}")
    if out["do_center_crop"] and out["crop_size"] is None:
        raise ValueError("do_center_crop is true but no crop_size is set")
    out["resample"] = _resample_code(opts["resample"])
    factor = opts["rescale_factor"]
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor):
        raise ValueError(f"rescale_factor must be a finite number, got {factor!r}")
    out["rescale_factor"] = float(factor)
    out["image_mean"] = _per_channel(opts["image_mean"], "image_mean")
    out["image_std"] = _per_channel(opts["image_std"], "image_std")
    return out


def _size_dict(size, name, default_to_square):
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = {"height": int(size), "width": int(size)} if default_to_square else {"shortest_edge": int(size)}
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        size = {"height": size[0], "width": size[1]}
    if not isinstance(size, dict):
        raise ValueError(f"{name} must be an int, (height, width) or a dict, got {size!r}")
    size = {k: v for k, v in size.items() if v is not None}
    if set(size) not in _SIZE_KEY_SETS:
        raise ValueError(f"{name} must have one of the key sets {[sorted(s) for s in _SIZE_KEY_SETS]}, got {size}")
    for key, value in size.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}[{key!r}] must be a positive int, got {value!r}")
    return {k: int(v) for k, v in size.items()}


def _resample_code(resample):
    if isinstance(resample, str):
        try:
            return int(Image.Resampling[resample.strip().upper()])
        except KeyError:
            raise ValueError(f"unknown resample filter {resample!r}") from None
    if isinstance(resample, bool) or not isinstance(resample, (int, np.integer)):
        raise ValueError(f"resample must be a Pillow filter code, got {resample!r}")
    codes = [int(r) for r in Image.Resampling]
    if int(resample) not in codes:
        raise ValueError(f"resample must be one of the Pillow filter codes {sorted(codes)}, got {resample}")
    return int(resample)


def _per_channel(value, name):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or 3 numbers, got {value!r}") from None
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (RGB), got {len(values)}: {value!r}")
    return values


def _family(config):
    kind = str(config.get("image_processor_type") or config.get("feature_extractor_type") or "")
    return re.sub(r"(ImageProcessor|FeatureExtractor)(Fast|Pil)?$", "", kind)


def _check_workers(num_workers):
    if num_workers is None:
        return None
    if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 1:
        raise ValueError(f"num_workers must be a positive int or None, got {num_workers!r}")
    return int(num_workers)


def _default_workers():
    from .runtime import get_num_threads  # the process-wide thread policy (OMP_NUM_THREADS, affinity, cgroups)

    return get_num_threads()


def _as_list(images):
    if isinstance(images, np.ndarray) and images.ndim == 4:
        items = list(images)  # (N, H, W, C) batch
    elif isinstance(images, (list, tuple)):
        items = list(images)
    else:
        return [images]
    if not items:
        raise ValueError("expected at least one image, got an empty list")
    return items


# ---- config files -------------------------------------------------------------------------------------


def _find_config_file(path_or_repo_id, revision, cache_dir, token):
    """Path of preprocessor_config.json for a folder / JSON file / Hub repo id; None where it does not exist."""
    location = os.fspath(path_or_repo_id)
    from .checkpoints import bundled_model_path
    if not os.path.exists(location) and bundled_model_path(location):
        location = bundled_model_path(location)
    if os.path.isdir(location):
        path = os.path.join(location, CONFIG_NAME)
        return path if os.path.isfile(path) else None
    if os.path.isfile(location):
        return location
    if not _REPO_ID.match(location) or location.count("/") > 1:
        raise FileNotFoundError(f"no such model folder or config file: {location!r}")
    from .hub import cached_file  # only needed for Hub ids; a local folder works without it

    try:
        return cached_file(location, CONFIG_NAME, revision, cache_dir, token)
    except Exception as err:
        kind = type(err).__name__
        if kind == "LocalEntryNotFoundError":  # offline and not cached: the file may well exist, so no defaults
            raise
        if isinstance(err, FileNotFoundError) or kind in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
            return None  # the repo exists, the file does not
        raise
