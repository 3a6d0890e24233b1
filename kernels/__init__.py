"""CUDA C sources for the cuda backend; shipped in the wheel as package `gpucomp._kernels`."""
