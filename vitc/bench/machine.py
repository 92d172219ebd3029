"""The machine a benchmark ran on: CPU, flags, load, versions, and this CPU's estimated peak per dtype.

The peak is an estimate from the CPU's description, not a measurement: frequency (cpufreq's maximum when
the OS exposes it, else the highest "cpu MHz" in /proc/cpuinfo) x FMA units x SIMD lanes x 2 flop per FMA,
per core, times the threads used. Turbo, AVX-512 down-clocking and shared cores move the real ceiling.
"""
import os
import platform
from importlib import metadata

# ratio of a dtype's peak MAC rate to float32 FMA on the same units, by the CPU flag that provides it
# (first match wins): AMX tiles (Sapphire Rapids: 1024 bf16 / 2048 int8 MACs per cycle vs 32 f32 FMAs),
# AVX512_BF16 dot products (2 bf16 pairs per f32 lane), VNNI (4 int8 pairs per f32 lane).
DTYPE_SPEEDUP = {
    "float32": [],
    "bfloat16": [("amx_bf16", 32), ("avx512_bf16", 2)],
    "int8": [("amx_int8", 64), ("avx512_vnni", 4), ("avx_vnni", 4)],
}


def _cpuinfo():
    """First processor's fields of /proc/cpuinfo (+ every 'cpu MHz'); {} off Linux."""
    fields, mhz = {}, []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "cpu MHz":
                    mhz.append(float(value))
                fields.setdefault(key, value)
    except (OSError, ValueError):
        pass
    fields["all MHz"] = mhz
    return fields


def cpu_flags():
    return set(_cpuinfo().get("flags", "").split())


def cpu_model():
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_frequency_ghz():
    """(GHz, where it came from) or (None, why not)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            return int(f.read()) / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    mhz = _cpuinfo()["all MHz"]
    if mhz:
        return max(mhz) / 1e3, "/proc/cpuinfo cpu MHz"
    return None, "no frequency reported by the OS"


def fma_flops_per_cycle(info=None):
    """(float32 flop per cycle per core, how): FMA units x lanes x 2. Zen 4 runs AVX-512 on two 256-bit
    FMA pipes; Intel server cores since Skylake-SP and Zen 5 have two 512-bit FMA units."""
    info = info or _cpuinfo()
    flags = set(info.get("flags", "").split())
    amd = info.get("vendor_id") == "AuthenticAMD"
    try:
        family = int(info.get("cpu family", "0"))
    except ValueError:
        family = 0
    if "avx512f" in flags and not (amd and family <= 0x19):
        return 2 * 16 * 2, "2 FMA units x 16 f32 lanes (AVX-512) x 2"
    if "avx512f" in flags or ("avx2" in flags and "fma" in flags):
        return 2 * 8 * 2, "2 FMA units x 8 f32 lanes (256-bit) x 2"
    return 2 * 4, "4 f32 lanes (SSE) x (1 mul + 1 add)"


def estimated_peak(dtype="float32", threads=1):
    """{'gflops', 'per_core_gflops', 'how'} of this CPU for dtype at `threads` cores, or None if unknown."""
    ghz, freq_src = cpu_frequency_ghz()
    if ghz is None:
        return None
    info = _cpuinfo()
    per_cycle, units = fma_flops_per_cycle(info)
    flags = set(info.get("flags", "").split())
    speedup, via = 1, "no faster path for it: f32 rate"
    for flag, factor in DTYPE_SPEEDUP[dtype]:
        if flag in flags:
            speedup, via = factor, f"x{factor} ({flag})"
            break
    per_core = ghz * per_cycle * speedup
    how = f"estimated: {ghz:.2f} GHz ({freq_src}) x {units}"
    if dtype != "float32":
        how += f"; {dtype} {via}"
    return {"gflops": per_core * threads, "per_core_gflops": per_core, "threads": threads, "how": how}


def package_version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _vitc_version():
    from .. import __version__

    return __version__


def usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info():
    flags = cpu_flags()
    wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"]
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    return {
        "cpu": cpu_model(),
        "cpu_flags": [w for w in wanted if w in flags],
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "memory_bytes": memory,
        "loadavg": list(os.getloadavg()),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {"vitc": _vitc_version(), **{d: package_version(d) for d in
                     ("numpy", "torch", "transformers", "onnx", "onnxruntime", "openvino")}},
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "VITC_"))},
    }
