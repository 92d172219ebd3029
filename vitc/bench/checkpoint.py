"""What is benchmarked: a checkpoint folder (local, bundled or from the Hub), its FLOPs counted from its
config, and the files the peers run (transformers reads the folder; ONNX export, int8 ONNX), cached on disk.

torch/transformers/onnx are imported lazily (only to build or export), so a child process that measures
ONNX Runtime, OpenVINO or vitc never pays for them.
"""
import hashlib
import json
import os
import struct
import time
from pathlib import Path

from .families import PREFIX_TOKENS, TARGETS, architecture_of

DEFAULT_CACHE = Path(os.environ.get("VITC_BENCH_CACHE", Path.home() / ".cache" / "vitc-bench"))
# Bump when the random-checkpoint recipe or the export recipe changes: cached files are then rebuilt.
RECIPE_VERSION = 2
EXPORT_VERSION = 2

# Random checkpoints of benchmarks/bench_vit.py: google/vit-base-patch16-224 shapes and the ViT-S/Ti siblings.
RANDOM_SPECS = {
    "b16": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "s16": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "ti16": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
}
COMMON_SPEC = dict(image_size=224, patch_size=16, num_channels=3, num_labels=1000,
                   hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True)

# Random checkpoints of benchmarks/bench_families.py, with the shapes of the Hub's most used image towers:
# name -> (transformers class, its config, the input side their processor feeds)
_B = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12)
_DINOV2 = dict(image_size=518, patch_size=14, mlp_ratio=4, layerscale_value=1.0, layer_norm_eps=1e-6)
FAMILY_SPECS = {
    "clip-b32": ("CLIPVisionModelWithProjection",  # openai/clip-vit-base-patch32's image tower
                 dict(_B, intermediate_size=3072, image_size=224, patch_size=32, projection_dim=512,
                      hidden_act="quick_gelu", layer_norm_eps=1e-5), 224),
    "siglip-b16": ("SiglipVisionModel",  # google/siglip-base-patch16-224's image tower
                   dict(_B, intermediate_size=3072, image_size=224, patch_size=16, hidden_act="gelu_pytorch_tanh",
                        layer_norm_eps=1e-6), 224),
    "dinov2-s14": ("Dinov2Model", dict(_DINOV2, hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
                   224),  # facebook/dinov2-small (positions for 518, its processor crops 224)
    "dinov2-b14": ("Dinov2Model", dict(_DINOV2, **_B), 224),  # facebook/dinov2-base
}


class Checkpoint:
    """A checkpoint folder and what the benchmark needs to know about it: config.json, and from the row of
    families.TARGETS its architecture selects, the vitc class, the transformers class and the output timed.
    image_size: the input's side (default the config's; DINOv2 configs say 518, their processor crops 224)."""

    def __init__(self, model, cache_dir=DEFAULT_CACHE, image_size=None):
        from ..auto import AutoConfig
        from ..hub import resolve_checkpoint

        files = resolve_checkpoint(model)  # CheckpointNotFoundError (clear message) for a wrong path / id
        self.name = str(model)
        self.folder = Path(os.path.dirname(files.config))
        self.weights = Path(files.weights)
        self.cache_dir = Path(cache_dir).expanduser()
        with open(files.config) as f:
            raw = json.load(f)
        self.architecture = architecture_of(raw, files.config)
        self.target = TARGETS[self.architecture]
        config = AutoConfig.from_pretrained(str(self.folder))  # the family's config class
        self.config = getattr(config, "vision_config", config)  # a two-tower checkpoint: its image tower's
        self.classifier = self.target.output == "logits"
        self.teacher = self.architecture.endswith("WithTeacher")
        self.image_size = image_size
        # prefix tokens before the patches: CLS (none for SigLIP), DeiT's distillation token, DINOv2's registers
        self.num_prefix = PREFIX_TOKENS.get(self.config.model_type, 1) + int(getattr(self.config,
                                                                                      "num_register_tokens", 0))

    @property
    def output_name(self):
        return self.target.output

    @property
    def image_hw(self):
        return (self.image_size, self.image_size) if self.image_size else tuple(self.config.image_hw)

    def input_shape(self, batch):
        h, w = self.image_hw
        return (batch, self.config.num_channels, h, w)

    def flops_per_image(self):
        """2 x MACs of every matmul: patch conv, per layer QKV / attention output / MLP linears (DINOv2's
        SwiGLU: 3 D x hidden) plus QK^T and AV over all heads, and the output's head: classifier(s) on the
        prefix tokens (DINOv2's on [CLS, mean of patches]), CLIP's projection, SigLIP's attention-pooling head.
        LayerNorm, softmax, GELU, adds (O(tokens x D)) and a ViTModel's pooler (D x D on one token) are left
        out, as usual. ViT-B/16: 35.13 GFLOP."""
        c = self.config
        d, f, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
        ph, pw = c.patch_hw
        h, w = self.image_hw
        patches = (h // ph) * (w // pw)
        tokens = patches + self.num_prefix
        mlp = 3 * f if getattr(c, "use_swiglu_ffn", False) else 2 * f
        macs = patches * d * c.num_channels * ph * pw
        macs += layers * (tokens * d * (3 * d + d + mlp) + 2 * tokens * tokens * d)
        if self.classifier:
            width = 2 * d if c.model_type.startswith("dinov2") else d
            macs += (2 if self.teacher else 1) * width * c.num_labels
        elif self.output_name == "image_embeds":
            macs += d * c.projection_dim
        elif c.model_type.startswith("siglip") and self.output_name == "pooler_output":
            # probe query, keys and values of every token, attention over them, out_proj, the head's MLP
            macs += d * d + tokens * 2 * d * d + 2 * tokens * d + d * d + 2 * d * f
        return 2 * macs

    def weight_bytes(self):
        """Bytes of the tensors in model.safetensors (or its shards), read from the headers only."""
        paths = [self.weights]
        if self.weights.suffix == ".json":
            with open(self.weights) as f:
                paths = [self.folder / p for p in sorted(set(json.load(f)["weight_map"].values()))]
        total = 0
        for path in paths:
            with open(path, "rb") as f:
                (header_len,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(header_len))
            total += sum(m["data_offsets"][1] - m["data_offsets"][0] for k, m in header.items()
                         if k != "__metadata__")
        return total

    # ---- exports (cached per checkpoint content) ---------------------------------------------------------
    def _export_dir(self):
        st = self.weights.stat()
        key = (f"{self.weights.resolve()}|{st.st_size}|{st.st_mtime_ns}|{EXPORT_VERSION}|{self.target}|"
               f"{self.image_hw}")
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        return self.cache_dir / "exports" / f"{Path(self.name).name or 'model'}-{digest}"

    def onnx_file(self, log=print, opset=18):
        """torch.onnx.export (TorchScript exporter: no onnxscript needed) of the eager-attention model, traced
        at the benchmark's image size, with the one output timed and a dynamic batch axis; written to a
        temporary name, then renamed, so an interrupted export is redone."""
        path = self._export_dir() / "model.onnx"
        if path.is_file():
            return path
        import warnings

        import torch

        t0 = time.perf_counter()
        model = one_output(self.torch_model("eager"), self.output_name)
        dummy = torch.zeros(self.input_shape(1))
        register_onnx_symbolics()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"model.{os.getpid()}.tmp.onnx")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings about shape checks frozen into the graph
                torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, opset_version=opset,
                                  input_names=["pixel_values"], output_names=[self.output_name],
                                  dynamic_axes={"pixel_values": {0: "batch"}, self.output_name: {0: "batch"}})
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        log(f"exported {path} (opset {opset}) [{time.perf_counter() - t0:.1f} s]")
        return path

    def onnx_int8_file(self, log=print):
        """ONNX Runtime's quantize_dynamic of the export: int8 weights per output channel, activations
        quantized at run time."""
        path = self._export_dir() / "model.int8.onnx"
        if path.is_file():
            return path
        import logging

        from onnxruntime.quantization import QuantType, quantize_dynamic

        src = self.onnx_file(log)
        t0 = time.perf_counter()
        tmp = path.with_name(f"model.int8.{os.getpid()}.tmp.onnx")
        logging.disable(logging.WARNING)  # "consider pre-processing": advice for static quantization
        try:
            quantize_dynamic(str(src), str(tmp), per_channel=True, weight_type=QuantType.QInt8)
            os.replace(tmp, path)
        finally:
            logging.disable(logging.NOTSET)
            if tmp.exists():
                tmp.unlink()
        log(f"quantized {path} (dynamic int8, per channel) [{time.perf_counter() - t0:.1f} s]")
        return path

    def torch_model(self, attn):
        """The target's transformers class (a two-tower checkpoint: its vision class, which reads the image
        tower from the full checkpoint as transformers does)."""
        import transformers

        quiet_transformers()
        cls = getattr(transformers, self.target.torch_class)
        model = cls.from_pretrained(self.folder, attn_implementation=attn).eval()
        if model.config._attn_implementation != attn:
            raise RuntimeError(f"asked transformers for attn_implementation={attn!r}, "
                               f"got {model.config._attn_implementation!r}")
        return model


def one_output(model, output):
    """The model as a module returning only `output` (the ONNX graph then computes and names just that)."""
    import torch

    class _one_output(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return getattr(self.model(pixel_values=pixel_values), output)

    return _one_output().eval()


def register_onnx_symbolics():
    """aten::_upsample_bicubic2d_aa (the antialiased resize of Dinov2WithRegisters' position embeddings) has
    no TorchScript ONNX symbolic: map it to opset 18's Resize(cubic, antialias). The runner's agreement check
    against PyTorch still guards it (ONNX Runtime matches PyTorch at the config's own image size)."""
    import torch
    from torch.onnx import register_custom_op_symbolic

    def bicubic_aa(g, x, output_size, align_corners, scale_factors):
        empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
        batch_channels = g.op("Slice", g.op("Shape", x), g.op("Constant", value_t=torch.tensor([0])),
                              g.op("Constant", value_t=torch.tensor([2])))
        sizes = g.op("Concat", batch_channels, g.op("Cast", output_size, to_i=7), axis_i=0)  # 7: int64
        return g.op("Resize", x, empty, empty, sizes, mode_s="cubic", antialias_i=1, cubic_coeff_a_f=-0.5,
                    coordinate_transformation_mode_s="half_pixel", exclude_outside_i=0)

    register_custom_op_symbolic("aten::_upsample_bicubic2d_aa", bicubic_aa, 18)


def quiet_transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


# ---------------------------------------------------------------- random checkpoints (benchmarks/bench_vit.py)

def random_spec(name):
    """(transformers class, config kwargs) of a random checkpoint name."""
    if name in RANDOM_SPECS:
        return "ViTForImageClassification", {**COMMON_SPEC, **RANDOM_SPECS[name]}
    if name in FAMILY_SPECS:
        return FAMILY_SPECS[name][:2]
    raise ValueError(f"unknown model {name!r}: expected one of {', '.join(list(RANDOM_SPECS) + list(FAMILY_SPECS))}")


def _cached_ok(folder, stamp):
    try:
        with open(folder / "vitc-bench.json") as f:
            return json.load(f) == stamp and (folder / "model.safetensors").is_file()
    except (OSError, ValueError):
        return False


def build_random_checkpoint(name, cache_dir=DEFAULT_CACHE, seed=0, log=print):
    """Random-init model of random_spec(name) saved with save_pretrained; reused while the recipe matches.

    transformers' init leaves every bias 0 and every LayerNorm at (1, 0), which would hide bias and
    LayerNorm bugs from the agreement check, so those get small seeded random values too.
    """
    folder = Path(cache_dir).expanduser() / name
    cls_name, spec = random_spec(name)
    stamp = {"recipe": RECIPE_VERSION, "model": name, "seed": seed, "spec": spec}
    if cls_name != "ViTForImageClassification":  # (the ViT stamps stay as they were: no rebuild)
        stamp["class"] = cls_name
    if _cached_ok(folder, stamp):
        return folder
    import torch
    import transformers

    t0 = time.perf_counter()
    quiet_transformers()
    torch.manual_seed(seed)
    cls = getattr(transformers, cls_name)
    model = cls(cls.config_class(**spec)).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=gen))
            elif isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and module.bias is not None:
                module.bias.copy_(0.02 * torch.randn(module.bias.shape, generator=gen))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    with open(folder / "vitc-bench.json", "w") as f:
        json.dump(stamp, f, indent=1)
    log(f"built random {name} checkpoint (seed {seed}) in {folder} [{time.perf_counter() - t0:.1f} s]")
    return folder
