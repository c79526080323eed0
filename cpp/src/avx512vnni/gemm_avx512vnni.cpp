// AVX-512 GEMM kernels over the packed-B layout of gemm.h.
//   exact32:   vpdpbusd (u8 x s8, 4 products summed exactly into each s32 lane).
//   sat16pair: vpmaddubsw (pairs (k, k+1) summed and saturated to s16, as AVX2 hardware
//              does) then vpdpwssd against ones (the two s16 pair sums added exactly to s32).
// Micro-tile: MR rows x NV panels of 16 columns; A is broadcast 4 bytes (one k group) at a
// time, straight from the rows of A, over all of K.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "fastq/gemm.h"
#include "fastq/unroll.h"

namespace fastq {
namespace {


inline __m512i bcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// A is read in place: row r's 4-byte k group is one broadcast from a + r * lda. (Repacking
// A into micro-tile order per K block measured slower: for narrow N the copy is not
// amortized, e.g. 346 vs 443 GOPS at M=3136, N=64, K=576.)
constexpr int kMR = 8;  // 8 x 2 panels = 16 zmm accumulators; 12 rows make GCC spill

// The tile's store: raw sums to C, or (rq set) requant.h's requantization to u8/s8 straight
// from the accumulators -- the same IEEE steps as requantize_rows_avx2 (convert, multiply,
// clamp, round half to even, + zero point), so the same bits, without the s32 round trip
// through memory that dominates convs with a short K.
// Accumulators start at 0, or at -int32(zcomp) for the requantizing store: the wrapping sum
// then ends as acc - z32 without a subtraction.
template <int NV>
inline __attribute__((always_inline)) void init_acc(__m512i (&init)[NV],
                                                    const __mmask16 (&mask)[NV],
                                                    const RequantStore* rq, int64_t col0) {
  unroll<NV>([&](auto v) __attribute__((always_inline)) {
    init[v] = rq ? _mm512_sub_epi32(_mm512_setzero_si512(),
                                    _mm512_maskz_loadu_epi32(mask[v], rq->z32 + col0 + v * 16))
                 : _mm512_setzero_si512();
  });
}

template <int MR, int NV>
inline __attribute__((always_inline)) void store_tile(__m512i (&acc)[MR][NV],
                                                      const __mmask16 (&mask)[NV], int32_t* c,
                                                      int64_t ldc, const RequantStore* rq,
                                                      int64_t row0, int64_t col0) {
  if (!rq) {
    unroll<MR>([&](auto r) __attribute__((always_inline)) {
      unroll<NV>([&](auto v) __attribute__((always_inline)) {
        _mm512_mask_storeu_epi32(c + r * ldc + v * 16, mask[v], acc[r][v]);
      });
    });
    return;
  }
  const int32_t zq = rq->y_zp;
  const __m512 vl = _mm512_set1_ps(rq->y_signed ? float(-128 - zq) : float(0 - zq));
  const __m512 vh = _mm512_set1_ps(rq->y_signed ? float(127 - zq) : float(255 - zq));
  const __m512i vz = _mm512_set1_epi32(zq);
  __m512 mu[NV];
  unroll<NV>([&](auto v) __attribute__((always_inline)) {
    mu[v] = _mm512_maskz_loadu_ps(mask[v], rq->mult + col0 + v * 16);
  });
  unroll<MR>([&](auto r) __attribute__((always_inline)) {
    uint8_t* o = rq->out + (row0 + r) * rq->ldo + col0;
    unroll<NV>([&](auto v) __attribute__((always_inline)) {
      __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][v]), mu[v]);  // acc - z32 already
      f = _mm512_min_ps(vh, _mm512_max_ps(vl, f));
      // |f| <= 255: vcvtps2dq's round half to even (default MXCSR) is requant.cpp's trick
      const __m512i y = _mm512_add_epi32(_mm512_cvtps_epi32(f), vz);
      // in range already: the truncating narrowing is exact for u8 and s8 alike
      _mm_mask_storeu_epi8(o + v * 16, mask[v], _mm512_cvtepi32_epi8(y));
    });
  });
}

// A micro-tile's start: the column masks of its last (partial) vector and the accumulators
// at their initial value (init_acc: 0, or minus the zero-point term when requantizing).
template <int MR, int NV>
inline __attribute__((always_inline)) void tile_start(__m512i (&acc)[MR][NV],
                                                      __mmask16 (&mask)[NV], int64_t ncols,
                                                      const RequantStore* rq, int64_t col0) {
  unroll<NV>([&](auto v) {
    const int64_t cols = ncols - v * 16;
    mask[v] = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (cols > 0 ? cols : 0)) - 1);
  });
  __m512i init[NV];
  init_acc<NV>(init, mask, rq, col0);
  unroll<MR>([&](auto r) { unroll<NV>([&](auto v) { acc[r][v] = init[v]; }); });
}

// One k group (4 bytes of K) of a micro-tile: B's NV vectors at bg, each row's 4 A bytes at
// arow(r), into the accumulators (vpdpbusd, or sat16pair's vpmaddubsw + vpdpwssd by ones).
template <int MR, int NV, bool kExact, class ARow>
inline __attribute__((always_inline)) void k_group(__m512i (&acc)[MR][NV], const int8_t* bg,
                                                   int64_t panel_stride, __m512i ones,
                                                   ARow arow) {
  __m512i bv[NV];
  unroll<NV>([&](auto v) {
    bv[v] = _mm512_load_si512(reinterpret_cast<const void*>(bg + v * panel_stride));
  });
  unroll<MR>([&](auto r) {
    const __m512i av = bcast4(arow(int(r)));
    unroll<NV>([&](auto v) {
      if (kExact) {
        acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], av, bv[v]);
      } else {
        acc[r][v] = _mm512_dpwssd_epi32(acc[r][v], _mm512_maddubs_epi16(av, bv[v]), ones);
      }
    });
  });
}

template <int MR, int NV, bool kExact>
void micro(const uint8_t* ap, int64_t lda, const int8_t* b, int64_t panel_stride, int64_t ng,
           int32_t* c, int64_t ldc, int64_t ncols, const RequantStore* rq, int64_t row0,
           int64_t col0) {
  __m512i acc[MR][NV];
  __mmask16 mask[NV];
  tile_start<MR, NV>(acc, mask, ncols, rq, col0);
  const __m512i ones = _mm512_set1_epi16(1);
  for (int64_t g = 0; g < ng; ++g) {
    const uint8_t* ag = ap + g * 4;
    k_group<MR, NV, kExact>(acc, b + g * 64, panel_stride, ones,
                            [&](int r) __attribute__((always_inline)) { return ag + r * lda; });
  }
  (void)ones;
  store_tile<MR, NV>(acc, mask, c, ldc, rq, row0, col0);
}

template <int NV, bool kExact>
using MicroFn = void (*)(const uint8_t*, int64_t, const int8_t*, int64_t, int64_t, int32_t*,
                         int64_t, int64_t, const RequantStore*, int64_t, int64_t);

template <int NV, bool kExact, int... R>
constexpr auto make_table(std::integer_sequence<int, R...>) {
  return std::array<MicroFn<NV, kExact>, sizeof...(R)>{&micro<R + 1, NV, kExact>...};
}

template <bool kExact>
void gemm_tile(const GemmTile& t) {
  static constexpr auto t2 = make_table<2, kExact>(std::make_integer_sequence<int, kMR>{});
  static constexpr auto t1 = make_table<1, kExact>(std::make_integer_sequence<int, kMR>{});
  const PackedB& b = *t.b;
  const int64_t Kp = b.Kp;
  const int64_t panel_stride = Kp * kPanel;
  const int64_t ng = Kp / kGroup;
  // No K blocking: a micro-tile keeps its accumulators in registers over all of K and
  // streams its B panels from L2 (32 columns x K bytes), which measured faster than
  // re-reading and re-writing C per K block (1024^3: 444 vs 401 GOPS).
  for (int64_t p = t.p0; p < t.p1; p += 2) {
    const int nv = p + 1 < t.p1 ? 2 : 1;
    const int8_t* bp = b.panel(p);
    const int64_t ncols = std::min<int64_t>(nv * kPanel, b.N - p * kPanel);
    for (int64_t m = 0; m < t.m; m += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, t.m - m));
      const uint8_t* ap = t.a + m * t.lda;
      int32_t* cp = t.c + m * t.ldc + p * kPanel;
      if (nv == 2)
        t2[mr - 1](ap, t.lda, bp, panel_stride, ng, cp, t.ldc, ncols, t.rq, m, p * kPanel);
      else
        t1[mr - 1](ap, t.lda, bp, panel_stride, ng, cp, t.ldc, ncols, t.rq, m, p * kPanel);
    }
  }
}

// The implicit-GEMM variant: the same micro-tile, A's k groups read tap by tap from the
// per-row pointers of an ImplicitTile (gemm.h).
template <int MR, int NV, bool kExact>
void micro_implicit(const uint8_t* const* rows, int64_t taps, int64_t tg, const int8_t* b,
                    int64_t panel_stride, int32_t* c, int64_t ldc, int64_t ncols,
                    const RequantStore* rq, int64_t row0, int64_t col0) {
  __m512i acc[MR][NV];
  __mmask16 mask[NV];
  tile_start<MR, NV>(acc, mask, ncols, rq, col0);
  const __m512i ones = _mm512_set1_epi16(1);
  for (int64_t t = 0; t < taps; ++t) {
    const uint8_t* ar[MR];
    unroll<MR>([&](auto r) { ar[r] = rows[r * taps + t]; });
    const int8_t* bt = b + t * tg * 64;
    for (int64_t g = 0; g < tg; ++g) {
      k_group<MR, NV, kExact>(acc, bt + g * 64, panel_stride, ones,
                              [&](int r) __attribute__((always_inline)) { return ar[r] + g * 4; });
    }
  }
  (void)ones;
  store_tile<MR, NV>(acc, mask, c, ldc, rq, row0, col0);
}

template <int NV, bool kExact>
using ImplicitFn = void (*)(const uint8_t* const*, int64_t, int64_t, const int8_t*, int64_t,
                            int32_t*, int64_t, int64_t, const RequantStore*, int64_t, int64_t);

template <int NV, bool kExact, int... R>
constexpr auto make_implicit_table(std::integer_sequence<int, R...>) {
  return std::array<ImplicitFn<NV, kExact>, sizeof...(R)>{&micro_implicit<R + 1, NV, kExact>...};
}

template <bool kExact>
void implicit_tile(const ImplicitTile& t) {
  static constexpr auto t2 =
      make_implicit_table<2, kExact>(std::make_integer_sequence<int, kMR>{});
  static constexpr auto t1 =
      make_implicit_table<1, kExact>(std::make_integer_sequence<int, kMR>{});
  const PackedB& b = *t.b;
  const int64_t panel_stride = b.Kp * kPanel, tg = t.tap_k / kGroup;
  for (int64_t p = t.p0; p < t.p1; p += 2) {
    const int nv = p + 1 < t.p1 ? 2 : 1;
    const int8_t* bp = b.panel(p);
    const int64_t ncols = std::min<int64_t>(nv * kPanel, b.N - p * kPanel);
    for (int64_t m = 0; m < t.m; m += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, t.m - m));
      const uint8_t* const* rp = t.rows + m * t.taps;
      int32_t* cp = t.c + m * t.ldc + p * kPanel;
      if (nv == 2)
        t2[mr - 1](rp, t.taps, tg, bp, panel_stride, cp, t.ldc, ncols, t.rq, m, p * kPanel);
      else
        t1[mr - 1](rp, t.taps, tg, bp, panel_stride, cp, t.ldc, ncols, t.rq, m, p * kPanel);
    }
  }
}

}  // namespace

void conv_implicit_exact32_avx512vnni(const ImplicitTile& t) { implicit_tile<true>(t); }
void conv_implicit_sat16pair_avx512vnni(const ImplicitTile& t) { implicit_tile<false>(t); }

void gemm_u8s8_exact32_avx512vnni(const GemmTile& t) { gemm_tile<true>(t); }
void gemm_u8s8_sat16pair_avx512vnni(const GemmTile& t) { gemm_tile<false>(t); }

}  // namespace fastq
