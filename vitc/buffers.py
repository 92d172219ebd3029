"""Activation buffers of one forward shape: allocated once per (batch, height, width, threads), reused."""
from . import _vitc


class Buffers:
    """Activations for one (batch, channels, height, width, threads): allocated once, reused per call."""

    def __init__(self, model, batch, height, width, nthreads):
        cfg = model.config
        ph, pw = cfg.patch_hw
        self.grid = (height // ph, width // pw)
        n_patches = self.grid[0] * self.grid[1]
        self.seq = n_patches + model._num_prefix
        d = cfg.hidden_size
        self.hidden = _vitc.aligned_empty((batch * self.seq, d))
        # One workspace: the embedding's im2col runs before any layer, so it lives at the start of the layers'
        # workspace instead of in a buffer of its own.
        embed_floats = _vitc.embed_workspace_floats(batch, cfg.num_channels, height, width, ph, pw)
        layer_floats = model._layers[0].workspace_floats(nthreads, batch, self.seq)
        self.layer_ws = _vitc.aligned_empty(max(1, layer_floats, embed_floats))
        self.embed_ws = self.layer_ws[:max(1, embed_floats)]
