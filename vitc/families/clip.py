"""CLIP image tower: transformers' CLIPVisionModel / CLIPVisionModelWithProjection (modeling_clip.py).

Differences from ViT: class_embedding [D], patch conv without bias, position_embedding [N+1, D],
pre_layrnorm after the embeddings, no LayerNorm on last_hidden_state, post_layernorm on the CLS token only
(pooler_output), visual_projection without bias (image_embeds); quick_gelu (OpenAI) or gelu (LAION)."""
import numpy as np

from ..config_families import CLIPVisionConfig
from ..modeling import _ViTBase
from ..outputs import BaseModelOutputWithPooling, CLIPVisionModelOutput
from ..pos_embed import interpolate_square_positions
from .table import Param, WeightPlan


def _d(c):
    return (c.hidden_size,)


def _dd(c):
    return (c.hidden_size, c.hidden_size)


def layer_table(layers="encoder.layers.{i}."):
    """CLIP-style layer names (SigLIP uses the same)."""
    at = layers + "self_attn."
    return (
        Param("ln1_g", layers + "layer_norm1.weight", _d), Param("ln1_b", layers + "layer_norm1.bias", _d),
        Param("ln2_g", layers + "layer_norm2.weight", _d), Param("ln2_b", layers + "layer_norm2.bias", _d),
        Param("qkv_w", tuple(at + f"{x}_proj.weight" for x in "qkv"), _dd, packed=True),
        Param("qkv_b", tuple(at + f"{x}_proj.bias" for x in "qkv"), _d),
        Param("proj_w", at + "out_proj.weight", _dd, packed=True), Param("proj_b", at + "out_proj.bias", _d),
        Param("fc1_w", layers + "mlp.fc1.weight", lambda c: (c.intermediate_size, c.hidden_size), packed=True),
        Param("fc1_b", layers + "mlp.fc1.bias", lambda c: (c.intermediate_size,)),
        Param("fc2_w", layers + "mlp.fc2.weight", lambda c: (c.hidden_size, c.intermediate_size), packed=True),
        Param("fc2_b", layers + "mlp.fc2.bias", _d),
    )


LAYER = layer_table()
MODEL = (
    Param("cls", "embeddings.class_embedding", _d),
    Param("pos", "embeddings.position_embedding.weight", lambda c: (c.num_patches + 1, c.hidden_size)),
    Param("patch_w", "embeddings.patch_embedding.weight",
          lambda c: (c.hidden_size, c.num_channels) + tuple(c.patch_hw), packed=True),
    Param("pre_g", "pre_layrnorm.weight", _d), Param("pre_b", "pre_layrnorm.bias", _d),
    Param("post_g", "post_layernorm.weight", _d), Param("post_b", "post_layernorm.bias", _d),
)
PROJECTION = (Param("proj_w", "visual_projection.weight", lambda c: (c.projection_dim, c.hidden_size), packed=True),)
PREFIX = "vision_model."


# tensors of a full two-tower checkpoint that an image tower does not use
OTHER_TOWER = ("text_model.", "text_projection.", "logit_scale", "logit_bias", "visual_projection.")


def tower_plan(config, keys, shape_of, source, model, layer, head):
    """A plan for an image tower: its own checkpoint (transformers saves CLIPVisionModel without the
    `vision_model.` prefix, the *WithProjection class with it) or a full two-tower model's (text tower,
    projections, logit scale: ignored, as transformers' vision classes do); int64 position_ids skipped."""
    keys = list(keys)
    prefix = PREFIX if any(k.startswith(PREFIX) for k in keys) else ""
    return WeightPlan(config, keys, shape_of, (model, layer, head), prefix, source,
                      ignored=lambda k: k.endswith("position_ids") or k.startswith(OTHER_TOWER))


class CLIPVisionModel(_ViTBase):
    """transformers.CLIPVisionModel: last_hidden_state (encoder output, no final LayerNorm) and
    pooler_output = post_layernorm(CLS). Loads a CLIPVisionModel checkpoint or a full CLIPModel one."""
    _processor_family = "CLIP"
    _embedding_from_first_token = True
    config_class = CLIPVisionConfig
    _head = ()

    def _plan(self, config, keys, shape_of, source):
        return tower_plan(config, keys, shape_of, source, MODEL, LAYER, self._head)

    def _prefix_tokens(self, config):
        return 1

    def _setup(self, plan, model, head):
        self._projection = head.get("proj_w")

    def _patch_bias(self):
        return None  # the patch conv has no bias

    def _grid_positions(self, grid, height, width, interpolate):
        if not interpolate:
            return self._pos
        return interpolate_square_positions(self._pos, 1, grid, height == width)

    def _prefix_rows(self, pos):
        return (self._w["cls"] + pos[0])[None], np.ascontiguousarray(pos[1:])

    def _after_embeddings(self, hidden):
        hidden[:] = self._layernorm(hidden, np.empty_like(hidden), "pre_g", "pre_b")

    def _pooled(self, bufs, b):
        s, d = bufs.seq, self.config.hidden_size
        last = bufs.hidden.reshape(b, s, d).copy()
        pooled = self._layernorm(last[:, 0], np.empty((b, d), np.float32), "post_g", "post_b")
        return last, pooled

    def _outputs(self, bufs, b):
        last, pooled = self._pooled(bufs, b)
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=pooled)

    __call__ = _ViTBase.encode
    forward = __call__


class CLIPVisionModelWithProjection(CLIPVisionModel):
    """transformers.CLIPVisionModelWithProjection: image_embeds = visual_projection(pooler_output)."""
    _head = PROJECTION

    def _outputs(self, bufs, b):
        last, pooled = self._pooled(bufs, b)
        embeds = self._linear(pooled, (self._projection, None), self.config.projection_dim)
        return CLIPVisionModelOutput(image_embeds=embeds, last_hidden_state=last)

    def _embedding(self, out):
        return out.image_embeds
