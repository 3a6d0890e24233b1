"""gpucomp: fast generative-collection compositing on GPU (CuPy) or CPU (NumPy).

Quick use::

    import gpucomp
    for item in gpucomp.generate("layers", "out", size=1000, seed=1):
        print(item.number, item.image)
"""
__version__ = "0.1.0"


def generate(*args, **kwargs):
    """See gpucomp.pipeline.generate (imported lazily so `gpucomp --help` stays instant)."""
    from .pipeline import generate as _generate

    return _generate(*args, **kwargs)


def run(*args, **kwargs):
    """Render a whole collection and return its summary dict (see gpucomp.pipeline.run)."""
    from .pipeline import run as _run

    return _run(*args, **kwargs)
