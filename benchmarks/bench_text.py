"""Text tower speed: a batch of prompts through a CLIP-B-sized text tower (random weights), vitc vs PyTorch
eager (transformers) side by side in one process, same token ids.

    PYTHONPATH=. python benchmarks/bench_text.py [--batch 32] [--repeats 10] [--threads 2]
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch
import transformers

import vitc


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=16, help="tokens per prompt (padded length)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = transformers.CLIPTextConfig(attn_implementation="eager")  # openai/clip-vit-base-patch32's text tower
    with tempfile.TemporaryDirectory() as folder:
        ref = transformers.CLIPTextModelWithProjection(config).eval()
        ref.save_pretrained(folder)
        model = vitc.CLIPTextModelWithProjection.from_pretrained(folder, threads=args.threads)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, config.vocab_size - 2, (args.batch, args.tokens))
    ids[:, 0], ids[:, -1] = config.bos_token_id, config.eos_token_id
    mask = np.ones_like(ids)
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)

    def run_torch():
        with torch.inference_mode():
            return ref(input_ids=t_ids, attention_mask=t_mask).text_embeds

    t_vitc = median_seconds(lambda: model(input_ids=ids, attention_mask=mask), args.repeats)
    t_torch = median_seconds(run_torch, args.repeats)
    err = np.abs(model(input_ids=ids, attention_mask=mask).text_embeds - run_torch().numpy()).max()
    print(f"CLIP-B text tower, batch {args.batch} x {args.tokens} tokens, {args.threads} threads, isa {model.isa}: "
          f"vitc {t_vitc * 1e3:.1f} ms, PyTorch eager {t_torch * 1e3:.1f} ms (x{t_torch / t_vitc:.2f}); "
          f"max|diff| {err:.2e}")


if __name__ == "__main__":
    main()
