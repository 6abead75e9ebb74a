"""Build of fastxent's extension: Cython batch layer + C row kernels.

- OpenMP is probed (a tiny program compiled and linked with -fopenmp); without
  it the extension builds serial, a warning says so, and show_config() reports
  openmp=False.
- -O3, never fast-math flags (they break inf/NaN handling) and never -march=native
  by default: the kernels pick AVX-512 / AVX2 / baseline at run time.
  FASTXENT_NATIVE=1 opts in to -march=native for a local build.
- FASTXENT_SANITIZE=1 builds with AddressSanitizer + UBSan (-O0 -g).
- The kernels are compiled once per instruction set and dtype, each in a
  unit of its own (src_c/fx_isa_<isa>_f32.c, _f64.c), and the extension's
  sources compile in parallel (one job per CPU, FASTXENT_BUILD_JOBS to
  change it), the slowest first.
- The C headers (and kernel sources) are installed in fastxent/include, the
  directory fastxent.get_include() returns.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_C = os.path.join("src_c")
# Every kernel source and header: rebuild triggers, and installed with the package.
C_FILES = sorted(f for f in os.listdir(os.path.join(HERE, SRC_C)) if f.endswith((".h", ".c")))


def _compiler_accepts(compiler, flags, source, link=True):
    """Compile (and link) `source` with `flags`; True when it works."""
    tmp = tempfile.mkdtemp()
    try:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(source)
        objects = compiler.compile([path], output_dir=tmp, extra_postargs=flags)
        if link:
            compiler.link_executable(objects, os.path.join(tmp, "probe"), extra_postargs=flags)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OPENMP_PROBE = """
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def _build_jobs():
    value = os.environ.get("FASTXENT_BUILD_JOBS", "")
    if value:
        try:
            jobs = int(value)
        except ValueError:
            jobs = 0
        if jobs < 1:
            raise SystemExit(f"FASTXENT_BUILD_JOBS must be a positive integer, got {value!r}")
        return jobs
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Sources that take longest to compile, started first so that the jobs
# finish together; the rest follow.  Seconds at -O3 on the 2-CPU
# development VM, 2026-12-08, two at a time: baseline f32 127, avx2 f32
# 102, avx512 f32 90, baseline f64 86, avx2 f64 85, avx512 f64 79, Cython's
# _core.c 16: by those times 293 s with two jobs in this order, 303 in the
# order of the 2026-12-07 times (before the narrow kernels' 2- and
# 10-column code).
# (With one unit an ISA, both dtypes in each, the best two jobs could do
# was 342 s, before that code.)
_SLOWEST_FIRST = ("fx_isa_baseline_f32.c", "fx_isa_avx2_f32.c", "fx_isa_avx512_f32.c", "fx_isa_baseline_f64.c",
                  "fx_isa_avx2_f64.c", "fx_isa_avx512_f64.c", "_core.c")


def _compile_rank(source):
    name = os.path.basename(source)
    return _SLOWEST_FIRST.index(name) if name in _SLOWEST_FIRST else len(_SLOWEST_FIRST)


def _compile_in_parallel(compiler, jobs):
    """Make compiler.compile() build the sources of one call in `jobs` threads
    (distutils compiles them one after another).  Each source is one compiler
    process, so threads are enough.  Left as is where the compiler lacks the
    private hooks this uses (MSVC)."""
    if jobs < 2 or not (hasattr(compiler, "_setup_compile") and hasattr(compiler, "_compile")
                        and hasattr(compiler, "_get_cc_args")):
        return

    def compile(sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                extra_preargs=None, extra_postargs=None, depends=None):
        macros, objects, extra_postargs, pp_opts, build = compiler._setup_compile(
            output_dir, macros, include_dirs, sources, depends, extra_postargs)
        cc_args = compiler._get_cc_args(pp_opts, debug, extra_preargs)

        def one(obj):
            src, ext = build[obj]
            compiler._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

        todo = sorted((obj for obj in objects if obj in build), key=lambda obj: _compile_rank(build[obj][0]))
        with ThreadPoolExecutor(max(1, min(jobs, len(todo)))) as pool:
            list(pool.map(one, todo))  # re-raises the first compile error
        return objects

    compiler.compile = compile


class BuildExt(build_ext):
    def build_extensions(self):
        compiler = self.compiler
        cc = getattr(compiler, "compiler_so", None) or [getattr(compiler, "compiler_type", "cc")]
        is_msvc = compiler.compiler_type == "msvc"
        compile_args, link_args = [], []
        openmp = False
        if os.environ.get("FASTXENT_DISABLE_OPENMP", "") not in ("", "0"):
            warnings.warn("FASTXENT_DISABLE_OPENMP is set: building fastxent without OpenMP (serial)")
        elif is_msvc:
            compile_args.append("/openmp")
            openmp = True
        elif _compiler_accepts(compiler, ["-fopenmp"], OPENMP_PROBE):
            compile_args.append("-fopenmp")
            link_args.append("-fopenmp")
            openmp = True
        else:
            warnings.warn(
                "the C compiler does not support OpenMP (-fopenmp): fastxent is built serial; "
                "show_config() reports openmp=False"
            )
        if not is_msvc:
            sanitize = os.environ.get("FASTXENT_SANITIZE", "") not in ("", "0")
            if sanitize:
                # -O0: the instrumented kernels compile in a minute instead of
                # three (always_inline still inlines the vector helpers).
                flags = ["-O0", "-g", "-fno-omit-frame-pointer",
                         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
                compile_args += flags
                link_args += ["-fsanitize=address,undefined"]
            else:
                # -g0: Python's CFLAGS carry -g, and debug information for
                # the fully inlined kernels cost a quarter of the build
                # (AVX2 unit: 185 s -> 146 s on the 2-CPU VM).
                compile_args += ["-O3", "-g0"]
            compile_args += ["-Wno-psabi", "-Wno-unreachable-code"]
            if os.environ.get("FASTXENT_NATIVE", "") not in ("", "0"):
                compile_args.append("-march=native")
        for ext in self.extensions:
            ext.extra_compile_args = compile_args + list(ext.extra_compile_args or [])
            ext.extra_link_args = link_args + list(ext.extra_link_args or [])
        self._write_build_info(openmp, " ".join(cc), compile_args)
        _compile_in_parallel(compiler, _build_jobs())
        super().build_extensions()

    def _write_build_info(self, openmp, compiler, flags):
        text = (
            "# Generated by setup.py at build time.\n"
            f"OPENMP = {openmp!r}\n"
            f"COMPILER = {compiler!r}\n"
            f"CFLAGS = {' '.join(flags)!r}\n"
            f"PLATFORM = {sysconfig.get_platform()!r}\n"
        )
        targets = [os.path.join(HERE, "fastxent", "_build_info.py")]
        if not self.inplace:
            targets.append(os.path.join(self.build_lib, "fastxent", "_build_info.py"))
        for path in targets:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)


class BuildPy(build_py):
    """Also installs the C headers and kernel sources as fastxent/include."""

    def run(self):
        super().run()
        dest = os.path.join(self.build_lib, "fastxent", "include")
        os.makedirs(dest, exist_ok=True)
        for name in C_FILES:
            shutil.copy(os.path.join(HERE, SRC_C, name), dest)


def extensions():
    from Cython.Build import cythonize

    ext = Extension(
        "fastxent._core",
        sources=["fastxent/_core.pyx", os.path.join(SRC_C, "fx_kernels.c")]
        + [os.path.join(SRC_C, f"fx_isa_{isa}_{dtype}.c")
           for isa in ("avx512", "avx2", "baseline") for dtype in ("f32", "f64")],
        include_dirs=[SRC_C],
        define_macros=[("FX_SEPARATE_ISA_UNITS", "1")],
        depends=[os.path.join(SRC_C, name) for name in C_FILES] + ["fastxent/_core.pxd"],
    )
    return cythonize([ext], compiler_directives={"language_level": 3}, include_path=["."])


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy},
    package_data={"fastxent": ["*.pxd", "*.pyx", "py.typed"]},
)
