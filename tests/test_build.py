"""The installed build: OpenMP on, the ISA paths this CPU has are compiled and selectable."""
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


def test_openmp_is_enabled():
    """Unless the build was asked to leave it out (CI's VITC_OPENMP=0 job sets it for the test run too)."""
    if os.environ.get("VITC_OPENMP") == "0":
        assert not _vitc.openmp_enabled(), "VITC_OPENMP=0, yet this vitc was built with OpenMP"
    else:
        assert _vitc.openmp_enabled(), "vitc was built without OpenMP: kernels would run on one core"


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
    assert "isa" in out and "openmp" in out and "threads" in out


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
            if "avx2" not in function.lower() and "avx512" not in function.lower():
                offenders.add(function)
    assert not offenders, f"SIMD registers used outside the ISA kernels: {sorted(offenders)[:10]}"
