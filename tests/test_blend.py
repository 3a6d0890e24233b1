"""Blend modes and opacity (compositing.py): the NumPy backend against the dense float32 spec
(bit for bit), against a scalar transcription of the documented operation order, and against
the exact float64 W3C reference (within 1 per 8-bit channel); plain stacks keep their bytes."""
import hashlib
import itertools
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from gpucomp.compositing import (
    BLEND_MODES,
    INV,
    MODES,
    SA,
    blend_f32,
    blend_rows,
    composite_dense,
    finalize,
    opacity_tables,
    reference,
)
from gpucomp.render.numpy_backend import NumpyBackend

F32 = np.float32
H, W = 23, 37
BLENDED = [m for m in MODES if m != "normal"]
OPACITIES = [1.0, 0.6, 0.013]


# ---- inputs ---------------------------------------------------------------------------------
def random_trait(rng, h=H, w=W, full=False):
    """Random box (or the whole canvas) with transparent, opaque and semi-transparent pixels."""
    if full:
        y0, x0, y1, x1 = 0, 0, h, w
    else:
        y0, y1 = sorted(rng.choice(h + 1, 2, replace=False))
        x0, x1 = sorted(rng.choice(w + 1, 2, replace=False))
    px = rng.integers(0, 256, (y1 - y0, x1 - x0, 4), dtype=np.uint8)
    kind = rng.random(px.shape[:2])
    px[..., 3] = np.where(kind < 0.2, 0, np.where(kind < 0.5, 255, rng.integers(1, 255, px.shape[:2])))
    if full:  # every pixel covered: the backend's in-place (no gather) path
        px[..., 3] = np.maximum(px[..., 3], 1)
    px[0, 0, 3] = 200
    return SimpleNamespace(box=(int(y0), int(x0), int(y1), int(x1)), pixels=px, opaque_full=False)


def opaque_trait(rng, h=H, w=W):
    px = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    px[..., 3] = 255
    return SimpleNamespace(box=(0, 0, h, w), pixels=px, opaque_full=True)


def make_stack(seed, mode, opacity, base):
    """Layers (bottom first): base, a normal semi layer, then three layers in `mode`/`opacity`:
    sparse traits, a full-canvas semi trait, an opaque full-canvas trait (which, blended, hides
    nothing) and a full-canvas trait with one transparent pixel. base: 'opaque' (a plain
    full-canvas background), 'semi' or 'none'."""
    rng = np.random.default_rng(seed)
    layers = []
    if base == "opaque":
        layers.append(([opaque_trait(rng), opaque_trait(rng)], "normal", 1.0))
    elif base == "semi":
        layers.append(([random_trait(rng, full=True), random_trait(rng)], "normal", 1.0))
    layers.append(([random_trait(rng), random_trait(rng)], "normal", 1.0))
    layers.append(([random_trait(rng), random_trait(rng)], mode, opacity))
    layers.append(([random_trait(rng, full=True), opaque_trait(rng)], mode, opacity))
    near_full = random_trait(rng, full=True)
    near_full.pixels[H // 2, W // 3, 3] = 0  # all but one pixel covered: the gather/scatter path
    layers.append(([random_trait(rng), random_trait(rng), near_full], mode, opacity))
    return SimpleNamespace(height=H, width=W, layers=[SimpleNamespace(traits=t, blend=b, opacity=o)
                                                      for t, b, o in layers])


def stack(ls, combo):
    traits = [ls.layers[li].traits[ti] for li, ti in enumerate(combo)]
    return traits, [(la.blend, la.opacity) for la in ls.layers]


def combos_of(ls):
    return list(itertools.product(*[range(len(la.traits)) for la in ls.layers]))


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


def test_modes_are_the_config_modes():
    assert MODES == BLEND_MODES


# ---- bit-exact against the dense float32 spec -------------------------------------------------
@pytest.mark.parametrize("base", ["opaque", "semi", "none"])
@pytest.mark.parametrize("opacity", OPACITIES)
@pytest.mark.parametrize("mode", MODES)
def test_backend_bit_identical_to_dense_spec(mode, opacity, base):
    ls = make_stack(100 * MODES.index(mode) + 10 * OPACITIES.index(opacity) + len(base), mode, opacity, base)
    be = NumpyBackend(opaque_rgb=False)
    be.prepare(ls)
    plain = mode == "normal" and opacity == 1.0
    assert (be.blends[-1] is None) == plain
    for combo in combos_of(ls):
        traits, blends = stack(ls, combo)
        dense = composite_dense((H, W), traits, blends)
        acc = be.accumulate(combo).copy()
        if base == "opaque" or (plain and traits[-2].opaque_full):  # a plain opaque full-canvas trait
            assert acc.shape == (H * W, 3)  # alpha lane dropped: it is exactly 1 in every mode
            assert (dense[..., 3] == F32(1)).all()
            assert np.array_equal(bits(acc.reshape(H, W, 3)), bits(dense[..., :3]))
        else:
            assert acc.shape == (H * W, 4)
            assert np.array_equal(bits(acc.reshape(H, W, 4)), bits(dense))
        for opaque_rgb in (True, False):
            be.opaque_rgb = opaque_rgb
            assert np.array_equal(be.composite([combo])[0], finalize(dense, opaque_rgb))


def test_blended_layers_are_not_copied():
    """An opaque pixel of a non-plain layer must go through the formula (not the plain copy)."""
    for mode in BLENDED:
        ls = make_stack(3, mode, 1.0, "opaque")
        be = NumpyBackend()
        be.prepare(ls)
        traits, blends = stack(ls, (0, 0, 0, 1, 0))
        plain = finalize(composite_dense((H, W), traits))
        got = be.composite([(0, 0, 0, 1, 0)])[0]
        assert np.array_equal(got, finalize(composite_dense((H, W), traits, blends)))
        assert not np.array_equal(got, plain), mode  # the opaque full-canvas trait hides nothing


# ---- the documented order, transcribed scalar by scalar ---------------------------------------
def scalar_blend(name, cb, cs):
    """compositing.py's blend(cb, cs), one float32 operation at a time (written from the docstring)."""
    f = F32
    one, two, half = f(1), f(2), f(0.5)

    def screen(b, s):
        return f(f(b + s) - f(b * s))

    def hard(b, s):
        s2 = f(two * s)
        return f(b * s2) if s <= half else screen(b, f(s2 - one))

    if name == "multiply":
        return f(cb * cs)
    if name == "screen":
        return screen(cb, cs)
    if name == "overlay":
        return hard(cs, cb)
    if name == "darken":
        return min(cb, cs)
    if name == "lighten":
        return max(cb, cs)
    if name == "color-dodge":
        return f(0) if cb == 0 else one if cs == 1 else min(one, f(cb / f(one - cs)))
    if name == "color-burn":
        return one if cb == 1 else f(0) if cs == 0 else f(one - min(one, f(f(one - cb) / cs)))
    if name == "hard-light":
        return hard(cb, cs)
    if name == "soft-light":
        if cs <= half:
            return f(cb - f(f(f(one - f(two * cs)) * cb) * f(one - cb)))
        d = f(f(f(f(f(16) * cb) - f(12)) * cb) + f(4)) * cb if cb <= f(0.25) else np.sqrt(cb)
        return f(cb + f(f(f(two * cs) - one) * f(f(d) - cb)))
    if name == "difference":
        return abs(f(cb - cs))
    if name == "exclusion":
        return f(f(cb + cs) - f(f(two * cb) * cs))
    if name == "additive":
        return min(one, f(cb + cs))
    raise AssertionError(name)


def scalar_layer(acc, px, name, opacity):
    """One pixel (acc: 4 float32, px: 4 uint8) through one non-plain layer, per the docstring."""
    f = F32
    a8 = int(px[3])
    as_ = f(SA[a8] * f(opacity))
    ias = f(f(1) - as_)
    ab = acc[3]
    out = []
    for ch in range(3):
        c8 = int(px[ch])
        if name == "normal":
            out.append(f(f(acc[ch] * ias) + f(f(c8) * as_)))
            continue
        cb = min(f(f(acc[ch] / ab) / f(255)), f(1)) if ab > 0 else f(0)
        cs = SA[c8]
        mix = f(f(f(f(1) - ab) * cs) + f(ab * scalar_blend(name, cb, cs)))
        out.append(f(f(acc[ch] * ias) + f(f(as_ * mix) * f(255))))
    out.append(f(f(ab * ias) + as_))
    return np.array(out, F32)


def special_rows(rng, n):
    """Accumulator rows (premultiplied, alpha in [0, 1]) with the branch edges: ab 0 and 1, cb 0,
    0.25, 0.5 and 1, colours 0, 128 and 255, a8 0 and 255."""
    ab = rng.random(n).astype(F32)
    ab[: n // 8] = 1
    ab[n // 8: n // 6] = 0
    ab[n // 6: n // 5] = rng.integers(1, 4, n // 5 - n // 6) / F32(1 << 20)  # tiny backdrop alpha
    straight = rng.integers(0, 256, (n, 3)).astype(F32)
    straight[::7] = rng.choice(np.array([0, 63.75, 127.5, 255], F32), (len(straight[::7]), 3))
    acc = np.empty((n, 4), F32)
    acc[:, :3] = straight * ab[:, None]
    acc[:, 3] = ab
    px = rng.integers(0, 256, (n, 4), dtype=np.uint8)
    px[::5, :3] = rng.choice(np.array([0, 128, 255], np.uint8), (len(px[::5]), 3))
    px[::3, 3] = 255
    px[1::9, 3] = 0
    return acc, px


@pytest.mark.parametrize("opacity", [1.0, 0.37, 0.0])
@pytest.mark.parametrize("mode", MODES)
def test_blend_rows_follow_the_documented_order(mode, opacity):
    rng = np.random.default_rng(MODES.index(mode) * 7 + int(opacity * 100))
    acc, px = special_rows(rng, 400)
    got = acc.copy()
    blend_rows(got, px, MODES.index(mode), *opacity_tables(F32(opacity)))
    want = np.array([scalar_layer(a, p, mode, opacity) for a, p in zip(acc, px, strict=True)])
    assert np.array_equal(bits(got), bits(want))
    # the 3-channel form (alpha exactly 1) equals the 4-channel one with ab == 1
    one = acc[acc[:, 3] == 1]
    three = one[:, :3].copy()
    blend_rows(three, px[acc[:, 3] == 1], MODES.index(mode), *opacity_tables(F32(opacity)))
    assert len(one) > 10 and np.array_equal(bits(three), bits(got[acc[:, 3] == 1, :3]))
    # a8 == 0 leaves the accumulator unchanged, bit for bit (transparent pixels may be skipped)
    clear = px[:, 3] == 0
    assert clear.any() and np.array_equal(bits(got[clear]), bits(acc[clear]))
    if opacity == 0.0:
        assert np.array_equal(bits(got), bits(acc))


def test_blend_f32_stays_float32_and_in_range():
    cb, cs = np.meshgrid(SA, SA)
    for m in BLENDED:
        b = blend_f32(MODES.index(m), cb, cs)
        assert b.dtype == np.float32 and np.isfinite(b).all(), m
        assert (b >= 0).all() and (b <= F32(1) + F32(4e-7)).all(), m


# ---- the float64 W3C reference ----------------------------------------------------------------
def check_against_reference(img, ref):
    if img.shape[2] == 3:
        img = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    diff = np.abs(img.astype(np.float64) - ref)
    assert (diff[..., 3] <= 1).all(), diff[..., 3].max()
    shown = img[..., 3] > 0
    assert (diff[..., :3][shown] <= 1).all(), diff[..., :3][shown].max()
    assert (img[..., :3][~shown] == 0).all()


@pytest.mark.parametrize("base", ["opaque", "semi", "none"])
@pytest.mark.parametrize("mode", MODES)
def test_close_to_float64_reference(mode, base):
    semi = 0
    for opacity in OPACITIES + [0.5]:
        ls = make_stack(1000 + MODES.index(mode), mode, opacity, base)
        be = NumpyBackend(opaque_rgb=False)
        be.prepare(ls)
        for combo in combos_of(ls):
            img = be.composite([combo])[0]
            traits, blends = stack(ls, combo)
            check_against_reference(img, reference((H, W), traits, blends))
            semi += int(((img[..., 3] > 0) & (img[..., 3] < 255)).sum())
            if base == "opaque":
                assert (img[..., 3] == 255).all()
    assert semi > 0 or base == "opaque"


def test_reference_is_w3c_on_hand_values():
    """The float64 reference itself on values worked out by hand from the W3C formulas."""
    def one(name, back, src, alpha=255, opacity=1.0):
        b = SimpleNamespace(box=(0, 0, 1, 1), pixels=np.array([[[*back, 255]]], np.uint8))
        s = SimpleNamespace(box=(0, 0, 1, 1), pixels=np.array([[[*src, alpha]]], np.uint8))
        return reference((1, 1), [b, s], [("normal", 1), (name, opacity)])[0, 0]

    np.testing.assert_allclose(one("multiply", (255, 51, 0), (102, 255, 9))[:3], [102, 51, 0])
    np.testing.assert_allclose(one("screen", (51, 0, 255), (51, 77, 3))[:3], [255 * (0.2 + 0.2 - 0.04), 77, 255])
    np.testing.assert_allclose(one("difference", (200, 10, 0), (50, 40, 0))[:3], [150, 30, 0])
    np.testing.assert_allclose(one("exclusion", (255, 0, 51), (255, 255, 255))[:3], [0, 255, 204])
    np.testing.assert_allclose(one("color-dodge", (51, 0, 51), (255, 255, 153))[:3], [255, 0, 127.5])
    np.testing.assert_allclose(one("color-burn", (255, 204, 0), (0, 102, 0))[:3], [255, 127.5, 0])
    np.testing.assert_allclose(one("additive", (200, 10, 0), (100, 40, 0))[:3], [255, 50, 0])
    np.testing.assert_allclose(one("multiply", (255, 255, 255), (0, 0, 0), opacity=0.5), [127.5, 127.5, 127.5, 255])
    # soft-light: cs <= 0.5 branch; D = polynomial below cb = 0.25 ((16*0.2 - 12)*0.2 + 4)*0.2 = 0.448, sqrt above
    np.testing.assert_allclose(one("soft-light", (51, 51, 102), (0, 255, 255))[:3],
                               [255 * (0.2 - 0.2 * 0.8), 255 * 0.448, 255 * np.sqrt(0.4)])


# ---- plain stacks: today's bytes and fast paths ------------------------------------------------
def golden_layerset(h=29, w=41):
    """Deterministic stack: opaque base (2 traits), three sparse layers, one full-canvas semi layer."""
    rng = np.random.default_rng(20240601)
    layers = []
    base = []
    for _ in range(2):
        px = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        px[..., 3] = 255
        base.append(SimpleNamespace(box=(0, 0, h, w), pixels=px, opaque_full=True))
    layers.append(base)
    for _ in range(3):
        traits = []
        for _ in range(2):
            y0, y1 = sorted(rng.choice(h + 1, 2, replace=False))
            x0, x1 = sorted(rng.choice(w + 1, 2, replace=False))
            px = rng.integers(0, 256, (y1 - y0, x1 - x0, 4), dtype=np.uint8)
            k = rng.random(px.shape[:2])
            px[..., 3] = np.where(k < 0.3, 0, np.where(k < 0.6, 255, rng.integers(1, 255, px.shape[:2])))
            traits.append(SimpleNamespace(box=(int(y0), int(x0), int(y1), int(x1)), pixels=px, opaque_full=False))
        layers.append(traits)
    px = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    layers.append([SimpleNamespace(box=(0, 0, h, w), pixels=px, opaque_full=False)])
    return h, w, layers


def golden_digest(with_base, **layer_fields):
    h, w, layers = golden_layerset()
    if not with_base:
        layers = layers[1:]
    ls = SimpleNamespace(height=h, width=w, layers=[SimpleNamespace(traits=t, **layer_fields) for t in layers])
    d = hashlib.sha256()
    for opaque_rgb in (True, False):
        be = NumpyBackend(opaque_rgb=opaque_rgb)
        be.prepare(ls)
        assert be.blends == [None] * len(layers)  # every layer on the plain fast path
        for combo in itertools.product(*[range(len(t)) for t in layers]):
            img = be.composite([combo])[0]
            d.update(str(img.shape).encode())
            d.update(img.tobytes())
    return d.hexdigest()


# sha256 of these outputs from the NumPy backend as it was before blend modes existed
GOLDEN = {True: "38be2cfae45055e053ddd8928ddeef818fb6fac07251b73865dcd1cf0c2d86f8",
          False: "9c8148d6177625c604f50079e46bf23fdab50b1ba1440d28544cf315c1b19be9"}


@pytest.mark.parametrize("fields", [{}, {"blend": "normal", "opacity": 1.0}, {"blend": "normal", "opacity": 1},
                                    {"blend": "normal", "opacity": 0.99999999}])  # float32(0.99999999) == 1
@pytest.mark.parametrize("with_base", [True, False])
def test_plain_layers_keep_their_bytes(with_base, fields):
    assert golden_digest(with_base, **fields) == GOLDEN[with_base]


def old_composite_dense(shape, layers):
    """The contract's formula before blend modes: acc = acc * INV[a8] + pm."""
    acc = np.zeros(shape + (4,), F32)
    for t in layers:
        y0, x0, y1, x1 = t.box
        a = SA[t.pixels[..., 3]]
        pm = t.pixels.astype(F32)
        pm[..., :3] *= a[..., None]
        pm[..., 3] = a
        region = acc[y0:y1, x0:x1]
        region *= INV[t.pixels[..., 3]][..., None]
        region += pm
    return acc


@pytest.mark.parametrize("base", ["opaque", "semi", "none"])
def test_normal_opacity_one_is_the_old_formula(base):
    ls = make_stack(77, "normal", 1.0, base)
    be = NumpyBackend(opaque_rgb=False)
    be.prepare(ls)
    for combo in combos_of(ls):
        traits, blends = stack(ls, combo)
        old = old_composite_dense((H, W), traits)
        assert np.array_equal(bits(composite_dense((H, W), traits, blends)), bits(old))
        assert np.array_equal(be.composite([combo])[0], finalize(old, False))


def test_plain_layers_use_the_copy_path():
    """The NumPy path's sparse form (the kernel's run layout: tests/render/test_cpu_kernel.py)."""
    ls = make_stack(5, "normal", 1.0, "opaque")
    be = NumpyBackend(kernel=False)
    be.prepare(ls)
    assert be.traits[0][0].full_rgb is not None  # full-canvas opaque copy
    assert be.traits[1][0].op_idx.size > 0  # opaque pixels copied, not blended
    ls = make_stack(5, "normal", 0.5, "opaque")
    be.prepare(ls)
    assert be.traits[-2][1].full_rgb is None and be.traits[-2][1].op_idx.size == 0
    assert be.traits[-2][1].semi_idx.size == H * W


# ---- alpha over an opaque base ------------------------------------------------------------------
def test_alpha_stays_exactly_one_over_an_opaque_base():
    """(1 * ias) + as == 1 for as = SA[a8] * op, all 256 a8 and a dense sweep of opacities."""
    rng = np.random.default_rng(0)
    ops = np.concatenate([np.linspace(0, 1, 100_001, dtype=np.float64).astype(F32),
                          rng.random(20_000).astype(F32), np.nextafter(F32(1), F32(0))[None],
                          np.array([1e-30, 1e-8, 2.0 ** -25, 3e-8], F32)])
    for op in ops:
        as_, ias = opacity_tables(op)
        assert (((F32(1) * ias) + as_) == F32(1)).all(), op


@pytest.mark.parametrize("mode", BLENDED)
def test_opaque_base_stays_opaque_in_every_mode(mode):
    ls = make_stack(11, mode, 0.77, "opaque")
    be = NumpyBackend(opaque_rgb=True)
    be.prepare(ls)
    for combo in combos_of(ls)[:6]:
        traits, blends = stack(ls, combo)
        assert (composite_dense((H, W), traits, blends)[..., 3] == F32(1)).all()
        assert be.composite([combo])[0].shape == (H, W, 3)


# ---- known values -------------------------------------------------------------------------------
def over_base(mode, base_px, top_rgb, alpha=255, opacity=1.0):
    """A full-canvas opaque base and one full-canvas layer of colour top_rgb in `mode`."""
    top = np.empty_like(base_px)
    top[..., :3] = top_rgb
    top[..., 3] = alpha
    h, w = base_px.shape[:2]
    ls = SimpleNamespace(height=h, width=w, layers=[
        SimpleNamespace(traits=[SimpleNamespace(box=(0, 0, h, w), pixels=base_px, opaque_full=True)]),
        SimpleNamespace(traits=[SimpleNamespace(box=(0, 0, h, w), pixels=top, opaque_full=bool(alpha == 255))],
                        blend=mode, opacity=opacity)])
    be = NumpyBackend()
    be.prepare(ls)
    return be.composite([(0, 0)])[0]


@pytest.fixture(scope="module")
def base_px():
    rng = np.random.default_rng(42)
    px = np.zeros((16, 16, 4), np.uint8)
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)  # every 8-bit value in every channel
    px[..., :3] = np.stack([ramp, rng.permutation(256).astype(np.uint8).reshape(16, 16), 255 - ramp], -1)
    px[..., 3] = 255
    return px


def test_known_values(base_px):
    rgb = base_px[..., :3]
    identity = {"multiply": 255, "screen": 0, "color-dodge": 0, "color-burn": 255, "exclusion": 0,
                "additive": 0, "darken": 255, "lighten": 0, "difference": 0}
    for mode, colour in identity.items():
        assert np.array_equal(over_base(mode, base_px, colour), rgb), mode
    assert np.array_equal(over_base("difference", base_px, rgb), np.zeros_like(rgb))  # with itself: black
    assert np.array_equal(over_base("darken", base_px, rgb), rgb)
    assert np.array_equal(over_base("lighten", base_px, rgb), rgb)
    assert np.array_equal(over_base("multiply", base_px, 0), np.zeros_like(rgb))
    assert np.array_equal(over_base("screen", base_px, 255), np.full_like(rgb, 255))
    assert np.array_equal(over_base("additive", base_px, 255), np.full_like(rgb, 255))
    assert np.array_equal(over_base("exclusion", base_px, 255), 255 - rgb)  # inverts
    assert np.array_equal(over_base("difference", base_px, 255), 255 - rgb)
    for mode in MODES:  # opacity 0 or a transparent source: nothing changes
        assert np.array_equal(over_base(mode, base_px, 200, opacity=0.0), rgb), mode
        assert np.array_equal(over_base(mode, base_px, 200, alpha=0), rgb), mode
    black = base_px.copy()
    black[..., :3] = 0
    assert (over_base("normal", black, 255, opacity=0.5) == 128).all()  # 127.5 rounds half up
    # hard-light with a source of 128/255 and overlay of the base over itself stay close to the formula
    hl = over_base("hard-light", base_px, 128).astype(int)
    cb = rgb / 255.0
    assert np.abs(hl - 255 * (cb + (2 * 128 / 255 - 1) - cb * (2 * 128 / 255 - 1))).max() <= 0.501


@pytest.mark.parametrize("mode", BLENDED)
def test_blend_over_nothing_is_normal(mode):
    """With no backdrop (ab = 0) mix = cs: every mode shows the source as normal would (to 1 step)."""
    rng = np.random.default_rng(MODES.index(mode))
    t = random_trait(rng, full=True)
    ls = SimpleNamespace(height=H, width=W, layers=[SimpleNamespace(traits=[t], blend=mode, opacity=0.8)])
    ls_n = SimpleNamespace(height=H, width=W, layers=[SimpleNamespace(traits=[t], blend="normal", opacity=0.8)])
    outs = []
    for s in (ls, ls_n):
        be = NumpyBackend(opaque_rgb=False)
        be.prepare(s)
        outs.append(be.composite([(0,)])[0].astype(int))
    assert np.array_equal(outs[0][..., 3], outs[1][..., 3])
    assert np.abs(outs[0] - outs[1]).max() <= 1


def test_unknown_mode_is_refused():
    ls = make_stack(1, "normal", 1.0, "none")
    ls.layers[1].blend = "burn-it-all"
    with pytest.raises(ValueError, match="unknown blend mode 'burn-it-all'"):
        NumpyBackend().prepare(ls)


# ---- the CUDA source compiles (no GPU needed) ----------------------------------------------------
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_kernel_compiles_with_nvcc(arch, tmp_path):
    src = Path(__file__).resolve().parent.parent / "kernels" / "composite.cu"
    out = tmp_path / "k.ptx"
    r = subprocess.run(["nvcc", "-std=c++17", "--fmad=false", f"-arch={arch}", "-ptx", str(src), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ptx = out.read_text()
    assert "fma.rn.f32" not in ptx  # no contraction anywhere: every op rounded separately
    entries = {m[0]: m[1] for m in re.findall(r"\.entry (\w+)\(.*?\n\)\n\{(.*?)\n\}", ptx, re.S)}
    assert {"composite_batch", "composite_batch_blend", "filter_rows"} <= set(entries)
    # the plain kernel never reads the blend arrays (params 6 and 7): plain stacks pay nothing
    assert not re.search(r"ld\.param\.u64\s+%rd\d+, \[composite_batch_param_[67]\]", entries["composite_batch"])
    assert re.search(r"composite_batch_blend_param_6", entries["composite_batch_blend"])
    assert "sqrt.rn.f32" in ptx and "div.rn.f32" in ptx


# ---- the kernel's blend math, built as host C++ (no GPU needed) -------------------------------------
HOST_SHIM = r"""
#include <cmath>
#define __device__
#define __forceinline__ inline
#define __noinline__
struct float4 { float x, y, z, w; };
struct uchar4 { unsigned char x, y, z, w; };
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return std::sqrt(a); }
"""
HOST_DRIVER = r"""
extern "C" void run(int n, const float* acc, const unsigned char* px, int mode, float op, const float* SA,
                    float* out) {
    for (int i = 0; i < n; ++i) {
        float4 a = {acc[4 * i], acc[4 * i + 1], acc[4 * i + 2], acc[4 * i + 3]};
        uchar4 s = {px[4 * i], px[4 * i + 1], px[4 * i + 2], px[4 * i + 3]};
        float4 r = blend_any(a, s, mode, op, SA);
        out[4 * i] = r.x; out[4 * i + 1] = r.y; out[4 * i + 2] = r.z; out[4 * i + 3] = r.w;
    }
}
"""


@pytest.fixture(scope="module")
def kernel_on_host(tmp_path_factory):
    """kernels/composite.cu's blend section compiled for the host: IEEE float32, no contraction."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    import ctypes

    src = (Path(__file__).resolve().parent.parent / "kernels" / "composite.cu").read_text()
    start, end = src.index("// ---- blend math:"), src.index("// ---- end of blend math ----")
    d = tmp_path_factory.mktemp("hostblend")
    (d / "blend.cpp").write_text(HOST_SHIM + src[start:end] + HOST_DRIVER)
    r = subprocess.run([cxx, "-O2", "-ffp-contract=off", "-fno-fast-math", "-shared", "-fPIC", str(d / "blend.cpp"),
                        "-o", str(d / "blend.so")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return ctypes.CDLL(str(d / "blend.so")).run


@pytest.mark.parametrize("opacity", [1.0, 0.37, 0.0])
@pytest.mark.parametrize("mode", MODES)
def test_kernel_blend_math_matches_numpy(kernel_on_host, mode, opacity):
    import ctypes

    rng = np.random.default_rng(MODES.index(mode) * 13 + int(opacity * 100))
    acc, px = special_rows(rng, 2000)
    want = acc.copy()
    blend_rows(want, px, MODES.index(mode), *opacity_tables(F32(opacity)))
    got = np.empty_like(acc)
    ptr = ctypes.c_void_p
    kernel_on_host(ctypes.c_int(len(acc)), ptr(acc.ctypes.data), ptr(np.ascontiguousarray(px).ctypes.data),
                   ctypes.c_int(MODES.index(mode)), ctypes.c_float(opacity), ptr(SA.ctypes.data),
                   ptr(got.ctypes.data))
    assert np.array_equal(bits(got), bits(want))
