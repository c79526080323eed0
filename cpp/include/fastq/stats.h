// Calibration statistics: streaming reductions of float32 tensors viewed as [outer, C, inner]
// (C-contiguous; per-tensor is C = 1), exact quantiles and fixed-range histograms.
// Contract: every function reads the data once where the math allows, never allocates more
// than O(C * inner) (reductions) or O(bins) (histograms) except quantile's selection buffer,
// and reports whether any element was NaN/+-Inf (results are then unspecified; callers raise).
// Every Impl returns exactly what Impl::Ref returns (min/max: up to the sign of a zero).
#pragma once
#include <cstdint>
#include <vector>

#include "fastq/types.h"

namespace fastq {

// x viewed as [outer, C, inner], C-contiguous.
struct Layout3 {
  int64_t outer = 1, C = 1, inner = 0;
  int64_t count_per_channel() const { return outer * inner; }
};

// ---- reductions (per channel; C = 1 for the whole tensor) ----------------------------------
// Each returns true iff some element is not finite. Outputs have C entries and are
// overwritten; a channel with no elements gives +inf / -inf / 0.
bool reduce_minmax(const float* x, Layout3 s, float* mn, float* mx, Impl impl);
bool reduce_absmax(const float* x, Layout3 s, float* amax, Impl impl);
// Sum in double (fixed summation order, identical across impls).
bool reduce_sum(const float* x, Layout3 s, double* sum, Impl impl);

// ---- quantiles ---------------------------------------------------------------------------
// numpy.quantile(v, q, method="linear") for a Python-float q, bit for bit, where v is the
// channel's values (or their absolute values when absval): virtual index g = (n-1)*q in
// double, neighbours a = v_(floor g), b = v_(floor g + 1) (both v_(n-1) when g >= n-1),
// t = g - floor g; result = a + (b-a)*float(t), or b - (b-a)*float(1-t) when t >= 0.5, in
// float32 arithmetic. Exact selection (not an approximation): see stats_quantile.cpp. (When
// -0.0 and 0.0 both occur, which of the equal zeros is selected is unspecified, as in numpy.)
bool quantile(const float* x, Layout3 s, double q, bool absval, float* out, Impl impl);

// ---- histograms --------------------------------------------------------------------------
// Bins are [e_i, e_{i+1}) for i < bins-1 and [e_{bins-1}, e_bins] (last bin closed), with
// the float32 edges given by the caller (numpy.histogram's linspace edges). The bin of x is
// decided by comparisons with the edges only (as numpy's corrected index is), so counts are
// exact. counts has bins + 2 entries: [bins] counts x < e_0, [bins+1] counts x > e_bins
// (and NaN). Counts are added to (not overwritten).
bool histogram(const float* x, int64_t n, const float* edges, int64_t bins, int64_t* counts,
               Impl impl);

// ---- kernel table (one per ISA; chosen only in stats.cpp) --------------------------------
struct HistParams {
  const float* edges;  // bins + 1 float32 edges, non-decreasing
  int64_t bins;
  float lo;      // edges[0]
  float scale;   // bins / (edges[bins] - edges[0]), rounded to float
  float eps;     // fast paths trust floor(t) only when frac(t) is in [eps, 1-eps]; >= 0.5: never
};

// The exact bin of x: the spec every histogram kernel implements (bins = under, bins+1 =
// over or NaN). `guess` is any starting index in [0, bins-1].
inline int64_t hist_exact_bin(float x, const float* e, int64_t bins, int64_t guess) {
  if (x < e[0]) return bins;
  if (!(x <= e[bins])) return bins + 1;  // above the top edge, or NaN
  int64_t i = guess < 0 ? 0 : (guess > bins - 1 ? bins - 1 : guess);
  while (i > 0 && x < e[i]) --i;
  while (i < bins - 1 && x >= e[i + 1]) ++i;
  return i;
}

struct WindowCounts {
  int64_t lt = 0, gt = 0, eq_lo = 0, eq_hi = 0;  // x < lo, x > hi, x == lo, x == hi (!= lo)
};

struct StatsKernels {
  // One contiguous run of n floats folded into one accumulator; returns "any non-finite".
  bool (*minmax)(const float* p, int64_t n, float* mn, float* mx);
  bool (*absmax)(const float* p, int64_t n, float* amax);
  // Sum in double over 16 lanes: lane j takes elements i = j (mod 16); lanes are combined as
  // l[j] + l[j+8], then +4, +2, +1 halvings; the total is added to *s.
  bool (*sum)(const float* p, int64_t n, double* s);
  // Element-wise fold of `rows` consecutive rows of n floats (row stride n) into n
  // accumulators (short inner runs): accumulator i takes p[r * n + i] for r = 0, 1, ... in
  // that order (the sums' order; min/max are order free). The vector builds keep a block of
  // accumulators in registers over all rows instead of a load and store per row.
  bool (*minmax_rows)(const float* p, int64_t rows, int64_t n, float* mn, float* mx);
  bool (*absmax_rows)(const float* p, int64_t rows, int64_t n, float* amax);
  bool (*sum_rows)(const float* p, int64_t rows, int64_t n, double* s);
  // Adds the bin of every element to counts (bins + 2 entries, uint32: n < 2^32).
  bool (*hist)(const float* p, int64_t n, const HistParams& hp, uint32_t* counts);
  // Quantile window pass: counts x < lo, x > hi, x == lo, x == hi and appends every x with
  // lo < x < hi to `inside` (in any order). x is |x| when absval.
  bool (*window)(const float* p, int64_t n, bool absval, float lo, float hi, WindowCounts* c,
                 std::vector<float>* inside);
};

const StatsKernels& stats_kernels_ref();
#if defined(FASTQ_HAVE_X86)
const StatsKernels& stats_kernels_avx2();
const StatsKernels& stats_kernels_avx512();
#endif
// The table for `impl`; throws std::invalid_argument naming the missing CPU feature.
const StatsKernels& stats_kernels(Impl impl);

}  // namespace fastq
