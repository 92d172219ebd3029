"""Text tower speed: a batch of prompts through a CLIP-B-sized text tower (random weights, the shapes of
openai/clip-vit-base-patch32's), vitc beside PyTorch eager (transformers), ONNX Runtime and OpenVINO, all in one
process on the same token ids (prompts of different lengths, padded), text_embeds checked against PyTorch's
before timing, then shuffled round-robin rounds (the method of `vitc bench`, vitc/bench/runner.py).

    pip install ".[bench]"
    python benchmarks/bench_text.py [--batch 32] [--tokens 16] [--rounds 20] [--threads 2]

ONNX Runtime and OpenVINO run transformers' CLIPTextModelWithProjection exported with torch.onnx.export
(TorchScript exporter) with inputs input_ids + attention_mask (dynamic batch and length) and output
text_embeds; OpenVINO converts that file, f32 forced, compiled for the batch's shape.
"""
import argparse
import os
import random
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import transformers

import vitc
from vitc.bench.stats import rel_err, summarize


def export_onnx(model, ids, mask, path):
    class TextEmbeds(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).text_embeds

    axes = {"batch": 0, "tokens": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings
        torch.onnx.export(TextEmbeds().eval(), (torch.from_numpy(ids), torch.from_numpy(mask)), path, dynamo=False,
                          opset_version=18, input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
                          dynamic_axes={"input_ids": {v: k for k, v in axes.items()},
                                        "attention_mask": {v: k for k, v in axes.items()},
                                        "text_embeds": {0: "batch"}})


def engines(folder, onnx_path, ref, threads, ids, mask):
    """name -> callable(ids, mask) -> text_embeds, every engine set to `threads`."""
    model = vitc.CLIPTextModelWithProjection.from_pretrained(folder, threads=threads)

    def run_torch(i, m):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return ref(input_ids=torch.from_numpy(i), attention_mask=torch.from_numpy(m)).text_embeds.numpy()

    out = {"vitc": lambda i, m: model(input_ids=i, attention_mask=m).text_embeds, "torch-eager": run_torch}
    try:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        out["onnxruntime"] = lambda i, m: session.run(None, {"input_ids": i, "attention_mask": m})[0]
    except ImportError:
        print("skipped onnxruntime: pip install onnxruntime", file=sys.stderr)
    try:
        import openvino as ov

        core = ov.Core()
        ov_model = core.read_model(onnx_path)
        ov_model.reshape({"input_ids": list(ids.shape), "attention_mask": list(mask.shape)})
        compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                         "PERFORMANCE_HINT": "LATENCY",
                                                         "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()

        def run_ov(i, m):
            request.infer({"input_ids": i, "attention_mask": m})
            return request.get_output_tensor(0).data

        out["openvino"] = run_ov
    except ImportError:
        print("skipped openvino: pip install openvino", file=sys.stderr)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=16, help="tokens per prompt (padded length)")
    parser.add_argument("--rounds", "--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--gap-ms", type=float, default=10.0, help="idle pause before each timed call")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    config = transformers.CLIPTextConfig(attn_implementation="eager")  # openai/clip-vit-base-patch32's text tower
    rng = np.random.default_rng(0)
    # prompts of 5..tokens tokens, padded as CLIP's tokenizer pads (with EOS) to the longest, mask 0 there
    ids = rng.integers(0, config.vocab_size - 2, (args.batch, args.tokens))
    mask = np.ones_like(ids)
    ids[:, 0] = config.bos_token_id
    for row, length in enumerate(rng.integers(min(5, args.tokens), args.tokens + 1, args.batch)):
        ids[row, length - 1:] = config.eos_token_id
        mask[row, length:] = 0
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        ref = transformers.CLIPTextModelWithProjection(config).eval()
        ref.save_pretrained(folder)
        onnx_path = os.path.join(folder, "text.onnx")
        export_onnx(ref, ids, mask, onnx_path)
        runs = engines(folder, onnx_path, ref, args.threads, ids, mask)
        want = runs["torch-eager"](ids, mask)
        errors = {}
        for name, fn in runs.items():  # warm-up + agreement with transformers, before any timing
            errors[name] = rel_err(fn(ids, mask), want)
            if not errors[name] <= 1e-4:
                sys.exit(f"bench_text: {name}'s text_embeds disagree with PyTorch's: "
                         f"max|d|/max|ref| {errors[name]:.2e}")
        times = {name: [] for name in runs}
        order, shuffle = list(runs), random.Random(0).shuffle
        for _ in range(args.rounds):
            shuffle(order)
            for name in order:
                time.sleep(args.gap_ms / 1e3)
                t = time.perf_counter()
                runs[name](ids, mask)
                times[name].append(time.perf_counter() - t)
    stats = {name: summarize(t) for name, t in times.items()}
    base = stats["vitc"]["median_ms"]
    print(f"CLIP-B text tower (text_embeds), batch {args.batch} x {args.tokens} tokens, {args.threads} threads, "
          f"median of {args.rounds} shuffled round-robin rounds; load average {os.getloadavg()[0]:.1f}")
    print(f"{'engine':<12} {'median ms':>10} {'min ms':>9} {'spread':>7} {'time/vitc':>9}  max|d|/max|ref| vs torch")
    for name, s in stats.items():
        print(f"{name:<12} {s['median_ms']:>10.1f} {s['min_ms']:>9.1f} {s['spread']:>6.1%} "
              f"{s['median_ms'] / base:>9.2f}  {errors[name]:.2e}")


if __name__ == "__main__":
    main()
