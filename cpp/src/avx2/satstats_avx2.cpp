// AVX2 build of the row-block error reduction (satstats_body.h): the compiler vectorizes the
// 16 signal lanes and the per-channel difference loop; the order of every float sum is the
// body's, so the bits equal the portable build's.
#include "fastq/satstats_body.h"

namespace fastq {
void row_stats_avx2(const RowStatsArgs& a, RowStats& p, double* d2) { row_stats_body(a, p, d2); }
}  // namespace fastq
