// AVX-512 build of the flat-pairing depthwise NHWC counting row (conv_satcount.h): 16
// channels per vector, all taps of one output pixel in registers. Per tap pair (t, t+1) the
// two input pixels' bytes are widened into one int32 lane per channel, x[t] in the low and
// x[t+1] in the high 16 bits, so one vpmaddwd with the pair's packed weights (wpair) gives
// the exact pair sum; it is added to the exact32 sums as it is and, clamped to int16, to the
// sat16pair sums -- what vpmaddubsw's saturation does to the pair. A pair is at a limit when
// v + 32767, as unsigned, is >= 65534 (v >= 32767 or v <= -32768): one add and one compare
// into a mask, a masked count. An odd last tap has a zero high weight: never at a limit.
// Integer-only: the sums and counts are the portable body's (dw_flat_satcount_nhwc_row_body).
#include <immintrin.h>

#include <vector>

#include "fastq/conv_satcount.h"

namespace fastq {

void dw_flat_satcount_nhwc_row_avx512(const DwNhwcSatArgs& a, int64_t n, int64_t oh,
                                      int32_t* sat, int32_t* exact, int64_t* lim) {
  const ConvShape& s = a.s;
  const int64_t OW = s.OW(), T = s.KH * s.KW, C = s.C, P = (T + 1) / 2;
  thread_local std::vector<const uint8_t*> tp;
  thread_local std::vector<int32_t> lim32;
  tp.resize(static_cast<size_t>(2 * P));
  lim32.assign(static_cast<size_t>(C), 0);
  // plain pointers: every thread_local access in the loops would be a __tls_get_addr call
  const uint8_t** tpp = tp.data();
  int32_t* l32 = lim32.data();
  std::vector<int64_t> offs(static_cast<size_t>(2 * T));  // each tap's (dh, dw): no division
  int64_t* off = offs.data();                             // per output pixel
  for (int64_t t = 0; t < T; ++t) {
    off[2 * t] = (t / s.KW) * s.dil_h;
    off[2 * t + 1] = (t % s.KW) * s.dil_w;
  }
  const __m512i lo16 = _mm512_set1_epi32(32767), hi16 = _mm512_set1_epi32(-32768);
  const __m512i shift = _mm512_set1_epi32(32767), edge = _mm512_set1_epi32(65534);
  const __m512i one = _mm512_set1_epi32(1);
  for (int64_t ow = 0; ow < OW; ++ow) {
    const int64_t ih0 = oh * s.stride_h - s.pad_top, iw0 = ow * s.stride_w - s.pad_left;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t ih = ih0 + off[2 * t], iw = iw0 + off[2 * t + 1];
      tpp[t] = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W
                   ? a.x + ((n * s.H + ih) * s.W + iw) * C
                   : a.zrow;
    }
    if (T % 2) tpp[T] = a.zrow;  // the odd tap's partner: any bytes, its weight is 0
    int32_t* as = sat + ow * C;
    int32_t* ae = exact + ow * C;
    for (int64_t c0 = 0; c0 < C; c0 += 16) {
      const int64_t rest = C - c0;
      const __mmask16 m = rest >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rest) - 1);
      __m512i vs = _mm512_setzero_si512(), ve = _mm512_setzero_si512();
      __m512i cnt = _mm512_setzero_si512();
      for (int64_t p = 0; p < P; ++p) {
        const __m512i xa = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, tpp[2 * p] + c0));
        const __m512i xb = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, tpp[2 * p + 1] + c0));
        const __m512i x2 = _mm512_or_si512(xa, _mm512_slli_epi32(xb, 16));
        const __m512i w2 = _mm512_maskz_loadu_epi32(m, a.wpair + p * C + c0);
        const __m512i v = _mm512_madd_epi16(x2, w2);
        ve = _mm512_add_epi32(ve, v);
        vs = _mm512_add_epi32(vs, _mm512_min_epi32(lo16, _mm512_max_epi32(hi16, v)));
        const __mmask16 hit =
            _mm512_cmpge_epu32_mask(_mm512_add_epi32(v, shift), edge);
        cnt = _mm512_mask_add_epi32(cnt, hit, cnt, one);
      }
      _mm512_mask_storeu_epi32(as + c0, m, vs);
      _mm512_mask_storeu_epi32(ae + c0, m, ve);
      int32_t* l = l32 + c0;
      _mm512_mask_storeu_epi32(l, m, _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, l), cnt));
    }
  }
  for (int64_t c = 0; c < C; ++c) lim[c] += l32[c];
}

}  // namespace fastq
