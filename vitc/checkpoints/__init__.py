"""Checkpoints bundled inside the vitc package (usable offline), looked up by name."""
import os

_HERE = os.path.dirname(os.path.abspath(__file__))

# name -> folder holding config.json, model.safetensors and preprocessor_config.json
BUNDLED = {"vitc-digits": os.path.join(_HERE, "vitc-digits"),
           # two-tower CLIP (+ tokenizer.json) for the zero-shot demo (scripts/train_digits_clip.py)
           "vitc-digits-clip": os.path.join(_HERE, "vitc-digits-clip")}


def bundled_model_path(name):
    """Folder of the bundled checkpoint called `name`, or None when `name` is not a bundled model."""
    path = BUNDLED.get(name) if isinstance(name, str) else None
    return path if path is not None and os.path.isdir(path) else None
