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

DEFAULT_CACHE = Path(os.environ.get("VITC_BENCH_CACHE", Path.home() / ".cache" / "vitc-bench"))
# Bump when the random-checkpoint recipe or the export recipe changes: cached files are then rebuilt.
RECIPE_VERSION = 2
EXPORT_VERSION = 1

# Random checkpoints of benchmarks/bench_vit.py: google/vit-base-patch16-224 shapes and the ViT-S/Ti siblings.
RANDOM_SPECS = {
    "b16": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "s16": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "ti16": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
}
COMMON_SPEC = dict(image_size=224, patch_size=16, num_channels=3, num_labels=1000,
                   hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True)


class Checkpoint:
    """A checkpoint folder and what the benchmark needs to know about it (read from config.json)."""

    def __init__(self, model, cache_dir=DEFAULT_CACHE):
        from ..auto import AutoConfig
        from ..hub import resolve_checkpoint

        files = resolve_checkpoint(model)  # CheckpointNotFoundError (clear message) for a wrong path / id
        self.name = str(model)
        self.folder = Path(os.path.dirname(files.config))
        self.weights = Path(files.weights)
        self.cache_dir = Path(cache_dir).expanduser()
        with open(files.config) as f:
            raw = json.load(f)
        self.config = AutoConfig.from_pretrained(str(self.folder))  # the family's config class
        archs = raw.get("architectures") or []
        self.architecture = archs[0] if archs else "ViTForImageClassification"
        self.classifier = self.architecture.endswith(("ForImageClassification", "WithTeacher"))
        self.teacher = self.architecture.endswith("WithTeacher")
        # prefix tokens before the patches: CLS, DeiT's distillation token, DINOv2's registers
        self.num_prefix = (2 if self.config.model_type == "deit" else 1) + int(getattr(self.config,
                                                                                      "num_register_tokens", 0))

    @property
    def output_name(self):
        return "logits" if self.classifier else "last_hidden_state"

    def input_shape(self, batch):
        h, w = self.config.image_hw
        return (batch, self.config.num_channels, h, w)

    def flops_per_image(self):
        """2 x MACs of every matmul: patch conv, per layer QKV / attention output / MLP linears plus QK^T and
        AV over all heads, classifier(s) on the prefix tokens. LayerNorm, softmax, GELU, adds (O(tokens x D))
        and a ViTModel's pooler (D x D on one token) are left out, as usual. ViT-B/16: 35.13 GFLOP."""
        c = self.config
        d, f, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
        ph, pw = c.patch_hw
        patches = c.num_patches
        tokens = patches + self.num_prefix
        macs = patches * d * c.num_channels * ph * pw
        macs += layers * (tokens * d * (3 * d + d + 2 * f) + 2 * tokens * tokens * d)
        if self.classifier:
            macs += (2 if self.teacher else 1) * d * c.num_labels
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
        key = f"{self.weights.resolve()}|{st.st_size}|{st.st_mtime_ns}|{EXPORT_VERSION}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        return self.cache_dir / "exports" / f"{Path(self.name).name or 'model'}-{digest}"

    def onnx_file(self, log=print, opset=17):
        """torch.onnx.export (TorchScript exporter: no onnxscript needed) of the eager-attention model with a
        dynamic batch axis; written to a temporary name, then renamed, so an interrupted export is redone."""
        path = self._export_dir() / "model.onnx"
        if path.is_file():
            return path
        import warnings

        import torch

        t0 = time.perf_counter()
        model = self.torch_model("eager")
        dummy = torch.zeros(self.input_shape(1))
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
        import transformers

        quiet_transformers()
        cls = getattr(transformers, self.architecture, None)
        if cls is None:
            cls = transformers.AutoModelForImageClassification if self.classifier else transformers.AutoModel
        model = cls.from_pretrained(self.folder, attn_implementation=attn).eval()
        if model.config._attn_implementation != attn:
            raise RuntimeError(f"asked transformers for attn_implementation={attn!r}, "
                               f"got {model.config._attn_implementation!r}")
        return model


def quiet_transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


# ---------------------------------------------------------------- random checkpoints (benchmarks/bench_vit.py)

def random_spec(name):
    if name not in RANDOM_SPECS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(RANDOM_SPECS)}")
    return {**COMMON_SPEC, **RANDOM_SPECS[name]}


def _cached_ok(folder, stamp):
    try:
        with open(folder / "vitc-bench.json") as f:
            return json.load(f) == stamp and (folder / "model.safetensors").is_file()
    except (OSError, ValueError):
        return False


def build_random_checkpoint(name, cache_dir=DEFAULT_CACHE, seed=0, log=print):
    """Random-init ViTForImageClassification saved with save_pretrained; reused while the recipe matches.

    transformers' init leaves every bias 0 and every LayerNorm at (1, 0), which would hide bias and
    LayerNorm bugs from the agreement check, so those get small seeded random values too.
    """
    folder = Path(cache_dir).expanduser() / name
    stamp = {"recipe": RECIPE_VERSION, "model": name, "seed": seed, "spec": random_spec(name)}
    if _cached_ok(folder, stamp):
        return folder
    import torch
    import transformers

    t0 = time.perf_counter()
    quiet_transformers()
    torch.manual_seed(seed)
    model = transformers.ViTForImageClassification(transformers.ViTConfig(**random_spec(name))).eval()
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
