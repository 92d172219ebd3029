"""The AMX kernel set: offered exactly when the CPU has the tile instructions and the OS grants the tile state,
chosen for bf16/int8 models then, and usable from pool threads and forked children (the kernel's permission
is the process's). Its arithmetic is covered with every other kernel set in test_gemm_bf16.py and
test_gemm_int8.py (float64 references, awkward shapes, int8 sums bit-exact and equal across sets)."""
import ctypes
import os
import platform
import sys

import numpy as np
import pytest

import vitc
from vitc import _vitc, modeling, runtime

sys.path.insert(0, os.path.dirname(__file__))
from lowp_reference import BF16, INT8, rand, run  # noqa: E402

AMX = _vitc.kernel_set_code("amx")
AMX_FEATURES = {"amx_tile", "amx_bf16", "amx_int8"}
has_amx = AMX in _vitc.kernel_sets(INT8)
needs_amx = pytest.mark.skipif(not has_amx, reason="this CPU (or OS) has no AMX")


def kernel_supports_tile_data():
    """Whether this Linux kernel can hand out the AMX tile state (5.16+): asked independently of vitc with
    arch_prctl(ARCH_GET_XCOMP_SUPP), whose mask has XFEATURE_XTILEDATA (bit 18) when it can."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    sys_arch_prctl, arch_get_xcomp_supp, xtiledata = 158, 0x1021, 18
    mask = ctypes.c_uint64(0)
    if libc.syscall(sys_arch_prctl, arch_get_xcomp_supp, ctypes.byref(mask)) != 0:
        return False
    return bool(mask.value >> xtiledata & 1)


def test_offered_exactly_when_the_cpu_has_it():
    cpu_has = AMX_FEATURES <= set(runtime.cpu_features()) and runtime.get_isa() == "avx512"
    # vitc asks Linux for the tile state; an older kernel (or another OS) refuses, and then AMX stays off
    assert has_amx == (cpu_has and kernel_supports_tile_data())
    assert (AMX in _vitc.kernel_sets(BF16)) == has_amx
    assert AMX not in _vitc.kernel_sets(_vitc.dtype_code("float32"))  # float32 stays on the FMA kernels


@needs_amx
@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_models_choose_it_and_config_shows_it(dtype):
    code = _vitc.dtype_code(dtype)
    assert modeling.lowp_kernel_set(runtime.ISA_NAMES.index("avx512"), code) == AMX
    assert f"{dtype}: amx" in runtime.config()["kernel_sets"]
    model = vitc.ViTForImageClassification.from_pretrained("vitc-digits", dtype=dtype)
    assert model.kernel_set == "amx"


@needs_amx
@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_forked_child_computes_the_same():
    rng = np.random.default_rng(3)
    a, w = rand(rng, 70, 200), rand(rng, 45, 200)
    want = {d: run(AMX, d, a, w, nthreads=2) for d in (BF16, INT8)}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: same results on the pool it rebuilds, then report without running atexit handlers
        ok = all(np.array_equal(run(AMX, d, a, w, nthreads=2), want[d]) for d in (BF16, INT8))
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    got = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert got == b"1"


def bf16_bits(x):
    """float32 -> bf16 bits: nearest even, a NaN kept quiet (its top bits | 0x40), as csrc/gemm_lowp_convert.h
    defines it."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, (u >> 16) | 0x40, rounded).astype(np.uint16)


@needs_amx
@pytest.mark.parametrize("m,k", [(1, 1), (17, 33), (37, 65), (45, 300), (33, 768)])
def test_packed_a_is_bf16_bits_in_16_row_tiles(m, k):
    """AMX's bf16 A conversion (vectorized, straight into the tiles): every element's bits are the
    nearest-even rounding (ties, NaN, infinities, overflow to infinity, subnormals, -0 included), rows in
    16-row tiles of 32 k values a row, and the padding rows and k values past k zero."""
    rng = np.random.default_rng(30 + m)
    a = rand(rng, m, k)
    specials = np.array([0x3F808000, 0x3F818000, 0x7FC00001, 0xFF800001, 0x7F800000, 0xFF800000, 0x80000000,
                         0x7F7FFFFF, 0x00000001, 0x00008000, 0x00018000, 0x807FFFFF], np.uint32).view(np.float32)
    flat = a.reshape(-1)
    flat[rng.choice(flat.size, min(flat.size, 3 * specials.size), replace=False)] = np.resize(specials, min(
        flat.size, 3 * specials.size))
    apack = np.full(_vitc.gemm_packed_a_bytes(AMX, BF16, m, k), 0xAB, np.uint8)
    for r0, r1 in [(0, min(m, 5)), (min(m, 5), m)]:
        if r1 > r0:
            _vitc.gemm_pack_a(AMX, BF16, a[r0:r1], apack, row0=r0)
    kq = apack.size // 4 // (-(-m // 32) * 32)
    tiles = apack.view(np.uint16).reshape(-1, kq // 16, 16, 32).transpose(0, 2, 1, 3).reshape(-1, 2 * kq)
    want = np.zeros_like(tiles)
    want[:m, :k] = bf16_bits(a)
    assert np.array_equal(tiles, want)
