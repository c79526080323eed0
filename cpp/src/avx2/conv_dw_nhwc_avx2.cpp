// AVX2 body of the NHWC depthwise int8 rows (conv_dw.h): 16 channels per block; each pair of
// taps (2q, 2q+1) is one vpmaddwd of the u8 inputs widened to s16 against s16 weights, which
// is the exact pair sum (|sum| <= 65280 fits s32); flat sat16pair clamps that pair sum to s16
// before adding it, exactly as conv_dw_nhwc_row_ref does. Integer-only: same bits as the ref.
// Lane order: unpacklo/hi_epi16 of two 16-channel rows give, per 128-bit half h, channels
// h*8 + [0..3] (lo) and h*8 + 4 + [0..3] (hi), tap 2q in even s16 lanes, 2q+1 in odd ones;
// dw_nhwc_pack_pairs (conv_nhwc.cpp) lays the weights out the same way.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "fastq/conv_dw.h"

namespace fastq {

void conv_dw_nhwc_row_avx2(const DwNhwcArgs& a, const int16_t* wpairs, int64_t n, int64_t oh,
                           int32_t* acc) {
  const ConvShape& s = a.s;
  const int64_t OW = s.OW(), T = s.KH * s.KW, C = s.C, P = (T + 1) / 2, CB = C / 16;
  thread_local std::vector<const uint8_t*> tap, trow;
  thread_local std::vector<int64_t> tcol;
  tap.resize(static_cast<size_t>(2 * P));
  trow.resize(static_cast<size_t>(T));
  tcol.resize(static_cast<size_t>(T));
  dw_nhwc_tap_rows(a, n, oh, trow.data(), tcol.data());
  const __m256i lo16 = _mm256_set1_epi32(-32768), hi16 = _mm256_set1_epi32(32767);
  for (int64_t ow = 0; ow < OW; ++ow) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t iw = ow * s.stride_w + tcol[t];
      tap[t] = trow[t] && iw >= 0 && iw < s.W ? trow[t] + iw * C : a.zrow;
    }
    if (T % 2) tap[T] = a.zrow;  // paired with zero weights
    int32_t* o = acc + ow * C;
    for (int64_t b = 0; b < CB; ++b) {
      __m256i sl = _mm256_setzero_si256(), sh = _mm256_setzero_si256();
      const int16_t* wq = wpairs + b * 32;
      for (int64_t q = 0; q < P; ++q, wq += CB * 32) {
        const __m256i x0 = _mm256_cvtepu8_epi16(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(tap[2 * q] + b * 16)));
        const __m256i x1 = _mm256_cvtepu8_epi16(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(tap[2 * q + 1] + b * 16)));
        __m256i pl = _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1),
                                       _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq)));
        __m256i ph = _mm256_madd_epi16(
            _mm256_unpackhi_epi16(x0, x1),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + 16)));
        if (a.flat_sat) {
          pl = _mm256_min_epi32(hi16, _mm256_max_epi32(lo16, pl));
          ph = _mm256_min_epi32(hi16, _mm256_max_epi32(lo16, ph));
        }
        sl = _mm256_add_epi32(sl, pl);
        sh = _mm256_add_epi32(sh, ph);
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + b * 16),
                          _mm256_permute2x128_si256(sl, sh, 0x20));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + b * 16 + 8),
                          _mm256_permute2x128_si256(sl, sh, 0x31));
    }
    for (int64_t c = CB * 16; c < C; ++c) {  // channel tail: the ref's loop
      int32_t sum = 0;
      for (int64_t q = 0; q < P; ++q) {
        const int64_t t0 = 2 * q, t1 = t0 + 1;
        int32_t v = int32_t(tap[t0][c]) * a.w[c * T + t0];
        if (t1 < T) v += int32_t(tap[t1][c]) * a.w[c * T + t1];
        if (a.flat_sat) v = std::min(32767, std::max(-32768, v));
        sum += v;
      }
      o[c] = sum;
    }
  }
}

}  // namespace fastq
