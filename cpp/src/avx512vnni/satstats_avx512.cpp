// AVX-512 build of the row-block error reduction (satstats_body.h), 512-bit vectors: the
// 16 signal lanes are two zmm accumulators. Same float order as the portable build, same bits.
#include "fastq/satstats_body.h"

namespace fastq {
__attribute__((target("prefer-vector-width=512")))
void row_stats_avx512(const RowStatsArgs& a, RowStats& p, double* d2) {
  row_stats_body(a, p, d2);
}
}  // namespace fastq
