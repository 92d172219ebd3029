"""vitc: CPU inference for HuggingFace Vision Transformers, C kernels, no deep-learning framework at run time."""
from .runtime import get_isa, set_isa, get_num_threads, set_num_threads, show_config
from .config import ViTConfig
from .modeling import (DeiTForImageClassification, DeiTForImageClassificationWithTeacher, DeiTModel,
                       ViTForImageClassification, ViTModel, WeightsMismatchError)
from .families.clip import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection
from .families.dinov2 import (Dinov2Config, Dinov2ForImageClassification, Dinov2Model, Dinov2WithRegistersConfig,
                              Dinov2WithRegistersModel)
from .families.siglip import SiglipVisionConfig, SiglipVisionModel
from .hub import CheckpointNotFoundError
from .safetensors_reader import SafetensorsError

__version__ = "0.1.0"
__all__ = ["ViTImageProcessor", "get_isa", "set_isa", "get_num_threads", "set_num_threads", "show_config", "__version__",
           "ViTConfig", "ViTModel", "ViTForImageClassification", "DeiTModel", "DeiTForImageClassification",
           "DeiTForImageClassificationWithTeacher", "WeightsMismatchError", "CheckpointNotFoundError",
           "SafetensorsError", "CLIPVisionConfig", "CLIPVisionModel", "CLIPVisionModelWithProjection",
           "Dinov2Config", "Dinov2Model", "Dinov2WithRegistersConfig", "Dinov2WithRegistersModel",
           "Dinov2ForImageClassification", "SiglipVisionConfig", "SiglipVisionModel"]


def __getattr__(name):
    # Pillow is imported only by code that handles images, so `import vitc` stays fast
    if name == "ViTImageProcessor":
        from .image_processing import ViTImageProcessor
        return ViTImageProcessor
    raise AttributeError(f"module 'vitc' has no attribute {name!r}")
