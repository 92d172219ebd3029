"""Build of vitc's one extension, vitc._vitc: Cython bindings + the C kernels in csrc/.

- Common C files get portable flags (-O3, C11). Files under csrc/kernels/ named *_avx2.c / *_avx512.c
  get their own ISA flags and are compiled only on x86-64; the run-time dispatch in csrc/cpu.c picks
  a path from cpuid/xgetbv, so the wheel runs on any x86-64 (and builds on arm64 with the scalar path).
- Threads: vitc's own pthread pool (csrc/threadpool.c), no OpenMP: GNU OpenMP's workers do not survive
  fork() (README "Processes and threads"). Without pthreads (not POSIX) the kernels run on one thread.
- Never -ffast-math (breaks erf/NaN semantics) and never -march=native unless VITC_NATIVE=1.
- VITC_WERROR=1 (CI): -Wall -Wextra -Werror on every C file, csrc/ and the Cython-generated C alike; the
  C files of csrc/ are compiled on their own (as objects) so flags meant for Cython's code never reach ours.
"""
import os
import platform
from glob import glob

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
IS_X86_64 = platform.machine().lower() in ("x86_64", "amd64")
ISA_FLAGS = {
    # exactly the features vitc_isa_required_features (csrc/cpu.c) checks before running these files
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
}
# reduced-precision kernels: *_avx512bf16.c (vdpbf16ps) / *_avx512vnni.c (vpdpbusd), dispatched on those cpuid bits
ISA_FLAGS["avx512bf16"] = ISA_FLAGS["avx512"] + ["-mavx512bf16"]
ISA_FLAGS["avx512vnni"] = ISA_FLAGS["avx512"] + ["-mavx512vnni"]
ISA_FLAGS["amx"] = ISA_FLAGS["avx512"] + ["-mamx-tile", "-mamx-bf16", "-mamx-int8"]  # *_amx.c: tile kernels
BASE_FLAGS = ["-O3", "-std=c11", "-fno-math-errno", "-Wall", "-Wno-unused-function"]
WERROR_FLAGS = ["-Wall", "-Wextra", "-Werror"] if os.environ.get("VITC_WERROR") == "1" else []
# For vitc/_vitc.c only (never csrc/): the -Wno-... a Cython release needs for its own generated code.
# Cython 3.3.1 builds clean under -Wall -Wextra -Werror, so none today.
CYTHON_C_FLAGS = []
if os.environ.get("VITC_NATIVE") == "1":
    BASE_FLAGS.append("-march=native")
SANITIZE = os.environ.get("VITC_SANITIZE", "")  # e.g. "address,undefined" for the ASan/UBSan CI job
if SANITIZE:
    BASE_FLAGS += [f"-fsanitize={SANITIZE}", "-fno-omit-frame-pointer", "-g"]
    BASE_FLAGS = [f for f in BASE_FLAGS if f != "-O3"] + ["-O1"]


def rel(path):
    return os.path.relpath(path, HERE)


def isa_of(path):
    """'avx2' / 'avx512' / 'avx512bf16' / 'avx512vnni' / 'amx' for csrc/kernels/*_<isa>.c, else None (portable)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    for isa in ISA_FLAGS:
        if stem.endswith("_" + isa):
            return isa
    return None


class BuildExt(build_ext):
    def build_extensions(self):
        for ext in self.extensions:
            threads = ["-pthread"] if os.name == "posix" else []
            common = BASE_FLAGS + WERROR_FLAGS + threads
            ext.extra_compile_args = common + CYTHON_C_FLAGS  # the one source left: Cython's C
            ext.extra_link_args = threads + ([f"-fsanitize={SANITIZE}"] if SANITIZE else [])
            # csrc/: compiled here (ISA files with their own flags), linked in as objects.
            objects = []
            for src in C_SOURCES:
                objects += self.compiler.compile(
                    [src], output_dir=self.build_temp, include_dirs=ext.include_dirs,
                    macros=ext.define_macros, extra_postargs=common + ISA_FLAGS.get(isa_of(src), []))
            ext.extra_objects = objects
        super().build_extensions()


c_sources = sorted(glob("csrc/*.c")) + sorted(glob("csrc/kernels/*.c"))
portable = [rel(s) for s in c_sources if isa_of(s) is None]
ISA_SOURCES = [rel(s) for s in c_sources if isa_of(s) is not None] if IS_X86_64 else []
C_SOURCES = portable + ISA_SOURCES
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if ISA_SOURCES:
    macros.append(("VITC_HAVE_X86_KERNELS", "1"))
if os.name == "posix":  # the thread pool (csrc/threadpool.c) and per-thread GEMM buffers (csrc/gemm.c)
    macros.append(("VITC_HAVE_PTHREAD", "1"))

ext = Extension(
    "vitc._vitc",
    sources=["vitc/_vitc.pyx"],
    include_dirs=["csrc", numpy.get_include()],
    define_macros=macros,
    # csrc/ is linked in as objects: listing its files here makes a change to one relink the extension
    depends=sorted(glob("csrc/*.h") + glob("csrc/kernels/*.h") + glob("vitc/*.pxi") + C_SOURCES),
)

setup(
    ext_modules=cythonize([ext], language_level=3, compiler_directives={"boundscheck": False, "wraparound": False}),
    cmdclass={"build_ext": BuildExt},
)
