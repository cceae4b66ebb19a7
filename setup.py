"""Build fastgp's one compiled extension, fastgp._C.

It always holds the C++ CPU kernels (csrc/ops.cpp, csrc/cpu/*.cpp) and the C++ autograd of some
ops (csrc/autograd/*.cpp), and, when torch is a CUDA build and a matching CUDA toolkit is found,
the CUDA kernels (csrc/cuda/*.cu). Build it with the torch you will run it with:

    pip install --no-build-isolation -e .     # or: pip install --no-build-isolation .

(an isolated build environment would fetch its own torch and compile against the wrong headers).

What is built (one line in the build log says which, and how to get the rest; `pip install -v`
shows the log):
    a GPU is visible        CPU and CUDA kernels, for the visible GPUs' architectures only
    no GPU visible          CPU kernels only (the default on build machines and GPU-less login
                            nodes); Triton still serves CUDA tensors at run time
    FASTGP_BUILD_CUDA=1     CPU and CUDA kernels even without a GPU, for TORCH_CUDA_ARCH_LIST or
                            DEFAULT_ARCH_LIST below (stops early with what to do when impossible)

Compiled objects are kept in build/temp-fastgp-* inside the source tree, so a second install
(another extra, a reinstall) recompiles only what changed: ninja finds the rest up to date.

Environment variables:
    FASTGP_BUILD_CUDA     unset/"auto": as above; "0": CPU kernels only; "1": CUDA kernels required.
    CUDA_HOME, CUDA_PATH  CUDA toolkit root (holds include/cuda_runtime.h and bin/nvcc). When
                          unset it is derived from the nvcc on PATH (wrapper scripts included),
                          then /usr/local/cuda, then /usr/local/cuda-* (newest first).
    TORCH_CUDA_ARCH_LIST  GPU architectures, e.g. "8.0;9.0+PTX". Setting it asks for the CUDA
                          kernels (when torch and a toolkit allow). Default: the visible GPUs, or
                          DEFAULT_ARCH_LIST below with FASTGP_BUILD_CUDA=1 and no GPU.
    MAX_JOBS              parallel compile jobs (read by torch's BuildExtension / ninja; default
                          all cores).
"""

import glob
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))

# TORCH_CUDA_ARCH_LIST when no GPU is visible, by CUDA major version: SASS for data-center
# Ampere and Hopper, plus PTX that the driver JIT-compiles for newer GPUs (as apex does).
DEFAULT_ARCH_LIST = {
    11: "7.0;8.0+PTX",
    12: "8.0;9.0+PTX",
    13: "8.0;9.0+PTX",
}


# pip runs this script several times per install (metadata, then the build); the build line is
# printed only by the invocations that compile, so an install shows it once.
BUILD_COMMANDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def log(message):
    if BUILD_COMMANDS.intersection(sys.argv[1:]):
        print(f"fastgp: {message}", flush=True)


def fail(message):
    sys.exit(f"fastgp: error: {message}")


try:
    # Only torch itself here: torch.utils.cpp_extension reads CUDA_HOME when it is imported, so
    # it is imported below, after CUDA_HOME has been set to the toolkit chosen here.
    import torch
except ImportError:
    fail(
        "torch is not importable in the build environment. Install torch first, then build "
        "with `pip install --no-build-isolation ...` so that fastgp compiles against it."
    )


def version_tuple(text):
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


def is_cuda_root(root):
    return bool(root) and (
        os.path.isfile(os.path.join(root, "include", "cuda_runtime.h"))
        and os.access(os.path.join(root, "bin", "nvcc"), os.X_OK)
    )


def toolkit_version(root):
    """(major, minor) of the toolkit at root, from `nvcc --version` (as torch checks it)."""
    try:
        out = subprocess.run(
            [os.path.join(root, "bin", "nvcc"), "--version"],
            capture_output=True, text=True, timeout=120, check=False,
        ).stdout
        match = re.search(r"release (\d+)\.(\d+)", out)
        if match:
            return int(match.group(1)), int(match.group(2))
    except (OSError, subprocess.SubprocessError):
        pass
    # Fallback: the version macro of the driver API header, e.g. 13000 for 13.0.
    try:
        with open(os.path.join(root, "include", "cuda.h"), encoding="utf-8", errors="replace") as f:
            match = re.search(r"#define\s+CUDA_VERSION\s+(\d+)", f.read())
        if match:
            value = int(match.group(1))
            return value // 1000, (value % 1000) // 10
    except OSError:
        pass
    return None


def roots_from_nvcc_on_path():
    """Toolkit roots suggested by the nvcc on PATH.

    torch guesses dirname(dirname(which("nvcc"))), which is wrong when nvcc is a symlink or a
    wrapper script outside the toolkit (e.g. /usr/local/bin/nvcc doing `exec .../bin/nvcc`).
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return []
    real = os.path.realpath(nvcc)
    roots = [os.path.dirname(os.path.dirname(real))]
    # Ask nvcc itself: a dry run prints its variables, among them `#$ TOP=<root>/bin/..`.
    try:
        out = subprocess.run(
            [nvcc, "--dryrun", "-x", "cu", "-E", os.devnull],
            capture_output=True, text=True, timeout=120, check=False,
        )
        match = re.search(r"^#\$ TOP=(.+)$", out.stderr + out.stdout, re.MULTILINE)
        if match:
            roots.append(os.path.normpath(match.group(1).strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    # A wrapper script: read the nvcc it execs.
    try:
        with open(real, "rb") as f:
            head = f.read(8192)
        if head.startswith(b"#!"):
            text = head.decode("utf-8", errors="replace")
            for match in re.finditer(r"""exec\s+["']?([^\s"']+/bin/nvcc)\b""", text):
                roots.append(os.path.dirname(os.path.dirname(match.group(1))))
    except OSError:
        pass
    return roots


def find_cuda_root(torch_major):
    """(root, (major, minor)) of the CUDA toolkit to use, or (None, reason)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root:  # an explicit choice is honoured as is, never silently replaced
            if not is_cuda_root(root):
                return None, f"{var}={root} is not a CUDA toolkit: it has no include/cuda_runtime.h or bin/nvcc"
            version = toolkit_version(root)
            if version is None:
                return None, f"cannot read the CUDA version of {var}={root}"
            return root, version

    candidates = roots_from_nvcc_on_path() + ["/usr/local/cuda"]
    candidates += sorted(glob.glob("/usr/local/cuda-*"), key=version_tuple, reverse=True)
    mismatched = None
    seen = set()
    for root in candidates:
        key = os.path.realpath(root)
        if key in seen or not is_cuda_root(root):
            continue
        seen.add(key)
        version = toolkit_version(root)
        if version is None:
            continue
        if version[0] == torch_major:  # the first toolkit whose major matches torch's wins
            return os.path.normpath(root), version
        mismatched = mismatched or (root, version)
    if mismatched is not None:
        root, version = mismatched
        return root, version  # reported as a version mismatch by the caller
    return None, "no CUDA toolkit found: set CUDA_HOME"


def build_mode():
    raw = os.environ.get("FASTGP_BUILD_CUDA", "")
    value = raw.strip().lower()
    if value in ("", "auto"):
        return "auto"
    if value in ("0", "off", "false", "no"):
        return "off"
    if value in ("1", "on", "true", "yes"):
        return "on"
    fail(f"FASTGP_BUILD_CUDA must be 0, 1 or unset (auto), got {raw!r}")


def configure_cuda():
    """Decide whether to build the CUDA kernels: (root, version) or (None, reason)."""
    mode = build_mode()
    if mode == "off":
        return None, "FASTGP_BUILD_CUDA=0"
    if mode == "auto" and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not visible_gpu_archs():
        # The common case of a build machine, a CI runner or a cluster's login node. Compiling the
        # CUDA kernels for unseen GPUs takes most of the install time; whoever wants them asks.
        return None, "no GPU visible"

    def skip(reason, what_to_do):
        if mode == "on":
            fail(f"FASTGP_BUILD_CUDA=1 but {reason}. {what_to_do}, or unset FASTGP_BUILD_CUDA "
                 "to build the CPU kernels only.")
        return None, reason

    if torch.version.cuda is None:
        kind = "a ROCm" if getattr(torch.version, "hip", None) else "a CPU"
        return skip(f"torch {torch.__version__} is {kind} build",
                    "Install a CUDA build of torch")
    torch_major = version_tuple(torch.version.cuda)[0]
    root, found = find_cuda_root(torch_major)
    if root is None:
        return skip(found, f"Install a CUDA {torch_major}.x toolkit (CUDA_HOME = its root)")
    if found[0] != torch_major:
        return skip(
            f"the CUDA toolkit at {root} is version {found[0]}.{found[1]}, torch was built "
            f"with CUDA {torch.version.cuda}",
            f"Set CUDA_HOME to a CUDA {torch_major}.x toolkit",
        )
    return root, found


def visible_gpu_archs():
    """Compute capabilities of the visible GPUs as TORCH_CUDA_ARCH_LIST entries, e.g. ["9.0"]."""
    if torch.version.cuda is None or not torch.cuda.is_available():
        return []
    archs = {"%d.%d" % torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return sorted(archs, key=version_tuple)


def how_to_get_cuda(reason):
    """The second half of the CPU-only build line: how to get the CUDA kernels."""
    if reason == "no GPU visible":
        return ("For the CUDA kernels (e.g. installing on a GPU-less login node) reinstall with "
                "FASTGP_BUILD_CUDA=1 and TORCH_CUDA_ARCH_LIST set to your GPUs (\"9.0\" for "
                "H100/H200); until then Triton serves CUDA tensors")
    if reason == "FASTGP_BUILD_CUDA=0":
        return "Unset FASTGP_BUILD_CUDA to build the CUDA kernels where a GPU is visible"
    return "Triton serves CUDA tensors where it is installed"


def nvidia_include_dirs(cuda_major):
    """Headers of the nvidia-* wheels torch depends on (cuBLAS, cuSPARSE, ...).

    ATen's CUDA headers include cublas_v2.h and cusparse.h, which a bare toolkit may lack. CUDA
    13 wheels put them in site-packages/nvidia/cu13/include; CUDA 12 wheels in one directory per
    library (nvidia/cublas/include, ...).
    """
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    bases = list(spec.submodule_search_locations)
    dirs = [os.path.join(b, f"cu{cuda_major}", "include") for b in bases]
    dirs = [d for d in dirs if os.path.isdir(d)]
    if not dirs:
        for b in bases:
            dirs += sorted(d for d in glob.glob(os.path.join(b, "*", "include"))
                           if not re.fullmatch(r"cu\d+", os.path.basename(os.path.dirname(d))))
    return dirs


class _DropNoGpuWarning(logging.Filter):
    # Importing torch.utils.cpp_extension on a machine without a GPU warns "No CUDA runtime is
    # found"; building there is the normal case, so keep the build log to our one line.
    def filter(self, record):
        return "No CUDA runtime is found" not in record.getMessage()


def make_extension():
    cuda_root, info = configure_cuda()
    if cuda_root is not None:
        os.environ["CUDA_HOME"] = cuda_root
        if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            # Named explicitly (torch's own default would add PTX for the newest visible GPU).
            os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(visible_gpu_archs()) or DEFAULT_ARCH_LIST.get(
                info[0], DEFAULT_ARCH_LIST[max(DEFAULT_ARCH_LIST)])

    logging.getLogger("torch.utils.cpp_extension").addFilter(_DropNoGpuWarning())
    from torch.utils import cpp_extension

    if cuda_root is not None:
        # In case something imported cpp_extension before this script set CUDA_HOME.
        cpp_extension.CUDA_HOME = cuda_root

    # Relative paths (setuptools wants them), globbed from this directory whatever the cwd.
    sources = ["csrc/ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp", root_dir=HERE))
    sources += sorted(glob.glob("csrc/autograd/*.cpp", root_dir=HERE))
    # No -std flag: BuildExtension adds the standard the installed torch's headers need (C++17
    # for older torch; C++20 for torch 2.14, whose headers reject C++17). fastgp's own sources
    # are valid C++17 and C++20.
    # -fopenmp: at::parallel_for expands to `#pragma omp parallel` in our translation units.
    # -ffp-contract=off: never fuse a*b + c*d into an FMA (bit-exact with the eager reference).
    cxx_flags = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-math-errno"]
    kwargs = dict(
        include_dirs=[os.path.join(HERE, "csrc")],
        extra_link_args=["-fopenmp"],
    )
    if cuda_root is None:
        log(f"building the CPU kernels only ({info}). {how_to_get_cuda(info)}.")
        return cpp_extension.CppExtension(
            "fastgp._C", sources, extra_compile_args={"cxx": cxx_flags}, **kwargs)

    sources += sorted(glob.glob("csrc/cuda/*.cu", root_dir=HERE))
    # IEEE division and square root (no --use_fast_math); -lineinfo for profilers.
    nvcc_flags = ["-O3", "-lineinfo"]
    extension = cpp_extension.CUDAExtension(
        "fastgp._C", sources,
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
        define_macros=[("FASTGP_WITH_CUDA", None)],
        **kwargs,
    )
    # After torch's and the toolkit's include dirs, so that the toolkit's own headers win and
    # only the missing library headers come from the wheels.
    extension.include_dirs.extend(nvidia_include_dirs(info[0]))
    log(f"building the CPU and CUDA kernels (CUDA {info[0]}.{info[1]} at {cuda_root}, "
        f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}, MAX_JOBS="
        f"{os.environ.get('MAX_JOBS', 'all cores')}): minutes; `pip install -v` shows the progress")
    return extension


def persistent_build_temp(with_cuda):
    """A build directory inside the source tree, one per Python, torch and kernel set.

    pip's editable installs compile in a fresh temporary directory each time, so a second
    install (`-e ".[test]"` after `-e ".[train]"`) would recompile everything. Here ninja finds
    the objects of the last build and recompiles only sources (or headers, or flags) that changed;
    CPU-only and CUDA builds (whose C++ flags differ) keep their objects apart.
    """
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__}-{'cuda' if with_cuda else 'cpu'}"
    return os.path.join(HERE, "build", "temp-fastgp-" + re.sub(r"[^A-Za-z0-9.-]+", "_", tag))


def main():
    extension = make_extension()  # first: it sets CUDA_HOME before cpp_extension is imported
    from torch.utils.cpp_extension import BuildExtension

    with_cuda = any(source.endswith(".cu") for source in extension.sources)

    class BuildExtensionKeepingObjects(BuildExtension):
        def finalize_options(self):
            super().finalize_options()
            self.build_temp = persistent_build_temp(with_cuda)

    setup(
        ext_modules=[extension],
        cmdclass={"build_ext": BuildExtensionKeepingObjects},
    )


if __name__ == "__main__":
    main()
