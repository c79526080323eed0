// The saturation analysis' error reduction over a block of output rows (satstats.h), as one
// plain C++ body compiled three times: portable (ref/satstats_ref.cpp), with AVX2 flags and
// with AVX-512 flags. The float sums use a fixed order -- the signal in 16 lanes by c % 16,
// row by row, then a fixed tree; d^2 per channel in row order -- which the compilers
// vectorize without reassociating (no -ffast-math), so every build gives the same bits.
// A run of 16 channels whose target sums equal its base sums skips the difference work (a
// difference of 0 adds exactly nothing); target == base (same pointer) skips the comparison.
#pragma once
#include <algorithm>

#include "fastq/satstats.h"

namespace fastq {
namespace {  // NOLINT: deliberate, one copy per including object library

// The difference figures of channels [c0, c0 + n) of one row (d = t - b).
inline void diff_run(const int32_t* t, const int32_t* b, int64_t c0, int64_t n, double* d2,
                     int64_t& changed, int64_t& max_abs, int64_t& sum_abs) {
  for (int64_t c = c0; c < c0 + n; ++c) {
    const int64_t d = int64_t(t[c]) - int64_t(b[c]);
    const int64_t ad = d < 0 ? -d : d;
    changed += d != 0;
    max_abs = std::max(max_abs, ad);
    sum_abs += ad;
    const double dd = static_cast<double>(t[c]) - static_cast<double>(b[c]);  // exact
    d2[c] += dd * dd;
  }
}

// HasBias false: the bias is absent, and y = v * scale (+ 0.0 in acc_error_stats) has the
// same square (only the sign of a zero differs), so the add is left out.
template <bool HasBias>
inline void row_stats_impl(const RowStatsArgs& a, RowStats& p, double* d2) {
  const int64_t C = a.C, full = C - C % kStatLanes;
  const double* zc = a.zc;
  const double* sc = a.scale;
  const double* bi = a.bias;
  const bool same = a.target == a.base;
  double sig[kStatLanes];
  for (int l = 0; l < kStatLanes; ++l) sig[l] = p.sig[l];
  bool any = false;
  int64_t changed = 0, max_abs = p.max_abs, sum_abs = 0;
  for (int64_t m = 0; m < a.rows; ++m) {
    const int32_t* b = a.base + m * a.ld;
    const int32_t* t = a.target + m * a.ld;
    // y = (acc - zc[c]) * scale[c] + bias[c]: double(acc) - zc is exact (both integers
    // below 2^53), so this is acc_error_stats' double(int64(acc) - zc) bit for bit. A run
    // of 16 channels whose target equals its base adds exactly nothing to the difference
    // figures (d = 0), so only runs that differ take that work.
    for (int64_t c0 = 0; c0 < full; c0 += kStatLanes) {
      int32_t diff = 0;
      for (int l = 0; l < kStatLanes; ++l) {
        double y = (static_cast<double>(b[c0 + l]) - zc[c0 + l]) * sc[c0 + l];
        if constexpr (HasBias) y += bi[c0 + l];
        sig[l] += y * y;
        if (!same) diff |= t[c0 + l] ^ b[c0 + l];
      }
      if (diff != 0) {
        any = true;
        diff_run(t, b, c0, kStatLanes, d2, changed, max_abs, sum_abs);
      }
    }
    int32_t diff = 0;
    for (int64_t c = full; c < C; ++c) {
      double y = (static_cast<double>(b[c]) - zc[c]) * sc[c];
      if constexpr (HasBias) y += bi[c];
      sig[c - full] += y * y;
      if (!same) diff |= t[c] ^ b[c];
    }
    if (diff != 0) {
      any = true;
      diff_run(t, b, full, C - full, d2, changed, max_abs, sum_abs);
    }
  }
  for (int l = 0; l < kStatLanes; ++l) p.sig[l] = sig[l];
  p.changed += changed;
  p.max_abs = max_abs;
  p.sum_abs += sum_abs;
  if (any) {  // this block's noise: per channel sum d^2 * scale^2, then d2 is zero again
    double nz = 0;
    for (int64_t c = 0; c < C; ++c) {
      nz += d2[c] * sc[c] * sc[c];
      d2[c] = 0;
    }
    p.noise += nz;
  }
}

inline void row_stats_body(const RowStatsArgs& a, RowStats& p, double* d2) {
  if (a.bias)
    row_stats_impl<true>(a, p, d2);
  else
    row_stats_impl<false>(a, p, d2);
}

}  // namespace
}  // namespace fastq
