"""Two-tower models: transformers' CLIPModel and SiglipModel. Each is an image tower and a text tower loaded
from the same checkpoint (each ignores the other's tensors) plus logit_scale (and SigLIP's logit_bias):
    logits_per_text = exp(logit_scale) * cos(text_embeds, image_embeds) (+ logit_bias),
    logits_per_image = its transpose.
Zero-shot scores: softmax over the labels (CLIP), sigmoid per label (SigLIP), as transformers'
zero-shot-image-classification pipeline."""
import numpy as np

from ..config_families import CLIPConfig, SiglipConfig
from ..hub import resolve_checkpoint
from ..modeling import l2_normalize
from ..outputs import CLIPOutput
from ..safetensors_reader import CheckpointReader
from ..saving import resolve_dtype, save_pretrained
from .clip import CLIPVisionModelWithProjection
from .siglip import SiglipVisionModel
from .table import WeightsMismatchError
from .text import CLIPTextModelWithProjection, SiglipTextModel


def _scalar(reader, name, source):
    if name not in reader.keys():
        raise WeightsMismatchError(f"{source}: missing tensor {name!r}")
    value = np.asarray(reader.get_float32(name), np.float32)
    if value.size != 1:
        raise WeightsMismatchError(f"{source}: tensor {name!r} has shape {tuple(value.shape)}, expected a scalar")
    return float(value.reshape(-1)[0])


class _TwoTower:
    config_class = None
    vision_class = text_class = None
    _scalars = ("logit_scale",)

    def __init__(self, config, reader, isa=None, threads=None, source="checkpoint", dtype=None):
        if not isinstance(config, self.config_class):
            raise TypeError(f"config must be a vitc.{self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        dtype = resolve_dtype(reader, dtype, source)
        self._fit_projections(config)
        self.vision_model = self.vision_class(config.vision_config, reader, isa=isa, threads=threads, source=source,
                                              dtype=dtype)
        self.text_model = self.text_class(config.text_config, reader, isa=isa, threads=threads, source=source,
                                          dtype=dtype)
        values = {name: _scalar(reader, name, source) for name in self._scalars}
        self.logit_scale = values["logit_scale"]
        self.logit_bias = values.get("logit_bias", 0.0)
        dims = self._embedding_dims(config)
        if dims[0] != dims[1]:
            raise ValueError(f"{source}: image embeddings have {dims[0]} values, text embeddings {dims[1]}: the "
                             f"towers do not share one embedding space")
        self.name_or_path = source

    @property
    def dtype(self):
        return self.vision_model.dtype

    @property
    def kernel_set(self):
        return self.vision_model.kernel_set

    def weight_bytes(self):
        return self.vision_model.weight_bytes() + self.text_model.weight_bytes()

    def save_pretrained(self, save_directory):
        """Both towers, logit_scale (and logit_bias), config, preprocessor and tokenizer files, as
        _ViTBase.save_pretrained (vitc/saving.py)."""
        return save_pretrained(self, save_directory)

    def _fit_projections(self, config):
        """The two-tower config's projection width (CLIP) is the towers' projection width."""

    def _embedding_dims(self, config):
        """(image, text) embedding widths."""
        return config.projection_dim, config.projection_dim

    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, token=None, threads=None,
                        isa=None, local_files_only=False, dtype=None):
        """A full two-tower checkpoint (config.json with text_config and vision_config, model.safetensors,
        tokenizer.json); local folder, bundled name or Hub repo id. dtype: as _ViTBase.from_pretrained, for
        both towers."""
        files = resolve_checkpoint(path_or_repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                   local_files_only=local_files_only)
        config = cls.config_class.from_json_file(files.config)
        with CheckpointReader(files.weights) as reader:
            model = cls(config, reader, isa=isa, threads=threads, source=files.weights, dtype=dtype)
        import os
        folder = os.path.dirname(os.path.abspath(files.config))
        for tower in (model, model.vision_model, model.text_model):
            tower.name_or_path = folder
        model.vision_model.preprocessor_config_path = files.preprocessor
        model.name_or_path = str(path_or_repo_id)
        return model

    # ---- pieces ----------------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        return self.text_model.tokenizer

    @property
    def image_processor(self):
        return self.vision_model.image_processor

    def get_text_features(self, input_ids=None, attention_mask=None):
        """Projected text embeddings [N, E] (not normalized), as transformers' get_text_features."""
        return self.text_model._embedding(self.text_model(input_ids=input_ids, attention_mask=attention_mask))

    def get_image_features(self, pixel_values=None, interpolate_pos_encoding=False):
        """Projected image embeddings [N, E] (not normalized), as transformers' get_image_features."""
        out = self.vision_model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        return self.vision_model._embedding(out)

    def __call__(self, input_ids=None, pixel_values=None, attention_mask=None, output_hidden_states=False,
                 output_attentions=False, interpolate_pos_encoding=False, return_dict=True):
        if input_ids is None or pixel_values is None:
            raise ValueError("pass both input_ids and pixel_values (or use get_text_features / get_image_features)")
        vision = self.vision_model(pixel_values, output_hidden_states=output_hidden_states,
                                   output_attentions=output_attentions,
                                   interpolate_pos_encoding=interpolate_pos_encoding)
        text = self.text_model(input_ids=input_ids, attention_mask=attention_mask,
                               output_hidden_states=output_hidden_states, output_attentions=output_attentions)
        image_embeds = l2_normalize(self.vision_model._embedding(vision))
        text_embeds = l2_normalize(self.text_model._embedding(text))
        logits_per_text = self.logits(text_embeds, image_embeds)
        out = CLIPOutput(logits_per_image=np.ascontiguousarray(logits_per_text.T), logits_per_text=logits_per_text,
                         text_embeds=text_embeds, image_embeds=image_embeds, text_model_output=text,
                         vision_model_output=vision)
        return out if return_dict else out.to_tuple()

    forward = __call__

    def logits(self, text_embeds, image_embeds):
        """logits_per_text [texts, images] of unit-norm embeddings."""
        sim = np.asarray(text_embeds, np.float32) @ np.asarray(image_embeds, np.float32).T
        return (sim * np.float32(np.exp(np.float32(self.logit_scale))) + np.float32(self.logit_bias)).astype(np.float32)

    # ---- what users call -------------------------------------------------------------------------------
    def embed_text(self, texts, normalize=False):
        """Embeddings [N, E] of a string or a list of strings (tokenized as the family's processor does)."""
        return self.text_model.embed_text(texts, normalize=normalize)

    def embed(self, images, normalize=False):
        """Embeddings [N, E] of images (paths, PIL images, arrays, lists of them)."""
        return self.vision_model.embed(images, normalize=normalize)

    def classify(self, images, labels, template="a photo of {}.", top_k=None):
        """Zero-shot: per image a list of (label, score), best first, over `labels` written into `template`
        (scores: softmax over labels for CLIP, sigmoid per label for SigLIP, as transformers' pipeline)."""
        labels, prompts = label_prompts(labels, template)
        return self.rank_labels(self.embed_text(prompts, normalize=True), self.embed(images, normalize=True),
                                labels, top_k)

    def rank_labels(self, text_embeds, image_embeds, labels, top_k=None):
        """classify's last step, for callers that embed themselves (the server batches both towers): per
        image a list of (label, score), best first, from unit-norm embeddings of the labels' prompts."""
        scores = self._scores(self.logits(text_embeds, image_embeds).T)
        k = len(labels) if top_k is None else max(1, min(int(top_k), len(labels)))
        return [[(labels[j], float(row[j])) for j in np.argsort(-row, kind="stable")[:k]] for row in scores]

    def __repr__(self):
        return f"{type(self).__name__}(\n  vision={self.vision_model!r},\n  text={self.text_model!r})"


def label_prompts(labels, template="a photo of {}."):
    """(labels as a list, the text each is embedded as): checks both."""
    labels = _labels(labels)
    if not isinstance(template, str) or "{}" not in template:
        raise ValueError(f"template must be a string with '{{}}' where the label goes, got {template!r}")
    return labels, [template.format(label) for label in labels]


def _labels(labels):
    if isinstance(labels, str):
        labels = [s.strip() for s in labels.split(",") if s.strip()]
    if not isinstance(labels, (list, tuple)) or not labels:
        raise ValueError("labels must be a non-empty list of strings")
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise TypeError(f"label {i} is a {type(label).__name__}, expected a string")
    return list(labels)


class CLIPModel(_TwoTower):
    """transformers.CLIPModel: CLIPVisionModelWithProjection + CLIPTextModelWithProjection + logit_scale."""
    config_class = CLIPConfig
    vision_class, text_class = CLIPVisionModelWithProjection, CLIPTextModelWithProjection

    def _fit_projections(self, config):
        config.vision_config.projection_dim = config.projection_dim
        config.text_config.projection_dim = config.projection_dim

    @staticmethod
    def _scores(logits_per_image):
        z = logits_per_image.astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


class SiglipModel(_TwoTower):
    """transformers.SiglipModel: SiglipVisionModel (attention-pooling head) + SiglipTextModel + logit_scale,
    logit_bias."""
    config_class = SiglipConfig
    vision_class, text_class = SiglipVisionModel, SiglipTextModel
    _scalars = ("logit_scale", "logit_bias")

    def _embedding_dims(self, config):
        return config.vision_config.hidden_size, config.text_config.projection_size

    @staticmethod
    def _scores(logits_per_image):
        return (1.0 / (1.0 + np.exp(-logits_per_image.astype(np.float64)))).astype(np.float32)
