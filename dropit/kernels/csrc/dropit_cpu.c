/* Fused CPU kernels of dropit.kernels: one pass each way over a cached tensor.
 *
 * Every function here has a torch reference in dropit/kernels/reference.py that
 * defines its result; tests compare the two bit for bit. Elements are handled by
 * their bit patterns (uint16/32/64 for bf16/fp16, fp32, fp64), so one code path
 * serves every float dtype: the magnitude "key" of an element is its bits with the
 * sign cleared, which orders like |x| for finite values and Inf, and puts NaN above
 * Inf, so NaN is always kept.
 *
 * Bit layout: bit i of byte j stands for element 8j + i (little-endian words).
 * Threads: OpenMP, which links to the libgomp torch already loaded, so these
 * kernels share torch's thread pool instead of adding threads of their own.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__BMI2__)
#include <immintrin.h>
#define DROPIT_AVX512 1
#endif

#define MIN_SHARE 65536 /* fewer elements than this per thread: one thread */

static inline int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static inline int threads_for(int64_t n, int nthreads) {
    if (nthreads < 1 || n < 2 * MIN_SHARE) return 1;
    return nthreads > 64 ? 64 : nthreads;
}

/* The fixed sample: one position in each of `samples` (a power of two, 2^log2s)
 * equal strata of [0, n), jittered by an integer hash of (i, n). No division, and
 * every product stays below 2^63, so the torch reference computes the same
 * positions with int64 arithmetic. */
static inline uint64_t mix31(uint64_t v) {
    v = (v * 0x5bd1e995ULL + 0x3c6ef372ULL) & 0x7fffffffULL;
    v ^= v >> 13;
    v = (v * 0x27d4eb2dULL) & 0x7fffffffULL;
    v ^= v >> 15;
    return v;
}

static inline int64_t sample_position(int64_t i, int64_t n, int log2s) {
    uint64_t start = ((uint64_t)i * (uint64_t)n) >> log2s;
    uint64_t width = (((uint64_t)(i + 1) * (uint64_t)n) >> log2s) - start;
    return (int64_t)(start + ((mix31((uint64_t)i ^ ((uint64_t)n & 0x7fffffffULL)) * width) >> 31));
}

/* k-th smallest (0-based) of a[0..m), reordering a: quickselect, median of three. */
#define DEFINE_SELECT(W)                                                                 \
    static uint##W##_t select_##W(uint##W##_t* a, int64_t m, int64_t k) {                \
        int64_t lo = 0, hi = m - 1;                                                       \
        while (hi > lo) {                                                                 \
            int64_t mid = lo + (hi - lo) / 2;                                             \
            uint##W##_t x = a[lo], y = a[mid], z = a[hi];                                 \
            uint##W##_t p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y)); \
            int64_t i = lo, j = hi;                                                       \
            while (i <= j) {                                                              \
                while (a[i] < p) i++;                                                     \
                while (a[j] > p) j--;                                                     \
                if (i <= j) {                                                             \
                    uint##W##_t t = a[i]; a[i] = a[j]; a[j] = t;                          \
                    i++; j--;                                                             \
                }                                                                         \
            }                                                                             \
            if (k <= j) hi = j;                                                           \
            else if (k >= i) lo = i;                                                      \
            else return a[k];                                                             \
        }                                                                                 \
        return a[k];                                                                      \
    }

DEFINE_SELECT(16)
DEFINE_SELECT(32)
DEFINE_SELECT(64)

/* The sampled threshold: the rank-th smallest magnitude key (1-based) of the sample
 * (all of x when n <= 2^log2s); -1 (keep all) when rank is 0. A threshold equal to
 * the sample's largest key (most of the sample tied at its maximum) steps one key
 * down, so the ties are kept rather than all dropped; zero stays zero. */
#define DEFINE_THRESHOLD(W, ABS)                                                          \
    int64_t dropit_threshold_##W(const uint##W##_t* x, int64_t n, int64_t rank, int log2s) { \
        if (rank <= 0 || n <= 0) return -1;                                               \
        int64_t samples = (int64_t)1 << log2s, m = n <= samples ? n : samples;            \
        uint##W##_t* keys = (uint##W##_t*)malloc((size_t)m * sizeof(uint##W##_t));        \
        if (!keys) return -2;                                                             \
        uint##W##_t top = 0;                                                              \
        for (int64_t i = 0; i < m; i++) {                                                 \
            uint##W##_t k = x[n <= samples ? i : sample_position(i, n, log2s)] & ABS;     \
            keys[i] = k;                                                                  \
            if (k > top) top = k;                                                         \
        }                                                                                 \
        int64_t thr = (int64_t)select_##W(keys, m, (rank > m ? m : rank) - 1);            \
        free(keys);                                                                       \
        if (thr == (int64_t)top && thr > 0) thr -= 1;                                     \
        return thr;                                                                       \
    }

/* The rank-th smallest magnitude key (1-based) of x[0..m): exact min-k's threshold
 * among its candidates. */
#define DEFINE_KTH_KEY(W, ABS)                                                            \
    int64_t dropit_kth_key_##W(const uint##W##_t* x, int64_t m, int64_t rank) {           \
        if (rank <= 0 || rank > m) return -1;                                             \
        uint##W##_t* keys = (uint##W##_t*)malloc((size_t)m * sizeof(uint##W##_t));        \
        if (!keys) return -2;                                                             \
        for (int64_t i = 0; i < m; i++) keys[i] = x[i] & ABS;                             \
        int64_t kth = (int64_t)select_##W(keys, m, rank - 1);                             \
        free(keys);                                                                       \
        return kth;                                                                       \
    }

DEFINE_KTH_KEY(16, 0x7fffu)
DEFINE_KTH_KEY(32, 0x7fffffffu)
DEFINE_KTH_KEY(64, 0x7fffffffffffffffULL)

DEFINE_THRESHOLD(16, 0x7fffu)
DEFINE_THRESHOLD(32, 0x7fffffffu)
DEFINE_THRESHOLD(64, 0x7fffffffffffffffULL)

/* ---- compress: keep (key > thr, or mask[i] != 0); the first cap kept, in memory order,
 * go to values; bits say which were stored; returns how many were selected (may
 * exceed cap: then only the first cap are stored and the others' bits are clear).
 *
 * One pass over x: each thread takes a contiguous share of it, writes its bits and
 * compacts its kept values, thread 0 straight into values, the others into scratch
 * (their offsets are known only once every share is counted); after one barrier
 * they copy their values into place. The result does not depend on the threads. */

/* Select and compact [a, b) (a a multiple of 8): bits, and up to out_cap kept values
 * into out[0...]; the bits of kept elements beyond out_cap are cleared. Returns the
 * number selected. */
#define DEFINE_COMPRESS_RANGE(W, ABS)                                                     \
    static int64_t compress_range_##W(const uint##W##_t* x, const uint8_t* mask, int64_t a, int64_t b, \
                                      int64_t thr, uint##W##_t* out, int64_t out_cap, uint8_t* bits) { \
        int64_t count = 0, o = 0;                                                         \
        for (int64_t i = a; i < b; i += 8) {                                              \
            int lim = b - i < 8 ? (int)(b - i) : 8;                                       \
            unsigned byte = 0;                                                            \
            if (mask) {                                                                   \
                for (int j = 0; j < lim; j++) byte |= (unsigned)(mask[i + j] != 0) << j;  \
            } else {                                                                      \
                for (int j = 0; j < lim; j++) byte |= (unsigned)((int64_t)(x[i + j] & ABS) > thr) << j; \
            }                                                                             \
            count += __builtin_popcount(byte);                                            \
            unsigned stored = 0;                                                          \
            while (byte && o < out_cap) {                                                 \
                int j = __builtin_ctz(byte);                                              \
                out[o++] = x[i + j]; stored |= 1u << j; byte &= byte - 1;                 \
            }                                                                             \
            bits[i >> 3] = (uint8_t)stored;                                               \
        }                                                                                 \
        return count;                                                                     \
    }

DEFINE_COMPRESS_RANGE(16, 0x7fffu)
DEFINE_COMPRESS_RANGE(32, 0x7fffffffu)
DEFINE_COMPRESS_RANGE(64, 0x7fffffffffffffffULL)

#ifdef DROPIT_AVX512
/* 16 fp32 elements a step: compare into a mask register, compress in a register,
 * store whole vectors (compress-store straight to memory is slow on some CPUs). */
static int64_t compress_range_32_avx512(const uint32_t* x, const uint8_t* mask, int64_t a, int64_t b,
                                        int64_t thr, uint32_t* out, int64_t out_cap, uint8_t* bits) {
    int64_t count = 0, o = 0, i = a;
    const __m512i abs = _mm512_set1_epi32(0x7fffffff), t = _mm512_set1_epi32((int32_t)thr);
    for (; i + 16 <= b; i += 16) {
        __m512i v = _mm512_loadu_si512(x + i);
        __mmask16 m;
        if (mask) m = _mm_test_epi8_mask(_mm_loadu_si128((const __m128i*)(mask + i)), _mm_set1_epi8((char)0xff));
        else m = _mm512_cmpgt_epi32_mask(_mm512_and_si512(v, abs), t);
        int64_t c = __builtin_popcount((unsigned)m);
        count += c;
        if (o + c > out_cap) { /* keep the lowest out_cap - o set bits */
            m = (__mmask16)_pdep_u32(o < out_cap ? (1u << (out_cap - o)) - 1u : 0u, m);
            c = __builtin_popcount((unsigned)m);
        }
        memcpy(bits + (i >> 3), &m, 2);
        if (!c) continue;
        __m512i packed = _mm512_maskz_compress_epi32(m, v);
        if (o + 16 <= out_cap) _mm512_storeu_si512(out + o, packed);
        else _mm512_mask_storeu_epi32(out + o, (__mmask16)((1u << c) - 1u), packed);
        o += c;
    }
    if (i < b) count += compress_range_32(x, mask, i, b, thr, out + o, o < out_cap ? out_cap - o : 0, bits);
    return count;
}
#define COMPRESS_RANGE_32 compress_range_32_avx512
#else
#define COMPRESS_RANGE_32 compress_range_32
#endif
#define COMPRESS_RANGE_16 compress_range_16
#define COMPRESS_RANGE_64 compress_range_64

/* Clear the bits of [a, b) after its first `keep` set bits (an overflowing share). */
static void keep_first_bits(uint8_t* bits, int64_t a, int64_t b, int64_t keep) {
    for (int64_t j = a >> 3; j < (b + 7) >> 3; j++) {
        int c = __builtin_popcount(bits[j]);
        if (keep >= c) { keep -= c; continue; }
        unsigned byte = bits[j], stored = 0;
        while (keep > 0) { stored |= byte & (0u - byte); byte &= byte - 1; keep--; }
        bits[j] = (uint8_t)stored;
    }
}

/* Thread t's share of n elements: [a, b), a multiple of 64. */
static inline void share(int64_t n, int T, int t, int64_t* a, int64_t* b) {
    int64_t per = ((n + T - 1) / T + 63) / 64 * 64;
    *a = (int64_t)t * per < n ? (int64_t)t * per : n;
    *b = *a + per < n ? *a + per : n;
}

#define DEFINE_COMPRESS(W)                                                                \
    int64_t dropit_compress_##W(const uint##W##_t* x, const uint8_t* mask, int64_t n, int64_t thr, \
                                int64_t cap, uint##W##_t* values, uint8_t* bits, int nthreads) { \
        int T = threads_for(n, nthreads);                                                 \
        if (T == 1) return COMPRESS_RANGE_##W(x, mask, 0, n, thr, values, cap, bits);     \
        int64_t per = ((n + T - 1) / T + 63) / 64 * 64, scap = per < cap ? per : cap;     \
        uint##W##_t* scratch = (uint##W##_t*)malloc((size_t)(T - 1) * (size_t)scap * sizeof(uint##W##_t)); \
        if (!scratch) return COMPRESS_RANGE_##W(x, mask, 0, n, thr, values, cap, bits);   \
        int64_t counts[64];                                                               \
        _Pragma("omp parallel num_threads(T)")                                            \
        {                                                                                 \
            int t = thread_id();                                                          \
            int64_t a, b;                                                                 \
            share(n, T, t, &a, &b);                                                       \
            uint##W##_t* out = t == 0 ? values : scratch + (size_t)(t - 1) * scap;       \
            counts[t] = a < b ? COMPRESS_RANGE_##W(x, mask, a, b, thr, out, t == 0 ? cap : scap, bits) : 0; \
            _Pragma("omp barrier")                                                        \
            if (t > 0 && a < b) {                                                         \
                int64_t o = 0;                                                            \
                for (int j = 0; j < t; j++) o += counts[j];                               \
                int64_t mine = counts[t] < scap ? counts[t] : scap;                       \
                int64_t fit = o >= cap ? 0 : (cap - o < mine ? cap - o : mine);           \
                if (fit > 0) memcpy(values + o, out, (size_t)fit * sizeof(uint##W##_t));  \
                if (fit < counts[t]) keep_first_bits(bits, a, b, fit);                    \
            }                                                                             \
        }                                                                                 \
        free(scratch);                                                                    \
        int64_t total = 0;                                                                \
        for (int j = 0; j < T; j++) total += counts[j];                                   \
        return total;                                                                     \
    }

DEFINE_COMPRESS(16)
DEFINE_COMPRESS(32)
DEFINE_COMPRESS(64)

/* ---- expand: the dense tensor, values at the set bits (in order), zeros elsewhere. */
#define DEFINE_EXPAND_RANGE(W)                                                            \
    static void expand_range_##W(const uint##W##_t* values, const uint8_t* bits, int64_t a, int64_t b, \
                                 int64_t o, uint##W##_t* out) {                           \
        for (int64_t i = a; i < b; i += 8) {                                              \
            unsigned byte = bits[i >> 3];                                                 \
            int lim = b - i < 8 ? (int)(b - i) : 8;                                       \
            for (int j = 0; j < lim; j++) {                                               \
                if ((byte >> j) & 1u) out[i + j] = values[o++];                           \
                else out[i + j] = 0;                                                      \
            }                                                                             \
        }                                                                                 \
    }

DEFINE_EXPAND_RANGE(16)
DEFINE_EXPAND_RANGE(32)
DEFINE_EXPAND_RANGE(64)

#ifdef DROPIT_AVX512
static void expand_range_32_avx512(const uint32_t* values, const uint8_t* bits, int64_t a, int64_t b,
                                   int64_t o, uint32_t* out) {
    int64_t i = a;
    for (; i + 16 <= b; i += 16) {
        uint16_t m;
        memcpy(&m, bits + (i >> 3), 2);
        _mm512_storeu_si512(out + i, _mm512_maskz_expandloadu_epi32(m, values + o));
        o += __builtin_popcount((unsigned)m);
    }
    if (i < b) expand_range_32(values, bits, i, b, o, out);
}
#define EXPAND_RANGE_32 expand_range_32_avx512
#else
#define EXPAND_RANGE_32 expand_range_32
#endif
#define EXPAND_RANGE_16 expand_range_16
#define EXPAND_RANGE_64 expand_range_64

static inline int64_t popcount_bytes(const uint8_t* p, int64_t nbytes) {
    int64_t c = 0, i = 0;
    for (; i + 8 <= nbytes; i += 8) { uint64_t w; memcpy(&w, p + i, 8); c += __builtin_popcountll(w); }
    for (; i < nbytes; i++) c += __builtin_popcount(p[i]);
    return c;
}

#define DEFINE_EXPAND(W)                                                                  \
    void dropit_expand_##W(const uint##W##_t* values, const uint8_t* bits, int64_t n, uint##W##_t* out, \
                           int nthreads) {                                                \
        int T = threads_for(n, nthreads);                                                 \
        int64_t counts[64];                                                               \
        _Pragma("omp parallel num_threads(T)")                                            \
        {                                                                                 \
            int t = thread_id();                                                          \
            int64_t a, b;                                                                 \
            share(n, T, t, &a, &b);                                                       \
            counts[t] = popcount_bytes(bits + (a >> 3), (b - a + 7) >> 3);                \
            _Pragma("omp barrier")                                                        \
            int64_t o = 0;                                                                \
            for (int j = 0; j < t; j++) o += counts[j];                                   \
            if (a < b) EXPAND_RANGE_##W(values, bits, a, b, o, out);                      \
        }                                                                                 \
    }

DEFINE_EXPAND(16)
DEFINE_EXPAND(32)
DEFINE_EXPAND(64)

/* ---- the ReLU companion: bits of x != 0 (NaN included, -0.0 not), and the gradient
 * through them (grad where the bit is set, +0 elsewhere). */
#define DEFINE_NONZERO(W, ABS)                                                            \
    static void nonzero_range_##W(const uint##W##_t* x, int64_t a, int64_t b, uint8_t* bits) { \
        for (int64_t i = a; i < b; i += 8) {                                              \
            int lim = b - i < 8 ? (int)(b - i) : 8;                                       \
            unsigned byte = 0;                                                            \
            for (int j = 0; j < lim; j++) byte |= (unsigned)((x[i + j] & ABS) != 0) << j; \
            bits[i >> 3] = (uint8_t)byte;                                                 \
        }                                                                                 \
    }                                                                                     \
    static void mask_grad_range_##W(const uint##W##_t* g, const uint8_t* bits, int64_t a, int64_t b, \
                                    uint##W##_t* out) {                                   \
        for (int64_t i = a; i < b; i += 8) {                                              \
            unsigned byte = bits[i >> 3];                                                 \
            int lim = b - i < 8 ? (int)(b - i) : 8;                                       \
            for (int j = 0; j < lim; j++) out[i + j] = ((byte >> j) & 1u) ? g[i + j] : 0; \
        }                                                                                 \
    }

DEFINE_NONZERO(16, 0x7fffu)
DEFINE_NONZERO(32, 0x7fffffffu)
DEFINE_NONZERO(64, 0x7fffffffffffffffULL)

#ifdef DROPIT_AVX512
static void nonzero_range_32_avx512(const uint32_t* x, int64_t a, int64_t b, uint8_t* bits) {
    int64_t i = a;
    const __m512i abs = _mm512_set1_epi32(0x7fffffff);
    for (; i + 16 <= b; i += 16) {
        __mmask16 m = _mm512_test_epi32_mask(_mm512_loadu_si512(x + i), abs);
        memcpy(bits + (i >> 3), &m, 2);
    }
    if (i < b) nonzero_range_32(x, i, b, bits);
}
static void mask_grad_range_32_avx512(const uint32_t* g, const uint8_t* bits, int64_t a, int64_t b, uint32_t* out) {
    int64_t i = a;
    for (; i + 16 <= b; i += 16) {
        uint16_t m;
        memcpy(&m, bits + (i >> 3), 2);
        _mm512_storeu_si512(out + i, _mm512_maskz_mov_epi32(m, _mm512_loadu_si512(g + i)));
    }
    if (i < b) mask_grad_range_32(g, bits, i, b, out);
}
#define NONZERO_RANGE_32 nonzero_range_32_avx512
#define MASK_GRAD_RANGE_32 mask_grad_range_32_avx512
#else
#define NONZERO_RANGE_32 nonzero_range_32
#define MASK_GRAD_RANGE_32 mask_grad_range_32
#endif
#define NONZERO_RANGE_16 nonzero_range_16
#define MASK_GRAD_RANGE_16 mask_grad_range_16
#define NONZERO_RANGE_64 nonzero_range_64
#define MASK_GRAD_RANGE_64 mask_grad_range_64

#define DEFINE_RELU_KERNELS(W)                                                            \
    void dropit_pack_nonzero_##W(const uint##W##_t* x, int64_t n, uint8_t* bits, int nthreads) { \
        int T = threads_for(n, nthreads);                                                 \
        _Pragma("omp parallel num_threads(T)")                                            \
        {                                                                                 \
            int64_t a, b;                                                                 \
            share(n, T, thread_id(), &a, &b);                                             \
            if (a < b) NONZERO_RANGE_##W(x, a, b, bits);                                  \
        }                                                                                 \
    }                                                                                     \
    void dropit_mask_grad_##W(const uint##W##_t* g, const uint8_t* bits, int64_t n, uint##W##_t* out, \
                              int nthreads) {                                             \
        int T = threads_for(n, nthreads);                                                 \
        _Pragma("omp parallel num_threads(T)")                                            \
        {                                                                                 \
            int64_t a, b;                                                                 \
            share(n, T, thread_id(), &a, &b);                                             \
            if (a < b) MASK_GRAD_RANGE_##W(g, bits, a, b, out);                           \
        }                                                                                 \
    }

DEFINE_RELU_KERNELS(16)
DEFINE_RELU_KERNELS(32)
DEFINE_RELU_KERNELS(64)

/* ---- draw_mask: the "unbiased" strategy's keep mask. Element i is kept when u_i * tau < |x_i| (or x_i is
 * NaN), u_i = (mix31(mix31((i ^ key) & M) ^ bits31(x_i)) >> 7) * 2^-24 (dropit/draws.py). fp32 compares in
 * float, fp64 in double; 16-bit inputs take the reference. */
static inline uint64_t draw_bits31_32(const float* x, int64_t i) {
    uint32_t b;
    memcpy(&b, x + i, 4);
    return (uint64_t)b & 0x7fffffffULL;
}

static inline uint64_t draw_bits31_64(const double* x, int64_t i) {
    uint64_t b;
    memcpy(&b, x + i, 8);
    return (b ^ (b >> 32)) & 0x7fffffffULL;
}

#define DEFINE_DRAW_MASK(W, T, ABS)                                                        \
    void dropit_draw_mask_##W(const T* x, int64_t n, double tau, int64_t key, uint8_t* mask, int nthreads) { \
        const T t = (T)tau, scale = (T)(1.0 / 16777216.0);                                 \
        int nt = threads_for(n, nthreads);                                                 \
        _Pragma("omp parallel for num_threads(nt) schedule(static)")                       \
        for (int64_t i = 0; i < n; i++) {                                                  \
            uint64_t v = mix31(mix31(((uint64_t)i ^ (uint64_t)key) & 0x7fffffffULL) ^ draw_bits31_##W(x, i)); \
            T p = (T)(v >> 7) * scale * t;                                                 \
            mask[i] = (uint8_t)((p < ABS(x[i])) | (x[i] != x[i]));                         \
        }                                                                                  \
    }

DEFINE_DRAW_MASK(32, float, fabsf)
DEFINE_DRAW_MASK(64, double, fabs)
