// Driver of the saturation-analysis GEMM: the GEMM work split, with per-row-block column
// counts summed at the end in a fixed order, so totals never depend on the thread count.
#include "fastq/satcount.h"

#include <vector>

namespace fastq {

void gemm_u8s8_satcount(const uint8_t* a, int64_t M, int64_t lda, const PackedB& b,
                        int32_t* c_sat, int32_t* c_exact, int64_t* limit_counts, Impl impl) {
  SatCountKernel kernel = satcount_kernel(impl);
  const int64_t N = b.N, blocks = gemm_row_blocks(M);
  std::vector<int64_t> partial(static_cast<size_t>(std::max<int64_t>(blocks, 1) * N), 0);
  for_each_gemm_tile(a, M, lda, b, [&](const TileRange& r) {
    GemmTile t{r.a, r.lda, r.m, &b, r.p0, r.p1, c_sat + r.row0 * N, N};
    kernel(t, c_exact + r.row0 * N, partial.data() + r.row_block * N);
  });
  for (int64_t n = 0; n < N; ++n) limit_counts[n] = 0;
  for (int64_t rb = 0; rb < blocks; ++rb)
    for (int64_t n = 0; n < N; ++n) limit_counts[n] += partial[rb * N + n];
}

}  // namespace fastq
