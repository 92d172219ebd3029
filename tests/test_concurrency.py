"""Boundary 5, concurrent callers. The contract (docs/robustness.md, the model class docstring):
- one model object may be called from many Python threads: its calls are serialized by a per-model lock
  (they share its activation buffers), and every call returns fresh arrays no later call writes;
- the GIL is released inside the C kernels, so different model objects run in parallel;
- results never depend on what other threads do: bit for bit the serial results.
Models run with threads=1 here so the comparison with the serial run is bit for bit whatever the kernels'
reduction order per thread count (tests/test_model.py checks thread-count invariance separately)."""
import os
import sys
import threading
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from robust_helpers import image_batch, write_checkpoint  # noqa: E402

import vitc  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("conc")
    return {"a": write_checkpoint(root / "a", seed=1),
            "b": write_checkpoint(root / "b", seed=2, hidden_size=24, num_attention_heads=3, image_size=[12, 20])}


def run_threads(n, target):
    """Start n threads on target(i) together (a barrier), re-raise the first failure."""
    barrier = threading.Barrier(n)
    errors = []

    def wrapped(i):
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]


N_THREADS, N_CALLS = 6, 5


def test_threads_sharing_one_model_get_the_serial_results(folders):
    """N threads x M calls on ONE model, with different batch sizes (the model's buffer cache of 2 shapes
    churns under the lock) and detail outputs, against a serial run of the same calls: bit for bit."""
    model = vitc.ViTForImageClassification.from_pretrained(folders["a"], threads=1)
    cfg = model.config
    jobs = [[(image_batch(cfg, 1 + (i + j) % 3, seed=100 * i + j), (i + j) % 2 == 0) for j in range(N_CALLS)]
            for i in range(N_THREADS)]

    def call(x, details):
        out = model(x, output_hidden_states=details, output_attentions=details)
        return [out.logits] + (list(out.hidden_states) + list(out.attentions) if details else [])

    serial = [[call(x, d) for x, d in job] for job in jobs]
    got = [[None] * N_CALLS for _ in range(N_THREADS)]

    def work(i):
        for j, (x, d) in enumerate(jobs[i]):
            got[i][j] = call(x, d)

    run_threads(N_THREADS, work)
    # compared only now: a later call on the shared model must not have written into an earlier result
    for i in range(N_THREADS):
        for j in range(N_CALLS):
            assert len(got[i][j]) == len(serial[i][j])
            for g, s in zip(got[i][j], serial[i][j]):
                np.testing.assert_array_equal(g, s)


def test_different_models_in_parallel_threads(folders):
    """Two checkpoints (and the encoder of one) in threads at once, each against its serial results."""
    models = [vitc.ViTForImageClassification.from_pretrained(folders["a"], threads=1),
              vitc.ViTForImageClassification.from_pretrained(folders["b"], threads=1),
              vitc.ViTModel.from_pretrained(folders["a"], threads=1)]
    inputs = [[image_batch(m.config, 2, seed=10 * k + j) for j in range(N_CALLS)] for k, m in enumerate(models)]

    def result(m, x):
        out = m(x)
        return out.logits if hasattr(out, "logits") else out.last_hidden_state

    serial = [[result(m, x) for x in xs] for m, xs in zip(models, inputs)]
    got = [[None] * N_CALLS for _ in models]

    def work(i):
        k = i % len(models)  # two threads per model: parallel across models, serialized within one
        for j in range(N_CALLS):
            r = result(models[k], inputs[k][j])
            if i < len(models):
                got[k][j] = r
            else:
                np.testing.assert_array_equal(r, serial[k][j])

    run_threads(2 * len(models), work)
    for k in range(len(models)):
        for j in range(N_CALLS):
            np.testing.assert_array_equal(got[k][j], serial[k][j])


def test_default_thread_count_models_in_threads(folders):
    """With the default thread policy concurrent calls split the cores (runtime.compute_threads); the
    answers stay those of the serial run up to float32 rounding."""
    model = vitc.ViTForImageClassification.from_pretrained(folders["a"])
    xs = [image_batch(model.config, 3, seed=50 + i) for i in range(4)]
    serial = [model(x).logits for x in xs]
    got = [None] * 4

    def work(i):
        for _ in range(3):
            got[i] = model(xs[i]).logits

    run_threads(4, work)
    for g, s in zip(got, serial):
        np.testing.assert_allclose(g, s, rtol=1e-5, atol=1e-6)


def test_loading_in_threads(folders):
    """from_pretrained from several threads at once: independent, complete models."""
    models = [None] * 4

    def work(i):
        models[i] = vitc.ViTForImageClassification.from_pretrained(folders["a" if i % 2 else "b"], threads=1)

    run_threads(4, work)
    for i, m in enumerate(models):
        ref = vitc.ViTForImageClassification.from_pretrained(folders["a" if i % 2 else "b"], threads=1)
        x = image_batch(ref.config, 2, seed=i)
        np.testing.assert_array_equal(m(x).logits, ref(x).logits)


class _TimedLayer:
    """Stands in for an EncoderLayer: records the wall-clock window of each (C) forward call."""

    def __init__(self, layer, windows):
        self.layer, self.windows = layer, windows

    def workspace_floats(self, *args):
        return self.layer.workspace_floats(*args)

    def forward(self, *args, **kwargs):
        t0 = time.perf_counter()
        self.layer.forward(*args, **kwargs)
        self.windows.append((t0, time.perf_counter()))


def test_gil_is_released_during_compute(tmp_path):
    """While a forward runs in a worker thread, the main thread keeps executing Python bytecode INSIDE the
    C call's window: impossible if the layer kept the GIL. The batch is grown until one layer call lasts
    >= 0.15 s whatever the kernels' speed, so the middle half of a window is far longer than a switch
    interval or a scheduler slice."""
    folder = write_checkpoint(tmp_path / "g", hidden_size=128, num_attention_heads=4, intermediate_size=512,
                              num_hidden_layers=1, image_size=32, patch_size=4)
    model = vitc.ViTModel.from_pretrained(folder, threads=1)
    windows = []
    model._layers = [_TimedLayer(layer, windows) for layer in model._layers]
    batch = 1
    while True:
        x = image_batch(model.config, batch, seed=0)
        model(x)
        if windows[-1][1] - windows[-1][0] >= 0.15 or batch >= 512:
            break
        batch *= 2
    windows.clear()
    ticks = []
    worker = threading.Thread(target=lambda: [model(x) for _ in range(2)])
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    ticks = np.array(ticks)
    inside = []
    for t0, t1 in windows:
        quarter = (t1 - t0) / 4
        inside.append(int(np.count_nonzero((ticks > t0 + quarter) & (ticks < t1 - quarter))))
    assert len(windows) == 2 and max(inside) > 0, (batch, windows, inside)
