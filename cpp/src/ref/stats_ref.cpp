// Scalar reference statistics kernels: the spec the SIMD kernels must reproduce exactly.
// Portable C++ only (baseline x86-64, no intrinsics). Non-finite detection: |x| <= FLT_MAX
// is false exactly for NaN and +-Inf. The sum uses the 16-lane order stats.h fixes, so the
// SIMD sums are bit-identical; min/max/abs-max are order independent.
#include <cfloat>
#include <cmath>
#include <vector>

#include "fastq/stats.h"
#include "fastq/stats_rows_body.h"

namespace fastq {
namespace {

inline bool nonfinite(float x) { return !(std::fabs(x) <= FLT_MAX); }

bool minmax_ref(const float* p, int64_t n, float* mn, float* mx) {
  float a = *mn, b = *mx;
  bool nf = false;
  for (int64_t i = 0; i < n; ++i) {
    const float x = p[i];
    a = x < a ? x : a;
    b = x > b ? x : b;
    nf |= nonfinite(x);
  }
  *mn = a;
  *mx = b;
  return nf;
}

bool absmax_ref(const float* p, int64_t n, float* amax) {
  float m = *amax;
  bool nf = false;
  for (int64_t i = 0; i < n; ++i) {
    const float x = std::fabs(p[i]);
    m = x > m ? x : m;
    nf |= nonfinite(x);
  }
  *amax = m;
  return nf;
}

bool sum_ref(const float* p, int64_t n, double* s) {
  double lane[16] = {0};
  bool nf = false;
  for (int64_t i = 0; i < n; ++i) {
    lane[i & 15] += static_cast<double>(p[i]);
    nf |= nonfinite(p[i]);
  }
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) lane[j] = lane[j] + lane[j + w];
  *s += lane[0];
  return nf;
}

bool minmax_rows_ref(const float* p, int64_t rows, int64_t n, float* mn, float* mx) {
  return max_cols_scalar<false>(p, rows, n, 0, n, mn, mx);
}

bool absmax_rows_ref(const float* p, int64_t rows, int64_t n, float* amax) {
  return max_cols_scalar<true>(p, rows, n, 0, n, nullptr, amax);
}

bool sum_rows_ref(const float* p, int64_t rows, int64_t n, double* s) {
  return sum_cols_scalar(p, rows, n, 0, n, s);
}

bool hist_ref(const float* p, int64_t n, const HistParams& hp, uint32_t* counts) {
  const float* e = hp.edges;
  const int64_t bins = hp.bins;
  bool nf = false;
  for (int64_t i = 0; i < n; ++i) {
    const float x = p[i];
    nf |= nonfinite(x);
    int64_t b;
    if (x < e[0]) {
      b = bins;
    } else if (!(x <= e[bins])) {
      b = bins + 1;
    } else {  // in range: t is in [0, ~bins], so the conversion is defined
      const float t = (x - hp.lo) * hp.scale;
      b = hist_exact_bin(x, e, bins, static_cast<int64_t>(t));
    }
    ++counts[b];
  }
  return nf;
}

bool window_ref(const float* p, int64_t n, bool absval, float lo, float hi, WindowCounts* c,
                std::vector<float>* inside) {
  bool nf = false;
  int64_t lt = 0, gt = 0, el = 0, eh = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float x = absval ? std::fabs(p[i]) : p[i];
    nf |= nonfinite(x);
    if (x < lo) ++lt;
    else if (x > hi) ++gt;
    else if (x == lo) ++el;
    else if (x == hi) ++eh;
    else inside->push_back(x);
  }
  c->lt += lt;
  c->gt += gt;
  c->eq_lo += el;
  c->eq_hi += eh;
  return nf;
}

}  // namespace

const StatsKernels& stats_kernels_ref() {
  static const StatsKernels k = {minmax_ref,      absmax_ref,      sum_ref, minmax_rows_ref,
                                 absmax_rows_ref, sum_rows_ref,    hist_ref, window_ref};
  return k;
}

}  // namespace fastq
