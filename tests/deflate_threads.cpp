// kernels/deflate.cu's block body with one real thread per CUDA thread and a std::barrier for
// __syncthreads, built with ThreadSanitizer by tests/test_gpu_deflate.py: races that the
// one-thread-at-a-time host build cannot show (a missing barrier, a plain write where an
// atomic is needed) are reported here without a GPU. Shared memory and the output slots start
// as garbage, as on the device.
//   g++ -std=c++20 -fsanitize=thread -DDEFLATE_HOST -DDEFLATE_HOST_THREADS -include kernels/deflate.cu
// Arguments: groups of (input file, width, bytes per pixel, output file); the output holds the
// slots, then the sizes, then the Adler pieces, as deflate_host writes them.
#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

struct ThreadBlock {
    int t;
    std::barrier<>* bar;
    template <class F> void each(F f) const { f(t); }
    void sync() const { bar->arrive_and_wait(); }
};

static int run(const char* in, u32 width, u32 c, const char* out) {
    FILE* f = std::fopen(in, "rb");
    if (!f) return 2;
    std::fseek(f, 0, SEEK_END);
    const long n = std::ftell(f);
    std::fseek(f, 0, SEEK_SET);
    std::vector<u8> data(n);
    if (std::fread(data.data(), 1, n, f) != (size_t)n) return 2;
    std::fclose(f);
    const u32 segs = (u32)((n + DEFLATE_SEG - 1) / DEFLATE_SEG);
    std::vector<u8> slots((size_t)segs * DEFLATE_SLOT, 0xCD);
    std::vector<u32> sizes(segs), adler(2 * segs);
    std::vector<u16> tok(DEFLATE_SEG);
    std::vector<u8> stage(STAGE_BYTES);
    for (u32 seg = 0; seg < segs; ++seg) {
        Shared* s = (Shared*)std::malloc(sizeof(Shared));
        std::memset(s, 0xA5, sizeof(Shared));
        Job j;
        if (!make_job(j, data.data(), (u32)n, width, c, seg, slots.data(), tok.data(), stage.data())) return 3;
        std::barrier<> bar(DEFLATE_THREADS);
        std::vector<std::thread> threads;
        for (int t = 0; t < DEFLATE_THREADS; ++t)
            threads.emplace_back([&, t] { deflate_segment(ThreadBlock{t, &bar}, *s, j, &sizes[seg], &adler[2 * seg]); });
        for (auto& th : threads) th.join();
        std::free(s);
    }
    FILE* o = std::fopen(out, "wb");
    if (!o) return 2;
    std::fwrite(slots.data(), 1, slots.size(), o);
    std::fwrite(sizes.data(), 4, segs, o);
    std::fwrite(adler.data(), 4, 2 * segs, o);
    std::fclose(o);
    return 0;
}

int main(int argc, char** argv) {
    for (int a = 1; a + 3 < argc; a += 4) {
        const int r = run(argv[a], (u32)std::atoi(argv[a + 1]), (u32)std::atoi(argv[a + 2]), argv[a + 3]);
        if (r) return r;
    }
    return 0;
}
