// Deflate of PNG scanlines on the GPU (the `gpu` preset).
//
// An item's filtered rows are cut into segments of DEFLATE_SEG bytes; one thread block makes
// one segment into one dynamic-Huffman deflate block followed by an empty stored block (a
// "sync flush"), so every segment's output is a whole number of bytes and the segments of an
// item simply concatenate into one deflate stream (gpucomp/gpu_deflate.py adds the zlib
// header, the final block and the Adler-32). A segment whose Huffman coding would not be
// smaller becomes a stored block instead, so no segment grows by more than 5 bytes.
//
// Matching: each thread greedily parses its own DEFLATE_SUB bytes of the segment, trying a
// few fixed distances that suit images (1: runs; C: the pixel to the left; one row up,
// and one row up one pixel to either side). Matches may reach back into earlier segments
// (the decoder's 32 KiB window spans blocks) but never past the thread's own range. Runs count
// from 3 bytes, other matches from 5: on noisy residuals shorter ones lose to their literals
// (standard workload: 8.6% over ISA-L level 2 with 3, 5.0% with this rule).
// A thread's tokens (u16: a literal byte, or 256 + (length - 3) << 3 | candidate) go to a
// scratch buffer once and are read back to size and to write the bits. Token i of thread t
// is at i * DEFLATE_THREADS + t, so a warp's stores and loads of its i-th tokens coalesce.
//
// DEFLATE_STAGE=1 builds a variant that first copies the segment and the window before it
// (as far as static shared memory allows) into shared memory with coalesced loads, so the
// parse reads shared memory instead of making one uncoalesced global load per byte; each
// thread's range is offset by 4 bytes per DEFLATE_SUB so threads moving in step hit different
// banks. Same tokens, same bytes: only where they are read from changes.
//
// The block's work is a sequence of phases separated by barriers. Built with DEFLATE_HOST
// (tests/test_gpu_deflate.py, plain C++), the same phases run one thread at a time, so
// the coding logic is tested on machines without a GPU; with DEFLATE_HOST_THREADS too
// (tests/deflate_threads.cpp) they run on real threads under ThreadSanitizer.

#ifdef DEFLATE_HOST
#define HD inline
#define HD_COLD inline
#define CONSTANT static const
#else
#define HD __device__ __forceinline__
#define HD_COLD __device__ __noinline__  // once-per-block setup: kept out of line, NVRTC 4.9 s -> 1.3 s
#define CONSTANT __constant__
#endif

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#ifndef DEFLATE_THREADS                      // threads per segment (a power of two, 32..512)
#define DEFLATE_THREADS 64
#endif
#define DEFLATE_SEG 32768                     // input bytes per segment (<= 65535: stored fallback)
#define DEFLATE_SUB (DEFLATE_SEG / DEFLATE_THREADS)
#define DEFLATE_SLOT (DEFLATE_SEG + 8)        // output bytes reserved per segment
#define NCAND 5
#ifndef DEFLATE_STAGE
#define DEFLATE_STAGE 0
#endif
#define MIN_FAR_MATCH 5u  // shorter matches away from distance 1 cost more bits than their literals
#define MAX_BITS 15
#define ADLER_MOD 65521u

CONSTANT u16 DBASE[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769,
                          1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
CONSTANT u8 DEXT[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11,
                        12, 12, 13, 13};
CONSTANT u8 CL_ORDER[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};

HD u32 min32(u32 a, u32 b) { return a < b ? a : b; }
HD u32 load8(const u8* p) {  // input bytes: read-only for the whole kernel
#ifdef DEFLATE_HOST
    return *p;
#else
    return __ldg(p);
#endif
}
HD u32 log2u(u32 x) {  // x > 0
#ifdef DEFLATE_HOST
    return 31 - __builtin_clz(x);
#else
    return 31 - __clz(x);
#endif
}

// Shared-memory atomics on the device; plain operations when the host runs one thread at a time,
// and real atomics when tests/deflate_threads.cpp runs a block as real threads (DEFLATE_HOST_THREADS).
#if defined(DEFLATE_HOST) && defined(DEFLATE_HOST_THREADS)
HD void add32(u32* p, u32 v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
HD void add64(u64* p, u64 v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
HD void or32(u32* p, u32 v) { __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }
#elif defined(DEFLATE_HOST)
HD void add32(u32* p, u32 v) { *p += v; }
HD void add64(u64* p, u64 v) { *p += v; }
HD void or32(u32* p, u32 v) { *p |= v; }
#else
HD void add32(u32* p, u32 v) { atomicAdd(p, v); }
HD void add64(u64* p, u64 v) { atomicAdd(p, v); }
HD void or32(u32* p, u32 v) { atomicOr(p, v); }
#endif

struct Job {           // one segment of one item
    const u8* data;    // the item's filtered rows
    u32 n;             // bytes in the item
    u32 start, len;    // this segment's bytes
    u32 cand[NCAND];   // match distances to try (0: none)
    u32 dcode[NCAND];  // their distance codes, extra bit counts and extra values
    u32 dext[NCAND], dval[NCAND];
    u16* tok;          // token scratch, DEFLATE_SEG entries (thread t: t, t + THREADS, ...)
    u32* out;          // the segment's output slot, DEFLATE_SLOT bytes
    u8* stage;         // DEFLATE_STAGE: item bytes [lo, start + len) in shared memory, else null
    u32 lo;
};

// Where item byte x (>= lo) sits in the stage: 4 bytes of padding every DEFLATE_SUB bytes.
HD u32 stage_index(u32 y) { return y + (y / DEFLATE_SUB) * 4; }

// Item byte x: from the stage when it holds it, else from global memory.
HD u32 rd(const Job& j, u32 x) {
    if (DEFLATE_STAGE && x >= j.lo) return j.stage[stage_index(x - j.lo)];  // plain build: compiled out
    return load8(j.data + x);
}

struct Shared {
    u32 lit_freq[288], dist_freq[32], cl_freq[19];
    u16 lit_sorted[288], dist_sorted[32];
    u32 lit_used, dist_used;
    u32 scratch[288];
    u8 lit_len[288], dist_len[32], cl_len[19];
    u16 lit_code[288], dist_code[32], cl_code[19];
    u16 cl_tokens[320];  // code-length symbols: symbol | extra << 8
    u32 ntok[DEFLATE_THREADS], thread_bits[DEFLATE_THREADS], thread_off[DEFLATE_THREADS];
    u32 hdr[80];         // the block header (at most ~2300 bits)
    u32 hdr_bits, total_bits, size, stored;
    u64 adler_a, adler_b;
};

// Static shared memory is 48 KiB a block; the stage gets what Shared and Job leave.
constexpr u32 STAGE_BYTES = DEFLATE_STAGE ? 48 * 1024 - (u32)sizeof(Shared) - 512 : 4;
// The longest window before a segment that fits with it, padding included; a multiple of
// DEFLATE_SUB, so each thread's range starts DEFLATE_SUB-aligned in the stage.
constexpr u32 STAGE_SPAN = STAGE_BYTES / (DEFLATE_SUB + 4) * DEFLATE_SUB;
constexpr u32 STAGE_WINDOW = DEFLATE_STAGE && STAGE_SPAN > DEFLATE_SEG ? STAGE_SPAN - DEFLATE_SEG : 0;

// ---- bits: LSB first into little-endian 32-bit words, OR'd so neighbours can share a word ----
struct Bits {
    u32* words;
    u32 w;
    u64 acc;
    u32 nacc;
    HD void start(u32* base, u32 bitpos) { words = base; w = bitpos >> 5; nacc = bitpos & 31; acc = 0; }
    HD void put(u32 v, u32 n) {
        acc |= (u64)v << nacc;
        nacc += n;
        while (nacc >= 32) { or32(&words[w++], (u32)acc); acc >>= 32; nacc -= 32; }
    }
    HD void finish() { if (nacc) or32(&words[w], (u32)acc); }
};

// Length 3..258 -> code index 0..28 (symbol 257 + index), by arithmetic: a table in constant
// memory would serialise a warp whose threads look up different lengths.
HD u32 length_code(u32 len) {
    if (len == 258) return 28;
    const u32 x = len - 3;
    if (x < 8) return x;
    const u32 h = log2u(x);
    return 4 * h - 8 + (x >> (h - 2));
}
HD u32 length_extra_bits(u32 code) { return (code < 8 || code == 28) ? 0 : (code - 4) >> 2; }

HD u32 dist_code_of(u32 d) {
    u32 c = 0;
    while (c < 29 && DBASE[c + 1] <= d) ++c;
    return c;
}

// Greedy parse of [a, b): calls v.lit(byte) or v.match(length, candidate index).
template <class V> HD void parse(const Job& j, u32 a, u32 b, V& v) {
    u32 cand[NCAND];
    for (u32 k = 0; k < NCAND; ++k) cand[k] = j.cand[k];
    u32 p = a;
    while (p < b) {
        const u32 limit = min32(258u, b - p);
        const u32 q0 = rd(j, p);
        u32 best = 0, bk = 0;
        if (limit >= 3) {  // a candidate must match 3 bytes to count: test those first, once loaded
            const u32 q1 = rd(j, p + 1), q2 = rd(j, p + 2);
            for (u32 k = 0; k < NCAND; ++k) {
                const u32 dist = cand[k];
                if (dist == 0 || dist > p) continue;
                const u32 s = p - dist;
                if (rd(j, s) != q0 || rd(j, s + 1) != q1 || rd(j, s + 2) != q2) continue;
                u32 l = 3;
                while (l < limit && rd(j, s + l) == rd(j, p + l)) ++l;
                if (l >= (dist == 1 ? 3u : MIN_FAR_MATCH) && l > best) { best = l; bk = k; if (l == limit) break; }
            }
        }
        if (best >= 3) { v.match(best, bk); p += best; }
        else { v.lit(q0); p += 1; }
    }
}

HD void thread_range(const Job& j, int t, u32& a, u32& b) {
    a = j.start + min32(j.len, (u32)t * DEFLATE_SUB);
    b = j.start + min32(j.len, (u32)(t + 1) * DEFLATE_SUB);
}

// Parse pass: tokens to the thread's scratch, symbol counts to the block's histograms.
struct Counter {
    Shared& s;
    const Job& j;
    u16* tok;
    u32 n;
    HD void lit(u32 c) { tok[DEFLATE_THREADS * n++] = (u16)c; add32(&s.lit_freq[c], 1); }
    HD void match(u32 len, u32 k) {
        tok[DEFLATE_THREADS * n++] = (u16)(256 + ((len - 3) << 3 | k));
        add32(&s.lit_freq[257 + length_code(len)], 1);
        add32(&s.dist_freq[j.dcode[k]], 1);
    }
};

// Replays a thread's tokens as lit/match calls.
template <class V> HD void replay(const Job& j, const Shared& s, int t, V& v) {
    const u16* tok = j.tok + t;
    for (u32 i = 0; i < s.ntok[t]; ++i) {
        const u32 x = tok[DEFLATE_THREADS * i];
        if (x < 256) v.lit(x);
        else v.match(((x - 256) >> 3) + 3, x & 7);
    }
}

struct Sizer {
    const Shared& s;
    const Job& j;
    u32 bits;
    HD void lit(u32 c) { bits += s.lit_len[c]; }
    HD void match(u32 len, u32 k) {
        const u32 lc = length_code(len), dc = j.dcode[k];
        bits += s.lit_len[257 + lc] + length_extra_bits(lc) + s.dist_len[dc] + j.dext[k];
    }
};

struct Emitter {
    const Shared& s;
    const Job& j;
    Bits out;
    HD void lit(u32 c) { out.put(s.lit_code[c], s.lit_len[c]); }
    HD void match(u32 len, u32 k) {
        const u32 lc = length_code(len), dc = j.dcode[k], eb = length_extra_bits(lc);
        out.put(s.lit_code[257 + lc], s.lit_len[257 + lc]);
        if (eb) out.put((len - 3) & ((1u << eb) - 1), eb);
        out.put(s.dist_code[dc], s.dist_len[dc]);
        if (j.dext[k]) out.put(j.dval[k], j.dext[k]);
    }
};

// ---- Huffman code lengths ----------------------------------------------------------------------
// Moffat & Katajainen's in-place minimum-redundancy lengths over weights sorted ascending,
// then lengths capped at max_bits by fixing the Kraft sum (as miniz does); the most frequent
// symbols get the shortest codes.
HD_COLD void huffman_lengths(const u32* freq, const u16* sorted, u32 n, u32 max_bits, u32* A, u8* len_out) {
    for (u32 i = 0; i < n; ++i) A[i] = freq[sorted[i]];
    if (n == 1) { len_out[sorted[0]] = 1; return; }
    u32 root = 0, leaf = 2, next;
    A[0] += A[1];
    for (next = 1; next < n - 1; ++next) {
        if (leaf >= n || A[root] < A[leaf]) { A[next] = A[root]; A[root++] = next; }
        else A[next] = A[leaf++];
        if (leaf >= n || (root < next && A[root] < A[leaf])) { A[next] += A[root]; A[root++] = next; }
        else A[next] += A[leaf++];
    }
    A[n - 2] = 0;
    for (int k = (int)n - 3; k >= 0; --k) A[k] = A[A[k]] + 1;
    int avbl = 1, used = 0, dpth = 0, r = (int)n - 2, nx = (int)n - 1;
    while (avbl > 0) {
        while (r >= 0 && (int)A[r] == dpth) { ++used; --r; }
        while (avbl > used) { A[nx--] = dpth; --avbl; }
        avbl = 2 * used; ++dpth; used = 0;
    }
    u32 count[33];
    for (u32 i = 0; i <= 32; ++i) count[i] = 0;
    for (u32 i = 0; i < n; ++i) count[A[i] > 32 ? 32 : A[i]]++;
    for (u32 i = max_bits + 1; i <= 32; ++i) count[max_bits] += count[i];
    u32 total = 0;
    for (u32 i = max_bits; i > 0; --i) total += count[i] << (max_bits - i);
    while (total != (1u << max_bits)) {
        count[max_bits]--;
        for (u32 i = max_bits - 1; i > 0; --i)
            if (count[i]) { count[i]--; count[i + 1] += 2; break; }
        total--;
    }
    u32 k = n;
    for (u32 bits = 1; bits <= max_bits; ++bits)
        for (u32 c = count[bits]; c > 0; --c) len_out[sorted[--k]] = (u8)bits;
}

// Canonical codes, bit-reversed because deflate sends Huffman codes most significant bit first.
HD_COLD void canonical_codes(const u8* len, u32 nsym, u16* code) {
    u32 count[MAX_BITS + 1], next[MAX_BITS + 1];
    for (u32 i = 0; i <= MAX_BITS; ++i) count[i] = 0;
    for (u32 i = 0; i < nsym; ++i) count[len[i]]++;
    count[0] = 0;
    u32 c = 0;
    for (u32 b = 1; b <= MAX_BITS; ++b) { c = (c + count[b - 1]) << 1; next[b] = c; }
    for (u32 i = 0; i < nsym; ++i) {
        const u32 l = len[i];
        if (!l) { code[i] = 0; continue; }
        u32 v = next[l]++, r = 0;
        for (u32 b = 0; b < l; ++b) { r = (r << 1) | (v & 1); v >>= 1; }
        code[i] = (u16)r;
    }
}

// Rank of each used symbol by (frequency, symbol): sorted[rank] = symbol.
HD void rank_symbols(const u32* freq, u32 nsym, u16* sorted, int t) {
    for (u32 s = t; s < nsym; s += DEFLATE_THREADS) {
        const u32 f = freq[s];
        if (!f) continue;
        u32 r = 0;
        for (u32 q = 0; q < nsym; ++q) {
            const u32 g = freq[q];
            r += g && (g < f || (g == f && q < s));
        }
        sorted[r] = (u16)s;
    }
}

// ---- phases ------------------------------------------------------------------------------------
HD void phase_clear(Shared& s, const Job& j, int t) {
    for (u32 i = t; i < 288; i += DEFLATE_THREADS) s.lit_freq[i] = 0;
    for (u32 i = t; i < 32; i += DEFLATE_THREADS) s.dist_freq[i] = 0;
    for (u32 i = t; i < DEFLATE_SLOT / 4; i += DEFLATE_THREADS) j.out[i] = 0;
    if (t == 0) { s.adler_a = 0; s.adler_b = 0; }
}

HD void phase_stage(const Job& j, int t) {
#if DEFLATE_STAGE
    for (u32 x = j.lo + t; x < j.start + j.len; x += DEFLATE_THREADS) j.stage[stage_index(x - j.lo)] = load8(j.data + x);
#else
    (void)j;
    (void)t;
#endif
}

HD void phase_count(Shared& s, const Job& j, int t) {
    u32 a, b;
    thread_range(j, t, a, b);
    Counter c{s, j, j.tok + t, 0};
    parse(j, a, b, c);
    s.ntok[t] = c.n;
    u64 sa = 0, sb = 0;  // Adler-32 pieces: sum of bytes, and bytes weighted by distance to the segment's end
    const u32 end = j.start + j.len;
    for (u32 i = a; i < b; ++i) { const u32 x = rd(j, i); sa += x; sb += (u64)(end - i) * x; }
    if (b > a) { add64(&s.adler_a, sa); add64(&s.adler_b, sb); }
}

HD_COLD void phase_rank(Shared& s, int t) {
    if (t == 0) {
        s.lit_freq[256] = 1;  // end of block
        // deflate needs two codes per tree to send one bit per symbol; zlib does the same.
        u32 used = 0;
        for (u32 i = 0; i < 286; ++i) used += s.lit_freq[i] != 0;
        for (u32 i = 0; used < 2; ++i) if (!s.lit_freq[i]) { s.lit_freq[i] = 1; ++used; }
        s.lit_used = used;
        used = 0;
        for (u32 i = 0; i < 30; ++i) used += s.dist_freq[i] != 0;
        for (u32 i = 0; used < 2; ++i) if (!s.dist_freq[i]) { s.dist_freq[i] = 1; ++used; }
        s.dist_used = used;
    }
}

HD void phase_sort(Shared& s, int t) {
    rank_symbols(s.lit_freq, 286, s.lit_sorted, t);
    rank_symbols(s.dist_freq, 30, s.dist_sorted, t);
}

HD_COLD void send_cl(Shared& s, u32& n, u32 sym, u32 extra) {
    s.cl_tokens[n++] = (u16)(sym | extra << 8);
    s.cl_freq[sym]++;
}

// Thread 0: both trees' lengths and codes, and the block header bits.
HD_COLD void phase_build(Shared& s) {
    for (u32 i = 0; i < 288; ++i) s.lit_len[i] = 0;
    for (u32 i = 0; i < 32; ++i) s.dist_len[i] = 0;
    huffman_lengths(s.lit_freq, s.lit_sorted, s.lit_used, MAX_BITS, s.scratch, s.lit_len);
    huffman_lengths(s.dist_freq, s.dist_sorted, s.dist_used, MAX_BITS, s.scratch, s.dist_len);
    canonical_codes(s.lit_len, 286, s.lit_code);
    canonical_codes(s.dist_len, 30, s.dist_code);
    u32 nl = 286, nd = 30;
    while (nl > 257 && !s.lit_len[nl - 1]) --nl;
    while (nd > 1 && !s.dist_len[nd - 1]) --nd;
    // Code lengths as one sequence, run-length coded with symbols 16 (repeat), 17, 18 (zeros).
    for (u32 i = 0; i < 19; ++i) { s.cl_freq[i] = 0; s.cl_len[i] = 0; }
    u32 ntok = 0, i = 0;
    const u32 total = nl + nd;
    while (i < total) {
        const u32 cur = i < nl ? s.lit_len[i] : s.dist_len[i - nl];
        u32 run = 1;
        while (i + run < total && (i + run < nl ? s.lit_len[i + run] : s.dist_len[i + run - nl]) == cur) ++run;
        u32 r = run;
        if (cur == 0) {
            while (r >= 11) { const u32 k = min32(r, 138); send_cl(s, ntok, 18, k - 11); r -= k; }
            if (r >= 3) { send_cl(s, ntok, 17, r - 3); r = 0; }
            while (r > 0) { send_cl(s, ntok, 0, 0); --r; }
        } else {
            send_cl(s, ntok, cur, 0);
            --r;
            while (r >= 3) { const u32 k = min32(r, 6); send_cl(s, ntok, 16, k - 3); r -= k; }
            while (r > 0) { send_cl(s, ntok, cur, 0); --r; }
        }
        i += run;
    }
    // The code-length code: 19 symbols, at most 7 bits; a serial sort is enough.
    u16 sorted[19];
    u32 n = 0;
    for (u32 q = 0; q < 19; ++q) {
        if (!s.cl_freq[q]) continue;
        u32 k = n++;
        while (k > 0 && s.cl_freq[sorted[k - 1]] > s.cl_freq[q]) { sorted[k] = sorted[k - 1]; --k; }
        sorted[k] = (u16)q;
    }
    if (n == 1) {  // one symbol still needs a complete code: give a second one length 1
        const u16 other = sorted[0] == 0 ? 1 : 0;
        sorted[1] = sorted[0];
        sorted[0] = other;
        s.cl_freq[other] = 1;
        n = 2;
    }
    huffman_lengths(s.cl_freq, sorted, n, 7, s.scratch, s.cl_len);
    canonical_codes(s.cl_len, 19, s.cl_code);
    u32 ncl = 19;
    while (ncl > 4 && !s.cl_len[CL_ORDER[ncl - 1]]) --ncl;

    for (u32 q = 0; q < 80; ++q) s.hdr[q] = 0;
    Bits h;
    h.start(s.hdr, 0);
    h.put(0, 1);  // BFINAL = 0: the host appends the final block
    h.put(2, 2);  // dynamic Huffman
    h.put(nl - 257, 5);
    h.put(nd - 1, 5);
    h.put(ncl - 4, 4);
    for (u32 q = 0; q < ncl; ++q) h.put(s.cl_len[CL_ORDER[q]], 3);
    u32 bits = 3 + 5 + 5 + 4 + 3 * ncl;
    for (u32 q = 0; q < ntok; ++q) {
        const u32 sym = s.cl_tokens[q] & 0xff, extra = s.cl_tokens[q] >> 8;
        h.put(s.cl_code[sym], s.cl_len[sym]);
        bits += s.cl_len[sym];
        if (sym >= 16) {
            const u32 eb = sym == 16 ? 2 : sym == 17 ? 3 : 7;
            h.put(extra, eb);
            bits += eb;
        }
    }
    h.finish();
    s.hdr_bits = bits;
}

HD void phase_size(Shared& s, const Job& j, int t) {
    Sizer z{s, j, 0};
    replay(j, s, t, z);
    s.thread_bits[t] = z.bits;
}

// Thread 0: where each thread's bits go, and whether a stored block is smaller.
HD_COLD void phase_plan(Shared& s, const Job& j, u32* size_out, u32* adler_out) {
    u32 off = s.hdr_bits;
    for (u32 t = 0; t < DEFLATE_THREADS; ++t) { s.thread_off[t] = off; off += s.thread_bits[t]; }
    off += s.lit_len[256];    // end of block
    s.total_bits = off;
    off += 3;                 // the empty stored block's header, then byte alignment and LEN/NLEN
    const u32 bytes = (off + 7) / 8 + 4;
    s.stored = bytes >= j.len + 5;
    s.size = s.stored ? j.len + 5 : bytes;
    *size_out = s.size;
    adler_out[0] = (u32)(s.adler_a % ADLER_MOD);
    adler_out[1] = (u32)(s.adler_b % ADLER_MOD);
}

HD void phase_emit(Shared& s, const Job& j, int t) {
    u8* out8 = (u8*)j.out;
    if (s.stored) {  // BFINAL 0, BTYPE 00, then LEN and its complement: byte-aligned raw bytes
        if (t == 0) {
            out8[1] = (u8)(j.len & 0xff); out8[2] = (u8)(j.len >> 8);
            out8[3] = (u8)(~j.len & 0xff); out8[4] = (u8)((~j.len >> 8) & 0xff);
        }
        for (u32 i = t; i < j.len; i += DEFLATE_THREADS) out8[5 + i] = j.data[j.start + i];
        return;
    }
    if (t == 0) {
        for (u32 q = 0; q < (s.hdr_bits + 31) / 32; ++q) or32(&j.out[q], s.hdr[q]);
        Bits e;
        e.start(j.out, s.total_bits - s.lit_len[256]);
        e.put(s.lit_code[256], s.lit_len[256]);
        e.put(0, 3);  // empty stored block: BFINAL 0, BTYPE 00
        e.finish();
        const u32 at = (s.total_bits + 3 + 7) / 8 + 2;  // LEN = 0000 (already zero), NLEN = FFFF
        or32(&j.out[at / 4], 0xffu << (8 * (at % 4)));
        or32(&j.out[(at + 1) / 4], 0xffu << (8 * ((at + 1) % 4)));
    }
    Emitter e{s, j, {}};
    e.out.start(j.out, s.thread_off[t]);
    replay(j, s, t, e);
    e.out.finish();
}

// Candidate distances for an item of `width` pixels, `c` bytes per pixel (at most 32768 back).
HD_COLD void set_candidates(Job& j, u32 width, u32 c) {
    const u32 stride = 1 + width * c;
    const u32 want[NCAND] = {1, c, stride - c, stride, stride + c};
    u32 n = 0;
    for (u32 k = 0; k < NCAND; ++k) {
        const u32 d = want[k];
        bool dup = d == 0 || d > 32768;
        for (u32 q = 0; q < n; ++q) dup |= j.cand[q] == d;
        if (dup) continue;
        j.cand[n] = d;
        j.dcode[n] = dist_code_of(d);
        j.dext[n] = DEXT[j.dcode[n]];
        j.dval[n] = d - DBASE[j.dcode[n]];
        ++n;
    }
    for (; n < NCAND; ++n) { j.cand[n] = 0; j.dcode[n] = 0; j.dext[n] = 0; j.dval[n] = 0; }
}

HD_COLD bool make_job(Job& j, const u8* data, u32 n, u32 width, u32 c, u32 seg, u8* slots, u16* tok, u8* stage) {
    j.data = data;
    j.n = n;
    j.start = seg * DEFLATE_SEG;
    if (j.start >= n) return false;
    j.len = min32(DEFLATE_SEG, n - j.start);
    j.out = (u32*)(slots + (u64)seg * DEFLATE_SLOT);
    j.tok = tok;
    j.stage = stage;  // the window: STAGE_WINDOW bytes before the segment, a multiple of DEFLATE_SUB
    j.lo = j.start > STAGE_WINDOW ? j.start - STAGE_WINDOW : 0;
    set_candidates(j, width, c);
    return true;
}

// The whole block's work; X runs a phase on every thread (`each`) and waits for all (`sync`).
template <class X> HD void deflate_segment(const X& x, Shared& s, const Job& j, u32* size_out, u32* adler_out) {
    x.each([&](int t) { phase_clear(s, j, t); phase_stage(j, t); });
    x.sync();
    x.each([&](int t) { phase_count(s, j, t); });
    x.sync();
    x.each([&](int t) { phase_rank(s, t); });
    x.sync();
    x.each([&](int t) { phase_sort(s, t); });
    x.sync();
    x.each([&](int t) { if (t == 0) phase_build(s); });
    x.sync();
    x.each([&](int t) { phase_size(s, j, t); });
    x.sync();
    x.each([&](int t) { if (t == 0) phase_plan(s, j, size_out, adler_out); });
    x.sync();
    x.each([&](int t) { phase_emit(s, j, t); });
}

#ifdef DEFLATE_HOST
struct HostBlock {
    template <class F> void each(F f) const { for (int t = 0; t < DEFLATE_THREADS; ++t) f(t); }
    void sync() const {}
};

// One item on the host: slots (segments x DEFLATE_SLOT bytes), sizes and Adler pieces per segment.
// Callable from several threads at once (ctypes releases the GIL): per-call state only.
extern "C" int deflate_host(const u8* data, u32 n, u32 width, u32 c, u8* slots, u32* sizes, u32* adler) {
    Shared* s = new Shared;
    __builtin_memset(s, 0xA5, sizeof(Shared));  // like shared memory: garbage until written
    u16* tok = new u16[DEFLATE_SEG];
    u8* stage = DEFLATE_STAGE ? new u8[STAGE_BYTES] : nullptr;
    u32 seg = 0;
    Job j;
    while (make_job(j, data, n, width, c, seg, slots, tok, stage)) {
        deflate_segment(HostBlock{}, *s, j, sizes + seg, adler + 2 * seg);
        ++seg;
    }
    delete[] stage;
    delete[] tok;
    delete s;
    return (int)seg;
}

extern "C" int deflate_constants(u32* out) {
    out[0] = DEFLATE_SEG; out[1] = DEFLATE_SLOT; out[2] = DEFLATE_THREADS;
    return 3;
}
#else
struct DeviceBlock {
    template <class F> __device__ void each(F f) const { f((int)threadIdx.x); }
    __device__ void sync() const { __syncthreads(); }
};

// Grid (segments per item, items). Item b's rows start at rows + b * item_stride; its length
// and bytes per pixel come from item_len[b] and item_c[b]. Unused segments get size 0.
extern "C" __global__ void __launch_bounds__(DEFLATE_THREADS) deflate_segments(
    const u8* __restrict__ rows, u64 item_stride, const u32* __restrict__ item_len, const u32* __restrict__ item_c,
    u32 width, u32 segs_per_item, u8* __restrict__ slots, u16* __restrict__ tokens, u32* __restrict__ sizes,
    u32* __restrict__ adler)
{
    __shared__ Shared s;
    __shared__ Job j;
    const u32 b = blockIdx.y, seg = blockIdx.x;
    const u64 at = (u64)b * segs_per_item + seg;
    __shared__ bool live;
    __shared__ u8 stage[STAGE_BYTES];
    if (threadIdx.x == 0) {
        live = make_job(j, rows + b * item_stride, item_len[b], width, item_c[b], seg,
                        slots + (u64)b * segs_per_item * DEFLATE_SLOT, tokens + at * DEFLATE_SEG,
                        DEFLATE_STAGE ? stage : nullptr);
        if (!live) { sizes[at] = 0; adler[2 * at] = 0; adler[2 * at + 1] = 0; }
    }
    __syncthreads();
    if (!live) return;
    deflate_segment(DeviceBlock{}, s, j, sizes + at, adler + 2 * at);
}

// Packs each item's segments back to back: item b's bytes start at out + b * out_stride,
// segment k of it at offsets[b * segs + k] (an exclusive sum of the sizes along k).
extern "C" __global__ void gather_segments(
    const u8* __restrict__ slots, const u32* __restrict__ sizes, const u32* __restrict__ offsets,
    u32 segs_per_item, u64 out_stride, u8* __restrict__ out)
{
    const u64 at = (u64)blockIdx.y * segs_per_item + blockIdx.x;
    const u32 n = sizes[at];
    const u8* src = slots + at * DEFLATE_SLOT;
    u8* dst = out + blockIdx.y * out_stride + offsets[at];
    for (u32 i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}
#endif
