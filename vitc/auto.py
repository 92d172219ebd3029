"""Auto classes: pick the vitc class for a checkpoint from its config.json, as transformers' Auto classes do.

    model = vitc.AutoModel.from_pretrained("facebook/deit-small-patch16-224")       # -> vitc.DeiTModel
    processor = vitc.AutoImageProcessor.from_pretrained("facebook/deit-small-patch16-224")

The registries below map a config.json `model_type` to the name of a class that `vitc` exports; names are
resolved only when used, so this module imports nothing heavy. A tuple of names is chosen from by the config's
`architectures` (the first is the default), as transformers' `_get_model_class` does.

Adding a family: add its rows here (e.g. MODEL_CLASSES["clip"] = "CLIPModel"), export the class from
vitc/__init__.py, and the Auto classes, their error messages and `supported_model_types()` follow. At run time,
`AutoModel.register("my_type", MyModelClass)` does the same for one process.
"""
import importlib
import os

from .config import _clip, read_json

# model_type -> config class ("module:Class"), for AutoConfig and for the tower configs of two-tower models
CONFIG_CLASSES = {
    "vit": "vitc.config:ViTConfig",
    "deit": "vitc.config:ViTConfig",
    "clip": "vitc.config_families:CLIPConfig",
    "clip_vision_model": "vitc.config_families:CLIPVisionConfig",
    "clip_text_model": "vitc.config_families:CLIPTextConfig",
    "siglip": "vitc.config_families:SiglipConfig",
    "siglip_vision_model": "vitc.config_families:SiglipVisionConfig",
    "siglip_text_model": "vitc.config_families:SiglipTextConfig",
    "dinov2": "vitc.config_families:Dinov2Config",
    "dinov2_with_registers": "vitc.config_families:Dinov2WithRegistersConfig",
}

# model_type -> vitc class name (transformers' MODEL_MAPPING_NAMES rows for what vitc runs)
MODEL_CLASSES = {
    "vit": "ViTModel",
    "deit": "DeiTModel",
    "clip_vision_model": "CLIPVisionModel",
    "siglip_vision_model": "SiglipVisionModel",
    "dinov2": "Dinov2Model",
    "dinov2_with_registers": "Dinov2WithRegistersModel",
    "clip": "CLIPModel",
    "siglip": "SiglipModel",
    "clip_text_model": "CLIPTextModel",
    "siglip_text_model": "SiglipTextModel",
}

# model_type -> vitc class name(s) (transformers' MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES rows)
IMAGE_CLASSIFICATION_CLASSES = {
    "vit": "ViTForImageClassification",
    "deit": ("DeiTForImageClassification", "DeiTForImageClassificationWithTeacher"),
    "dinov2": "Dinov2ForImageClassification",
}

# model_type -> image processor family when the checkpoint has no preprocessor_config.json naming one
# (transformers' IMAGE_PROCESSOR_MAPPING_NAMES); the family's class is image_processing.IMAGE_PROCESSOR_CLASSES
IMAGE_PROCESSOR_FAMILIES = {
    "vit": "ViT", "deit": "DeiT",
    "clip": "CLIP", "clip_vision_model": "CLIP",
    "siglip": "Siglip", "siglip_vision_model": "Siglip",
    "dinov2": "Bit", "dinov2_with_registers": "Bit",
}


def _resolve(ref):
    """A class from a registry entry: "module:Class", a name that vitc exports, or the class itself."""
    if not isinstance(ref, str):
        return ref
    if ":" in ref:
        module, name = ref.split(":")
        return getattr(importlib.import_module(module), name)
    import vitc
    return getattr(vitc, ref)


def checkpoint_config(path_or_repo_id, revision=None, cache_dir=None, token=None, local_files_only=False):
    """(config.json as a dict, its path) of a local folder, a bundled model, a config file or a Hub repo."""
    from .hub import resolve_file
    from .checkpoints import bundled_model_path
    location = os.fspath(path_or_repo_id)
    if not os.path.exists(location) and bundled_model_path(location):
        location = bundled_model_path(location)
    path = location if os.path.isfile(location) else resolve_file(
        location, "config.json", revision=revision, cache_dir=cache_dir, token=token,
        local_files_only=local_files_only)
    config = read_json(path)
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a config must be a JSON object, got {type(config).__name__}")
    return config, path


def model_type_of(config, path):
    kind = config.get("model_type")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"{path}: no model_type in this config.json, so the model class cannot be chosen "
                         f"(got {_clip(kind)})")
    return kind


class _AutoClass:
    """An Auto class over one registry: from_pretrained reads config.json and hands over to the class found."""

    _registry = None  # model_type -> class name, tuple of names, or class
    _task = ""

    def __init__(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is not instantiated: use "
                        f"{type(self).__name__}.from_pretrained(path_or_repo_id)")

    @classmethod
    def supported_model_types(cls):
        return sorted(cls._registry)

    @classmethod
    def register(cls, model_type, model_class):
        """Map `model_type` to `model_class` (a class, or the name of a class vitc exports) for this process."""
        if not isinstance(model_type, str) or not model_type:
            raise ValueError(f"model_type must be a non-empty string, got {_clip(model_type)}")
        cls._registry[model_type] = model_class

    @classmethod
    def class_for(cls, config, path="config.json"):
        """The class that runs a checkpoint with this config.json dict."""
        kind = model_type_of(config, path)
        if kind not in cls._registry:
            runs = ", ".join(f"{t} ({_names(cls._registry[t])})" for t in cls.supported_model_types())
            raise ValueError(f"{path}: model_type {kind!r} is not one vitc runs{cls._task}. vitc runs: {runs}")
        entry = cls._registry[kind]
        if isinstance(entry, tuple):
            architectures = config.get("architectures") or []
            names = [_names(e) for e in entry]
            entry = next((e for a in architectures if isinstance(a, str) for e, n in zip(entry, names) if n == a),
                         entry[0])
        try:
            return _resolve(entry)
        except AttributeError:
            raise ValueError(f"{path}: model_type {kind!r} maps to vitc.{_names(entry)}, which this vitc does "
                             f"not have") from None

    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, token=None, local_files_only=False,
                        **kwargs):
        """Load with the class config.json's model_type (and architectures) selects; kwargs go to its
        from_pretrained (threads, isa, ...)."""
        config, path = checkpoint_config(path_or_repo_id, revision, cache_dir, token, local_files_only)
        target = cls.class_for(config, path)
        hub = {"revision": revision, "cache_dir": cache_dir, "token": token}
        if local_files_only:
            hub["local_files_only"] = True
        return target.from_pretrained(path_or_repo_id, **hub, **kwargs)


def _names(entry):
    if isinstance(entry, tuple):
        return " / ".join(_names(e) for e in entry)
    return entry if isinstance(entry, str) else entry.__name__


class AutoConfig(_AutoClass):
    """vitc config class for config.json's model_type (ViTConfig, CLIPConfig, SiglipVisionConfig, ...)."""
    _registry = CONFIG_CLASSES
    _task = " (no config class)"

    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, token=None, local_files_only=False):
        config, path = checkpoint_config(path_or_repo_id, revision, cache_dir, token, local_files_only)
        return cls.class_for(config, path).from_json_file(path)


class AutoModel(_AutoClass):
    """The base model (encoder outputs) of a checkpoint: ViTModel, DeiTModel, ..."""
    _registry = MODEL_CLASSES
    _task = " as a base model (AutoModel)"


class AutoModelForImageClassification(_AutoClass):
    """The image classification model of a checkpoint: ViTForImageClassification, DeiTForImageClassification
    (or ...WithTeacher when config.architectures names it), ..."""
    _registry = IMAGE_CLASSIFICATION_CLASSES
    _task = " for image classification (AutoModelForImageClassification)"


class AutoImageProcessor:
    """The image processor of a checkpoint: the class its preprocessor_config.json names (image_processor_type
    or feature_extractor_type), else the one of config.json's model_type, as transformers picks it."""

    def __init__(self, *args, **kwargs):
        raise TypeError("AutoImageProcessor is not instantiated: use AutoImageProcessor.from_pretrained(path)")

    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, token=None, **overrides):
        from .image_processing import IMAGE_PROCESSOR_CLASSES, _family, _find_config_file
        config_file = _find_config_file(path_or_repo_id, revision, cache_dir, token)
        options = {}
        if config_file is not None:
            options = read_json(config_file)
            if not isinstance(options, dict):
                raise ValueError(f"{config_file}: an image processor config must be a JSON object")
        family, source = _family(options), config_file
        if not family:
            config, source = checkpoint_config(path_or_repo_id, revision, cache_dir, token)
            kind = model_type_of(config, source)
            if kind not in IMAGE_PROCESSOR_FAMILIES:
                raise ValueError(f"{source}: no image processor is known for model_type {kind!r}; vitc has "
                                 f"them for: {', '.join(sorted(IMAGE_PROCESSOR_FAMILIES))}")
            family = IMAGE_PROCESSOR_FAMILIES[kind]
        if family not in IMAGE_PROCESSOR_CLASSES:
            raise ValueError(f"{source}: image processor {family}ImageProcessor is not one vitc has; it has: "
                             f"{', '.join(f'{f}ImageProcessor' for f in sorted(IMAGE_PROCESSOR_CLASSES))}")
        return IMAGE_PROCESSOR_CLASSES[family].from_dict({**options, "image_processor_type":
                                                          f"{family}ImageProcessor"}, **overrides)


class AutoTokenizer:
    """The tokenizer of a checkpoint (vitc.CLIPTokenizer or vitc.SiglipTokenizer), chosen by
    tokenizer_config.json's tokenizer_class, else config.json's model_type, as transformers chooses it."""

    def __init__(self, *args, **kwargs):
        raise TypeError("AutoTokenizer is not instantiated: use AutoTokenizer.from_pretrained(path)")

    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, token=None):
        from .tokenization import auto_tokenizer
        return auto_tokenizer(path_or_repo_id, revision=revision, cache_dir=cache_dir, token=token)


# model_type -> processor class name in vitc.processing; other model types get their image processor
PROCESSOR_CLASSES = {"clip": "CLIPProcessor", "siglip": "SiglipProcessor"}


class AutoProcessor:
    """A two-tower checkpoint's processor (tokenizer + image processor: vitc.CLIPProcessor, SiglipProcessor);
    for an image-only model, its image processor, as transformers' AutoProcessor returns."""

    def __init__(self, *args, **kwargs):
        raise TypeError("AutoProcessor is not instantiated: use AutoProcessor.from_pretrained(path)")

    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, token=None):
        config, path = checkpoint_config(path_or_repo_id, revision, cache_dir, token)
        name = PROCESSOR_CLASSES.get(model_type_of(config, path))
        if name is None:
            return AutoImageProcessor.from_pretrained(path_or_repo_id, revision=revision, cache_dir=cache_dir,
                                                      token=token)
        from . import processing
        return getattr(processing, name).from_pretrained(path_or_repo_id, revision=revision, cache_dir=cache_dir,
                                                         token=token)
