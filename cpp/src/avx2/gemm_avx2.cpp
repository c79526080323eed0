// AVX2 GEMM kernels over the packed-B layout of gemm.h (one 16-column panel = 2 ymm per
// k group of 4).
//   sat16pair: vpmaddubsw (pairs (k, k+1) summed, saturated to s16 -- the hardware
//              behaviour being emulated) then vpmaddwd against ones (exact s32) and vpaddd.
//   exact32:   no AVX2 instruction multiplies u8 x s8 without saturating, so A is split into
//              nibbles, a = 16*hi + lo with hi, lo in [0, 15]. A vpmaddubsw pair sum of a
//              nibble and s8 weights lies in [-3840, 3810] and never saturates; eight such
//              sums still fit s16 ([-30720, 30480]), so they are accumulated with vpaddw over
//              up to 8 k groups before one vpmaddwd (ones for lo, 16s for hi) widens them to
//              s32. The result is the exact s32 sum: this path computes exact32.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "fastq/gemm.h"
#include "fastq/unroll.h"

namespace fastq {
namespace {

constexpr int kMR = 6;  // 6 x 2 ymm accumulators + 2 B + broadcast + ones fit the 16 ymm registers

inline int32_t load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline __m256i tail_mask(int64_t cols) {
  // lanes [0, cols) enabled, for the 8-lane half starting at that column
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::max<int64_t>(cols, 0))),
                            idx);
}

// A micro-tile's accumulators live in registers over all of K (no K blocking: re-reading
// and re-writing C per K block measured slower than streaming B panels from L2).
template <int MR>
inline void zero_acc(__m256i (&acc)[MR][2]) {
  unroll<MR>([&](auto r) { unroll<2>([&](auto v) { acc[r][v] = _mm256_setzero_si256(); }); });
}

template <int MR>
inline void store_acc(__m256i (&acc)[MR][2], int32_t* c, int64_t ldc, const __m256i* mask) {
  unroll<MR>([&](auto r) {
    unroll<2>([&](auto v) { _mm256_maskstore_epi32(c + r * ldc + v * 8, mask[v], acc[r][v]); });
  });
}

// One row step of the sat16pair micro-tile in inline asm: broadcast 4 bytes of A, then per
// 8-column half vpmaddubsw (B read from memory) -> vpmaddwd(ones) -> vpaddd. With intrinsics
// GCC hoists all vpmaddubsw of a k group first and spills accumulators; 6 rows x 2 halves =
// 12 accumulators + broadcast + temp + ones = 15 of the 16 ymm registers, so this order must
// be kept. AT&T operand order: vpmaddubsw signed_src, unsigned_src, dst.
inline void sat_row(__m256i& acc0, __m256i& acc1, const uint8_t* ap, const int8_t* bg,
                    __m256i ones) {
  __m256i a, t;
  __asm__("vpbroadcastd %[ap], %[a]\n\t"
          "vpmaddubsw %[b0], %[a], %[t]\n\t"
          "vpmaddwd %[ones], %[t], %[t]\n\t"
          "vpaddd %[t], %[acc0], %[acc0]\n\t"
          "vpmaddubsw %[b1], %[a], %[t]\n\t"
          "vpmaddwd %[ones], %[t], %[t]\n\t"
          "vpaddd %[t], %[acc1], %[acc1]"
          : [acc0] "+x"(acc0), [acc1] "+x"(acc1), [a] "=&x"(a), [t] "=&x"(t)
          : [ap] "m"(*reinterpret_cast<const int32_t*>(ap)),
            [b0] "m"(*reinterpret_cast<const __m256i*>(bg)),
            [b1] "m"(*reinterpret_cast<const __m256i*>(bg + 32)), [ones] "x"(ones));
}

template <int MR>
void micro_sat(const uint8_t* a, int64_t lda, const int8_t* b, int64_t ng, int32_t* c, int64_t ldc,
               int64_t ncols) {
  __m256i mask[2] = {tail_mask(ncols), tail_mask(ncols - 8)};
  __m256i acc[MR][2];
  zero_acc<MR>(acc);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t g = 0; g < ng; ++g) {
    const int8_t* bg = b + g * 64;
    const uint8_t* ag = a + g * 4;
    if constexpr (MR <= 2) {
      // Few rows leave registers free, and the asm step measured 3x slower here (M = 1).
      const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bg));
      const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bg + 32));
      unroll<MR>([&](auto r) {
        const __m256i av = _mm256_set1_epi32(load4(ag + r * lda));
        acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));
        acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));
      });
    } else {
      unroll<MR>([&](auto r) { sat_row(acc[r][0], acc[r][1], ag + r * lda, bg, ones); });
    }
  }
  store_acc<MR>(acc, c, ldc, mask);
}

template <int MR>
void micro_exact(const uint8_t* a, int64_t lda, const int8_t* b, int64_t ng, int32_t* c,
                 int64_t ldc, int64_t ncols) {
  __m256i mask[2] = {tail_mask(ncols), tail_mask(ncols - 8)};
  __m256i acc[MR][2];
  zero_acc<MR>(acc);
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i sixteens = _mm256_set1_epi16(16);
  constexpr int32_t kLo = 0x0F0F0F0F;
  for (int64_t g0 = 0; g0 < ng; g0 += 8) {
    const int64_t g1 = std::min<int64_t>(ng, g0 + 8);  // <= 8 groups: s16 sums cannot overflow
    __m256i lo[MR][2], hi[MR][2];
    unroll<MR>([&](auto r) {
      unroll<2>([&](auto v) { lo[r][v] = hi[r][v] = _mm256_setzero_si256(); });
    });
    for (int64_t g = g0; g < g1; ++g) {
      const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + g * 64));
      const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(b + g * 64 + 32));
      unroll<MR>([&](auto r) {
        const int32_t av = load4(a + r * lda + g * 4);
        const __m256i al = _mm256_set1_epi32(av & kLo);
        const __m256i ah = _mm256_set1_epi32((av >> 4) & kLo);
        lo[r][0] = _mm256_add_epi16(lo[r][0], _mm256_maddubs_epi16(al, b0));
        lo[r][1] = _mm256_add_epi16(lo[r][1], _mm256_maddubs_epi16(al, b1));
        hi[r][0] = _mm256_add_epi16(hi[r][0], _mm256_maddubs_epi16(ah, b0));
        hi[r][1] = _mm256_add_epi16(hi[r][1], _mm256_maddubs_epi16(ah, b1));
      });
    }
    unroll<MR>([&](auto r) {
      unroll<2>([&](auto v) {
        acc[r][v] = _mm256_add_epi32(acc[r][v],
                                     _mm256_add_epi32(_mm256_madd_epi16(lo[r][v], ones),
                                                      _mm256_madd_epi16(hi[r][v], sixteens)));
      });
    });
  }
  store_acc<MR>(acc, c, ldc, mask);
}

using MicroFn = void (*)(const uint8_t*, int64_t, const int8_t*, int64_t, int32_t*, int64_t,
                         int64_t);

template <bool kExact, int... R>
constexpr std::array<MicroFn, sizeof...(R)> make_table(std::integer_sequence<int, R...>) {
  return {{(kExact ? &micro_exact<R + 1> : &micro_sat<R + 1>)...}};
}

template <bool kExact>
void gemm_tile(const GemmTile& t) {
  static constexpr auto table = make_table<kExact>(std::make_integer_sequence<int, kMR>{});
  const PackedB& b = *t.b;
  const int64_t ng = b.Kp / kGroup;
  for (int64_t p = t.p0; p < t.p1; ++p) {
    const int8_t* bp = b.panel(p);
    const int64_t ncols = std::min<int64_t>(kPanel, b.N - p * kPanel);
    for (int64_t m = 0; m < t.m; m += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, t.m - m));
      table[mr - 1](t.a + m * t.lda, t.lda, bp, ng, t.c + m * t.ldc + p * kPanel, t.ldc, ncols);
    }
  }
}

}  // namespace

void gemm_u8s8_exact32_avx2(const GemmTile& t) { gemm_tile<true>(t); }
void gemm_u8s8_sat16pair_avx2(const GemmTile& t) { gemm_tile<false>(t); }

}  // namespace fastq
