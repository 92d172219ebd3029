"""CLIPProcessor / SiglipProcessor: a checkpoint's tokenizer and image processor behind one call, as
transformers' processors: processor(text=[...], images=[...]) -> input_ids (+ attention_mask) and pixel_values."""
from .tokenization import BatchEncoding

__all__ = ["CLIPProcessor", "SiglipProcessor"]


class _ImageTextProcessor:
    tokenizer_class_name = ""
    image_processor_class_name = ""

    def __init__(self, image_processor, tokenizer):
        self.image_processor, self.tokenizer = image_processor, tokenizer

    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, token=None):
        from . import image_processing, tokenization
        hub = {"revision": revision, "cache_dir": cache_dir, "token": token}
        tokenizer = getattr(tokenization, cls.tokenizer_class_name).from_pretrained(path_or_repo_id, **hub)
        images = getattr(image_processing, cls.image_processor_class_name).from_pretrained(path_or_repo_id, **hub)
        return cls(images, tokenizer)

    def __call__(self, text=None, images=None, return_tensors="np", **text_kwargs):
        """text_kwargs (padding, truncation, max_length, ...) go to the tokenizer; its defaults are the way the
        family's processor is called (CLIP: pad to the longest; SigLIP: padding="max_length", 64)."""
        if text is None and images is None:
            raise ValueError("pass text, images or both")
        out = BatchEncoding()
        if text is not None:
            out.update(self.tokenizer(text, return_tensors=return_tensors, **text_kwargs))
        if images is not None:
            out.update(self.image_processor(images, return_tensors=return_tensors))
        return out

    def __repr__(self):
        return f"vitc.{type(self).__name__}(\n  tokenizer={self.tokenizer!r},\n  image_processor={self.image_processor!r})"


class CLIPProcessor(_ImageTextProcessor):
    tokenizer_class_name, image_processor_class_name = "CLIPTokenizer", "CLIPImageProcessorPil"


class SiglipProcessor(_ImageTextProcessor):
    tokenizer_class_name, image_processor_class_name = "SiglipTokenizer", "SiglipImageProcessorPil"
