"""vitc: CPU inference for HuggingFace Vision Transformers, C kernels, no deep-learning framework at run time."""
from .runtime import get_isa, set_isa, get_num_threads, set_num_threads, show_config

__version__ = "0.1.0"
__all__ = ["get_isa", "set_isa", "get_num_threads", "set_num_threads", "show_config", "__version__"]
