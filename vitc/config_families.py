"""Configs of the CLIP, SigLIP and DINOv2 families, read from transformers' config.json and validated before any
weight is read.

Hub configs are minimal: a field left out gets the default of the installed transformers' configuration_*.py
(the tables below copy them). A field vitc does not use is kept in `extra` and written back by `to_dict`.

A tower config also reads the config.json of a full two-tower model: CLIPVisionConfig.from_pretrained on a
CLIPModel checkpoint takes its `vision_config`, as transformers' does (with the legacy `vision_config_dict`
applied as CLIPConfig applies it, so the tower matches the weights CLIPModel saved).

To add a family: a subclass of TowerConfig with `model_type`, `FIELDS` (name -> (default, check)) and, for a
tower of a two-tower model, `base_config_key` and `parent_model_types`; or of DualConfig with `SUB_CONFIGS`.
"""
import math

from .config import (ACTIVATION_CODES, MAX_SIZES, ConfigFile, VisionGeometry, _clip, _is_int, _labels,
                     _pair)

# sanity bounds for text towers, far above any published one (Gemma vocabulary: 256000)
MAX_VOCAB = 1 << 22
MAX_POSITIONS = 1 << 16


# ---- field checks: (config, field name, value) -> value, or ValueError naming the field ---------------------
def positive_int(cfg, name, value):
    if not _is_int(value) or value <= 0:
        raise ValueError(f"config.{name} must be a positive int, got {_clip(value)}")
    limit = {"vocab_size": MAX_VOCAB, "max_position_embeddings": MAX_POSITIONS}.get(name) or \
        MAX_SIZES.get(name, MAX_SIZES["intermediate_size"])
    if value > limit:
        raise ValueError(f"config.{name} = {value} is larger than {limit} (a sanity bound: no model comes close)")
    return value


def optional_positive_int(cfg, name, value):
    return None if value is None else positive_int(cfg, name, value)


def count(cfg, name, value):
    """An int >= 0 (e.g. num_register_tokens)."""
    if not _is_int(value) or not 0 <= value <= MAX_POSITIONS:
        raise ValueError(f"config.{name} must be an int in 0..{MAX_POSITIONS}, got {_clip(value)}")
    return value


def activation(cfg, name, value):
    if not isinstance(value, str) or value not in ACTIVATION_CODES:  # a list/dict is unhashable
        raise ValueError(f"config.{name} {_clip(value)} is not supported: expected one of "
                         f"{', '.join(sorted(ACTIVATION_CODES))}")
    return value


def layer_norm_eps(cfg, name, value):
    # the kernels take eps as a float32: it must stay positive and finite there (1e-50 would become 0)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 1.2e-38 <= value <= 3.4e38:
        raise ValueError(f"config.{name} must be a number > 0 that float32 can hold (1.2e-38 .. 3.4e38), "
                         f"got {_clip(value)}")
    return value


def flag(cfg, name, value):
    if not isinstance(value, bool):
        raise ValueError(f"config.{name} must be true or false, got {_clip(value)}")
    return value


def size(cfg, name, value):
    _pair(name, value)
    return value


def finite_number(cfg, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"config.{name} must be a finite number, got {_clip(value)}")
    return value


def token_id(cfg, name, value):
    if value is not None and (not _is_int(value) or not 0 <= value < MAX_VOCAB):
        raise ValueError(f"config.{name} must be a token id (an int >= 0) or null, got {_clip(value)}")
    return value


def token_ids(cfg, name, value):
    """eos_token_id: one id or a list of them (transformers allows both)."""
    if isinstance(value, list):
        for v in value:
            token_id(cfg, name, v)
        return value
    return token_id(cfg, name, value)


# ---- one tower ---------------------------------------------------------------------------------------------
class TowerConfig(ConfigFile):
    """A config with flat fields: the FIELDS table gives each one's transformers default and its check."""

    model_type = ""
    base_config_key = None       # the key under which a two-tower config nests this tower
    parent_model_types = ()      # model types of the two-tower configs that nest it
    FIELDS = {}

    def __init__(self, **kwargs):
        self._init(kwargs)

    @classmethod
    def from_dict(cls, config_dict):
        if isinstance(config_dict, dict) and cls.base_config_key and \
                config_dict.get("model_type") in cls.parent_model_types:
            parent = DUAL_CONFIGS[config_dict["model_type"]]
            return getattr(parent.from_dict(config_dict), cls.base_config_key)
        return super().from_dict(config_dict)

    def _init(self, fields):
        kind = fields.get("model_type", self.model_type)
        if kind != self.model_type:
            also = "".join(f" or {p} (whose {self.base_config_key} is read)" for p in self.parent_model_types)
            raise ValueError(f"config.model_type {_clip(kind)} is not a {type(self).__name__}: expected "
                             f"{self.model_type}{also}")
        d = dict(fields)
        d.pop("model_type", None)
        for name, (default, check) in self.FIELDS.items():
            setattr(self, name, check(self, name, d.pop(name, default)))
        self.id2label, self.label2id = _labels(d)
        for name in ("id2label", "label2id", "num_labels"):
            d.pop(name, None)
        self.extra = d  # fields vitc does not use, kept for to_dict()
        self.validate()

    def validate(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"config.hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        head_dim = self.hidden_size // self.num_attention_heads
        if self.extra.get("head_dim") not in (None, head_dim):
            raise ValueError(f"config.head_dim = {_clip(self.extra['head_dim'])} is not hidden_size / "
                             f"num_attention_heads = {head_dim}: unsupported")
        if "image_size" in self.FIELDS:
            image, patch = _pair("image_size", self.image_size), _pair("patch_size", self.patch_size)
            if patch[0] > image[0] or patch[1] > image[1]:
                raise ValueError(f"config.patch_size {list(patch)} is larger than image_size {list(image)}")

    def to_dict(self):
        d = dict(self.extra)
        d["model_type"] = self.model_type
        d.update({name: getattr(self, name) for name in self.FIELDS})
        d.update(id2label={str(k): v for k, v in self.id2label.items()}, label2id=dict(self.label2id))
        return d


class TextTowerConfig(TowerConfig):
    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    @property
    def hidden_act_code(self):
        return ACTIVATION_CODES[self.hidden_act]


class VisionTowerConfig(TowerConfig, VisionGeometry):
    pass


def _common(hidden, intermediate, layers, heads, act, eps):
    return {"hidden_size": (hidden, positive_int), "intermediate_size": (intermediate, positive_int),
            "num_hidden_layers": (layers, positive_int), "num_attention_heads": (heads, positive_int),
            "hidden_act": (act, activation), "layer_norm_eps": (eps, layer_norm_eps)}


def _image(image_size, patch_size):
    return {"num_channels": (3, positive_int), "image_size": (image_size, size), "patch_size": (patch_size, size)}


def _text(vocab, positions, pad, bos, eos):
    return {"vocab_size": (vocab, positive_int), "max_position_embeddings": (positions, positive_int),
            "pad_token_id": (pad, token_id), "bos_token_id": (bos, token_id), "eos_token_id": (eos, token_ids)}


class CLIPTextConfig(TextTowerConfig):
    """transformers.CLIPTextConfig (openai/clip-vit-base-patch32 defaults)."""
    model_type, base_config_key, parent_model_types = "clip_text_model", "text_config", ("clip",)
    FIELDS = {**_common(512, 2048, 12, 8, "quick_gelu", 1e-5), **_text(49408, 77, 1, 49406, 49407),
              "projection_dim": (512, optional_positive_int)}


class CLIPVisionConfig(VisionTowerConfig):
    """transformers.CLIPVisionConfig (openai/clip-vit-base-patch32 defaults)."""
    model_type, base_config_key, parent_model_types = "clip_vision_model", "vision_config", ("clip",)
    FIELDS = {**_common(768, 3072, 12, 12, "quick_gelu", 1e-5), **_image(224, 32),
              "projection_dim": (512, positive_int)}


class SiglipTextConfig(TextTowerConfig):
    """transformers.SiglipTextConfig (google/siglip-base-patch16-224 defaults); projection_size null = hidden."""
    model_type, base_config_key, parent_model_types = "siglip_text_model", "text_config", ("siglip",)
    FIELDS = {**_common(768, 3072, 12, 12, "gelu_pytorch_tanh", 1e-6), **_text(32000, 64, 1, 49406, 49407),
              "projection_size": (None, optional_positive_int)}

    def validate(self):
        super().validate()
        if self.projection_size is None:
            self.projection_size = self.hidden_size


class SiglipVisionConfig(VisionTowerConfig):
    """transformers.SiglipVisionConfig; also the image tower of SigLIP2 FixRes checkpoints (model_type siglip)."""
    model_type, base_config_key, parent_model_types = "siglip_vision_model", "vision_config", ("siglip",)
    FIELDS = {**_common(768, 3072, 12, 12, "gelu_pytorch_tanh", 1e-6), **_image(224, 16),
              "vision_use_head": (True, flag)}


_DINOV2 = {**_common(768, None, 12, 12, "gelu", 1e-6), "mlp_ratio": (4, positive_int),
           "qkv_bias": (True, flag), "layerscale_value": (1.0, finite_number), "use_swiglu_ffn": (False, flag)}
del _DINOV2["intermediate_size"]  # DINOv2 derives it from mlp_ratio


class Dinov2Config(VisionTowerConfig):
    """transformers.Dinov2Config (facebook/dinov2-base defaults). No intermediate_size field: the MLP width
    comes from mlp_ratio (see `intermediate_size`)."""
    model_type = "dinov2"
    FIELDS = {**_DINOV2, **_image(224, 14)}

    @property
    def intermediate_size(self):
        """Hidden width of the MLP (fc1/fc2) or of the SwiGLU FFN (gate/up/down), as transformers sizes them."""
        width = int(self.hidden_size * self.mlp_ratio)
        return (int(width * 2 / 3) + 7) // 8 * 8 if self.use_swiglu_ffn else width

    def validate(self):
        super().validate()
        if not 0 < self.intermediate_size <= MAX_SIZES["intermediate_size"]:
            raise ValueError(f"config.mlp_ratio {_clip(self.mlp_ratio)} gives an MLP width of "
                             f"{self.intermediate_size}: expected 1..{MAX_SIZES['intermediate_size']}")


class Dinov2WithRegistersConfig(Dinov2Config):
    """transformers.Dinov2WithRegistersConfig (facebook/dinov2-with-registers-base; default patch 16)."""
    model_type = "dinov2_with_registers"
    FIELDS = {**_DINOV2, **_image(224, 16), "num_register_tokens": (4, count)}


# ---- two towers --------------------------------------------------------------------------------------------
class DualConfig(ConfigFile):
    """A two-tower config: text_config and vision_config (null or left out = the tower's defaults)."""

    model_type = ""
    SUB_CONFIGS = {}  # key -> tower config class
    FIELDS = {}

    def __init__(self, **kwargs):
        self._init(kwargs)

    def _init(self, fields):
        kind = fields.get("model_type", self.model_type)
        if kind != self.model_type:
            raise ValueError(f"config.model_type {_clip(kind)} is not a {type(self).__name__}: expected "
                             f"{self.model_type}")
        d = dict(fields)
        d.pop("model_type", None)
        for key, tower in self.SUB_CONFIGS.items():
            sub = self._sub_dict(d, key)
            try:
                setattr(self, key, tower.from_dict(sub))
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        for name, (default, check) in self.FIELDS.items():
            setattr(self, name, check(self, name, d.pop(name, default)))
        self.id2label, self.label2id = _labels(d)
        for name in ("id2label", "label2id", "num_labels"):
            d.pop(name, None)
        self.extra = d

    def _sub_dict(self, d, key):
        sub = d.pop(key, None)
        if sub is None:
            sub = {}
        if not isinstance(sub, dict):
            raise ValueError(f"config.{key} must be an object (or null), got {type(sub).__name__}")
        if sub.get("model_type", self.SUB_CONFIGS[key].model_type) != self.SUB_CONFIGS[key].model_type:
            raise ValueError(f"config.{key}.model_type is {_clip(sub['model_type'])}, expected "
                             f"{self.SUB_CONFIGS[key].model_type}")
        return sub

    @property
    def num_labels(self):
        return len(self.id2label)

    def to_dict(self):
        d = dict(self.extra)
        d["model_type"] = self.model_type
        d.update({key: getattr(self, key).to_dict() for key in self.SUB_CONFIGS})
        d.update({name: getattr(self, name) for name in self.FIELDS})
        d.update(id2label={str(k): v for k, v in self.id2label.items()}, label2id=dict(self.label2id))
        return d


class CLIPConfig(DualConfig):
    """transformers.CLIPConfig. projection_dim here sizes CLIPModel's projections (each tower has its own for
    the *WithProjection classes); legacy text_config_dict / vision_config_dict override as transformers does."""
    model_type = "clip"
    SUB_CONFIGS = {"text_config": CLIPTextConfig, "vision_config": CLIPVisionConfig}
    FIELDS = {"projection_dim": (512, positive_int), "logit_scale_init_value": (2.6592, finite_number)}

    def _sub_dict(self, d, key):
        sub = super()._sub_dict(d, key)
        legacy = d.pop(f"{key}_dict", None)
        if legacy is None:
            return sub
        if not isinstance(legacy, dict):
            raise ValueError(f"config.{key}_dict must be an object (or null), got {type(legacy).__name__}")
        try:
            # transformers overrides with the legacy dict's *full* config, defaults included
            full = self.SUB_CONFIGS[key].from_dict(legacy).to_dict()
        except ValueError as exc:
            raise ValueError(f"{key}_dict: {exc}") from None
        return {**sub, **full}


class SiglipConfig(DualConfig):
    """transformers.SiglipConfig; SigLIP2 FixRes checkpoints are `model_type: siglip` too (NaFlex ones are
    siglip2, which vitc does not run)."""
    model_type = "siglip"
    SUB_CONFIGS = {"text_config": SiglipTextConfig, "vision_config": SiglipVisionConfig}


DUAL_CONFIGS = {c.model_type: c for c in (CLIPConfig, SiglipConfig)}
