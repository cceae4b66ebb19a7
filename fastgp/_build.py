"""How fastgp's one compiled extension is built: by setup.py at install, or just in time.

Shared by ``setup.py`` (which loads this file by path: it runs before fastgp is importable, and in
an isolated pip build without torch) and by ``fastgp.backend`` (which compiles the extension on the
first fused op when no pre-built ``fastgp._C`` matches the running torch).

What is compiled: the C++ CPU kernels (csrc/ops.cpp, csrc/cpu, csrc/host, csrc/autograd) and, when
torch is a CUDA build, a matching CUDA toolkit is found and a GPU is visible (or
``FASTGP_BUILD_CUDA=1``), the CUDA kernels (csrc/cuda/*.cu); see ``configure_cuda``.

Where the sources are: ``csrc/`` beside the package in a source checkout (editable installs), or
``fastgp/_csrc`` inside an installed wheel (setup.py copies them there).

Just-in-time builds go to ``$FASTGP_CACHE/<tag>`` (default ``$XDG_CACHE_HOME/fastgp`` or
``~/.cache/fastgp``), one folder per torch version, CUDA version, C++ ABI and Python (``torch_tag``);
torch's ``cpp_extension.load`` compiles with ninja there under a file lock, so two processes never
build at once, and later processes find the library up to date.
"""

import glob
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time

PACKAGE = os.path.dirname(os.path.abspath(__file__))
HERE = os.path.dirname(PACKAGE)  # the source tree (setup.py's folder) when fastgp is not installed

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
        tell_terminal(message)


def fail(message):
    sys.exit(f"fastgp: error: {message}")


try:
    # Only torch itself here: torch.utils.cpp_extension reads CUDA_HOME when it is imported, so
    # it is imported later, after CUDA_HOME has been set to the toolkit chosen here. An isolated
    # pip build has no torch: setup.py then ships the sources and the kernels compile on first use.
    import torch
except ImportError:
    torch = None


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




def tell_terminal(message):
    """Also show a build phase to a user at a terminal: pip shows a build's output only with -v.

    Only where stdout is not already the terminal (pip captures it) and a terminal exists (a CI
    runner has none; its log shows the lines with -v)."""
    try:
        if sys.stdout.isatty():
            return
        with open("/dev/tty", "w", encoding="utf-8") as tty:
            tty.write(f"fastgp: {message}\n")
    except OSError:
        pass


# --------------------------------------------------------------------------------------------
# What is compiled, with which flags
# --------------------------------------------------------------------------------------------


def source_dir():
    """The folder holding ops.cpp and the kernel sources, or None when this install has none:
    csrc/ of a source checkout first (what an editable install compiles), else the copy shipped
    inside the package."""
    for folder in (os.path.join(HERE, "csrc"), os.path.join(PACKAGE, "_csrc")):
        if os.path.isfile(os.path.join(folder, "ops.cpp")):
            return folder
    return None


def source_files(csrc, with_cuda, root_dir=None):
    """The translation units below ``csrc`` (relative to ``root_dir`` when given, as setuptools
    wants them), in a fixed order."""
    files = [os.path.join(csrc, "ops.cpp")]
    kinds = ["cpu/*.cpp", "host/*.cpp", "autograd/*.cpp"] + (["cuda/*.cu"] if with_cuda else [])
    for pattern in kinds:
        files += sorted(glob.glob(os.path.join(csrc, pattern), root_dir=root_dir))
    return files


# -O3; -fopenmp: at::parallel_for expands to `#pragma omp parallel` in our translation units;
# -ffp-contract=off: never fuse a*b + c*d into an FMA (bit-exact with the eager reference). No -std
# flag: torch adds the standard its headers need (C++17 for older torch, C++20 for torch 2.14,
# whose headers reject C++17); fastgp's own sources are valid C++17 and C++20.
CXX_FLAGS = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-math-errno"]
# IEEE division and square root (no --use_fast_math); -lineinfo for profilers.
NVCC_FLAGS = ["-O3", "-lineinfo"]
LINK_FLAGS = ["-fopenmp"]


def configure_build():
    """(cuda_root, info, what, hint): the CUDA toolkit to use (None for CPU kernels only), the
    reason or version from ``configure_cuda``, what is built, and how to get the CUDA kernels
    (None when they are built). Sets CUDA_HOME and
    TORCH_CUDA_ARCH_LIST for torch's build helpers when the CUDA kernels are built."""
    logging.getLogger("torch.utils.cpp_extension").addFilter(_DropNoGpuWarning())
    cuda_root, info = configure_cuda()
    if cuda_root is None:
        return None, info, f"the CPU kernels only ({info})", how_to_get_cuda(info)
    os.environ["CUDA_HOME"] = cuda_root
    if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        # Named explicitly (torch's own default would add PTX for the newest visible GPU).
        os.environ["TORCH_CUDA_ARCH_LIST"] = ";".join(visible_gpu_archs()) or DEFAULT_ARCH_LIST.get(
            info[0], DEFAULT_ARCH_LIST[max(DEFAULT_ARCH_LIST)])
    from torch.utils import cpp_extension

    cpp_extension.CUDA_HOME = cuda_root  # in case something imported it before CUDA_HOME was set
    return cuda_root, info, (
        f"the CPU and CUDA kernels (CUDA {info[0]}.{info[1]} at {cuda_root}, TORCH_CUDA_ARCH_LIST="
        f"{os.environ['TORCH_CUDA_ARCH_LIST']}, MAX_JOBS={os.environ.get('MAX_JOBS', 'all cores')})"), None


def persistent_build_temp(with_cuda):
    """A build directory inside the source tree, one per Python, torch and kernel set.

    pip's editable installs compile in a fresh temporary directory each time, so a second
    install (`-e ".[test]"` after `-e ".[train]"`) would recompile everything. Here ninja finds
    the objects of the last build and recompiles only sources (or headers, or flags) that changed;
    CPU-only and CUDA builds (whose C++ flags differ) keep their objects apart.
    """
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__}-{'cuda' if with_cuda else 'cpu'}"
    return os.path.join(HERE, "build", "temp-fastgp-" + re.sub(r"[^A-Za-z0-9.-]+", "_", tag))


# --------------------------------------------------------------------------------------------
# Which torch a build is for
# --------------------------------------------------------------------------------------------

# Written beside every build of the library (setup.py's fastgp/_C*.so, the just-in-time one), read
# before loading it: a library compiled against another torch may fail to load, or load and crash.
RECORD = "_C.build.json"


def torch_tag():
    """What a build of the extension depends on: torch's version (and so its C++ API), its CUDA
    (or ROCm) version, the C++ ABI and the Python version, e.g.
    ``torch2.14.1-cpu-cxx11abi1-py311``."""
    if torch.version.cuda:
        device = "cu" + torch.version.cuda.replace(".", "")
    elif getattr(torch.version, "hip", None):
        device = "rocm" + torch.version.hip.split("-")[0]
    else:
        device = "cpu"
    abi = int(bool(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", True)))
    text = f"torch{torch.__version__}-{device}-cxx11abi{abi}-py{sys.version_info[0]}{sys.version_info[1]}"
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text)


def write_record(folder, with_cuda):
    with open(os.path.join(folder, RECORD), "w", encoding="utf-8") as f:
        json.dump({"tag": torch_tag(), "torch": torch.__version__, "cuda_kernels": bool(with_cuda)}, f)
        f.write("\n")


def read_record(folder):
    """The record beside a build in ``folder``, or None when there is none (a build by an older
    fastgp) or it cannot be read."""
    try:
        with open(os.path.join(folder, RECORD), encoding="utf-8") as f:
            record = json.load(f)
        return record if isinstance(record, dict) and isinstance(record.get("tag"), str) else None
    except (OSError, ValueError):
        return None


def prebuilt_library():
    """The path of the pre-built fastgp/_C*.so (setup.py's), or None."""
    from importlib.machinery import EXTENSION_SUFFIXES

    for suffix in EXTENSION_SUFFIXES:
        path = os.path.join(PACKAGE, "_C" + suffix)
        if os.path.isfile(path):
            return path
    return None


# --------------------------------------------------------------------------------------------
# Just-in-time builds
# --------------------------------------------------------------------------------------------

JIT_NAME = "fastgp_C"


def cache_root():
    root = os.environ.get("FASTGP_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "fastgp")
    return root


def cache_dir():
    """Where the just-in-time build for the running torch lives."""
    return os.path.join(cache_root(), torch_tag())


def jit_library():
    """The just-in-time build for the running torch, or None when there is none yet."""
    path = os.path.join(cache_dir(), JIT_NAME + ".so")
    return path if os.path.isfile(path) and read_record(cache_dir()) is not None else None


def jit_enabled():
    """FASTGP_JIT=0 turns just-in-time compilation off (then a missing or mismatched build falls
    back to the other backends)."""
    return os.environ.get("FASTGP_JIT", "1").strip().lower() not in ("0", "off", "false", "no")


def unique_names(sources, csrc, folder):
    """One-line files that #include each source, named after its path below csrc (cpu_augment.cpp
    for cpu/augment.cpp): torch's JIT build names every object file after its source's base name,
    and csrc/cpu/augment.cpp and csrc/host/augment.cpp would both make augment.o. A file is
    rewritten only when its text changes, so that ninja finds unchanged objects up to date."""
    os.makedirs(folder, exist_ok=True)
    wrappers = []
    for source in sources:
        path = os.path.join(folder, os.path.relpath(source, csrc).replace(os.sep, "_"))
        text = f'#include "{os.path.abspath(source)}"\n'
        try:
            with open(path, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:  # atomically: another process may be compiling it right now
            with open(f"{path}.{os.getpid()}", "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(f"{path}.{os.getpid()}", path)
        wrappers.append(path)
    return wrappers


def jit_build(reason, stream=None):
    """Compile (unless up to date) and load the extension for the running torch into the cache;
    print one line when it compiles. Returns the library's path; raises RuntimeError saying why
    when it cannot be built."""
    stream = stream or sys.stderr
    csrc = source_dir()
    if csrc is None:
        raise RuntimeError("this install has no C++ sources (fastgp/_csrc) to compile")
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler: {compiler!r} is not on PATH (install one, e.g. g++, or set CXX)")
    try:
        cuda_root, info, what, _ = configure_build()
    except SystemExit as error:  # configure_cuda's fail(): FASTGP_BUILD_CUDA=1 cannot be honoured
        raise RuntimeError(str(error.code).removeprefix("fastgp: error: ")) from None
    with_cuda = cuda_root is not None
    sources = source_files(csrc, with_cuda)
    folder = cache_dir()
    os.makedirs(folder, exist_ok=True)
    fresh = jit_library() is None
    if fresh:
        print(f"fastgp: compiling {what} for torch {torch.__version__} ({reason}): "
              f"{len(sources)} files, once per torch version, minutes on a small machine; cached in {folder} ...",
              end="", file=stream, flush=True)
    start = time.monotonic()
    from torch.utils import cpp_extension

    defines = ["-DFASTGP_WITH_CUDA"] if with_cuda else []
    try:
        cpp_extension.load(
            name=JIT_NAME,
            sources=unique_names(sources, csrc, os.path.join(folder, "sources")),
            extra_cflags=CXX_FLAGS + defines,
            extra_cuda_cflags=NVCC_FLAGS + defines,
            extra_ldflags=LINK_FLAGS,
            extra_include_paths=[csrc] + (nvidia_include_dirs(info[0]) if with_cuda else []),
            build_directory=folder,
            with_cuda=with_cuda,
            is_python_module=False,
            verbose=False,
        )
    except Exception as error:
        if fresh:
            print(" failed", file=stream, flush=True)
        # The compiler's output is long; its last lines say what went wrong.
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise RuntimeError(" | ".join(lines[-3:])) from None
    write_record(folder, with_cuda)
    if fresh:
        print(f" done in {time.monotonic() - start:.0f} s", file=stream, flush=True)
    return os.path.join(folder, JIT_NAME + ".so")
