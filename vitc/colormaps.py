"""Perceptual colormaps for heat maps, built here from a path in the OKLab color space (no data copied).

OKLab (Björn Ottosson, 2020, "A perceptual color space for image processing") is close to perceptually
uniform: equal steps of its lightness L look like equal steps of brightness. Each map below is a path with L
rising from dark to light (so it reads in grayscale and to color-blind eyes) while the hue turns and the
chroma swells and fades through a few control points; chroma is reduced where a color would fall outside
sRGB, and the 256 entries are spaced at equal OKLab distances along the path (equal steps of the data look
like equal steps of color). The tables are 256 x RGB uint8, computed once on first use.

    heat: black -> purple -> red -> orange -> pale yellow (inferno-like; the default)
    deep: purple -> blue -> teal -> green -> yellow (viridis-like)
"""
import numpy as np

# name -> (L at 0, L at 1, control points (t, chroma, hue in degrees, unwrapped so it turns one way))
_PATHS = {
    "heat": (0.15, 0.97, ((0.0, 0.04, 290.0), (0.25, 0.15, 318.0), (0.5, 0.20, 385.0), (0.75, 0.17, 415.0),
                          (1.0, 0.11, 465.0))),
    "deep": (0.30, 0.93, ((0.0, 0.13, 305.0), (0.25, 0.11, 262.0), (0.5, 0.09, 200.0), (0.75, 0.15, 148.0),
                          (1.0, 0.19, 110.0))),
}
COLORMAPS = tuple(_PATHS)
_tables = {}


def colormap_table(colormap="heat"):
    """The colormap as a uint8 [256, 3] RGB table: a name from COLORMAPS, or a table (any [K, 3] uint8-
    convertible array, e.g. one taken from matplotlib) passed through resampled to 256 entries."""
    if isinstance(colormap, str):
        if colormap not in _PATHS:
            raise ValueError(f"unknown colormap {colormap!r}: expected one of {', '.join(COLORMAPS)} or a [K, 3] table")
        if colormap not in _tables:
            _tables[colormap] = _build(*_PATHS[colormap])
        return _tables[colormap]
    table = np.asarray(colormap)
    if table.ndim != 2 or table.shape[1] != 3 or table.shape[0] < 2:
        raise ValueError(f"a colormap table must be [K, 3] RGB with K >= 2, got shape {table.shape}")
    if table.dtype.kind == "f":  # 0..1 floats, as matplotlib's
        table = np.rint(np.clip(table, 0.0, 1.0) * 255)
    positions = np.linspace(0, len(table) - 1, 256)
    return np.stack([np.rint(np.interp(positions, np.arange(len(table)), table[:, c])) for c in range(3)],
                    axis=1).astype(np.uint8)


def _build(l0, l1, points, samples=4096):
    t = np.linspace(0.0, 1.0, samples)
    knots = np.array(points)
    lightness = l0 + (l1 - l0) * t
    chroma = np.interp(t, knots[:, 0], knots[:, 1])
    hue = np.radians(np.interp(t, knots[:, 0], knots[:, 2]))
    # largest chroma scale in [0, 1] that keeps each color inside sRGB (bisection; 0 is always inside)
    lo, hi = np.zeros_like(t), np.ones_like(t)
    inside = _in_gamut(lightness, chroma, hue)
    lo[inside] = 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        ok = _in_gamut(lightness, chroma * mid, hue)
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    lab = np.stack([lightness, chroma * lo * np.cos(hue), chroma * lo * np.sin(hue)], axis=-1)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(lab, axis=0), axis=1))])
    even = np.linspace(0.0, arc[-1], 256)  # resample at equal perceptual distances along the path
    lab = np.stack([np.interp(even, arc, lab[:, c]) for c in range(3)], axis=-1)
    rgb = oklab_to_srgb(lab[:, 0], lab[:, 1], lab[:, 2])
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def _in_gamut(lightness, chroma, hue):
    rgb = oklab_to_linear_srgb(lightness, chroma * np.cos(hue), chroma * np.sin(hue))
    return np.all((rgb >= -1e-9) & (rgb <= 1 + 1e-9), axis=-1)


# OKLab <-> linear sRGB: the matrices published with OKLab.
_LMS_TO_RGB = np.array([[4.0767416621, -3.3077115913, 0.2309699292],
                        [-1.2684380046, 2.6097574011, -0.3413193965],
                        [-0.0041960863, -0.7034186147, 1.7076147010]])
_LAB_TO_LMS = np.array([[1.0, 0.3963377774, 0.2158037573],
                        [1.0, -0.1055613458, -0.0638541728],
                        [1.0, -0.0894841775, -1.2914855480]])
_RGB_TO_LMS = np.array([[0.4122214708, 0.5363325363, 0.0514459929],
                        [0.2119034982, 0.6806995451, 0.1073969566],
                        [0.0883024619, 0.2817188376, 0.6299787005]])
_LMS_TO_LAB = np.array([[0.2104542553, 0.7936177850, -0.0040720468],
                        [1.9779984951, -2.4285922050, 0.4505937099],
                        [0.0259040371, 0.7827717662, -0.8086757660]])


def oklab_to_linear_srgb(lightness, a, b):
    lms = np.stack([lightness, a, b], axis=-1) @ _LAB_TO_LMS.T
    return (lms ** 3) @ _LMS_TO_RGB.T


def oklab_to_srgb(lightness, a, b):
    """[..., 3] sRGB in 0..1 (gamma-encoded; out-of-gamut values are not clipped)."""
    linear = oklab_to_linear_srgb(lightness, a, b)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.abs(linear) ** (1 / 2.4) - 0.055)


def srgb_to_oklab(rgb):
    """[..., 3] sRGB in 0..1 -> [..., 3] OKLab (L, a, b)."""
    rgb = np.asarray(rgb, np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return np.cbrt(linear @ _RGB_TO_LMS.T) @ _LMS_TO_LAB.T
