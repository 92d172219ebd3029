"""The one place where `vitc serve` and `vitc.ray` turn a model name into a model object.

Any object with embed(pixel_values) and, for classification, classify(pixel_values, top_k) plus an
image_processor works with the server and the Ray adapter: new model families (an Auto class) and a dtype
option plug in here.
"""


def load_model(name_or_path, threads, dtype=None):
    """A model object for a Hub id or local folder, using `threads` kernel threads: the classifier where the
    checkpoint has one (embed and classify), else the bare encoder (embed only)."""
    import vitc
    if dtype not in (None, "float32"):
        raise ValueError(f"dtype {dtype!r} is not supported by this vitc build (float32 only)")
    try:
        return vitc.ViTForImageClassification.from_pretrained(name_or_path, threads=threads)
    except vitc.WeightsMismatchError:
        return vitc.ViTModel.from_pretrained(name_or_path, threads=threads)  # no classifier head: embed only


def can_classify(model):
    return callable(getattr(model, "classify", None))
