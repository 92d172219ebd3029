"""Shared pieces of the ViT benchmark: model specs and FLOP counts, the cached random checkpoint and its
ONNX export, inputs, error metric, timing statistics, peak RSS and the machine description.

torch/transformers are imported lazily (only to build the checkpoint or export ONNX), so a child process
that measures onnxruntime, OpenVINO or vitc never pays for them.
"""
import json
import os
import platform
import resource
import struct
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path(os.environ.get("VITC_BENCH_CACHE", Path.home() / ".cache" / "vitc-bench"))
# Bump when the checkpoint recipe below changes: cached folders with another value are rebuilt.
RECIPE_VERSION = 2

# Shapes of google/vit-base-patch16-224 and the DeiT/ViT small and tiny siblings (12 layers, head dim 64).
MODEL_SPECS = {
    "b16": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "s16": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    "ti16": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768),
}
COMMON_SPEC = dict(image_size=224, patch_size=16, num_channels=3, num_labels=1000,
                   hidden_act="gelu", layer_norm_eps=1e-12, qkv_bias=True)


def model_spec(name):
    if name not in MODEL_SPECS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODEL_SPECS)}")
    return {**COMMON_SPEC, **MODEL_SPECS[name]}


def flops_per_image(spec):
    """2 * MACs of every matmul in one forward: patch conv, QKV/out/MLP linears, QK^T and AV, classifier.

    LayerNorm, softmax, GELU and adds are O(tokens*D) and left out, as usual. B/16 gives 35.13 GFLOP.
    """
    d, f, layers = spec["hidden_size"], spec["intermediate_size"], spec["num_hidden_layers"]
    patches = (spec["image_size"] // spec["patch_size"]) ** 2
    tokens = patches + 1  # + CLS
    patch_macs = patches * d * spec["num_channels"] * spec["patch_size"] ** 2
    linear_macs = tokens * d * (3 * d + d + 2 * f)  # QKV, attention output, MLP up + down
    attention_macs = 2 * tokens * tokens * d  # QK^T and AV over all heads
    head_macs = d * spec["num_labels"]  # classifier on the CLS token only
    return 2 * (patch_macs + layers * (linear_macs + attention_macs) + head_macs)


# ---------------------------------------------------------------- checkpoint + ONNX export (cached)

def checkpoint_dir(name, cache_dir=DEFAULT_CACHE):
    return Path(cache_dir).expanduser() / name


def onnx_path(name, cache_dir=DEFAULT_CACHE):
    """The ONNX export lives next to the checkpoint folder (not inside: keeps the HF folder pristine)."""
    return Path(cache_dir).expanduser() / f"{name}.onnx"


def _stamp(name, seed):
    return {"recipe": RECIPE_VERSION, "model": name, "seed": seed, "spec": model_spec(name)}


def _cached_ok(folder, stamp):
    try:
        with open(folder / "vitc-bench.json") as f:
            return json.load(f) == stamp and (folder / "model.safetensors").is_file()
    except (OSError, ValueError):
        return False


def build_checkpoint(name, cache_dir=DEFAULT_CACHE, seed=0, log=print):
    """Random-init ViTForImageClassification saved with save_pretrained; reused while the recipe matches.

    transformers' init leaves every bias 0 and every LayerNorm at (1, 0), which would hide bias and
    LayerNorm bugs from the agreement check, so those get small seeded random values too.
    """
    folder = checkpoint_dir(name, cache_dir)
    stamp = _stamp(name, seed)
    if _cached_ok(folder, stamp):
        return folder
    import torch
    import transformers

    t0 = time.perf_counter()
    quiet_transformers()
    torch.manual_seed(seed)
    config = transformers.ViTConfig(**model_spec(name))
    model = transformers.ViTForImageClassification(config).eval()
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
    stale = onnx_path(name, cache_dir)
    if stale.exists():
        stale.unlink()
    log(f"built random {name} checkpoint (seed {seed}) in {folder} [{time.perf_counter() - t0:.1f} s]")
    return folder


def export_onnx(name, cache_dir=DEFAULT_CACHE, opset=17, log=print):
    """torch.onnx.export (TorchScript exporter: needs no onnxscript) of the eager-attention model, batch axis
    dynamic. Cached; rebuilt whenever the checkpoint is newer."""
    folder = checkpoint_dir(name, cache_dir)
    path = onnx_path(name, cache_dir)
    if path.is_file() and path.stat().st_mtime >= (folder / "model.safetensors").stat().st_mtime:
        return path
    import warnings

    import torch
    import transformers

    t0 = time.perf_counter()
    quiet_transformers()
    model = transformers.ViTForImageClassification.from_pretrained(folder, attn_implementation="eager").eval()
    spec = model_spec(name)
    dummy = torch.zeros(1, spec["num_channels"], spec["image_size"], spec["image_size"])
    tmp = path.with_suffix(".onnx.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about shape checks frozen into the graph
        torch.onnx.export(model, (dummy,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=["pixel_values"], output_names=["logits"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
    os.replace(tmp, path)
    log(f"exported {path} (opset {opset}) [{time.perf_counter() - t0:.1f} s]")
    return path


def quiet_transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def weight_bytes(folder):
    """Bytes of all tensors in model.safetensors, read from its header (no tensor is loaded)."""
    path = Path(folder) / "model.safetensors"
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    return sum(end - begin for key, meta in header.items() if key != "__metadata__"
               for begin, end in [meta["data_offsets"]])


# ---------------------------------------------------------------- inputs, errors, statistics, memory

def make_pixels(batch, spec, seed=0):
    """Deterministic float32 [N,3,H,W] in [-1, 1], the range of ViT-normalized images."""
    rng = np.random.default_rng(1000 + seed)
    size = spec["image_size"]
    return rng.uniform(-1, 1, size=(batch, spec["num_channels"], size, size)).astype(np.float32)


def rel_err(out, ref):
    """max|out - ref| / max|ref| in float64."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"logits shape {out.shape} != reference shape {ref.shape}")
    return float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-30))


def summarize(times_s):
    """Median / min / p90 (ms) and spread = median absolute deviation / median."""
    t = np.asarray(times_s) * 1e3
    med = float(np.median(t))
    return {"median_ms": med, "min_ms": float(t.min()), "p90_ms": float(np.percentile(t, 90)),
            "spread": float(np.median(np.abs(t - med)) / med), "n": int(t.size)}


def peak_rss_bytes():
    """Peak resident set of this process (Linux reports ru_maxrss in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def vm_hwm_bytes():
    """Peak RSS of this process image from /proc (cross-check of ru_maxrss; None off Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------- machine description

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags_summary():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile"]
                    return [w for w in wanted if w in flags]
    except OSError:
        pass
    return []


def package_version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info():
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags_summary(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "loadavg": list(os.getloadavg()),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {d: package_version(d) for d in
                     ("numpy", "torch", "transformers", "onnx", "onnxruntime", "openvino")},
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "VITC_"))},
    }
