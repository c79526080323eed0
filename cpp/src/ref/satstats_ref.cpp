// Portable build of the row-block error reduction (satstats.h, satstats_body.h) -- the
// reference the AVX2 / AVX-512 builds are tested equal to -- and RowStats' fixed-order merge.
#include "fastq/satstats_body.h"

namespace fastq {

void RowStats::merge(const RowStats& o) {
  for (int l = 0; l < kStatLanes; ++l) sig[l] += o.sig[l];
  changed += o.changed;
  max_abs = o.max_abs > max_abs ? o.max_abs : max_abs;
  sum_abs += o.sum_abs;
  noise += o.noise;
}

double RowStats::signal() const {
  double v[kStatLanes];
  for (int l = 0; l < kStatLanes; ++l) v[l] = sig[l];
  for (int w = kStatLanes / 2; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) v[l] = v[2 * l] + v[2 * l + 1];
  return v[0];
}

void row_stats_ref(const RowStatsArgs& a, RowStats& p, double* d2) { row_stats_body(a, p, d2); }

}  // namespace fastq
