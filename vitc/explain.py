"""Where a ViT looks: attention rollout and CLS attention maps on the patch grid, from one forward pass.

    maps = vitc.attention_rollout(model, ["cat.jpg"])        # float32 [N, grid_h, grid_w]
    maps = vitc.cls_attention(model, ["cat.jpg"], layer=-1)  # CLS row of the last layer, heads averaged
    vitc.overlay("cat.jpg", maps[0], model=model).save("cat.rollout.png")

Everything is read from the model's public outputs (`model(pixels, output_attentions=True)`) and config, with
numpy only. Model families differ in which tokens precede the patch grid and which attention row says where
the model looks: that is one `AttentionSource` per config.model_type in FAMILIES (see register_family).
"""
import numpy as np

HEAD_FUSIONS = ("mean", "max", "min")


class AttentionSource:
    """How one model family exposes the attention a map is read from.

    prefix_tokens(config) -> int: tokens before the patch grid in the sequence (ViT: CLS; DeiT: CLS and
        distillation; DINOv2 with registers: 1 + config.num_register_tokens; SigLIP: 0).
    query_token: the token whose attention row is "where the model looks" (0: CLS), or None for a family
        without one (SigLIP), which must give `readout`.
    readout(outputs) -> float array [N, heads, S] or None: the attention of a pooling head's query over the
        encoder's output tokens (SigLIP's attention-pooling head). Where given, it is the last step of the
        rollout (no identity is added: the head's residual path bypasses the tokens) and what
        cls_attention(layer=-1) shows."""

    def __init__(self, prefix_tokens, query_token=0, readout=None):
        if query_token is None and readout is None:
            raise ValueError("a family without a query token needs a readout (pooling-head attention)")
        self.prefix_tokens, self.query_token, self.readout = prefix_tokens, query_token, readout


def _pooling_head_attention(outputs):
    """SigLIP: the attention-pooling head's probe over the tokens, [N, heads, S]."""
    attention = getattr(outputs, "pooler_attentions", None)
    if attention is None:
        raise ValueError("this SigLIP model has no attention-pooling head (vision_use_head is false), so no "
                         "attention says where it looks")
    return np.asarray(attention)[:, :, 0]


_CLS = AttentionSource(prefix_tokens=lambda config: 1)
_SIGLIP = AttentionSource(prefix_tokens=lambda config: 0, query_token=None, readout=_pooling_head_attention)

# config.model_type (of the image tower: a two-tower model's maps are its vision_model's) -> AttentionSource.
# DINO (v1) checkpoints are model_type "vit".
FAMILIES = {
    "vit": _CLS,
    "deit": AttentionSource(prefix_tokens=lambda config: 2),  # [CLS, distillation, patches...]
    "clip_vision_model": _CLS,  # CLS, then the patches (pre_layrnorm changes no attention)
    "dinov2": _CLS,
    "dinov2_with_registers": AttentionSource(prefix_tokens=lambda config: 1 + config.num_register_tokens),
    "siglip_vision_model": _SIGLIP,  # no CLS: the pooling head's attention is the readout
}


def register_family(model_type, source):
    """Teach the attention maps a new family: FAMILIES[model_type] = source (an AttentionSource)."""
    if not isinstance(source, AttentionSource):
        raise TypeError(f"expected an AttentionSource, got {type(source).__name__}")
    FAMILIES[model_type] = source


def family_of(config):
    model_type = getattr(config, "model_type", None)
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise ValueError(f"no attention-map rule for model_type {model_type!r} (known: {', '.join(sorted(FAMILIES))}); "
                         "add one with vitc.explain.register_family") from None


class AttentionMaps:
    """The attention probabilities of one forward pass, and the maps read from them.

    outputs: the model's output with `attentions` (a tuple of [N, heads, S, S] arrays, one per layer);
    grid: (rows, cols) of patches of the input; source: the family's AttentionSource."""

    def __init__(self, outputs, grid, source, num_prefix):
        attentions = getattr(outputs, "attentions", None)
        if not attentions:
            raise ValueError("the model output has no attentions: call the model with output_attentions=True")
        self.outputs, self.attentions, self.source = outputs, attentions, source
        self.grid, self.num_prefix = tuple(grid), int(num_prefix)
        n, heads, s, s2 = attentions[0].shape
        if s != s2 or s != self.num_prefix + self.grid[0] * self.grid[1]:
            raise ValueError(f"attention maps are {s}x{s2} tokens, expected {self.num_prefix} prefix tokens + "
                             f"{self.grid[0]}x{self.grid[1]} patches = {self.num_prefix + self.grid[0] * self.grid[1]}")
        self.batch, self.heads, self.tokens = n, heads, s
        self._readout = source.readout(outputs) if source.readout is not None else None

    @classmethod
    def compute(cls, model, images, processor=None):
        """Run the model once (output_attentions=True) on images: paths, PIL images, HWC uint8 arrays, a list
        of them (through `processor`, default the model's image processor) or a float [N, C, H, W] array.
        An input size other than the config's runs with interpolate_pos_encoding (maps on its own grid)."""
        model = image_tower(model)
        pixels = preprocess(model, images, processor)
        return cls.of_forward(model, pixels, forward(model, pixels))

    @classmethod
    def of_forward(cls, model, pixels, outputs):
        """The maps of a forward already run on pixels [N, C, H, W] (e.g. the one that gave the labels)."""
        config = image_tower(model).config
        ph, pw = config.patch_hw
        grid = (pixels.shape[2] // ph, pixels.shape[3] // pw)
        source = family_of(config)
        return cls(outputs, grid, source, source.prefix_tokens(config))

    # ---- maps -------------------------------------------------------------------------------------------
    def rollout(self, head_fusion="mean", discard_ratio=0.0):
        """Attention rollout (Abnar & Zuidema 2020), float32 [N, rows, cols]: per layer the heads fused
        (mean / max / min), the lowest `discard_ratio` of the fused entries zeroed (the query token's own
        entry kept), the identity added (the residual path) and rows renormalized; the layers multiplied
        (last @ ... @ first) and the query token's row read over the patch tokens. Computed as that one row
        times the layers from the last backwards (a vector-matrix product per layer), in float64."""
        if head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
        if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, (int, float)) \
                or not 0.0 <= discard_ratio < 1.0:
            raise ValueError(f"discard_ratio must be a number in [0, 1), got {discard_ratio!r}")
        query = self.source.query_token
        if self._readout is not None:
            row = _fuse_heads(self._readout, head_fusion)  # [N, S]
        else:
            row = np.zeros((self.batch, self.tokens))
            row[:, query] = 1.0
        for layer in reversed(self.attentions):
            fused = _fuse_heads(layer, head_fusion)  # [N, S, S]
            if discard_ratio > 0:
                _discard_lowest(fused, discard_ratio, query)
            fused += np.eye(self.tokens)
            fused /= fused.sum(axis=-1, keepdims=True)
            row = (row[:, None, :] @ fused)[:, 0]
        return self._patches(row)

    def cls_attention(self, layer=-1, head=None):
        """Attention of the query token (CLS) over the patch tokens in one layer, float32: [N, rows, cols]
        for head=None (heads averaged) or an int head; head="all": [N, heads, rows, cols].
        A family with a pooling-head readout (no CLS) shows the head's attention; layer must be -1 there."""
        heads = self._heads_row(layer)  # [N, H, S]
        if head is None:
            return self._patches(heads.astype(np.float64).mean(axis=1))
        if isinstance(head, str) and head == "all":
            return self._patches(heads)
        if isinstance(head, bool) or not isinstance(head, (int, np.integer)) or not -self.heads <= head < self.heads:
            raise ValueError(f"head must be None, 'all' or an int in [{-self.heads}, {self.heads}), got {head!r}")
        return self._patches(heads[:, head])

    def _heads_row(self, layer):
        count = len(self.attentions)
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -count <= layer < count:
            raise ValueError(f"layer must be an int in [{-count}, {count}) (the model has {count} layers), "
                             f"got {layer!r}")
        if self.source.query_token is None:
            if layer not in (-1, count - 1):
                raise ValueError("this family has no CLS token: only the pooling head's attention (layer=-1) "
                                 "is a map")
            return np.asarray(self._readout)
        return np.asarray(self.attentions[layer])[:, :, self.source.query_token]

    def _patches(self, rows):
        """[..., S] token values -> float32 [..., rows, cols] over the patch tokens."""
        rows = np.asarray(rows)[..., self.num_prefix:]
        return np.ascontiguousarray(rows.reshape(rows.shape[:-1] + self.grid), dtype=np.float32)


def _fuse_heads(attention, head_fusion):
    """[N, H, ...] -> float64 [N, ...] (a new array; max / min are exact in the input's precision)."""
    attention = np.asarray(attention)
    if head_fusion == "mean":
        return attention.mean(axis=1, dtype=np.float64)
    fused = attention.max(axis=1) if head_fusion == "max" else attention.min(axis=1)
    return fused.astype(np.float64)


def _discard_lowest(fused, ratio, query):
    """Zero, per image, the int(ratio * S * S) smallest entries of fused [N, S, S] in place (ties in index
    order), sparing the query token's own entry [query, query] where it is among them."""
    n, s, _ = fused.shape
    count = int(ratio * s * s)
    if count == 0:
        return
    flat = fused.reshape(n, s * s)
    keep = query * s + query if query is not None else -1
    for i in range(n):
        lowest = np.argsort(flat[i], kind="stable")[:count]
        flat[i, lowest[lowest != keep]] = 0.0


# ---- inputs -------------------------------------------------------------------------------------------
def image_tower(model):
    """The model whose attentions make the maps: a two-tower model's (CLIPModel, SiglipModel) vision_model."""
    return model.vision_model if hasattr(model, "text_model") and hasattr(model, "vision_model") else model


def preprocess(model, images, processor=None):
    """pixel_values float32 [N, C, H, W] of images: a rank-4 array passes through, anything else goes
    through processor (default: the model's image processor)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return np.asarray(images, np.float32)
    if processor is None:
        from .pipeline import pixel_values_for
        return pixel_values_for(model, images)
    return processor(images)["pixel_values"]


def forward(model, pixels, **kwargs):
    """model(pixels, output_attentions=True), with interpolate_pos_encoding where the input size is not the
    config's (the maps are then on the input's own patch grid)."""
    interpolate = tuple(pixels.shape[2:]) != tuple(model.config.image_hw)
    return model(pixels, output_attentions=True, interpolate_pos_encoding=interpolate, **kwargs)


# ---- the public functions -----------------------------------------------------------------------------
def attention_rollout(model, images, head_fusion="mean", discard_ratio=0.0, processor=None):
    """Attention rollout maps float32 [N, grid_h, grid_w] of images (paths, PIL images, uint8 arrays, lists
    of them, or a preprocessed float [N, C, H, W] array); see AttentionMaps.rollout."""
    return AttentionMaps.compute(model, images, processor).rollout(head_fusion, discard_ratio)


def cls_attention(model, images, layer=-1, head=None, processor=None):
    """CLS attention over the patches in one layer: float32 [N, grid_h, grid_w] (heads averaged, or one
    head), or [N, heads, grid_h, grid_w] for head="all"; see AttentionMaps.cls_attention."""
    return AttentionMaps.compute(model, images, processor).cls_attention(layer, head)
