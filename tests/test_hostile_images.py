"""Boundary 4, image files: truncated or corrupt data, zero-size and gigantic dimensions (Pillow's
decompression-bomb limit kept), unsupported formats, directories, devices/FIFOs, unreadable paths. Each is an
ImageLoadError (a ValueError) naming the file; `vitc classify` reports it per file and goes on.

tests/test_image_processing.py has the basic missing/empty/truncated cases and the bomb limit with a lowered
MAX_IMAGE_PIXELS; here the files are crafted at the format level."""
import contextlib
import io
import os
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from robust_helpers import write_checkpoint  # noqa: E402

import vitc  # noqa: E402
from vitc import cli  # noqa: E402
from vitc.image_io import ImageLoadError, load_image  # noqa: E402
from vitc.image_processing import ViTImageProcessor  # noqa: E402

PILLOW_DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3  # Pillow's Image.MAX_IMAGE_PIXELS (89478485)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, idat=b""):
    """A PNG declaring width x height RGB8, with the given (compressed) pixel data and IEND."""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def good_png(size=24):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def good_jpeg(size=24):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def corrupted(data, at):
    b = bytearray(data)
    b[at] ^= 0xFF
    return bytes(b)


CASES = {
    # name: (file bytes, words of the message)
    "bomb_60000x60000.png": (png(60000, 60000, zlib.compress(b"")), "too large.*decompression-bomb"),
    "bomb_width_2g.png": (png(2 ** 31 - 1, 1, zlib.compress(b"")), "too large|could not decode|not an image"),
    "zero_width.png": (png(0, 10, zlib.compress(b"")), "could not decode|not an image"),
    "zero_by_zero.png": (png(0, 0, zlib.compress(b"")), "could not decode|not an image"),
    "header_only.png": (png(16, 16, b""), "could not decode"),
    "corrupt_pixels.png": (corrupted(good_png(), len(good_png()) // 2), "could not decode"),
    "truncated.png": (good_png()[:-30], "could not decode"),
    "truncated_header.jpg": (good_jpeg()[:40], "could not decode|not an image"),
    "svg.png": (b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>", "not an image Pillow can read"),
    "numpy.npy": (b"\x93NUMPY\x01\x00" + b"\0" * 64, "not an image Pillow can read"),
    "html.jpg": (b"<html><body>404 Not Found</body></html>", "not an image Pillow can read"),
    "empty.jpg": (b"", "is empty \\(0 bytes\\)"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_image_file(tmp_path, name):
    data, words = CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageLoadError, match=words) as info:
        load_image(str(path))
    assert str(path) in str(info.value) and isinstance(info.value, ValueError)
    with pytest.raises(ImageLoadError):  # and through the processor, as a list item
        ViTImageProcessor()([str(path)])


def test_pillow_bomb_limit_is_left_as_pillow_has_it():
    import vitc.image_io  # noqa: F401 - importing vitc must not raise or remove the limit
    assert Image.MAX_IMAGE_PIXELS == PILLOW_DEFAULT_MAX_PIXELS


def test_directories_devices_fifos_unreadable(tmp_path):
    with pytest.raises(ImageLoadError, match="got a directory"):
        load_image(str(tmp_path))
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # Image.open would block forever on it
    with pytest.raises(ImageLoadError, match="got a device, FIFO or socket") as info:
        load_image(str(fifo))
    assert str(fifo) in str(info.value)
    with pytest.raises(ImageLoadError, match="device, FIFO or socket: '/dev/zero'"):
        load_image("/dev/zero")
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(str(tmp_path / "missing.png"))
    locked = tmp_path / "locked.png"
    locked.write_bytes(good_png())
    locked.chmod(0)
    path = str(locked) if os.geteuid() != 0 else "/proc/sys/vm/drop_caches"  # root reads mode-000 files
    with pytest.raises(ImageLoadError, match="cannot be read: permission denied") as info:
        load_image(path)
    assert path in str(info.value)


def test_cli_reports_each_bad_file_and_classifies_the_rest(tmp_path):
    model = write_checkpoint(tmp_path / "model", image_size=16)
    good = tmp_path / "good.png"
    good.write_bytes(good_png())
    bad = {}
    for name in ("bomb_60000x60000.png", "truncated.png", "svg.png", "empty.jpg"):
        bad[name] = tmp_path / name
        bad[name].write_bytes(CASES[name][0])
    os.mkfifo(tmp_path / "pipe.png")
    paths = [str(good), *map(str, bad.values()), str(tmp_path / "pipe.png"), str(tmp_path / "missing.jpg")]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(["classify", *paths, "--model", model, "--json", "--batch-size", "2"])
    assert status == 1
    lines = [line for line in out.getvalue().splitlines() if line]
    assert len(lines) == 1 and str(good) in lines[0]
    skipped = [line for line in err.getvalue().splitlines() if line.startswith("vitc: skipped")]
    assert len(skipped) == len(paths) - 1
    for p in paths[1:]:
        assert any(line.startswith(f"vitc: skipped {p}: ") for line in skipped), p


def test_model_classify_names_the_bad_file(tmp_path):
    model = vitc.ViTForImageClassification.from_pretrained(write_checkpoint(tmp_path / "model", image_size=16))
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(good_png())
    bad.write_bytes(CASES["truncated.png"][0])
    assert len(model.classify([str(good)], top_k=2)[0]) == 2
    with pytest.raises(ImageLoadError, match="bad.png"):
        model.classify([str(good), str(bad)])
