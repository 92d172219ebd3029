"""Checks that keep hostile or oversized inputs from crashing the process (docs/robustness.md).

- NonfiniteCounter: wraps a checkpoint reader while a model loads and counts NaN/Inf values per tensor on
  the raw float32 rows (before packing, in the loader's scratch: no copy), so `model.nonfinite_weights()` and `vitc info` can report them.
  Loading is allowed: a checkpoint with a NaN in an unused row still works, and transformers loads it too.
- check_forward_memory: estimates the bytes one forward call will allocate for an input shape and raises
  MemoryError naming the batch and the bytes when they exceed the memory this process can still get, so a
  huge batch is refused before allocating instead of being OOM-killed (Linux overcommits: np.empty
  succeeds and the kernel kills the process when the pages are touched).
"""
import os

import numpy as np


class NonfiniteCounter:
    """A CheckpointReader proxy: get_float32 and read_rows also record {name: count of NaN/Inf values} for
    non-zero counts (read_rows adds up the counts of a tensor's row ranges)."""

    def __init__(self, reader):
        self._reader = reader
        self.nonfinite = {}

    def __getattr__(self, name):
        return getattr(self._reader, name)

    def get_float32(self, name):
        array = self._reader.get_float32(name)
        self._record(name, count_nonfinite(array))
        return array

    def read_rows(self, name, row0, out):
        self._reader.read_rows(name, row0, out)
        self._record(name, count_nonfinite(out))
        return out

    def read_raw_rows(self, name, row0, out):
        """Stored bf16 bits / int8 values: bf16 NaN/Inf (exponent all ones) are counted, int8 has none."""
        self._reader.read_raw_rows(name, row0, out)
        if out.dtype == np.uint16:
            flat = out.reshape(-1)
            self._record(name, sum(int(np.count_nonzero((flat[i:i + _COUNT_CHUNK] & 0x7F80) == 0x7F80))
                                   for i in range(0, flat.size, _COUNT_CHUNK)))
        return out

    def _record(self, name, count):
        if count:
            self.nonfinite[name] = self.nonfinite.get(name, 0) + count


_COUNT_CHUNK = 1 << 16  # floats per np.isfinite pass: a 64 KiB bool buffer, not one the size of the tensor


def count_nonfinite(array):
    """Number of NaN/Inf values in a float32 array. Fast path: a finite float32 sum proves there are none
    (~15 ms over ViT-B's 86 M weights); a NaN/Inf sum (a non-finite value, or finite values whose sum
    overflows) is settled by an exact count, chunk by chunk into one small reused bool buffer."""
    if array.size == 0:
        return 0
    with np.errstate(over="ignore", invalid="ignore"):  # inf + -inf, overflow: expected here, not news
        if np.isfinite(array.sum()):
            return 0
    flat = array.reshape(-1)
    finite = np.empty(min(flat.size, _COUNT_CHUNK), np.bool_)
    count = 0
    for i in range(0, flat.size, _COUNT_CHUNK):
        part = flat[i:i + _COUNT_CHUNK]
        ok = finite[:part.size]
        np.isfinite(part, out=ok)
        count += part.size - int(np.count_nonzero(ok))
    return count


# ---- memory ----------------------------------------------------------------------------------------------
def available_memory_bytes():
    """Bytes this process can still allocate without swapping or being killed: /proc/meminfo MemAvailable,
    lowered by a cgroup v2/v1 memory limit when one applies; None where neither is known."""
    candidates = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    if not candidates and hasattr(os, "sysconf"):
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            pass
    for limit_path, usage_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_path) as f:
                limit = f.read().strip()
            if limit == "max" or int(limit) >= 1 << 60:  # v1 writes a huge number for "no limit"
                continue
            with open(usage_path) as f:
                usage = int(f.read().strip())
            candidates.append(max(0, int(limit) - usage))
            break
        except (OSError, ValueError):
            continue
    return min(candidates) if candidates else None


def forward_bytes(config, num_prefix, shape, nthreads, hidden_states=False, attentions=False,
                  buffers_cached=False, input_copy=True):
    """Bytes one forward call on a [B, C, H, W] input allocates (Python ints: no overflow), mirroring
    modeling._Buffers and the outputs: hidden [B*S, D], one workspace for the layer (B*S*(D + max(4D, I))
    + attention scratch nthreads*S*S) that also holds the embedding's im2col [B*P, C*ph*pw], final
    LayerNorm / outputs [B, S, D], and the requested hidden_states ((L+1) x [B, S, D]) and attentions
    (L x [B, heads, S, S])."""
    b, c, h, w = (int(v) for v in shape)
    ph, pw = config.patch_hw
    d, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    patches = (h // ph) * (w // pw)
    s = patches + num_prefix
    floats = 0
    if not buffers_cached:
        floats += b * s * d                          # hidden
        # one workspace: the encoder layer's (LN rows, then Q|K|V + context + attention scratch or, later,
        # the MLP's intermediate rows in the same place), or the embedding's im2col if larger
        layer = b * s * d + max(4 * b * s * d + max(1, nthreads) * s * s, b * s * inter)
        floats += max(layer, b * patches * c * ph * pw)
    floats += b * s * d                              # last_hidden_state (or the prefix rows, less)
    if hidden_states:
        floats += (layers + 1) * b * s * d
    if attentions:
        floats += layers * b * config.num_attention_heads * s * s
    if input_copy:
        floats += b * c * h * w                      # float32 C-contiguous copy of pixel_values
    return 4 * floats


def check_forward_memory(model, shape, dtype, contiguous_float32, hidden_states=False, attentions=False):
    """MemoryError, before anything is allocated, when a forward on `shape` cannot fit in available memory."""
    available = available_memory_bytes()
    if available is None:
        return
    from . import runtime
    nthreads = model.threads if model.threads is not None else runtime.get_num_threads()
    cached = any(key[:3] == (shape[0], shape[2], shape[3]) for key in list(model._buffers))
    need = forward_bytes(model.config, model._num_prefix, shape, nthreads, hidden_states, attentions,
                         buffers_cached=cached, input_copy=not contiguous_float32)
    if need > available:
        what = [f"batch {shape[0]} of {shape[1]}x{shape[2]}x{shape[3]} {dtype} images"]
        if hidden_states or attentions:
            what.append("with " + " and ".join(n for n, on in (("hidden_states", hidden_states),
                                                                ("attentions", attentions)) if on))
        raise MemoryError(f"{' '.join(what)} needs about {_gib(need)} for activations and outputs but only "
                          f"{_gib(available)} is available: split the batch (e.g. {_fit(need, available, shape[0])}"
                          f" images per call)")


def _gib(n):
    return f"{n / 2 ** 30:.2f} GiB ({n} bytes)"


def _fit(need, available, batch):
    return max(1, int(batch * available / need / 2))
