"""What `vitc bench` loads, compares and times for each architecture a checkpoint's config.json names: one row
per architecture, one output per row, the same for every engine (vitc, PyTorch, and the ONNX export of the same
transformers class that ONNX Runtime and OpenVINO run).

The output is what users of the family consume: a classifier's logits, CLIP's image_embeds (retrieval indexes
them), SigLIP's and DINOv2's pooler_output (the attention-pooled head; the CLS token after the final
LayerNorm), a ViT/DeiT encoder's last_hidden_state. A two-tower checkpoint (CLIPModel, SiglipModel) is timed
through its image tower, loaded from the full checkpoint as transformers' vision classes do.
"""
from typing import NamedTuple


class Target(NamedTuple):
    vitc_class: str   # vitc.<name>.from_pretrained(folder)
    torch_class: str  # transformers.<name>: the PyTorch engines, and the class exported to ONNX
    output: str       # the output attribute checked against PyTorch eager, then timed


TARGETS = {
    "ViTModel": Target("ViTModel", "ViTModel", "last_hidden_state"),
    "ViTForImageClassification": Target("ViTForImageClassification", "ViTForImageClassification", "logits"),
    "DeiTModel": Target("DeiTModel", "DeiTModel", "last_hidden_state"),
    "DeiTForImageClassification": Target("DeiTForImageClassification", "DeiTForImageClassification", "logits"),
    "DeiTForImageClassificationWithTeacher": Target("DeiTForImageClassificationWithTeacher",
                                                    "DeiTForImageClassificationWithTeacher", "logits"),
    "CLIPVisionModel": Target("CLIPVisionModel", "CLIPVisionModel", "pooler_output"),
    "CLIPVisionModelWithProjection": Target("CLIPVisionModelWithProjection", "CLIPVisionModelWithProjection",
                                            "image_embeds"),
    "CLIPModel": Target("CLIPVisionModelWithProjection", "CLIPVisionModelWithProjection", "image_embeds"),
    "SiglipVisionModel": Target("SiglipVisionModel", "SiglipVisionModel", "pooler_output"),
    "SiglipModel": Target("SiglipVisionModel", "SiglipVisionModel", "pooler_output"),
    "Dinov2Model": Target("Dinov2Model", "Dinov2Model", "pooler_output"),
    "Dinov2WithRegistersModel": Target("Dinov2WithRegistersModel", "Dinov2WithRegistersModel", "pooler_output"),
    "Dinov2ForImageClassification": Target("Dinov2ForImageClassification", "Dinov2ForImageClassification",
                                           "logits"),
}

# config.json without `architectures` (many Hub configs): the model type's usual class
DEFAULT_ARCHITECTURE = {
    "vit": "ViTForImageClassification", "deit": "DeiTForImageClassification",
    "clip": "CLIPModel", "clip_vision_model": "CLIPVisionModel",
    "siglip": "SiglipModel", "siglip_vision_model": "SiglipVisionModel",
    "dinov2": "Dinov2Model", "dinov2_with_registers": "Dinov2WithRegistersModel",
}

# tokens before the patches, per model type (DINOv2 with registers adds config.num_register_tokens)
PREFIX_TOKENS = {"deit": 2, "siglip": 0, "siglip_vision_model": 0}


def architecture_of(config, path="config.json"):
    """The architecture a config.json dict names (its first `architectures` entry, else its model type's usual
    one); ValueError naming what the benchmark runs otherwise."""
    archs = config.get("architectures") or []
    arch = archs[0] if archs and isinstance(archs[0], str) else DEFAULT_ARCHITECTURE.get(config.get("model_type"))
    if arch not in TARGETS:
        what = f"architecture {arch!r}" if arch else f"model_type {config.get('model_type')!r}"
        raise ValueError(f"{path}: vitc bench does not time {what}; it times {', '.join(TARGETS)}")
    return arch
