"""gpucomp: fast generative-collection compositing on GPU (CuPy) or CPU (NumPy).

Quick use::

    import gpucomp
    for item in gpucomp.generate("layers", "out", size=1000, seed=1):
        print(item.number, item.image)
"""
__version__ = "0.1.0"


def generate(*args, **kwargs):
    """See gpucomp.outdir.pipeline.generate (imported lazily so `gpucomp --help` stays instant)."""
    from gpucomp.outdir.pipeline import generate as _generate

    return _generate(*args, **kwargs)


def run(*args, **kwargs):
    """Render a whole collection and return its summary dict (see gpucomp.outdir.pipeline.run)."""
    from gpucomp.outdir.pipeline import run as _run

    return _run(*args, **kwargs)


def extend(*args, **kwargs):
    """Add new unique items to an existing collection (see gpucomp.outdir.pipeline.extend)."""
    from gpucomp.outdir.pipeline import extend as _extend

    return _extend(*args, **kwargs)


def rerender(*args, **kwargs):
    """Re-render a collection's plan with changed trait art (see gpucomp.outdir.pipeline.rerender)."""
    from gpucomp.outdir.pipeline import rerender as _rerender

    return _rerender(*args, **kwargs)
