"""Inputs, the agreement metric, timing statistics and peak RSS of the benchmark."""
import resource
import sys

import numpy as np


def make_pixels(shape, seed=0):
    """Deterministic float32 pixels in [-1, 1], the range of ViT-normalized images."""
    return np.random.default_rng(1000 + seed).uniform(-1, 1, size=shape).astype(np.float32)


def rel_err(out, ref):
    """max|out - ref| / max|ref| in float64."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} != reference shape {ref.shape}")
    return float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-30))


def top1_agreement(out, ref):
    """Share of images whose argmax over the last axis (of the first token for hidden states) agree."""
    out, ref = np.asarray(out), np.asarray(ref)
    if out.ndim == 3:
        out, ref = out[:, 0], ref[:, 0]
    return float(np.mean(out.argmax(-1) == ref.argmax(-1)))


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
