// Scalar reference of satcount.h: per output, walk the pairs (k, k+1), add the exact pair
// sum to the exact32 accumulator, its int16-saturated value to the sat16pair accumulator,
// and count the pair when the saturated value sits on a limit.
#include <algorithm>

#include "fastq/satcount.h"

namespace fastq {

void gemm_u8s8_satcount_ref(const GemmTile& t, int32_t* c_exact, int64_t* counts) {
  const PackedB& b = *t.b;
  const int64_t n_end = std::min(t.p1 * kPanel, b.N);
  auto at = [&](int64_t k, int64_t n) -> int32_t {
    return b.panel(n / kPanel)[(k / kGroup) * kPanel * kGroup + (n % kPanel) * kGroup + k % kGroup];
  };
  for (int64_t n = t.p0 * kPanel; n < n_end; ++n) {
    int64_t limit = 0;
    for (int64_t m = 0; m < t.m; ++m) {
      const uint8_t* a = t.a + m * t.lda;
      int32_t sat = 0, exact = 0;
      for (int64_t k = 0; k < b.K; k += 2) {
        int32_t pair = int32_t(a[k]) * at(k, n);
        if (k + 1 < b.K) pair += int32_t(a[k + 1]) * at(k + 1, n);
        const int32_t s = std::min(32767, std::max(-32768, pair));
        sat += s;
        exact += pair;
        limit += (s == 32767 || s == -32768);
      }
      t.c[m * t.ldc + n] = sat;
      c_exact[m * t.ldc + n] = exact;
    }
    counts[n] += limit;
  }
}

}  // namespace fastq
