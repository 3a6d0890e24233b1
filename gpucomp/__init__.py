"""gpucomp: fast generative-collection compositing on GPU (CuPy) or CPU (NumPy).

Quick use::

    import gpucomp
    for item in gpucomp.generate("layers", "out", size=1000, seed=1):
        print(item.number, item.image)
"""
from gpucomp._version import __version__

__all__ = ["__version__", "extend", "generate", "rerender", "run"]


def generate(*args, **kwargs):
    """See gpucomp.outdir.pipeline.generate (imported lazily so `gpucomp --help` stays instant)."""
    from gpucomp.outdir.pipeline import generate as _generate  # deferred: keeps `import gpucomp` and `gpucomp --help` fast

    return _generate(*args, **kwargs)


def run(*args, **kwargs):
    """Render a whole collection and return its summary dict (see gpucomp.outdir.pipeline.run)."""
    from gpucomp.outdir.pipeline import run as _run  # deferred: keeps `import gpucomp` and `gpucomp --help` fast

    return _run(*args, **kwargs)


def extend(*args, **kwargs):
    """Add new unique items to an existing collection (see gpucomp.outdir.pipeline.extend)."""
    from gpucomp.outdir.pipeline import extend as _extend  # deferred: keeps `import gpucomp` and `gpucomp --help` fast

    return _extend(*args, **kwargs)


def rerender(*args, **kwargs):
    """Re-render a collection's plan with changed trait art (see gpucomp.outdir.pipeline.rerender)."""
    from gpucomp.outdir.pipeline import rerender as _rerender  # deferred: keeps `import gpucomp` and `gpucomp --help` fast

    return _rerender(*args, **kwargs)
