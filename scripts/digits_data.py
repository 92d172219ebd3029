"""scikit-learn digits for the bundled vitc-digits model: the fixed split, the rendering, the augmentation.

Shared by scripts/train_digits.py and tests/test_digits_model.py so both see the same held-out images.
Training/test-only (needs scikit-learn); the vitc runtime package never imports it.

Rendering convention: each 8x8 digit (grey levels 0..16, 16 = ink) becomes an 8x8 RGB uint8 image with
value round(v * 255 / 16) replicated on the three channels: a WHITE digit on a BLACK background, as in the
dataset. The model's preprocessor (preprocessor_config.json) then resizes it to 32x32 (bilinear), rescales
by 1/255 and normalizes with mean 0.5 / std 0.5.
"""
import math

import numpy as np
from PIL import Image, ImageFilter

SPLIT_SEED = 0          # numpy RandomState seed of the stratified split (RandomState streams are frozen)
HELD_OUT_FRACTION = 0.2
IMAGE_SIZE = 32         # model input side (pixels); the preprocessor resizes to it


def load_digits_split():
    """Stratified 80/20 split of sklearn's digits, independent of the scikit-learn version.

    Returns (train_x, train_y, held_x, held_y, held_idx): x are float64 [N, 8, 8] grey levels 0..16,
    y int64 [N], held_idx the row of each held-out image in sklearn.datasets.load_digits().
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images, digits.target.astype(np.int64)
    rng = np.random.RandomState(SPLIT_SEED)
    held = []
    for label in range(10):
        rows = np.flatnonzero(labels == label)
        rows = rows[rng.permutation(rows.size)]
        held.append(rows[: int(round(rows.size * HELD_OUT_FRACTION))])
    held_idx = np.sort(np.concatenate(held))
    train_idx = np.setdiff1d(np.arange(labels.size), held_idx)
    return images[train_idx], labels[train_idx], images[held_idx], labels[held_idx], held_idx


def render_digit(grey):
    """8x8 grey levels 0..16 -> 8x8 RGB PIL image, white digit on black (the model's canonical input)."""
    grey = np.asarray(grey, dtype=np.float64)
    if grey.shape != (8, 8):
        raise ValueError(f"expected an 8x8 digit, got shape {grey.shape}")
    value = np.rint(np.clip(grey, 0, 16) * (255.0 / 16.0)).astype(np.uint8)
    return Image.fromarray(np.repeat(value[:, :, None], 3, axis=2), mode="RGB")


def upscale_nearest(image, side):
    """Blocky upscaling used for the sample PNGs (they look like the 8x8 digit when opened)."""
    return image.resize((side, side), Image.NEAREST)


def augment_digit(grey, rng):
    """A randomly distorted rendering of one digit, for training robustness.

    Small rotation / scale / shear / shift applied at 32x32 (bilinear), sometimes a thicker or thinner stroke,
    and delivered at a random size (8, 16, 32 bilinear or 64 nearest) so the preprocessor's resize sees the
    kinds of inputs a user hands it (tiny digits, blocky upscales, smooth larger drawings).
    """
    small = render_digit(grey)
    if rng.uniform() < 0.2:  # keep some undistorted digits, as the 8x8 original or as a blocky sample-style PNG
        return small if rng.uniform() < 0.5 else upscale_nearest(small, 64)
    canvas = small.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)

    angle = math.radians(rng.uniform(-12.0, 12.0))
    scale = rng.uniform(0.85, 1.15)
    shear = rng.uniform(-0.15, 0.15)
    shift_x, shift_y = rng.uniform(-3.0, 3.0, size=2)
    # PIL's AFFINE maps output (x, y) to input coordinates: invert the forward transform about the centre.
    cos, sin = math.cos(angle), math.sin(angle)
    forward = np.array([[scale * cos, scale * (-sin + shear)], [scale * sin, scale * cos]])
    inverse = np.linalg.inv(forward)
    centre = (IMAGE_SIZE - 1) / 2.0
    offset = np.array([centre, centre]) - inverse @ np.array([centre + shift_x, centre + shift_y])
    coeffs = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    canvas = canvas.transform(canvas.size, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=(0, 0, 0))

    stroke = rng.uniform()
    if stroke < 0.15:
        canvas = canvas.filter(ImageFilter.MaxFilter(3))
    elif stroke < 0.25:
        canvas = canvas.filter(ImageFilter.MinFilter(3))

    delivery = rng.randint(4)
    if delivery == 0:
        return canvas
    if delivery == 1:
        return canvas.resize((8, 8), Image.BILINEAR)
    if delivery == 2:
        return canvas.resize((16, 16), Image.BILINEAR)
    return upscale_nearest(canvas.resize((8, 8), Image.BILINEAR), 64)

