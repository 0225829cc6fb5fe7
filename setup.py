"""Builds the one extension ``pcseg._C`` from ``csrc/``.

CPU kernels are always compiled. CUDA kernels are added when ``PCSEG_WITH_CUDA=1``, or, with the
default ``PCSEG_WITH_CUDA=auto``, when torch is a CUDA build and a CUDA toolkit (``CUDA_HOME``)
exists; whether a GPU is visible never matters, so GPU-less machines can build CUDA wheels.
"""

from __future__ import annotations

import os
from glob import glob

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension


def _with_cuda() -> bool:
    choice = os.environ.get("PCSEG_WITH_CUDA", "auto").lower()
    possible = torch.version.cuda is not None and CUDA_HOME is not None
    if choice in {"1", "true", "yes"}:
        if not possible:
            raise RuntimeError(
                "PCSEG_WITH_CUDA=1 needs a CUDA build of torch and a CUDA toolkit "
                f"(torch.version.cuda={torch.version.cuda}, CUDA_HOME={CUDA_HOME})"
            )
        return True
    return choice == "auto" and possible


def _extension():
    sources = sorted(glob("csrc/*.cpp") + glob("csrc/cpu/*.cpp"))
    # Without OpenMP, at::parallel_for in the CPU kernels runs everything on one thread; torch
    # itself is built with it (libgomp), so the extension shares torch's thread pool.
    cxx, link = ["-O3", "-fopenmp"], ["-fopenmp"]
    if _with_cuda():
        sources += sorted(glob("csrc/cuda/*.cu"))
        return CUDAExtension(
            "pcseg._C",
            sources,
            define_macros=[("WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-Xcompiler", "-fopenmp"]},
            extra_link_args=link,
        )
    return CppExtension("pcseg._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link)


setup(
    name="pcseg-le",
    version="0.1.0",
    description="Label-efficient semantic segmentation of point clouds and LiDAR",
    packages=find_packages(include=["pcseg", "pcseg.*"]),
    python_requires=">=3.10",
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension},
)
