"""The fused CPU kernel (numba) against the NumPy path and the dense contract, byte for byte;
its run layout; the switch between the two paths; parallel calls; no FMA in its machine code."""
import os
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from gpucomp.compositing import MODES, composite_dense, finalize
from gpucomp.encode.png import filter_rows
from gpucomp.encode.rendered import Filtered
from gpucomp.render import numpy_backend as nb
from gpucomp.render.cpu_spans import build_pool, trait_runs
from gpucomp.render.numpy_backend import NO_JIT_ENV, NumpyBackend

pytestmark = pytest.mark.skipif(not nb.kernel_status()[0], reason="numba kernel unavailable here")

OPACITIES = (1.0, 0.6, 0.0)


def trait(rng, h, w, full=False, alpha_mix=(0.25, 0.55)):
    """Random box (or the whole canvas) with transparent, opaque and semi-transparent pixels."""
    if full:
        y0, x0, y1, x1 = 0, 0, h, w
    else:
        y0, y1 = sorted(rng.choice(h + 1, 2, replace=False))
        x0, x1 = sorted(rng.choice(w + 1, 2, replace=False))
    px = rng.integers(0, 256, (y1 - y0, x1 - x0, 4), dtype=np.uint8)
    k = rng.random(px.shape[:2])
    px[..., 3] = np.where(k < alpha_mix[0], 0, np.where(k < alpha_mix[1], 255, rng.integers(1, 255, px.shape[:2])))
    px[0, 0, 3] = 200
    return SimpleNamespace(box=(int(y0), int(x0), int(y1), int(x1)), pixels=px, opaque_full=False)


def background(rng, h, w):
    px = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    px[..., 3] = 255
    return SimpleNamespace(box=(0, 0, h, w), pixels=px, opaque_full=True)


def layer_set(seed, h, w, base, mode, opacity):
    """4 layers: a base (opaque full canvas, semi full canvas or none), two plain layers, then a
    layer in `mode` at `opacity` with a full-canvas opaque trait (it must hide nothing) and a box."""
    rng = np.random.default_rng(seed)
    first = {"opaque": lambda: background(rng, h, w), "semi": lambda: trait(rng, h, w, full=True),
             "none": lambda: trait(rng, h, w)}[base]
    top = [background(rng, h, w), trait(rng, h, w)]
    layers = [SimpleNamespace(traits=[first(), first()]), SimpleNamespace(traits=[trait(rng, h, w)]),
              SimpleNamespace(traits=[trait(rng, h, w), trait(rng, h, w, alpha_mix=(0.0, 0.0))]),
              SimpleNamespace(traits=top, blend=mode, opacity=opacity)]
    return SimpleNamespace(height=h, width=w, layers=layers)


def combos_of(ls):
    return [(a, b, c, d) for a in range(2) for b in range(1) for c in range(2) for d in range(2)]


def dense(ls, combo):
    traits = [la.traits[t] for la, t in zip(ls.layers, combo, strict=True)]
    blends = [(getattr(la, "blend", "normal"), getattr(la, "opacity", 1.0)) for la in ls.layers]
    return composite_dense((ls.height, ls.width), traits, blends)


def backends(ls, opaque_rgb):
    out = []
    for kernel in (True, False):
        be = NumpyBackend(opaque_rgb=opaque_rgb, kernel=kernel)
        be.prepare(ls)
        out.append(be)
    assert out[0].pool is not None and out[1].pool is None
    return out


@pytest.mark.parametrize("base", ["opaque", "semi", "none"])
@pytest.mark.parametrize("opacity", OPACITIES)
@pytest.mark.parametrize("mode", MODES)
def test_kernel_equals_numpy_path_and_dense(mode, opacity, base):
    h, w = 13, 2 * MODES.index(mode) + 17  # odd widths, several of them
    ls = layer_set(MODES.index(mode) * 10 + OPACITIES.index(opacity), h, w, base, mode, opacity)
    for opaque_rgb in (True, False):
        kern, numpy = backends(ls, opaque_rgb)
        for combo in combos_of(ls):
            want = finalize(dense(ls, combo), opaque_rgb)
            got = kern.composite([combo])[0]
            assert got.shape == want.shape and np.array_equal(got, want), (combo, opaque_rgb)
            assert np.array_equal(numpy.composite([combo])[0], got)
            acc_k, acc_n = kern.accumulate(combo).copy(), numpy.accumulate(combo).copy()
            assert acc_k.shape == acc_n.shape
            assert np.array_equal(acc_k.view(np.uint32), acc_n.view(np.uint32))  # the float32 bits too


@pytest.mark.parametrize("base", ["opaque", "semi", "none"])
@pytest.mark.parametrize("mode", ["normal", "multiply"])
def test_rows_filtered_in_the_kernel_are_the_encoders_scanlines(mode, base):
    """Over an opaque background the kernel writes PNG scanlines (Up or Sub) itself: the same bytes
    as encode.filter_rows of its pixels; other items, and other filters, come back as pixels."""
    ls = layer_set(7 + MODES.index(mode), 11, 29, base, mode, 1.0)
    for opaque_rgb in (True, False):
        kern, numpy = backends(ls, opaque_rgb)
        for combo in combos_of(ls):
            want = numpy.composite([combo])[0]
            # an opaque full-canvas trait of a plain layer: the base, or the top layer's first trait
            over_bg = base == "opaque" or (mode == "normal" and combo[3] == 0)
            for kind in ("up", "sub", "paeth"):
                got = kern.composite_filtered(combo, kind)
                if not over_bg or kind == "paeth":
                    assert isinstance(got, np.ndarray) and np.array_equal(got, want)
                    continue
                assert isinstance(got, Filtered), (combo, kind)
                assert (got.width, got.height, got.channels) == (29, 11, want.shape[2])
                assert np.array_equal(got.rows, filter_rows(want, kind)), (combo, kind, opaque_rgb)


def test_rows_the_upper_layers_miss_are_the_backgrounds_bytes():
    """A row no upper trait touches is copied from the background; rows they touch are
    composited only over the span they cover: every byte still equals the dense contract."""
    rng = np.random.default_rng(5)
    h, w = 40, 64
    bg = background(rng, h, w)
    small = trait(rng, 5, 7, full=True)
    small.box = (30, 50, 35, 57)  # bottom right only: most rows and columns are background
    ls = SimpleNamespace(height=h, width=w, layers=[SimpleNamespace(traits=[bg]), SimpleNamespace(traits=[small])])
    kern, _ = backends(ls, True)
    got = kern.composite([(0, 0)])[0]
    assert np.array_equal(got, finalize(dense(ls, (0, 0)), True))
    assert np.array_equal(got[:30], bg.pixels[:30, :, :3]) and np.array_equal(got[:, :50], bg.pixels[:, :50, :3])
    assert np.array_equal(kern.composite_filtered((0, 0), "up").rows, filter_rows(got, "up"))


def kernel_runs(px, plain):
    """cpu_spans.trait_runs' three arrays as the kernel writes them into a pool (run_counts, fill_runs)."""
    from gpucomp.render import cpu_kernel

    n_runs, n_bytes = cpu_kernel.run_counts(px, plain)
    spans, rowptr = np.empty((n_runs, 4), np.int64), np.empty(px.shape[0] + 1, np.int64)
    data = np.empty(n_bytes, np.uint8)
    cpu_kernel.fill_runs(px, plain, 0, data, spans, rowptr, 0, 0)
    ys = np.repeat(np.arange(px.shape[0]), np.diff(rowptr))
    return ys, spans[:, [0, 1, 3]], data


def test_the_kernels_run_indexing_equals_the_numpy_definition():
    rng = np.random.default_rng(3)
    for trial in range(150):
        h, w = (int(v) for v in rng.integers(1, 10, 2))
        px = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        k = rng.random((h, w))
        px[..., 3] = np.where(k < 0.3, 0, np.where(k < 0.6, 255, px[..., 3]))
        px[..., 3] = 255 if trial % 7 == 0 else (0 if trial % 11 == 0 else px[..., 3])
        for plain in (True, False):
            for want, got in zip(trait_runs(px, plain), kernel_runs(px, plain), strict=True):
                assert want.dtype == got.dtype and np.array_equal(want, got), (trial, plain)


@pytest.mark.parametrize("base", ["opaque", "semi", "none"])
def test_the_pool_filled_in_place_equals_the_numpy_definition(base):
    """prepare counts, allocates once and fills each trait's slices in threads: the same pool as
    pooling cpu_spans.trait_runs of every trait (empty traits included)."""
    ls = layer_set(11, 9, 23, base, "multiply", 0.6)
    ls.layers[1].traits.append(SimpleNamespace(box=None, pixels=np.zeros((0, 0, 4), np.uint8), opaque_full=False))
    kern, _ = backends(ls, True)
    forms = []
    for layer, plain in zip(ls.layers, (True, True, True, False), strict=True):
        forms.append([(t.box, *trait_runs(t.pixels, plain), int(t.opaque_full and plain)) if t.box else
                      (None, np.empty(0, np.int64), np.empty((0, 3), np.int64), np.empty(0, np.uint8), 0)
                      for t in layer.traits])
    want = build_pool(forms)
    for name in ("pixels", "spans", "rowptr", "tinfo"):
        assert np.array_equal(getattr(kern.pool, name), getattr(want, name)), name
    assert kern.pool.first == want.first


def test_alpha_tables_are_what_the_kernel_computes():
    """_over computes SA[a] as float32(a) / 255 and INV[a] as 1 - SA[a] instead of looking them up."""
    from gpucomp.compositing import INV, SA

    a = np.arange(256, dtype=np.float32)
    sa = a / np.float32(255)
    assert np.array_equal(sa.view(np.uint32), SA.view(np.uint32))
    assert np.array_equal((np.float32(1) - sa).view(np.uint32), INV.view(np.uint32))


def test_runs_split_opaque_from_semi_and_drop_transparent():
    px = np.zeros((2, 7, 4), np.uint8)
    px[0, :, 3] = [0, 255, 255, 9, 9, 0, 255]
    px[1, :, 3] = [5, 0, 0, 0, 0, 0, 0]
    px[..., :3] = np.arange(2 * 7 * 3, dtype=np.uint8).reshape(2, 7, 3)
    ys, runs, data = trait_runs(px, plain=True)
    assert ys.tolist() == [0, 0, 0, 1]
    assert runs.tolist() == [[1, 3, 1], [3, 5, 0], [6, 7, 1], [0, 1, 0]]
    want = [px[0, 1, :3], px[0, 2, :3], px[0, 3], px[0, 4], px[0, 6, :3], px[1, 0]]  # RGB if opaque
    assert np.array_equal(data, np.concatenate(want))
    ys, runs, data = trait_runs(px, plain=False)  # a blended layer: every covered pixel as RGBA
    assert runs.tolist() == [[1, 5, 0], [6, 7, 0], [0, 1, 0]] and len(data) == 6 * 4


def test_an_opaque_box_is_one_rgb_run_a_row():
    px = np.random.default_rng(0).integers(0, 256, (3, 5, 4), dtype=np.uint8)
    px[..., 3] = 255
    ys, runs, data = trait_runs(px, plain=True)
    assert ys.tolist() == [0, 1, 2] and runs.tolist() == [[0, 5, 1]] * 3
    assert np.array_equal(data, px[..., :3].reshape(-1))
    ys, runs, data = trait_runs(px, plain=False)  # blended: the formula for every pixel
    assert runs.tolist() == [[0, 5, 0]] * 3 and np.array_equal(data, px.reshape(-1))


def test_full_canvas_trait_of_a_plain_layer_hides_what_is_below():
    ls = layer_set(3, 9, 11, "opaque", "normal", 1.0)
    be = NumpyBackend(kernel=True)
    be.prepare(ls)
    full = [bool(f) for f in be.pool.tinfo[:, 3]]
    assert full == [True, True, False, False, False, True, False]  # both bases and the plain top one
    assert be.accumulate((0, 0, 0, 0)).shape == (9 * 11, 3)


def test_release_pixels_drops_the_dense_form():
    ls = layer_set(4, 9, 11, "none", "multiply", 0.5)
    be = NumpyBackend(kernel=True)
    be.prepare(ls, release_pixels=True)
    assert all(t.pixels is None for la in ls.layers for t in la.traits)
    assert be.composite([(1, 0, 1, 1)])[0].any()


def test_parallel_calls_give_the_same_bytes():
    """The encode workers call the kernel from several threads at once (it releases the GIL)."""
    ls = layer_set(5, 64, 97, "semi", "soft-light", 0.6)
    be = NumpyBackend(kernel=True)
    be.prepare(ls)
    combos = combos_of(ls) * 4
    want = [be.composite([c])[0] for c in combos]
    got = [None] * len(combos)

    def work(k):
        for i in range(k, len(combos), 4):
            got[i] = be.composite([combos[i]])[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_env_var_selects_the_numpy_path(monkeypatch):
    monkeypatch.setenv(NO_JIT_ENV, "1")
    ok, why = nb.kernel_status()
    assert not ok and NO_JIT_ENV in why
    be = NumpyBackend()
    be.prepare(layer_set(1, 5, 7, "none", "normal", 1.0))
    assert be.pool is None and be.stats()["compositor"] == "numpy"
    monkeypatch.setenv(NO_JIT_ENV, "0")
    assert nb.kernel_status()[0]


def run_python(code: str, **env) -> str:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_without_numba_the_numpy_path_is_used():
    out = run_python("import sys; sys.modules['numba'] = None\n"
                     "from gpucomp.render.numpy_backend import NumpyBackend, kernel_status\n"
                     "print(kernel_status()); print(NumpyBackend().uses_kernel)")
    assert "numba unavailable" in out and out.strip().endswith("False")


@pytest.mark.slow
def test_machine_code_has_no_fma_and_the_disk_cache_works(tmp_path):
    """fastmath off must keep a*b+c as two roundings (no vfmadd) in the kernel's machine code (the
    small helpers, _over among them, are inlined into composite_item); a second process loads the
    kernel from numba's cache instead of compiling it."""
    code = ("import time, warnings; warnings.simplefilter('ignore')\n"
            "from gpucomp.render import cpu_kernel as k\n"
            "k.warm_up(); hits = sum(k.composite_item.stats.cache_hits.values())\n"
            "asm = ''.join(''.join(f.inspect_asm().values()) for f in (k.composite_item, k._blend))\n"
            "print(len(asm), any(op in asm for op in ('vfmadd', 'vfmsub', 'vfnmadd', 'vfnmsub')), hits)")
    size, fma, hits = run_python(code, NUMBA_CACHE_DIR=str(tmp_path)).split()
    assert int(size) > 10_000 and fma == "False" and hits == "0"  # compiled: nothing cached yet
    assert any(p.suffix == ".nbi" for p in tmp_path.rglob("*"))
    _, _, hits = run_python(code, NUMBA_CACHE_DIR=str(tmp_path)).split()
    assert int(hits) >= 1  # the second process loaded the machine code instead of compiling it
