// The direct depthwise int8 body (conv_dw.h), compiled with AVX2 flags by
// avx2/conv_dw_avx2.cpp: plain C++ that the compiler vectorizes over the output row.
// Integer-only, so it returns the same bits as conv_dw_u8s8_ref. Internal linkage: a copy
// per including object library would be harmless.
#pragma once
#include <algorithm>
#include <cstring>
#include <vector>

#include "fastq/conv_dw.h"

namespace fastq {
namespace {  // NOLINT: deliberate, see above

// acc[j] += x[j * sw] * w for one tap over one output row.
inline void dw_tap(int32_t* __restrict acc, const uint8_t* __restrict src, int64_t n,
                   int64_t sw, int32_t w) {
  if (sw == 1) {
    for (int64_t j = 0; j < n; ++j) acc[j] += int32_t(src[j]) * w;
  } else if (sw == 2) {
    for (int64_t j = 0; j < n; ++j) acc[j] += int32_t(src[2 * j]) * w;
  } else {
    for (int64_t j = 0; j < n; ++j) acc[j] += int32_t(src[j * sw]) * w;
  }
}

// acc[j] += sat16(a[j * sw] * wa + b[j * sw] * wb): one vpmaddubsw pair per output.
inline void dw_pair_sat(int32_t* __restrict acc, const uint8_t* __restrict a,
                        const uint8_t* __restrict b, int64_t n, int64_t sw,
                        int32_t wa, int32_t wb) {
  for (int64_t j = 0; j < n; ++j) {
    int32_t v = int32_t(a[j * sw]) * wa + int32_t(b[j * sw]) * wb;
    v = std::min<int32_t>(32767, std::max<int32_t>(-32768, v));
    acc[j] += v;
  }
}

// The padded input plane every tap of every output reads inside of: its width, and one
// plane of x copied into it (x_zp around).
inline int64_t dw_padded_height(const ConvShape& s) {
  return std::max((s.OH() - 1) * s.stride_h + (s.KH - 1) * s.dil_h + 1, s.pad_top + s.H);
}
inline int64_t dw_padded_width(const ConvShape& s) {
  return std::max((s.OW() - 1) * s.stride_w + (s.KW - 1) * s.dil_w + 1, s.pad_left + s.W);
}
inline void dw_fill_padded(const ConvShape& s, const uint8_t* src, uint8_t x_zp,
                           std::vector<uint8_t>* pad) {
  const int64_t Wp = dw_padded_width(s);
  pad->assign(static_cast<size_t>(dw_padded_height(s) * Wp), x_zp);
  for (int64_t h = 0; h < s.H; ++h)
    std::memcpy(pad->data() + (h + s.pad_top) * Wp + s.pad_left, src + h * s.W,
                static_cast<size_t>(s.W));
}

inline void dw_planes_body(const DwArgs& a, int64_t p0, int64_t p1) {
  const ConvShape& s = a.s;
  const int64_t OH = s.OH(), OW = s.OW(), T = s.KH * s.KW, mult = s.OC / s.C;
  const int64_t Wp = dw_padded_width(s);
  thread_local std::vector<uint8_t> pad;
  int64_t filled_plane = -1;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n = p / s.OC, oc = p % s.OC, c = oc / mult;
    const int64_t in_plane = n * s.C + c;
    if (in_plane != filled_plane) {  // channel multiplier > 1 reuses the copy
      dw_fill_padded(s, a.x + in_plane * s.H * s.W, a.x_zp, &pad);
      filled_plane = in_plane;
    }
    const int8_t* wk = a.w + oc * T;
    int32_t* o = a.out + p * OH * OW;
    for (int64_t oh = 0; oh < OH; ++oh) {
      int32_t* acc = o + oh * OW;
      std::fill(acc, acc + OW, 0);
      const uint8_t* base = pad.data() + oh * s.stride_h * Wp;
      auto tap = [&](int64_t t) {
        return base + (t / s.KW) * s.dil_h * Wp + (t % s.KW) * s.dil_w;
      };
      if (!a.flat_sat) {
        for (int64_t t = 0; t < T; ++t) dw_tap(acc, tap(t), OW, s.stride_w, wk[t]);
      } else {
        int64_t t = 0;
        for (; t + 1 < T; t += 2)
          dw_pair_sat(acc, tap(t), tap(t + 1), OW, s.stride_w, wk[t], wk[t + 1]);
        if (t < T) dw_tap(acc, tap(t), OW, s.stride_w, wk[t]);
      }
    }
  }
}

}  // namespace
}  // namespace fastq
