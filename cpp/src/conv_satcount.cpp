// Driver of the saturation-analysis conv (conv_satcount.h): conv.cpp's im2col stage hands
// each group's rows to the satcount GEMM driver (its tile kernels, fixed-order count sums),
// whose [M, OC/group] results are scattered to NCHW. Depthwise convs (too short a reduction for
// GEMM panels) are counted directly. Plus the one-pass error reduction the saturation
// analysis reads per layer (sequential: sums never depend on the thread count).
#include "fastq/conv_satcount.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "fastq/conv_dw.h"
#include "fastq/satcount.h"
#include "fastq/threads.h"
#include "fastq/transpose.h"

namespace fastq {

namespace {

// Depthwise (one input channel per group) with flat pairing: conv_dw.h's contract, pairs of
// taps (t, t+1) of one channel, an odd last tap alone (a lone u8 x s8 product never reaches a
// limit). Row by row from a zero-point-padded plane so the compiler vectorizes over outputs;
// per-plane counts summed per channel in plane order (no dependence on the thread count).
void dw_flat_satcount(const uint8_t* x, const ConvShape& s, const int8_t* w, uint8_t x_zp,
                      int32_t* c_sat, int32_t* c_exact, int64_t* limit_counts) {
  const int64_t OH = s.OH(), OW = s.OW(), T = s.KH * s.KW, mult = s.OC / s.C;
  const int64_t Hp = std::max((OH - 1) * s.stride_h + (s.KH - 1) * s.dil_h + 1,
                              s.pad_top + s.H);
  const int64_t Wp = std::max((OW - 1) * s.stride_w + (s.KW - 1) * s.dil_w + 1,
                              s.pad_left + s.W);
  const int64_t planes = s.N * s.OC, sw = s.stride_w;
  std::vector<int64_t> per_plane(static_cast<size_t>(planes), 0);
  parallel_for(planes, [&](int64_t p) {
    const int64_t n = p / s.OC, oc = p % s.OC, c = oc / mult;
    thread_local std::vector<uint8_t> pad;
    pad.assign(static_cast<size_t>(Hp * Wp), x_zp);
    const uint8_t* src = x + (n * s.C + c) * s.H * s.W;
    for (int64_t h = 0; h < s.H; ++h)
      std::memcpy(pad.data() + (h + s.pad_top) * Wp + s.pad_left, src + h * s.W,
                  static_cast<size_t>(s.W));
    const int8_t* wk = w + oc * T;
    int64_t lim = 0;
    for (int64_t oh = 0; oh < OH; ++oh) {
      int32_t* as = c_sat + p * OH * OW + oh * OW;
      int32_t* ae = c_exact + p * OH * OW + oh * OW;
      std::fill(as, as + OW, 0);
      std::fill(ae, ae + OW, 0);
      const uint8_t* base = pad.data() + oh * s.stride_h * Wp;
      auto tap = [&](int64_t t) {
        return base + (t / s.KW) * s.dil_h * Wp + (t % s.KW) * s.dil_w;
      };
      int64_t t = 0;
      for (; t + 1 < T; t += 2) {
        const uint8_t* a = tap(t);
        const uint8_t* b = tap(t + 1);
        const int32_t wa = wk[t], wb = wk[t + 1];
        int32_t row_lim = 0;
        for (int64_t j = 0; j < OW; ++j) {
          const int32_t v = int32_t(a[j * sw]) * wa + int32_t(b[j * sw]) * wb;
          const int32_t c16 = std::min<int32_t>(32767, std::max<int32_t>(-32768, v));
          as[j] += c16;
          ae[j] += v;
          row_lim += (c16 == 32767) | (c16 == -32768);
        }
        lim += row_lim;
      }
      if (t < T) {
        const uint8_t* a = tap(t);
        const int32_t wa = wk[t];
        for (int64_t j = 0; j < OW; ++j) {
          const int32_t v = int32_t(a[j * sw]) * wa;
          as[j] += v;
          ae[j] += v;
        }
      }
    }
    per_plane[static_cast<size_t>(p)] = lim;
  });
  for (int64_t oc = 0; oc < s.OC; ++oc) limit_counts[oc] = 0;
  for (int64_t p = 0; p < planes; ++p) limit_counts[p % s.OC] += per_plane[static_cast<size_t>(p)];
}

}  // namespace

void conv_u8s8_satcount(const uint8_t* x, const ConvShape& s, const PackedConv& w,
                        uint8_t x_zp, int32_t* c_sat, int32_t* c_exact, int64_t* limit_counts,
                        Impl impl) {
  satcount_kernel(impl);  // an impl without the kernel fails before any work
  if (!w.dw.empty()) {    // one input channel per group: conv_dw.h's direct contract
    if (s.Cg() != 1 || s.group != s.C || s.OC != w.OC || s.KH != w.KH || s.KW != w.KW)
      throw std::invalid_argument("conv input/weight shapes do not match the packed weights");
    if (s.OH() <= 0 || s.OW() <= 0)
      throw std::invalid_argument("conv output would be empty: kernel larger than padded input");
    if (w.pairing == Pairing::Flat) {
      dw_flat_satcount(x, s, w.dw.data(), x_zp, c_sat, c_exact, limit_counts);
      return;
    }
    // per tap: each tap's product stands beside a zero pad, so no pair reaches a limit and
    // the sat16pair sums are the exact ones
    conv_dw_u8s8(x, s, w.dw.data(), w.pairing, x_zp, c_exact, impl, Arith::Exact32);
    std::memcpy(c_sat, c_exact, static_cast<size_t>(s.N * s.OC * s.OH() * s.OW()) * 4);
    for (int64_t oc = 0; oc < s.OC; ++oc) limit_counts[oc] = 0;
    return;
  }
  const int64_t OCg = s.OCg(), OHW = s.OH() * s.OW();
  std::vector<int32_t> sat, exact;
  conv_im2col_groups(x, s, w, x_zp, [&](int64_t g, const uint8_t* a, int64_t M) {
    sat.resize(static_cast<size_t>(M * OCg));
    exact.resize(static_cast<size_t>(M * OCg));
    gemm_u8s8_satcount(a, M, w.K(), *w.groups[g], sat.data(), exact.data(),
                       limit_counts + g * OCg, impl);
    // [M, OCg] rows (m = n*OHW + p) -> planes [n, g*OCg + j, p]
    parallel_for(s.N, [&](int64_t n) {
      const int64_t src = n * OHW * OCg, dst = (n * s.OC + g * OCg) * OHW;
      transpose2d(sat.data() + src, OHW, OCg, OCg, c_sat + dst, OHW);
      transpose2d(exact.data() + src, OHW, OCg, OCg, c_exact + dst, OHW);
    });
  });
}

namespace {

// acc_error_stats for inner == 1 (GEMM rows [M, C]): channel sums of d^2 in one array.
AccErrorStats row_error_stats(const int32_t* target, const int32_t* base, int64_t M, int64_t C,
                              const int64_t* zc, const double* scale, const double* bias) {
  AccErrorStats r;
  std::vector<double> d2(static_cast<size_t>(C), 0.0);
  for (int64_t m = 0; m < M; ++m) {
    const int32_t* t = target + m * C;
    const int32_t* b = base + m * C;
    int64_t changed = 0, max_abs = r.max_abs;
    double sum_abs = 0, sig = 0;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t d = int64_t(t[c]) - int64_t(b[c]);
      const int64_t ad = d < 0 ? -d : d;
      changed += d != 0;
      max_abs = ad > max_abs ? ad : max_abs;
      sum_abs += static_cast<double>(ad);
      d2[c] += static_cast<double>(d) * static_cast<double>(d);
      const double y = static_cast<double>(int64_t(b[c]) - zc[c]) * scale[c] +
                       (bias ? bias[c] : 0.0);
      sig += y * y;
    }
    r.changed += changed;
    r.max_abs = max_abs;
    r.sum_abs += sum_abs;
    r.signal += sig;
  }
  for (int64_t c = 0; c < C; ++c) r.noise += d2[c] * scale[c] * scale[c];
  return r;
}

}  // namespace

AccErrorStats acc_error_stats(const int32_t* target, const int32_t* base, int64_t outer,
                              int64_t C, int64_t inner, const int64_t* zc, const double* scale,
                              const double* bias) {
  if (inner == 1) return row_error_stats(target, base, outer, C, zc, scale, bias);
  AccErrorStats r;
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < C; ++c) {
      const int64_t off = (o * C + c) * inner;
      const int32_t* t = target + off;
      const int32_t* b = base + off;
      const double sc = scale[c], bi = bias ? bias[c] : 0.0;
      const int64_t z = zc[c];
      int64_t changed = 0, max_abs = r.max_abs;
      double sum_abs = 0, sig = 0, d2 = 0;
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t d = int64_t(t[i]) - int64_t(b[i]);
        const int64_t ad = d < 0 ? -d : d;
        changed += d != 0;
        max_abs = ad > max_abs ? ad : max_abs;
        sum_abs += static_cast<double>(ad);
        d2 += static_cast<double>(d) * static_cast<double>(d);
        const double y = static_cast<double>(int64_t(b[i]) - z) * sc + bi;
        sig += y * y;
      }
      r.changed += changed;
      r.max_abs = max_abs;
      r.sum_abs += sum_abs;
      r.signal += sig;
      r.noise += d2 * sc * sc;
    }
  }
  return r;
}

AccErrorStats conv_u8s8_satstats(const uint8_t* x, const ConvShape& s, const PackedConv& w,
                                 uint8_t x_zp, const SatStatsArgs& a) {
  satcount_kernel(a.impl);
  const int64_t OCg = s.OCg();
  AccErrorStats r;
  if (!w.dw.empty()) {  // direct depthwise sums, reduced over the NCHW planes
    const size_t n = static_cast<size_t>(s.N * s.OC * s.OH() * s.OW());
    std::vector<int32_t> sat(n), exact(n);
    conv_u8s8_satcount(x, s, w, x_zp, sat.data(), exact.data(), a.limit_counts, a.impl);
    const int32_t* t = a.base_is_exact ? sat.data() : exact.data();
    const int32_t* b = a.base_is_exact ? exact.data() : sat.data();
    return acc_error_stats(t, b, s.N, s.OC, s.OH() * s.OW(), a.zc, a.scale, a.bias);
  }
  std::vector<int32_t> sat, exact;
  conv_im2col_groups(x, s, w, x_zp, [&](int64_t g, const uint8_t* rows, int64_t M) {
    sat.resize(static_cast<size_t>(M * OCg));
    exact.resize(static_cast<size_t>(M * OCg));
    gemm_u8s8_satcount(rows, M, w.K(), *w.groups[g], sat.data(), exact.data(),
                       a.limit_counts + g * OCg, a.impl);
    const int32_t* t = a.base_is_exact ? sat.data() : exact.data();
    const int32_t* b = a.base_is_exact ? exact.data() : sat.data();
    r.merge(row_error_stats(t, b, M, OCg, a.zc + g * OCg, a.scale + g * OCg,
                            a.bias ? a.bias + g * OCg : nullptr));
  });
  return r;
}

AccErrorStats gemm_u8s8_satstats(const uint8_t* x, int64_t M, const PackedB& b,
                                 const SatStatsArgs& a) {
  const size_t n = static_cast<size_t>(M * b.N);
  std::vector<int32_t> sat(n), exact(n);
  gemm_u8s8_satcount(x, M, b.K, b, sat.data(), exact.data(), a.limit_counts, a.impl);
  const int32_t* t = a.base_is_exact ? sat.data() : exact.data();
  const int32_t* bs = a.base_is_exact ? exact.data() : sat.data();
  return row_error_stats(t, bs, M, b.N, a.zc, a.scale, a.bias);
}

}  // namespace fastq
