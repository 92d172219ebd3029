"""The text side of the CLI (two-tower CLIP / SigLIP checkpoints): `vitc classify --labels`, `vitc embed --text`,
`vitc search` (image embeddings cached per file, reused while its size and mtime are unchanged)."""
import json
import os
import sys

import numpy as np

from .cli import CliError, expand_images, progress, report_failures
from .image_prefetch import ImagePrefetch

TWO_TOWER = {"clip": "CLIPModel", "siglip": "SiglipModel"}
DEMO_MODEL = "vitc-digits-clip"
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CACHE_NAME = ".vitc-search-cache.npz"
# images per forward of classify --labels / search: 8 leaves CLIP-B/32's 50-token GEMMs 400 rows, and 4-5% more
# CPU time per image than 32 (docs/performance.md, "Zero-shot labels for a folder")
BATCH_SIZE = 32


def two_tower_class(args):
    """The vitc class of args.model (CLIPModel / SiglipModel), from its config alone."""
    import vitc
    from .auto import checkpoint_config
    try:
        kind = checkpoint_config(args.model)[0].get("model_type")
    except (OSError, ValueError) as exc:
        raise CliError(f"{args.model}: {exc}") from None
    if kind not in TWO_TOWER:
        raise CliError(f"{args.model}: model_type {kind!r} has no text tower; labels and text queries need a "
                       f"two-tower checkpoint ({', '.join(sorted(TWO_TOWER))})")
    return getattr(vitc, TWO_TOWER[kind])


def load_two_tower(args):
    from .cli import load_kwargs
    return two_tower_class(args).from_pretrained(args.model, **load_kwargs(args))


def early_image_processor(model_id):
    """The image processor a two-tower model of this checkpoint will have, before its weights are read:
    AutoImageProcessor of the folder of its preprocessor_config.json, as from_pretrained sets it up. None where
    there is none (the model then builds its defaults from its config) or the checkpoint has a problem (the
    load that follows reports it)."""
    from .auto import AutoImageProcessor
    from .hub import resolve_checkpoint
    try:
        files = resolve_checkpoint(model_id)
        if not files.preprocessor:
            return None
        return AutoImageProcessor.from_pretrained(os.path.dirname(os.path.abspath(files.preprocessor)))
    except Exception:  # noqa: BLE001 - only a head start is lost; from_pretrained raises the real error
        return None


def load_while_decoding(args, paths):
    """(model, prefetch or None): the images start decoding on a thread while the weights load."""
    processor = early_image_processor(args.model) if paths else None
    prefetch = ImagePrefetch(processor, paths, args.batch_size) if processor is not None else None
    try:
        return load_two_tower(args), prefetch
    except BaseException:
        if prefetch is not None:
            prefetch.close()
        raise


def embed_images(model, paths, batch_size, show_progress=True, prefetch=None):
    """(good paths, unit-norm embeddings [N, E] or None, failures) of image files, decoded one by one on a
    thread ahead of the forward. prefetch: an ImagePrefetch of these paths and batch size started before the
    model was loaded, used when its processor is the model's (else stopped and redone)."""
    if prefetch is not None:
        try:
            reusable = same_processor(prefetch.processor, model.image_processor)
        except BaseException:
            prefetch.close()
            raise
        if not reusable:
            prefetch.close()
            prefetch = None
    if prefetch is None:
        prefetch = ImagePrefetch(model.image_processor, paths, batch_size)
    good, chunks, failures = [], [], []
    bar = progress(len(paths), show_progress)
    with prefetch:
        for chunk, ok, pixels, bad in prefetch:
            failures.extend(bad)
            if ok:
                good.extend(ok)
                chunks.append(model.embed(pixels, normalize=True))
            bar.update(len(chunk))
    bar.close()
    return good, np.concatenate(chunks) if chunks else None, failures


def same_processor(a, b):
    return type(a) is type(b) and a.to_json_string() == b.to_json_string()


def cmd_zero_shot(args):
    """classify --labels: per image the labels by zero-shot score."""
    two_tower_class(args)
    labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    if not labels:
        raise CliError("--labels needs at least one label (comma-separated)")
    paths = expand_images(args.images)
    shown = os.path.basename if getattr(args, "short_names", False) else str
    args.batch_size = args.batch_size or BATCH_SIZE
    model, prefetch = load_while_decoding(args, paths)
    good, image, failures = embed_images(model, paths, args.batch_size, not args.json, prefetch)
    if good:
        text = model.embed_text([args.template.format(label) for label in labels], normalize=True)
        scores = model._scores(model.logits(text, image).T)
        k = min(args.top_k, len(labels))
        for path, row in zip(good, scores):
            ranked = [(labels[j], float(row[j])) for j in np.argsort(-row, kind="stable")[:k]]
            if args.json:
                print(json.dumps({"image": shown(path), "predictions": [{"label": l, "score": s} for l, s in ranked]}))
            else:
                print(shown(path))
                for label, score in ranked:
                    print(f"  {score:7.2%}  {label}")
    return report_failures(failures)


def cmd_embed_text(args):
    """embed --text: text embeddings to --out (.npy / .npz with the texts), or JSON lines on stdout."""
    model = load_two_tower(args)
    emb = model.embed_text(list(args.text), normalize=args.normalize)
    if not args.out:
        for text, row in zip(args.text, emb):
            print(json.dumps({"text": text, "embedding": [round(float(v), 7) for v in row]}))
        return 0
    if not args.out.endswith((".npy", ".npz")):
        raise CliError(f"--out must end in .npy or .npz, got {args.out!r}")
    tmp = args.out + ".tmp" + os.path.splitext(args.out)[1]
    if args.out.endswith(".npz"):
        np.savez(tmp, embeddings=emb, texts=np.array(args.text))
    else:
        np.save(tmp, emb)
    os.replace(tmp, args.out)
    print(f"wrote {emb.shape} embeddings of {len(args.text)} texts to {args.out}", file=sys.stderr)
    return 0


# ---- search: the embedding cache ---------------------------------------------------------------------------
def _stamp(path):
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _default_cache(inputs):
    first = inputs[0]
    folder = first if os.path.isdir(first) else os.path.dirname(os.path.abspath(first))
    return os.path.join(folder, CACHE_NAME)


def load_cache(path, model_key):
    """{abs path: (size, mtime_ns, embedding)} of a cache file made for this model ({} if absent / other)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["model"]) != model_key:
                return {}
            return {p: (int(s), int(m), e) for p, s, m, e in zip(z["paths"].tolist(), z["sizes"], z["mtimes"],
                                                                   z["embeddings"])}
    except (OSError, KeyError, ValueError):
        return {}


def save_cache(path, model_key, entries):
    paths = sorted(entries)
    emb = np.stack([entries[p][2] for p in paths]) if paths else np.zeros((0, 0), np.float32)
    tmp = path + ".tmp.npz"
    np.savez(tmp, model=np.array(model_key), paths=np.array(paths, dtype=str),
             sizes=np.array([entries[p][0] for p in paths], np.int64),
             mtimes=np.array([entries[p][1] for p in paths], np.int64), embeddings=emb)
    os.replace(tmp, path)  # whole or not at all


def indexed_embeddings(args, model_key, paths, cache_path, show_progress=True):
    """(model, paths, embeddings, failures, reused count): cached rows where a file's size and mtime are
    unchanged, the others embedded now (decoding while the model loads, with a progress bar) and written back to
    the cache."""
    cache = load_cache(cache_path, model_key)
    entries, todo = {}, []
    for path in (os.path.abspath(p) for p in paths):
        stamp = _stamp(path)
        hit = cache.get(path)
        if hit is not None and hit[:2] == stamp:
            entries[path] = hit
        else:
            todo.append(path)
    reused = len(entries)
    model, prefetch = load_while_decoding(args, todo)
    good, emb, failures = embed_images(model, todo, args.batch_size, show_progress, prefetch) if todo else \
        ([], None, [])
    for path, row in zip(good, emb if emb is not None else []):
        entries[path] = (*_stamp(path), row)
    if todo or len(cache) != len(entries):
        save_cache(cache_path, model_key, entries)
    order = sorted(entries)
    matrix = np.stack([entries[p][2] for p in order]) if order else None
    return model, order, matrix, failures, reused


def cmd_search(args):
    two_tower_class(args)
    paths = expand_images(args.images)
    cache_path = args.cache or _default_cache(args.images)
    model_key = os.path.abspath(args.model) if os.path.exists(args.model) else args.model
    model, order, matrix, failures, reused = indexed_embeddings(args, model_key, paths, cache_path, not args.json)
    print(f"vitc: {len(order)} images indexed ({reused} from {cache_path})", file=sys.stderr)
    status = report_failures(failures)
    if matrix is None:
        return 1
    query = model.embed_text(args.query, normalize=True)
    scores = (matrix @ query[0]).astype(np.float32)
    for j in np.argsort(-scores, kind="stable")[:args.top_k]:
        if args.json:
            print(json.dumps({"image": order[j], "score": float(scores[j])}))
        else:
            print(f"{scores[j]:8.4f}  {order[j]}")
    return status


def cmd_demo_zero_shot(args):
    """demo --zero-shot: the bundled digits CLIP labels the sample digits from words it was never given as
    classes (zero-shot over "a photo of the digit {}."), then finds the sample that best matches a sentence."""
    samples = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")
    args.model = args.model or DEMO_MODEL
    args.images, args.short_names = [samples], True
    args.labels, args.template = ",".join(DIGIT_WORDS), "a photo of the digit {}."
    if not args.json:
        print(f"{args.model}: zero-shot labels {DIGIT_WORDS[0]}..{DIGIT_WORDS[-1]} on the samples in {samples}:")
    status = cmd_zero_shot(args)
    model = load_two_tower(args)
    paths = expand_images([samples])
    query = "handwritten 7"
    good, image, _ = embed_images(model, paths, args.batch_size, show_progress=False)
    scores = image @ model.embed_text(query, normalize=True)[0]
    best = int(np.argmax(scores))
    if args.json:
        print(json.dumps({"query": query, "best": os.path.basename(good[best]), "score": float(scores[best])}))
    else:
        print(f"text query {query!r}: best match {os.path.basename(good[best])} (cosine {scores[best]:.3f})")
    return status


def add_search_parser(sub, model_opts):
    p = sub.add_parser("search", help="images of a folder ranked by similarity to a text (CLIP / SigLIP)")
    p.add_argument("images", nargs="+", help="image files, directories or glob patterns")
    p.add_argument("query", help="the text to search for")
    model_opts(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--cache", default=None, help=f"embedding cache file (default: {CACHE_NAME} next to the images)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_search)
