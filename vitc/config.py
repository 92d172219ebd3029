"""ViTConfig: the fields of transformers' ViTConfig that the forward pass needs, validated before any
weight is read or buffer allocated.

A config.json written by transformers (`save_pretrained` or the Hub) loads as is; fields vitc does not use
(dropout rates, initializer_range, ...) are kept in `extra` and written back by `to_dict`.
"""
import json
import os

# transformers' ACT2FN names -> the C activation code (csrc/vitc.h vitc_act); the tanh family all compute
# 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
ACTIVATION_CODES = {
    "linear": 0,
    "gelu": 1, "gelu_python": 1,
    "gelu_new": 2, "gelu_pytorch_tanh": 2, "gelu_fast": 2, "gelu_python_tanh": 2, "gelu_accurate": 2,
    "quick_gelu": 3,
    "relu": 4,
    "silu": 5, "swish": 5,
    "tanh": 6,
    "sigmoid": 7,
}

SUPPORTED_MODEL_TYPES = ("vit", "deit")

_INT_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "num_channels")
_DEFAULTS = {
    "model_type": "vit",
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
    "pooler_output_size": None,
    "pooler_act": "tanh",
    "problem_type": None,
    "architectures": None,
}


# Sanity bounds, far above any published ViT (ViT-22B: hidden 6144, 48 layers, MLP 24576): a hostile config
# with num_hidden_layers = 10**9 must fail here, not build a billion-entry weight plan or allocate.
MAX_SIZES = {
    "hidden_size": 1 << 16,
    "num_hidden_layers": 1 << 10,
    "num_attention_heads": 1 << 12,
    "intermediate_size": 1 << 18,
    "num_channels": 1 << 10,
    "pooler_output_size": 1 << 18,
    "image_size": 1 << 15,
    "num_labels": 1 << 20,
}


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _clip(value, limit=120):
    """repr of a config value, cut short (a hostile file can put megabytes in one field)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _pair(name, value):
    """int or [h, w] -> (h, w) of positive ints."""
    if _is_int(value):
        value = (value, value)
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value):
        value = tuple(value)
    else:
        raise ValueError(f"config.{name} must be an int or a [height, width] pair of ints, got {_clip(value)}")
    if min(value) <= 0:
        raise ValueError(f"config.{name} must be positive, got {value!r}")
    if max(value) > MAX_SIZES["image_size"]:
        raise ValueError(f"config.{name} {value!r} is larger than {MAX_SIZES['image_size']}")
    return value


def _labels(d):
    """id2label (int keys) and label2id from a config dict, as transformers builds them."""
    id2label = d.get("id2label")
    if id2label is None:
        num = d.get("num_labels", 2)
        if not _is_int(num) or num < 0:
            raise ValueError(f"config.num_labels must be an int >= 0, got {_clip(num)}")
        if num > MAX_SIZES["num_labels"]:
            raise ValueError(f"config.num_labels = {num} is larger than {MAX_SIZES['num_labels']}")
        id2label = {i: f"LABEL_{i}" for i in range(num)}
    if not isinstance(id2label, dict):
        raise ValueError(f"config.id2label must be an object mapping ids to labels, got {type(id2label).__name__}")
    out = {}
    for key, label in id2label.items():
        try:
            idx = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"config.id2label: key {_clip(key)} is not an integer id") from None
        if idx < 0 or not isinstance(label, str):
            raise ValueError(f"config.id2label: bad entry {_clip(key)}: {_clip(label)}")
        out[idx] = label
    if sorted(out) != list(range(len(out))):
        raise ValueError(f"config.id2label: ids must be 0..{len(out) - 1}, got {_clip(sorted(out))}")
    if "num_labels" in d and d["num_labels"] != len(out):
        raise ValueError(f"config.num_labels = {_clip(d['num_labels'])} but id2label has {len(out)} entries")
    label2id = d.get("label2id")
    if label2id is None:
        label2id = {label: i for i, label in out.items()}
    if not isinstance(label2id, dict) or not all(isinstance(k, str) and _is_int(v) for k, v in label2id.items()):
        raise ValueError("config.label2id must map label strings to int ids")
    return out, dict(label2id)


class ConfigFile:
    """Reading a config.json: from_dict / from_json_file / from_pretrained, shared by every vitc config class.
    A subclass implements _init(fields_dict) (validate and set attributes) and to_dict()."""

    @classmethod
    def from_dict(cls, config_dict):
        if not isinstance(config_dict, dict):
            raise ValueError(f"a config must be a JSON object / dict, got {type(config_dict).__name__}")
        bad = [k for k in config_dict if not isinstance(k, str)]
        if bad:
            raise ValueError(f"config keys must be strings, got {_clip(bad)}")
        self = cls.__new__(cls)
        self._init(config_dict)  # not cls(**config_dict): a key named "self" must not break the call
        return self

    @classmethod
    def from_json_file(cls, path):
        try:
            return cls.from_dict(read_json(path))
        except ValueError as exc:
            if str(exc).startswith(f"{path}: "):
                raise
            raise ValueError(f"{path}: {exc}") from None

    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, token=None):
        """config.json of a local folder (or a path to the file itself) or of a Hub repo."""
        if os.path.isfile(path_or_repo_id):
            return cls.from_json_file(path_or_repo_id)
        from .hub import resolve_file
        return cls.from_json_file(resolve_file(path_or_repo_id, "config.json", revision=revision,
                                               cache_dir=cache_dir, token=token))

    def __repr__(self):
        return f"{type(self).__name__} {json.dumps(self.to_dict(), indent=2, sort_keys=True)}"

    def __eq__(self, other):
        return type(other) is type(self) and self.to_dict() == other.to_dict()


def read_json(path):
    """The JSON object of a config file, every failure a ValueError (or OSError) naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: the JSON is nested too deeply") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{path}: is a directory, expected a config.json file") from None
    except ValueError as exc:  # e.g. an integer with more digits than sys.get_int_max_str_digits()
        raise ValueError(f"{path}: unreadable JSON value ({exc})") from None


class VisionGeometry:
    """Derived sizes of an image encoder config with image_size, patch_size, hidden_size, num_attention_heads."""

    @property
    def image_hw(self):
        return _pair("image_size", self.image_size)

    @property
    def patch_hw(self):
        return _pair("patch_size", self.patch_size)

    @property
    def grid(self):
        """(rows, cols) of patches at the configured image size."""
        (h, w), (ph, pw) = self.image_hw, self.patch_hw
        return h // ph, w // pw

    @property
    def num_patches(self):
        rows, cols = self.grid
        return rows * cols

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    @property
    def num_labels(self):
        return len(self.id2label)

    @property
    def hidden_act_code(self):
        return ACTIVATION_CODES[self.hidden_act]


class ViTConfig(ConfigFile, VisionGeometry):
    """Configuration of a ViT / DeiT / DINO encoder (fields and defaults as transformers.ViTConfig)."""

    def __init__(self, **kwargs):
        self._init(kwargs)

    def _init(self, fields):
        d = dict(_DEFAULTS)
        d.update(fields)
        self.model_type = d.pop("model_type")
        for name in _INT_FIELDS:
            setattr(self, name, d.pop(name))
        self.hidden_act = d.pop("hidden_act")
        self.layer_norm_eps = d.pop("layer_norm_eps")
        self.image_size = d.pop("image_size")
        self.patch_size = d.pop("patch_size")
        self.qkv_bias = d.pop("qkv_bias")
        self.pooler_act = d.pop("pooler_act")
        self.problem_type = d.pop("problem_type")
        self.architectures = d.pop("architectures")
        pooler_size = d.pop("pooler_output_size")
        self.pooler_output_size = pooler_size if pooler_size else self.hidden_size
        self.id2label, self.label2id = _labels(d)
        d.pop("id2label", None), d.pop("label2id", None), d.pop("num_labels", None)
        self.extra = d  # fields vitc does not use, kept for to_dict()
        self.validate()

    # ---- checks and derived values -----------------------------------------------------------------
    def validate(self):
        if not isinstance(self.model_type, str) or self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"config.model_type {_clip(self.model_type)} is not supported: expected one of "
                             f"{', '.join(SUPPORTED_MODEL_TYPES)}")
        for name in _INT_FIELDS + ("pooler_output_size",):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise ValueError(f"config.{name} must be a positive int, got {_clip(value)}")
            if value > MAX_SIZES[name]:
                raise ValueError(f"config.{name} = {value} is larger than {MAX_SIZES[name]} (a sanity bound: "
                                 f"no ViT comes close)")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"config.hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_attention_heads ({self.num_attention_heads})")
        if "head_dim" in self.extra and self.extra["head_dim"] not in (None, self.head_dim):
            raise ValueError(f"config.head_dim = {_clip(self.extra['head_dim'])} is not hidden_size / "
                             f"num_attention_heads = {self.head_dim}: unsupported")
        eps = self.layer_norm_eps
        # the kernels take eps as a float32: it must stay positive and finite there (1e-50 would become 0)
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 1.2e-38 <= eps <= 3.4e38:
            raise ValueError(f"config.layer_norm_eps must be a number > 0 that float32 can hold "
                             f"(1.2e-38 .. 3.4e38), got {_clip(eps)}")
        if not isinstance(self.qkv_bias, bool):
            raise ValueError(f"config.qkv_bias must be true or false, got {_clip(self.qkv_bias)}")
        image, patch = _pair("image_size", self.image_size), _pair("patch_size", self.patch_size)
        if patch[0] > image[0] or patch[1] > image[1]:
            raise ValueError(f"config.patch_size {list(patch)} is larger than image_size {list(image)}")
        for name in ("hidden_act", "pooler_act"):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in ACTIVATION_CODES:  # a list/dict is unhashable
                raise ValueError(f"config.{name} {_clip(value)} is not supported: expected one of "
                                 f"{', '.join(sorted(ACTIVATION_CODES))}")

    @property
    def pooler_act_code(self):
        return ACTIVATION_CODES[self.pooler_act]

    def to_dict(self):
        d = dict(self.extra)
        d.update(model_type=self.model_type, hidden_size=self.hidden_size,
                 num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
                 intermediate_size=self.intermediate_size, hidden_act=self.hidden_act,
                 layer_norm_eps=self.layer_norm_eps, image_size=self.image_size, patch_size=self.patch_size,
                 num_channels=self.num_channels, qkv_bias=self.qkv_bias,
                 pooler_output_size=self.pooler_output_size, pooler_act=self.pooler_act,
                 problem_type=self.problem_type, architectures=self.architectures,
                 id2label={str(k): v for k, v in self.id2label.items()}, label2id=dict(self.label2id))
        return d
