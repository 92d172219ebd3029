"""Maps line up with the photo: a checkpoint crafted so that every query attends to the brightest patch, a
synthetic image whose only structure is one bright square, and the hot spot of the PNG where the square is
(plain resize, center crop, EXIF rotation, interpolated non-square input); output sizes; the colormaps."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from checkpoints import torch, transformers  # noqa: E402

import vitc  # noqa: E402
from vitc.colormaps import COLORMAPS, colormap_table, srgb_to_oklab  # noqa: E402
from vitc.heatmap import OUTSIDE_BRIGHTNESS, head_grid, map_box  # noqa: E402

PATCH = 8
IMAGE_HW = (48, 64)  # the model's input: a 6 x 8 patch grid


@pytest.fixture(scope="module")
def bright_seeker(tmp_path_factory):
    """A ViT whose CLS (and every) query attends to the brightest patch, in every layer.

    The patch embedding writes the patch's mean intensity into hidden dim 0 and a constant 1 into dim 1;
    after the pre-attention LayerNorm, dim 0 rises with the intensity (-2.0 black, 1.7 white). Keys read dim
    0, queries are a large constant (bias): scores = 10 * LN(x)_0, so softmax puts ~all weight on the bright
    patch. Attention output and MLP are zero, so the hidden states, hence the maps, are equal in all layers."""
    config = transformers.ViTConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=8,
                                    image_size=list(IMAGE_HW), patch_size=PATCH, num_labels=2,
                                    attn_implementation="eager")
    model = transformers.ViTForImageClassification(config)
    with torch.no_grad():  # by parameter name suffix: transformers 5 names q_proj what 4 named query
        for name, p in model.named_parameters():
            p.copy_(torch.ones_like(p) if "layernorm" in name and name.endswith("weight") else torch.zeros_like(p))
            if name.endswith("patch_embeddings.projection.weight"):
                p[0] = 1.0 / (3 * PATCH * PATCH)
            elif name.endswith("patch_embeddings.projection.bias"):
                p[1] = 1.0
            elif name.endswith("cls_token"):
                p[0, 0, 1] = 1.0
            elif name.endswith(("key.weight", "k_proj.weight")):
                p[0, 0] = p[4, 0] = 1.0  # both heads (head_dim 4) read dim 0
            elif name.endswith(("query.bias", "q_proj.bias")):
                p[0] = p[4] = 20.0
            elif name == "classifier.weight":
                p[0, 0] = 1.0
    path = str(tmp_path_factory.mktemp("bright_seeker"))
    model.save_pretrained(path)
    return vitc.ViTForImageClassification.from_pretrained(path)


def square_image(size, box):
    """Black RGB image of size (width, height) with a white rectangle box (left, top, right, bottom)."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    left, top, right, bottom = box
    pixels[top:bottom, left:right] = 255
    return Image.fromarray(pixels)


def hot_spot(picture, colormap="heat"):
    """Centroid (x, y) of the pixels painted with the hottest colors (alpha=1 overlays: pure colormap)."""
    table = colormap_table(colormap).astype(np.int32)
    rgb = np.asarray(picture, np.int32)
    hot = (np.abs(rgb - table[-1]).sum(axis=-1) <= np.abs(table[-1] - table[-12]).sum())
    ys, xs = np.nonzero(hot)
    assert len(xs), "no hot pixel"
    return xs.mean(), ys.mean()


def assert_aligned(model, image, square, grid_cell, grid, processor=None):
    """The maps' argmax is grid_cell; the overlay keeps the upright size and its hot spot is at the square."""
    for maps in (vitc.attention_rollout(model, [image], processor=processor),
                 vitc.cls_attention(model, [image], layer=0, processor=processor),
                 vitc.cls_attention(model, [image], layer=-1, head=1, processor=processor)):
        assert maps.shape == (1,) + grid
        assert np.unravel_index(np.argmax(maps[0]), grid) == grid_cell
    heat = vitc.attention_rollout(model, [image], processor=processor)[0]
    picture = vitc.overlay(image, heat, alpha=1.0, model=model, processor=processor)
    upright = vitc.overlay(image, heat, alpha=0.0, model=model, processor=processor)  # the photo (dimmed border)
    width, height = picture.size
    assert picture.mode == "RGB" and upright.size == picture.size
    x, y = hot_spot(picture)
    left, top, right, bottom = square
    tolerance = 0.25 * (right - left)  # a quarter of a patch, in original pixels
    assert abs(x - (left + right) / 2) <= tolerance and abs(y - (top + bottom) / 2) <= tolerance, (x, y, square)
    return picture, upright


def test_plain_resize(bright_seeker):
    # 320 x 240 -> 64 x 48: 5 original pixels per input pixel; patch (row 4, col 2) = rows 160..200, cols 80..120
    square = (80, 160, 120, 200)
    picture, _ = assert_aligned(bright_seeker, square_image((320, 240), square), square, (4, 2), IMAGE_HW and (6, 8))
    assert picture.size == (320, 240)


def test_unequal_scales(bright_seeker):
    # 128 x 144 -> 64 x 48: x scale 2, y scale 3; patch (row 1, col 6) = rows 24..48, cols 96..112
    square = (96, 24, 112, 48)
    picture, _ = assert_aligned(bright_seeker, square_image((128, 144), square), square, (1, 6), (6, 8))
    assert picture.size == (128, 144)


def test_center_crop_and_its_dimmed_border(bright_seeker):
    # 400 x 300, shortest edge -> 60: 80 x 60 (scale 5), center crop 64 x 48: offset (8, 6) resized pixels.
    # patch (row 1, col 5): resized rows 14..22, cols 48..56 -> original rows 70..110, cols 240..280.
    processor = vitc.ViTImageProcessor(size={"shortest_edge": 60}, do_center_crop=True,
                                       crop_size={"height": 48, "width": 64})
    image = square_image((400, 300), (240, 70, 280, 110))
    image.putpixel((5, 5), (200, 100, 50))  # in the cropped-away border
    assert map_box(image.size, (6, 8), bright_seeker, processor) == (40.0, 30.0, 360.0, 270.0)
    _, faded = assert_aligned(bright_seeker, image, (240, 70, 280, 110), (1, 5), (6, 8), processor)
    assert faded.size == (400, 300)
    assert faded.getpixel((5, 5)) == tuple(int(v * OUTSIDE_BRIGHTNESS + 0.5) for v in (200, 100, 50))
    assert faded.getpixel((100, 100)) == (0, 0, 0) and faded.getpixel((250, 80)) == (255, 255, 255)  # alpha 0


def test_exif_rotated_file(bright_seeker, tmp_path):
    """Stored sideways with EXIF orientation 6 (rotate 90° clockwise to view): maps and PNG follow the upright
    image, which is what the processor feeds the model too."""
    square = (80, 160, 120, 200)
    upright = square_image((320, 240), square)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 240 x 320 on disk
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    stored.save(path, quality=95, exif=exif)
    picture, _ = assert_aligned(bright_seeker, str(path), square, (4, 2), (6, 8))
    assert picture.size == (320, 240)


def test_interpolated_non_square_input(bright_seeker):
    # processor size 64 x 96: an 8 x 12 grid (interpolated position embeddings). 480 x 320 -> 96 x 64
    # (scale 5); patch (row 6, col 9) = rows 240..280, cols 360..400
    processor = vitc.ViTImageProcessor(size={"height": 64, "width": 96})
    square = (360, 240, 400, 280)
    assert_aligned(bright_seeker, square_image((480, 320), square), square, (6, 9), (8, 12), processor)


def test_patches_not_filling_the_input(bright_seeker):
    """An input of 52 x 70: a 6 x 8 grid covering rows 0..48 and cols 0..64; the uncovered strip (and only it)
    is dimmed."""
    processor = vitc.ViTImageProcessor(size={"height": 52, "width": 70})
    square = (80, 32, 96, 48)  # 140 x 104 original, scale 2: input rows 16..24, cols 40..48 -> cell (2, 5)
    heat = vitc.attention_rollout(bright_seeker, square_image((140, 104), square), processor=processor)
    assert heat.shape == (1, 6, 8) and np.unravel_index(np.argmax(heat[0]), (6, 8)) == (2, 5)
    assert map_box((140, 104), (6, 8), bright_seeker, processor) == (0.0, 0.0, 128.0, 96.0)
    gray = Image.new("RGB", (140, 104), (100, 100, 100))
    picture = vitc.overlay(gray, heat[0], alpha=0.0, model=bright_seeker, processor=processor)
    assert picture.getpixel((127, 95)) == (100, 100, 100) and picture.getpixel((128, 50)) == (40, 40, 40)
    assert picture.getpixel((50, 96)) == (40, 40, 40)


@pytest.mark.parametrize("size", [(1, 1), (7, 300), (300, 7), (64, 48), (1001, 667)])
def test_output_has_the_original_size(bright_seeker, size):
    rgb = np.random.default_rng(sum(size)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    heat = vitc.attention_rollout(bright_seeker, rgb)[0]
    crop = vitc.ViTImageProcessor(size={"shortest_edge": 60}, do_center_crop=True,
                                  crop_size={"height": 48, "width": 64})
    for processor in (None, crop):
        assert vitc.overlay(rgb, heat, model=bright_seeker, processor=processor).size == size
    assert vitc.overlay(Image.fromarray(rgb).convert("L"), heat).size == size  # gray in, RGB out, no model


def test_image_smaller_than_the_crop_is_padded_not_broken(bright_seeker):
    """No resize, crop 48 x 64 of a 40 x 30 image: the processor pads; the box reaches past the image."""
    processor = vitc.ViTImageProcessor(do_resize=False, do_center_crop=True, crop_size={"height": 48, "width": 64})
    assert map_box((40, 30), (6, 8), bright_seeker, processor) == (-12.0, -9.0, 52.0, 39.0)
    square = (4, 7, 12, 15)  # input rows 16..24, cols 16..24: cell (2, 2)
    assert_aligned(bright_seeker, square_image((40, 30), square), square, (2, 2), (6, 8), processor)


def test_grid_sheet_tiles(bright_seeker):
    photo = square_image((320, 240), (80, 160, 120, 200))
    heads = vitc.cls_attention(bright_seeker, photo, head="all")[0]
    box = map_box(photo.size, (6, 8), bright_seeker)
    sheet = head_grid(photo, heads, box, ["label"], alpha=1.0)
    assert sheet.size == (3 * 256 + 2 * 4, 192)  # photo + 2 heads in one row, long side 256
    tile = sheet.crop((256 + 4, 0, 2 * 256 + 4, 192))
    x, y = hot_spot(tile)
    assert abs(x - 100 * 0.8) <= 3 and abs(y - 180 * 0.8) <= 3


def test_bad_heatmaps_and_alpha():
    with pytest.raises(ValueError, match="2-D"):
        vitc.overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        vitc.overlay(np.zeros((4, 4, 3), np.uint8), np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="alpha"):
        vitc.overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((2, 2)), alpha=1.5)
    flat = vitc.overlay(np.zeros((4, 4, 3), np.uint8), np.ones((2, 2)), alpha=1.0)  # constant map: coldest color
    assert flat.getpixel((0, 0)) == tuple(int(v) for v in colormap_table()[0])


@pytest.mark.parametrize("name", COLORMAPS)
def test_colormaps_are_perceptual(name):
    table = colormap_table(name)
    assert table.shape == (256, 3) and table.dtype == np.uint8
    lab = srgb_to_oklab(table / 255.0)
    steps = np.diff(lab[:, 0])
    assert steps.min() > -0.002 and lab[-1, 0] - lab[0, 0] > 0.6  # lightness rises monotonically, dark to light
    distance = np.linalg.norm(np.diff(lab, axis=0), axis=1)
    assert distance.max() < 3 * np.median(distance)  # no jumps: near-equal perceptual steps
    assert len({tuple(c) for c in table}) > 200


def test_colormap_tables_pass_through():
    ramp = np.linspace(0, 1, 11)[:, None] * np.array([[1.0, 0.5, 0.0]])  # float [K, 3] as matplotlib's
    table = colormap_table(ramp)
    assert table.shape == (256, 3) and tuple(table[0]) == (0, 0, 0) and tuple(table[-1]) == (255, 128, 0)
    with pytest.raises(ValueError, match="unknown colormap 'jet'"):
        colormap_table("jet")
    with pytest.raises(ValueError, match=r"\[K, 3\]"):
        colormap_table(np.zeros((5, 4)))
