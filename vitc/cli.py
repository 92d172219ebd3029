"""The `vitc` command: classify / embed images, describe a model, time it, or try the bundled demo.

    vitc classify IMG... [--model ID_OR_DIR] [--top-k K] [--batch-size B] [--threads T] [--json]
    vitc embed IMG... --out embeddings.npy|.npz [--model ...] [--all-tokens]
    vitc info [MODEL]        vitc bench [--model ...] [--batch B] [--threads T]
    vitc demo                vitc config

Images may be files, directories (their image files, sorted) or glob patterns. A file that cannot be
read is reported by name and skipped; the exit status is then 1, after the rest was processed.
"""
import argparse
import glob
import json
import os
import sys
import time

DEFAULT_MODEL = "google/vit-base-patch16-224"
DEMO_MODEL = "vitc-digits"
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class CliError(Exception):
    """A problem with the command line itself (exit status 2)."""


def expand_images(patterns):
    """Files named, image files inside directories (sorted), and glob matches, in order, without repeats."""
    found, seen = [], set()

    def add(path):
        if path not in seen:
            seen.add(path)
            found.append(path)

    for pattern in patterns:
        if os.path.isdir(pattern):
            for name in sorted(os.listdir(pattern)):
                path = os.path.join(pattern, name)
                if os.path.isfile(path) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                    add(path)
        elif glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise CliError(f"no file matches {pattern!r}")
            for path in matches:
                if os.path.isfile(path):
                    add(path)
        else:
            add(pattern)  # a missing file is reported per file later, not here
    if not found:
        raise CliError("no images given")
    return found


def progress(total, enabled):
    """A tqdm bar on stderr when it is a terminal, else a no-op with the same update()/close()."""
    if enabled and sys.stderr.isatty():
        try:
            from tqdm import tqdm
            return tqdm(total=total, unit="img", file=sys.stderr)
        except ImportError:
            pass

    class _Quiet:
        def update(self, n=1):
            pass

        def close(self):
            pass

    return _Quiet()


# model_type -> (family, classes for embeddings (tried in order), class for classification or None)
FAMILIES = {
    "vit": ("ViT", ("ViTModel",), "ViTForImageClassification"),
    "deit": ("DeiT", ("ViTModel",), "ViTForImageClassification"),
    "clip": ("CLIP", ("CLIPVisionModelWithProjection", "CLIPVisionModel"), None),
    "clip_vision_model": ("CLIP", ("CLIPVisionModelWithProjection", "CLIPVisionModel"), None),
    "siglip": ("SigLIP", ("SiglipVisionModel",), None),
    "siglip_vision_model": ("SigLIP", ("SiglipVisionModel",), None),
    "dinov2": ("DINOv2", ("Dinov2Model",), "Dinov2ForImageClassification"),
    "dinov2_with_registers": ("DINOv2 with registers", ("Dinov2WithRegistersModel",), None),
}


def model_family(model_name):
    """FAMILIES' row of a checkpoint's config.json model_type (vit when it cannot be read: the loader then
    reports what is wrong with the checkpoint)."""
    from .auto import checkpoint_config
    try:
        kind = checkpoint_config(model_name)[0].get("model_type", "vit")
    except (OSError, ValueError):
        kind = "vit"
    if kind not in FAMILIES:
        raise CliError(f"{model_name}: model_type {kind!r} is not one vitc runs; vitc runs: "
                       f"{', '.join(sorted(FAMILIES))}")
    return FAMILIES[kind]


def load_model(args, encoder_only=False):
    import vitc
    family, embedders, classifier = model_family(args.model)
    if not encoder_only:
        if classifier is None:
            raise CliError(f"{args.model}: a {family} image tower has no classifier; use `vitc embed`")
        return getattr(vitc, classifier).from_pretrained(args.model, threads=args.threads)
    for name in embedders[:-1]:  # e.g. CLIP with its projection, else the tower alone
        try:
            return getattr(vitc, name).from_pretrained(args.model, threads=args.threads)
        except vitc.WeightsMismatchError:
            pass
    return getattr(vitc, embedders[-1]).from_pretrained(args.model, threads=args.threads)


def run_batches(model, paths, batch_size, fn, show_progress=True):
    """Call fn(good_paths, pixel_values) per batch; returns [(path, error message)] for unreadable images."""
    from .image_io import ImageLoadError
    failures = []
    bar = progress(len(paths), show_progress)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        good, arrays = [], []
        for path in chunk:  # decode one by one so one bad file does not sink the batch
            try:
                arrays.append(model.image_processor(path)["pixel_values"][0])
                good.append(path)
            except (ImageLoadError, OSError, ValueError) as exc:
                failures.append((path, str(exc)))
        if good:
            import numpy as np
            fn(good, np.stack(arrays))
        bar.update(len(chunk))
    bar.close()
    return failures


def report_failures(failures):
    for path, message in failures:
        print(f"vitc: skipped {path}: {message}", file=sys.stderr)
    return 1 if failures else 0


def cmd_classify(args):
    if getattr(args, "labels", None):  # zero-shot with a CLIP / SigLIP checkpoint
        from .cli_text import cmd_zero_shot
        return cmd_zero_shot(args)
    from .pipeline import scores_from_logits, top_k_labels
    model = load_model(args)
    paths = expand_images(args.images)

    shown = os.path.basename if getattr(args, "short_names", False) else str

    def emit(good, pixels):
        logits = model(pixels).logits
        scores = scores_from_logits(logits, getattr(model.config, "problem_type", None))
        for path, ranked in zip(map(shown, good), top_k_labels(scores, model.config.id2label, args.top_k)):
            if args.json:
                print(json.dumps({"image": path, "predictions": [{"label": l, "score": s} for l, s in ranked]}))
            else:
                print(path)
                for label, score in ranked:
                    print(f"  {score:7.2%}  {label}")
        sys.stdout.flush()

    return report_failures(run_batches(model, paths, args.batch_size, emit, not args.json))


def cmd_embed(args):
    import numpy as np
    if args.text:
        from .cli_text import cmd_embed_text
        return cmd_embed_text(args)
    if not args.images or not args.out:
        raise CliError("embed needs image paths and --out (or --text \"...\" with a CLIP / SigLIP model)")
    if not args.out.endswith((".npy", ".npz")):
        raise CliError(f"--out must end in .npy or .npz, got {args.out!r}")
    model = load_model(args, encoder_only=True)
    paths = expand_images(args.images)
    names, chunks = [], []

    def collect(good, pixels):
        chunks.append(model.embed(pixels, all_tokens=args.all_tokens))  # the family's embedding
        names.extend(good)

    status = report_failures(run_batches(model, paths, args.batch_size, collect))
    if not chunks:
        print("vitc: no image could be read; nothing written", file=sys.stderr)
        return 1
    embeddings = np.concatenate(chunks)
    tmp = args.out + ".tmp" + os.path.splitext(args.out)[1]  # write whole, then rename: never half a file
    if args.out.endswith(".npz"):
        np.savez(tmp, embeddings=embeddings, files=np.array(names))
    else:
        np.save(tmp, embeddings)
    os.replace(tmp, args.out)
    print(f"wrote {embeddings.shape} embeddings of {len(names)} images to {args.out}", file=sys.stderr)
    return status


def cmd_info(args):
    import numpy as np

    import vitc
    from .runtime import config
    family = model_family(args.model)[0]
    if family in ("ViT", "DeiT"):
        model = vitc.ViTModel.from_pretrained(args.model, threads=args.threads) if args.encoder else \
            vitc.ViTForImageClassification.from_pretrained(args.model, threads=args.threads)
    else:  # the classifier only for a checkpoint saved with one
        from .auto import checkpoint_config
        saved = " ".join(checkpoint_config(args.model)[0].get("architectures") or [])
        model = load_model(args, encoder_only=args.encoder or "ForImageClassification" not in saved)
    c = model.config
    info = {
        "model": args.model,
        "family": family,
        "class": type(model).__name__,
        "model_type": getattr(c, "model_type", "vit"),
        "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads, "intermediate_size": c.intermediate_size,
        "image_size": c.image_size, "patch_size": c.patch_size, "num_channels": c.num_channels,
        "hidden_act": c.hidden_act, "num_labels": len(getattr(c, "id2label", {}) or {}),
        "parameters": model.num_parameters(),
        "weight_bytes_float32": 4 * model.num_parameters(),
    }
    info.update({f"runtime_{k}": v for k, v in config().items()})
    if hasattr(model, "nonfinite_weights"):
        info["nonfinite_weights"] = model.nonfinite_weights()
    for key, value in info.items():
        print(f"{key:22s}: {value}")
    return 0


def cmd_bench(args):
    import numpy as np
    model = load_model(args)
    c = model.config
    h, w = (c.image_size, c.image_size) if isinstance(c.image_size, int) else tuple(c.image_size)
    x = np.random.default_rng(0).standard_normal((args.batch, c.num_channels, h, w)).astype(np.float32)
    model(x)  # warm-up: buffers for this shape
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    ms = 1e3 * float(np.median(times))
    from .runtime import get_num_threads
    threads = model.threads if model.threads is not None else get_num_threads()
    print(f"{args.model}: batch {args.batch}, {threads} threads, {model.isa}: median {ms:.2f} ms "
          f"({ms / args.batch:.2f} ms/image) over {args.repeats} runs")
    print("Side-by-side comparisons with PyTorch / ONNX Runtime / OpenVINO: benchmarks/bench_vit.py")
    return 0


def cmd_demo(args):
    from .checkpoints import bundled_model_path
    if args.zero_shot:
        from .cli_text import cmd_demo_zero_shot
        return cmd_demo_zero_shot(args)
    samples = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")
    args.model = args.model or DEMO_MODEL
    args.images = [samples]
    args.short_names = True
    if not args.json:
        print(f"{args.model} ({bundled_model_path(args.model) or 'not bundled'}) on the sample images in {samples}:")
    return cmd_classify(args)


def cmd_config(args):
    from .runtime import show_config
    show_config()
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="vitc", description="CPU inference for HuggingFace ViT checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_opts(p, default=DEFAULT_MODEL):
        p.add_argument("--model", default=default, help=f"Hub repo id or local folder (default {default})")
        p.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")

    p = sub.add_parser("classify", help="top-k labels for each image")
    p.add_argument("images", nargs="+", help="image files, directories or glob patterns")
    model_opts(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--labels", default=None, help="zero-shot: comma-separated labels (a CLIP / SigLIP --model)")
    p.add_argument("--template", default="a photo of {}.", help="zero-shot prompt, {} = the label")
    p.set_defaults(fn=cmd_classify)

    p = sub.add_parser("embed", help="CLS (or pooler) embeddings of images to .npy / .npz")
    p.add_argument("images", nargs="*")
    model_opts(p)
    p.add_argument("--out", default=None, help="embeddings.npy, or .npz with the file names too")
    p.add_argument("--text", action="append", default=None, help="embed this text instead (repeatable; CLIP / SigLIP)")
    p.add_argument("--normalize", action="store_true", help="--text: unit-norm embeddings")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--all-tokens", action="store_true", help="every token of the last hidden state")
    p.set_defaults(fn=cmd_embed)

    from .cli_text import add_search_parser
    add_search_parser(sub, model_opts)

    p = sub.add_parser("info", help="config, parameter count, weight bytes, ISA and threads")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--encoder", action="store_true", help="load as ViTModel (checkpoints without a classifier)")
    p.set_defaults(fn=cmd_info)

    p = sub.add_parser("bench", help="time vitc alone on random input")
    model_opts(p)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=10)
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("demo", help="classify the bundled sample digits with the bundled model, offline")
    model_opts(p, default=None)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", action="store_true")
    p.add_argument("--zero-shot", action="store_true", help="the bundled two-tower CLIP: labels and a text query")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("config", help="ISA, OpenMP and thread settings of this build")
    p.set_defaults(fn=cmd_config)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("top_k", "batch_size", "batch", "repeats", "threads"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    try:
        return args.fn(args)
    except CliError as exc:
        print(f"vitc: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as exc:  # model loading problems: one clear line, no traceback
        print(f"vitc: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
