"""Process-wide choices: which ISA the kernels run (detected once, or forced) and how many threads.

- ISA: the best the CPU and OS support (cpuid + xgetbv in csrc/cpu.c), unless VITC_ISA=scalar|avx2|avx512
  or set_isa() forces one. A forced ISA the CPU cannot run is an error, never a SIGILL.
- Threads: OMP_NUM_THREADS if set, else the CPUs this process may use (affinity and cgroup quota);
  concurrent forward calls split the cores between them (compute_threads).
- fork(): a child gets only the forking thread. The C pool starts its own workers there (csrc/threadpool.c);
  here, locks that another thread of the parent held (a model mid-forward) are released in the child and
  the count of running calls restarts at 0 (_after_fork_in_child).
"""
import contextlib
import math
import os
import threading
import weakref

from . import _vitc

ISA_NAMES = _vitc.ISA_NAMES
_forced_isa = None
_num_threads = None


def _isa_code(name):
    key = str(name).strip().lower()
    if key not in ISA_NAMES:
        raise ValueError(f"unknown ISA {name!r}: expected one of {', '.join(ISA_NAMES)}")
    code = ISA_NAMES.index(key)
    if not _vitc.isa_supported(code):
        why = "this CPU/OS cannot run it" if _vitc.isa_compiled(code) else "this build has no kernels for it"
        raise RuntimeError(f"ISA {key!r} was requested but {why}; available: {', '.join(available_isas())}")
    return code


def cpu_features():
    """Names of the CPU features this process may use (cpuid AND OS-enabled register state), e.g.
    ['avx2', 'fma', 'f16c', 'avx512f', ...], in the order of _vitc.CPU_FEATURES."""
    mask = _vitc.cpu_features()
    return [name for bit, name in enumerate(_vitc.CPU_FEATURES) if mask >> bit & 1]


def available_isas():
    """Names of the ISA paths this build and CPU can run, best last."""
    return [name for code, name in enumerate(ISA_NAMES) if _vitc.isa_supported(code)]


def get_isa():
    """Name of the ISA that newly loaded models and kernels use."""
    if _forced_isa is not None:
        return ISA_NAMES[_forced_isa]
    env = os.environ.get("VITC_ISA")
    if env:
        return ISA_NAMES[_isa_code(env)]
    return ISA_NAMES[_vitc.isa_best()]


def isa_code(name=None):
    """Kernel code of `name` (default: get_isa()), validated."""
    return _isa_code(get_isa() if name is None else name)


def set_isa(name):
    """Force an ISA for models loaded from now on (None: back to VITC_ISA / detection)."""
    global _forced_isa
    _forced_isa = None if name is None else _isa_code(name)


def _cpu_quota():
    """CPUs allowed by a cgroup v2 / v1 quota, or None."""
    for path, parse in (("/sys/fs/cgroup/cpu.max", lambda s: s.split()),
                        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", lambda s: [s.strip(), None])):
        try:
            with open(path) as f:
                quota, period = parse(f.read())
            if quota in ("max", "-1"):
                return None
            if period is None:
                with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                    period = f.read().strip()
            return max(1, math.floor(int(quota) / int(period)))
        except (OSError, ValueError):
            continue
    return None


def default_num_threads():
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    quota = _cpu_quota()
    return max(1, min(n, quota) if quota else n)


def get_num_threads():
    return _num_threads if _num_threads is not None else default_num_threads()


def set_num_threads(n):
    """Threads for kernels from now on (None: back to the default)."""
    global _num_threads
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"threads must be a positive int, got {n!r}")
    _num_threads = n


def resolve_threads(threads=None):
    if threads is None:
        return get_num_threads()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    return threads


_fork_locks = weakref.WeakSet()


def fork_safe_lock():
    """A threading.Lock that a fork child finds released: the thread holding it in the parent (e.g. one
    in the middle of a forward) does not exist in the child and would never release it."""
    lock = threading.Lock()
    _fork_locks.add(lock)
    return lock


_active_lock = fork_safe_lock()
_active_calls = 0


def _after_fork_in_child():
    global _active_calls
    _active_calls = 0  # the calls counted were other threads' (the forking thread is in os.fork)
    for lock in list(_fork_locks):
        if lock.locked():
            lock.release()  # a plain Lock may be released by any thread


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def compute_threads(requested):
    """Threads one forward call may use while it runs.

    Several Python threads running models at once share the cores instead of each starting
    `requested` threads (oversubscription makes everyone slower): k concurrent calls get
    max(1, cores // k) each, never more than requested.
    """
    global _active_calls
    with _active_lock:
        _active_calls += 1
        alone = _active_calls == 1
        share = max(1, default_num_threads() // _active_calls)
    try:
        yield requested if alone else max(1, min(requested, share))
    finally:
        with _active_lock:
            _active_calls -= 1


def config():
    """What this build and process run: a dict, also printed by show_config()."""
    try:
        isa = get_isa()
    except (RuntimeError, ValueError) as exc:
        isa = f"error: {exc}"
    return {
        "isa": isa,
        "isa_available": available_isas(),
        "cpu_features": " ".join(cpu_features()) or "none",
        "thread_pool": "vitc, pthreads" if _vitc.threads_enabled() else "none (one thread)",
        "threads": get_num_threads(),
        "kernel_sets": _lowp_kernel_sets(isa),
    }


def _lowp_kernel_sets(isa):
    """'bfloat16: amx (of scalar, ...); int8: ...': the kernel set a model of each reduced dtype packs its
    Linear layers for under this ISA, and those this CPU and build can run."""
    from .modeling import lowp_kernel_set  # modeling imports this module
    if isa not in ISA_NAMES:
        return "none (no usable ISA)"
    parts = []
    for dtype in ("bfloat16", "int8"):
        code = _vitc.dtype_code(dtype)
        chosen = _vitc.KERNEL_SETS[lowp_kernel_set(ISA_NAMES.index(isa), code)]
        available = ", ".join(_vitc.KERNEL_SETS[s] for s in _vitc.kernel_sets(code))
        parts.append(f"{dtype}: {chosen} (of {available})")
    return "; ".join(parts)


def show_config():
    for key, value in config().items():
        print(f"{key:14s}: {value}")
