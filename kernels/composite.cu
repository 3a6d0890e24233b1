// Batched source-over compositing, per the contract in gpucomp/compositing.py.
// One thread per output pixel; the pixel's accumulator lives in registers across all
// layers and is written once. Every float op is an explicit round-to-nearest intrinsic
// (never contracted into FMA), so the result is bit-identical to the NumPy backend.

struct TraitBox { int y0, x0, h, w; };

__device__ __forceinline__ void blend(float4& acc, uchar4 s, const float* SA, const float* INV) {
    const float sa = SA[s.w], inv = INV[s.w];
    acc.x = __fadd_rn(__fmul_rn(acc.x, inv), __fmul_rn((float)s.x, sa));
    acc.y = __fadd_rn(__fmul_rn(acc.y, inv), __fmul_rn((float)s.y, sa));
    acc.z = __fadd_rn(__fmul_rn(acc.z, inv), __fmul_rn((float)s.z, sa));
    acc.w = __fadd_rn(__fmul_rn(acc.w, inv), sa);
}

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
extern "C" __global__ void composite_batch(
    const uchar4* const* __restrict__ trait_ptr,  // per trait id: its cropped pixels (device)
    const TraitBox* __restrict__ trait_box,       // per trait id: box on the canvas
    const int* __restrict__ combos,               // (B, L) trait id per layer, -1 = nothing
    const float4* const* __restrict__ prefix,     // (B) accumulator to start from, or null
    const int* __restrict__ first_layer,          // (B) first layer to apply after the prefix
    const float* __restrict__ tables,             // SA[256] then INV[256]
    int L, int width, int height,
    int mode,                                     // 0: write RGBA8 finals; 1: write float4 accumulators
    uchar4* __restrict__ out8,                    // (B, H*W) when mode 0
    float4* const* __restrict__ out_acc,          // (B) destinations when mode 1
    int* __restrict__ not_opaque)                 // (B) set to 1 if any final alpha != 255 (mode 0)
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
        const TraitBox bx = trait_box[t];
        const int ty = y - bx.y0, tx = x - bx.x0;
        if (ty < 0 || ty >= bx.h || tx + 4 <= 0 || tx >= bx.w) continue;  // outside the box: never read
        const uchar4* row = trait_ptr[t] + (long long)ty * bx.w;
        if (n == 4 && tx >= 0 && tx + 4 <= bx.w && ((bx.w | tx) & 3) == 0) {
            const uint4 v = *reinterpret_cast<const uint4*>(row + tx);
            blend(acc[0], unpack(v.x), SA, INV);
            blend(acc[1], unpack(v.y), SA, INV);
            blend(acc[2], unpack(v.z), SA, INV);
            blend(acc[3], unpack(v.w), SA, INV);
        } else {
#pragma unroll
            for (int k = 0; k < 4; ++k)
                if (k < n && tx + k >= 0 && tx + k < bx.w) blend(acc[k], row[tx + k], SA, INV);
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
