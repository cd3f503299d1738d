"""Build of cospec_ext: the `cospec_ext._C` torch extension plus the Python packages.

Install after torch, without build isolation (the extension compiles against the
installed torch), the way flash-attn and xformers are installed:

    pip install --no-build-isolation .        # or -e . for development

Environment knobs (all optional):
    COSPEC_CPU_ONLY=1        build only the CPU kernels even when CUDA is available
    COSPEC_SANITIZE=1        CPU kernels with AddressSanitizer + UBSan (implies COSPEC_CPU_ONLY;
                             for cmake/asan_pytest.sh, which preloads the sanitizer runtimes)
    TORCH_CUDA_ARCH_LIST     CUDA archs to build, default "8.0;9.0" (A100, H100/H200)
    CUDA_HOME / CUDA_PATH    the CUDA toolkit (default: /usr/local/cuda, else nvcc on PATH)
    MAX_JOBS                 parallel compile jobs (ninja)
CUDA kernels are built when torch is a CUDA build (torch.version.cuda) and nvcc
is found; a GPU is not needed to build them.
"""

import glob
import os
import shutil
import site

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _find_cuda_home():
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var) and os.path.exists(os.path.join(os.environ[var], "bin", "nvcc")):
            return os.environ[var]
    if os.path.exists("/usr/local/cuda/bin/nvcc"):
        return "/usr/local/cuda"
    nvcc = shutil.which("nvcc")
    if nvcc:
        return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    return None


CUDA_HOME = _find_cuda_home()
if CUDA_HOME:
    os.environ["CUDA_HOME"] = CUDA_HOME  # read by torch.utils.cpp_extension at import

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _sanitize():
    return os.environ.get("COSPEC_SANITIZE", "0") not in ("", "0")


def _want_cuda():
    if os.environ.get("COSPEC_CPU_ONLY", "0") not in ("", "0") or _sanitize():
        return False
    return bool(torch.version.cuda) and CUDA_HOME is not None


def _cuda_library_includes():
    """Headers ATen's CUDA headers include (cusparse.h, cublas_v2.h, ...).

    With a pip-installed CUDA torch they live in site-packages/nvidia/cu13/include
    (cu12/... for CUDA 12 wheels, nvidia/<lib>/include for older layouts).
    """
    roots = list(site.getsitepackages()) + [site.getusersitepackages()]
    roots.append(os.path.dirname(os.path.dirname(torch.__file__)))
    found = []
    for root in roots:
        for pattern in ("nvidia/cu*/include", "nvidia/*/include"):
            for inc in sorted(glob.glob(os.path.join(root, pattern))):
                if os.path.exists(os.path.join(inc, "cusparse.h")) or os.path.exists(
                    os.path.join(inc, "cublas_v2.h")
                ):
                    found.append(inc)
    return list(dict.fromkeys(found))


def _extension():
    cpu_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/*/*.cpp"))
    # The AVX2 / AVX-512 builds of the logit_stats row kernel go last: if the linker ever has to
    # pick one copy of an inline function, it then picks a portable one.
    cpu_sources.sort(key=lambda p: p.endswith(("_avx2.cpp", "_avx512.cpp")))
    # -fopenmp: at::parallel_for is inline OpenMP; GOMP_* resolve to the runtime libtorch loads.
    cxx = ["-O3", "-fopenmp", "-DCOSPEC_WITH_CUDA=0"]
    include_dirs = [os.path.join(ROOT, "csrc")]
    if not _want_cuda():
        link = []
        if _sanitize():  # every UBSan finding fatal, so the tests fail on it
            # -O1 (the level ASan's docs recommend) instead of -O3: the sanitized build is for
            # finding bugs, and compiles in less time (make sanitize runs on every CI run)
            san = ["-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer",
                   "-g"]
            cxx, link = [f for f in cxx if f != "-O3"] + san, ["-fsanitize=address,undefined"]
        return CppExtension("cospec_ext._C", cpu_sources, include_dirs=include_dirs,
                            extra_compile_args={"cxx": cxx}, extra_link_args=link)
    archs = os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    cu_sources = sorted(glob.glob("csrc/*/*_cuda.cu"))
    cxx = ["-O3", "-fopenmp", "-DCOSPEC_WITH_CUDA=1", f'-DCOSPEC_CUDA_ARCHS="{archs}"']
    nvcc = ["-O3", "-lineinfo", "-DCOSPEC_WITH_CUDA=1", "--expt-relaxed-constexpr"]
    include_dirs += _cuda_library_includes()
    return CUDAExtension("cospec_ext._C", cpu_sources + cu_sources, include_dirs=include_dirs,
                         extra_compile_args={"cxx": cxx, "nvcc": nvcc})


setup(
    name="cospec_ext",
    version="0.1.0",
    description="Collaborative speculative decoding (CoSpec): kernels, decoding API, arbiter",
    # cospec_ext: kernels, decoding API, arbiter, embedded task and its shipped models;
    # cospec_train (python/): the arbiter's RL training and the task's model training.
    packages=find_packages(include=["cospec_ext", "cospec_ext.*"])
    + find_packages("python", include=["cospec_train", "cospec_train.*"]),
    package_dir={"": ".", "cospec_train": "python/cospec_train"},
    package_data={"cospec_ext": ["assets/models/*/*", "assets/arbiter/*"]},
    python_requires=">=3.10",
    install_requires=["torch>=2.6", "safetensors", "numpy", "transformers>=5.0", "tokenizers", "tqdm"],
    extras_require={"flash": ["flash-attn"], "plot": ["matplotlib"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension},
    entry_points={
        "console_scripts": ["cospec=cospec_ext.cli:main"],
        # `cospec train` and `cospec task train-models`, served by cospec_train (cospec_ext/cli.py)
        "cospec.commands": ["train = cospec_train.cli:main",
                            "task-train-models = cospec_train.train_models:main"],
    },
    zip_safe=False,
)
