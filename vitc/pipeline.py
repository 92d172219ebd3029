"""Images in, labels out: the high-level call behind model.classify and `vitc classify`.

Scores follow transformers' image-classification pipeline: sigmoid for multi-label checkpoints
(problem_type == "multi_label_classification") or a single output, softmax otherwise.
"""
import numpy as np


def scores_from_logits(logits, problem_type=None):
    """Per-class probabilities [N, L] (float64) from logits [N, L]."""
    logits = np.asarray(logits, dtype=np.float64)
    if problem_type == "multi_label_classification" or logits.shape[-1] == 1:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def top_k_labels(scores, id2label, top_k=5):
    """Per row of scores [N, L]: a list of (label, score) best first, at most top_k long."""
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    k = min(top_k, scores.shape[-1])
    # stable sort so ties keep class order, as torch.topk does on CPU in practice
    order = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    return [[(id2label.get(int(i), str(int(i))), float(row[i])) for i in idx] for row, idx in zip(scores, order)]


def pixel_values_for(model, images):
    """A float32 [N, C, H, W] batch: arrays of rank 4 pass through, anything else goes through the
    model's image processor (paths, PIL images, HWC uint8 arrays, or lists of them)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return images
    return model.image_processor(images)["pixel_values"]


def classify(model, images, top_k=5):
    """Per image a list of (label, score) with the checkpoint's id2label."""
    logits = model(pixel_values_for(model, images)).logits
    scores = scores_from_logits(logits, getattr(model.config, "problem_type", None))
    return top_k_labels(scores, model.config.id2label, top_k)
