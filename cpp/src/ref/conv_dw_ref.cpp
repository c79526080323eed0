// Scalar reference of the direct depthwise int8 conv (conv_dw.h), the spec of its fast
// builds: for each output, the taps in order t = kh*KW + kw (reading x_zp outside the input),
// summed exactly, or (flat sat16pair) in adjacent tap pairs each saturated to s16.
#include <algorithm>

#include "fastq/conv_dw.h"

namespace fastq {

void conv_dw_u8s8_ref(const DwArgs& a) {
  const ConvShape& s = a.s;
  const int64_t OH = s.OH(), OW = s.OW(), T = s.KH * s.KW, mult = s.OC / s.C;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oc = 0; oc < s.OC; ++oc) {
      const uint8_t* xp = a.x + (n * s.C + oc / mult) * s.H * s.W;
      const int8_t* wk = a.w + oc * T;
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          int32_t acc = 0, pending = 0;
          for (int64_t t = 0; t < T; ++t) {
            const int64_t ih = oh * s.stride_h - s.pad_top + (t / s.KW) * s.dil_h;
            const int64_t iw = ow * s.stride_w - s.pad_left + (t % s.KW) * s.dil_w;
            const bool inside = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
            const int32_t prod = int32_t(inside ? xp[ih * s.W + iw] : a.x_zp) * wk[t];
            if (!a.flat_sat) {
              acc += prod;
            } else if (t % 2 == 0) {
              pending = prod;
              if (t + 1 == T) acc += pending;  // odd last tap: paired with a zero
            } else {
              acc += std::min(32767, std::max(-32768, pending + prod));
            }
          }
          a.out[((n * s.OC + oc) * OH + oh) * OW + ow] = acc;
        }
    }
}

}  // namespace fastq

namespace fastq {

void conv_dw_nhwc_row_ref(const DwNhwcArgs& a, int64_t n, int64_t oh, int32_t* acc) {
  const ConvShape& s = a.s;
  const int64_t OW = s.OW(), T = s.KH * s.KW, C = s.C;
  for (int64_t ow = 0; ow < OW; ++ow)
    for (int64_t c = 0; c < C; ++c) {
      int32_t sum = 0, pending = 0;
      for (int64_t t = 0; t < T; ++t) {
        const int64_t ih = oh * s.stride_h - s.pad_top + (t / s.KW) * s.dil_h;
        const int64_t iw = ow * s.stride_w - s.pad_left + (t % s.KW) * s.dil_w;
        const bool inside = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
        const uint8_t xv = inside ? a.x[((n * s.H + ih) * s.W + iw) * C + c] : a.zrow[c];
        const int32_t prod = int32_t(xv) * a.w[c * T + t];
        if (!a.flat_sat) {
          sum += prod;
        } else if (t % 2 == 0) {
          pending = prod;
          if (t + 1 == T) sum += pending;
        } else {
          sum += std::min(32767, std::max(-32768, pending + prod));
        }
      }
      acc[ow * C + c] = sum;
    }
}

}  // namespace fastq
