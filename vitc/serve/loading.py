"""The one place where `vitc serve` and `vitc.ray` turn a model name into a model object.

Any object with embed(pixel_values) and an image_processor works with the server and the Ray adapter; with
classify(pixel_values, top_k) it classifies with its own labels; a two-tower model (embed_text, and
rank_labels over text and image embeddings) also embeds text and classifies zero-shot over labels a request
gives. The Auto classes pick the family: new families and a dtype option plug in there and here.
"""


def load_model(name_or_path, threads, dtype=None):
    """A model object for a Hub id or local folder, using `threads` kernel threads: the classifier where the
    checkpoint's family has one and the checkpoint holds its head (embed and classify), else the family's
    base model (embed only; CLIPModel / SiglipModel: embed, embed_text and zero-shot)."""
    from ..auto import AutoModel, AutoModelForImageClassification, checkpoint_config, model_type_of
    from ..families.table import WeightsMismatchError
    kwargs = {"threads": threads, "dtype": dtype}  # None: float32, or a saved folder's dtype
    config, path = checkpoint_config(name_or_path)
    kind = model_type_of(config, path)
    if kind.endswith("_text_model"):
        raise ValueError(f"{path}: model_type {kind!r} is a text tower alone; vitc serves image models "
                         f"(a two-tower checkpoint serves text too)")
    if kind in AutoModelForImageClassification._registry:
        try:
            return AutoModelForImageClassification.from_pretrained(name_or_path, **kwargs)
        except WeightsMismatchError:
            pass  # no classifier head in this checkpoint: the base model, embed only
    return AutoModel.from_pretrained(name_or_path, **kwargs)


def can_zero_shot(model):
    """A two-tower model: text embeddings, and classification over labels given at request time."""
    return callable(getattr(model, "embed_text", None)) and callable(getattr(model, "rank_labels", None))


def can_classify(model):
    """A classifier with its own labels (config.id2label)."""
    return callable(getattr(model, "classify", None)) and not can_zero_shot(model)


def image_gflops(name_or_path):
    """About how many GFLOPs one image's encoder forward takes, from config.json (the vision tower's of a
    two-tower model): 2 x layers x tokens x (4 h^2 + 2 h x intermediate) for the matmuls, + 4 x layers x
    tokens^2 x h for attention. None when the config does not say (the caller keeps its default)."""
    from ..auto import checkpoint_config
    try:
        config, _ = checkpoint_config(name_or_path)
        vision = config.get("vision_config") or config
        h, inter, layers = (int(vision[k]) for k in ("hidden_size", "intermediate_size", "num_hidden_layers"))
        side, patch = (vision[k] for k in ("image_size", "patch_size"))
        side, patch = (max(v) if isinstance(v, (list, tuple)) else v for v in (side, patch))
        tokens = (int(side) // int(patch)) ** 2 + 1
    except Exception:  # noqa: BLE001 - unreadable or unusual config: no estimate, the loader reports real errors
        return None
    return layers * tokens * (2 * (4 * h * h + 2 * h * inter) + 4 * tokens * h) / 1e9
