"""Config readers of the image towers (CLIP, SigLIP, DINOv2): ViTConfig's checks with each family's
transformers defaults, read from the tower's own config.json or from the nested `vision_config` of a full
CLIPModel / SiglipModel checkpoint (as transformers' *VisionConfig.from_pretrained does)."""
from ..config import _DEFAULTS, _clip, _is_int, ViTConfig


class TowerConfig(ViTConfig):
    """A family's vision config. Subclasses set `defaults` (transformers' for that config class, merged over
    ViTConfig's), `model_types`, `outer_types` ({model_type of a full model's config: its tower type}) and
    `family_fields` (family-only fields, read from `extra` as attributes)."""
    outer_types = {}
    family_fields = ()

    def _init(self, fields):
        fields = dict(fields)
        outer = fields.get("model_type")
        if isinstance(outer, str) and outer in self.outer_types:
            vision = fields.get("vision_config") or {}
            if not isinstance(vision, dict):
                raise ValueError(f"config.vision_config must be an object, got {_clip(vision)}")
            tower = dict(vision)
            tower.setdefault("model_type", self.outer_types[outer])
            for key in ("id2label", "label2id", "num_labels"):  # a full model's labels are not the tower's
                tower.pop(key, None)
            fields = tower
        fields = self._derive(fields)
        super()._init(fields)

    def _derive(self, fields):
        """Fields computed from others before the checks (DINOv2: intermediate_size from mlp_ratio)."""
        return fields

    def __getattr__(self, name):
        if name in type(self).family_fields:
            return self.extra.get(name, self.defaults.get(name))
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def _check_int(self, name, minimum):
        value = getattr(self, name)
        if not _is_int(value) or value < minimum:
            raise ValueError(f"config.{name} must be an int >= {minimum}, got {_clip(value)}")

    def _check_bool(self, name):
        value = getattr(self, name)
        if not isinstance(value, bool):
            raise ValueError(f"config.{name} must be true or false, got {_clip(value)}")


def tower_defaults(**fields):
    """ViTConfig's defaults with a family's transformers defaults over them."""
    d = dict(_DEFAULTS)
    d.update(fields)
    return d
