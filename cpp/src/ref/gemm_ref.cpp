// Scalar reference GEMM: the specification of both arithmetics (DESIGN.md section 3).
//   exact32:   C[m][n] = sum_{k=0}^{K-1} A[m][k] * B[k][n]            (exact in s32)
//   sat16pair: C[m][n] = sum_{j} sat16(A[m][2j]*B[2j][n] + A[m][2j+1]*B[2j+1][n])
//              pairs (0,1), (2,3), ...; an odd K is padded with one zero; sat16 clamps to
//              [-32768, 32767]; the clamped pair sums are added exactly in s32.
// Reads B through the packed layout of gemm.h; plain loops, no vector tricks on purpose.
#include <algorithm>

#include "fastq/gemm.h"

namespace fastq {
namespace {

inline int32_t packed_at(const PackedB& b, int64_t k, int64_t n) {
  const int8_t* panel = b.panel(n / kPanel);
  return panel[(k / kGroup) * kPanel * kGroup + (n % kPanel) * kGroup + k % kGroup];
}

inline int32_t sat16(int32_t v) { return std::min(32767, std::max(-32768, v)); }

template <Arith A>
void gemm_ref(const GemmTile& t) {
  const PackedB& b = *t.b;
  const int64_t n_end = std::min(t.p1 * kPanel, b.N);
  for (int64_t m = 0; m < t.m; ++m) {
    const uint8_t* a = t.a + m * t.lda;
    for (int64_t n = t.p0 * kPanel; n < n_end; ++n) {
      int32_t acc = 0;
      if (A == Arith::Exact32) {
        for (int64_t k = 0; k < b.K; ++k) acc += int32_t(a[k]) * packed_at(b, k, n);
      } else {
        for (int64_t k = 0; k < b.K; k += 2) {
          int32_t pair = int32_t(a[k]) * packed_at(b, k, n);
          if (k + 1 < b.K) pair += int32_t(a[k + 1]) * packed_at(b, k + 1, n);
          acc += sat16(pair);
        }
      }
      t.c[m * t.ldc + n] = acc;
    }
  }
}

}  // namespace

void gemm_u8s8_exact32_ref(const GemmTile& t) { gemm_ref<Arith::Exact32>(t); }
void gemm_u8s8_sat16pair_ref(const GemmTile& t) { gemm_ref<Arith::Sat16Pair>(t); }

}  // namespace fastq
