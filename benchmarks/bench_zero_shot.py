"""Zero-shot labels for a folder of images, end to end in a fresh process, start-up included:
`vitc classify DIR --labels ...` against transformers' `pipeline("zero-shot-image-classification")` on the same
files, labels and prompt template, the two commands alternating, median of the rounds.

    PYTHONPATH=. python benchmarks/bench_zero_shot.py [--images 100] [--rounds 3] [--labels cat,dog,car]

The model: a random-weight CLIPModel with openai/clip-vit-base-patch32's shapes (image tower ViT-B/32, text
tower 512 wide, 12 layers, 49408-token embedding, projections 512), its tokenizer made as
tests/test_tokenization.py makes them (a small CLIP BPE) and a CLIPImageProcessor config, saved with
save_pretrained; the images: generated JPEGs of assorted sizes. Both are built once into --cache-dir. Both
processes get --threads CPU threads and the template "a photo of {}."; the top label of every image is compared
between the two, and each side's CPU seconds (user + sys of the process) are printed beside its wall time.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = "a photo of {}."  # both sides: the pipeline's default hypothesis_template
PIPELINE = """
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[4]))
from transformers import pipeline
pipe = pipeline("zero-shot-image-classification", model=sys.argv[1], device="cpu")
labels = sys.argv[3].split(",")
paths = sorted(open(sys.argv[2]).read().split())
for path, ranked in zip(paths, pipe(paths, candidate_labels=labels, hypothesis_template=sys.argv[5])):
    print(json.dumps({"image": path, "predictions": ranked}))
"""


def build_model(folder, seed=0):
    """The CLIP-B/32-shaped two-tower checkpoint with a tokenizer and an image processor config (once)."""
    if os.path.isfile(os.path.join(folder, "model.safetensors")):
        return folder
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from test_tokenization import clip_files  # the tokenizer the tests make
    from text_checkpoints import build_two_tower

    tok = clip_files(folder + ".tokenizer")
    text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                vocab_size=49408)
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  image_size=224, patch_size=32)
    build_two_tower(os.path.dirname(folder), "clip", tok, text=text, vision=vision, seed=seed,
                    name=os.path.basename(folder), projection_dim=512)
    return folder


def build_images(folder, count, seed=0):
    """`count` JPEGs of assorted sizes (smooth random colour fields), made once."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        path = os.path.join(folder, f"img_{i:03d}.jpg")
        if os.path.exists(path):
            continue
        w, h = int(rng.integers(320, 1024)), int(rng.integers(240, 768))
        small = rng.integers(0, 256, (h // 32 + 2, w // 32 + 2, 3), dtype=np.uint8)
        Image.fromarray(small).resize((w, h), Image.BICUBIC).save(path, quality=90)
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))[:count]


def _children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, env):
    """(wall seconds, CPU seconds of the process and its threads, {file: top label})."""
    t, c = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed, cpu = time.perf_counter() - t, _children_cpu() - c
    if proc.returncode != 0:
        sys.exit(f"bench_zero_shot: {' '.join(cmd[:4])}... failed:\n{proc.stderr[-3000:]}")
    top = {}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        top[os.path.basename(row["image"])] = row["predictions"][0]["label"]
    return elapsed, cpu, top


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--labels", default="cat,dog,car")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "vitc-bench"))
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "int8"),
                   help="vitc's dtype (the pipeline stays float32, its default); top-label agreement is reported")
    p.add_argument("--batch-size", type=int, default=None, help="vitc's --batch-size (default: vitc's default)")
    args = p.parse_args()
    model = build_model(os.path.join(args.cache_dir, "clip-b32-two-tower"))
    paths = build_images(os.path.join(args.cache_dir, f"zero-shot-images-{args.images}"), args.images)
    folder = os.path.dirname(paths[0])
    listing = os.path.join(args.cache_dir, f"zero-shot-images-{args.images}.txt")
    with open(listing, "w") as f:
        f.write("\n".join(paths))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(x) for x in env["PYTHONPATH"].split(os.pathsep))
    commands = {
        "vitc classify --labels": [sys.executable, "-m", "vitc.cli", "classify", folder, "--labels", args.labels,
                                   "--model", model, "--threads", str(args.threads), "--json", "--top-k", "1",
                                   "--template", TEMPLATE,
                                   "--dtype", args.dtype] + ([] if args.batch_size is None else
                                                             ["--batch-size", str(args.batch_size)]),
        "transformers pipeline": [sys.executable, "-c", PIPELINE, model, listing, args.labels, str(args.threads),
                                  TEMPLATE],
    }
    times = {name: [] for name in commands}
    cpus = {name: [] for name in commands}
    tops = {}
    for r in range(args.rounds):
        for name in (list(commands) if r % 2 == 0 else list(commands)[::-1]):
            elapsed, cpu, tops[name] = timed(commands[name], env)
            times[name].append(elapsed)
            cpus[name].append(cpu)
            print(f"round {r + 1}: {name} {elapsed:.2f} s (CPU {cpu:.2f} s; load average {os.getloadavg()[0]:.1f})",
                  file=sys.stderr, flush=True)
        vitc_top, pipe_top = (tops[name] for name in commands)
        agree = sum(vitc_top[k] == pipe_top.get(k) for k in vitc_top)
        print(f"round {r + 1}: top label agrees on {agree}/{len(vitc_top)} images", file=sys.stderr, flush=True)
    med = {name: statistics.median(t) for name, t in times.items()}
    vitc_s, pipe_s = med.values()
    print(f"zero-shot labels ({args.labels}) for {len(paths)} images, fresh process, start-up included, "
          f"{args.threads} threads, median of {args.rounds} alternating rounds; load average "
          f"{os.getloadavg()[0]:.1f}")
    for name, t in times.items():
        print(f"{name:<24} {med[name]:7.2f} s   (rounds: {', '.join(f'{x:.2f}' for x in t)}; CPU seconds, median: "
              f"{statistics.median(cpus[name]):.2f})")
    print(f"transformers / vitc: {pipe_s / vitc_s:.2f}x; top label agrees on {agree}/{len(vitc_top)} images")


if __name__ == "__main__":
    main()
