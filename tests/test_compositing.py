"""The CPU backend against the compositing contract (bit for bit) and the float64 reference,
on both of its paths: the fused numba kernel and the NumPy fallback."""
import functools
import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from gpucomp.backends.numpy_backend import NumpyBackend, kernel_status
from gpucomp.compositing import composite_dense, finalize, reference

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
    for combo, img in zip(combos, got):
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
    from gpucomp.layers import load_layers

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
