"""Model outputs that behave like transformers' ModelOutput: attributes, dict access by name, and tuple
access by position over the fields that are not None (out[0] is logits / last_hidden_state)."""
from collections import OrderedDict


class ModelOutput(OrderedDict):
    _fields = ()

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        super().__init__()
        for name in self._fields:
            value = kwargs.get(name)
            object.__setattr__(self, name, value)
            if value is not None:
                super().__setitem__(name, value)

    def __getitem__(self, key):
        if isinstance(key, str):
            return super().__getitem__(key)
        return self.to_tuple()[key]

    def __setattr__(self, name, value):
        if name not in self._fields:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        object.__setattr__(self, name, value)
        if value is not None:
            super().__setitem__(name, value)
        elif name in self:
            super().__delitem__(name)

    def __setitem__(self, key, value):
        self.__setattr__(key, value)

    def to_tuple(self):
        return tuple(self[k] for k in self.keys())

    def __repr__(self):
        parts = []
        for k, v in self.items():
            shape = getattr(v, "shape", None)
            parts.append(f"{k}={'array' + str(tuple(shape)) if shape is not None else f'tuple[{len(v)}]'}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __reduce__(self):
        return (_rebuild, (type(self), {k: getattr(self, k) for k in self._fields}))


def _rebuild(cls, fields):
    return cls(**fields)


class BaseModelOutputWithPooling(ModelOutput):
    """last_hidden_state [N, S, D] (after the final LayerNorm); pooler_output [N, P] or None;
    hidden_states: L+1 arrays [N, S, D] (embeddings, then each layer, before the final LayerNorm);
    attentions: L arrays [N, heads, S, S] after softmax."""
    _fields = ("last_hidden_state", "pooler_output", "hidden_states", "attentions")


class SiglipVisionModelOutput(BaseModelOutputWithPooling):
    """BaseModelOutputWithPooling plus, with output_attentions=True, pooler_attentions [N, heads, 1, S]: the
    attention-pooling head's probe over the tokens (transformers computes and drops it: the weights
    nn.MultiheadAttention returns with need_weights=True, average_attn_weights=False)."""
    _fields = BaseModelOutputWithPooling._fields + ("pooler_attentions",)


class ImageClassifierOutput(ModelOutput):
    """logits [N, num_labels]; hidden_states and attentions as in BaseModelOutputWithPooling.
    (loss is never computed: vitc only runs inference.)"""
    _fields = ("loss", "logits", "hidden_states", "attentions")


class DeiTImageClassifierOutput(ModelOutput):
    """DeiT with teacher: logits = (cls_logits + distillation_logits) / 2, as transformers'
    DeiTForImageClassificationWithTeacherOutput."""
    _fields = ("logits", "cls_logits", "distillation_logits", "hidden_states", "attentions")


class CLIPVisionModelOutput(ModelOutput):
    """CLIPVisionModelWithProjection: image_embeds [N, projection_dim] (visual_projection of the pooled
    CLS); last_hidden_state, hidden_states, attentions as in BaseModelOutputWithPooling."""
    _fields = ("image_embeds", "last_hidden_state", "hidden_states", "attentions")


class CLIPTextModelOutput(ModelOutput):
    """CLIPTextModelWithProjection: text_embeds [N, projection_dim] (text_projection of the pooled EOS row)."""
    _fields = ("text_embeds", "last_hidden_state", "hidden_states", "attentions")


class CLIPOutput(ModelOutput):
    """CLIPModel / SiglipModel: logits_per_image [images, texts], logits_per_text [texts, images], the
    projected embeddings (unit L2 norm), and each tower's own output."""
    _fields = ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds", "text_model_output",
               "vision_model_output")


SiglipOutput = CLIPOutput


class BatchFeature(dict):
    """dict of model inputs ({"pixel_values": float32 [N, 3, H, W]}, input_ids, ...); keys also attributes."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None
