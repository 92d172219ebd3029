"""Text towers: transformers' CLIPTextModel / CLIPTextModelWithProjection (modeling_clip.py) and
SiglipTextModel (modeling_siglip.py).

The encoder layer is the image towers' (CLIP layer names, pre-LN) run with the attention masks of the C
layer: CLIP causal plus the padding mask, SigLIP bidirectional (padding mask only if one is passed). The
embeddings are a row lookup (token_embedding[ids] + position_embedding[:S]), then final_layer_norm on
every token; pooling: CLIP the first EOS token (legacy eos_token_id == 2: argmax of the ids), SigLIP the
last position followed by its `head` Linear."""
import numpy as np

from .. import _vitc
from ..config_families import CLIPTextConfig, SiglipTextConfig
from ..modeling import _ViTBase, l2_normalize
from ..outputs import BaseModelOutputWithPooling, CLIPTextModelOutput
from .clip import layer_table
from .table import Param, WeightPlan

MAX_TEXT_BATCH = 1 << 16


def _d(c):
    return (c.hidden_size,)


LAYER = layer_table()
EMBEDDINGS = (
    Param("tok", "embeddings.token_embedding.weight", lambda c: (c.vocab_size, c.hidden_size)),
    Param("pos", "embeddings.position_embedding.weight", lambda c: (c.max_position_embeddings, c.hidden_size)),
    Param("ln_g", "final_layer_norm.weight", _d), Param("ln_b", "final_layer_norm.bias", _d),
)
SIGLIP_MODEL = EMBEDDINGS + (
    Param("head_w", "head.weight", lambda c: (c.projection_size, c.hidden_size), packed=True),
    Param("head_b", "head.bias", lambda c: (c.projection_size,)),
)
CLIP_PROJECTION = (Param("proj_w", "text_projection.weight", lambda c: (c.projection_dim, c.hidden_size),
                         packed=True),)
PREFIX = "text_model."
# tensors of a full two-tower checkpoint a text tower does not use
IMAGE_TOWER = ("vision_model.", "visual_projection.", "logit_scale", "logit_bias")


def text_plan(config, keys, shape_of, source, model, head, unused=()):
    """A plan for a text tower: its own checkpoint (saved with or without `text_model.`) or a two-tower one."""
    keys = list(keys)
    prefix = PREFIX if any(k.startswith(PREFIX) for k in keys) else ""
    summary = (f"hidden_size={config.hidden_size}, layers={config.num_hidden_layers}, intermediate_size="
               f"{config.intermediate_size}, vocab_size={config.vocab_size}, max_position_embeddings="
               f"{config.max_position_embeddings}")
    return WeightPlan(config, keys, shape_of, (model, LAYER, head), prefix, source, summary=summary,
                      ignored=lambda k: k.endswith("position_ids") or k.startswith(IMAGE_TOWER + tuple(unused)))


def check_text_inputs(input_ids, attention_mask, config):
    """(ids int64 [N, S], mask uint8 [N, S] or None) after transformers' checks, as clear errors."""
    if isinstance(input_ids, (str, bytes)):
        raise TypeError("input_ids must be token ids (an int array [batch, seq]); for text use the tokenizer "
                        "or model.embed_text(texts)")
    ids = np.asarray(input_ids)
    if ids.dtype.kind not in "iu" or ids.size and ids.dtype == np.bool_:
        raise TypeError(f"input_ids must be an integer array, got dtype {ids.dtype}")
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError(f"input_ids must be [batch, seq] with batch, seq >= 1, got shape {tuple(ids.shape)}")
    if ids.shape[0] > MAX_TEXT_BATCH:
        raise ValueError(f"input_ids: batch {ids.shape[0]} is more than {MAX_TEXT_BATCH}; split it")
    if ids.shape[1] > config.max_position_embeddings:
        raise ValueError(f"Sequence length must be less than max_position_embeddings (got `sequence length`: "
                         f"{ids.shape[1]} and max_position_embeddings: {config.max_position_embeddings})")
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= config.vocab_size:
        raise ValueError(f"input_ids: token id {lo if lo < 0 else hi} is outside the vocabulary "
                         f"[0, {config.vocab_size}) (config.vocab_size)")
    mask = None
    if attention_mask is not None:
        m = np.asarray(attention_mask)
        if m.ndim == 1:
            m = m[None]
        if m.shape != ids.shape:
            raise ValueError(f"attention_mask shape {tuple(m.shape)} != input_ids shape {tuple(ids.shape)}")
        if m.dtype.kind not in "biuf" or not np.isin(m, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
        mask = np.ascontiguousarray(m, dtype=np.uint8)
    return np.ascontiguousarray(ids, dtype=np.int64), mask


class _TextTower(_ViTBase):
    """Shared text-tower forward. Thread safety as _ViTBase (one call at a time per object)."""
    _causal = False
    _head = ()
    _unused = ()
    _tokenizer = None

    @property
    def attention(self):
        """As _ViTBase.attention; a mask keeps attention float32: always for CLIP (causal), for SigLIP on the
        calls that pass an attention_mask."""
        return "float32" if self._causal else _ViTBase.attention.fget(self)

    def _plan(self, config, keys, shape_of, source):
        return text_plan(config, keys, shape_of, source, self._model_table, self._head, self._unused)

    def _prefix_tokens(self, config):
        return 0

    def _setup(self, plan, model, head):
        d = self.config.hidden_size
        self._tok = model["tok"].reshape(-1, d)
        self._projection = head.get("proj_w")

    @property
    def tokenizer(self):
        """The checkpoint's tokenizer (vitc.AutoTokenizer: its tokenizer.json), made on first use."""
        if self._tokenizer is None:
            from ..auto import AutoTokenizer
            self._tokenizer = AutoTokenizer.from_pretrained(self.name_or_path)
        return self._tokenizer

    def _encode_text(self, ids, mask, output_hidden_states, output_attentions):
        """Embeddings and every layer, then final_layer_norm: (last [N, S, D], hidden_states, attentions)."""
        cfg, nt = self.config, self._nthreads()
        b, s = ids.shape
        d = cfg.hidden_size
        hidden = _vitc.aligned_empty((b * s, d))
        hidden3 = hidden.reshape(b, s, d)
        np.add(self._tok[ids], self._pos[:s], out=hidden3)
        ws = _vitc.aligned_empty(max(1, self._layers[0].workspace_floats(nt, b, s)))
        states = [hidden3.copy()] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self._layers:
            probs = np.empty((b, cfg.num_attention_heads, s, s), np.float32) if output_attentions else None
            layer.forward(nt, hidden, b, ws, probs, None, causal=self._causal, key_mask=mask)
            if output_hidden_states:
                states.append(hidden3.copy())
            if output_attentions:
                attentions.append(probs)
        last = np.empty((b, s, d), np.float32)
        self._layernorm(hidden, last.reshape(b * s, d))
        return (last, tuple(states) if states is not None else None,
                tuple(attentions) if attentions is not None else None)

    def _run(self, input_ids, attention_mask, output_hidden_states, output_attentions):
        ids, mask = check_text_inputs(input_ids, attention_mask, self.config)
        with self._calling():
            last, states, attentions = self._encode_text(ids, mask, output_hidden_states, output_attentions)
            pooled = self._pool(ids, last)
            out = self._outputs_text(last, pooled)
        out.hidden_states, out.attentions = states, attentions
        return out

    def __call__(self, input_ids=None, attention_mask=None, output_hidden_states=False, output_attentions=False,
                 return_dict=True):
        if input_ids is None:
            raise ValueError("You have to specify input_ids")
        out = self._run(input_ids, attention_mask, output_hidden_states, output_attentions)
        return out if return_dict else out.to_tuple()

    forward = __call__

    def _outputs_text(self, last, pooled):
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=pooled)

    def _embedding(self, out):
        return out.pooler_output

    def embed_text(self, texts, normalize=False):
        """Embeddings [N, E] of a string or a list of strings, tokenized as the family's processor does."""
        enc = self.tokenizer(texts, **self._tokenize_kwargs())
        emb = self._embedding(self(**enc))
        return l2_normalize(emb) if normalize else emb

    def embed(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is a text tower: use embed_text(texts)")

    _repr_fields = ("vocab_size", "max_position_embeddings")


class CLIPTextModel(_TextTower):
    """transformers.CLIPTextModel: causal + padding mask, last_hidden_state after final_layer_norm,
    pooler_output = the first EOS token's row (legacy eos_token_id == 2: the largest id's, as transformers)."""
    config_class = CLIPTextConfig
    _causal = True
    _model_table = EMBEDDINGS
    _unused = ("text_projection.",)

    def _tokenize_kwargs(self):
        return {"padding": True}

    def _pool(self, ids, last):
        eos = self.config.eos_token_id
        eos = eos[0] if isinstance(eos, (list, tuple)) else eos
        where = ids.argmax(-1) if eos == 2 else (ids == eos).argmax(-1)
        return last[np.arange(len(ids)), where]


class CLIPTextModelWithProjection(CLIPTextModel):
    """transformers.CLIPTextModelWithProjection: text_embeds = text_projection(pooled), no bias."""
    _head = CLIP_PROJECTION
    _unused = ()

    def _outputs_text(self, last, pooled):
        embeds = self._linear(np.ascontiguousarray(pooled), (self._projection, None), self.config.projection_dim)
        return CLIPTextModelOutput(text_embeds=embeds, last_hidden_state=last)

    def _embedding(self, out):
        return out.text_embeds


class SiglipTextModel(_TextTower):
    """transformers.SiglipTextModel: bidirectional (a padding mask only when passed; SigLIP's processor
    passes none and pads to 64), pooler_output = head(last position after final_layer_norm)."""
    config_class = SiglipTextConfig
    _model_table = SIGLIP_MODEL

    def _tokenize_kwargs(self):  # the processor's: padding="max_length", 64 (= max_position_embeddings)
        return {"padding": "max_length", "max_length": self.config.max_position_embeddings}

    def _pool(self, ids, last):
        pooled = np.ascontiguousarray(last[:, -1])
        return self._linear(pooled, (self._w["head_w"], self._w["head_b"]), self.config.projection_size)
