// Statistics drivers: walk a tensor viewed as [outer, C, inner] and feed contiguous runs to
// the ISA's kernels (stats.h). Long inner runs (NCHW per-channel) are reduced run by run, so
// no transposition copy is made; short ones (channel-last) are folded row-wise into a
// C*inner accumulator. The stats kernel table is chosen here and nowhere else.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "fastq/cpu_features.h"
#include "fastq/stats.h"

namespace fastq {
namespace {
constexpr int64_t kRunMin = 16;          // inner runs shorter than this use the row kernels
constexpr int64_t kHistChunk = 1LL << 30;  // uint32 sub-counts never overflow per chunk
}  // namespace

const StatsKernels& stats_kernels(Impl impl) {
  const std::string missing = impl_missing_feature(impl);
  if (!missing.empty())
    throw std::invalid_argument(std::string("impl '") + impl_name(impl) +
                                "' cannot run on this CPU: missing " + missing);
  switch (impl) {
    case Impl::Ref: return stats_kernels_ref();
#if defined(FASTQ_HAVE_X86)
    case Impl::Avx2: return stats_kernels_avx2();
    case Impl::Avx512Vnni: return stats_kernels_avx512();
#else
    default: break;
#endif
  }
  throw std::invalid_argument(std::string("impl '") + impl_name(impl) + "' is not built");
}

bool reduce_minmax(const float* x, Layout3 s, float* mn, float* mx, Impl impl) {
  const StatsKernels& k = stats_kernels(impl);
  const float inf = std::numeric_limits<float>::infinity();
  std::fill(mn, mn + s.C, inf);
  std::fill(mx, mx + s.C, -inf);
  bool nf = false;
  if (s.inner >= kRunMin) {
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t c = 0; c < s.C; ++c)
        nf |= k.minmax(x + (o * s.C + c) * s.inner, s.inner, &mn[c], &mx[c]);
    return nf;
  }
  const int64_t row = s.C * s.inner;
  std::vector<float> bmn(row, inf), bmx(row, -inf);
  nf |= k.minmax_rows(x, s.outer, row, bmn.data(), bmx.data());
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t i = 0; i < s.inner; ++i) {
      const float a = bmn[c * s.inner + i], b = bmx[c * s.inner + i];
      mn[c] = a < mn[c] ? a : mn[c];
      mx[c] = b > mx[c] ? b : mx[c];
    }
  return nf;
}

bool reduce_absmax(const float* x, Layout3 s, float* amax, Impl impl) {
  const StatsKernels& k = stats_kernels(impl);
  const float ninf = -std::numeric_limits<float>::infinity();
  std::fill(amax, amax + s.C, ninf);
  bool nf = false;
  if (s.inner >= kRunMin) {
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t c = 0; c < s.C; ++c)
        nf |= k.absmax(x + (o * s.C + c) * s.inner, s.inner, &amax[c]);
    return nf;
  }
  const int64_t row = s.C * s.inner;
  std::vector<float> b(row, ninf);
  nf |= k.absmax_rows(x, s.outer, row, b.data());
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t i = 0; i < s.inner; ++i) {
      const float v = b[c * s.inner + i];
      amax[c] = v > amax[c] ? v : amax[c];
    }
  return nf;
}

bool reduce_sum(const float* x, Layout3 s, double* sum, Impl impl) {
  const StatsKernels& k = stats_kernels(impl);
  std::fill(sum, sum + s.C, 0.0);
  bool nf = false;
  if (s.inner >= kRunMin) {
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t c = 0; c < s.C; ++c)
        nf |= k.sum(x + (o * s.C + c) * s.inner, s.inner, &sum[c]);
    return nf;
  }
  const int64_t row = s.C * s.inner;
  std::vector<double> b(row, 0.0);
  nf |= k.sum_rows(x, s.outer, row, b.data());
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t i = 0; i < s.inner; ++i) sum[c] += b[c * s.inner + i];
  return nf;
}

bool histogram(const float* x, int64_t n, const float* edges, int64_t bins, int64_t* counts,
               Impl impl) {
  if (bins < 1) throw std::invalid_argument("histogram needs bins >= 1");
  for (int64_t i = 0; i < bins; ++i)
    if (!(edges[i] <= edges[i + 1]))
      throw std::invalid_argument("histogram edges must be finite and non-decreasing");
  const StatsKernels& k = stats_kernels(impl);
  HistParams hp;
  hp.edges = edges;
  hp.bins = bins;
  hp.lo = edges[0];
  const double lo = edges[0], hi = edges[bins];
  const double w = (hi - lo) / static_cast<double>(bins);
  hp.scale = w > 0 ? static_cast<float>(1.0 / w) : 0.0f;
  // The fast path trusts floor(t1), t1 = fma(x, S, O) with S = fl(1/w), O = fl(1 - fl(lo*S)),
  // only away from slot boundaries. In bin units, against T(x) = (x - lo)/w + 1:
  //   t1 - T(x) = (x - lo)(S - 1/w) - e_p + e_s + e_fma, where |x - lo|/w <= bins near the
  //   boundaries that matter, |S - 1/w| <= 2^-24/w, |e_p| <= (|lo|/w) 2^-24 (lo*S rounded),
  //   |e_s| <= (1 + |lo|/w) 2^-24 (1 - p rounded), |e_fma| <= (bins + 2) 2^-24;
  // so |t1 - T| <= delta = 2^-24 (2 bins + 3 + 2|lo|/w). The true boundary of slot i+1 sits
  // at T(e_i) = i + 1 + d_i with |d_i| <= dev, the edges' largest distance from the ideal
  // grid (float32 linspace rounding, or a caller's uneven edges). So floor(t1) is the slot
  // whenever frac(t1) is at least delta + dev from an integer; eps takes 1.5x that. Past a
  // quarter bin, trust nothing.
  double eps = 1.0;
  if (w > 0 && std::isfinite(w)) {
    double dev = 0.0;
    for (int64_t i = 1; i < bins; ++i)
      dev = std::max(dev, std::fabs((static_cast<double>(edges[i]) - lo) / w - i));
    const double delta = std::ldexp(2.0 * bins + 3.0 + 2.0 * std::fabs(lo) / w, -24);
    eps = 1.5 * (delta + dev) + 1e-7;
    if (eps > 0.25) eps = 1.0;
  }
  hp.eps = static_cast<float>(eps);
  std::vector<uint32_t> part(bins + 2);
  bool nf = false;
  for (int64_t start = 0; start < n; start += kHistChunk) {
    std::fill(part.begin(), part.end(), 0u);
    nf |= k.hist(x + start, std::min(kHistChunk, n - start), hp, part.data());
    for (int64_t i = 0; i < bins + 2; ++i) counts[i] += part[i];
  }
  return nf;
}

}  // namespace fastq
