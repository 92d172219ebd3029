"""SigLIP image tower (also SigLIP2 FixRes checkpoints, model_type siglip): transformers' SiglipVisionModel
(modeling_siglip.py).

Differences from ViT: no CLS token (the patches alone, with patch bias and position_embedding [N, D]),
post_layernorm on every token, and the attention-pooling head: one learned probe attends over all tokens
(packed head.attention.in_proj_*), h = h + MLP(LN(h)), pooler_output = h[:, 0]. The probe's query is
fixed, so it is computed once at load and folded into the key weight: head h's scores over the tokens X are
q_h · (X W_k,hᵀ + b_k,h) = X · (W_k,hᵀ q_h) + a constant (which the softmax drops), and as its probabilities
sum to 1 its output is (p_h X) W_v,hᵀ + b_v,h. So the head never projects the tokens to keys and values:
a [tokens, D] · [D, heads] GEMM, a softmax, [heads, tokens] · [tokens, D] and [heads, D] · W_vᵀ instead of
the [tokens, D] · [D, 2D] GEMM (SigLIP-B/16: 4 instead of 460 MFLOP per image, ~3% of its forward)."""
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
    by rows: query rows [0, D) and key rows [D, 2D) read raw (folded at load: the module docstring), value
    rows [2D, 3D) packed as a [D, D] GEMM weight (the key bias drops out of the softmax)."""
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
            Param("k_w", (in_w, d, 2 * d), lambda c: (3 * c.hidden_size, c.hidden_size)),
            Param("kv_b", (in_b, d, 3 * d), lambda c: (3 * c.hidden_size,)),
            Param("v_w", (in_w, 2 * d, 3 * d), lambda c: (3 * c.hidden_size, c.hidden_size), packed=True),
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
            query = w.astype(np.float64) @ probe.reshape(d) + b  # the probe's fixed query
            heads = self.config.num_attention_heads
            hd = d // heads
            # row h: W_k,hᵀ q_h / sqrt(hd), so that X · row h = head h's scaled scores up to a constant
            k_w = model["k_w"].reshape(d, d).astype(np.float64).reshape(heads, hd, d)
            folded = np.einsum("hkd,hk->hd", k_w, query.reshape(heads, hd)) / np.sqrt(hd)
            self._score_w = _vitc.gemm_pack_nk(self._isa, folded.astype(np.float32))
            self._query = query.astype(np.float32)

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
        hd = d // heads
        scores = self._linear(last.reshape(b * s, d), (self._score_w, None), heads).reshape(b, s, heads)
        probs = np.exp(scores - scores.max(axis=1, keepdims=True))
        probs = np.ascontiguousarray((probs / probs.sum(axis=1, keepdims=True)).transpose(0, 2, 1))  # [B, H, S]
        mixed = np.empty((b, heads, d), np.float32)  # p_h X per image and head
        for i in range(b):
            _vitc.gemm(self._isa, 1, probs[i], _vitc.gemm_pack_kn(self._isa, last[i]), d, mixed[i])
        # head h's output: its rows of W_v applied to p_h X (the other heads' products are not used)
        values = self._linear(mixed.reshape(b * heads, d), (w["v_w"], None), d).reshape(b, heads, heads, hd)
        context = values[:, np.arange(heads), np.arange(heads)].reshape(b, d) + w["kv_b"][d:]
        h = self._linear(context, (w["out_w"], w["out_b"]), d)
        normed = self._layernorm(h, np.empty_like(h), "hln_g", "hln_b")
        mid = self._linear(normed, (w["hfc1_w"], w["hfc1_b"]), cfg.intermediate_size, act=cfg.hidden_act_code)
        return h + self._linear(mid, (w["hfc2_w"], w["hfc2_b"]), d)

    def _head_attention(self, last):
        """The pooling head's attention probabilities [N, heads, 1, S] (float64 math on float32 keys)."""
        b, s, d = last.shape
        heads = self.config.num_attention_heads
        hd = d // heads
        keys = (last.reshape(b * s, d).astype(np.float64) @ self._w["k_w"].reshape(d, d).astype(np.float64).T
                + self._w["kv_b"][:d]).reshape(b, s, heads, hd)
        query = self._query.astype(np.float64).reshape(heads, hd)
        logits = np.einsum("bshk,hk->bhs", keys, query) / np.sqrt(hd)
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
