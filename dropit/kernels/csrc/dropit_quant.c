/* Fused CPU kernels of the quantized companions: one pass each way over a saved tensor.
 *
 * Each function has a torch reference in dropit/kernels/quant_reference.py that
 * defines its result; tests compare them bit for bit. Elements are loaded as fp32
 * (exactly) from fp32, bf16 or fp16 and stored back with round-to-nearest-even, as
 * torch's .to(dtype) does.
 *
 * Integer codes: per group of `group` elements, scale = absmax / qmax over the finite
 * elements (zero for an absmax below 2^-100), code = rint(x * (1 / scale)) clamped
 * to [-qmax, qmax], -qmax - 1 for a non-finite x. 4-bit codes are packed two per byte
 * as code + 8, element 2j in the low nibble. Few-bit codes: the count of boundaries
 * below x (0..14), 15 for a non-finite x, packed likewise.
 *
 * Compiled with -std=c11, so no FMA contraction: every product is rounded as in torch.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define QCHUNK 16384 /* elements per parallel work item (a multiple of every group size) */
#define TINY 7.88860905e-31f /* 2^-100: groups below it store zeros, so 1 / scale stays finite */

static inline int qthreads(int64_t n, int nthreads) {
    if (nthreads < 1 || n < 2 * QCHUNK) return 1;
    return nthreads > 64 ? 64 : nthreads;
}

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* loads: element i of each dtype as fp32 */
static inline float load_f32(const void* p, int64_t i) { return ((const float*)p)[i]; }
static inline float load_bf16(const void* p, int64_t i) { return bits_f32((uint32_t)((const uint16_t*)p)[i] << 16); }
static inline float load_f16(const void* p, int64_t i) { return (float)((const _Float16*)p)[i]; }

/* stores: fp32 to each dtype, round to nearest even (NaN stays NaN) */
static inline void store_f32(void* p, int64_t i, float v) { ((float*)p)[i] = v; }
static inline void store_bf16(void* p, int64_t i, float v) {
    uint32_t u = f32_bits(v);
    uint16_t h = v != v ? (uint16_t)0x7fc0u : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    ((uint16_t*)p)[i] = h;
}
static inline void store_f16(void* p, int64_t i, float v) { ((_Float16*)p)[i] = (_Float16)v; }

static inline int is_finite(float v) { return (f32_bits(v) & 0x7fffffffu) < 0x7f800000u; }

/* One group [a, b) of x: its scale, and its codes into q (int8 per element). */
#define DEFINE_GROUP(T)                                                                   \
    static inline float group_##T(const void* x, int64_t a, int64_t b, int qm, int8_t* q) { \
        uint32_t top = 0;                                                                 \
        for (int64_t i = a; i < b; i++) {                                                 \
            uint32_t k = f32_bits(load_##T(x, i)) & 0x7fffffffu;                          \
            k = k < 0x7f800000u ? k : 0u;                                                 \
            top = k > top ? k : top;                                                      \
        }                                                                                 \
        float absmax = bits_f32(top);                                                     \
        int normal = absmax >= TINY;                                            \
        float scale = normal ? absmax / (float)qm : 0.0f;                                 \
        float inv = normal ? 1.0f / scale : 0.0f;                                         \
        for (int64_t i = a; i < b; i++) {                                                 \
            float v = load_##T(x, i);                                                     \
            int fin = is_finite(v);                                                       \
            float r = rintf((fin ? v : 0.0f) * inv);                                      \
            int c = (int)r;                                                               \
            c = c > qm ? qm : (c < -qm ? -qm : c);                                        \
            q[i - a] = (int8_t)(fin ? c : -qm - 1);                                       \
        }                                                                                 \
        return scale;                                                                     \
    }

DEFINE_GROUP(f32)
DEFINE_GROUP(bf16)
DEFINE_GROUP(f16)

/* codes: int8 (n,) for bits 8, uint8 ((n+1)/2,) nibbles for bits 4; scales (ceil(n/group),). */
#define DEFINE_QUANTIZE(T)                                                                \
    void dropit_quantize_##T(const void* x, int64_t n, int64_t group, int bits, void* codes, \
                             float* scales, int nthreads) {                               \
        int qm = (1 << (bits - 1)) - 1;                                                   \
        int64_t per = group * (QCHUNK / group > 0 ? QCHUNK / group : 1);                  \
        int64_t items = (n + per - 1) / per;                                              \
        _Pragma("omp parallel for schedule(static) num_threads(qthreads(n, nthreads))")  \
        for (int64_t it = 0; it < items; it++) {                                          \
            int8_t buf[QCHUNK]; /* 4-bit codes of one group before packing (group <= QCHUNK) */ \
            int8_t* q = bits == 8 ? (int8_t*)codes : buf;                                 \
            for (int64_t a = it * per, e = a + per < n ? a + per : n; a < e; a += group) { \
                int64_t b = a + group < n ? a + group : n;                                \
                if (bits == 8) {                                                          \
                    scales[a / group] = group_##T(x, a, b, qm, q + a);                    \
                } else {                                                                  \
                    int64_t len = b - a; /* even except at the tensor's end */           \
                    scales[a / group] = group_##T(x, a, b, qm, buf);                      \
                    uint8_t* out = (uint8_t*)codes + a / 2;                               \
                    for (int64_t j = 0; j + 1 < len; j += 2)                              \
                        out[j / 2] = (uint8_t)((buf[j] + 8) | ((buf[j + 1] + 8) << 4));   \
                    if (len & 1) out[len / 2] = (uint8_t)((buf[len - 1] + 8) | (8 << 4)); \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }

DEFINE_QUANTIZE(f32)
DEFINE_QUANTIZE(bf16)
DEFINE_QUANTIZE(f16)

#define DEFINE_DEQUANTIZE(T)                                                              \
    void dropit_dequantize_##T(const void* codes, const float* scales, int64_t n, int64_t group, \
                               int bits, void* out, int nthreads) {                       \
        int marker = -(1 << (bits - 1));                                                  \
        int64_t per = group * (QCHUNK / group > 0 ? QCHUNK / group : 1);                  \
        int64_t items = (n + per - 1) / per;                                              \
        const float nan = bits_f32(0x7fc00000u);                                          \
        _Pragma("omp parallel for schedule(static) num_threads(qthreads(n, nthreads))")  \
        for (int64_t it = 0; it < items; it++) {                                          \
            for (int64_t a = it * per, e = a + per < n ? a + per : n; a < e; a += group) { \
                int64_t b = a + group < n ? a + group : n;                                \
                float s = scales[a / group];                                              \
                if (bits == 8) {                                                          \
                    const int8_t* c = (const int8_t*)codes;                               \
                    for (int64_t i = a; i < b; i++)                                       \
                        store_##T(out, i, c[i] == marker ? nan : (float)c[i] * s);        \
                } else {                                                                  \
                    const uint8_t* c = (const uint8_t*)codes;                             \
                    for (int64_t i = a; i < b; i++) {                                     \
                        int v = (int)((c[i >> 1] >> ((i & 1) * 4)) & 15) - 8;             \
                        store_##T(out, i, v == marker ? nan : (float)v * s);              \
                    }                                                                     \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }

DEFINE_DEQUANTIZE(f32)
DEFINE_DEQUANTIZE(bf16)
DEFINE_DEQUANTIZE(f16)

/* bounds: nb (<= 15) sorted fp32 boundaries; codes ((n+1)/2,) packed nibbles. Blocks of FEW
 * elements: bins counted boundary by boundary (a loop the compiler vectorizes), then packed. */
#define FEW 1024
#define DEFINE_FEWBIT_ENCODE(T)                                                           \
    void dropit_fewbit_encode_##T(const void* x, int64_t n, const float* bounds, int nb,  \
                                  uint8_t* codes, int nthreads) {                         \
        int64_t blocks = (n + FEW - 1) / FEW;                                             \
        _Pragma("omp parallel for schedule(static) num_threads(qthreads(n, nthreads))")  \
        for (int64_t blk = 0; blk < blocks; blk++) {                                      \
            float v[FEW];                                                                 \
            uint8_t c[FEW];                                                               \
            int64_t a = blk * FEW, len = n - a < FEW ? n - a : FEW;                       \
            for (int64_t i = 0; i < len; i++) { v[i] = load_##T(x, a + i); c[i] = 0; }    \
            for (int k = 0; k < nb; k++) {                                                \
                float b = bounds[k];                                                      \
                for (int64_t i = 0; i < len; i++) c[i] += v[i] > b;                       \
            }                                                                             \
            for (int64_t i = 0; i < len; i++) c[i] = is_finite(v[i]) ? c[i] : 15;         \
            if (len & 1) c[len++] = 8; /* the odd tail's high nibble */                   \
            for (int64_t i = 0; i < len; i += 2) codes[(a + i) / 2] = (uint8_t)(c[i] | (c[i + 1] << 4)); \
        }                                                                                 \
    }

DEFINE_FEWBIT_ENCODE(f32)
DEFINE_FEWBIT_ENCODE(bf16)
DEFINE_FEWBIT_ENCODE(f16)

/* out[i] = grad[i] * levels[code i], fp32 arithmetic; levels has 16 entries. */
#define DEFINE_FEWBIT_GRAD(T)                                                             \
    static void fewbit_grad_range_##T(const void* grad, const uint8_t* codes, int64_t a, int64_t b, \
                                      const float* lut, void* out) {                      \
        for (int64_t i = a; i < b; i++) {                                                 \
            unsigned c = (codes[i >> 1] >> ((i & 1) * 4)) & 15u;                          \
            store_##T(out, i, load_##T(grad, i) * lut[c]);                                \
        }                                                                                 \
    }

DEFINE_FEWBIT_GRAD(f32)
DEFINE_FEWBIT_GRAD(bf16)
DEFINE_FEWBIT_GRAD(f16)

#ifdef __AVX512F__
#include <immintrin.h>
/* 16 fp32 elements a step: the 16-entry table is one register, looked up with a permute. */
static void fewbit_grad_range_f32_avx512(const void* grad, const uint8_t* codes, int64_t a, int64_t b,
                                         const float* lut, void* out) {
    const __m512 table = _mm512_loadu_ps(lut);
    const __m512i shifts = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    int64_t i = a; /* a is even: a whole byte of codes per pair */
    for (; i + 16 <= b; i += 16) {
        __m128i bytes = _mm_loadl_epi64((const __m128i*)(codes + (i >> 1)));              /* 8 bytes */
        __m512i pairs = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(bytes, bytes));            /* each byte twice */
        __m512i idx = _mm512_and_si512(_mm512_srlv_epi32(pairs, shifts), _mm512_set1_epi32(15));
        __m512 g = _mm512_loadu_ps((const float*)grad + i);
        _mm512_storeu_ps((float*)out + i, _mm512_mul_ps(g, _mm512_permutexvar_ps(idx, table)));
    }
    fewbit_grad_range_f32(grad, codes, i, b, lut, out);
}
#define FEWBIT_GRAD_F32 fewbit_grad_range_f32_avx512
#else
#define FEWBIT_GRAD_F32 fewbit_grad_range_f32
#endif
#define FEWBIT_GRAD_BF16 fewbit_grad_range_bf16
#define FEWBIT_GRAD_F16 fewbit_grad_range_f16

#define DEFINE_FEWBIT_GRAD_ENTRY(T, RANGE)                                                \
    void dropit_fewbit_grad_##T(const void* grad, const uint8_t* codes, int64_t n,        \
                                const float* levels, void* out, int nthreads) {           \
        float lut[16];                                                                    \
        memcpy(lut, levels, sizeof lut);                                                  \
        int64_t items = (n + QCHUNK - 1) / QCHUNK;                                        \
        _Pragma("omp parallel for schedule(static) num_threads(qthreads(n, nthreads))")  \
        for (int64_t it = 0; it < items; it++) {                                          \
            int64_t a = it * QCHUNK, b = a + QCHUNK < n ? a + QCHUNK : n;                 \
            RANGE(grad, codes, a, b, lut, out);                                           \
        }                                                                                 \
    }

DEFINE_FEWBIT_GRAD_ENTRY(f32, FEWBIT_GRAD_F32)
DEFINE_FEWBIT_GRAD_ENTRY(bf16, FEWBIT_GRAD_BF16)
DEFINE_FEWBIT_GRAD_ENTRY(f16, FEWBIT_GRAD_F16)
