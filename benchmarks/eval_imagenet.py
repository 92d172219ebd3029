"""Top-1 / top-5 of vitc at each dtype next to transformers float32, on an ImageNet-style folder you have.

    python benchmarks/eval_imagenet.py MODEL DATA [--labels FILE] [--dtypes float32,bfloat16,int8]
                                       [--limit N] [--batch 32] [--json out.json]

MODEL: a classification checkpoint (folder or Hub id). DATA: either one subfolder per class (the folder
names are the checkpoint's labels, or, as torchvision's ImageFolder, their sorted order is the class index:
ImageNet's n01440764 ... synset folders), or a folder of images with --labels FILE: one "<file> <label>"
per line (whitespace or comma separated; label: a class index or a label name). Every engine sees the same
pixel values (vitc's image processor), so the differences are the models'. Reported per engine: top-1,
top-5, and the share of images whose top-1 agrees with vitc float32.
"""
import argparse
import json
import os
import re
import sys
import time

import numpy as np

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


class DataError(ValueError):
    """The data folder or labels file does not fit the checkpoint."""


def _images(folder):
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS)
                  and os.path.isfile(os.path.join(folder, f)))


def _class_index(label, config, where):
    if isinstance(label, str) and label.strip().lstrip("-").isdigit():
        label = int(label)
    if isinstance(label, int):
        if not 0 <= label < config.num_labels:
            raise DataError(f"{where}: class index {label} is outside 0..{config.num_labels - 1}")
        return label
    if label not in config.label2id:
        raise DataError(f"{where}: label {label!r} is not one of the checkpoint's labels")
    return int(config.label2id[label])


def samples(data, config, labels_file=None):
    """[(image path, class index)] of an ImageNet-style folder (see the module docstring)."""
    if not os.path.isdir(data):
        raise DataError(f"{data}: not a folder")
    if labels_file is not None:
        out = []
        with open(labels_file, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                parts = re.split(r"[\s,]+", line.strip(), maxsplit=1) if line.strip() else []  # a name may hold commas
                if not parts:
                    continue
                if len(parts) < 2:
                    raise DataError(f"{labels_file}:{n}: expected '<file> <label>', got {line.strip()!r}")
                path = os.path.join(data, parts[0])
                if not os.path.isfile(path):
                    raise DataError(f"{labels_file}:{n}: no image {path}")
                out.append((path, _class_index(parts[1].strip(), config, f"{labels_file}:{n}")))
        return out
    classes = sorted(d for d in os.listdir(data) if os.path.isdir(os.path.join(data, d)))
    if not classes:
        raise DataError(f"{data}: no class subfolders (or pass --labels FILE for a flat folder of images)")
    if all(c in config.label2id for c in classes):
        index = {c: int(config.label2id[c]) for c in classes}
    elif len(classes) == config.num_labels:  # ImageFolder: sorted folder names are the class indices
        index = {c: i for i, c in enumerate(classes)}
    else:
        raise DataError(f"{data}: {len(classes)} class folders are neither the checkpoint's labels nor one per "
                        f"class ({config.num_labels} classes)")
    return [(os.path.join(data, c, f), index[c]) for c in classes for f in _images(os.path.join(data, c))]


def engines(model, dtypes, threads, with_transformers):
    """{name: callable(pixel_values) -> logits [N, L]}: vitc at each dtype, transformers float32 if installed."""
    import vitc

    out = {}
    for dtype in dtypes:
        m = vitc.AutoModelForImageClassification.from_pretrained(model, dtype=dtype, threads=threads)
        out[f"vitc {m.dtype}"] = lambda x, m=m: m(x).logits
    if with_transformers:
        try:
            import torch
            import transformers
        except ImportError:
            print("transformers/torch not installed: no transformers row", file=sys.stderr)
            return out
        hf = transformers.AutoModelForImageClassification.from_pretrained(model, attn_implementation="eager")
        hf = hf.float().eval()

        def run(x, hf=hf, torch=torch):
            with torch.inference_mode():
                return hf(torch.from_numpy(x)).logits.float().numpy()
        out["transformers float32"] = run
    return out


def evaluate(model, data, labels_file=None, dtypes=("float32", "bfloat16", "int8"), batch=32, limit=None,
             threads=None, with_transformers=True, log=lambda m: None):
    """The report (a dict): per engine top1, top5, agree_top1 (with vitc float32) and seconds."""
    import vitc

    config = vitc.AutoConfig.from_pretrained(model)
    processor = vitc.AutoImageProcessor.from_pretrained(model)
    items = samples(data, config, labels_file)[:limit]
    if not items:
        raise DataError(f"{data}: no images")
    runs = engines(model, dtypes, threads, with_transformers)
    labels = np.array([c for _, c in items])
    k = min(5, config.num_labels)
    top = {name: [] for name in runs}
    seconds = dict.fromkeys(runs, 0.0)
    for i in range(0, len(items), batch):
        pixels = processor([p for p, _ in items[i:i + batch]])["pixel_values"]
        for name, run in runs.items():
            t0 = time.perf_counter()
            logits = np.asarray(run(pixels), np.float64)
            seconds[name] += time.perf_counter() - t0
            top[name].append(np.argsort(-logits, axis=1, kind="stable")[:, :k])
        log(f"{min(i + batch, len(items))}/{len(items)} images")
    reference = "vitc float32" if "vitc float32" in top else None
    results = {}
    for name in runs:
        order = np.concatenate(top[name])
        results[name] = {"top1": float(np.mean(order[:, 0] == labels)),
                         "top5": float(np.mean((order == labels[:, None]).any(axis=1))),
                         "agree_top1": None if reference is None else
                         float(np.mean(order[:, 0] == np.concatenate(top[reference])[:, 0])),
                         "seconds": seconds[name]}
    return {"model": str(model), "data": str(data), "images": len(items), "classes": config.num_labels,
            "top_k": k, "reference": reference, "results": results}


def table(report):
    lines = [f"{report['model']} on {report['data']}: {report['images']} images, {report['classes']} classes",
             "", f"| engine | top-1 | top-{report['top_k']} | top-1 agrees with vitc float32 | seconds |",
             "|---|---:|---:|---:|---:|"]
    for name, r in report["results"].items():
        agree = "-" if r["agree_top1"] is None else f"{100 * r['agree_top1']:.2f}%"
        lines.append(f"| {name} | {100 * r['top1']:.2f}% | {100 * r['top5']:.2f}% | {agree} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="classification checkpoint: folder or Hub id")
    p.add_argument("data", help="class subfolders, or a folder of images with --labels")
    p.add_argument("--labels", metavar="FILE", help="'<file> <label>' per line, for a flat folder of images")
    p.add_argument("--dtypes", default="float32,bfloat16,int8", help="vitc dtypes, comma-separated")
    p.add_argument("--batch", type=int, default=32, help="images per forward (default 32)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (in sorted order)")
    p.add_argument("--threads", type=int, default=None, help="vitc threads (default: all usable CPUs)")
    p.add_argument("--no-transformers", action="store_true", help="leave out the transformers float32 row")
    p.add_argument("--json", metavar="PATH", help="the report as JSON")
    args = p.parse_args(argv)
    if args.batch < 1 or (args.limit is not None and args.limit < 1):
        p.error("--batch and --limit must be >= 1")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    try:
        report = evaluate(args.model, args.data, args.labels, dtypes, args.batch, args.limit, args.threads,
                          not args.no_transformers, log=lambda m: print(m, file=sys.stderr, flush=True))
    except (DataError, OSError, ValueError) as exc:
        print(f"eval_imagenet.py: error: {exc}", file=sys.stderr)
        return 1
    print(table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
