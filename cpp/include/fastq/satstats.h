// The saturation analysis' per-output error reduction over row blocks of raw sums laid out
// [rows, C] (row stride ld): with y = (acc - zc[c]) * scale[c] (+ bias[c]) in double,
//   changed += #(target != base), max_abs = max |target - base|, sum_abs += sum |t - b|
//   (int64, exact), sig[c % 16] += y(base)^2 row by row, and per block noise += sum over c of
//   (sum over the block's rows of (t - b)^2) * scale[c]^2.
// The float sums' order is fixed by this contract (not by the build), so the ref, avx2 and
// avx512vnni builds (satstats_body.h) agree bit for bit; signal() reduces the 16 lanes.
#pragma once
#include <cstdint>

#include "fastq/gemm.h"
#include "fastq/types.h"

namespace fastq {

constexpr int kStatLanes = 16;

struct RowStats {
  double sig[kStatLanes] = {};
  int64_t changed = 0, max_abs = 0, sum_abs = 0;
  double noise = 0;
  // lane-wise (blocks merged in a fixed order give results independent of the thread count)
  void merge(const RowStats& o);
  double signal() const;  // ((l0 + l1) + (l2 + l3)) + ... : a fixed pairwise tree
};

struct RowStatsArgs {
  const int32_t* target;
  const int32_t* base;  // may equal target (nothing can differ: only the signal is summed)
  int64_t rows, C, ld;
  const double* zc;     // C entries each; zc holds integers below 2^53 in magnitude
  const double* scale;
  const double* bias;   // nullptr when the layer has none
};

// d2: C doubles, all zero on entry and on return (per-channel d^2 of the block).
void row_stats_ref(const RowStatsArgs& a, RowStats& p, double* d2);
void row_stats_avx2(const RowStatsArgs& a, RowStats& p, double* d2);
void row_stats_avx512(const RowStatsArgs& a, RowStats& p, double* d2);

// row_stats and requantize_rows of the base sums in one pass (AVX-512 only): the same
// figures as row_stats_avx512 and the same bytes as requantize_rows, written as gemm.h's
// RequantStore says (z32: zcomp as wrapped int32, one entry per channel).
void row_stats_requant_avx512(const RowStatsArgs& a, RowStats& p, double* d2,
                              const RequantStore& q);

using RowStatsFn = void (*)(const RowStatsArgs&, RowStats&, double*);
// Dispatch (dispatch.cpp): ref everywhere, avx2 / avx512vnni where the CPU runs them.
RowStatsFn row_stats_kernel(Impl impl);

}  // namespace fastq
