"""The installed build: threads on, the ISA paths this CPU has are compiled and selectable."""
import os
import platform
import subprocess
import sys

import pytest

import vitc
from vitc import _vitc, runtime


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def test_threads_are_enabled():
    assert _vitc.threads_enabled(), "vitc was built without pthreads: kernels would run on one core"
    assert _vitc.pool_probe(3) == 3, "a region of 3 threads did not run on 3 distinct threads"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_no_openmp_runtime_is_loaded(subprocess_env):
    """vitc's parallel regions run on its own pool (fork-safe): an OpenMP runtime loaded with the extension
    (GNU libgomp does not survive fork) would mean a kernel went back to OpenMP."""
    code = ("import numpy as np, vitc; from vitc import _vitc; "
            "m = vitc.ViTForImageClassification.from_pretrained('vitc-digits', threads=2); "
            "m(np.zeros((2, 3, 32, 32), np.float32)); print(open('/proc/self/maps').read())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                         env=subprocess_env, check=True).stdout
    assert not [line for line in out.splitlines() if "libgomp" in line or "libomp" in line or "libiomp" in line]


def test_scalar_always_available():
    assert "scalar" in runtime.available_isas()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 ISA paths")
def test_isa_paths_match_cpu_flags():
    flags = cpu_flags()
    avail = runtime.available_isas()
    assert ("avx2" in avail) == ({"avx2", "fma"} <= flags)
    assert ("avx512" in avail) == ({"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags)
    assert runtime.get_isa() == avail[-1] or os.environ.get("VITC_ISA")


def test_set_isa_roundtrip_and_errors():
    for name in runtime.available_isas():
        runtime.set_isa(name)
        assert runtime.get_isa() == name
    runtime.set_isa(None)
    with pytest.raises(ValueError, match="unknown ISA"):
        runtime.set_isa("sse9")


def test_vitc_isa_env_forces_path(subprocess_env):
    code = "import vitc; print(vitc.get_isa())"
    for name in runtime.available_isas():
        out = subprocess.run([sys.executable, "-c", code], env={**subprocess_env, "VITC_ISA": name},
                             capture_output=True, text=True, check=True, cwd="/")
        assert out.stdout.strip() == name


def test_threads_policy(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.default_num_threads() == 3
    runtime.set_num_threads(1)
    assert runtime.get_num_threads() == 1
    runtime.set_num_threads(None)
    with pytest.raises(ValueError):
        runtime.set_num_threads(0)


def test_show_config(capsys):
    vitc.show_config()
    out = capsys.readouterr().out
    assert "isa" in out and "thread_pool" in out and "threads" in out and "kernel_sets" in out


def test_concurrent_calls_share_the_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    with runtime.compute_threads(8) as alone:
        assert alone == 8  # a lone call gets what it asked for
        with runtime.compute_threads(8) as second:
            assert second == 2  # 4 cores over 2 concurrent calls
            with runtime.compute_threads(1) as third:
                assert third == 1
    with runtime.compute_threads(3) as again:
        assert again == 3


def test_runtime_needs_no_framework(subprocess_env, tmp_path):
    """Loading the bundled model and classifying an image imports neither torch nor transformers."""
    code = ("import sys, numpy as np, vitc; "
            "m = vitc.ViTForImageClassification.from_pretrained('vitc-digits'); "
            "m.classify(np.zeros((20, 20, 3), np.uint8)); "
            "bad = [n for n in ('torch', 'transformers', 'onnxruntime', 'tensorflow', 'jax') if n in sys.modules]; "
            "print(bad, type(vitc.ViTImageProcessor()).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env=subprocess_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "ViTImageProcessor"]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 ISA paths")
def test_simd_registers_only_in_isa_kernels():
    """A wheel built here must run on x86-64 CPUs without AVX: every function of the extension that touches
    ymm/zmm registers must be an AVX2/AVX-512 kernel, reachable only through the run-time dispatch."""
    import shutil
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils, installed with the C compiler that built vitc) is needed"
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", _vitc.__file__], capture_output=True,
                             text=True, check=True).stdout
    function, offenders = None, set()
    for line in listing.splitlines():
        if line.endswith(">:") and " <" in line:
            function = line.split(" <", 1)[1][:-2]
        elif ("%ymm" in line or "%zmm" in line) and function:
            if not any(isa in function.lower() for isa in ("avx2", "avx512", "amx")):
                offenders.add(function)
    assert not offenders, f"SIMD registers used outside the ISA kernels: {sorted(offenders)[:10]}"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 ISA paths")
def test_bf16_vnni_and_amx_instructions_only_in_their_kernels():
    """vdpbf16ps / vpdpbusd (AVX512_BF16 / AVX512_VNNI, which many AVX-512 CPUs lack) and the AMX tile
    instructions appear only in the functions of csrc/kernels/*_avx512bf16.c / *_avx512vnni.c / *_amx.c,
    which dispatch reaches after the cpuid (and, for AMX, the OS permission) check."""
    import shutil
    objdump = shutil.which("objdump")
    assert objdump, "objdump (binutils, installed with the C compiler that built vitc) is needed"
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", _vitc.__file__], capture_output=True,
                             text=True, check=True).stdout
    function, seen, offenders = None, set(), set()
    for line in listing.splitlines():
        if line.endswith(">:") and " <" in line:
            function = line.split(" <", 1)[1][:-2]
            continue
        for insn, where in (("vdpbf16ps", "avx512bf16"), ("vpdpbusd", "avx512vnni"), ("tdpbf16ps", "amx"),
                            ("tdpbusd", "amx"), ("ldtilecfg", "amx"), ("tileloadd", "amx")):
            if insn in line and function:
                seen.add(insn)
                if where not in function.lower():
                    offenders.add((insn, function))
    assert not offenders, f"BF16/VNNI/AMX instructions outside their kernels: {sorted(offenders)[:10]}"
    want = {"vdpbf16ps", "vpdpbusd", "tdpbf16ps", "tdpbusd", "ldtilecfg", "tileloadd"}
    assert seen == want, f"the bf16/int8 kernels are missing from the build: {sorted(want - seen)}"
