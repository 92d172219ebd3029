"""vitc on Ray Data (extra `vitc[ray]`): embed or classify image collections on an actor pool.

    import ray, vitc.ray
    ds = vitc.ray.embed_images("s3://bucket/images/", "google/vit-base-patch16-224", threads=4)
    ds.write_parquet("embeddings/")          # columns: path, embedding

The thread rule: each actor runs `threads` kernel threads and reserves as many CPUs (num_cpus=threads), so
actors x threads never exceeds the cluster's cores. Ray sets OMP_NUM_THREADS=1 in workers, which would pin a
default-threaded model to one core: threads is therefore required, never guessed.

Local files are read by the actors themselves (the driver only lists them): Ray Data's read tasks cost about
0.4 ms of CPU per file here, as much as a small model's forward, on the same cores. Remote URIs (s3://, ...)
go through ray.data.read_binary_files.

Images are decoded with vitc.image_io's checks (decompression bombs, truncated files, 0x0 images, ...); a file
that cannot be decoded is logged (logger "vitc.ray", which Ray forwards to the driver) and skipped, so one
corrupt file does not fail the job.
"""
import glob
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .families.two_tower import label_prompts
from .image_io import ImageLoadError, load_image_bytes
from .modeling import l2_normalize
from .serve.loading import can_classify, can_zero_shot, load_model

log = logging.getLogger("vitc.ray")

__all__ = ["ImageModel", "embed_images", "classify_images"]


class ImageModel:
    """Callable class for `Dataset.map_batches` on an actor pool: rows with encoded image bytes (or, without
    a bytes column, the paths of local files to read) in, rows (path, embedding) or (path, labels, scores)
    out, unreadable or undecodable images skipped (and kept in .skipped).
    Any family the Auto classes load; a two-tower model (CLIPModel, SiglipModel) classifies zero-shot over
    `labels` (each written into `template`).

        ds.map_batches(ImageModel, fn_constructor_kwargs={"model": "google/vit-base-patch16-224",
                       "threads": 4}, num_cpus=4, concurrency=n_actors, batch_size=32)
    """

    def __init__(self, model, threads, task="embed", top_k=5, bytes_column="bytes", path_column="path",
                 dtype=None, max_image_pixels=None, labels=None, template="a photo of {}."):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be given as a positive int (each actor's cores), got {threads!r}")
        if task not in ("embed", "classify"):
            raise ValueError(f"task must be 'embed' or 'classify', got {task!r}")
        self.model = load_model(model, threads, dtype)
        self.labels = self.label_embeds = None
        if task == "classify" and can_zero_shot(self.model):
            if labels is None:
                raise ValueError(f"{model}: a two-tower model classifies zero-shot: pass labels=[...]")
            self.labels, prompts = label_prompts(labels, template)
            self.label_embeds = self.model.embed_text(prompts, normalize=True)
        elif labels is not None:
            raise ValueError(f"{model}: labels are for two-tower (zero-shot) models; this one has none")
        elif task == "classify" and not can_classify(self.model):
            raise ValueError(f"{model}: this checkpoint has no classification head; use task='embed'")
        self.threads, self.task, self.top_k = threads, task, top_k
        self.bytes_column, self.path_column = bytes_column, path_column
        self.max_image_pixels = max_image_pixels
        self.processor = self.model.image_processor
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="vitc-decode") if threads > 1 else None
        self.skipped = []  # (path, message) of every image this actor skipped
        gray = self.processor(np.full((8, 8, 3), 128, np.uint8))["pixel_values"]
        self.dim = int(np.asarray(self.model.embed(gray)).shape[-1])  # warm-up, and the width of empty batches

    def _pixels(self, blob, name):
        try:
            if blob is None:  # a path column alone: the actor reads the file
                with open(name, "rb") as f:
                    blob = f.read()
            image = load_image_bytes(bytes(blob), name, self.max_image_pixels)
            return self.processor(image, num_workers=1)["pixel_values"][0]
        except OSError as err:
            return f"cannot read: {err}"
        except (ImageLoadError, ValueError, TypeError) as err:
            return str(err)

    def __call__(self, batch):
        if self.bytes_column not in batch and self.path_column in batch:
            paths = batch[self.path_column]
            blobs = [None] * len(paths)
        else:
            blobs = batch[self.bytes_column]
            paths = batch[self.path_column] if self.path_column in batch else [f"row {i}" for i in range(len(blobs))]
        names = [str(p) for p in paths]
        pixels = list(self.pool.map(self._pixels, blobs, names) if self.pool else map(self._pixels, blobs, names))
        keep = [i for i, p in enumerate(pixels) if not isinstance(p, str)]
        for i, p in enumerate(pixels):
            if isinstance(p, str):
                log.warning("vitc.ray: skipped %s: %s", names[i], p)
                self.skipped.append((names[i], p))
        out = {"path": np.array([names[i] for i in keep], dtype=object)}
        x = np.stack([pixels[i] for i in keep]) if keep else None
        if self.task == "embed":
            out["embedding"] = (np.asarray(self.model.embed(x), np.float32) if keep
                                else np.empty((0, self.dim), np.float32))
        else:
            ranked = [] if not keep else (
                self.model.classify(x, top_k=self.top_k) if self.labels is None else
                self.model.rank_labels(self.label_embeds, l2_normalize(self.model.embed(x)), self.labels, self.top_k))
            out["labels"] = np.empty(len(keep), dtype=object)  # one list of strings per row (an Arrow list column)
            for i, r in enumerate(ranked):
                out["labels"][i] = [lab for lab, _ in r]
            out["scores"] = np.array([[s for _, s in r] for r in ranked], np.float32).reshape(len(keep), -1)
        return out


def embed_images(paths_or_dataset, model, threads=1, actors=None, batch_size=32, **options):
    """A Dataset of (path, embedding float32 [D]) for image files (a path, directory, glob or list of them;
    local files are read by the actors, URIs with ray.data.read_binary_files) or for a Dataset with `bytes`
    (and `path`) columns."""
    return _map(paths_or_dataset, model, threads, actors, batch_size, dict(options, task="embed"))


def classify_images(paths_or_dataset, model, threads=1, actors=None, batch_size=32, top_k=5, **options):
    """A Dataset of (path, labels [top_k], scores [top_k]), as embed_images."""
    return _map(paths_or_dataset, model, threads, actors, batch_size, dict(options, task="classify", top_k=top_k))


def _map(source, model, threads, actors, batch_size, options):
    import ray
    if isinstance(source, ray.data.Dataset):
        ds = source
    else:
        files = local_files(source)
        ds = (ray.data.read_binary_files(source, include_paths=True) if files is None else
              ray.data.from_items([{"path": f} for f in files]))
    if actors is None:  # the thread rule: actors x threads = the cluster's CPUs
        actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    # a pool that grows from one actor: a fixed pool holding every CPU would starve the read tasks
    pool = ray.data.ActorPoolStrategy(min_size=1, max_size=actors)
    return ds.map_batches(ImageModel, fn_constructor_kwargs=dict(options, model=model, threads=threads),
                          batch_size=batch_size, batch_format="numpy", num_cpus=threads, compute=pool)


def local_files(source):
    """The files of a local path, directory (walked, sorted), glob or list of them; None when any is a URI
    (s3://, gs://, ...: left to Ray's file systems). Hidden files and folders are left out, as Ray does."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    items = [os.fspath(x) for x in items]
    if any("://" in x and not x.startswith("file://") for x in items):
        return None
    files = []
    for item in items:
        item = item[len("file://"):] if item.startswith("file://") else item
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not matches:
            raise FileNotFoundError(f"no file matches {item!r}")
        for path in matches:
            if os.path.isdir(path):
                for root, dirs, names in os.walk(path):
                    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                    files += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".")]
            elif os.path.exists(path):
                files.append(path)
            else:
                raise FileNotFoundError(f"no such file or directory: {path!r}")
    if not files:
        raise FileNotFoundError(f"no image files in {source!r}")
    return files
