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
           "SafetensorsError"]

# Exported on first use (importlib, from the module named), so `import vitc` stays fast: name -> module.
_LAZY = {
    # CLIP / SigLIP / DINOv2 families (vitc/config_families.py, vitc/image_processing.py)
    **dict.fromkeys(["CLIPConfig", "CLIPTextConfig", "CLIPVisionConfig", "SiglipConfig", "SiglipTextConfig",
                     "SiglipVisionConfig", "Dinov2Config", "Dinov2WithRegistersConfig"], ".config_families"),
    **dict.fromkeys(["CLIPImageProcessorPil", "SiglipImageProcessorPil", "BitImageProcessorPil",
                     "CLIPImageProcessor", "SiglipImageProcessor", "BitImageProcessor"], ".image_processing"),
    # their model classes (vitc/families)
    **dict.fromkeys(["CLIPVisionModel", "CLIPVisionModelWithProjection"], ".families.clip"),
    **dict.fromkeys(["SiglipVisionModel"], ".families.siglip"),
    **dict.fromkeys(["Dinov2Model", "Dinov2WithRegistersModel", "Dinov2ForImageClassification"], ".families.dinov2"),
    # Auto classes (vitc/auto.py)
    **dict.fromkeys(["AutoConfig", "AutoModel", "AutoModelForImageClassification", "AutoImageProcessor",
                     "AutoTokenizer", "AutoProcessor"], ".auto"),
    # text side (vitc/tokenization.py needs the `tokenizers` package; vitc/processing.py)
    **dict.fromkeys(["CLIPTokenizer", "SiglipTokenizer"], ".tokenization"),
    **dict.fromkeys(["CLIPProcessor", "SiglipProcessor"], ".processing"),
    # attention maps (vitc/explain.py, vitc/heatmap.py: numpy, Pillow)
    **dict.fromkeys(["attention_rollout", "cls_attention"], ".explain"),
    "overlay": ".heatmap",
    # text towers and two-tower models (vitc/families/text.py, two_tower.py)
    **dict.fromkeys(["CLIPTextModel", "CLIPTextModelWithProjection", "SiglipTextModel"], ".families.text"),
    **dict.fromkeys(["CLIPModel", "SiglipModel"], ".families.two_tower"),
}
__all__ += list(_LAZY)


def __getattr__(name):
    # Pillow is imported only by code that handles images, so `import vitc` stays fast
    if name == "ViTImageProcessor":
        from .image_processing import ViTImageProcessor
        return ViTImageProcessor
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'vitc' has no attribute {name!r}")
