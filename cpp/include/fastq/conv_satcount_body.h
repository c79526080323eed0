// The flat-pairing depthwise counting body (conv_satcount.h): conv_dw.h's contract with taps
// paired (t, t+1) per channel, an odd last tap alone (a lone u8 x s8 product never reaches an
// int16 limit), each pair sum saturated for the sat16pair sums and kept whole for the exact32
// ones, counting pairs on a limit. Row by row from a zero-point-padded plane, so the compiler
// vectorizes over the output row; plain C++ compiled portable (conv_satcount.cpp, Impl::Ref)
// and with AVX2 flags (avx2/conv_satcount_avx2.cpp). Integer-only: both give the same bits.
#pragma once
#include <algorithm>
#include <cstring>
#include <vector>

#include "fastq/conv_dw_body.h"
#include "fastq/conv_satcount.h"

namespace fastq {
namespace {  // NOLINT: deliberate, one copy per including object library

// One tap pair over one output row: as[j] += sat16(pair), ae[j] += pair; returns the pairs
// on an int16 limit. SW > 0 is the stride known at compile time (so the loads vectorize);
// SW == 0 reads it from sw.
template <int SW>
inline int32_t dw_pair_row(int32_t* __restrict as, int32_t* __restrict ae,
                           const uint8_t* __restrict ta, const uint8_t* __restrict tb,
                           int64_t n, int64_t sw, int32_t wa, int32_t wb) {
  const int64_t st = SW > 0 ? SW : sw;
  int32_t lim = 0;
  for (int64_t j = 0; j < n; ++j) {
    const int32_t v = int32_t(ta[j * st]) * wa + int32_t(tb[j * st]) * wb;
    const int32_t c16 = std::min<int32_t>(32767, std::max<int32_t>(-32768, v));
    as[j] += c16;
    ae[j] += v;
    lim += (c16 == 32767) | (c16 == -32768);
  }
  return lim;
}

inline void dw_flat_satcount_body(const DwSatArgs& a, int64_t p0, int64_t p1,
                                  int64_t* per_plane) {
  const ConvShape& s = a.s;
  const int64_t OH = s.OH(), OW = s.OW(), T = s.KH * s.KW, mult = s.OC / s.C;
  const int64_t Wp = dw_padded_width(s);
  const int64_t sw = s.stride_w;
  thread_local std::vector<uint8_t> pad;
  int64_t filled_plane = -1;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n = p / s.OC, oc = p % s.OC, c = oc / mult;
    const int64_t in_plane = n * s.C + c;
    if (in_plane != filled_plane) {  // a channel multiplier > 1 reuses the copy
      dw_fill_padded(s, a.x + in_plane * s.H * s.W, a.x_zp, &pad);
      filled_plane = in_plane;
    }
    const int8_t* wk = a.w + oc * T;
    int64_t lim = 0;
    for (int64_t oh = 0; oh < OH; ++oh) {
      int32_t* __restrict as = a.c_sat + p * OH * OW + oh * OW;
      int32_t* __restrict ae = a.c_exact + p * OH * OW + oh * OW;
      std::fill(as, as + OW, 0);
      std::fill(ae, ae + OW, 0);
      const uint8_t* base = pad.data() + oh * s.stride_h * Wp;
      auto tap = [&](int64_t t) {
        return base + (t / s.KW) * s.dil_h * Wp + (t % s.KW) * s.dil_w;
      };
      int64_t t = 0;
      for (; t + 1 < T; t += 2) {
        const uint8_t* __restrict ta = tap(t);
        const uint8_t* __restrict tb = tap(t + 1);
        const int32_t wa = wk[t], wb = wk[t + 1];
        lim += sw == 1 ? dw_pair_row<1>(as, ae, ta, tb, OW, sw, wa, wb)
             : sw == 2 ? dw_pair_row<2>(as, ae, ta, tb, OW, sw, wa, wb)
                       : dw_pair_row<0>(as, ae, ta, tb, OW, sw, wa, wb);
      }
      if (t < T) {
        const uint8_t* __restrict ta = tap(t);
        const int32_t wa = wk[t];
        for (int64_t j = 0; j < OW; ++j) {
          const int32_t v = int32_t(ta[j * sw]) * wa;
          as[j] += v;
          ae[j] += v;
        }
      }
    }
    per_plane[p] = lim;
  }
}

// The same contract for one NHWC output row (n, oh), all channels (multiplier 1): per output
// pixel, tap pointers (an input pixel, or zrow for padding), then per tap pair a pass over
// the channels, which the compiler vectorizes. sat / exact: [OW, C]; lim[c] += the
// channel's pairs on a limit.
inline void dw_flat_satcount_nhwc_row_body(const DwNhwcSatArgs& a, int64_t n, int64_t oh,
                                           int32_t* sat, int32_t* exact, int64_t* lim) {
  const ConvShape& s = a.s;
  const int64_t OW = s.OW(), T = s.KH * s.KW, C = s.C;
  thread_local std::vector<const uint8_t*> tp;
  thread_local std::vector<int32_t> lim32;
  tp.resize(static_cast<size_t>(T));
  lim32.assign(static_cast<size_t>(C), 0);
  int32_t* __restrict l32 = lim32.data();
  for (int64_t ow = 0; ow < OW; ++ow) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t ih = oh * s.stride_h - s.pad_top + (t / s.KW) * s.dil_h;
      const int64_t iw = ow * s.stride_w - s.pad_left + (t % s.KW) * s.dil_w;
      tp[t] = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W ? a.x + ((n * s.H + ih) * s.W + iw) * C
                                                         : a.zrow;
    }
    int32_t* __restrict as = sat + ow * C;
    int32_t* __restrict ae = exact + ow * C;
    std::fill(as, as + C, 0);
    std::fill(ae, ae + C, 0);
    int64_t t = 0;
    for (; t + 1 < T; t += 2) {
      const uint8_t* __restrict pa = tp[t];
      const uint8_t* __restrict pb = tp[t + 1];
      const int16_t* __restrict wa = a.wt + t * C;
      const int16_t* __restrict wb = a.wt + (t + 1) * C;
      for (int64_t c = 0; c < C; ++c) {
        const int32_t v = int32_t(pa[c]) * wa[c] + int32_t(pb[c]) * wb[c];
        const int32_t c16 = std::min<int32_t>(32767, std::max<int32_t>(-32768, v));
        as[c] += c16;
        ae[c] += v;
        l32[c] += (c16 == 32767) | (c16 == -32768);
      }
    }
    if (t < T) {  // an odd last tap alone: never at a limit
      const uint8_t* __restrict pa = tp[t];
      const int16_t* __restrict wa = a.wt + t * C;
      for (int64_t c = 0; c < C; ++c) {
        const int32_t v = int32_t(pa[c]) * wa[c];
        as[c] += v;
        ae[c] += v;
      }
    }
  }
  for (int64_t c = 0; c < C; ++c) lim[c] += l32[c];
}

}  // namespace
}  // namespace fastq
