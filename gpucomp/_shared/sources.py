"""The CUDA sources (kernels/*.cu) as text: from a checkout's kernels/ folder, else from the installed
package (gpucomp._kernels, the same files shipped as package data). render/kernels.py compiles them;
encode/gpu_deflate.py builds deflate.cu as host C++ for the tests."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

CHECKOUT_KERNELS = Path(__file__).resolve().parents[2] / "kernels"  # gpucomp/_shared/ -> the repository's kernels/


def kernel_source(name: str = "composite.cu") -> str:
    checkout = CHECKOUT_KERNELS / name
    if checkout.is_file():
        return checkout.read_text()
    return files("gpucomp._kernels").joinpath(name).read_text()
