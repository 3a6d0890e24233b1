"""The CPU backend against the compositing contract (bit for bit) and the float64 reference,
on both of its paths: the fused numba kernel and the NumPy fallback."""
import functools
import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from gpucomp.compositing import composite_dense, finalize, reference
from gpucomp.render.numpy_backend import NumpyBackend, kernel_status

H, W = 23, 37  # not square, not a multiple of anything: catches swapped axes and stride slips


@pytest.fixture(params=[False, True], ids=["numpy", "kernel"])
def Backend(request):
    """NumpyBackend on one path: the NumPy fallback, or the fused kernel (where numba works)."""
    if request.param and not kernel_status()[0]:
        pytest.skip("numba kernel unavailable here")
    return functools.partial(NumpyBackend, kernel=request.param)


def random_trait(rng, h=H, w=W):
    """A trait with a random box and a mix of transparent, opaque and semi-transparent pixels."""
    y0, y1 = sorted(rng.choice(h + 1, 2, replace=False))
    x0, x1 = sorted(rng.choice(w + 1, 2, replace=False))
    px = rng.integers(0, 256, (y1 - y0, x1 - x0, 4), dtype=np.uint8)
    kind = rng.random(px.shape[:2])
    px[..., 3] = np.where(kind < 0.25, 0, np.where(kind < 0.55, 255, rng.integers(1, 255, px.shape[:2])))
    px[0, 0, 3] = 200  # never fully transparent
    return SimpleNamespace(box=(int(y0), int(x0), int(y1), int(x1)), pixels=px, opaque_full=False)


def background(rng, h=H, w=W):
    px = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    px[..., 3] = 255
    return SimpleNamespace(box=(0, 0, h, w), pixels=px, opaque_full=True)


def layerset(layers, h=H, w=W):
    return SimpleNamespace(height=h, width=w, layers=[SimpleNamespace(traits=t) for t in layers])


def stack(ls, combo):
    return [ls.layers[li].traits[ti] for li, ti in enumerate(combo)]


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


def make_set(seed, with_background, background_at=0, layers=4, traits=3):
    rng = np.random.default_rng(seed)
    out = []
    for li in range(layers):
        if with_background and li == background_at:
            out.append([background(rng) for _ in range(2)])
        else:
            out.append([random_trait(rng) for _ in range(traits)])
    return layerset(out)


CASES = [  # (seed, with an opaque full-canvas trait, its layer)
    (0, False, 0), (1, False, 0), (2, True, 0), (3, True, 0), (4, True, 2),
]


@pytest.mark.parametrize("seed, with_bg, at", CASES)
def test_accumulate_is_bit_identical_to_dense(Backend, seed, with_bg, at):
    ls = make_set(seed, with_bg, at)
    be = Backend()
    be.prepare(ls)
    for combo in itertools.product(*[range(len(la.traits)) for la in ls.layers]):
        dense = composite_dense((H, W), stack(ls, combo))
        acc = be.accumulate(combo).copy()
        if with_bg:
            assert acc.shape == (H * W, 3)  # the alpha lane is dropped over an opaque base
            # below the background nothing shows, above it alpha is exactly 1.0
            assert (dense[..., 3] == np.float32(1)).all()
            assert np.array_equal(bits(acc.reshape(H, W, 3)), bits(dense[..., :3]))
        else:
            assert acc.shape == (H * W, 4)
            assert np.array_equal(bits(acc.reshape(H, W, 4)), bits(dense))


@pytest.mark.parametrize("opaque_rgb", [True, False])
@pytest.mark.parametrize("seed, with_bg, at", CASES)
def test_composite_is_bit_identical_to_dense_finalize(Backend, seed, with_bg, at, opaque_rgb):
    ls = make_set(seed, with_bg, at)
    be = Backend(opaque_rgb=opaque_rgb)
    be.prepare(ls)
    combos = list(itertools.product(*[range(len(la.traits)) for la in ls.layers]))
    got = be.composite(combos)
    assert len(got) == len(combos)
    for combo, img in zip(combos, got, strict=True):
        want = finalize(composite_dense((H, W), stack(ls, combo)), opaque_rgb)
        assert img.dtype == np.uint8 and img.shape == want.shape
        assert img.shape[2] == (3 if with_bg and opaque_rgb else 4)
        assert np.array_equal(img, want)
        assert img.any()


def test_opaque_union_without_background_is_written_as_rgb(Backend):
    """Alpha reaches exactly 1 everywhere without a full-canvas trait: finalize's RGB path."""
    rng = np.random.default_rng(7)
    left = rng.integers(0, 256, (H, 20, 4), dtype=np.uint8)
    right = rng.integers(0, 256, (H, W - 20, 4), dtype=np.uint8)
    left[..., 3] = right[..., 3] = 255
    top = random_trait(rng)
    ls = layerset([[SimpleNamespace(box=(0, 0, H, 20), pixels=left, opaque_full=False)],
                   [SimpleNamespace(box=(0, 20, H, W), pixels=right, opaque_full=False)], [top]])
    be = Backend(opaque_rgb=True)
    be.prepare(ls)
    img = be.composite([(0, 0, 0)])[0]
    assert img.shape == (H, W, 3)
    assert np.array_equal(img, finalize(composite_dense((H, W), stack(ls, (0, 0, 0)))))


def test_accumulator_is_reused_but_results_are_not_shared(Backend):
    ls = make_set(5, False)
    be = Backend()
    be.prepare(ls)
    a, b = be.composite([(0, 0, 0, 0), (1, 1, 1, 1)])
    assert not np.array_equal(a, b)
    assert np.array_equal(a, finalize(composite_dense((H, W), stack(ls, (0, 0, 0, 0))), True))


def check_against_reference(img, ref):
    """|out - exact| <= 1: every channel where opaque; alpha everywhere and colour where alpha > 0."""
    if img.shape[2] == 3:
        img = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    out = img.astype(np.float64)
    diff = np.abs(out - ref)
    assert (diff[..., 3] <= 1).all(), diff[..., 3].max()
    shown = img[..., 3] > 0
    assert (diff[..., :3][shown] <= 1).all(), diff[..., :3][shown].max()
    assert (img[..., :3][~shown] == 0).all()  # nothing to show: colour 0 by the contract
    return shown


@pytest.mark.parametrize("seed, with_bg, at", CASES)
def test_close_to_float64_reference(Backend, seed, with_bg, at):
    ls = make_set(seed, with_bg, at, layers=5, traits=2)
    be = Backend(opaque_rgb=False)
    be.prepare(ls)
    semi = 0
    for combo in itertools.product(*[range(len(la.traits)) for la in ls.layers]):
        img = be.composite([combo])[0]
        assert img.any() and img[..., 3].any()
        ref = reference((H, W), stack(ls, combo))
        check_against_reference(img, ref)
        semi += int(((img[..., 3] > 0) & (img[..., 3] < 255)).sum())
        if with_bg:
            assert (img[..., 3] == 255).all()
    assert semi > 0 or with_bg  # the semi-transparent case really was exercised


def test_low_alpha_stack_close_to_reference(Backend):
    """Many faint layers: the colour is c / a with a small a, where float32 error grows most."""
    rng = np.random.default_rng(9)
    layers = []
    for _ in range(8):
        px = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
        px[..., 3] = rng.integers(1, 6, (H, W))
        layers.append([SimpleNamespace(box=(0, 0, H, W), pixels=px, opaque_full=False)])
    ls = layerset(layers)
    be = Backend(opaque_rgb=False)
    be.prepare(ls)
    combo = (0,) * 8
    img = be.composite([combo])[0]
    assert np.array_equal(img, finalize(composite_dense((H, W), stack(ls, combo)), False))
    shown = check_against_reference(img, reference((H, W), stack(ls, combo)))
    assert shown.any() and (img[..., 3] < 255).all()


def test_demo_layers_match_dense(Backend, demo_layers):
    from gpucomp.layers.layerset import load_layers

    ls = load_layers(demo_layers)
    be = Backend()
    be.prepare(ls)
    rng = np.random.default_rng(0)
    for _ in range(10):
        combo = [int(rng.integers(len(la.traits))) for la in ls.layers]
        img = be.composite([combo])[0]
        traits = stack(ls, combo)
        assert np.array_equal(img, finalize(composite_dense((ls.height, ls.width), traits)))
        check_against_reference(img, reference((ls.height, ls.width), traits))


# --- the final rounding, on its own ---------------------------------------------------------------
#
# out_a = trunc(a * 255 + 0.5), out_c = 0 if out_a == 0 else trunc(min(c / a, 255) + 0.5), every
# operation in float32. The backends and the spec share `finalize`, so comparing them cannot catch
# a change of rounding; these expected values are worked out by hand from the contract. The
# interesting inputs are exact halves with an even integer part, where rounding half to even
# (np.rint, Python's round) goes down and trunc(x + 0.5) goes up, and their float32 neighbours.

F = np.float32
BELOW_HALF = np.nextafter(F(0.5), F(0))  # 0.49999997 = 0.5 - 2**-25


def below(x):
    return np.nextafter(F(x), F(0))


def above(x):
    return np.nextafter(F(x), F(1000))


# alphas whose float32 product with 255 is exactly the value named (found by search, checked below)
ALPHA_64_5 = F(0.2529412)  # a * 255 == 64.5
ALPHA_0_5 = F(0.0019607844)  # a * 255 == 0.5
ALPHA_BELOW_HALF = F(0.0019607842)  # a * 255 == 0.49999997


def test_the_chosen_alphas_give_the_products_named():
    assert F(ALPHA_64_5 * F(255)) == F(64.5)
    assert F(ALPHA_0_5 * F(255)) == F(0.5)
    assert F(ALPHA_BELOW_HALF * F(255)) == BELOW_HALF
    assert F(F(0.5) * F(255)) == F(127.5) and F(F(50.25) / F(0.5)) == F(100.5)


# (premultiplied colour, alpha) -> (colour out, alpha out), by hand
NON_OPAQUE_CASES = [
    ((F(50.25), F(0.5)), (101, 128)),  # c / a = 100.5 -> 101 (half-even: 100); a * 255 = 127.5 -> 128
    ((below(50.25), F(0.5)), (100, 128)),  # c / a = 100.5 - 2**-17 -> 100
    ((above(50.25), F(0.5)), (101, 128)),
    ((F(50.75), F(0.5)), (102, 128)),  # 101.5 -> 102
    ((F(0.25), F(0.5)), (1, 128)),  # c / a = 0.5 -> 1 (half-even: 0)
    ((F(200), F(0.5)), (255, 128)),  # c / a = 400: min(., 255) first, never a wrapped byte
    ((F(127.75), F(0.5)), (255, 128)),  # c / a = 255.5 -> min -> 255
    ((F(10), ALPHA_64_5), (40, 65)),  # a * 255 = 64.5 -> 65 (half-even: 64); 10 / a = 39.53... -> 40
    ((F(0), ALPHA_64_5), (0, 65)),
    ((F(0.001), ALPHA_0_5), (1, 1)),  # a * 255 = 0.5 -> 1; c / a = 0.51 -> 1
    ((F(0.001), ALPHA_BELOW_HALF), (1, 1)),  # 0.49999997 + 0.5 rounds to 1.0 in float32 -> 1, as on the GPU
    ((F(100), F(0.0009)), (0, 0)),  # a * 255 = 0.2295 -> 0: colour 0 whatever c / a is
    ((F(100.5), F(1)), (101, 255)),  # alpha exactly 1 in a non-opaque image: c itself, 100.5 -> 101
    ((below(100.5), F(1)), (100, 255)),
    ((F(254.5), below(1)), (255, 255)),  # a * 255 = 254.99998 -> 255; 254.5 / a = 254.50002 -> 255
    ((BELOW_HALF, F(1)), (1, 255)),  # 0.49999997 + 0.5 == 1.0 in float32
]


def accumulator(cases):
    """(1, len(cases), 4) float32 accumulator, colour c in all three channels."""
    return np.array([[[c, c, c, a] for (c, a), _ in cases]], np.float32)


def test_non_opaque_results_round_half_up_after_unpremultiplying():
    out = finalize(accumulator(NON_OPAQUE_CASES), opaque_rgb=True)
    assert out.dtype == np.uint8 and out.shape == (1, len(NON_OPAQUE_CASES), 4)
    want = [[c, c, c, a] for _, (c, a) in NON_OPAQUE_CASES]
    assert out[0].tolist() == want


# colour of a pixel whose alpha is exactly 1 -> byte, by hand
OPAQUE_CASES = [(F(100.5), 101), (below(100.5), 100), (above(100.5), 101), (F(0.5), 1), (BELOW_HALF, 1),
                (F(0), 0), (F(101.5), 102), (F(254.5), 255), (F(255), 255), (below(0.5 - 2**-25), 0)]


@pytest.mark.parametrize("opaque_rgb", [True, False])
def test_opaque_results_round_half_up(opaque_rgb):
    acc = np.array([[[c, c, c, 1.0] for c, _ in OPAQUE_CASES]], np.float32)
    out = finalize(acc, opaque_rgb)
    want = [[b, b, b] + ([] if opaque_rgb else [255]) for _, b in OPAQUE_CASES]
    assert out[0].tolist() == want


def layer_of(traits, opacity=1.0):
    return SimpleNamespace(traits=traits, blend="normal", opacity=opacity)


def test_backend_rounds_exact_halves_up():
    """Through NumpyBackend.composite: a layer at opacity 0.5 over an opaque base averages the
    two colours exactly (as = 0.5, ias = 0.5), so odd sums land on halves: 100 and 101 give
    100.5 -> 101, 0 and 1 give 0.5 -> 1. Alone (no base), opacity 0.2529412 gives alpha
    0.2529412, 64.5 on the 0..255 scale -> 65, and the colour c * a / a -> c."""
    h, w = 1, 3
    base = SimpleNamespace(box=(0, 0, 1, 3), pixels=np.array([[[100, 0, 7, 255], [0, 0, 0, 255], [9, 9, 9, 255]]],
                                                             np.uint8), opaque_full=True)
    top = SimpleNamespace(box=(0, 0, 1, 3), pixels=np.array([[[101, 1, 7, 255], [255, 2, 3, 255], [10, 12, 9, 255]]],
                                                            np.uint8), opaque_full=False)
    be = NumpyBackend(opaque_rgb=True)
    be.prepare(SimpleNamespace(height=h, width=w, layers=[layer_of([base]), layer_of([top], opacity=0.5)]))
    assert be.composite([(0, 0)])[0].tolist() == [[[101, 1, 7], [128, 1, 2], [10, 11, 9]]]
    # 255 / 2 = 127.5 -> 128, 2 / 2 = 1, 3 / 2 = 1.5 -> 2, 19 / 2 = 9.5 -> 10, 21 / 2 = 10.5 -> 11
    alone = SimpleNamespace(box=(0, 0, 1, 1), pixels=np.array([[[40, 41, 255, 255]]], np.uint8), opaque_full=False)
    be = NumpyBackend(opaque_rgb=True)
    be.prepare(SimpleNamespace(height=1, width=2, layers=[layer_of([alone], opacity=float(ALPHA_64_5))]))
    assert be.composite([(0,)])[0].tolist() == [[[40, 41, 255, 65], [0, 0, 0, 0]]]


FINAL8_SHIM = r"""
#include <cmath>
#define __device__
#define __forceinline__ inline
struct float4 { float x, y, z, w; };
struct uchar4 { unsigned char x, y, z, w; };
static inline uchar4 make_uchar4(unsigned char x, unsigned char y, unsigned char z, unsigned char w) {
    return uchar4{x, y, z, w};
}
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
"""
FINAL8_DRIVER = r"""
extern "C" void run(int n, const float* acc, unsigned char* out) {
    for (int i = 0; i < n; ++i) {
        uchar4 o = final8(float4{acc[4 * i], acc[4 * i + 1], acc[4 * i + 2], acc[4 * i + 3]});
        out[4 * i] = o.x; out[4 * i + 1] = o.y; out[4 * i + 2] = o.z; out[4 * i + 3] = o.w;
    }
}
"""


def test_cuda_kernel_final_rounding_on_the_host(tmp_path):
    """kernels/composite.cu's final8, compiled for the host (IEEE float32, no contraction), on
    the same hand-computed cases: the GPU rounds as the contract says, not only as NumPy does."""
    import ctypes
    import re
    import shutil
    import subprocess
    from pathlib import Path

    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    src = (Path(__file__).resolve().parent.parent / "kernels" / "composite.cu").read_text()
    body = re.search(r"__device__ __forceinline__ uchar4 final8\(float4 acc\) \{.*?\n\}\n", src, re.S)
    assert body, "final8 not found in kernels/composite.cu"
    (tmp_path / "final8.cpp").write_text(FINAL8_SHIM + body.group(0) + FINAL8_DRIVER)
    r = subprocess.run([cxx, "-O2", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC",
                        str(tmp_path / "final8.cpp"), "-o", str(tmp_path / "final8.so")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    run = ctypes.CDLL(str(tmp_path / "final8.so")).run
    cases = NON_OPAQUE_CASES + [((c, F(1)), (b, 255)) for c, b in OPAQUE_CASES]
    acc = np.ascontiguousarray(accumulator(cases).reshape(-1, 4))
    out = np.zeros((len(cases), 4), np.uint8)
    run(ctypes.c_int(len(cases)), ctypes.c_void_p(acc.ctypes.data), ctypes.c_void_p(out.ctypes.data))
    assert out.tolist() == [[c, c, c, a] for _, (c, a) in cases]
