// The saturation analysis' pass over a requantized conv layer in the int8 executor's layout
// (conv_satcount.h): NHWC u8 in, the base arithmetic's requantized NHWC output out, as
// qconv_requant_nhwc gives it, plus the counts and error figures -- no NCHW round trip, no
// layer-sized sum buffers. GEMM convs run row block by row block (conv_nhwc.cpp's blocking:
// the input rows themselves for 1x1 unpadded convs, else an L2-sized im2col block) through the
// counting kernel, then the block's error reduction (satstats.h) and requantization while it
// is in cache. Per-tap depthwise convs cannot saturate (target == base): the plain NHWC rows
// plus the signal; flat-pairing ones (multiplier 1) count NHWC rows directly. Per-block partial figures merge in block order: no thread-count dependence.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "fastq/conv_satcount.h"
#include "fastq/requant.h"
#include "fastq/satcount.h"
#include "fastq/satstats.h"
#include "fastq/threads.h"
#include "fastq/transpose.h"

namespace fastq {

namespace {

template <class T>
T* grown(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n, T(0));
  return v.data();
}

// Per-unit (row or block) limit counts [units, C] summed per channel in unit order (the
// result never depends on the thread count).
void sum_counts(const std::vector<int64_t>& counts, int64_t units, int64_t C, int64_t* out) {
  for (int64_t c = 0; c < C; ++c) out[c] = 0;
  for (int64_t i = 0; i < units; ++i)
    for (int64_t c = 0; c < C; ++c) out[c] += counts[static_cast<size_t>(i * C + c)];
}

AccErrorStats finish(const std::vector<RowStats>& parts) {
  RowStats all;
  for (const RowStats& p : parts) all.merge(p);
  return acc_error_stats_of(all);
}

// zcomp as the requantization's wrapped int32 (requant.h), one entry per channel.
std::vector<int32_t> zcomp32(const RequantOut& r, int64_t C) {
  std::vector<int32_t> z(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) z[c] = int32_t(uint32_t(r.zcomp[c]));
  return z;
}

// A block's error reduction and the requantization of its base sums (channels c0 ... of r)
// into out, row stride ldo: one pass on AVX-512, else row_stats then requantize_rows.
void reduce_requant(Impl impl, RowStatsFn stats, const RowStatsArgs& sa, RowStats& part,
                    double* d2, const RequantOut& r, const int32_t* z32, int64_t c0,
                    uint8_t* out, int64_t ldo) {
#if defined(FASTQ_HAVE_X86)
  if (impl == Impl::Avx512Vnni) {
    row_stats_requant_avx512(sa, part, d2, RequantStore{z32 + c0, r.mult + c0, r.y_zp,
                                                      r.y_signed, out, ldo});
    return;
  }
#endif
  (void)z32;
  stats(sa, part, d2);
  requantize_rows(sa.base, sa.rows, sa.C, sa.ld, r.zcomp + c0, r.mult + c0, r.y_zp, r.y_signed,
                  out, ldo);
}

// im2col_nhwc's rows for an ungrouped conv whose taps pad an odd channel count C by one zero
// weight (per-tap pairing, the stem's 3 -> 4): each tap copies C + 1 bytes at once -- the
// extra byte is the next pixel's first channel, or x_zp, and meets a zero weight, so it adds
// nothing to any pair -- except at the input's last byte, where it is written as 0.
void im2col_odd_tap(const uint8_t* nhwc, const uint8_t* end, const ConvShape& s, uint8_t x_zp,
                    int64_t row0, int64_t rows, uint8_t* cols, int64_t ld) {
  const int64_t OH = s.OH(), OW = s.OW(), C = s.C, Cp = C + 1;
  int64_t n = row0 / (OH * OW), oh = (row0 / OW) % OH, ow = row0 % OW - 1;
  for (int64_t r = 0; r < rows; ++r) {
    if (++ow == OW) {
      ow = 0;
      if (++oh == OH) oh = 0, ++n;
    }
    uint8_t* dst = cols + r * ld;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
      for (int64_t kw = 0; kw < s.KW; ++kw, dst += Cp) {
        const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
        if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) {
          const uint8_t* src = nhwc + ((n * s.H + ih) * s.W + iw) * C;
          if (Cp == 4 && src + 4 <= end) {  // a constant size: one 32-bit move, no call
            std::memcpy(dst, src, 4);
          } else if (src + Cp <= end) {
            std::memcpy(dst, src, static_cast<size_t>(Cp));
          } else {
            std::memcpy(dst, src, static_cast<size_t>(C));
            dst[C] = 0;
          }
        } else {
          for (int64_t c = 0; c < Cp; ++c) dst[c] = x_zp;
        }
      }
    }
  }
}

// Depthwise convs the NHWC rows do not count (flat pairing, channel multipliers): the NCHW
// counting pass, its base sums transposed to rows and requantized.
AccErrorStats dw_fallback(const uint8_t* x, bool x_nhwc, const ConvShape& s,
                          const PackedConv& w, uint8_t x_zp, const SatStatsArgs& a,
                          const RequantOut& r) {
  const int64_t HW = s.H * s.W, OHW = s.OH() * s.OW();
  thread_local std::vector<uint8_t> xt;
  thread_local std::vector<int32_t> base, rows;
  const uint8_t* xc = x;
  if (x_nhwc) {
    uint8_t* t = grown(xt, static_cast<size_t>(s.N * HW * s.C));
    for (int64_t n = 0; n < s.N; ++n)
      transpose2d(x + n * HW * s.C, HW, s.C, s.C, t + n * s.C * HW, HW);
    xc = t;
  }
  SatStatsArgs b = a;
  b.base_out = grown(base, static_cast<size_t>(s.N * s.OC * OHW));
  const AccErrorStats st = conv_u8s8_satstats(xc, s, w, x_zp, b);
  int32_t* rw = grown(rows, static_cast<size_t>(OHW * s.OC));
  uint8_t* out = static_cast<uint8_t*>(r.out);
  for (int64_t n = 0; n < s.N; ++n) {
    transpose2d(b.base_out + n * s.OC * OHW, s.OC, OHW, OHW, rw, s.OC);
    requantize_rows(rw, OHW, s.OC, s.OC, r.zcomp, r.mult, r.y_zp, r.y_signed,
                    out + n * OHW * s.OC, s.OC);
  }
  return st;
}

// Flat-pairing depthwise, multiplier 1: the NHWC counting rows (conv_satcount_body.h; the
// AVX-512 row for Impl::Avx512Vnni), each reduced and requantized as it is produced.
AccErrorStats dw_flat(const uint8_t* x, bool x_nhwc, const ConvShape& s, const PackedConv& w,
                      uint8_t x_zp, const SatStatsArgs& a, const RequantOut& r,
                      const std::vector<double>& zcd) {
  void (*row)(const DwNhwcSatArgs&, int64_t, int64_t, int32_t*, int32_t*, int64_t*) =
      dw_flat_satcount_nhwc_row_ref;
#if defined(FASTQ_HAVE_X86)
  if (a.impl == Impl::Avx512Vnni) row = dw_flat_satcount_nhwc_row_avx512;
#endif
  const RowStatsFn stats = row_stats_kernel(a.impl);
  const int64_t C = s.C, OH = s.OH(), OW = s.OW(), T = s.KH * s.KW, HW = s.H * s.W;
  const uint8_t* nhwc = x;
  thread_local std::vector<uint8_t> xt;
  if (!x_nhwc) {
    uint8_t* t = grown(xt, static_cast<size_t>(s.N * HW * C));
    for (int64_t n = 0; n < s.N; ++n)
      transpose2d(x + n * C * HW, C, HW, HW, t + n * HW * C, C);
    nhwc = t;
  }
  std::vector<int16_t> wt(static_cast<size_t>(T * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < T; ++t) wt[static_cast<size_t>(t * C + c)] = w.dw[c * T + t];
  std::vector<uint8_t> zrow(static_cast<size_t>(C), x_zp);
  const std::vector<int32_t> z32 = zcomp32(r, C);
  const std::vector<int32_t> wpair = dw_flat_pair_weights(wt.data(), T, C);
  const DwNhwcSatArgs args{nhwc, wt.data(), s, zrow.data(), wpair.data()};
  const int64_t rows = s.N * OH;
  std::vector<RowStats> parts(static_cast<size_t>(rows));
  std::vector<int64_t> counts(static_cast<size_t>(rows * C), 0);
  uint8_t* out = static_cast<uint8_t*>(r.out);
  auto one = [&](int64_t i) {
    thread_local std::vector<int32_t> tbuf, bbuf;
    thread_local std::vector<double> d2buf;
    int32_t* target = grown(tbuf, static_cast<size_t>(OW * C));
    int32_t* base = grown(bbuf, static_cast<size_t>(OW * C));
    double* d2 = grown(d2buf, static_cast<size_t>(C));
    row(args, i / OH, i % OH, a.base_is_exact ? target : base, a.base_is_exact ? base : target,
        counts.data() + i * C);
    reduce_requant(a.impl, stats,
                   RowStatsArgs{target, base, OW, C, C, zcd.data(), a.scale, a.bias},
                   parts[static_cast<size_t>(i)], d2, r, z32.data(), 0, out + i * OW * C, C);
  };
  if (num_threads() > 1 && rows * OW * C * T > (1 << 18))
    parallel_for(rows, one);
  else
    for (int64_t i = 0; i < rows; ++i) one(i);
  sum_counts(counts, rows, C, a.limit_counts);
  return finish(parts);
}

}  // namespace

AccErrorStats qconv_requant_satstats_nhwc(const uint8_t* x, bool x_nhwc, const ConvShape& s,
                                          const PackedConv& w, uint8_t x_zp,
                                          const SatStatsArgs& a, const RequantOut& r) {
  const SatCountKernel kernel = satcount_kernel(a.impl);
  const RowStatsFn stats = row_stats_kernel(a.impl);
  if (s.group != w.group || s.C != w.Cg * w.group || s.OC != w.OC || s.KH != w.KH ||
      s.KW != w.KW)
    throw std::invalid_argument("conv input/weight shapes do not match the packed weights");
  if (s.OH() <= 0 || s.OW() <= 0)
    throw std::invalid_argument("conv output would be empty: kernel larger than padded input");
  const int64_t OC = s.OC, OCg = s.OCg(), OH = s.OH(), OW = s.OW(), M = s.N * OH * OW;
  std::vector<double> zcd(static_cast<size_t>(OC));
  for (int64_t c = 0; c < OC; ++c) {
    if (std::llabs(a.zc[c]) >= (int64_t(1) << 53))
      throw std::invalid_argument("zero-point term beyond 2^53: not exact in double");
    zcd[c] = static_cast<double>(a.zc[c]);
  }
  const double* bias = a.bias;  // nullable
  uint8_t* out = static_cast<uint8_t*>(r.out);
  const std::vector<int32_t> z32 = zcomp32(r, OC);
  auto reduce = [&](const RowStatsArgs& sa, RowStats& part, double* d2, int64_t row0,
                    int64_t c0) {
    reduce_requant(a.impl, stats, sa, part, d2, r, z32.data(), c0, out + row0 * OC + c0, OC);
  };
  std::vector<RowStats> parts;
  if (!w.dw.empty()) {
    if (s.OC != s.C) return dw_fallback(x, x_nhwc, s, w, x_zp, a, r);
    if (w.pairing == Pairing::Flat) return dw_flat(x, x_nhwc, s, w, x_zp, a, r, zcd);
    // per tap: each tap's product stands beside a zero pad, no pair can reach a limit, so
    // the sat16pair sums are the exact ones (conv_satcount.h)
    parts.resize(static_cast<size_t>(s.N * OH));
    conv_u8s8_nhwc_rows(x, x_nhwc, s, w, x_zp, a.impl, Arith::Exact32,
                        [&](int64_t row0, int64_t rows, const int32_t* acc, int64_t lda,
                            int64_t) {
                          reduce(RowStatsArgs{acc, acc, rows, OC, lda, zcd.data(), a.scale,
                                              bias},
                                 parts[static_cast<size_t>(row0 / OW)], nullptr, row0, 0);
                        });
    for (int64_t c = 0; c < OC; ++c) a.limit_counts[c] = 0;
    return finish(parts);
  }
  const PackedB& b0 = *w.groups[0];
  const int64_t Kp = b0.Kp, K = w.K(), panels = b0.Np / kPanel, HW = s.H * s.W;
  const bool direct = nhwc_direct_rows(s, w);
  const int64_t block = nhwc_row_block(Kp);
  const int64_t blocks = (M + block - 1) / block;
  const uint8_t* nhwc = x;
  thread_local std::vector<uint8_t> xt;
  if (!x_nhwc) {
    uint8_t* t = grown(xt, static_cast<size_t>(s.N * HW * s.C));
    parallel_for(s.N, [&](int64_t n) {
      transpose2d(x + n * s.C * HW, s.C, HW, HW, t + n * HW * s.C, s.C);
    });
    nhwc = t;
  }
  const bool odd_tap = s.group == 1 && w.Cpad == w.Cg + 1;
  const uint8_t* nhwc_end = nhwc + s.N * HW * s.C;
  parts.resize(static_cast<size_t>(blocks * s.group));
  std::vector<int64_t> counts(static_cast<size_t>(blocks * OC), 0);
  auto run = [&](int64_t i) {
    thread_local std::vector<int32_t> tbuf, bbuf;
    thread_local std::vector<uint8_t> cols_buf;
    thread_local std::vector<double> d2buf;
    const int64_t row0 = i * block, rows = std::min(block, M - row0);
    int32_t* target = grown(tbuf, static_cast<size_t>(block * OCg));
    int32_t* base = grown(bbuf, static_cast<size_t>(block * OCg));
    double* d2 = grown(d2buf, static_cast<size_t>(OCg));
    uint8_t* cols = direct ? nullptr : grown(cols_buf, static_cast<size_t>(block * Kp));
    for (int64_t g = 0; g < s.group; ++g) {
      const uint8_t* arows = nhwc + row0 * s.C;
      int64_t lda = s.C;
      if (!direct) {
        if (odd_tap)
          im2col_odd_tap(nhwc, nhwc_end, s, x_zp, row0, rows, cols, Kp);
        else
          im2col_nhwc(nhwc, s, w, g, x_zp, row0, rows, cols, Kp);
        if (Kp > K)
          for (int64_t m = 0; m < rows; ++m) std::memset(cols + m * Kp + K, 0, Kp - K);
        arows = cols;
        lda = Kp;
      }
      kernel(GemmTile{arows, lda, rows, w.groups[g].get(), 0, panels,
                      a.base_is_exact ? target : base, OCg},
             a.base_is_exact ? base : target, counts.data() + i * OC + g * OCg);
      reduce(RowStatsArgs{target, base, rows, OCg, OCg, zcd.data() + g * OCg, a.scale + g * OCg,
                          bias ? bias + g * OCg : nullptr},
             parts[static_cast<size_t>(i * s.group + g)], d2, row0, g * OCg);
    }
  };
  const double work = 2.0 * double(M) * double(OC) * double(K);
  if (num_threads() > 1 && blocks > 1 && work > 2e6)
    parallel_for(blocks, run);
  else
    for (int64_t i = 0; i < blocks; ++i) run(i);
  sum_counts(counts, blocks, OC, a.limit_counts);
  return finish(parts);
}

}  // namespace fastq
