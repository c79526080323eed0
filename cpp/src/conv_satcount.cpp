// Driver of the saturation-analysis conv (conv_satcount.h): conv_u8s8's im2col rows hand
// each group's rows to the satcount GEMM driver (its tile kernels, fixed-order count sums),
// whose [M, OC/group] results are scattered to NCHW. Depthwise convs (too short a reduction for
// GEMM panels) are counted directly. Plus the one-pass error reduction the saturation
// analysis reads per layer (sequential: sums never depend on the thread count).
#include "fastq/conv_satcount.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <vector>

#include "fastq/conv_dw.h"
#include "fastq/conv_satcount_body.h"
#include "fastq/satcount.h"
#include "fastq/satstats.h"
#include "fastq/threads.h"
#include "fastq/transpose.h"

namespace fastq {

namespace {

// Flat-pairing depthwise counting (conv_satcount_body.h) over all planes: the AVX2 build of
// the body where the impl is avx512vnni (its CPUs all have AVX2), the portable one for ref;
// per-plane counts summed per channel in plane order (no dependence on the thread count).
void dw_flat_satcount(const DwSatArgs& a, Impl impl, int64_t* limit_counts) {
  void (*body)(const DwSatArgs&, int64_t, int64_t, int64_t*) = dw_flat_satcount_planes_ref;
#if defined(FASTQ_HAVE_X86)
  if (impl == Impl::Avx512Vnni) body = dw_flat_satcount_planes_avx2;
#else
  (void)impl;
#endif
  const ConvShape& s = a.s;
  const int64_t planes = s.N * s.OC, chunk = 8;
  std::vector<int64_t> per_plane(static_cast<size_t>(planes), 0);
  parallel_for((planes + chunk - 1) / chunk, [&](int64_t i) {
    body(a, i * chunk, std::min(planes, (i + 1) * chunk), per_plane.data());
  });
  for (int64_t oc = 0; oc < s.OC; ++oc) limit_counts[oc] = 0;
  for (int64_t p = 0; p < planes; ++p) limit_counts[p % s.OC] += per_plane[static_cast<size_t>(p)];
}

// Per calling thread, grow-only: the layer-sized sum buffers of the satstats passes. A fresh
// multi-MiB allocation per call page-faults on first touch, which costs more than the sums
// (the reason for scratch.h); memory held: the largest layer's two buffers per thread.
std::vector<int32_t>& thread_buffer(int which) {
  thread_local std::vector<int32_t> bufs[2];
  return bufs[which];
}

void grow(std::vector<int32_t>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

// conv.h's im2col stage: the input as NHWC once, then per group the rows m = (n*OH + oh)*OW +
// ow of K = w.K() bytes in (kh, kw, c) order, padding taps x_zp, per-tap pad channels 0 --
// the rows conv_u8s8 hands its GEMM (the tests hold the sums bit-equal to conv_u8s8's in both
// pairings). A copy of conv.cpp's loop, so the int8 executor's driver stays untouched while
// it is being reworked; fn(g, rows, M) per group, in order, on this thread.
// TODO(merge): use conv.h's shared im2col once the executor branch exposes one.
void im2col_groups(const uint8_t* x, const ConvShape& s, const PackedConv& w, uint8_t x_zp,
                   const std::function<void(int64_t, const uint8_t*, int64_t)>& fn) {
  if (s.group != w.group || s.C != w.Cg * w.group || s.OC != w.OC || s.KH != w.KH ||
      s.KW != w.KW)
    throw std::invalid_argument("conv input/weight shapes do not match the packed weights");
  if (s.OH() <= 0 || s.OW() <= 0)
    throw std::invalid_argument("conv output would be empty: kernel larger than padded input");
  const int64_t OH = s.OH(), OW = s.OW(), Cg = w.Cg, Cp = w.Cpad, K = w.K();
  const int64_t HW = s.H * s.W, M = s.N * OH * OW;
  thread_local std::vector<uint8_t> nhwc_buf, cols_buf;
  if (nhwc_buf.size() < static_cast<size_t>(s.N * HW * s.C))
    nhwc_buf.resize(static_cast<size_t>(s.N * HW * s.C));
  uint8_t* nhwc = nhwc_buf.data();
  parallel_for(s.N, [&](int64_t n) {
    transpose2d(x + n * s.C * HW, s.C, HW, HW, nhwc + n * HW * s.C, s.C);
  });
  const bool direct = s.group == 1 && s.KH == 1 && s.KW == 1 && s.stride_h == 1 &&
                      s.stride_w == 1 && s.pad_top == 0 && s.pad_left == 0 &&
                      s.pad_bottom == 0 && s.pad_right == 0 && Cp == Cg;
  if (direct) {  // a 1x1 unpadded conv reads the NHWC input as its im2col matrix
    fn(0, nhwc, M);
    return;
  }
  if (cols_buf.size() < static_cast<size_t>(M * K)) cols_buf.resize(static_cast<size_t>(M * K));
  uint8_t* cols = cols_buf.data();
  for (int64_t g = 0; g < s.group; ++g) {
    parallel_for(s.N * OH, [&](int64_t row) {
      const int64_t n = row / OH, oh = row % OH;
      uint8_t* dst = cols + row * OW * K;
      for (int64_t ow = 0; ow < OW; ++ow) {
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
          for (int64_t kw = 0; kw < s.KW; ++kw, dst += Cp) {
            const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
            if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) {
              std::memcpy(dst, nhwc + ((n * s.H + ih) * s.W + iw) * s.C + g * Cg,
                          static_cast<size_t>(Cg));
            } else {
              std::memset(dst, x_zp, static_cast<size_t>(Cg));
            }
            if (Cp > Cg) dst[Cg] = 0;
          }
        }
      }
    });
    fn(g, cols, M);
  }
}

}  // namespace

void dw_flat_satcount_planes_ref(const DwSatArgs& a, int64_t p0, int64_t p1,
                                 int64_t* per_plane) {
  dw_flat_satcount_body(a, p0, p1, per_plane);
}

std::vector<int32_t> dw_flat_pair_weights(const int16_t* wt, int64_t taps, int64_t C) {
  const int64_t pairs = (taps + 1) / 2;
  std::vector<int32_t> wp(static_cast<size_t>(pairs * C));
  for (int64_t p = 0; p < pairs; ++p)
    for (int64_t c = 0; c < C; ++c) {
      const uint32_t lo = uint16_t(wt[2 * p * C + c]);
      const uint32_t hi = 2 * p + 1 < taps ? uint16_t(wt[(2 * p + 1) * C + c]) : 0u;
      wp[static_cast<size_t>(p * C + c)] = int32_t(lo | (hi << 16));
    }
  return wp;
}

void dw_flat_satcount_nhwc_row_ref(const DwNhwcSatArgs& a, int64_t n, int64_t oh, int32_t* sat,
                                   int32_t* exact, int64_t* lim) {
  dw_flat_satcount_nhwc_row_body(a, n, oh, sat, exact, lim);
}

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
      dw_flat_satcount(DwSatArgs{x, w.dw.data(), s, x_zp, c_sat, c_exact}, impl, limit_counts);
      return;
    }
    // per tap: each tap's product stands beside a zero pad, so no pair reaches a limit and
    // the sat16pair sums are the exact ones
    conv_dw_u8s8(x, s, w.dw.data(), w.pairing, x_zp, c_exact, impl, Arith::Exact32);
    if (c_sat != c_exact)
      std::memcpy(c_sat, c_exact, static_cast<size_t>(s.N * s.OC * s.OH() * s.OW()) * 4);
    for (int64_t oc = 0; oc < s.OC; ++oc) limit_counts[oc] = 0;
    return;
  }
  const int64_t OCg = s.OCg(), OHW = s.OH() * s.OW();
  std::vector<int32_t> sat, exact;
  im2col_groups(x, s, w, x_zp, [&](int64_t g, const uint8_t* a, int64_t M) {
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

// acc_error_stats for inner == 1 (GEMM rows [M, C]): the row-block reduction of satstats.h
// (its float order), built for `impl`.
AccErrorStats row_error_stats(const int32_t* target, const int32_t* base, int64_t M, int64_t C,
                              const int64_t* zc, const double* scale, const double* bias,
                              Impl impl = Impl::Ref) {
  const RowStatsFn stats = row_stats_kernel(impl);
  std::vector<double> zcd(static_cast<size_t>(C)), d2(static_cast<size_t>(C), 0.0);
  for (int64_t c = 0; c < C; ++c) {
    if (std::llabs(zc[c]) >= (int64_t(1) << 53))
      throw std::invalid_argument("zero-point term beyond 2^53: not exact in double");
    zcd[c] = static_cast<double>(zc[c]);
  }
  RowStats p;
  stats(RowStatsArgs{target, base, M, C, C, zcd.data(), scale, bias}, p, d2.data());
  return acc_error_stats_of(p);
}

// One channel's run of `inner` outputs (NCHW planes): four accumulators by i % 4.
void plane_error_stats(const int32_t* t, const int32_t* b, int64_t inner, int64_t z, double sc,
                       double bi, AccErrorStats& r) {
  double sig[4] = {0, 0, 0, 0}, d2[4] = {0, 0, 0, 0};
  int64_t changed = 0, max_abs = r.max_abs, sum_abs = 0;
  for (int64_t i = 0; i < inner; ++i) {
    const int64_t d = int64_t(t[i]) - int64_t(b[i]);
    const int64_t ad = d < 0 ? -d : d;
    changed += d != 0;
    max_abs = ad > max_abs ? ad : max_abs;
    sum_abs += ad;
    d2[i & 3] += static_cast<double>(d) * static_cast<double>(d);
    const double y = static_cast<double>(int64_t(b[i]) - z) * sc + bi;
    sig[i & 3] += y * y;
  }
  r.changed += changed;
  r.max_abs = max_abs;
  r.sum_abs += static_cast<double>(sum_abs);
  r.signal += (sig[0] + sig[1]) + (sig[2] + sig[3]);
  r.noise += ((d2[0] + d2[1]) + (d2[2] + d2[3])) * sc * sc;
}

}  // namespace

AccErrorStats acc_error_stats_of(const RowStats& p) {
  AccErrorStats r;
  r.changed = p.changed;
  r.max_abs = p.max_abs;
  r.sum_abs = static_cast<double>(p.sum_abs);
  r.signal = p.signal();
  r.noise = p.noise;
  return r;
}

AccErrorStats acc_error_stats(const int32_t* target, const int32_t* base, int64_t outer,
                              int64_t C, int64_t inner, const int64_t* zc, const double* scale,
                              const double* bias) {
  if (inner == 1) return row_error_stats(target, base, outer, C, zc, scale, bias);
  AccErrorStats r;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t off = (o * C + c) * inner;
      plane_error_stats(target + off, base + off, inner, zc[c], scale[c],
                        bias ? bias[c] : 0.0, r);
    }
  return r;
}

AccErrorStats conv_u8s8_satstats(const uint8_t* x, const ConvShape& s, const PackedConv& w,
                                 uint8_t x_zp, const SatStatsArgs& a) {
  satcount_kernel(a.impl);
  const int64_t OCg = s.OCg(), OHW = s.OH() * s.OW();
  AccErrorStats r;
  std::vector<int32_t>& buf0 = thread_buffer(0);
  std::vector<int32_t>& buf1 = thread_buffer(1);
  if (!w.dw.empty()) {  // direct depthwise sums (NCHW), reduced over the planes
    const size_t n = static_cast<size_t>(s.N * s.OC * OHW);
    int32_t* base = a.base_out;
    if (!base) {
      grow(buf0, n);
      base = buf0.data();
    }
    if (w.pairing == Pairing::PerTap) {  // no pair can reach a limit: target == base
      conv_u8s8_satcount(x, s, w, x_zp, base, base, a.limit_counts, a.impl);
      return acc_error_stats(base, base, s.N, s.OC, OHW, a.zc, a.scale, a.bias);
    }
    grow(buf1, n);
    int32_t* target = buf1.data();
    conv_u8s8_satcount(x, s, w, x_zp, a.base_is_exact ? target : base,
                       a.base_is_exact ? base : target, a.limit_counts, a.impl);
    return acc_error_stats(target, base, s.N, s.OC, OHW, a.zc, a.scale, a.bias);
  }
  im2col_groups(x, s, w, x_zp, [&](int64_t g, const uint8_t* rows, int64_t M) {
    grow(buf0, static_cast<size_t>(M * OCg));
    grow(buf1, static_cast<size_t>(M * OCg));
    int32_t* target = buf0.data();
    int32_t* base = buf1.data();
    gemm_u8s8_satcount(rows, M, w.K(), *w.groups[g], a.base_is_exact ? target : base,
                       a.base_is_exact ? base : target, a.limit_counts + g * OCg, a.impl);
    r.merge(row_error_stats(target, base, M, OCg, a.zc + g * OCg, a.scale + g * OCg,
                            a.bias ? a.bias + g * OCg : nullptr, a.impl));
    if (a.base_out) {  // [M, OCg] rows (m = n*OHW + p) -> planes [n, g*OCg + j, p]
      parallel_for(s.N, [&](int64_t n) {
        transpose2d(base + n * OHW * OCg, OHW, OCg, OCg,
                    a.base_out + (n * s.OC + g * OCg) * OHW, OHW);
      });
    }
  });
  return r;
}

AccErrorStats gemm_u8s8_satstats(const uint8_t* x, int64_t M, const PackedB& b,
                                 const SatStatsArgs& a) {
  const size_t n = static_cast<size_t>(M * b.N);
  std::vector<int32_t>& buf0 = thread_buffer(0);
  std::vector<int32_t>& buf1 = thread_buffer(1);
  grow(buf0, n);
  int32_t* target = buf0.data();
  int32_t* base = a.base_out;
  if (!base) {
    grow(buf1, n);
    base = buf1.data();
  }
  gemm_u8s8_satcount(x, M, b.K, b, a.base_is_exact ? target : base,
                     a.base_is_exact ? base : target, a.limit_counts, a.impl);
  return row_error_stats(target, base, M, b.N, a.zc, a.scale, a.bias, a.impl);
}

void acc_epilogue(const int32_t* acc, int64_t outer, int64_t C, int64_t inner,
                  const int64_t* zc, const float* scale, const float* bias, float* out) {
  // rows of a GEMM layer (inner 1) in the vector unit when zc fits (gemm.h float_row_vec)
  const std::vector<int32_t> zc32 = inner == 1 ? small_zc32(zc, C) : std::vector<int32_t>();
  parallel_for(outer, [&](int64_t o) {
    if (!zc32.empty() &&
        float_row_vec(acc + o * C, C, zc32.data(), scale, bias, out + o * C))
      return;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t off = (o * C + c) * inner, z = zc[c];
      const float sc = scale[c];
      const int32_t* a = acc + off;
      float* y = out + off;
      if (bias) {
        const float b = bias[c];
        for (int64_t i = 0; i < inner; ++i) y[i] = static_cast<float>(int64_t(a[i]) - z) * sc + b;
      } else {
        for (int64_t i = 0; i < inner; ++i) y[i] = static_cast<float>(int64_t(a[i]) - z) * sc;
      }
    }
  });
}

}  // namespace fastq
