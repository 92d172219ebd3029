"""vitc: CPU inference for HuggingFace Vision Transformers, C kernels, no deep-learning framework at run time."""
from .runtime import get_isa, set_isa, get_num_threads, set_num_threads, show_config
from .config import ViTConfig
from .modeling import (DeiTForImageClassification, DeiTForImageClassificationWithTeacher, DeiTModel,
                       ViTForImageClassification, ViTModel, WeightsMismatchError)
from .hub import CheckpointNotFoundError
from .safetensors_reader import SafetensorsError

__version__ = "0.1.0"
__all__ = ["ViTImageProcessor", "get_isa", "set_isa", "get_num_threads", "set_num_threads", "show_config", "__version__",
           "ViTConfig", "ViTModel", "ViTForImageClassification", "DeiTModel", "DeiTForImageClassification",
           "DeiTForImageClassificationWithTeacher", "WeightsMismatchError", "CheckpointNotFoundError",
           "SafetensorsError", "attention_rollout", "cls_attention", "overlay"]


_LAZY = {"attention_rollout": "explain", "cls_attention": "explain", "overlay": "heatmap"}


def __getattr__(name):
    # Pillow is imported only by code that handles images, so `import vitc` stays fast
    if name == "ViTImageProcessor":
        from .image_processing import ViTImageProcessor
        return ViTImageProcessor
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vitc' has no attribute {name!r}")
