"""Import a CUDA build of ``pcseg._C`` and check every op has a CUDA kernel registered.

Usage: python tools/check_cuda_build.py BUILD_LIB_DIR. Runs on machines without a GPU.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch


def main(build_lib: Path) -> int:
    [library] = sorted((build_lib / "pcseg").glob("_C*.so"))
    spec = importlib.util.spec_from_file_location("pcseg._C", library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.compiled_with_cuda():
        print(f"{library}: built without CUDA kernels", file=sys.stderr)
        return 1
    ops = sorted(s.name for s in torch._C._jit_get_all_schemas() if s.name.startswith("pcseg::"))
    missing = [op for op in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")]
    if missing:
        print(f"{library}: no CUDA kernel registered for {missing}", file=sys.stderr)
        return 1
    print(f"{library}: CUDA kernels for {', '.join(ops)} (torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
