"""Build and package fastgp; pre-build its one compiled extension, fastgp._C, when asked.

Every pip route works without a compiler: the package ships its C++/CUDA sources (fastgp/_csrc in
a wheel) and fastgp compiles them just in time, on the first fused op, for the torch that is
actually imported (fastgp/_build.py; cached per torch version and ABI, see docs/install.md). Building
at install time ("pre-building") is for a source checkout that compiles against the torch it runs
with:

    pip install --no-build-isolation -e .     # pre-builds: torch is importable here
    pip install .                             # pure-Python wheel: compiles on first use
    FASTGP_BUILD_EXT=1 pip install --no-build-isolation .   # pre-builds, or stops saying why

(an isolated build environment has no torch, so it never pre-builds: an extension compiled there
would be for whatever torch the build fetched, not the one you run).

What is pre-built (one line per phase; pip shows them with -v, and at a terminal without it):
    a GPU is visible        CPU and CUDA kernels, for the visible GPUs' architectures only
    no GPU visible          CPU kernels only (the default on build machines and GPU-less login
                            nodes); Triton still serves CUDA tensors at run time
    FASTGP_BUILD_CUDA=1     CPU and CUDA kernels even without a GPU, for TORCH_CUDA_ARCH_LIST or
                            fastgp/_build.py's DEFAULT_ARCH_LIST (stops early with what to do when
                            impossible)

Compiled objects are kept in build/temp-fastgp-* inside the source tree, so a second install
(another extra, a reinstall) recompiles only what changed: ninja finds the rest up to date.

Environment variables:
    FASTGP_BUILD_EXT      unset/"auto": pre-build when torch is importable in the build
                          environment (a --no-build-isolation build), else not; "1": pre-build
                          (stops when torch is not importable); "0": never (compile on first use).
    FASTGP_BUILD_CUDA     unset/"auto": as above; "0": CPU kernels only; "1": CUDA kernels required.
    CUDA_HOME, CUDA_PATH  CUDA toolkit root (holds include/cuda_runtime.h and bin/nvcc). When
                          unset it is derived from the nvcc on PATH (wrapper scripts included),
                          then /usr/local/cuda, then /usr/local/cuda-* (newest first).
    TORCH_CUDA_ARCH_LIST  GPU architectures, e.g. "8.0;9.0+PTX". Setting it asks for the CUDA
                          kernels (when torch and a toolkit allow). Default: the visible GPUs, or
                          DEFAULT_ARCH_LIST with FASTGP_BUILD_CUDA=1 and no GPU.
    MAX_JOBS              parallel compile jobs (read by torch's BuildExtension / ninja; default
                          all cores).
"""

import glob
import importlib.util
import os
import shutil
import sys
import time

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_build_helpers():
    """fastgp/_build.py as a module of its own: importing the fastgp package would import torch
    and everything else, and an isolated build has neither."""
    spec = importlib.util.spec_from_file_location("fastgp_build", os.path.join(HERE, "fastgp", "_build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_build_helpers()
log, fail = build.log, build.fail


def prebuild_wanted():
    """Whether to compile fastgp._C now (FASTGP_BUILD_EXT, see above)."""
    raw = os.environ.get("FASTGP_BUILD_EXT", "")
    value = raw.strip().lower()
    if value in ("0", "off", "false", "no"):
        return False, "FASTGP_BUILD_EXT=0"
    if value not in ("", "auto", "1", "on", "true", "yes"):
        fail(f"FASTGP_BUILD_EXT must be 0, 1 or unset (auto), got {raw!r}")
    if build.torch is None:
        if value in ("", "auto"):
            return False, "torch is not importable in this build environment"
        fail("FASTGP_BUILD_EXT=1 but torch is not importable in the build environment. Install torch "
             "first, then build with `pip install --no-build-isolation ...` so that fastgp compiles against it.")
    return True, None


class BuildPyWithData(build_py):
    """Also puts the kernel sources (csrc/ -> fastgp/_csrc, for just-in-time builds) and the
    trainer's configs (configs/ -> fastgp/configs, for `fastgp-train --config ring`) into the
    package. They are copied from their one place in the source tree, never kept twice there; an
    editable install finds them in the source tree itself."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        # A library left in build/lib by an earlier pre-built install must not ship in a wheel
        # built without one (build_ext, which runs after this, writes a fresh one when pre-building).
        for stale in glob.glob(os.path.join(self.build_lib, "fastgp", "_C.*")):
            os.remove(stale)
        for source, target in (("csrc", "_csrc"), ("configs", "configs")):
            destination = os.path.join(self.build_lib, "fastgp", target)
            shutil.rmtree(destination, ignore_errors=True)
            shutil.copytree(os.path.join(HERE, source), destination,
                            ignore=shutil.ignore_patterns("*.pyc", "__pycache__"))


def main():
    wanted, why_not = prebuild_wanted()
    if not wanted:
        log(f"not compiling the C++ kernels now ({why_not}): fastgp compiles them on first use, for the torch "
            "that imports it. To compile at install instead: FASTGP_BUILD_EXT=1 pip install --no-build-isolation .")
        setup(cmdclass={"build_py": BuildPyWithData})
        return

    cuda_root, info, what, hint = build.configure_build()  # first: sets CUDA_HOME before cpp_extension is imported
    from torch.utils import cpp_extension

    with_cuda = cuda_root is not None
    # Relative paths (setuptools wants them), globbed from this directory whatever the cwd.
    sources = build.source_files("csrc", with_cuda, root_dir=HERE)
    kwargs = dict(
        include_dirs=[os.path.join(HERE, "csrc")],
        extra_link_args=build.LINK_FLAGS,
    )
    if with_cuda:
        extension = cpp_extension.CUDAExtension(
            "fastgp._C", sources,
            extra_compile_args={"cxx": build.CXX_FLAGS, "nvcc": build.NVCC_FLAGS},
            define_macros=[("FASTGP_WITH_CUDA", None)],
            **kwargs,
        )
        # After torch's and the toolkit's include dirs, so that the toolkit's own headers win and
        # only the missing library headers come from the wheels.
        extension.include_dirs.extend(build.nvidia_include_dirs(info[0]))
    else:
        extension = cpp_extension.CppExtension(
            "fastgp._C", sources, extra_compile_args={"cxx": build.CXX_FLAGS}, **kwargs)

    class BuildExtensionKeepingObjects(cpp_extension.BuildExtension):
        def finalize_options(self):
            super().finalize_options()
            self.build_temp = build.persistent_build_temp(with_cuda)

        def build_extension(self, ext):
            log(f"compiling {what}: {len(ext.sources)} files for torch {build.torch.__version__} "
                f"(ninja recompiles only what changed since the last build in {os.path.relpath(self.build_temp)})"
                + (f". {hint}" if hint else ""))
            start = time.monotonic()
            super().build_extension(ext)
            path = self.get_ext_fullpath(ext.name)
            # Which torch this library is for: fastgp.backend reads it before loading the library.
            build.write_record(os.path.dirname(path), with_cuda)
            log(f"built {os.path.basename(path)} in {time.monotonic() - start:.0f} s")

        def copy_extensions_to_source(self):
            # --inplace and editable installs build in build/lib, then copy the library into the
            # source tree; its record goes with it.
            super().copy_extensions_to_source()
            build.write_record(os.path.join(HERE, "fastgp"), with_cuda)

    setup(
        ext_modules=[extension],
        cmdclass={"build_ext": BuildExtensionKeepingObjects, "build_py": BuildPyWithData},
    )


if __name__ == "__main__":
    main()
