"""CLIPImageProcessorPil / SiglipImageProcessorPil / BitImageProcessorPil: bit-equal to transformers' Pillow
processors on synthetic images of awkward sizes, with every resample filter, from Hub-style configs."""
import json
import os
import sys

import numpy as np
import pytest

import transformers
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from test_image_processing import noise_image  # noqa: E402
from vitc.image_processing import (IMAGE_PROCESSOR_CLASSES, BitImageProcessorPil, CLIPImageProcessorPil,
                                   SiglipImageProcessorPil, ViTImageProcessor)

FAMILIES = {
    "CLIP": (CLIPImageProcessorPil, transformers.CLIPImageProcessorPil),
    "Siglip": (SiglipImageProcessorPil, transformers.SiglipImageProcessorPil),
    "Bit": (BitImageProcessorPil, transformers.BitImageProcessorPil),
}

# preprocessor_config.json as published, with their processor family
HUB_CONFIGS = {
    # openai/clip-vit-base-patch32: legacy feature extractor, int sizes (shortest edge 224, crop 224)
    "clip_openai_legacy": ("CLIP", {
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}),
    # openai/clip-vit-large-patch14-336
    "clip_336": ("CLIP", {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 336},
                          "crop_size": {"height": 336, "width": 336}}),
    # google/siglip-so400m-patch14-384
    "siglip_so400m": ("Siglip", {
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5], "processor_class":
        "SiglipProcessor", "resample": 3, "rescale_factor": 0.00392156862745098,
        "size": {"height": 384, "width": 384}}),
    # google/siglip2-base-patch16-256 (FixRes): bilinear
    "siglip2_fixres": ("Siglip", {
        "do_convert_rgb": None, "image_processor_type": "SiglipImageProcessor", "resample": 2,
        "size": {"height": 256, "width": 256}}),
    # facebook/dinov2-base
    "dinov2": ("Bit", {
        "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
        "image_mean": [0.485, 0.456, 0.406], "image_processor_type": "BitImageProcessor",
        "image_std": [0.229, 0.224, 0.225], "resample": 3, "size": {"shortest_edge": 256}}),
    # bare class names: every option is the class default
    "clip_defaults": ("CLIP", {"image_processor_type": "CLIPImageProcessor"}),
    "siglip_defaults": ("Siglip", {"image_processor_type": "SiglipImageProcessor"}),
    "bit_defaults": ("Bit", {"image_processor_type": "BitImageProcessor"}),
}

# (height, width): 1x1, thin both ways, odd, equal to the target, up- and downsampling, large
SIZES = [(1, 1), (2, 3), (5, 301), (301, 5), (223, 225), (224, 224), (256, 256), (333, 500), (1201, 1603)]


def compare(family, config, image, **kwargs):
    """PIL images on both sides: transformers reads a (1, 1, 3) array as channels-first."""
    image = [Image.fromarray(a) for a in image] if isinstance(image, list) else Image.fromarray(image)
    ours_cls, theirs_cls = FAMILIES[family]
    ours = ours_cls.from_dict(dict(config), **kwargs)(image)["pixel_values"]
    theirs = theirs_cls(**{k: v for k, v in {**config, **kwargs}.items()
                           if k not in ("image_processor_type", "feature_extractor_type", "processor_class")})
    theirs = theirs(image, return_tensors="np")["pixel_values"]
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() == 0


@pytest.mark.parametrize("name", sorted(HUB_CONFIGS))
@pytest.mark.parametrize("hw", SIZES)
def test_hub_configs_bit_equal(tmp_path, name, hw):
    family, config = HUB_CONFIGS[name]
    compare(family, config, noise_image(*hw))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("resample", [0, 1, 2, 3, 4, 5])
def test_every_resample_filter(family, resample):
    for hw in [(3, 2), (97, 131), (224, 225), (640, 480)]:
        compare(family, {}, noise_image(*hw, seed=resample), resample=resample)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_int_size_follows_the_family_default_to_square(family):
    """size 300: the shortest edge for all three families (default_to_square is False in each)."""
    compare(family, {"size": 300, "do_center_crop": False}, noise_image(200, 450))


def test_batch_of_mixed_sizes_and_grayscale():
    images = [noise_image(40, 90), noise_image(300, 200, channels=1), noise_image(17, 17, channels=4)]
    images = [np.dstack([im] * 3) if im.ndim == 2 else im[..., :3] for im in images]
    for family in FAMILIES:
        compare(family, {}, images)


@pytest.mark.parametrize("name", sorted(HUB_CONFIGS))
def test_from_pretrained_and_round_trip(tmp_path, name):
    family, config = HUB_CONFIGS[name]
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    ours = FAMILIES[family][0].from_pretrained(str(tmp_path))
    # ViTImageProcessor picks the same defaults from the config's image_processor_type
    assert ViTImageProcessor.from_pretrained(str(tmp_path)).to_dict() == {**ours.to_dict(),
                                                                        "image_processor_type": "ViTImageProcessor"}
    saved = ours.save_pretrained(str(tmp_path / "again"))
    assert json.load(open(saved))["image_processor_type"] == f"{family}ImageProcessor"
    assert type(ours).from_pretrained(str(tmp_path / "again")).to_dict() == ours.to_dict()
    assert IMAGE_PROCESSOR_CLASSES[family] is type(ours)


def test_family_defaults_without_a_config(tmp_path):
    for family, (ours_cls, theirs_cls) in FAMILIES.items():
        ours, theirs = ours_cls.from_pretrained(str(tmp_path)), theirs_cls()
        for name in ("size", "crop_size", "resample", "image_mean", "image_std", "do_center_crop"):
            value = getattr(theirs, name)
            value = dict(value) if hasattr(value, "keys") else value
            value = {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value
            expected = tuple(value) if isinstance(value, list) else value
            expected = False if name == "do_center_crop" and value is None else expected  # unset: no crop
            assert getattr(ours, name) == expected, (family, name)


def test_unsupported_option_names_the_class():
    with pytest.raises(ValueError, match="do_pad=True is not supported by vitc.SiglipImageProcessorPil"):
        SiglipImageProcessorPil.from_dict({"do_pad": True})
