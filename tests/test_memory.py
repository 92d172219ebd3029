"""Loading a model and dropping it frees its memory; calls at ever new shapes keep a bounded cache.

Three views: the model object itself is collected (weakref), numpy/Python allocations return to their
baseline (tracemalloc, exact to the byte class), and the process RSS (/proc/self/statm) does not grow with
the number of load/drop cycles (catches C-side leaks tracemalloc cannot see; ASan's leak check in .ci/asan
covers them byte for byte)."""
import gc
import os
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from robust_helpers import image_batch, write_checkpoint  # noqa: E402

import vitc  # noqa: E402

MiB = 2 ** 20


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    # ~3.3 M parameters (13 MB of float32): a leaked model per cycle would be unmistakable
    return write_checkpoint(tmp_path_factory.mktemp("mem") / "m", hidden_size=256, num_attention_heads=4,
                            intermediate_size=1024, num_hidden_layers=4, image_size=16, patch_size=4)


def load_run_drop(folder, x):
    model = vitc.ViTForImageClassification.from_pretrained(folder, threads=1)
    model(x)
    ref = weakref.ref(model)
    del model
    gc.collect()
    return ref


def test_load_drop_cycles_free_the_model(folder):
    x = image_batch(vitc.ViTConfig.from_pretrained(folder), 2)
    model_bytes = 4 * vitc.ViTForImageClassification.from_pretrained(folder).num_parameters()
    assert model_bytes > 12 * MiB
    for _ in range(3):  # warm-up: allocator pools, lazy imports, caches
        assert load_run_drop(folder, x)() is None
    rss0 = rss_bytes()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(12):
            assert load_run_drop(folder, x)() is None  # no reference cycle keeps it alive
        traced = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    growth = rss_bytes() - rss0
    assert traced < 256 * 1024, f"{traced} bytes of Python/numpy allocations survived 12 load/drop cycles"
    # 12 cycles of a 13 MB model: a leak of one model, or of its packed weights, is >= 12 x 13 MB
    assert growth < model_bytes / 2, f"RSS grew {growth / MiB:.1f} MiB over 12 load/drop cycles"


def test_failed_loads_do_not_leak(folder, tmp_path):
    """Loads that fail half-way (the last tensor unreadable) free what they had read."""
    bad = write_checkpoint(tmp_path / "bad", hidden_size=256, num_attention_heads=4, intermediate_size=1024,
                           num_hidden_layers=4, image_size=16, patch_size=4,
                           edit=lambda t: {**t, "classifier.bias": t["classifier.bias"].astype(np.int8)})
    for _ in range(2):
        with pytest.raises(ValueError):
            vitc.ViTForImageClassification.from_pretrained(bad)
    gc.collect()
    rss0 = rss_bytes()
    for _ in range(10):
        with pytest.raises(ValueError, match="dtype I8"):
            vitc.ViTForImageClassification.from_pretrained(bad)
    gc.collect()
    assert rss_bytes() - rss0 < 8 * MiB


def test_many_input_shapes_keep_a_bounded_cache(folder):
    """Buffers are cached per input shape (at most _max_cached_shapes); cycling through many shapes must not
    accumulate them."""
    model = vitc.ViTForImageClassification.from_pretrained(folder, threads=1)
    shapes = [(b, 3, h, w) for b in (1, 2) for h, w in ((16, 16), (20, 12), (12, 8))]
    for s in shapes:  # warm-up pass
        model(np.zeros(s, np.float32), interpolate_pos_encoding=True)
    gc.collect()
    rss0 = rss_bytes()
    for _ in range(2):
        for s in shapes:
            model(np.zeros(s, np.float32), interpolate_pos_encoding=True)
    gc.collect()
    assert len(model._buffers) <= model._max_cached_shapes
    assert rss_bytes() - rss0 < 8 * MiB


def test_short_lived_threads_do_not_leak_packing_buffers():
    """The GEMM caches an A-packing buffer per thread; it must be freed when the thread exits, or a server
    that runs each request on a new thread would grow by one buffer (here ~2.4 MB) per thread."""
    import threading

    from vitc import _vitc, runtime
    isa = runtime.isa_code()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((780, 768)).astype(np.float32)
    packed = _vitc.gemm_pack_nk(isa, rng.standard_normal((64, 768)).astype(np.float32))

    def work():
        _vitc.gemm(isa, 2, a, packed, 64, np.empty((780, 64), np.float32))  # 2: A packed once, shared

    def churn(count):
        for _ in range(count):
            t = threading.Thread(target=work)
            t.start()
            t.join()

    churn(5)
    gc.collect()
    before = rss_bytes()
    churn(60)
    gc.collect()
    grown = rss_bytes() - before
    assert grown < 40 * 2**20, f"RSS grew {grown / 2**20:.0f} MB over 60 short-lived threads"


OOM_CHILD = r"""
import resource, numpy as np
from vitc import _vitc, runtime
isa = runtime.isa_code()
D, H, I, B, S = 256, 4, 1024, 4, 300   # fc2's packed A: 1200 x 1024 floats (4.7 MiB), allocated on first use
rng = np.random.default_rng(0)
lin = lambda n, k: _vitc.gemm_pack_nk(isa, (0.05 * rng.standard_normal((n, k))).astype(np.float32))
ones, zeros = (lambda n: np.ones(n, np.float32)), (lambda n: np.zeros(n, np.float32))
layer = _vitc.EncoderLayer(isa, D, H, I, 1e-6, 1, dict(
    ln1_g=ones(D), ln1_b=zeros(D), ln2_g=ones(D), ln2_b=zeros(D), qkv_w=lin(3 * D, D), qkv_b=None,
    proj_w=lin(D, D), proj_b=zeros(D), fc1_w=lin(I, D), fc1_b=zeros(I), fc2_w=lin(D, I), fc2_b=zeros(D)))
warm = rng.standard_normal((8, D)).astype(np.float32)
layer.forward(2, warm, 1, _vitc.aligned_empty(layer.workspace_floats(2, 1, 8)))  # threads exist, small buffers
hidden = rng.standard_normal((B * S, D)).astype(np.float32)
ws = _vitc.aligned_empty(layer.workspace_floats(2, B, S))
ws[:] = 0
with open("/proc/self/statm") as f:
    vm = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 20), resource.RLIM_INFINITY))
try:
    layer.forward(2, hidden, B, ws)
    print("no error")
except MemoryError as exc:
    print("MemoryError:", exc)
"""


def test_gemm_out_of_memory_inside_a_layer_is_a_memory_error(subprocess_env, tmp_path):
    """A GEMM that cannot get its packing buffer stops the layer and raises MemoryError (the address space
    is capped in a child process just above what it has mapped), instead of carrying on with garbage."""
    import subprocess
    out = subprocess.run([sys.executable, "-c", OOM_CHILD], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env=subprocess_env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().startswith("MemoryError: vitc encoder layer: out of memory"), out.stdout
