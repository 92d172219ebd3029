"""The weight arena: every weight of a model in one aligned float32 mapping, streamed in from the checkpoint
(vectors in place, Linear weights packed for the ISA a few panels at a time), and the memory helpers it
needs (private mappings, a second thread mapping pages in, malloc_trim after loading).
Measurements behind these choices: docs/performance.md ("Loading")."""
import mmap
import threading

import numpy as np

from . import _vitc


class WeightArena:
    """Every weight of a model in ONE 64-byte aligned float32 buffer, filled straight from the checkpoint.

    First the loader declares what it needs (vector(): tensors' values back to back, e.g. the Q|K|V biases;
    packed(): a Linear weight, or several stacked by rows, in the GEMM's packed layout), then load()
    allocates the arena once and streams each tensor through one small reusable scratch: vectors are read
    in place, weights a few NR-row panels at a time (read -> NaN/Inf count -> pack into their slice). So the
    raw weights never exist in full next to the packed ones, and no big temporary is allocated and freed
    (glibc would keep such freed memory: its mmap threshold grows with every freed block).
    Peak while loading: the arena (the float32 weights, rows padded to NR) + a scratch of ~1 MiB."""
    _scratch_floats = 1 << 18  # 1 MiB: a few panels of the largest k, stays in L2 between read and pack

    def __init__(self, isa, reader, lowp=None):
        self.isa, self.reader = isa, reader
        self.lowp = lowp  # (kernel set, dtype) codes of packed(lowp=True) weights: bf16 / int8
        self.entries = []  # (offset, floats, sources, k or None for a vector, scale name or None)
        self.floats = 0
        self.arena = None
        self._scales = {}  # scale tensor name -> its float32 values, read once
        self._lowp_weights = {}  # arena offset -> PackedWeight of a lowp entry
        self._lowp_scratch = None

    def _add(self, floats, sources, k, scale):
        self.entries.append((self.floats, floats, sources, k, scale))
        self.floats += -(-floats // 16) * 16  # next entry 64-byte aligned
        return len(self.entries) - 1

    def _rows(self, source):
        """(name, first row, rows) of a source: a tensor name, or (name, row0, row1) for a row range of it
        (e.g. the key rows of a packed in_proj weight)."""
        if isinstance(source, str):
            return source, 0, _rows_cols(self.reader.shape(source))[0]
        name, r0, r1 = source
        return name, r0, r1 - r0

    def vector(self, *sources, scale=None):
        """Handle of the named tensors' values (or row ranges), flattened and concatenated (float32 1-D);
        scale: name of a vector multiplying them elementwise (a layer scale folded into a bias)."""
        floats = 0
        for source in sources:
            name, _, rows = self._rows(source)
            floats += rows * _rows_cols(self.reader.shape(name))[1]
        return self._add(floats, sources, None, scale)

    def packed(self, *sources, scale=None, lowp=False):
        """Handle of the Linear weights [n_i, k...] (or row ranges of them) stacked by rows and packed for the
        ISA (1-D); scale: name of an [n] vector multiplying row r by scale[r] before packing (a layer scale
        folded into the projection that precedes it). lowp: packed for self.lowp instead (bf16 / int8: its
        array() is a PackedWeight over its slice of the arena)."""
        k = _size(self.reader.shape(self._rows(sources[0])[0])[1:])
        n = sum(self._rows(source)[2] for source in sources)
        if lowp and self.lowp is not None:
            nbytes = _vitc.gemm_packed_bytes(*self.lowp, n, k)
            return self._add(-(-nbytes // 4), sources, (k, n), scale)
        return self._add(_vitc.gemm_packed_floats(self.isa, n, k), sources, k, scale)

    def _scale(self, name):
        values = self._scales.get(name)
        if values is None:
            values = np.empty(_rows_cols(self.reader.shape(name)), np.float32).reshape(-1, 1)
            self.reader.read_rows(name, 0, values.reshape(_rows_cols(self.reader.shape(name))))
            self._scales[name] = values
        return values

    def load(self):
        """Allocate the arena and fill it: one thread fills (pread -> count -> pack), a second maps the
        arena's pages in (_start_populating); why: docs/performance.md ("Loading")."""
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
        for offset, floats, sources, k, scale in entries:
            self.filled = offset
            dst = self.arena[offset:offset + floats]
            if k is None:
                for source in sources:
                    name, r0, rows = self._rows(source)
                    cols = _rows_cols(self.reader.shape(name))[1]
                    self.reader.read_rows(name, r0, dst[:rows * cols].reshape(rows, cols))
                    dst = dst[rows * cols:]
                if scale is not None:
                    self.arena[offset:offset + floats] *= self._scale(scale)[:, 0]
                continue
            if scratch is None:
                scratch = _mapped_floats(self._scratch_floats)
            if isinstance(k, tuple):
                self._lowp_weights[offset] = self._load_lowp(sources, k, dst, scratch,
                                                             None if scale is None else self._scale(scale))
                continue
            self._load_packed(sources, k, dst, scratch, None if scale is None else self._scale(scale))

    def _load_packed(self, sources, k, dst, scratch, scale):
        isa = self.isa
        nr = _vitc.gemm_packed_floats(isa, 1, k) // k
        for r0, buf in self._row_blocks(sources, k, scratch, scale, nr):  # whole NR-row panels
            rows = buf.shape[0]
            _vitc.gemm_pack_nk(isa, buf, out=dst[r0 * k:r0 * k + _vitc.gemm_packed_floats(isa, rows, k)])

    def _row_blocks(self, sources, k, scratch, scale, multiple=1):
        """(r0, rows [r0, r0 + len(rows)) as float32 [len, k]) of the sources stacked by rows, a scratch-full
        (a multiple of `multiple` rows) at a time, each row times scale[row] when there is a scale."""
        chunk = max(1, len(scratch) // (k * multiple)) * multiple
        if chunk * k > len(scratch):  # one block of a very wide k exceeds the default scratch
            scratch = _mapped_floats(chunk * k)
        segments = [self._rows(source) for source in sources]
        n = sum(rows for _, _, rows in segments)
        for r0 in range(0, n, chunk):
            rows = min(chunk, n - r0)
            buf = scratch[:rows * k].reshape(rows, k)
            seg0, filled = 0, 0  # fill buf rows from the segment(s) covering [r0, r0 + rows)
            for name, first, seg_rows in segments:
                lo, hi = max(r0, seg0), min(r0 + rows, seg0 + seg_rows)
                if lo < hi:
                    self.reader.read_rows(name, first + lo - seg0, buf[filled:filled + hi - lo])
                    filled += hi - lo
                seg0 += seg_rows
            if scale is not None:
                buf *= scale[r0:r0 + rows]
            yield r0, buf

    def _load_lowp(self, sources, k_n, dst, scratch, scale):
        """Convert a Linear weight into the GEMM's bf16 / int8 form, a few float32 rows at a time through
        the panel scratch, into a logical-form scratch (n x k bf16 bits or s8: a few MiB, reused by every such
        weight; mapped, as the panel scratch, so no freed heap block raises glibc's mmap threshold), then pack
        it into dst: the same bytes as packing the whole float32 weight, with a quarter (int8) or half (bf16)
        of its size as the peak scratch. A weight stored converted (vitc's save_pretrained: I8 + scales, or
        BF16 for a bf16 model) is read as stored into the logical scratch: no float32 copy of it at all."""
        k, n = k_n
        kset, dtype = self.lowp
        nbytes = _vitc.gemm_packed_bytes(kset, dtype, n, k)
        if self._lowp_scratch is None or len(self._lowp_scratch) < -(-n * k // 2):
            self._lowp_scratch = _mapped_floats(-(-n * k // 2))  # n x k uint16 at most
        converted = self._read_converted(sources, n, k, dtype, scale)
        if converted is None:
            converted = self._convert(sources, n, k, dtype, scratch, scale)
        return _vitc.gemm_pack_converted(kset, dtype, *converted, out=dst.view(np.uint8)[:nbytes])

    def _logical(self, n, k, dtype):
        """The logical-form scratch [n, k] (uint16 bf16 bits / int8) and, for int8, fresh scales [n]."""
        logical = _vitc.LOGICAL_DTYPES[dtype]
        q = self._lowp_scratch.view(np.uint8)[:n * k * logical.itemsize].view(logical).reshape(n, k)
        return q, (np.empty(n, np.float32) if dtype == _vitc.dtype_code("int8") else None)

    def _convert(self, sources, n, k, dtype, scratch, scale):
        q, scales = self._logical(n, k, dtype)
        for r0, buf in self._row_blocks(sources, k, scratch, scale):
            rows = buf.shape[0]
            _vitc.gemm_convert_weight(dtype, buf, q[r0:r0 + rows], None if scales is None else scales[r0:r0 + rows])
        return q, scales

    def _read_converted(self, sources, n, k, dtype, scale):
        """(q, scales) of a weight whose sources are all stored in the model's dtype (I8 / BF16), else None
        (float sources: the float32 path). A layer scale must be ones there (save_pretrained folds it)."""
        from .saving import SCALE_SUFFIX, STORED
        want = STORED[_vitc.DTYPES[dtype]]
        names = [self._rows(source)[0] for source in sources]
        kinds = {self.reader.info(name).dtype for name in names}
        if kinds != {want}:
            if "I8" in kinds:
                raise ValueError(f"{', '.join(names)}: int8 weights mixed with {sorted(kinds - {'I8'})} ones, or "
                                 f"loaded as {_vitc.DTYPES[dtype]}")
            return None
        if scale is not None and not np.all(scale == 1):
            if want == "I8":
                raise ValueError(f"{', '.join(names)}: a layer scale other than ones cannot fold into int8 weights "
                                 f"stored converted; vitc's save_pretrained writes them folded (scale ones)")
            return None  # bf16 bits times a layer scale: the float32 path rounds the product
        q, scales = self._logical(n, k, dtype)
        r0 = 0
        for source in sources:
            name, first, rows = self._rows(source)
            self.reader.read_raw_rows(name, first, q[r0:r0 + rows])
            if scales is not None:
                if name + SCALE_SUFFIX not in self.reader.tensors:  # not a folder vitc saved
                    raise ValueError(f"int8 tensor {name!r} has no per-channel scales {name + SCALE_SUFFIX!r}")
                self.reader.read_rows(name + SCALE_SUFFIX, first, scales[r0:r0 + rows].reshape(rows, 1))
            r0 += rows
        return q, scales

    def array(self, handle):
        """The loaded array of a handle (None for None): a view into the arena, which it keeps alive."""
        if handle is None:
            return None
        offset, floats = self.entries[handle][:2]
        if offset in self._lowp_weights:
            return self._lowp_weights[offset]
        return self.arena[offset:offset + floats]


def return_free_heap():
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


