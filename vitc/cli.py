"""The `vitc` command: classify / embed images, describe a model, time it, or try the bundled demo.

    vitc classify IMG... [--model ID_OR_DIR] [--top-k K] [--batch-size B] [--threads T] [--json]
    vitc embed IMG... --out embeddings.npy|.npz [--model ...] [--all-tokens]
    vitc explain IMG... [--model ...] [--method rollout|cls] [--layer L] [--head H|mean] [--grid] [--out DIR]
    vitc info [MODEL]        vitc bench [--model ...] [--compare torch,onnxruntime,openvino] [--dtype ...]
    vitc demo                vitc config
    vitc serve [--model ...] [--port 8000] [--replicas R] [--threads T] ...   (extra vitc[serve])

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


def load_kwargs(args):
    """from_pretrained's run-time options from the command line: threads, dtype."""
    return {"threads": args.threads, "dtype": getattr(args, "dtype", None)}


def load_model(args, encoder_only=False):
    import vitc
    family, embedders, classifier = model_family(args.model)
    if not encoder_only:
        if classifier is None:
            raise CliError(f"{args.model}: a {family} image tower has no classifier; use `vitc embed`")
        return getattr(vitc, classifier).from_pretrained(args.model, **load_kwargs(args))
    for name in embedders[:-1]:  # e.g. CLIP with its projection, else the tower alone
        try:
            return getattr(vitc, name).from_pretrained(args.model, **load_kwargs(args))
        except vitc.WeightsMismatchError:
            pass
    return getattr(vitc, embedders[-1]).from_pretrained(args.model, **load_kwargs(args))


def run_batches(model, paths, batch_size, fn, show_progress=True, keep_images=False):
    """Call fn(good_paths, pixel_values) per batch (keep_images: fn(good_paths, pixel_values, images), with
    the decoded upright PIL images too); returns [(path, error message)] for unreadable images."""
    from .image_prefetch import decode_chunk
    failures = []
    bar = progress(len(paths), show_progress)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        good, pixels, bad, images = decode_chunk(model.image_processor, chunk, keep_images)
        failures.extend(bad)
        if good:
            fn(good, pixels, *([images] if keep_images else []))
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
    args.batch_size = args.batch_size or 8
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


def cmd_explain(args):
    from .explain import AttentionMaps, forward
    from .hub import resolve_checkpoint
    from .heatmap import caption, head_grid, label_lines, map_box, render, save_png
    from .pipeline import scores_from_logits, top_k_labels
    method = args.method or ("cls" if args.grid or args.layer is not None or args.head is not None else "rollout")
    if method == "rollout" and (args.grid or args.layer is not None or args.head is not None):
        raise CliError("--layer, --head and --grid read one layer's CLS attention: use them with --method cls")
    if method == "cls" and (args.head_fusion is not None or args.discard_ratio is not None):
        raise CliError("--head-fusion and --discard-ratio apply to --method rollout")
    if args.grid and args.head is not None:
        raise CliError("--grid shows every head: leave out --head")
    if not 0.0 <= args.alpha <= 1.0 or not 0.0 <= (args.discard_ratio or 0.0) < 1.0:
        raise CliError("--alpha must be in [0, 1] and --discard-ratio in [0, 1)")
    # a checkpoint saved from ViTModel / DeiTModel (DINO), Dinov2Model, or an image tower without a classifier
    # family (CLIP, SigLIP): maps without labels
    from .auto import checkpoint_config
    archs = checkpoint_config(resolve_checkpoint(args.model).config)[0].get("architectures") or []
    encoder_only = (bool(archs) and not any("ForImageClassification" in str(a) for a in archs)) or \
        model_family(args.model)[2] is None
    model = load_model(args, encoder_only=encoder_only)
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    layer = -1 if args.layer is None else args.layer
    if not -layers <= layer < layers:
        raise CliError(f"--layer must be in [{-layers}, {layers}): the model has {layers} layers, got {layer}")
    head = None if args.head in (None, "mean") else int(args.head)
    if head is not None and not 0 <= head < heads:
        raise CliError(f"--head must be 'mean' or in [0, {heads}): the model has {heads} heads, got {head}")
    paths = expand_images(args.images)
    os.makedirs(args.out, exist_ok=True)
    suffix = {"rollout": "rollout", "cls": f"cls-layer{layer % layers}" + ("" if head is None else f"-head{head}")}
    suffix = f"heads-layer{layer % layers}" if args.grid else suffix[method]
    taken = set()

    def emit(good, pixels, images):
        out = forward(model, pixels)  # the labels and the maps come from this one forward
        maps = AttentionMaps.of_forward(model, pixels, out)
        if args.grid:
            heat = maps.cls_attention(layer, "all")
        elif method == "rollout":
            heat = maps.rollout(args.head_fusion or "mean", args.discard_ratio or 0.0)
        else:
            heat = maps.cls_attention(layer, head)
        ranked = [[] for _ in good]
        if not encoder_only:
            scores = scores_from_logits(out.logits, getattr(model.config, "problem_type", None))
            ranked = top_k_labels(scores, model.config.id2label, args.top_k)
        for path, image, heat_i, ranked_i in zip(good, images, heat, ranked):
            photo = image.convert("RGB")
            box = map_box(photo.size, maps.grid, model)
            lines = label_lines(ranked_i)
            if args.grid:
                picture = head_grid(photo, heat_i, box, lines, args.alpha, args.colormap)
            else:
                picture = caption(render(photo, heat_i, box, args.alpha, args.colormap), lines)
            target = _output_path(args.out, path, suffix, taken)
            save_png(picture, target)
            print(f"{path} -> {target}" + (f"  ({lines[0].strip()})" if lines else ""))
        sys.stdout.flush()

    return report_failures(run_batches(model, paths, args.batch_size, emit, keep_images=True))


def _output_path(folder, image_path, suffix, taken):
    """folder/<image stem>.<suffix>.png, with -2, -3, ... when two inputs share a stem."""
    stem = os.path.splitext(os.path.basename(image_path))[0]
    target, n = os.path.join(folder, f"{stem}.{suffix}.png"), 1
    while target in taken:
        n += 1
        target = os.path.join(folder, f"{stem}-{n}.{suffix}.png")
    taken.add(target)
    return target


def cmd_info(args):
    import numpy as np

    import vitc
    from .runtime import config
    family = model_family(args.model)[0]
    if family in ("ViT", "DeiT"):
        model = vitc.ViTModel.from_pretrained(args.model, **load_kwargs(args)) if args.encoder else \
            vitc.ViTForImageClassification.from_pretrained(args.model, **load_kwargs(args))
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
        "dtype": model.dtype, "kernel_set": model.kernel_set, "weight_bytes": model.weight_bytes(),
        "attention": model.attention,
    }
    info.update({f"runtime_{k}": v for k, v in config().items()})
    if hasattr(model, "nonfinite_weights"):
        info["nonfinite_weights"] = model.nonfinite_weights()
    for key, value in info.items():
        print(f"{key:22s}: {value}")
    return 0


def cmd_bench(args):
    from .bench.options import run
    return run(args)


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


def cmd_serve(args):
    from .serve.server import main as serve_main
    return serve_main(args)


def add_serve_parser(sub):
    from .serve.options import add_serve_arguments
    p = sub.add_parser("serve", help="HTTP server: Open Inference Protocol v2, /v1/embeddings, /classify, /metrics")
    add_serve_arguments(p, DEFAULT_MODEL)
    p.set_defaults(fn=cmd_serve)

def _head_arg(text):
    if text == "mean":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a head number or 'mean', got {text!r}") from None


def dtype_opt(p):
    from ._vitc import DTYPES
    p.add_argument("--dtype", type=str.lower, choices=DTYPES + ("fp32", "bf16"), default=None,
                   help="encoder weights' dtype (default float32, or the dtype of a folder vitc saved; "
                        "bfloat16/int8: faster, smaller, approximate)")


def build_parser():
    parser = argparse.ArgumentParser(prog="vitc", description="CPU inference for HuggingFace ViT checkpoints.")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_opts(p, default=DEFAULT_MODEL):
        p.add_argument("--model", default=default, help=f"Hub repo id or local folder (default {default})")
        p.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")
        dtype_opt(p)

    p = sub.add_parser("classify", help="top-k labels for each image")
    p.add_argument("images", nargs="+", help="image files, directories or glob patterns")
    model_opts(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=None, help="images per forward (default 8; 32 with --labels)")
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

    p = sub.add_parser("explain", help="PNGs of where the model looks: attention rollout or CLS attention")
    p.add_argument("images", nargs="+", help="image files, directories or glob patterns")
    model_opts(p)
    p.add_argument("--method", choices=("rollout", "cls"), default=None,
                   help="rollout: attention rollout through all layers (default); cls: one layer's CLS attention "
                        "(the default with --layer, --head or --grid)")
    p.add_argument("--layer", type=int, default=None, help="layer of --method cls / --grid (default -1: the last)")
    p.add_argument("--head", default=None, type=_head_arg, help="head of --method cls, or 'mean' (default)")
    p.add_argument("--head-fusion", choices=("mean", "max", "min"), default=None,
                   help="how rollout fuses the heads of a layer (default mean)")
    p.add_argument("--discard-ratio", type=float, default=None,
                   help="rollout: fraction of the lowest attentions dropped per layer (default 0)")
    p.add_argument("--grid", action="store_true", help="one PNG per image with every head of --layer (DINO style)")
    p.add_argument("--out", default=".", help="folder for the PNGs (default: the current one)")
    p.add_argument("--top-k", type=int, default=3, help="labels in the caption (default 3)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the heat colors over the photo")
    p.add_argument("--colormap", choices=("heat", "deep"), default="heat")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(fn=cmd_explain)

    from .cli_text import add_search_parser
    add_search_parser(sub, model_opts)

    p = sub.add_parser("info", help="config, parameter count, weight bytes, ISA and threads")
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--encoder", action="store_true", help="load as ViTModel (checkpoints without a classifier)")
    dtype_opt(p)
    p.set_defaults(fn=cmd_info)

    p = sub.add_parser("bench", help="time vitc, alone or beside PyTorch / ONNX Runtime / OpenVINO (--compare)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"Hub repo id or local folder (default {DEFAULT_MODEL})")
    from .bench.options import add_options
    add_options(p)
    p.set_defaults(fn=cmd_bench)

    p = sub.add_parser("demo", help="classify the bundled sample digits with the bundled model, offline")
    model_opts(p, default=None)
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", action="store_true")
    p.add_argument("--zero-shot", action="store_true", help="the bundled two-tower CLIP: labels and a text query")
    p.set_defaults(fn=cmd_demo)

    p = sub.add_parser("config", help="ISA and thread settings of this build")
    p.set_defaults(fn=cmd_config)

    add_serve_parser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "bench":
        from .bench.options import check
        check(args, parser.error)
    for name in ("top_k", "batch_size", "threads"):
        value = getattr(args, name, None)
        if isinstance(value, int) and value < 1:
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
