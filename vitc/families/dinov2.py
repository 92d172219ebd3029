"""DINOv2 (with and without registers): transformers' Dinov2Model / Dinov2WithRegistersModel /
Dinov2ForImageClassification (modeling_dinov2*.py).

Differences from ViT: layer scale after attention and MLP (folded into the projection rows and bias at
load time: lambda * (W x + b) = (lambda W) x + lambda b), MLP width hidden_size * mlp_ratio, register
tokens between CLS and patches (no position rows of their own), position embeddings resized to every input
(bicubic; antialiased for the registers variant, as the installed transformers does), pooler = the CLS
row after the final LayerNorm. The giant's SwiGLU FFN runs as the C layer's "swiglu" MLP kind."""
import numpy as np

from ..config_families import Dinov2Config, Dinov2WithRegistersConfig
from ..modeling import _ViTBase
from ..outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from ..pos_embed import interpolate_square_positions
from .table import Param, WeightPlan, WeightsMismatchError
from .vit import LAYER as VIT_LAYER


def _d(c):
    return (c.hidden_size,)


def _layer():
    """ViT's layer table with DINOv2's names: norm1/norm2, mlp.fc1/fc2, layer scales folded in."""
    rename = {"layernorm_before": "norm1", "layernorm_after": "norm2", "intermediate.dense": "mlp.fc1",
              "output.dense": "mlp.fc2"}
    scale = {"proj_w": "layer_scale1", "proj_b": "layer_scale1", "fc2_w": "layer_scale2", "fc2_b": "layer_scale2"}
    out = []
    for p in VIT_LAYER:
        names = []
        for n in p.names:
            for old, new in rename.items():
                if ".attention.output." not in n:
                    n = n.replace(old, new)
            names.append(n)
        s = scale.get(p.field)
        out.append(Param(p.field, tuple(names), p.shape, packed=p.packed, when=p.when,
                         scale=None if s is None else f"encoder.layer.{{i}}.{s}.lambda1"))
    return tuple(out)


LAYER = _layer()
# the giant's SwiGLU FFN: weights_in [2 * inter, D] = gate | up rows (the C "swiglu" MLP's fc1), weights_out
LAYER_SWIGLU = tuple(
    Param("fc1_w", "encoder.layer.{i}.mlp.weights_in.weight", lambda c: (2 * c.intermediate_size, c.hidden_size),
          packed=True) if p.field == "fc1_w" else
    Param("fc1_b", "encoder.layer.{i}.mlp.weights_in.bias", lambda c: (2 * c.intermediate_size,))
    if p.field == "fc1_b" else
    Param("fc2_w", "encoder.layer.{i}.mlp.weights_out.weight", p.shape, packed=True, scale=p.scale)
    if p.field == "fc2_w" else
    Param("fc2_b", "encoder.layer.{i}.mlp.weights_out.bias", p.shape, scale=p.scale) if p.field == "fc2_b" else p
    for p in LAYER)
MODEL = (
    Param("cls", "embeddings.cls_token", lambda c: (1, 1, c.hidden_size)),
    Param("pos", "embeddings.position_embeddings", lambda c: (1, c.num_patches + 1, c.hidden_size)),
    Param("patch_w", "embeddings.patch_embeddings.projection.weight",
          lambda c: (c.hidden_size, c.num_channels) + tuple(c.patch_hw), packed=True),
    Param("patch_b", "embeddings.patch_embeddings.projection.bias", _d),
    Param("registers", "embeddings.register_tokens", lambda c: (1, getattr(c, "num_register_tokens", 0), c.hidden_size),
          when=lambda c: c.model_type == "dinov2_with_registers"),  # saved even when [1, 0, D]
    Param("ln_g", "layernorm.weight", _d), Param("ln_b", "layernorm.bias", _d),
)
CLASSIFIER = (Param("head_w", "classifier.weight", lambda c: (c.num_labels, 2 * c.hidden_size), packed=True,
                    when=lambda c: c.num_labels > 0),
              Param("head_b", "classifier.bias", lambda c: (c.num_labels,), when=lambda c: c.num_labels > 0))


class Dinov2Model(_ViTBase):
    """transformers.Dinov2Model: last_hidden_state after the final LayerNorm, pooler_output = its CLS row.
    Any input size runs (positions resized as transformers does)."""
    _processor_family = "Bit"
    _embedding_from_first_token = True
    config_class = Dinov2Config
    _always_interpolate = True
    _antialias = False
    _base_prefix = "dinov2."

    def _plan(self, config, keys, shape_of, source):
        keys = list(keys)
        has_prefix = any(k.startswith(self._base_prefix) for k in keys)
        if self._with_head and not has_prefix:
            raise WeightsMismatchError(f"{source}: no tensor starts with {self._base_prefix!r}: a base-model "
                                       f"checkpoint without a classification head; load it with Dinov2Model")
        prefix = self._base_prefix if has_prefix else ""
        head = CLASSIFIER if self._with_head else ()
        relevant = (lambda k: True) if self._with_head or not prefix else (lambda k: k.startswith(prefix))
        layer = LAYER_SWIGLU if config.use_swiglu_ffn else LAYER
        return WeightPlan(config, keys, shape_of, (MODEL, layer, head), prefix, source,
                          ignored=lambda k: k == prefix + "embeddings.mask_token", relevant=relevant)

    def _mlp_kind(self, config):
        return "swiglu" if config.use_swiglu_ffn else "standard"

    def _prefix_tokens(self, config):
        return 1 + getattr(config, "num_register_tokens", 0)

    def _setup(self, plan, model, head):
        r = getattr(self.config, "num_register_tokens", 0)
        self._registers = model["registers"].reshape(r, -1) if r else None
        self._head = (head["head_w"], head["head_b"]) if head.get("head_w") is not None else None

    def _grid_positions(self, grid, height, width, interpolate):
        return interpolate_square_positions(self._pos, 1, grid, height == width, antialias=self._antialias)

    def _prefix_rows(self, pos):
        cls = (self._w["cls"] + pos[0])[None]  # registers follow CLS, without position rows of their own
        prefix = cls if self._registers is None else np.concatenate([cls, self._registers])
        return np.ascontiguousarray(prefix, np.float32), np.ascontiguousarray(pos[1:])

    def _final(self, bufs, b):
        s, d = bufs.seq, self.config.hidden_size
        last = np.empty((b, s, d), np.float32)
        self._layernorm(bufs.hidden, last.reshape(b * s, d))
        return last

    def _outputs(self, bufs, b):
        last = self._final(bufs, b)
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=last[:, 0].copy())

    def _embedding(self, out):
        return out.pooler_output

    def embed(self, images, all_tokens=False, normalize=False, mean_patches=False):
        """CLS embeddings [N, D] after the final LayerNorm; mean_patches=True: [CLS, mean of the patch
        tokens] [N, 2D], the input of Dinov2ForImageClassification's classifier."""
        if not mean_patches:
            return super().embed(images, all_tokens=all_tokens, normalize=normalize)
        from .. import modeling
        from ..pipeline import pixel_values_for
        last = self.encode(pixel_values_for(self, images)).last_hidden_state
        e = self._cls_and_mean(last)
        return modeling.l2_normalize(e) if normalize else e

    def _cls_and_mean(self, last):
        patches = last[:, self._num_prefix:].astype(np.float64).mean(axis=1)
        return np.concatenate([last[:, 0], patches.astype(np.float32)], axis=1)

    __call__ = _ViTBase.encode
    forward = __call__


class Dinov2WithRegistersModel(Dinov2Model):
    """transformers.Dinov2WithRegistersModel: num_register_tokens rows after CLS; antialiased resize."""
    config_class = Dinov2WithRegistersConfig
    _antialias = True
    _base_prefix = "dinov2_with_registers."


class Dinov2ForImageClassification(Dinov2Model):
    """transformers.Dinov2ForImageClassification: classifier on [CLS, mean of the patch tokens]."""
    _with_head = True

    def __call__(self, pixel_values, output_hidden_states=False, output_attentions=False, return_dict=True):
        base = self.encode(pixel_values, output_hidden_states, output_attentions)
        features = self._cls_and_mean(base.last_hidden_state)
        if self._head is None:  # num_labels 0: nn.Identity
            logits = features
        else:
            with self._calling():
                logits = self._linear(features, self._head, self.config.num_labels)
        out = ImageClassifierOutput(logits=logits, hidden_states=base.hidden_states, attentions=base.attentions)
        return out if return_dict else out.to_tuple()

    forward = __call__

    def classify(self, images, top_k=5):
        from ..pipeline import classify
        return classify(self, images, top_k)
