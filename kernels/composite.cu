// Batched source-over compositing, per the contract in gpucomp/compositing.py.
// One thread per output pixel; the pixel's accumulator lives in registers across all
// layers and is written once. Every float op is an explicit round-to-nearest intrinsic
// (never contracted into FMA), so the result is bit-identical to the NumPy backend.
// Layers that are not plain (a blend mode, or opacity != 1) take blend_any(): the blend-mode
// formula of compositing.py, in its exact order. The mode is uniform per layer, so the branch
// never diverges within a warp.

struct TraitBox { int y0, x0, h, w; };

__device__ __forceinline__ void blend(float4& acc, uchar4 s, const float* SA, const float* INV) {
    const float sa = SA[s.w], inv = INV[s.w];
    acc.x = __fadd_rn(__fmul_rn(acc.x, inv), __fmul_rn((float)s.x, sa));
    acc.y = __fadd_rn(__fmul_rn(acc.y, inv), __fmul_rn((float)s.y, sa));
    acc.z = __fadd_rn(__fmul_rn(acc.z, inv), __fmul_rn((float)s.z, sa));
    acc.w = __fadd_rn(__fmul_rn(acc.w, inv), sa);
}

// ---- blend math: tests/test_blend.py also builds this section as host C++ (intrinsics shimmed) ----
// Mode numbers: index in compositing.MODES.
enum { NORMAL = 0, MULTIPLY, SCREEN, OVERLAY, DARKEN, LIGHTEN, COLOR_DODGE, COLOR_BURN, HARD_LIGHT,
       SOFT_LIGHT, DIFFERENCE, EXCLUSION, ADDITIVE };

__device__ __forceinline__ float screen_f(float b, float s) {  // (b + s) - b * s
    return __fsub_rn(__fadd_rn(b, s), __fmul_rn(b, s));
}

__device__ __forceinline__ float hard_f(float b, float s) {  // s <= 0.5 ? b * (2s) : screen(b, 2s - 1)
    const float s2 = __fmul_rn(2.f, s);
    return s <= 0.5f ? __fmul_rn(b, s2) : screen_f(b, __fsub_rn(s2, 1.f));
}

__device__ __forceinline__ float blend_fn(int mode, float cb, float cs) {
    switch (mode) {
    case MULTIPLY: return __fmul_rn(cb, cs);
    case SCREEN: return screen_f(cb, cs);
    case OVERLAY: return hard_f(cs, cb);
    case DARKEN: return fminf(cb, cs);
    case LIGHTEN: return fmaxf(cb, cs);
    case COLOR_DODGE:
        if (cb == 0.f) return 0.f;
        if (cs == 1.f) return 1.f;
        return fminf(1.f, __fdiv_rn(cb, __fsub_rn(1.f, cs)));
    case COLOR_BURN:
        if (cb == 1.f) return 1.f;
        if (cs == 0.f) return 0.f;
        return __fsub_rn(1.f, fminf(1.f, __fdiv_rn(__fsub_rn(1.f, cb), cs)));
    case HARD_LIGHT: return hard_f(cb, cs);
    case SOFT_LIGHT: {
        if (cs <= 0.5f)  // cb - ((1 - 2cs) * cb) * (1 - cb)
            return __fsub_rn(cb, __fmul_rn(__fmul_rn(__fsub_rn(1.f, __fmul_rn(2.f, cs)), cb), __fsub_rn(1.f, cb)));
        const float d = cb <= 0.25f  // ((16cb - 12) * cb + 4) * cb, or sqrt(cb)
            ? __fmul_rn(__fadd_rn(__fmul_rn(__fsub_rn(__fmul_rn(16.f, cb), 12.f), cb), 4.f), cb)
            : __fsqrt_rn(cb);
        return __fadd_rn(cb, __fmul_rn(__fsub_rn(__fmul_rn(2.f, cs), 1.f), __fsub_rn(d, cb)));
    }
    case DIFFERENCE: return fabsf(__fsub_rn(cb, cs));
    case EXCLUSION: return __fsub_rn(__fadd_rn(cb, cs), __fmul_rn(__fmul_rn(2.f, cb), cs));
    case ADDITIVE: return fminf(1.f, __fadd_rn(cb, cs));
    default: return cs;  // not reached: the host only sends known modes
    }
}

// One colour channel of a blend-mode layer: c premultiplied on 0..255, ab the backdrop alpha.
__device__ __forceinline__ float blend_channel(float c, unsigned char c8, int mode, float ab, float one_ab,
                                               float as, float ias, const float* SA) {
    const float cs = SA[c8];
    const float cb = ab > 0.f ? fminf(__fdiv_rn(__fdiv_rn(c, ab), 255.f), 1.f) : 0.f;
    const float mix = __fadd_rn(__fmul_rn(one_ab, cs), __fmul_rn(ab, blend_fn(mode, cb, cs)));
    return __fadd_rn(__fmul_rn(c, ias), __fmul_rn(__fmul_rn(as, mix), 255.f));
}

// A non-plain layer (blend mode, or opacity op != 1) over one pixel. Not inlined: plain layers,
// the common case, keep the small register footprint of blend().
__device__ __noinline__ float4 blend_any(float4 acc, uchar4 s, int mode, float op, const float* SA) {
    const float as = __fmul_rn(SA[s.w], op);
    const float ias = __fsub_rn(1.f, as);
    if (mode == NORMAL) {
        acc.x = __fadd_rn(__fmul_rn(acc.x, ias), __fmul_rn((float)s.x, as));
        acc.y = __fadd_rn(__fmul_rn(acc.y, ias), __fmul_rn((float)s.y, as));
        acc.z = __fadd_rn(__fmul_rn(acc.z, ias), __fmul_rn((float)s.z, as));
    } else {
        const float ab = acc.w, one_ab = __fsub_rn(1.f, ab);
        acc.x = blend_channel(acc.x, s.x, mode, ab, one_ab, as, ias, SA);
        acc.y = blend_channel(acc.y, s.y, mode, ab, one_ab, as, ias, SA);
        acc.z = blend_channel(acc.z, s.z, mode, ab, one_ab, as, ias, SA);
    }
    acc.w = __fadd_rn(__fmul_rn(acc.w, ias), as);
    return acc;
}

// ---- end of blend math ----

__device__ __forceinline__ uchar4 final8(float4 acc) {
    const int oa = (int)__fadd_rn(__fmul_rn(acc.w, 255.f), 0.5f);
    uchar4 o = make_uchar4(0, 0, 0, 0);
    if (oa > 0) {
        const bool one = acc.w == 1.0f;  // c / 1 == c: skip the division, same bits
        const float r = one ? acc.x : __fdiv_rn(acc.x, acc.w);
        const float g = one ? acc.y : __fdiv_rn(acc.y, acc.w);
        const float b = one ? acc.z : __fdiv_rn(acc.z, acc.w);
        o.x = (unsigned char)(int)__fadd_rn(fminf(r, 255.f), 0.5f);
        o.y = (unsigned char)(int)__fadd_rn(fminf(g, 255.f), 0.5f);
        o.z = (unsigned char)(int)__fadd_rn(fminf(b, 255.f), 0.5f);
        o.w = (unsigned char)oa;
    }
    return o;
}

__device__ __forceinline__ uchar4 unpack(unsigned int v) {
    return make_uchar4(v & 255u, (v >> 8) & 255u, (v >> 16) & 255u, v >> 24);
}

// One thread per group of 4 horizontally adjacent pixels: 16-byte trait loads and output
// stores where the box allows (the host pads boxes to x multiples of 4 with transparent
// pixels, which leave the accumulator bit-for-bit unchanged), per-pixel loads elsewhere.
// Two entry points from one body: composite_batch (every layer plain: layer_blend and
// layer_opacity are not read) and composite_batch_blend (any layer may blend). The host picks
// one per stack, so plain stacks keep the plain kernel's small register footprint.
#define COMPOSITE_PARAMS \
    const uchar4* const* __restrict__ trait_ptr,  /* per trait id: its cropped pixels (device) */ \
    const TraitBox* __restrict__ trait_box,       /* per trait id: box on the canvas */ \
    const int* __restrict__ combos,               /* (B, L) trait id per layer, -1 = nothing */ \
    const float4* const* __restrict__ prefix,     /* (B) accumulator to start from, or null */ \
    const int* __restrict__ first_layer,          /* (B) first layer to apply after the prefix */ \
    const float* __restrict__ tables,             /* SA[256] then INV[256] */ \
    const int* __restrict__ layer_blend,          /* (L) blend mode number per layer (compositing.MODES) */ \
    const float* __restrict__ layer_opacity,      /* (L) float32 opacity per layer */ \
    int L, int width, int height, \
    int mode,                                     /* 0: write RGBA8 finals; 1: write float4 accumulators */ \
    uchar4* __restrict__ out8,                    /* (B, H*W) when mode 0 */ \
    float4* const* __restrict__ out_acc,          /* (B) destinations when mode 1 */ \
    int* __restrict__ not_opaque                  /* (B) set to 1 if any final alpha != 255 (mode 0) */
#define COMPOSITE_ARGS trait_ptr, trait_box, combos, prefix, first_layer, tables, layer_blend, \
    layer_opacity, L, width, height, mode, out8, out_acc, not_opaque

template <bool BLEND>
__device__ __forceinline__ void composite_impl(COMPOSITE_PARAMS)
{
    __shared__ float SA[256];
    __shared__ float INV[256];
    for (int i = threadIdx.x; i < 256; i += blockDim.x) { SA[i] = tables[i]; INV[i] = tables[256 + i]; }
    __syncthreads();

    const int b = blockIdx.y;
    const int groups = (width + 3) >> 2;
    const long long npix = (long long)width * height;
    const long long gi = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const bool live = gi < (long long)groups * height;
    const int y = live ? (int)(gi / groups) : 0;
    const int x = live ? (int)(gi - (long long)y * groups) * 4 : 0;
    const int n = min(4, width - x);  // pixels in this group
    const long long p = (long long)y * width + x;

    float4 acc[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) acc[k] = make_float4(0.f, 0.f, 0.f, 0.f);
    const float4* pre = prefix[b];
    if (pre != nullptr && live) {
#pragma unroll
        for (int k = 0; k < 4; ++k) if (k < n) acc[k] = pre[p + k];
    }
    for (int l = first_layer[b]; l < L && live; ++l) {
        const int t = combos[b * L + l];
        if (t < 0) continue;
        const int md = BLEND ? layer_blend[l] : NORMAL;
        const float op = BLEND ? layer_opacity[l] : 1.0f;
        const bool plain = !BLEND || (md == NORMAL && op == 1.0f);  // uniform per layer: no divergence
        const TraitBox bx = trait_box[t];
        const int ty = y - bx.y0, tx = x - bx.x0;
        if (ty < 0 || ty >= bx.h || tx + 4 <= 0 || tx >= bx.w) continue;  // outside the box: never read
        const uchar4* row = trait_ptr[t] + (long long)ty * bx.w;
        if (n == 4 && tx >= 0 && tx + 4 <= bx.w && ((bx.w | tx) & 3) == 0) {
            const uint4 v = *reinterpret_cast<const uint4*>(row + tx);
            if (plain) {
                blend(acc[0], unpack(v.x), SA, INV);
                blend(acc[1], unpack(v.y), SA, INV);
                blend(acc[2], unpack(v.z), SA, INV);
                blend(acc[3], unpack(v.w), SA, INV);
            } else {
                acc[0] = blend_any(acc[0], unpack(v.x), md, op, SA);
                acc[1] = blend_any(acc[1], unpack(v.y), md, op, SA);
                acc[2] = blend_any(acc[2], unpack(v.z), md, op, SA);
                acc[3] = blend_any(acc[3], unpack(v.w), md, op, SA);
            }
        } else {
#pragma unroll
            for (int k = 0; k < 4; ++k)
                if (k < n && tx + k >= 0 && tx + k < bx.w) {
                    if (plain) blend(acc[k], row[tx + k], SA, INV);
                    else acc[k] = blend_any(acc[k], row[tx + k], md, op, SA);
                }
        }
    }
    if (mode == 1) {
        if (live) {
#pragma unroll
            for (int k = 0; k < 4; ++k) if (k < n) out_acc[b][p + k] = acc[k];
        }
        return;
    }
    bool transparent_somewhere = false;
    if (live) {
        uchar4 o[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            o[k] = final8(acc[k]);
            if (k < n) transparent_somewhere |= o[k].w != 255;
        }
        uchar4* dst = out8 + (long long)b * npix + p;
        if (n == 4 && (width & 3) == 0) {
            uint4 v;
            v.x = *reinterpret_cast<unsigned int*>(&o[0]); v.y = *reinterpret_cast<unsigned int*>(&o[1]);
            v.z = *reinterpret_cast<unsigned int*>(&o[2]); v.w = *reinterpret_cast<unsigned int*>(&o[3]);
            *reinterpret_cast<uint4*>(dst) = v;
        } else {
#pragma unroll
            for (int k = 0; k < 4; ++k) if (k < n) dst[k] = o[k];
        }
    }
    if (__any_sync(0xffffffffu, transparent_somewhere) && (threadIdx.x & 31) == 0) atomicOr(&not_opaque[b], 1);
}

extern "C" __global__ void composite_batch(COMPOSITE_PARAMS) { composite_impl<false>(COMPOSITE_ARGS); }
extern "C" __global__ void composite_batch_blend(COMPOSITE_PARAMS) { composite_impl<true>(COMPOSITE_ARGS); }

// PNG scanlines from RGBA8 finals: per item, channels = 3 if the item is opaque (and
// rgb_ok) else 4; each row is [filter byte][W*C bytes]. filter 0 = None, 2 = Up.
// Rows are packed back to back from the item's base (stride H*(1+4W) per item).
extern "C" __global__ void filter_rows(
    const uchar4* __restrict__ rgba, const int* __restrict__ not_opaque, int rgb_ok,
    int width, int height, int filter, unsigned char* __restrict__ out)
{
    const int b = blockIdx.y;
    const long long npix = (long long)width * height;
    const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= npix) return;
    const int y = (int)(p / width), x = (int)(p - (long long)y * width);
    const int c = (rgb_ok && !not_opaque[b]) ? 3 : 4;
    const long long row_bytes = 1 + (long long)width * c;
    unsigned char* row = out + (long long)b * height * (1 + 4LL * width) + y * row_bytes;
    const uchar4 cur = rgba[b * npix + p];
    uchar4 d = cur;
    if (filter == 2 && y > 0) {
        const uchar4 up = rgba[b * npix + p - width];
        d = make_uchar4(cur.x - up.x, cur.y - up.y, cur.z - up.z, cur.w - up.w);
    }
    if (x == 0) row[0] = (unsigned char)filter;
    unsigned char* o = row + 1 + (long long)x * c;
    o[0] = d.x; o[1] = d.y; o[2] = d.z;
    if (c == 4) o[3] = d.w;
}

// Nearest-neighbour scaling by a whole number k, as gpucomp/resize.py defines it for both backends:
// out[y][x] = in[y / k][x / k]. From a batch's RGBA finals, each item's copy is written as tight
// (k*height, k*width, c) pixels at out + b * stride, c = 3 when the item is opaque and rgb_ok (as
// filter_rows lays out its rows, so the copy has the composite's channels), else 4. One thread per
// output pixel: neighbouring threads read the same source pixel, which the cache serves.
extern "C" __global__ void scale_nearest(
    const uchar4* __restrict__ rgba, const int* __restrict__ not_opaque, int rgb_ok,
    int width, int height, int k, long long stride, unsigned char* __restrict__ out)
{
    const int b = blockIdx.y;
    const long long out_w = (long long)width * k;
    const long long out_npix = out_w * height * k;
    const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= out_npix) return;
    const long long oy = p / out_w, ox = p - oy * out_w;
    const uchar4 s = rgba[(long long)b * width * height + (oy / k) * width + ox / k];
    const int c = (rgb_ok && !not_opaque[b]) ? 3 : 4;
    unsigned char* o = out + (long long)b * stride + p * c;
    o[0] = s.x; o[1] = s.y; o[2] = s.z;
    if (c == 4) o[3] = s.w;
}
