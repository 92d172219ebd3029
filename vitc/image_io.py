"""Turn whatever a user passes as "an image" into an upright 8-bit Pillow image in mode "RGB" or "L".

Accepted inputs:
- a path (str or os.PathLike) to an image file Pillow can read (first frame of multi-frame files);
- a PIL.Image.Image of any common mode;
- a numpy uint8 array: HWC with C in {1, 3, 4} (RGB / RGBA channel order) or HW grayscale.

What is done to them (on purpose, unlike transformers' processors):
- EXIF orientation is applied (PIL.ImageOps.exif_transpose) to files and PIL images, so a phone photo is
  upright. Applying it twice is harmless: exif_transpose removes the tag it applied.
- Transparency (RGBA, LA, PA, palette or L/RGB with a "transparency" entry) is composited onto WHITE, the
  same way transformers' convert_to_rgb does (Image.alpha_composite), not dropped (which would expose
  whatever color hides under transparent pixels, often black).
- 16-bit grayscale (I;16*, I — what Pillow gives for 16-bit PNG/TIFF) is scaled to 8 bits (v / 257, rounded):
  Pillow's own convert() would clip everything above 255 to white. Float images (F) follow Pillow's
  convention of a 0..255 range and are rounded and clipped.
- Palette, CMYK, YCbCr, 1-bit, ... are converted with Pillow's convert("RGB").
- Grayscale stays "L" (one channel): the caller resizes once and replicates it to three channels, which is
  bit-identical to resizing the RGB conversion (Pillow resamples each 8-bit channel the same way).

Any failure to read a file raises ImageLoadError (a ValueError) naming the file. Pillow's decompression-bomb
limit stays as Pillow has it: a warning above Image.MAX_IMAGE_PIXELS, and above twice that an ImageLoadError.
"""
import os

import numpy as np
from PIL import Image, ImageOps


class ImageLoadError(ValueError):
    """An image file could not be read: missing, a directory, empty, truncated, corrupt or too large."""


_GRAY_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")  # not "A" in getbands(): LAB has a band named "A"
_EXIF_ORIENTATION = 0x0112


def load_image(source):
    """Decode one image input (path, PIL image or uint8 numpy array) into a PIL image in mode RGB or L."""
    if isinstance(source, (str, os.PathLike)):
        path, image = _open_file(source)
        try:
            return to_rgb_or_gray(image)
        except ValueError as err:
            raise ImageLoadError(f"image file {path!r}: {err}") from err
    if isinstance(source, Image.Image):
        return to_rgb_or_gray(_upright(source))
    if isinstance(source, np.ndarray):
        return _from_array(source)
    raise TypeError(
        "expected an image as a path (str / os.PathLike), a PIL.Image.Image or a numpy uint8 array, "
        f"got {type(source).__module__}.{type(source).__qualname__}"
    )


def _open_file(source):
    path = os.fspath(source)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not os.path.exists(path):
        hint = " (URLs are not fetched: download the file first)" if path.startswith(("http://", "https://")) else ""
        raise ImageLoadError(f"image file not found: {path!r}{hint}")
    if os.path.isdir(path):
        raise ImageLoadError(f"expected an image file, got a directory: {path!r}")
    if not os.path.isfile(path):  # a FIFO would block Image.open forever, a device reads without end
        raise ImageLoadError(f"expected an image file, got a device, FIFO or socket: {path!r}")
    return path, _decode(path, f"image file {path!r}", os.path.getsize(path))


def load_image_bytes(data, name="image", max_pixels=None):
    """Decode an encoded image held in memory (bytes from a request or a dataset) into a PIL image in mode
    RGB or L, with the same checks as a file; errors name it `name`. max_pixels, where given, is a limit
    stricter than Pillow's decompression-bomb one, checked on the header before any pixel is decoded."""
    import io
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name}: expected encoded image bytes, got {type(data).__name__}")
    image = _decode(io.BytesIO(data), name, len(data), max_pixels)
    try:
        return to_rgb_or_gray(image)
    except ValueError as err:
        raise ImageLoadError(f"{name}: {err}") from err


def _decode(source, name, nbytes, max_pixels=None):
    """Open, check and fully decode one image (path or file object); every failure is an ImageLoadError."""
    try:
        with Image.open(source) as image:  # Pillow's decompression-bomb check runs here (kept as Pillow has it)
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise ImageLoadError(f"{name} is too large: {image.width}x{image.height} pixels, "
                                     f"the limit is {max_pixels}")
            image.load()  # decode now, inside the try, so truncation/corruption is reported with the name
            return _upright(image)
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"{name} is too large (Pillow decompression-bomb limit): {err}") from err
    except PermissionError as err:
        raise ImageLoadError(f"{name} cannot be read: permission denied") from err
    except Image.UnidentifiedImageError as err:
        what = "is empty (0 bytes)" if nbytes == 0 else f"is not an image Pillow can read ({nbytes} bytes)"
        raise ImageLoadError(f"{name} {what}") from err
    except ImageLoadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        # Pillow reports truncated/corrupt data as OSError (and a few decoders as SyntaxError/ValueError).
        raise ImageLoadError(f"could not decode {name}: {err}") from err


def _upright(image):
    """Apply the EXIF orientation tag, if any (exif_transpose would copy the pixels even when there is none)."""
    if image.getexif().get(_EXIF_ORIENTATION, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def to_rgb_or_gray(image):
    """Convert a PIL image of any mode to "RGB" or "L" (transparency composited on white)."""
    mode = image.mode
    if mode in ("RGB", "L") and "transparency" not in image.info:
        return image
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA") if mode != "La" else image.convert("LA").convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _GRAY_16BIT_MODES:
        return _gray16_to_l(image)
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    if mode == "1":
        return image.convert("L")
    try:
        return image.convert("RGB")
    except ValueError as err:
        raise ValueError(f"cannot convert a PIL image of mode {mode!r} to RGB: {err}") from err


def _gray16_to_l(image):
    # v * 255 / 65535 == v / 257, rounded half up in integers; values outside 0..65535 (mode I) are clipped.
    values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
    return Image.fromarray(((values + 128) // 257).astype(np.uint8), "L")


def _from_array(array):
    if array.dtype != np.uint8:
        raise ValueError(
            f"expected a uint8 image array (HWC or HW, values 0..255), got dtype {array.dtype}; "
            "convert it first, e.g. (x * 255).round().clip(0, 255).astype(np.uint8) for floats in [0, 1]"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2:
        _check_nonempty(array)
        return Image.fromarray(np.ascontiguousarray(array), "L")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        _check_nonempty(array)
        image = Image.fromarray(np.ascontiguousarray(array), "RGB" if array.shape[2] == 3 else "RGBA")
        return to_rgb_or_gray(image)
    hint = ""
    if array.ndim == 3 and array.shape[0] in (1, 3, 4):
        hint = " (this looks channels-first: pass array.transpose(1, 2, 0))"
    raise ValueError(
        f"expected an image array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {array.shape}{hint}"
    )


def _check_nonempty(array):
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"expected an image with height and width >= 1, got array shape {array.shape}")
