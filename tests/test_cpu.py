"""CPU feature bits (csrc/cpu.c) against the kernel's own view, and the ISA choice built on them."""
import platform

import pytest

from vitc import _vitc, runtime


def test_feature_names_are_the_header_bits():
    assert _vitc.CPU_FEATURES == ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                                  "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
    assert _vitc.cpu_features() >> len(_vitc.CPU_FEATURES) == 0


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"),
                    reason="/proc/cpuinfo flags are Linux x86-64's")
def test_features_match_proc_cpuinfo():
    """Linux lists a flag only when the CPU has it and the kernel enabled its state: the same rule."""
    with open("/proc/cpuinfo") as f:
        flags = next(line for line in f if line.startswith("flags")).split(":", 1)[1].split()
    assert set(runtime.cpu_features()) == set(_vitc.CPU_FEATURES) & set(flags)


def test_isa_supported_follows_the_features():
    mask = _vitc.cpu_features()
    for code, name in enumerate(_vitc.ISA_NAMES):
        need = _vitc.isa_required_features(code)
        assert _vitc.isa_supported(code) == (_vitc.isa_compiled(code) and mask & need == need), name
    assert _vitc.isa_required_features(0) == 0
    with pytest.raises(ValueError, match="unknown ISA code"):
        _vitc.isa_required_features(len(_vitc.ISA_NAMES))


def test_config_lists_features():
    listed = runtime.config()["cpu_features"]
    assert listed == (" ".join(runtime.cpu_features()) or "none")
