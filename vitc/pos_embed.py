"""Position embeddings at another input resolution: torch's bicubic resize (align_corners=False, A = -0.75,
with or without antialias) computed in float64 with numpy, and the interpolation rules of transformers'
ViT / DINOv2 embeddings."""
import numpy as np


def _bicubic_matrix(n_in, n_out, a=-0.75):
    """[n_out, n_in] float64 weights of torch's bicubic resize along one axis (align_corners=False,
    A = -0.75, source indices clamped to the border)."""
    m = np.zeros((n_out, n_in))
    scale = n_in / n_out
    for i in range(n_out):
        src = scale * (i + 0.5) - 0.5  # no clamp at 0 for cubic, as torch
        i0 = int(np.floor(src))
        t = src - i0
        coeffs = (((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
                  ((a + 2) * t - (a + 3)) * t * t + 1,
                  ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
                  ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a)
        for j, c in enumerate(coeffs):
            m[i, min(max(i0 - 1 + j, 0), n_in - 1)] += c
    return m


def bicubic_resize(grid, out_h, out_w):
    """grid [h, w, D] -> [out_h, out_w, D] float32, as torch.nn.functional.interpolate(mode="bicubic",
    align_corners=False) on the [1, D, h, w] permutation; computed in float64."""
    h, w, _ = grid.shape
    my, mx = _bicubic_matrix(h, out_h), _bicubic_matrix(w, out_w)
    out = np.einsum("yh,hwd->ywd", my, grid.astype(np.float64))
    out = np.einsum("xw,ywd->yxd", mx, out)
    return out.astype(np.float32)


def interpolate_pos_encoding(pos, num_prefix, grid, new_grid, square_input):
    """transformers' ViTEmbeddings.interpolate_pos_encoding: pos [num_prefix + gh*gw, D] -> the position
    embeddings of a new_grid (rows, cols) input. Unchanged when the patch count matches and the input is
    square (transformers' condition); otherwise the patch part is resized bicubically. transformers assumes a
    square grid of sqrt(num_positions); here the config's own (gh, gw) grid is used, the same when square."""
    gh, gw = grid
    nh, nw = new_grid
    if nh * nw == gh * gw and square_input:
        return pos
    patch = pos[num_prefix:].reshape(gh, gw, -1)
    resized = bicubic_resize(patch, nh, nw).reshape(nh * nw, -1)
    return np.ascontiguousarray(np.concatenate([pos[:num_prefix], resized], axis=0), dtype=np.float32)



def _bicubic_aa_matrix(n_in, n_out, a=-0.5):
    """[n_out, n_in] float64 weights of torch's antialiased bicubic resize along one axis (antialias=True,
    align_corners=False): PIL's filter (A = -0.5), stretched by the scale when downsampling, taps outside
    the input dropped and the weights renormalized to sum 1."""
    m = np.zeros((n_out, n_in))
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    support = 2.0 * stretch

    def cubic(x):
        x = abs(x)
        if x < 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        if x < 2:
            return (((x - 5) * x + 8) * x - 4) * a
        return 0.0

    for i in range(n_out):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        w = np.array([cubic((j - center + 0.5) / stretch) for j in range(lo, hi)])
        m[i, lo:hi] = w / w.sum()
    return m


def resize_grid(grid, out_h, out_w, antialias=False):
    """grid [h, w, D] -> [out_h, out_w, D] float32, as torch's interpolate(mode="bicubic",
    align_corners=False, antialias=antialias) on the [1, D, h, w] permutation; computed in float64."""
    if not antialias:
        return bicubic_resize(grid, out_h, out_w)
    h, w, _ = grid.shape
    my, mx = _bicubic_aa_matrix(h, out_h), _bicubic_aa_matrix(w, out_w)
    out = np.einsum("yh,hwd->ywd", my, grid.astype(np.float64))
    out = np.einsum("xw,ywd->yxd", mx, out)
    return out.astype(np.float32)


def interpolate_square_positions(pos, num_prefix, new_grid, square_input, antialias=False):
    """transformers' interpolate_pos_encoding of CLIP / SigLIP / DINOv2: pos [num_prefix + n*n, D] from a
    square n x n grid -> the new_grid's. Unchanged when the patch count matches and the input is square."""
    nh, nw = new_grid
    patches = pos.shape[0] - num_prefix
    if nh * nw == patches and square_input:
        return pos
    side = int(patches ** 0.5)
    resized = resize_grid(pos[num_prefix:].reshape(side, side, -1), nh, nw, antialias).reshape(nh * nw, -1)
    return np.ascontiguousarray(np.concatenate([pos[:num_prefix], resized], axis=0), dtype=np.float32)
