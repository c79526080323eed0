// Cache-blocked 2-D transpose for the drivers' layout changes (NCHW <-> NHWC, GEMM rows ->
// NCHW planes): dst[c * dst_ld + r] = src[r * src_ld + c] for r < rows, c < cols. Blocks of
// 16 x 16 keep both the reads and the strided writes inside a few cache lines.
#pragma once
#include <algorithm>
#include <cstdint>

namespace fastq {

template <class T>
void transpose2d(const T* src, int64_t rows, int64_t cols, int64_t src_ld, T* dst,
                 int64_t dst_ld) {
  constexpr int64_t kB = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kB) {
    const int64_t r1 = std::min(rows, r0 + kB);
    for (int64_t c0 = 0; c0 < cols; c0 += kB) {
      const int64_t c1 = std::min(cols, c0 + kB);
      for (int64_t c = c0; c < c1; ++c) {
        T* d = dst + c * dst_ld;
        for (int64_t r = r0; r < r1; ++r) d[r] = src[r * src_ld + c];
      }
    }
  }
}

}  // namespace fastq
