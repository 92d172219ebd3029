"""SigLIP image tower (also SigLIP2 FixRes checkpoints, model_type siglip): transformers' SiglipVisionModel
(modeling_siglip.py).

Differences from ViT: no CLS token (the patches alone, with patch bias and position_embedding [N, D]),
post_layernorm on every token, and the attention-pooling head: one learned probe attends over all tokens
(packed head.attention.in_proj_*), h = h + MLP(LN(h)), pooler_output = h[:, 0]. The probe's query is
fixed, so it is computed once at load; the head's key/value rows run as one GEMM over the tokens, then the
C attention with seq_q = 1 != seq_kv."""
import numpy as np

from ..config_families import SiglipVisionConfig
from .. import _vitc
from ..modeling import _ViTBase
from ..outputs import SiglipVisionModelOutput
from ..pos_embed import interpolate_square_positions
from .clip import layer_table, tower_plan
from .table import Param


def _d(c):
    return (c.hidden_size,)


LAYER = layer_table()


def model_table(config):
    """Embeddings, post_layernorm and (vision_use_head) the pooling head; the head's packed in_proj is split
    by rows: query rows [0, D) read raw (the probe's query is computed at load), key|value rows [D, 3D)
    packed as one [2D, D] GEMM weight."""
    d = config.hidden_size
    params = [
        Param("patch_w", "embeddings.patch_embedding.weight",
              lambda c: (c.hidden_size, c.num_channels) + tuple(c.patch_hw), packed=True),
        Param("patch_b", "embeddings.patch_embedding.bias", _d),
        Param("pos", "embeddings.position_embedding.weight", lambda c: (c.num_patches, c.hidden_size)),
        Param("post_g", "post_layernorm.weight", _d), Param("post_b", "post_layernorm.bias", _d),
    ]
    if config.vision_use_head:
        in_w, in_b = "head.attention.in_proj_weight", "head.attention.in_proj_bias"
        params += [
            Param("probe", "head.probe", lambda c: (1, 1, c.hidden_size)),
            Param("q_w", (in_w, 0, d), lambda c: (3 * c.hidden_size, c.hidden_size)),
            Param("q_b", (in_b, 0, d), lambda c: (3 * c.hidden_size,)),
            Param("kv_w", (in_w, d, 3 * d), lambda c: (3 * c.hidden_size, c.hidden_size), packed=True),
            Param("kv_b", (in_b, d, 3 * d), lambda c: (3 * c.hidden_size,)),
            Param("out_w", "head.attention.out_proj.weight", lambda c: (c.hidden_size, c.hidden_size), packed=True),
            Param("out_b", "head.attention.out_proj.bias", _d),
            Param("hln_g", "head.layernorm.weight", _d), Param("hln_b", "head.layernorm.bias", _d),
            Param("hfc1_w", "head.mlp.fc1.weight", lambda c: (c.intermediate_size, c.hidden_size), packed=True),
            Param("hfc1_b", "head.mlp.fc1.bias", lambda c: (c.intermediate_size,)),
            Param("hfc2_w", "head.mlp.fc2.weight", lambda c: (c.hidden_size, c.intermediate_size), packed=True),
            Param("hfc2_b", "head.mlp.fc2.bias", _d),
        ]
    return tuple(params)


class SiglipVisionModel(_ViTBase):
    """transformers.SiglipVisionModel: last_hidden_state = post_layernorm(encoder output) on every token,
    pooler_output = the attention-pooling head's output (None when vision_use_head is false)."""
    _processor_family = "Siglip"
    config_class = SiglipVisionConfig

    def _plan(self, config, keys, shape_of, source):
        return tower_plan(config, keys, shape_of, source, model_table(config), LAYER, ())

    def _prefix_tokens(self, config):
        return 0

    def _setup(self, plan, model, head):
        d = self.config.hidden_size
        self._has_head = bool(self.config.vision_use_head)
        if self._has_head:
            probe, w, b = model["probe"].astype(np.float64), model["q_w"].reshape(d, d), model["q_b"]
            self._query = (w.astype(np.float64) @ probe + b).astype(np.float32)  # the probe's fixed query

    def _grid_positions(self, grid, height, width, interpolate):
        if not interpolate:
            return self._pos
        return interpolate_square_positions(self._pos, 0, grid, height == width)

    def _prefix_rows(self, pos):
        return None, np.ascontiguousarray(pos)  # no CLS: the patches alone

    def _outputs(self, bufs, b):
        s, d = bufs.seq, self.config.hidden_size
        last = np.empty((b, s, d), np.float32)
        self._layernorm(bufs.hidden, last.reshape(b * s, d), "post_g", "post_b")
        pooled = self._pool(last) if self._has_head else None
        return SiglipVisionModelOutput(last_hidden_state=last, pooler_output=pooled)

    def _pool(self, last):
        """SiglipMultiheadAttentionPoolingHead: MHA(probe, X, X), then h + MLP(LN(h))."""
        cfg, w = self.config, self._w
        b, s, d = last.shape
        heads = cfg.num_attention_heads
        kv = self._linear(last.reshape(b * s, d), (w["kv_w"], w["kv_b"]), 2 * d)  # [B*S, K | V]
        query = np.ascontiguousarray(np.broadcast_to(self._query, (b, d)))
        context = np.empty((b, d), np.float32)
        _vitc.attention_general(self._isa, self._nthreads(), query, kv[:, :d], kv[:, d:], b, heads, context)
        h = self._linear(context, (w["out_w"], w["out_b"]), d)
        normed = self._layernorm(h, np.empty_like(h), "hln_g", "hln_b")
        mid = self._linear(normed, (w["hfc1_w"], w["hfc1_b"]), cfg.intermediate_size, act=cfg.hidden_act_code)
        return h + self._linear(mid, (w["hfc2_w"], w["hfc2_b"]), d)

    def _head_attention(self, last):
        """The pooling head's attention probabilities [N, heads, 1, S] (float64 math on float32 keys)."""
        b, s, d = last.shape
        heads = self.config.num_attention_heads
        with self._calling():
            kv = self._linear(last.reshape(b * s, d), (self._w["kv_w"], self._w["kv_b"]), 2 * d)
        keys = kv[:, :d].reshape(b, s, heads, d // heads).astype(np.float64)
        query = self._query.astype(np.float64).reshape(heads, d // heads)
        logits = np.einsum("bshk,hk->bhs", keys, query) / np.sqrt(d // heads)
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return (probs / probs.sum(axis=-1, keepdims=True)).astype(np.float32)[:, :, None, :]

    def _embedding(self, out):
        return out.pooler_output if out.pooler_output is not None else out.last_hidden_state.mean(axis=1)

    def encode(self, pixel_values, output_hidden_states=False, output_attentions=False,
               interpolate_pos_encoding=False, return_dict=True):
        """_ViTBase.encode; with output_attentions=True also pooler_attentions (SiglipVisionModelOutput)."""
        out = super().encode(pixel_values, output_hidden_states, output_attentions, interpolate_pos_encoding)
        if output_attentions and self._has_head:
            out.pooler_attentions = self._head_attention(out.last_hidden_state)
        return out if return_dict else out.to_tuple()

    __call__ = encode
    forward = __call__
