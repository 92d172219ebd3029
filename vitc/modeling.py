"""The model classes: transformers' ViT forward pass over vitc's C kernels, shared by every family.

Loading checks the checkpoint against the family's tables (vitc/families) and streams each tensor once into
one weight arena (vitc/weights.py). The forward keeps its activation buffers per input shape
(vitc/buffers.py) and runs each encoder layer as one C call with the GIL released:
    embeddings (patchify + patch GEMM + cls/pos, prefix rows)  ->  L x pre-LN encoder layer
    ->  the family's ending (final LayerNorm, pooler, head).
This file holds the shared base (_ViTBase) and ViTModel / ViTForImageClassification; DeiT checkpoints
(model_type "deit") add a distillation token after CLS: two prefix tokens instead of one.
"""
import contextlib
import threading
import time
from collections import OrderedDict

import numpy as np

from . import _vitc, guards, runtime, saving
from .buffers import Buffers
from .config import ViTConfig
from .families import vit as vit_family
from .families.table import WeightsMismatchError, short as _short  # noqa: F401  (re-exported)
from .hub import resolve_checkpoint
from .outputs import BaseModelOutputWithPooling, DeiTImageClassifierOutput, ImageClassifierOutput
from .pos_embed import bicubic_resize, interpolate_pos_encoding  # noqa: F401  (re-exported)
from .profiling import ForwardProfile
from .safetensors_reader import CheckpointReader
from .weights import return_free_heap


def lowp_kernel_set(isa, dtype):
    """Kernel set of a model's encoder GEMMs: the ISA for float32; for bf16/int8 the best set this CPU has
    (vdpbf16ps / vpdpbusd), or the set of a forced lower ISA (scalar, avx2: their fallbacks)."""
    sets = _vitc.kernel_sets(dtype)
    if dtype == 0 or isa < runtime.ISA_NAMES.index("avx512"):
        return isa if isa in sets else sets[-1]
    return sets[-1]


class _ViTBase:
    """Shared loading and encoder forward of ViTModel and ViTForImageClassification.

    Thread safety: a model object may be called from any number of Python threads. Its calls run one at a
    time (a per-model lock guards the activation buffers it reuses between calls); each call returns fresh
    output arrays that no later call writes. The GIL is released inside the C kernels, so different model
    objects run in parallel, and concurrent calls split the cores between them (runtime.compute_threads).
    For parallel throughput on one checkpoint, load one model object per thread."""
    _with_head = False
    _max_cached_shapes = 2
    _always_interpolate = False  # DINOv2: every input size runs, positions resized as transformers does
    _processor_family = None  # image_processing.IMAGE_PROCESSOR_CLASSES key of a family's processor
    _embedding_from_first_token = False  # _embedding reads only token 0: embed() runs its last layer on it alone

    config_class = ViTConfig

    def __init__(self, config, reader, isa=None, threads=None, source="checkpoint", dtype=None):
        if not isinstance(config, self.config_class):
            raise TypeError(f"config must be a vitc.{self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self._isa = runtime.isa_code(isa)
        self._dtype = _vitc.dtype_code(saving.resolve_dtype(reader, dtype, source))
        self._kset = lowp_kernel_set(self._isa, self._dtype)
        self.threads = None if threads is None else runtime.resolve_threads(threads)
        hidden = saving.converted_keys(reader, source)  # int8 weights' scales: not transformers' names
        plan = self._plan(config, [k for k in reader.keys() if k not in hidden], reader.shape, source)
        self._weight_plan, self._weight_files = plan, saving.weight_files(reader)  # for save_pretrained
        self._num_prefix = self._prefix_tokens(config)
        self._num_parameters = plan.num_parameters
        counter = guards.NonfiniteCounter(reader)  # NaN/Inf per tensor, counted on the raw copies
        model, layers, head = plan.load(self._isa, counter, None if self._dtype == 0 else (self._kset, self._dtype))
        return_free_heap()
        self._nonfinite = dict(counter.nonfinite)
        self._w = model
        self._weight_bytes = sum(a.nbytes for part in [model, head] + layers for a in part.values() if a is not None)
        self._pos = model["pos"].reshape(-1, config.hidden_size) if model.get("pos") is not None else None
        self._layers = [_vitc.EncoderLayer(self._isa, config.hidden_size, config.num_attention_heads,
                                           config.intermediate_size, float(config.layer_norm_eps),
                                           config.hidden_act_code, arrays, self._mlp_kind(config))
                        for arrays in layers]
        self._setup(plan, model, head)
        self._buffers = OrderedDict()
        self._positions = {}
        self._lock = runtime.fork_safe_lock()  # released in a fork child (another thread may hold it)
        self._call_threads = 1
        self._profile = None
        self._image_processor = None
        self.name_or_path = source
        self.preprocessor_config_path = None

    # ---- what a family defines (here: ViT / DeiT) ------------------------------------------------------
    def _plan(self, config, keys, shape_of, source):
        """The WeightPlan of this family's tables for a checkpoint's keys."""
        return vit_family.plan(config, keys, shape_of, self._with_head, source)

    def _prefix_tokens(self, config):
        """Tokens before the patches (CLS, distillation, registers)."""
        return vit_family.num_prefix(config)

    def _mlp_kind(self, config):
        """The encoder layer's MLP (_vitc.MLP_KINDS): "standard" fc2(act(fc1)), or "swiglu"."""
        return "standard"

    def _setup(self, plan, model, head):
        """Keep what the family's forward needs from the loaded arrays."""
        self._pooler = (model["pooler_w"], model["pooler_b"]) if plan.has_pooler else None
        self._heads = [(head[f"head{i}_w"], head[f"head{i}_b"]) for i in range(2) if head.get(f"head{i}_w") is not None]
        self._head_kind = plan.head

    def _prefix_rows(self, pos):
        """(prefix rows [num_prefix, D] complete with their position rows, or None; the patches' position rows
        [patches, D]) for the C embedding, from position embeddings `pos` of this grid. ViT: CLS (+ DeiT's
        distillation token) plus position rows 0 (and 1)."""
        tokens = [self._w["cls"]] + ([self._w["dist"]] if self._num_prefix == 2 else [])
        prefix = np.stack([tok + pos[i] for i, tok in enumerate(tokens)]).astype(np.float32, copy=False)
        return prefix, np.ascontiguousarray(pos[self._num_prefix:])

    def _grid_positions(self, grid, height, width, interpolate):
        """Position embeddings [prefix + patches, D] for this input grid."""
        if not interpolate:
            return self._pos
        return interpolate_pos_encoding(self._pos, self._num_prefix, self.config.grid, grid, height == width)

    # ---- loading ---------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, token=None, threads=None,
                        isa=None, local_files_only=False, dtype=None):
        """Load a checkpoint from a local folder (config.json + model.safetensors or its sharded index) or a
        Hub repo id. threads=None follows vitc.get_num_threads() at each call; isa=None uses vitc.get_isa().
        dtype: "float32", "bfloat16" / "bf16" or "int8": the encoder layers' Linear weights in that dtype
        (README, "Reduced precision"); the rest of the model stays float32. None (default): float32, or the
        dtype of a folder written by save_pretrained (which loads only as that dtype: vitc/saving.py)."""
        files = resolve_checkpoint(path_or_repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                   local_files_only=local_files_only)
        config = cls.config_class.from_json_file(files.config)
        with CheckpointReader(files.weights) as reader:
            model = cls(config, reader, isa=isa, threads=threads, source=files.weights, dtype=dtype)
        model.name_or_path = str(path_or_repo_id)
        model.preprocessor_config_path = files.preprocessor
        return model

    def save_pretrained(self, save_directory):
        """Write the model as it holds its weights (bf16 / int8 encoder Linear weights already converted) as
        model.safetensors + config.json + preprocessor_config.json; from_pretrained of that folder gives
        bit-identical outputs without converting again (vitc/saving.py). Returns the folder's path."""
        return saving.save_pretrained(self, save_directory)

    # ---- properties ------------------------------------------------------------------------------------
    @property
    def isa(self):
        """Name of the ISA this model's weights are packed for."""
        return runtime.ISA_NAMES[self._isa]

    @property
    def dtype(self):
        """"float32", "bfloat16" or "int8": the dtype of the encoder layers' Linear weights."""
        return _vitc.DTYPES[self._dtype]

    @property
    def kernel_set(self):
        """The GEMM kernel set of the encoder layers (_vitc.KERNEL_SETS; float32: the ISA)."""
        return _vitc.KERNEL_SETS[self._kset]

    @property
    def attention(self):
        """How the encoder's attention computes Q·Kᵀ and P·V: "bfloat16 (amx)" for bf16/int8 models whose kernel
        set has the bf16 attention and whose head size it takes (csrc/vit.c makes the same choice; asking for
        attention maps runs the float32 one), else "float32"."""
        head_dim = self.config.hidden_size // self.config.num_attention_heads
        if self._dtype != _vitc.dtype_code("float32") and _vitc.bf16_attention_applies(self._kset, head_dim):
            return f"bfloat16 ({self.kernel_set})"
        return "float32"

    def weight_bytes(self):
        """Bytes of the loaded weights (packed; bf16 ~1/2, int8 ~1/4 of float32 for the encoder layers)."""
        return int(self._weight_bytes)

    def num_parameters(self):
        """Parameters loaded (as transformers' model.num_parameters() for the same modules)."""
        return self._num_parameters

    def nonfinite_weights(self):
        """{checkpoint tensor name: number of NaN/Inf values} for the tensors that have any (empty when all
        weights are finite). Counted while loading; such a model loads and runs, its outputs may be NaN."""
        return dict(self._nonfinite)

    def check_weights(self):
        """Raise ValueError naming the tensors that hold NaN/Inf values; return self when all are finite."""
        if self._nonfinite:
            raise ValueError(f"{self.name_or_path}: non-finite weights (NaN/Inf count per tensor): "
                             f"{_short([f'{k}: {v}' for k, v in sorted(self._nonfinite.items())])}")
        return self

    def eval(self):
        """Inference only; kept so code written for transformers runs unchanged."""
        return self

    def _nthreads(self):
        """Threads of the call in progress (set under self._lock by _calling)."""
        return self._call_threads

    @contextlib.contextmanager
    def _calling(self):
        """One forward at a time per model (its buffers are shared); the cores are split between models
        that run concurrently in other Python threads (runtime.compute_threads)."""
        wanted = self.threads if self.threads is not None else runtime.get_num_threads()
        with runtime.compute_threads(wanted) as nthreads, self._lock:
            self._call_threads = nthreads
            prof = self._profile
            if prof is None:
                yield
                return
            prof.call_start = time.perf_counter()
            yield
            prof.end_call(time.perf_counter() - prof.call_start)

    @contextlib.contextmanager
    def profile(self):
        """Time the phases of the forward calls made inside the block:
        `with model.profile() as prof: model(x)`, then prof.table() / prof.as_dict()."""
        prof = ForwardProfile()
        with self._lock:
            self._profile = prof
        try:
            yield prof
        finally:
            with self._lock:
                self._profile = None

    # ---- images in, labels and embeddings out --------------------------------------------------------
    @property
    def image_processor(self):
        """The checkpoint's image processor (its preprocessor_config.json, else the family's defaults at the
        model's image size), made on first use. ViT/DeiT: ViTImageProcessor; other families: the class
        AutoImageProcessor picks (CLIP, Siglip, Bit)."""
        if self._image_processor is None and self._processor_family is not None:
            from .image_processing import IMAGE_PROCESSOR_CLASSES
            if self.preprocessor_config_path:
                from .auto import AutoImageProcessor
                import os
                self._image_processor = AutoImageProcessor.from_pretrained(
                    os.path.dirname(os.path.abspath(self.preprocessor_config_path)))
            else:
                h, w = self.config.image_hw
                size = {"height": h, "width": w}
                cls = IMAGE_PROCESSOR_CLASSES[self._processor_family]
                self._image_processor = cls(size=size) if self._processor_family == "Siglip" else \
                    cls(size={"shortest_edge": min(h, w)}, crop_size=size)
        if self._image_processor is None:
            from .image_processing import ViTImageProcessor
            if self.preprocessor_config_path:
                self._image_processor = ViTImageProcessor.from_pretrained(self.preprocessor_config_path)
            else:
                h, w = self.config.image_hw
                self._image_processor = ViTImageProcessor(size={"height": h, "width": w})
        return self._image_processor

    def embed(self, images, all_tokens=False, normalize=False):
        """Embeddings [N, D] of images (paths, PIL images, HWC uint8 arrays, lists of them, or a
        [N, C, H, W] float array): what users of the family index (ViT: the pooler output where the
        checkpoint has a pooler, else the CLS token of the final LayerNorm output). normalize=True: each row
        scaled to unit L2 norm. all_tokens=True: every token of last_hidden_state, [N, S, D]."""
        from .pipeline import pixel_values_for
        pixels = pixel_values_for(self, images)
        if all_tokens:
            return self.encode(pixels).last_hidden_state
        out = self._encode_first_token(pixels) if self._embedding_from_first_token else self.encode(pixels)
        return l2_normalize(self._embedding(out)) if normalize else self._embedding(out)

    def _encode_first_token(self, pixel_values):
        """encode() for _embedding alone: the last layer runs on the first token only (first_tokens.py), so
        the output's other rows are not the model's."""
        interpolate = self._always_interpolate
        x = self._check_pixels(pixel_values, interpolate)
        with self._calling():
            bufs, _, _ = self._encode(x, False, False, interpolate, first_token_only=self._profile is None)
            return self._outputs(bufs, x.shape[0])

    def _embedding(self, out):
        return out.pooler_output if out.pooler_output is not None else out.last_hidden_state[:, 0]

    def encode(self, pixel_values, output_hidden_states=False, output_attentions=False,
               interpolate_pos_encoding=False, return_dict=True):
        """The encoder's outputs (the family's base model forward): last_hidden_state, pooler_output,
        hidden_states and attentions on request."""
        interpolate = bool(interpolate_pos_encoding) or self._always_interpolate
        x = self._check_pixels(pixel_values, interpolate, output_hidden_states, output_attentions)
        with self._calling():
            bufs, hidden_states, attentions = self._encode(x, output_hidden_states, output_attentions, interpolate)
            out = self._outputs(bufs, x.shape[0])
        out.hidden_states, out.attentions = hidden_states, attentions
        return out if return_dict else out.to_tuple()

    def _outputs(self, bufs, b):
        """The output object after the last layer (ViT: final LayerNorm on every token, the pooler if any)."""
        s, d = bufs.seq, self.config.hidden_size
        last = np.empty((b, s, d), np.float32)
        self._layernorm(bufs.hidden, last.reshape(b * s, d))
        pooled = None
        if self._pooler is not None:
            pooled = self._linear(last[:, 0], self._pooler, self.config.pooler_output_size,
                                  act=self.config.pooler_act_code)
        return BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=pooled)

    # ---- forward ---------------------------------------------------------------------------------------
    def _check_pixels(self, pixel_values, interpolate, hidden_states=False, attentions=False):
        x = np.asarray(pixel_values)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"pixel_values must be a real-valued array, got dtype {x.dtype}")
        if x.ndim != 4:
            raise ValueError(f"pixel_values must be 4-D [batch, channels, height, width], got {x.ndim}-D shape "
                             f"{tuple(x.shape)}" + (" (add a batch axis: x[None])" if x.ndim == 3 else ""))
        b, c, h, w = x.shape
        cfg = self.config
        if c != cfg.num_channels:
            raise ValueError(f"pixel_values has {c} channels, expected {cfg.num_channels} (config.num_channels); "
                             f"shape {tuple(x.shape)} must be [batch, channels, height, width]")
        if b == 0:
            raise ValueError("pixel_values has an empty batch")
        (ih, iw), (ph, pw) = cfg.image_hw, cfg.patch_hw
        if not interpolate and (h, w) != (ih, iw):
            raise ValueError(f"Input image size ({h}*{w}) doesn't match model ({ih}*{iw}); pass "
                             f"interpolate_pos_encoding=True to run at another resolution.")
        if h < ph or w < pw:
            raise ValueError(f"Input image size ({h}*{w}) is smaller than one patch ({ph}*{pw})")
        # a huge batch is a MemoryError here, before the float32 copy or any buffer is allocated
        guards.check_forward_memory(self, x.shape, x.dtype, x.dtype == np.float32 and x.flags.c_contiguous,
                                    bool(hidden_states), bool(attentions))
        return np.ascontiguousarray(x, dtype=np.float32)

    def _get_buffers(self, batch, height, width, nthreads):
        key = (batch, height, width, nthreads)
        bufs = self._buffers.get(key)
        if bufs is None:
            bufs = Buffers(self, batch, height, width, nthreads)
            self._buffers[key] = bufs
            while len(self._buffers) > self._max_cached_shapes:
                self._buffers.popitem(last=False)
        else:
            self._buffers.move_to_end(key)
        return bufs

    def _get_positions(self, grid, height, width, interpolate):
        """_prefix_rows of this grid's position embeddings, cached per grid."""
        key = (grid, height == width) if interpolate else None
        entry = self._positions.get(key)
        if entry is None:
            entry = self._prefix_rows(self._grid_positions(grid, height, width, interpolate))
            if len(self._positions) >= 8:
                self._positions.clear()
            self._positions[key] = entry
        return entry

    def _encode(self, x, output_hidden_states, output_attentions, interpolate, first_token_only=False):
        """Embeddings and every encoder layer into the shape's hidden buffer [N*S, D] (before the final LN).
        Returns (buffers, hidden_states tuple or None, attentions tuple or None). first_token_only: the last
        layer computes token 0 of each image alone (the other rows keep its input)."""
        cfg, isa, nt = self.config, self._isa, self._nthreads()
        b, _, h, w = x.shape
        ph, pw = cfg.patch_hw
        bufs = self._get_buffers(b, h, w, nt)
        s, d = bufs.seq, cfg.hidden_size
        prefix, patch_pos = self._get_positions(bufs.grid, h, w, interpolate)
        hidden3 = bufs.hidden.reshape(b, s, d)
        _vitc.embed(isa, nt, x, ph, pw, self._w["patch_w"], self._patch_bias(), prefix, patch_pos, hidden3,
                    bufs.embed_ws)
        self._after_embeddings(bufs.hidden)
        prof = self._profile
        if prof is not None:
            prof.add("embeddings", time.perf_counter() - prof.call_start)
        hidden_states = [hidden3.copy()] if output_hidden_states else None
        attentions = [] if output_attentions else None
        layers = self._layers
        if first_token_only and layers and not (output_hidden_states or output_attentions) and \
                self._mlp_kind(cfg) == "standard":
            layers = layers[:-1]
        for layer in layers:
            probs = np.empty((b, cfg.num_attention_heads, s, s), np.float32) if output_attentions else None
            layer.forward(nt, bufs.hidden, b, bufs.layer_ws, probs, None if prof is None else prof.layer_seconds)
            if output_hidden_states:
                hidden_states.append(hidden3.copy())
            if output_attentions:
                attentions.append(probs)
        if len(layers) < len(self._layers):
            from .first_tokens import last_layer_first_tokens
            last_layer_first_tokens(self, self._layers[-1], bufs.hidden, b, 1, nt)
        return (bufs, tuple(hidden_states) if hidden_states is not None else None,
                tuple(attentions) if attentions is not None else None)

    def _patch_bias(self):
        return self._w["patch_b"]

    def _after_embeddings(self, hidden):
        """In place on the embeddings [N*S, D] before the first layer (CLIP: pre_layrnorm)."""

    def _layernorm(self, x, out, gamma="ln_g", beta="ln_b"):
        return _vitc.layernorm(self._isa, self._nthreads(), x, self._w[gamma], self._w[beta],
                               float(self.config.layer_norm_eps), out)

    def _linear(self, a, weight, n, act=0):
        """a [M, K] · weight[0]ᵀ (+ weight[1]) -> [M, n]; weight[1] may be None."""
        out = np.empty((a.shape[0], n), np.float32)
        return _vitc.gemm(self._isa, self._nthreads(), a, weight[0], n, out, bias=weight[1], act=act)

    _repr_fields = ("image_size", "patch_size")  # config fields shown after the common ones

    def __repr__(self):
        c = self.config
        extra = "".join(f"{name}={getattr(c, name)}, " for name in self._repr_fields)
        return (f"{type(self).__name__}(model_type={c.model_type!r}, hidden_size={c.hidden_size}, "
                f"layers={c.num_hidden_layers}, heads={c.num_attention_heads}, {extra}isa={self.isa!r})")


def l2_normalize(x):
    """Rows of x scaled to unit L2 norm (a zero row stays zero)."""
    norm = np.sqrt(np.einsum("ij,ij->i", x.astype(np.float64), x.astype(np.float64)))[:, None]
    return (x / np.where(norm > 0, norm, 1)).astype(np.float32)


class ViTModel(_ViTBase):
    """The bare encoder: last_hidden_state after the final LayerNorm, pooler_output when the checkpoint has
    a pooler (tanh(dense(CLS)) by default), else None. Thread-safe: see _ViTBase (calls on one object are
    serialized)."""
    _with_head = False
    _embedding_from_first_token = True

    __call__ = _ViTBase.encode
    forward = __call__

    @property
    def has_pooler(self):
        return self._pooler is not None


class ViTForImageClassification(_ViTBase):
    """Encoder + linear classifier on the CLS token after the final LayerNorm (DeiT with teacher: the mean
    of the CLS and distillation heads). Thread-safe: see _ViTBase (calls on one object are serialized)."""
    _with_head = True
    _embedding_from_first_token = True

    def __call__(self, pixel_values, output_hidden_states=False, output_attentions=False,
                 interpolate_pos_encoding=False, return_dict=True):
        interpolate = bool(interpolate_pos_encoding)
        x = self._check_pixels(pixel_values, interpolate, output_hidden_states, output_attentions)
        cfg = self.config
        with self._calling():
            bufs, hidden_states, attentions = self._encode(x, output_hidden_states, output_attentions, interpolate)
            b, s = x.shape[0], bufs.seq
            # only the prefix rows feed the heads: LayerNorm just those ([N, D] views with row stride S*D)
            tokens = [self._layernorm(bufs.hidden[t::s], np.empty((b, cfg.hidden_size), np.float32))
                      for t in range(2 if self._head_kind == "teacher" else 1)]
            if cfg.num_labels == 0:  # nn.Identity head(s)
                logits = tokens
            else:
                logits = [self._linear(tok, head, cfg.num_labels) for tok, head in zip(tokens, self._heads)]
        if self._head_kind == "teacher":
            out = DeiTImageClassifierOutput(logits=(logits[0] + logits[1]) / 2, cls_logits=logits[0],
                                            distillation_logits=logits[1], hidden_states=hidden_states,
                                            attentions=attentions)
        else:
            out = ImageClassifierOutput(logits=logits[0], hidden_states=hidden_states, attentions=attentions)
        return out if return_dict else out.to_tuple()

    forward = __call__

    def classify(self, images, top_k=5):
        """Per image a list of (label, score), best first, with the checkpoint's id2label: softmax scores,
        or sigmoid for multi-label checkpoints (as transformers' image-classification pipeline)."""
        from .pipeline import classify
        return classify(self, images, top_k)


# DeiT names, for code written against transformers' DeiT classes
DeiTModel = ViTModel
DeiTForImageClassification = ViTForImageClassification
DeiTForImageClassificationWithTeacher = ViTForImageClassification
