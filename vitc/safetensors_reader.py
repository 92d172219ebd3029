"""A strict reader for .safetensors files (one file or a sharded set), returning float32 numpy arrays.

Why our own: numpy has no bfloat16, and checkpoint files come from the internet, so every header field is
checked against the file before any tensor is touched:
  8-byte little-endian header length N | N bytes of JSON | data area
  JSON: {"__metadata__": {str: str}, name: {"dtype": str, "shape": [int], "data_offsets": [begin, end]}}
  offsets are relative to the data area; tensors tile it exactly (like the reference implementation).
Tensors are read with pread into fresh arrays (get_float32), or row ranges into the caller's buffer
(read_rows: the model loader streams each weight through one small scratch), and converted (F16, BF16,
F64 -> F32). Not mmap on purpose: a file truncated or rewritten by another process after the header was
checked makes a mapped read die with SIGBUS; a pread just comes back short, which is reported as a
SafetensorsError.

Hostile-input rules (docs/robustness.md lists each case): every size is checked in Python ints (no overflow),
at most MAX_NDIM dimensions and a product below 2**63 bytes, the header is at most MAX_HEADER_BYTES and must be
a JSON object (deep nesting / giant numbers are errors, not crashes), only regular files are opened (a
directory or a FIFO is refused before open() could block).
"""
import json
import mmap
import os
import stat
import sys
import threading

import numpy as np

# dtype -> (itemsize, numpy dtype or None for bf16, convertible to float32)
DTYPES = {
    "F64": (8, np.dtype("<f8"), True),
    "F32": (4, np.dtype("<f4"), True),
    "F16": (2, np.dtype("<f2"), True),
    "BF16": (2, None, True),
    "F8_E4M3": (1, None, False), "F8_E5M2": (1, None, False),
    "I64": (8, None, False), "I32": (4, None, False), "I16": (2, None, False), "I8": (1, None, False),
    "U64": (8, None, False), "U32": (4, None, False), "U16": (2, None, False), "U8": (1, None, False),
    "BOOL": (1, None, False),
}
# dtypes read_raw_rows hands over as stored (converted weights): safetensors dtype -> numpy dtype
RAW_DTYPES = {"I8": np.dtype("i1"), "BF16": np.dtype("<u2")}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's limit
MAX_NDIM = 32           # numpy 1.x's limit (2.x allows 64); checkpoints use <= 4
MAX_TENSOR_BYTES = 2 ** 63 - 1  # sizes must fit an int64 / size_t, as the reference's checked_mul


class SafetensorsError(ValueError):
    """A malformed or unsupported safetensors file (the message names the file and tensor)."""


class TensorInfo:
    __slots__ = ("name", "dtype", "shape", "begin", "end", "path")

    def __init__(self, name, dtype, shape, begin, end, path):
        self.name, self.dtype, self.shape, self.begin, self.end, self.path = name, dtype, shape, begin, end, path

    def __repr__(self):
        return f"TensorInfo({self.name!r}, {self.dtype}, {list(self.shape)})"


def _clip(value, limit=200):
    """repr of a hostile header value, cut short so an error message stays readable."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _no_duplicates(pairs):
    d = {}
    for key, value in pairs:
        if key in d:
            raise SafetensorsError(f"duplicate key {key!r} in the JSON header")
        d[key] = value
    return d


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_header(path, raw, data_size):
    """{name: TensorInfo} from the JSON header bytes, validated against the data area size."""
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except SafetensorsError as exc:
        raise SafetensorsError(f"{path}: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsError(f"{path}: the header is not valid UTF-8 JSON ({exc})") from None
    except RecursionError:
        raise SafetensorsError(f"{path}: the header JSON is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than sys.get_int_max_str_digits() digits
        raise SafetensorsError(f"{path}: the header JSON has an unreadable value ({exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: the header must be a JSON object, got {type(header).__name__}")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")
    tensors = {}
    for name, entry in header.items():
        where = f"{path}: tensor {name!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{where}: expected an object with exactly dtype, shape, data_offsets, "
                                   f"got {_clip(entry)}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise SafetensorsError(f"{where}: unknown dtype {_clip(dtype)}")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise SafetensorsError(f"{where}: shape must be a list of non-negative ints, got {_clip(shape)}")
        if len(shape) > MAX_NDIM:
            raise SafetensorsError(f"{where}: {len(shape)} dimensions, at most {MAX_NDIM} are supported")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise SafetensorsError(f"{where}: data_offsets {_clip(offsets)} are not inside the data area of "
                                   f"{data_size} bytes")
        # sizes as size_t / numpy's intp: the product of the non-zero dimensions must stay below 2**63 bytes
        # (numpy refuses a (0, 2**62, 2**62) array too), so no later size computation can overflow
        span = DTYPES[dtype][0]
        for s in shape:
            span *= max(s, 1)
            if span > MAX_TENSOR_BYTES:
                raise SafetensorsError(f"{where}: shape {shape} x {dtype} overflows 2**63 bytes")
        nbytes = 0 if 0 in shape else span
        if offsets[1] - offsets[0] != nbytes:
            raise SafetensorsError(f"{where}: shape {shape} x {dtype} needs {nbytes} bytes but data_offsets "
                                   f"{offsets} span {offsets[1] - offsets[0]}")
        tensors[name] = TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1], path)
    # the tensors must tile the data area: no overlap (aliasing tricks), no hole, nothing after the end
    end = 0
    for info in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if info.begin != end:
            what = "overlaps the previous tensor" if info.begin < end else f"leaves a gap at byte {end}"
            raise SafetensorsError(f"{path}: tensor {info.name!r} at bytes [{info.begin}, {info.end}) {what}")
        end = info.end
    if end != data_size:
        raise SafetensorsError(f"{path}: tensors cover {end} bytes of a {data_size}-byte data area")
    return meta, tensors


class SafetensorsFile:
    """One .safetensors file: validated header on open, tensors read on demand."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if isinstance(self.path, bytes):
            self.path = os.fsdecode(self.path)
        _check_regular_file(self.path)
        try:
            self._file = open(self.path, "rb")
        except PermissionError:
            raise PermissionError(f"{self.path}: permission denied reading the safetensors file") from None
        try:
            st = os.fstat(self._file.fileno())
            if not stat.S_ISREG(st.st_mode):  # replaced between the check and open()
                raise SafetensorsError(f"{self.path}: not a regular file")
            size = st.st_size
            if size < 8:
                raise SafetensorsError(f"{self.path}: {size} bytes is too short for a safetensors file")
            n = int.from_bytes(self._file.read(8), "little")
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise SafetensorsError(f"{self.path}: header length {n} does not fit in a file of {size} bytes")
            raw = self._file.read(n)
            if len(raw) != n:
                raise SafetensorsError(f"{self.path}: the file ended inside its {n}-byte header")
            self._data_start = 8 + n
            self.metadata, self.tensors = _parse_header(self.path, raw, size - self._data_start)
        except BaseException:
            self._file.close()
            raise

    def keys(self):
        return list(self.tensors)

    def get_float32(self, name):
        """A fresh C-contiguous float32 array of tensor `name` (F32/F16/BF16/F64)."""
        info = self.tensors.get(name)
        if info is None:
            raise KeyError(f"{self.path}: no tensor {name!r}")
        if self._file.closed:
            raise ValueError(f"{self.path}: read after close()")
        return _read_float32(self._file.fileno(), self._data_start, info)

    def read_rows(self, name, row0, out, scratch=None):
        """Rows [row0, row0 + len(out)) of tensor `name`, seen as [shape[0], prod(shape[1:])], into `out`
        (float32 C-contiguous [rows, cols]); nothing is allocated for F32, and F16/BF16/F64 go through
        `scratch` (a _RawScratch, grown as needed) instead of a fresh array per tensor."""
        info = self.tensors.get(name)
        if info is None:
            raise KeyError(f"{self.path}: no tensor {name!r}")
        if self._file.closed:
            raise ValueError(f"{self.path}: read after close()")
        _read_rows_float32(self._file.fileno(), self._data_start, info, row0, out, scratch or _RawScratch())

    def read_raw_rows(self, name, row0, out):
        """Rows of tensor `name` as stored, without conversion, into `out` (C-contiguous [rows, cols] of the
        RAW_DTYPES type of the tensor's dtype: I8 -> int8, BF16 -> uint16 bits): converted weights that
        vitc's save_pretrained wrote."""
        info = self.tensors.get(name)
        if info is None:
            raise KeyError(f"{self.path}: no tensor {name!r}")
        if self._file.closed:
            raise ValueError(f"{self.path}: read after close()")
        want = RAW_DTYPES.get(info.dtype)
        if want is None or (out.dtype.kind, out.dtype.itemsize) != (want.kind, want.itemsize):
            raise SafetensorsError(f"{self.path}: tensor {name!r} has dtype {info.dtype}, expected "
                                   f"{_raw_name(out.dtype)} (read as {out.dtype})")
        rows, cols = _rows_cols(info)
        if (not out.flags.c_contiguous or out.ndim != 2 or out.shape[1] != cols
                or not 0 <= row0 <= row0 + out.shape[0] <= rows):
            raise ValueError(f"read_raw_rows {name!r}: out {out.shape} does not fit rows [{row0}, "
                             f"{row0 + out.shape[0]}) of a [{rows}, {cols}] tensor")
        if out.size:
            _pread_exact(self._file.fileno(), out, self._data_start + info.begin + row0 * cols * want.itemsize, info)
            if sys.byteorder == "big" and want.itemsize > 1:  # the file is little-endian
                out.byteswap(inplace=True)

    def will_need(self):
        if hasattr(os, "posix_fadvise") and not self._file.closed:
            try:
                os.posix_fadvise(self._file.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:  # advice only
                pass

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _RawScratch:
    """One reusable byte buffer for the file bytes of non-F32 tensors (converted from there to float32)."""

    def __init__(self):
        self._buf = np.empty(0, np.uint8)

    def get(self, nbytes, dtype):
        if self._buf.size < nbytes:
            self._buf = _private_bytes(nbytes)
        return self._buf[:nbytes].view(dtype)


def _raw_name(dtype):
    return next((k for k, v in RAW_DTYPES.items() if (v.kind, v.itemsize) == (dtype.kind, dtype.itemsize)), "?")


def _private_bytes(nbytes):
    """A uint8 buffer in an anonymous mapping of its own where the platform has one: not malloc'd, so
    freeing it does not raise glibc's mmap threshold (which would keep later freed blocks resident)."""
    if nbytes >= 1 << 17 and hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS"):
        return np.frombuffer(mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), np.uint8)
    return np.empty(nbytes, np.uint8)


def _rows_cols(info):
    rows = info.shape[0] if info.shape else 1
    cols = 1
    for s in info.shape[1:]:
        cols *= s
    return rows, cols


def _read_rows_float32(fd, data_start, info, row0, out, scratch):
    itemsize, np_dtype, convertible = DTYPES[info.dtype]
    if not convertible:
        raise SafetensorsError(f"{info.path}: tensor {info.name!r} has dtype {info.dtype}; expected a float "
                               f"dtype (F32, F16, BF16, F64)")
    rows, cols = _rows_cols(info)
    if (out.dtype != np.float32 or not out.flags.c_contiguous or out.ndim != 2 or out.shape[1] != cols
            or not 0 <= row0 <= row0 + out.shape[0] <= rows):
        raise ValueError(f"read_rows {info.name!r}: out {out.dtype} {out.shape} does not fit rows "
                         f"[{row0}, {row0 + out.shape[0]}) of a [{rows}, {cols}] tensor")
    count = out.size
    if count == 0:
        return
    offset = data_start + info.begin + row0 * cols * itemsize
    if info.dtype == "F32" and np.dtype("<f4") == np.float32:
        _pread_exact(fd, out, offset, info)
    elif info.dtype == "BF16":  # bfloat16 is the top half of a float32
        bits = scratch.get(count * 2, "<u2")
        _pread_exact(fd, bits, offset, info)
        wide = out.reshape(-1).view(np.uint32)
        np.copyto(wide, bits)
        np.left_shift(wide, 16, out=wide)
    else:
        raw = scratch.get(count * itemsize, np_dtype if info.dtype != "F32" else "<f4")
        _pread_exact(fd, raw, offset, info)
        np.copyto(out.reshape(-1), raw, casting="unsafe")


def _check_regular_file(path):
    """A clear error for what open() would not give one for (or would block on, like a FIFO)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such safetensors file") from None
    except PermissionError:
        raise PermissionError(f"{path}: permission denied reading the safetensors file") from None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{path}: is a directory, expected a .safetensors file")
    if not stat.S_ISREG(st.st_mode):
        raise SafetensorsError(f"{path}: not a regular file (a device, FIFO or socket)")


def _read_float32(fd, data_start, info):
    itemsize, np_dtype, convertible = DTYPES[info.dtype]
    if not convertible:
        raise SafetensorsError(f"{info.path}: tensor {info.name!r} has dtype {info.dtype}; expected a float "
                               f"dtype (F32, F16, BF16, F64)")
    count = (info.end - info.begin) // itemsize
    if count == 0:
        return np.empty(0, np.float32).reshape(info.shape)
    if info.dtype == "F32":
        out = np.empty(count, "<f4")
        _pread_exact(fd, out, data_start + info.begin, info)
        if out.dtype != np.float32:  # big-endian host: the file is little-endian
            out = out.astype(np.float32)
    elif info.dtype == "BF16":  # bfloat16 is the top half of a float32
        bits = np.empty(count, "<u2")
        _pread_exact(fd, bits, data_start + info.begin, info)
        out = (bits.astype(np.uint32) << 16).view(np.float32)
    else:
        raw = np.empty(count, np_dtype)
        _pread_exact(fd, raw, data_start + info.begin, info)
        out = raw.astype(np.float32)
    return out.reshape(info.shape)


def _pread_exact(fd, array, offset, info):
    """Fill `array` from the file at `offset`; a short read (file shrunk since it was opened) is an error."""
    view = memoryview(array).cast("B")
    done = 0
    while done < len(view):
        if hasattr(os, "preadv"):
            got = os.preadv(fd, [view[done:]], offset + done)
        else:  # no preadv (Windows, old macOS): pread copies once more
            chunk = os.pread(fd, min(len(view) - done, 1 << 30), offset + done)
            got = len(chunk)
            view[done:done + got] = chunk
        if got == 0:
            raise SafetensorsError(f"{info.path}: tensor {info.name!r}: the file ended at byte "
                                   f"{offset + done} (truncated while open?)")
        done += got


class CheckpointReader:
    """All tensors of a checkpoint: one .safetensors file or the shards listed by a
    model.safetensors.index.json ({"weight_map": {tensor: shard file name}})."""

    def __init__(self, paths_or_index):
        self.files = []
        self.tensors = {}  # name -> SafetensorsFile
        self._scratch = threading.local()  # .raw: the thread's _RawScratch of read_rows, made on first use
        try:
            if isinstance(paths_or_index, (str, os.PathLike)) and os.fspath(paths_or_index).endswith(".json"):
                self._open_index(os.fspath(paths_or_index))
            else:
                paths = [paths_or_index] if isinstance(paths_or_index, (str, os.PathLike)) else paths_or_index
                for p in paths:
                    self._add(SafetensorsFile(p))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def shard_names(index_path):
        """Shard file names of an index, validated (plain names inside the index's folder)."""
        try:
            with open(index_path, encoding="utf-8") as f:
                index = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SafetensorsError(f"{index_path}: not valid JSON ({exc})") from None
        except RecursionError:
            raise SafetensorsError(f"{index_path}: the JSON is nested too deeply") from None
        except IsADirectoryError:
            raise IsADirectoryError(f"{index_path}: is a directory, expected a safetensors index file") from None
        except ValueError as exc:
            raise SafetensorsError(f"{index_path}: unreadable JSON value ({exc})") from None
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
            raise SafetensorsError(f"{index_path}: expected a non-empty \"weight_map\" object of tensor name -> "
                                   f"shard file name")
        for shard in set(weight_map.values()):
            if os.path.basename(shard) != shard or shard in ("", ".", "..") or not shard.endswith(".safetensors"):
                raise SafetensorsError(f"{index_path}: shard {shard!r} must be a plain *.safetensors file name "
                                       f"in the same folder")
        return weight_map, sorted(set(weight_map.values()))

    def _open_index(self, index_path):
        weight_map, shards = self.shard_names(index_path)
        folder = os.path.dirname(index_path)
        for shard in shards:
            path = os.path.join(folder, shard)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"shard {shard} listed in {index_path} is missing")
            self._add(SafetensorsFile(path))
        for name, shard in weight_map.items():
            f = self.tensors.get(name)
            if f is None or os.path.basename(f.path) != shard:
                raise SafetensorsError(f"{index_path}: tensor {name!r} is listed in {shard} but that shard "
                                       f"does not hold it")
        for name, f in self.tensors.items():
            if name not in weight_map:
                raise SafetensorsError(f"{f.path}: tensor {name!r} is not listed in {index_path}")

    def _add(self, f):
        self.files.append(f)
        for name in f.tensors:
            if name in self.tensors:
                raise SafetensorsError(f"tensor {name!r} is in both {self.tensors[name].path} and {f.path}")
            self.tensors[name] = f

    def keys(self):
        return list(self.tensors)

    def info(self, name):
        return self.tensors[name].tensors[name]

    def shape(self, name):
        return self.info(name).shape

    def get_float32(self, name):
        return self.tensors[name].get_float32(name)

    def read_rows(self, name, row0, out):
        """Rows of tensor `name` into `out` (see SafetensorsFile.read_rows); one raw scratch for all files per
        thread (pread has no shared file position, so threads may read at once)."""
        scratch = getattr(self._scratch, "raw", None)
        if scratch is None:
            scratch = self._scratch.raw = _RawScratch()
        self.tensors[name].read_rows(name, row0, out, scratch)

    def read_raw_rows(self, name, row0, out):
        """Rows of tensor `name` as stored (see SafetensorsFile.read_raw_rows)."""
        self.tensors[name].read_raw_rows(name, row0, out)

    def metadata(self, key):
        """The __metadata__ value of `key` that every file of the checkpoint has (None when none has it); a
        ValueError when the files disagree."""
        values = {f.metadata.get(key) for f in self.files}
        if len(values) > 1:
            raise SafetensorsError(f"the checkpoint's files disagree on metadata {key!r}: {sorted(map(str, values))}")
        return values.pop() if values else None

    def will_need(self):
        """Ask the OS to start reading every file now (a cold page cache: the disk streams while we pack)."""
        for f in self.files:
            f.will_need()

    def close(self):
        self._scratch = threading.local()
        for f in self.files:
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
