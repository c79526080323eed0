// Exact quantiles (numpy "linear" method, bit for bit) without sorting the tensor.
// Large inputs: select a window [lo, hi] of values around the wanted rank from a fixed,
// evenly spread sample, then one streaming pass counts x < lo, x > hi, x == lo, x == hi and
// keeps only lo < x < hi; the two neighbour ranks are then picked from that small buffer.
// The sample only decides speed, never the result: if a rank falls outside the window, the
// whole input is selected with nth_element instead (numpy's own algorithm, on a copy).
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "fastq/stats.h"

namespace fastq {
namespace {

constexpr int64_t kSampleBlock = 64;     // values per sampled block (4 cache lines)
constexpr int64_t kMaxBlocks = 512;      // at most 32768 sampled values
constexpr int64_t kLargeMin = 1 << 14;   // below this: copy + select

inline bool nonfinite(float x) { return !(std::fabs(x) <= FLT_MAX); }

// Values at ranks r0 and r1 = r0 or r0 + 1 of buf (which is reordered). buf is finite.
void select_in(std::vector<float>& buf, int64_t r0, int64_t r1, float* v0, float* v1) {
  std::nth_element(buf.begin(), buf.begin() + r0, buf.end());
  *v0 = buf[r0];
  *v1 = r1 == r0 ? *v0 : *std::min_element(buf.begin() + r0 + 1, buf.end());
}

// Copy (|x| when absval) and select; returns "non-finite seen" (then nothing is selected).
bool select_copy(const float* p, int64_t n, bool absval, int64_t r0, int64_t r1, float* v0,
                 float* v1) {
  std::vector<float> buf(p, p + n);
  bool nf = false;
  for (float& v : buf) {
    if (absval) v = std::fabs(v);
    nf |= nonfinite(v);
  }
  if (nf) return true;  // NaN breaks nth_element's strict weak ordering: never sort it
  select_in(buf, r0, r1, v0, v1);
  return false;
}

bool select_two(const float* p, int64_t n, bool absval, int64_t r0, int64_t r1, float* v0,
                float* v1, const StatsKernels& k) {
  if (n < kLargeMin) return select_copy(p, n, absval, r0, r1, v0, v1);
  // 1. An evenly spread sample of whole blocks (cache-friendly, deterministic), about 1/16
  //    of the data up to 32768 values.
  const int64_t blocks = std::min<int64_t>(kMaxBlocks, std::max<int64_t>(32, n / 1024));
  std::vector<float> sample;
  sample.reserve(blocks * kSampleBlock);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t s = (n - kSampleBlock) * b / (blocks - 1);
    for (int64_t i = 0; i < kSampleBlock; ++i) {
      const float v = absval ? std::fabs(p[s + i]) : p[s + i];
      if (nonfinite(v)) return true;
      sample.push_back(v);
    }
  }
  const int64_t m = static_cast<int64_t>(sample.size());
  // 2. Window of sample ranks around the wanted fraction, wide enough that the data's rank
  //    lands inside with overwhelming probability for block-correlated data too.
  const double f = static_cast<double>(r0) / static_cast<double>(n - 1);
  const double ks = f * static_cast<double>(m - 1);
  const int64_t d = static_cast<int64_t>(6.0 * std::sqrt(m * f * (1.0 - f))) + 64;
  const int64_t lo_rank = static_cast<int64_t>(std::floor(ks)) - d;
  const int64_t hi_rank = static_cast<int64_t>(std::ceil(ks)) + 1 + d;
  float lo = -FLT_MAX, hi = FLT_MAX;  // open-ended at the extremes: never misses a tail
  if (lo_rank > 0) {
    std::nth_element(sample.begin(), sample.begin() + lo_rank, sample.end());
    lo = sample[lo_rank];
  }
  if (hi_rank < m - 1) {
    std::nth_element(sample.begin(), sample.begin() + hi_rank, sample.end());
    hi = sample[hi_rank];
  }
  // 3. One streaming pass.
  WindowCounts c;
  std::vector<float> inside;
  const double frac = static_cast<double>(std::min(hi_rank, m - 1) - std::max<int64_t>(lo_rank, 0) + 1) / m;
  inside.reserve(static_cast<size_t>(frac * 1.25 * static_cast<double>(n)) + 1024);
  if (k.window(p, n, absval, lo, hi, &c, &inside)) return true;
  // 4. Locate the ranks: sorted data = [< lo][== lo][inside][== hi][> hi].
  const int64_t ni = static_cast<int64_t>(inside.size());
  auto segment = [&](int64_t r, float* v, int64_t* ri) -> int {  // 0 fail, 1 value, 2 inside
    if (r < c.lt) return 0;
    r -= c.lt;
    if (r < c.eq_lo) { *v = lo; return 1; }
    r -= c.eq_lo;
    if (r < ni) { *ri = r; return 2; }
    r -= ni;
    if (r < c.eq_hi) { *v = hi; return 1; }
    return 0;
  };
  int64_t i0 = 0, i1 = 0;
  const int s0 = segment(r0, v0, &i0), s1 = segment(r1, v1, &i1);
  if (s0 == 0 || s1 == 0) return select_copy(p, n, absval, r0, r1, v0, v1);
  if (s0 == 2 && s1 == 2) {
    select_in(inside, i0, i1, v0, v1);
  } else if (s0 == 2) {
    std::nth_element(inside.begin(), inside.begin() + i0, inside.end());
    *v0 = inside[i0];
  } else if (s1 == 2) {  // r1 = r0 + 1 is the smallest inside value
    *v1 = *std::min_element(inside.begin(), inside.end());
  }
  return false;
}

// numpy's _lerp with a Python-float gamma: float32 arithmetic, gamma rounded to float32.
float numpy_lerp(float a, float b, double g) {
  const float d = b - a;
  if (g >= 0.5) return b - d * static_cast<float>(1.0 - g);
  return a + d * static_cast<float>(g);
}

}  // namespace

bool quantile(const float* x, Layout3 s, double q, bool absval, float* out, Impl impl) {
  if (!(q >= 0.0 && q <= 1.0)) throw std::invalid_argument("quantile q must be in [0, 1]");
  const StatsKernels& k = stats_kernels(impl);
  const int64_t n = s.count_per_channel();
  if (n == 0) throw std::invalid_argument("quantile of an empty channel");
  // numpy: g = (n-1)*q; at or past the last index both neighbours are the last value and
  // gamma is computed against index -1 (so it is g + 1, and the t >= 0.5 branch is taken).
  const double g = static_cast<double>(n - 1) * q;
  int64_t r0, r1;
  double t;
  if (g >= static_cast<double>(n - 1)) {
    r0 = r1 = n - 1;
    t = g + 1.0;
  } else {
    const double fl = std::floor(g);
    r0 = static_cast<int64_t>(fl);
    r1 = r0 + 1;
    t = g - fl;
  }
  bool nf = false;
  std::vector<float> scratch;
  for (int64_t c = 0; c < s.C; ++c) {
    const float* p = x;
    if (s.C > 1 || s.outer > 1) {  // gather channel c's runs into one contiguous buffer
      scratch.resize(n);
      for (int64_t o = 0; o < s.outer; ++o)
        std::copy(x + (o * s.C + c) * s.inner, x + (o * s.C + c + 1) * s.inner,
                  scratch.begin() + o * s.inner);
      p = scratch.data();
    }
    float a = 0, b = 0;
    if (select_two(p, n, absval, r0, r1, &a, &b, k)) {
      nf = true;
      out[c] = NAN;
      continue;
    }
    out[c] = numpy_lerp(a, b, t);
  }
  return nf;
}

}  // namespace fastq
