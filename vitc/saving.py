"""save_pretrained: a model's weights as it holds them (bf16 / int8 encoder Linear weights already converted),
and loading such a folder back without converting again.

What a saved folder holds (README, "Reduced precision"):
  model.safetensors   transformers' tensor names; the encoder layers' Linear weights as the model computes
                      with them: BF16 tensors (bfloat16), or I8 tensors plus `<name>_scale` float32 [out]
                      (int8, symmetric per output channel: W[j] = scale[j] * q[j]); everything else float32
                      as loaded. __metadata__: format "pt", vitc_dtype, vitc_scheme, vitc_version.
  config.json         the model's config plus "vitc_dtype" / "vitc_scheme" (model_type and architectures kept:
                      transformers reads it; it loads bf16 weights but not the I8 ones).
  preprocessor_config.json (image towers), tokenizer files (text towers, copied).
A layer scale folded into a converted weight at load (DINOv2's lambda1) is saved folded: the weight and
bias hold lambda·W and lambda·b and the layer scale is saved as ones (the same function in transformers).

Loading (from_pretrained): the folder's metadata gives the dtype (dtype=None takes it); a different dtype
is a ValueError (converting converted weights again would not be exact). Converted weights are read as
stored and packed directly (_vitc.gemm_pack_converted): no float32 copy of them exists at any time, and the
packed bytes equal those packed from the float32 original. Every file is written to a temporary folder
next to the target and moved into place only when complete.
"""
import json
import os

import numpy as np

from . import _vitc

META_DTYPE, META_SCHEME, META_VERSION = "vitc_dtype", "vitc_scheme", "vitc_version"
SCHEMES = {"float32": "vitc-float32", "bfloat16": "vitc-bf16-round-nearest-even",
           "int8": "vitc-int8-per-channel-symmetric"}
SCALE_SUFFIX = "_scale"  # I8 tensor `name` has its float32 per-output-channel scales in `name + SCALE_SUFFIX`
STORED = {"bfloat16": "BF16", "int8": "I8"}  # safetensors dtype of converted weights
_ITEMSIZE = {"F32": 4, "BF16": 2, "I8": 1}
_NUMPY = {"F32": np.dtype("<f4"), "BF16": np.dtype("<u2"), "I8": np.dtype("i1")}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "added_tokens.json", "spiece.model", "tokenizer.model", "sentencepiece.bpe.model")


# ---- loading ----------------------------------------------------------------------------------------------
def resolve_dtype(reader, dtype, source):
    """The dtype a model loads with: `dtype`, or (None) the dtype a vitc-saved checkpoint holds, else float32.
    A vitc-saved bf16 / int8 checkpoint loads only as that dtype."""
    saved = reader.metadata(META_DTYPE) if hasattr(reader, "metadata") else None
    if saved is not None and saved not in _vitc.DTYPES:
        raise ValueError(f"{source}: metadata {META_DTYPE} = {saved!r} is not one of {', '.join(_vitc.DTYPES)}")
    if dtype is None:
        return saved or "float32"
    name = _vitc.DTYPES[_vitc.dtype_code(dtype)]
    if saved in STORED and name != saved:
        raise ValueError(f"{source}: this checkpoint holds {saved} weights saved by vitc; it loads only as "
                         f"dtype={saved!r} (or dtype=None). For {name}, load the float32 checkpoint it was saved "
                         f"from: converting converted weights again would not give what that checkpoint gives")
    return name


def converted_keys(reader, source):
    """Names of the `_scale` tensors of an int8 folder's I8 weights (hidden from the families' tables, which
    name only transformers' tensors), after checking each I8 weight has one of the right shape. Other
    checkpoints: none (an I8 tensor there fails when it is read, as any non-float tensor)."""
    if not hasattr(reader, "metadata") or reader.metadata(META_DTYPE) != "int8":
        return set()
    scales, keys = set(), set(reader.keys())
    for name in keys:
        info = reader.info(name)
        if info.dtype != "I8":
            continue
        scale = name + SCALE_SUFFIX
        if len(info.shape) != 2:
            raise ValueError(f"{source}: int8 tensor {name!r} has shape {list(info.shape)}; only 2-D Linear "
                             f"weights are stored as int8")
        if scale not in keys:
            raise ValueError(f"{source}: int8 tensor {name!r} has no per-channel scales {scale!r}")
        got = reader.info(scale)
        if got.dtype != "F32" or tuple(got.shape) != (info.shape[0],):
            raise ValueError(f"{source}: {scale!r} is {got.dtype} {list(got.shape)}, expected F32 "
                             f"[{info.shape[0]}] (one scale per output channel of {name!r})")
        scales.add(scale)
    return scales


# ---- saving -----------------------------------------------------------------------------------------------
def weight_files(reader):
    """(path, size, mtime) of each file a model was loaded from: save_pretrained re-reads the float32
    tensors there, and refuses when a file changed since."""
    out = []
    for f in getattr(reader, "files", ()):
        st = os.stat(f.path)
        out.append((f.path, st.st_size, st.st_mtime_ns))
    return out


def _open_source(files, what):
    from .safetensors_reader import CheckpointReader
    for path, size, mtime in files:
        try:
            st = os.stat(path)
        except OSError:
            raise FileNotFoundError(f"{what}: {path}, which the model was loaded from, is gone; save_pretrained "
                                    f"re-reads the float32 tensors there") from None
        if (st.st_size, st.st_mtime_ns) != (size, mtime):
            raise ValueError(f"{what}: {path} changed since the model was loaded; load it again before saving")
    return CheckpointReader([p for p, _, _ in files])


class _Tensor:
    __slots__ = ("dtype", "shape", "make")

    def __init__(self, dtype, shape, make):
        self.dtype, self.shape, self.make = dtype, tuple(int(s) for s in shape), make


def tower_tensors(model, reader):
    """{name: _Tensor} of one tower (a _ViTBase): the plan's tensors from the source as float32, the encoder
    layers' Linear weights unpacked from the model (bf16 / int8), folded layer scales as described above."""
    plan = model._weight_plan
    out = {name: _Tensor("F32", shape, lambda name=name: reader.get_float32(name))
           for name, shape in plan.expected.items()}
    if model.dtype == "float32":
        return out
    stored, cache = STORED[model.dtype], {}

    def unpacked(pw):
        if cache.get("pw") is not pw:  # the sources of one weight are written one after another
            cache["pw"], cache["qs"] = pw, pw.unpack()
        return cache["qs"]

    for i, layer in enumerate(model._layers):
        folded = set()
        for p in plan.layer_params:
            if not p.present(plan.config) or p.field not in layer.weights:
                continue
            pw, r0 = layer.weights[p.field], 0
            for source in p.sources(plan.prefix, i):
                if not isinstance(source, str):
                    raise NotImplementedError(f"{source[0]}: a row range of a converted weight cannot be saved")
                shape = plan.expected[source]
                rows = shape[0]
                out[source] = _Tensor(stored, shape, lambda pw=pw, r0=r0, rows=rows, shape=shape:
                                      unpacked(pw)[0][r0:r0 + rows].reshape(shape))
                if stored == "I8":
                    out[source + SCALE_SUFFIX] = _Tensor("F32", (rows,), lambda pw=pw, r0=r0, rows=rows:
                                                         unpacked(pw)[1][r0:r0 + rows])
                r0 += rows
            if p.scale is not None:
                folded.add(plan.prefix + p.scale.format(i=i))
        for p in plan.layer_params:  # biases of the folded layer scales: lambda * b (as the loader computes)
            scale = None if p.scale is None else plan.prefix + p.scale.format(i=i)
            if p.present(plan.config) and scale in folded and p.field not in layer.weights:
                for source in p.sources(plan.prefix, i):
                    out[source] = _Tensor("F32", plan.expected[source], lambda s=source, sc=scale:
                                          reader.get_float32(s) * reader.get_float32(sc).reshape(-1))
        for scale in folded:
            out[scale] = _Tensor("F32", plan.expected[scale], lambda shape=plan.expected[scale]:
                                 np.ones(shape, np.float32))
    return out


def write_safetensors(path, tensors, metadata):
    """A .safetensors file of {name: _Tensor}, each tensor made and written in turn (never all in memory)."""
    header, offset = {"__metadata__": metadata}, 0
    for name in sorted(tensors):
        t = tensors[name]
        nbytes = int(np.prod(t.shape, dtype=np.int64)) * _ITEMSIZE[t.dtype]
        header[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data area starts 8-byte aligned, as the reference writer does
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for name in sorted(tensors):
            t = tensors[name]
            array = np.ascontiguousarray(t.make(), dtype=_NUMPY[t.dtype])
            if array.size != int(np.prod(t.shape, dtype=np.int64)):
                raise ValueError(f"{name}: made an array of shape {array.shape}, declared {t.shape}")
            f.write(memoryview(array).cast("B"))
        f.flush()
        os.fsync(f.fileno())


def _config_dict(model, dtype):
    d = model.config.to_dict()
    d[META_DTYPE], d[META_SCHEME] = dtype, SCHEMES[dtype]
    return d


def _version():
    from . import __version__
    return __version__


def save_pretrained(model, folder):
    """Write `model` (a _ViTBase tower or a _TwoTower model) into `folder`; returns the folder's path."""
    from .families.text import _TextTower
    towers = [model.vision_model, model.text_model] if hasattr(model, "vision_model") else [model]
    files = towers[0]._weight_files
    what = f"save_pretrained({folder!r})"
    if not files:
        raise ValueError(f"{what}: the model was not loaded from safetensors files, whose float32 tensors "
                         f"save_pretrained re-reads")
    with _open_source(files, what) as reader, staging(folder) as tmp:
        tensors = {}
        for tower in towers:
            tensors.update(tower_tensors(tower, reader))
        for name in getattr(model, "_scalars", ()):  # the two-tower model's logit_scale (, logit_bias)
            tensors[name] = _Tensor("F32", reader.shape(name), lambda name=name: reader.get_float32(name))
        meta = {"format": "pt", META_DTYPE: model.dtype, META_SCHEME: SCHEMES[model.dtype],
                META_VERSION: _version()}
        write_safetensors(os.path.join(tmp, "model.safetensors"), tensors, meta)
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(_config_dict(model, model.dtype), f, indent=2, sort_keys=True)
            f.write("\n")
        vision = [t for t in towers if not isinstance(t, _TextTower)]
        if vision:
            vision[0].image_processor.save_pretrained(tmp)
        if len(vision) < len(towers):
            import shutil
            source_folder = os.path.dirname(files[0][0])
            for name in TOKENIZER_FILES:
                if os.path.isfile(os.path.join(source_folder, name)):
                    shutil.copyfile(os.path.join(source_folder, name), os.path.join(tmp, name))
    return os.path.abspath(folder)


class staging:
    """`with staging(folder) as tmp:` files written into tmp appear in folder only if the block completes:
    a new folder is one rename; into an existing folder each file is moved in with os.replace (atomic per
    file). On an exception the temporary folder is removed and `folder` is untouched."""

    def __init__(self, folder):
        self.folder = os.path.abspath(os.fspath(folder))
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise NotADirectoryError(f"{self.folder}: exists and is not a folder")

    def __enter__(self):
        import tempfile
        parent = os.path.dirname(self.folder)
        os.makedirs(parent, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(self.folder)}.tmp-", dir=parent)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        import shutil
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        try:
            if not os.path.exists(self.folder):
                os.chmod(self.tmp, 0o777 & ~_umask())
                os.rename(self.tmp, self.folder)
                return False
            for name in sorted(os.listdir(self.tmp)):
                os.replace(os.path.join(self.tmp, name), os.path.join(self.folder, name))
            os.rmdir(self.tmp)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return False


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
