"""gpucomp: fast generative-collection compositing on GPU (CuPy) or CPU (NumPy).

Quick use::

    import gpucomp
    for item in gpucomp.generate("layers", "out", size=1000, seed=1):
        print(item.number, item.image)

The Python API is the names below, each loaded from its room on first use (so `import gpucomp` and
`gpucomp --help` load nothing they do not need): a run (`generate`, `run`, `extend`, `rerender`,
`resume`: gpucomp/outdir/pipeline.py), changing a finished collection's metadata (`update_metadata`:
gpucomp/outdir/update.py) and what is made from a finished collection (`make_sheets`, `make_reel`,
`make_gallery`, `export`: gpucomp/publish/). Errors are gpucomp.errors.GpucompError and its kinds.
"""
from importlib import import_module

from gpucomp._version import __version__

API = {  # name -> the module that defines it
    "generate": "gpucomp.outdir.pipeline",
    "run": "gpucomp.outdir.pipeline",
    "extend": "gpucomp.outdir.pipeline",
    "rerender": "gpucomp.outdir.pipeline",
    "resume": "gpucomp.outdir.pipeline",
    "update_metadata": "gpucomp.outdir.update",
    "make_sheets": "gpucomp.publish.preview",
    "make_reel": "gpucomp.publish.reel",
    "make_gallery": "gpucomp.publish.gallery",
    "export": "gpucomp.publish.export",
}

__all__ = ["__version__", *API]


def __getattr__(name: str):
    """PEP 562: the API's functions are imported when first named (deferred: keeps `import gpucomp`
    and `gpucomp --help` fast)."""
    if name not in API:
        raise AttributeError(f"module 'gpucomp' has no attribute {name!r}")
    value = getattr(import_module(API[name]), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
