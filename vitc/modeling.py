"""ViTModel / ViTForImageClassification: transformers' ViT forward pass over vitc's C kernels.

Loading streams each tensor once from the safetensors files into ONE arena (_WeightArena): vectors are read
in place, Linear weights a few panels at a time through a small scratch and packed for the model's ISA
(Q, K, V fused as [3D, D] rows query|key|value), so raw and packed weights never coexist in full and the
process peaks at about the float32 weights plus the activations.
The forward keeps its activation buffers per input shape and runs each encoder layer as one C call with the
GIL released:
    embeddings (patchify + patch GEMM + cls/pos)  ->  L x pre-LN encoder layer  ->  final LayerNorm
    ->  pooler (ViTModel, if the checkpoint has one) / classifier on the CLS row(s).
DeiT checkpoints (model_type "deit") add a distillation token after CLS: two prefix tokens instead of one.
"""
import contextlib
import mmap
import threading
import time
from collections import OrderedDict

import numpy as np

from . import _vitc, guards, runtime
from .config import ViTConfig
from .hub import resolve_checkpoint
from .profiling import ForwardProfile
from .outputs import BaseModelOutputWithPooling, DeiTImageClassifierOutput, ImageClassifierOutput
from .safetensors_reader import CheckpointReader


class WeightsMismatchError(ValueError):
    """The checkpoint's tensors do not match what the config describes (missing, unexpected, mis-shaped)."""


# ---- position embeddings at another resolution ------------------------------------------------------
def _bicubic_matrix(n_in, n_out, a=-0.75):
    """[n_out, n_in] float64 weights of torch's bicubic resize along one axis (align_corners=False,
    A = -0.75, source indices clamped to the border)."""
    m = np.zeros((n_out, n_in))
    scale = n_in / n_out
    for i in range(n_out):
        src = scale * (i + 0.5) - 0.5  # no clamp at 0 for cubic, as torch
        i0 = int(np.floor(src))
        t = src - i0
        coeffs = (((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
                  ((a + 2) * t - (a + 3)) * t * t + 1,
                  ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
                  ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a)
        for j, c in enumerate(coeffs):
            m[i, min(max(i0 - 1 + j, 0), n_in - 1)] += c
    return m


def bicubic_resize(grid, out_h, out_w):
    """grid [h, w, D] -> [out_h, out_w, D] float32, as torch.nn.functional.interpolate(mode="bicubic",
    align_corners=False) on the [1, D, h, w] permutation; computed in float64."""
    h, w, _ = grid.shape
    my, mx = _bicubic_matrix(h, out_h), _bicubic_matrix(w, out_w)
    out = np.einsum("yh,hwd->ywd", my, grid.astype(np.float64))
    out = np.einsum("xw,ywd->yxd", mx, out)
    return out.astype(np.float32)


def interpolate_pos_encoding(pos, num_prefix, grid, new_grid, square_input):
    """transformers' ViTEmbeddings.interpolate_pos_encoding: pos [num_prefix + gh*gw, D] -> the position
    embeddings of a new_grid (rows, cols) input. Unchanged when the patch count matches and the input is
    square (transformers' condition); otherwise the patch part is resized bicubically. transformers assumes a
    square grid of sqrt(num_positions); here the config's own (gh, gw) grid is used, the same when square."""
    gh, gw = grid
    nh, nw = new_grid
    if nh * nw == gh * gw and square_input:
        return pos
    patch = pos[num_prefix:].reshape(gh, gw, -1)
    resized = bicubic_resize(patch, nh, nw).reshape(nh * nw, -1)
    return np.ascontiguousarray(np.concatenate([pos[:num_prefix], resized], axis=0), dtype=np.float32)


# ---- the checkpoint's tensors -------------------------------------------------------------------------
def _expected_base_tensors(config, num_prefix):
    """{name: shape} of the encoder (no prefix), pooler excluded."""
    d, inter, c = config.hidden_size, config.intermediate_size, config.num_channels
    ph, pw = config.patch_hw
    shapes = {
        "embeddings.cls_token": (1, 1, d),
        "embeddings.position_embeddings": (1, config.num_patches + num_prefix, d),
        "embeddings.patch_embeddings.projection.weight": (d, c, ph, pw),
        "embeddings.patch_embeddings.projection.bias": (d,),
        "layernorm.weight": (d,),
        "layernorm.bias": (d,),
    }
    if num_prefix == 2:
        shapes["embeddings.distillation_token"] = (1, 1, d)
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for proj in ("query", "key", "value"):
            shapes[p + f"attention.attention.{proj}.weight"] = (d, d)
            if config.qkv_bias:
                shapes[p + f"attention.attention.{proj}.bias"] = (d,)
        shapes.update({
            p + "attention.output.dense.weight": (d, d), p + "attention.output.dense.bias": (d,),
            p + "intermediate.dense.weight": (inter, d), p + "intermediate.dense.bias": (inter,),
            p + "output.dense.weight": (d, inter), p + "output.dense.bias": (d,),
            p + "layernorm_before.weight": (d,), p + "layernorm_before.bias": (d,),
            p + "layernorm_after.weight": (d,), p + "layernorm_after.bias": (d,),
        })
    return shapes


class _WeightPlan:
    """Which checkpoint tensor fills which parameter, checked against the config before anything is read.

    Prefix rules follow transformers' base_model_prefix ("vit", or "deit" for DeiT): a base model accepts
    keys with or without the prefix (ignoring head tensors), a model with a head needs the prefixed form.
    Tensors transformers drops silently are ignored: mask_token; the pooler under a classification head."""

    def __init__(self, config, keys, shape_of, with_head, source):
        self.source = source
        prefix = "deit." if config.model_type == "deit" else "vit."
        keys = set(keys)
        has_prefix = any(k.startswith(prefix) for k in keys)
        self.prefix = prefix if has_prefix else ""
        self.num_prefix = 2 if config.model_type == "deit" else 1
        d, p = config.hidden_size, config.pooler_output_size
        base = _expected_base_tensors(config, self.num_prefix)
        pooler = {"pooler.dense.weight": (p, d), "pooler.dense.bias": (p,)}
        ignored = {"embeddings.mask_token"}
        present = {k[len(self.prefix):] for k in keys if k.startswith(self.prefix)} if self.prefix else set(keys)

        expected = {self.prefix + k: s for k, s in base.items()}
        self.head = None
        if with_head:
            n = config.num_labels
            head_sets = {"classifier": ("classifier",),
                         "teacher": ("cls_classifier", "distillation_classifier")}
            self.head = "teacher" if "cls_classifier.weight" in keys else "classifier"
            if n > 0:
                for layer in head_sets[self.head]:
                    expected[f"{layer}.weight"] = (n, d)
                    expected[f"{layer}.bias"] = (n,)
            ignored |= set(pooler)
            if not self.prefix:
                raise WeightsMismatchError(
                    f"{source}: no tensor starts with {prefix!r}: this is a base-model checkpoint (e.g. saved from "
                    f"ViTModel) without a classification head; load it with ViTModel instead")
        self.has_pooler = not with_head and any(k in present for k in pooler)
        if self.has_pooler:
            expected.update({self.prefix + k: s for k, s in pooler.items()})
        ignored = {self.prefix + k for k in ignored}

        missing = [k for k in expected if k not in keys]
        if missing:
            raise WeightsMismatchError(f"{source}: missing tensor(s) {_short(missing)} required by the config "
                                       f"({_config_summary(config)})")
        relevant = keys if with_head or not self.prefix else [k for k in keys if k.startswith(self.prefix)]
        unexpected = sorted(k for k in relevant if k not in expected and k not in ignored)
        if unexpected:
            raise WeightsMismatchError(f"{source}: unexpected tensor(s) {_short(unexpected)} for the config "
                                       f"({_config_summary(config)})")
        for k, shape in expected.items():
            got = tuple(shape_of(k))
            if got != shape:
                raise WeightsMismatchError(f"{source}: tensor {k!r} has shape {list(got)}, expected {list(shape)} "
                                           f"from the config ({_config_summary(config)})")
        self.num_parameters = sum(int(np.prod(s)) for s in expected.values())

    def base(self, name):
        return self.prefix + name


def _short(names, limit=8):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _config_summary(config):
    return (f"hidden_size={config.hidden_size}, layers={config.num_hidden_layers}, "
            f"intermediate_size={config.intermediate_size}, image_size={config.image_size}, "
            f"patch_size={config.patch_size}, num_channels={config.num_channels}, qkv_bias={config.qkv_bias}, "
            f"num_labels={config.num_labels}")


class _WeightArena:
    """Every weight of a model in ONE 64-byte aligned float32 buffer, filled straight from the checkpoint.

    First the loader declares what it needs (vector(): tensors' values back to back, e.g. the Q|K|V biases;
    packed(): a Linear weight, or several stacked by rows, in the GEMM's packed layout), then load()
    allocates the arena once and streams each tensor through one small reusable scratch: vectors are read
    in place, weights a few NR-row panels at a time (read -> NaN/Inf count -> pack into their slice). So the
    raw weights never exist in full next to the packed ones, and no big temporary is allocated and freed
    (glibc would keep such freed memory: its mmap threshold grows with every freed block).
    Peak while loading: the arena (the float32 weights, rows padded to NR) + a scratch of ~1 MiB."""
    _scratch_floats = 1 << 18  # 1 MiB: a few panels of the largest k, stays in L2 between read and pack

    def __init__(self, isa, reader):
        self.isa, self.reader = isa, reader
        self.entries = []  # (offset, floats, names, k or None for a vector)
        self.floats = 0
        self.arena = None

    def _add(self, floats, names, k):
        self.entries.append((self.floats, floats, names, k))
        self.floats += -(-floats // 16) * 16  # next entry 64-byte aligned
        return len(self.entries) - 1

    def vector(self, *names):
        """Handle of the named tensors' values, flattened and concatenated (float32 1-D)."""
        return self._add(sum(_size(self.reader.shape(n)) for n in names), names, None)

    def packed(self, *names):
        """Handle of the Linear weights [n_i, k...] stacked by rows and packed for the ISA (1-D)."""
        k = _size(self.reader.shape(names[0])[1:])
        n = sum(self.reader.shape(name)[0] for name in names)
        return self._add(_vitc.gemm_packed_floats(self.isa, n, k), names, k)

    def load(self):
        """Allocate the arena and fill it. The filling (pread -> count -> pack) is one thread: two filling
        threads measured no faster (memory traffic: page cache -> scratch -> arena). What a second core
        does take over is mapping the arena's pages in (_start_populating): ViT-B here loads in 0.17-0.18 s
        that way, 0.23 s with MAP_POPULATE up front, and 0.14 s to over 0.8 s with a transparent-huge-page
        arena (fast on a quiet machine, slow whenever other processes run)."""
        self.arena = _mapped_floats(max(1, self.floats))
        self.reader.will_need()
        self.filled = 0  # floats of the arena done, read by the populating thread
        helper = _start_populating(self.arena, self)
        try:
            self._fill(self.entries)
        finally:
            self.filled = self.floats  # stops the helper
            if helper is not None:
                helper.join()

    def _fill(self, entries):
        scratch = None
        for offset, floats, names, k in entries:
            self.filled = offset
            dst = self.arena[offset:offset + floats]
            if k is None:
                for name in names:
                    rows, cols = _rows_cols(self.reader.shape(name))
                    self.reader.read_rows(name, 0, dst[:rows * cols].reshape(rows, cols))
                    dst = dst[rows * cols:]
                continue
            if scratch is None:
                scratch = _mapped_floats(self._scratch_floats)
            self._load_packed(names, k, dst, scratch)

    def _load_packed(self, names, k, dst, scratch):
        isa = self.isa
        nr = _vitc.gemm_packed_floats(isa, 1, k) // k
        chunk = max(1, len(scratch) // (k * nr)) * nr  # rows per pass: whole NR-row panels
        if chunk * k > len(scratch):  # one panel of a very wide k exceeds the default scratch
            scratch = _mapped_floats(chunk * k)
        segments = [(name, self.reader.shape(name)[0]) for name in names]
        n = sum(rows for _, rows in segments)
        for r0 in range(0, n, chunk):
            rows = min(chunk, n - r0)
            buf = scratch[:rows * k].reshape(rows, k)
            seg0, filled = 0, 0  # fill buf rows from the segment(s) covering [r0, r0 + rows)
            for name, seg_rows in segments:
                lo, hi = max(r0, seg0), min(r0 + rows, seg0 + seg_rows)
                if lo < hi:
                    self.reader.read_rows(name, lo - seg0, buf[filled:filled + hi - lo])
                    filled += hi - lo
                seg0 += seg_rows
            _vitc.gemm_pack_nk(isa, buf, out=dst[r0 * k:r0 * k + _vitc.gemm_packed_floats(isa, rows, k)])

    def array(self, handle):
        """The loaded array of a handle (None for None): a view into the arena, which it keeps alive."""
        if handle is None:
            return None
        offset, floats = self.entries[handle][:2]
        return self.arena[offset:offset + floats]


def _return_free_heap():
    """Give the free pages inside glibc's heap back to the OS once loading is done (malloc_trim). Import and
    load leave freed blocks there (parsed JSON, compiled modules, small temporaries) that would otherwise
    stay resident for the life of the process. A no-op where the C library has no malloc_trim."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes
            _malloc_trim = ctypes.CDLL(None).malloc_trim
            _malloc_trim.argtypes, _malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        except (ImportError, OSError, AttributeError, TypeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


_POPULATE_STEP = 4 << 20  # bytes per madvise call of the populating thread


def _start_populating(arena, progress):
    """Map the arena's pages in from a second thread while this one streams the weights in: from the end
    backwards (MADV_POPULATE_WRITE, through ctypes so the GIL is released), until it meets the filling
    thread at progress.filled. Returns the thread, or None (not Linux >= 5.14 / glibc, or a numpy arena)."""
    global _madvise
    if _madvise is None:
        try:
            import ctypes
            _madvise = ctypes.CDLL(None, use_errno=True).madvise
            _madvise.argtypes, _madvise.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
        except (ImportError, OSError, AttributeError, TypeError):
            _madvise = False
    if not _madvise or isinstance(_root_base(arena), np.ndarray) or arena.nbytes < 2 * _POPULATE_STEP:
        return None
    base, nbytes = arena.ctypes.data, arena.nbytes

    def populate():
        end = nbytes
        while end > 0:
            start = max(0, end - _POPULATE_STEP) // mmap.PAGESIZE * mmap.PAGESIZE
            if start <= 4 * progress.filled + _POPULATE_STEP:  # met the filling thread
                return
            if _madvise(base + start, end - start, 23) != 0:  # MADV_POPULATE_WRITE; EINVAL before 5.14
                return
            end = start

    thread = threading.Thread(target=populate, name="vitc-populate", daemon=True)
    thread.start()
    return thread


_madvise = None


def _root_base(a):
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a


def _mapped_floats(count):
    """A page-aligned float32 array in a private anonymous mapping of its own, unmapped when the last view
    of it dies. Outside malloc: freeing a malloc'd block this large would raise glibc's mmap threshold to
    its size, and later blocks below that size (the forward's buffers) would stay in the heap once freed.
    Falls back to numpy where the platform has no such mmap flags."""
    if not (hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS")):
        return _vitc.aligned_empty(count)
    try:
        mapping = mmap.mmap(-1, 4 * count, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError as exc:
        raise MemoryError(f"cannot map {4 * count} bytes for the model's weights: {exc}") from None
    return np.frombuffer(mapping, np.float32)


def _size(shape):
    size = 1
    for s in shape:
        size *= int(s)
    return size


def _rows_cols(shape):
    """A tensor seen as 2-D [shape[0], prod(shape[1:])] (a scalar as [1, 1])."""
    return (int(shape[0]), _size(shape[1:])) if len(shape) else (1, 1)


class _Buffers:
    """Activations for one (batch, channels, height, width, threads): allocated once, reused per call."""

    def __init__(self, model, batch, height, width, nthreads):
        cfg = model.config
        ph, pw = cfg.patch_hw
        self.grid = (height // ph, width // pw)
        n_patches = self.grid[0] * self.grid[1]
        self.seq = n_patches + model._num_prefix
        d = cfg.hidden_size
        self.hidden = _vitc.aligned_empty((batch * self.seq, d))
        # One workspace: the embedding's im2col runs before any layer, so it lives at the start of the layers'
        # workspace instead of in a buffer of its own.
        embed_floats = _vitc.embed_workspace_floats(batch, cfg.num_channels, height, width, ph, pw)
        layer_floats = model._layers[0].workspace_floats(nthreads, batch, self.seq)
        self.layer_ws = _vitc.aligned_empty(max(1, layer_floats, embed_floats))
        self.embed_ws = self.layer_ws[:max(1, embed_floats)]


class _ViTBase:
    """Shared loading and encoder forward of ViTModel and ViTForImageClassification.

    Thread safety: a model object may be called from any number of Python threads. Its calls run one at a
    time (a per-model lock guards the activation buffers it reuses between calls); each call returns fresh
    output arrays that no later call writes. The GIL is released inside the C kernels, so different model
    objects run in parallel, and concurrent calls split the cores between them (runtime.compute_threads).
    For parallel throughput on one checkpoint, load one model object per thread."""
    _with_head = False
    _max_cached_shapes = 2

    def __init__(self, config, reader, isa=None, threads=None, source="checkpoint"):
        if not isinstance(config, ViTConfig):
            raise TypeError(f"config must be a vitc.ViTConfig, got {type(config).__name__}")
        self.config = config
        self._isa = runtime.isa_code(isa)
        self.threads = None if threads is None else runtime.resolve_threads(threads)
        plan = _WeightPlan(config, reader.keys(), reader.shape, self._with_head, source)
        self._num_prefix = plan.num_prefix
        self._num_parameters = plan.num_parameters
        counter = guards.NonfiniteCounter(reader)  # NaN/Inf per tensor, counted on the raw copies
        self._load(plan, counter)
        self._nonfinite = dict(counter.nonfinite)
        self._buffers = OrderedDict()
        self._positions = {}
        self._lock = threading.Lock()
        self._call_threads = 1
        self._profile = None
        self._image_processor = None
        self.name_or_path = source
        self.preprocessor_config_path = None

    # ---- loading ---------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision=None, cache_dir=None, token=None, threads=None,
                        isa=None, local_files_only=False):
        """Load a checkpoint from a local folder (config.json + model.safetensors or its sharded index) or a
        Hub repo id. threads=None follows vitc.get_num_threads() at each call; isa=None uses vitc.get_isa()."""
        files = resolve_checkpoint(path_or_repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                   local_files_only=local_files_only)
        config = ViTConfig.from_json_file(files.config)
        with CheckpointReader(files.weights) as reader:
            model = cls(config, reader, isa=isa, threads=threads, source=files.weights)
        model.name_or_path = str(path_or_repo_id)
        model.preprocessor_config_path = files.preprocessor
        return model

    def _load(self, plan, reader):
        cfg, isa, base = self.config, self._isa, plan.base
        weights = _WeightArena(isa, reader)
        vec, packed = weights.vector, weights.packed
        cls = vec(base("embeddings.cls_token"))
        dist = vec(base("embeddings.distillation_token")) if plan.num_prefix == 2 else None
        pos = vec(base("embeddings.position_embeddings"))
        patch_w = packed(base("embeddings.patch_embeddings.projection.weight"))
        patch_b = vec(base("embeddings.patch_embeddings.projection.bias"))
        layers = []
        for i in range(cfg.num_hidden_layers):
            p = f"encoder.layer.{i}."
            qkv = [base(p + f"attention.attention.{x}") for x in ("query", "key", "value")]
            layers.append({
                "ln1_g": vec(base(p + "layernorm_before.weight")), "ln1_b": vec(base(p + "layernorm_before.bias")),
                "ln2_g": vec(base(p + "layernorm_after.weight")), "ln2_b": vec(base(p + "layernorm_after.bias")),
                "qkv_w": packed(*(n + ".weight" for n in qkv)),  # rows query | key | value: one [3D, D] GEMM
                "qkv_b": vec(*(n + ".bias" for n in qkv)) if cfg.qkv_bias else None,
                "proj_w": packed(base(p + "attention.output.dense.weight")),
                "proj_b": vec(base(p + "attention.output.dense.bias")),
                "fc1_w": packed(base(p + "intermediate.dense.weight")),
                "fc1_b": vec(base(p + "intermediate.dense.bias")),
                "fc2_w": packed(base(p + "output.dense.weight")),
                "fc2_b": vec(base(p + "output.dense.bias")),
            })
        ln = (vec(base("layernorm.weight")), vec(base("layernorm.bias")))
        pooler = (packed(base("pooler.dense.weight")), vec(base("pooler.dense.bias"))) if plan.has_pooler else None
        heads = []
        if self._with_head and cfg.num_labels > 0:
            names = ("classifier",) if plan.head == "classifier" else ("cls_classifier", "distillation_classifier")
            heads = [(packed(n + ".weight"), vec(n + ".bias")) for n in names]

        weights.load()
        _return_free_heap()
        get = weights.array
        self._cls, self._dist = get(cls), get(dist)
        self._pos = get(pos).reshape(-1, cfg.hidden_size)
        self._patch_w, self._patch_b = get(patch_w), get(patch_b)
        act = cfg.hidden_act_code
        self._layers = [_vitc.EncoderLayer(isa, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size,
                                           float(cfg.layer_norm_eps), act, {k: get(v) for k, v in arrays.items()})
                        for arrays in layers]
        self._ln_g, self._ln_b = get(ln[0]), get(ln[1])
        self._pooler = (get(pooler[0]), get(pooler[1])) if pooler else None
        self._heads = [(get(w), get(b)) for w, b in heads]
        self._head_kind = plan.head

    # ---- properties ------------------------------------------------------------------------------------
    @property
    def isa(self):
        """Name of the ISA this model's weights are packed for."""
        return runtime.ISA_NAMES[self._isa]

    def num_parameters(self):
        """Parameters loaded (as transformers' model.num_parameters() for the same modules)."""
        return self._num_parameters

    def nonfinite_weights(self):
        """{checkpoint tensor name: number of NaN/Inf values} for the tensors that have any (empty when all
        weights are finite). Counted while loading; such a model loads and runs, its outputs may be NaN."""
        return dict(self._nonfinite)

    def check_weights(self):
        """Raise ValueError naming the tensors that hold NaN/Inf values; return self when all are finite."""
        if self._nonfinite:
            raise ValueError(f"{self.name_or_path}: non-finite weights (NaN/Inf count per tensor): "
                             f"{_short([f'{k}: {v}' for k, v in sorted(self._nonfinite.items())])}")
        return self

    def eval(self):
        """Inference only; kept so code written for transformers runs unchanged."""
        return self

    def _nthreads(self):
        """Threads of the call in progress (set under self._lock by _calling)."""
        return self._call_threads

    @contextlib.contextmanager
    def _calling(self):
        """One forward at a time per model (its buffers are shared); the cores are split between models
        that run concurrently in other Python threads (runtime.compute_threads)."""
        wanted = self.threads if self.threads is not None else runtime.get_num_threads()
        with runtime.compute_threads(wanted) as nthreads, self._lock:
            self._call_threads = nthreads
            prof = self._profile
            if prof is None:
                yield
                return
            prof.call_start = time.perf_counter()
            yield
            prof.end_call(time.perf_counter() - prof.call_start)

    @contextlib.contextmanager
    def profile(self):
        """Time the phases of the forward calls made inside the block:
        `with model.profile() as prof: model(x)`, then prof.table() / prof.as_dict()."""
        prof = ForwardProfile()
        with self._lock:
            self._profile = prof
        try:
            yield prof
        finally:
            with self._lock:
                self._profile = None

    # ---- images in, labels and embeddings out --------------------------------------------------------
    @property
    def image_processor(self):
        """The checkpoint's ViTImageProcessor (its preprocessor_config.json, else ViT defaults at the model's
        image size), made on first use."""
        if self._image_processor is None:
            from .image_processing import ViTImageProcessor
            if self.preprocessor_config_path:
                self._image_processor = ViTImageProcessor.from_pretrained(self.preprocessor_config_path)
            else:
                h, w = self.config.image_hw
                self._image_processor = ViTImageProcessor(size={"height": h, "width": w})
        return self._image_processor

    def embed(self, images, all_tokens=False):
        """CLS embeddings [N, D] of images (paths, PIL images, HWC uint8 arrays, lists of them, or a
        [N, C, H, W] float array): the pooler output where the checkpoint has a pooler, else the CLS token of
        the final LayerNorm output. all_tokens=True: every token, [N, S, D]."""
        from .pipeline import pixel_values_for
        out = self.encode(pixel_values_for(self, images))
        if all_tokens:
            return out.last_hidden_state
        return out.pooler_output if out.pooler_output is not None else out.last_hidden_state[:, 0]

    def encode(self, pixel_values, output_hidden_states=False, output_attentions=False,
               interpolate_pos_encoding=False, return_dict=True):
        """The encoder's outputs (ViTModel's forward): last_hidden_state after the final LayerNorm,
        pooler_output (None without pooler weights), hidden_states and attentions on request."""
        interpolate = bool(interpolate_pos_encoding)
        x = self._check_pixels(pixel_values, interpolate, output_hidden_states, output_attentions)
        with self._calling():
            bufs, hidden_states, attentions = self._encode(x, output_hidden_states, output_attentions, interpolate)
            b, s, d = x.shape[0], bufs.seq, self.config.hidden_size
            last = np.empty((b, s, d), np.float32)
            self._layernorm(bufs.hidden, last.reshape(b * s, d))
            pooled = None
            if self._pooler is not None:
                pooled = self._linear(last[:, 0], self._pooler, self.config.pooler_output_size,
                                      act=self.config.pooler_act_code)
        out = BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=pooled,
                                         hidden_states=hidden_states, attentions=attentions)
        return out if return_dict else out.to_tuple()

    # ---- forward ---------------------------------------------------------------------------------------
    def _check_pixels(self, pixel_values, interpolate, hidden_states=False, attentions=False):
        x = np.asarray(pixel_values)
        if x.dtype.kind not in "fiu":
            raise TypeError(f"pixel_values must be a real-valued array, got dtype {x.dtype}")
        if x.ndim != 4:
            raise ValueError(f"pixel_values must be 4-D [batch, channels, height, width], got {x.ndim}-D shape "
                             f"{tuple(x.shape)}" + (" (add a batch axis: x[None])" if x.ndim == 3 else ""))
        b, c, h, w = x.shape
        cfg = self.config
        if c != cfg.num_channels:
            raise ValueError(f"pixel_values has {c} channels, expected {cfg.num_channels} (config.num_channels); "
                             f"shape {tuple(x.shape)} must be [batch, channels, height, width]")
        if b == 0:
            raise ValueError("pixel_values has an empty batch")
        (ih, iw), (ph, pw) = cfg.image_hw, cfg.patch_hw
        if not interpolate and (h, w) != (ih, iw):
            raise ValueError(f"Input image size ({h}*{w}) doesn't match model ({ih}*{iw}); pass "
                             f"interpolate_pos_encoding=True to run at another resolution.")
        if h < ph or w < pw:
            raise ValueError(f"Input image size ({h}*{w}) is smaller than one patch ({ph}*{pw})")
        # a huge batch is a MemoryError here, before the float32 copy or any buffer is allocated
        guards.check_forward_memory(self, x.shape, x.dtype, x.dtype == np.float32 and x.flags.c_contiguous,
                                    bool(hidden_states), bool(attentions))
        return np.ascontiguousarray(x, dtype=np.float32)

    def _get_buffers(self, batch, height, width, nthreads):
        key = (batch, height, width, nthreads)
        bufs = self._buffers.get(key)
        if bufs is None:
            bufs = _Buffers(self, batch, height, width, nthreads)
            self._buffers[key] = bufs
            while len(self._buffers) > self._max_cached_shapes:
                self._buffers.popitem(last=False)
        else:
            self._buffers.move_to_end(key)
        return bufs

    def _get_positions(self, grid, height, width, interpolate):
        """(prefix rows [num_prefix, D], patch position rows [patches, D]) for the C embedding, cached per
        grid: prefix = CLS (+ DeiT's distillation token) plus their position rows."""
        key = (grid, height == width) if interpolate else None
        entry = self._positions.get(key)
        if entry is None:
            pos = self._pos
            if interpolate:
                pos = interpolate_pos_encoding(pos, self._num_prefix, self.config.grid, grid, height == width)
            tokens = [self._cls] + ([self._dist] if self._num_prefix == 2 else [])
            prefix = np.stack([tok + pos[i] for i, tok in enumerate(tokens)]).astype(np.float32, copy=False)
            entry = (prefix, np.ascontiguousarray(pos[self._num_prefix:]))
            if len(self._positions) >= 8:
                self._positions.clear()
            self._positions[key] = entry
        return entry

    def _encode(self, x, output_hidden_states, output_attentions, interpolate):
        """Embeddings and every encoder layer into the shape's hidden buffer [N*S, D] (before the final LN).
        Returns (buffers, hidden_states tuple or None, attentions tuple or None)."""
        cfg, isa, nt = self.config, self._isa, self._nthreads()
        b, _, h, w = x.shape
        ph, pw = cfg.patch_hw
        bufs = self._get_buffers(b, h, w, nt)
        s, d = bufs.seq, cfg.hidden_size
        prefix, patch_pos = self._get_positions(bufs.grid, h, w, interpolate)
        hidden3 = bufs.hidden.reshape(b, s, d)
        _vitc.embed(isa, nt, x, ph, pw, self._patch_w, self._patch_b, prefix, patch_pos, hidden3, bufs.embed_ws)
        prof = self._profile
        if prof is not None:
            prof.add("embeddings", time.perf_counter() - prof.call_start)
        hidden_states = [hidden3.copy()] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer in self._layers:
            probs = np.empty((b, cfg.num_attention_heads, s, s), np.float32) if output_attentions else None
            layer.forward(nt, bufs.hidden, b, bufs.layer_ws, probs, None if prof is None else prof.layer_seconds)
            if output_hidden_states:
                hidden_states.append(hidden3.copy())
            if output_attentions:
                attentions.append(probs)
        return (bufs, tuple(hidden_states) if hidden_states is not None else None,
                tuple(attentions) if attentions is not None else None)

    def _layernorm(self, x, out):
        return _vitc.layernorm(self._isa, self._nthreads(), x, self._ln_g, self._ln_b,
                               float(self.config.layer_norm_eps), out)

    def _linear(self, a, weight, n, act=0):
        out = np.empty((a.shape[0], n), np.float32)
        return _vitc.gemm(self._isa, self._nthreads(), a, weight[0], n, out, bias=weight[1], act=act)

    def __repr__(self):
        c = self.config
        return (f"{type(self).__name__}(model_type={c.model_type!r}, hidden_size={c.hidden_size}, "
                f"layers={c.num_hidden_layers}, heads={c.num_attention_heads}, image_size={c.image_size}, "
                f"patch_size={c.patch_size}, isa={self.isa!r})")


class ViTModel(_ViTBase):
    """The bare encoder: last_hidden_state after the final LayerNorm, pooler_output when the checkpoint has
    a pooler (tanh(dense(CLS)) by default), else None. Thread-safe: see _ViTBase (calls on one object are
    serialized)."""
    _with_head = False

    __call__ = _ViTBase.encode
    forward = __call__

    @property
    def has_pooler(self):
        return self._pooler is not None


class ViTForImageClassification(_ViTBase):
    """Encoder + linear classifier on the CLS token after the final LayerNorm (DeiT with teacher: the mean
    of the CLS and distillation heads). Thread-safe: see _ViTBase (calls on one object are serialized)."""
    _with_head = True

    def __call__(self, pixel_values, output_hidden_states=False, output_attentions=False,
                 interpolate_pos_encoding=False, return_dict=True):
        interpolate = bool(interpolate_pos_encoding)
        x = self._check_pixels(pixel_values, interpolate, output_hidden_states, output_attentions)
        cfg = self.config
        with self._calling():
            bufs, hidden_states, attentions = self._encode(x, output_hidden_states, output_attentions, interpolate)
            b, s = x.shape[0], bufs.seq
            # only the prefix rows feed the heads: LayerNorm just those ([N, D] views with row stride S*D)
            tokens = [self._layernorm(bufs.hidden[t::s], np.empty((b, cfg.hidden_size), np.float32))
                      for t in range(2 if self._head_kind == "teacher" else 1)]
            if cfg.num_labels == 0:  # nn.Identity head(s)
                logits = tokens
            else:
                logits = [self._linear(tok, head, cfg.num_labels) for tok, head in zip(tokens, self._heads)]
        if self._head_kind == "teacher":
            out = DeiTImageClassifierOutput(logits=(logits[0] + logits[1]) / 2, cls_logits=logits[0],
                                            distillation_logits=logits[1], hidden_states=hidden_states,
                                            attentions=attentions)
        else:
            out = ImageClassifierOutput(logits=logits[0], hidden_states=hidden_states, attentions=attentions)
        return out if return_dict else out.to_tuple()

    forward = __call__

    def classify(self, images, top_k=5):
        """Per image a list of (label, score), best first, with the checkpoint's id2label: softmax scores,
        or sigmoid for multi-label checkpoints (as transformers' image-classification pipeline)."""
        from .pipeline import classify
        return classify(self, images, top_k)


# DeiT names, for code written against transformers' DeiT classes
DeiTModel = ViTModel
DeiTForImageClassification = ViTForImageClassification
DeiTForImageClassificationWithTeacher = ViTForImageClassification
