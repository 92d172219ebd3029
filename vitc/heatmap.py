"""Draw a patch-grid heat map over the image it came from (Pillow + numpy).

Alignment: the map covers what the model saw, so the image processor's resize and center crop are undone.
A map of grid (rows, cols) with patches (ph, pw) covers the processed input's rows [0, rows*ph) and columns
[0, cols*pw); the processed input is the resized image shifted by the crop offset. Mapped back through the
resize scale, that is a box in the original image's pixels (map_box). Inside the box the map is upsampled
bicubically (cell centers on patch centers) and blended over the photo; the border that the center crop cut
away, which the model never saw, keeps the photo but darkened, so the output has the original's size.
"""
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .colormaps import colormap_table
from .image_io import load_image

OUTSIDE_BRIGHTNESS = 0.4  # what is left of the photo's brightness where the model saw nothing


def map_box(image_size, grid, model=None, processor=None):
    """(left, top, right, bottom), float, in pixels of the upright original image of image_size (width,
    height): the part a grid (rows, cols) map covers after `processor` (default: the model's image
    processor). Patch size: the model's; without a model, the processed size // grid. Without model and
    processor: the whole image."""
    width, height = image_size
    if processor is None and model is None:
        return 0.0, 0.0, float(width), float(height)
    if processor is None:
        processor = model.image_processor
    from .image_processing import _resized_hw  # the very computation the processor resizes with

    rh, rw = _resized_hw(height, width, processor.size) if processor.do_resize else (height, width)
    top = left = 0
    ch, cw = rh, rw
    if processor.do_center_crop:
        ch, cw = processor.crop_size["height"], processor.crop_size["width"]
        # processed row y is resized row y + top, also when the crop pads a smaller image (image_processing)
        top, left = (rh - ch) // 2, (rw - cw) // 2
    rows, cols = grid
    ph, pw = model.config.patch_hw if model is not None else (ch // rows, cw // cols)
    sy, sx = height / rh, width / rw
    return left * sx, top * sy, (left + cols * pw) * sx, (top + rows * ph) * sy


def overlay(image, heatmap, alpha=0.5, colormap="heat", model=None, processor=None):
    """The image (path, PIL image or uint8 array; EXIF orientation applied) at its own size with heatmap
    [rows, cols] upsampled smoothly onto the part the model saw and blended in with a perceptual colormap
    (alpha: weight of the colors). model / processor: undo the resize and center crop that made the input
    (see map_box); without either, the map is stretched over the whole image. Returns an RGB PIL image."""
    photo = load_image(image).convert("RGB")
    heatmap = _check_heatmap(heatmap)
    return render(photo, heatmap, map_box(photo.size, heatmap.shape, model, processor), alpha, colormap)


def _check_heatmap(heatmap):
    heat = np.asarray(heatmap, dtype=np.float64)
    if heat.ndim != 2 or 0 in heat.shape:
        raise ValueError(f"heatmap must be a 2-D [rows, cols] array, got shape {heat.shape}")
    if not np.isfinite(heat).all():
        raise ValueError("heatmap has NaN or infinite values")
    return heat


def render(photo, heat, box, alpha=0.5, colormap="heat"):
    """photo (RGB PIL) with heat [rows, cols] blended into box (left, top, right, bottom, in photo pixels)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    table = colormap_table(colormap)
    width, height = photo.size
    x0, y0, x1, y1 = box
    # whole pixels inside the box (a border pixel the box only partly covers counts as outside)
    px0, py0 = max(0, math.ceil(x0 - 1e-6)), max(0, math.ceil(y0 - 1e-6))
    px1, py1 = min(width, math.floor(x1 + 1e-6)), min(height, math.floor(y1 + 1e-6))
    covers_all = (px0, py0, px1, py1) == (0, 0, width, height)
    out = photo.copy() if covers_all else photo.point([int(v * OUTSIDE_BRIGHTNESS + 0.5) for v in range(256)] * 3)
    if px1 <= px0 or py1 <= py0:
        return out
    rows, cols = heat.shape
    lo, hi = float(heat.min()), float(heat.max())
    scaled = (heat - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(heat)
    cells = Image.fromarray(scaled.astype(np.float32), "F")
    # the source rectangle (in map cells) that the whole pixels [px0, px1) x [py0, py1) cover
    source = (min(cols, (px0 - x0) * cols / (x1 - x0)), min(rows, (py0 - y0) * rows / (y1 - y0)),
              min(cols, (px1 - x0) * cols / (x1 - x0)), min(rows, (py1 - y0) * rows / (y1 - y0)))
    source = tuple(max(0.0, v) for v in source)
    smooth = cells.resize((px1 - px0, py1 - py0), Image.Resampling.BICUBIC, box=source)
    index = smooth.point(lambda v: v + 0.5).convert("L")  # F -> L clips to 0..255 and truncates: rounds
    index.putpalette(table.tobytes())
    colored = index.convert("RGB")
    region = photo.crop((px0, py0, px1, py1))
    out.paste(Image.blend(region, colored, alpha), (px0, py0))
    return out


# ---- captions and grids -----------------------------------------------------------------------------
def font_for(image_size):
    """Pillow's default font at a size readable on this image (a bitmap font on Pillows without FreeType)."""
    size = int(min(max(min(image_size) / 22, 10), 28))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def caption(image, lines, corner=(0, 0)):
    """Draw text lines in the top-left corner of image (in place) on a translucent dark box; returns it."""
    if not lines:
        return image
    font = font_for(image.size)
    draw = ImageDraw.Draw(image, "RGBA")
    text = "\n".join(lines)
    pad = max(2, int(getattr(font, "size", 10)) // 5)
    left, top, right, bottom = draw.multiline_textbbox((corner[0] + pad, corner[1] + pad), text, font=font, spacing=1)
    draw.rectangle((corner[0], corner[1], right + pad, bottom + pad), fill=(0, 0, 0, 150))
    draw.multiline_text((corner[0] + pad, corner[1] + pad), text, font=font, fill=(255, 255, 255, 255), spacing=1)
    return image


def label_lines(ranked):
    """[(label, score), ...] -> ["89.1%  tabby cat", ...]."""
    return [f"{score:6.1%}  {label}".strip() for label, score in ranked]


def head_grid(photo, head_maps, box, lines=(), alpha=0.5, colormap="heat", tile=None):
    """DINO-style sheet: the photo (captioned with lines), then one overlay per head map [heads, rows, cols],
    each tile labelled "head i"; tiles have the photo's aspect, their long side `tile` px (default: the
    photo's, kept within 160..256). Returns an RGB PIL image."""
    width, height = photo.size
    long_side = max(width, height)
    tile = tile or min(max(long_side, 160), 256)
    scale = tile / long_side
    tw, th = max(1, round(width * scale)), max(1, round(height * scale))
    small = photo.resize((tw, th), Image.Resampling.BICUBIC) if (tw, th) != photo.size else photo.copy()
    small_box = tuple(v * s for v, s in zip(box, (tw / width, th / height) * 2))
    tiles = [caption(small.copy(), list(lines))]
    for i, heat in enumerate(head_maps):
        tiles.append(caption(render(small, _check_heatmap(heat), small_box, alpha, colormap), [f"head {i}"]))
    rows = math.ceil(len(tiles) / 7)
    cols = math.ceil(len(tiles) / rows)
    gap = 4
    sheet = Image.new("RGB", (cols * tw + (cols - 1) * gap, rows * th + (rows - 1) * gap), (255, 255, 255))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * (tw + gap), (i // cols) * (th + gap)))
    return sheet


def save_png(image, path):
    """Write image as PNG to path whole or not at all (a temporary file renamed into place). zlib level 1:
    a 1920x1200 overlay takes ~1/4 of the default level 6's time for a file ~5% larger."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        image.save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
