"""Compositing the items: the NumPy/numba CPU backend, the CUDA backend and its buffers and kernels,
the prefix cache, batch scheduling, the VRAM budget, and `select`, which chooses between them and says why.
"""
