// AVX-512 build of the row-block error reduction (satstats.h), written with intrinsics: the
// 16 signal lanes are two zmm accumulators fed in the contract's order (row by row, channel
// runs of 16 in order, then the tail lanes), with the same double operations as the portable
// body (satstats_body.h) -- convert, subtract zc, multiply by scale, add the bias, square,
// add; no FMA (-ffp-contract=off) -- so the bits are the portable build's. What the
// compiled body does with a horizontal OR per run of 16 channels -- find whether target and
// base differ -- is one compare into a mask here, and a differing run's figures are vector
// ops too: the integer ones (count, max, sum of |t - b| in int64 lanes) are exact in any
// order, and d^2 per channel adds row by row as in the body.
#include <immintrin.h>

#include <algorithm>

#include "fastq/satstats_body.h"

namespace fastq {
namespace {

// The difference figures of one run of channels [c0, c0 + 16) under mask k (diff_run's).
struct DiffAcc {
  __m512i max_abs = _mm512_setzero_si512(), sum_abs = _mm512_setzero_si512();
  int64_t changed = 0;

  inline void add(const int32_t* t, const int32_t* b, int64_t c0, __mmask16 k, double* d2) {
    const __m512i tv = _mm512_maskz_loadu_epi32(k, t + c0);
    const __m512i bv = _mm512_maskz_loadu_epi32(k, b + c0);
    changed += __builtin_popcount(static_cast<unsigned>(_mm512_mask_cmpneq_epi32_mask(k, tv, bv)));
    const __m256i t0 = _mm512_castsi512_si256(tv), t1 = _mm512_extracti64x4_epi64(tv, 1);
    const __m256i b0 = _mm512_castsi512_si256(bv), b1 = _mm512_extracti64x4_epi64(bv, 1);
    const __m512i a0 = _mm512_abs_epi64(_mm512_sub_epi64(_mm512_cvtepi32_epi64(t0),
                                                         _mm512_cvtepi32_epi64(b0)));
    const __m512i a1 = _mm512_abs_epi64(_mm512_sub_epi64(_mm512_cvtepi32_epi64(t1),
                                                         _mm512_cvtepi32_epi64(b1)));
    max_abs = _mm512_max_epi64(max_abs, _mm512_max_epi64(a0, a1));
    sum_abs = _mm512_add_epi64(sum_abs, _mm512_add_epi64(a0, a1));
    const __mmask8 k0 = static_cast<__mmask8>(k), k1 = static_cast<__mmask8>(k >> 8);
    const __m512d d0 = _mm512_sub_pd(_mm512_cvtepi32_pd(t0), _mm512_cvtepi32_pd(b0));  // exact
    const __m512d d1 = _mm512_sub_pd(_mm512_cvtepi32_pd(t1), _mm512_cvtepi32_pd(b1));
    _mm512_mask_storeu_pd(d2 + c0, k0, _mm512_add_pd(_mm512_maskz_loadu_pd(k0, d2 + c0),
                                                     _mm512_mul_pd(d0, d0)));
    _mm512_mask_storeu_pd(d2 + c0 + 8, k1, _mm512_add_pd(_mm512_maskz_loadu_pd(k1, d2 + c0 + 8),
                                                         _mm512_mul_pd(d1, d1)));
  }
};

// Q: also requantize the base sums into q's rows in the same pass, with requantize_rows'
// float32 steps (requant.h): the AVX2 build's operations at 16 lanes, so the same bytes.
template <bool HasBias, bool Q>
void row_stats_zmm(const RowStatsArgs& a, RowStats& p, double* d2, const RequantStore* q) {
  const int64_t C = a.C, full = C - C % kStatLanes;
  const double* zc = a.zc;
  const double* sc = a.scale;
  const double* bi = a.bias;
  const bool same = a.target == a.base;
  __m512d s0 = _mm512_loadu_pd(p.sig), s1 = _mm512_loadu_pd(p.sig + 8);
  bool any = false;
  DiffAcc diff;
  const int64_t rest = C - full;
  const __mmask16 tail_mask = static_cast<__mmask16>((1u << rest) - 1);
  const int32_t y_zp = Q ? q->y_zp : 0;
  const bool y_signed = Q && q->y_signed;
  const __m512 vl = _mm512_set1_ps(y_signed ? float(-128 - y_zp) : float(0 - y_zp));
  const __m512 vh = _mm512_set1_ps(y_signed ? float(127 - y_zp) : float(255 - y_zp));
  const __m512 magic = _mm512_set1_ps(12582912.0f);  // round half to even by 1.5 * 2^23
  const __m512i vz = _mm512_set1_epi32(y_zp);
  auto requant = [&](__m512i bv, int64_t c0, __mmask16 k, uint8_t* o) {
    const __m512i d = _mm512_sub_epi32(bv, _mm512_maskz_loadu_epi32(k, q->z32 + c0));
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(d), _mm512_maskz_loadu_ps(k, q->mult + c0));
    v = _mm512_min_ps(vh, _mm512_max_ps(vl, v));
    const __m512i r = _mm512_add_epi32(
        _mm512_cvttps_epi32(_mm512_sub_ps(_mm512_add_ps(v, magic), magic)), vz);
    _mm_mask_storeu_epi8(o + c0, k, _mm512_cvtepi32_epi8(r));  // r is in the output range
  };
  for (int64_t m = 0; m < a.rows; ++m) {
    const int32_t* b = a.base + m * a.ld;
    const int32_t* t = a.target + m * a.ld;
    uint8_t* o = Q ? q->out + m * q->ldo : nullptr;
    for (int64_t c0 = 0; c0 < full; c0 += kStatLanes) {
      const __m512i bv = _mm512_loadu_si512(b + c0);
      __m512d y0 = _mm512_cvtepi32_pd(_mm512_castsi512_si256(bv));
      __m512d y1 = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(bv, 1));
      y0 = _mm512_mul_pd(_mm512_sub_pd(y0, _mm512_loadu_pd(zc + c0)), _mm512_loadu_pd(sc + c0));
      y1 = _mm512_mul_pd(_mm512_sub_pd(y1, _mm512_loadu_pd(zc + c0 + 8)),
                         _mm512_loadu_pd(sc + c0 + 8));
      if constexpr (HasBias) {
        y0 = _mm512_add_pd(y0, _mm512_loadu_pd(bi + c0));
        y1 = _mm512_add_pd(y1, _mm512_loadu_pd(bi + c0 + 8));
      }
      s0 = _mm512_add_pd(s0, _mm512_mul_pd(y0, y0));
      s1 = _mm512_add_pd(s1, _mm512_mul_pd(y1, y1));
      if constexpr (Q) requant(bv, c0, 0xFFFF, o);
      if (!same && _mm512_cmpneq_epi32_mask(_mm512_loadu_si512(t + c0), bv) != 0) {
        any = true;
        diff.add(t, b, c0, 0xFFFF, d2);
      }
    }
    if (rest > 0) {  // lanes 0 .. rest-1, masked: the other lanes add nothing
      const __mmask8 m0 = static_cast<__mmask8>(tail_mask);
      const __mmask8 m1 = static_cast<__mmask8>(tail_mask >> 8);
      const __m512i bv = _mm512_maskz_loadu_epi32(tail_mask, b + full);
      __m512d y0 = _mm512_cvtepi32_pd(_mm512_castsi512_si256(bv));
      __m512d y1 = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(bv, 1));
      y0 = _mm512_mul_pd(_mm512_sub_pd(y0, _mm512_maskz_loadu_pd(m0, zc + full)),
                         _mm512_maskz_loadu_pd(m0, sc + full));
      y1 = _mm512_mul_pd(_mm512_sub_pd(y1, _mm512_maskz_loadu_pd(m1, zc + full + 8)),
                         _mm512_maskz_loadu_pd(m1, sc + full + 8));
      if constexpr (HasBias) {
        y0 = _mm512_add_pd(y0, _mm512_maskz_loadu_pd(m0, bi + full));
        y1 = _mm512_add_pd(y1, _mm512_maskz_loadu_pd(m1, bi + full + 8));
      }
      s0 = _mm512_mask_add_pd(s0, m0, s0, _mm512_mul_pd(y0, y0));
      s1 = _mm512_mask_add_pd(s1, m1, s1, _mm512_mul_pd(y1, y1));
      if constexpr (Q) requant(bv, full, tail_mask, o);
      if (!same && _mm512_cmpneq_epi32_mask(_mm512_maskz_loadu_epi32(tail_mask, t + full),
                                            _mm512_maskz_loadu_epi32(tail_mask, b + full)) != 0) {
        any = true;
        diff.add(t, b, full, tail_mask, d2);
      }
    }
  }
  _mm512_storeu_pd(p.sig, s0);
  _mm512_storeu_pd(p.sig + 8, s1);
  p.changed += diff.changed;
  p.max_abs = std::max<int64_t>(p.max_abs, _mm512_reduce_max_epi64(diff.max_abs));
  p.sum_abs += _mm512_reduce_add_epi64(diff.sum_abs);
  if (any) {  // this block's noise, as the body sums it
    double nz = 0;
    for (int64_t c = 0; c < C; ++c) {
      nz += d2[c] * sc[c] * sc[c];
      d2[c] = 0;
    }
    p.noise += nz;
  }
}

}  // namespace

void row_stats_avx512(const RowStatsArgs& a, RowStats& p, double* d2) {
  if (a.bias)
    row_stats_zmm<true, false>(a, p, d2, nullptr);
  else
    row_stats_zmm<false, false>(a, p, d2, nullptr);
}

void row_stats_requant_avx512(const RowStatsArgs& a, RowStats& p, double* d2,
                              const RequantStore& q) {
  if (a.bias)
    row_stats_zmm<true, true>(a, p, d2, &q);
  else
    row_stats_zmm<false, true>(a, p, d2, &q);
}

}  // namespace fastq
