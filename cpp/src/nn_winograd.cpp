// Winograd F(2x2, 3x3) transforms for 3x3 stride-1 2-D convolution (Lavin & Gray 2015):
// each 4x4 input tile d becomes V = B^T d B, each 3x3 filter g becomes U = G g G^T (in
// Python), the 16 products M[xi] = U[xi] @ V[xi] are batched BLAS GEMMs, and each 2x2 output
// tile is Y = A^T M A. 2.25x fewer multiplications than direct conv, at a small float error
// (the transforms only add, subtract and halve). Tiles walk the zero-padded input with stride
// 2; tile rows/cols past the output are computed and cropped.
#include <algorithm>
#include <vector>

#include "fastq/nn_f32.h"

namespace fastq {
namespace nn {

template <typename T>
void winograd_f23_input(const T* x, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw,
                        int64_t th, int64_t tw, T* v) {
  const int64_t T_ = th * tw, cs = C * T_;  // v: (16, C, tiles)
  const int64_t L = 2 * tw + 2;               // padded row span of one row of tiles
  parallel_chunks(C, min_items(16 * T_), [&](int64_t c0, int64_t c1) {
    std::vector<T> rows(static_cast<size_t>(4 * L)), blk(static_cast<size_t>(16 * tw));
    for (int64_t c = c0; c < c1; ++c) {
      const T* xc = x + c * H * W;
      for (int64_t i = 0; i < th; ++i) {
        // The 4 zero-padded input rows under tile row i; then every tile of the row at
        // once, as unit-stride loops over j (d[r][q] of tile j is rows[r][2j + q]).
        for (int r = 0; r < 4; ++r) {
          T* dst = rows.data() + r * L;
          std::fill(dst, dst + L, T(0));
          const int64_t h = 2 * i + r - ph;
          if (h < 0 || h >= H) continue;
          const int64_t w0 = std::max<int64_t>(0, pw), w1 = std::min<int64_t>(L, W + pw);
          if (w1 > w0) std::copy(xc + h * W + (w0 - pw), xc + h * W + (w1 - pw), dst + w0);
        }
        const T* r0 = rows.data();
        const T* r1 = r0 + L;
        const T* r2 = r1 + L;
        const T* r3 = r2 + L;
        // Results go to a local (16, tw) block first, then out row by row: the 16 planes of
        // v are C*tiles apart, often a multiple of 4 KiB, and 16 interleaved store streams
        // at that stride thrash the L1 sets.
        T* o = blk.data();
        for (int64_t j = 0; j < tw; ++j) {
          T t[4][4];  // B^T d, column q
          for (int q = 0; q < 4; ++q) {
            const int64_t k = 2 * j + q;
            t[0][q] = r0[k] - r2[k];
            t[1][q] = r1[k] + r2[k];
            t[2][q] = r2[k] - r1[k];
            t[3][q] = r1[k] - r3[k];
          }
          for (int r = 0; r < 4; ++r) {  // (B^T d) B
            o[(r * 4 + 0) * tw + j] = t[r][0] - t[r][2];
            o[(r * 4 + 1) * tw + j] = t[r][1] + t[r][2];
            o[(r * 4 + 2) * tw + j] = t[r][2] - t[r][1];
            o[(r * 4 + 3) * tw + j] = t[r][1] - t[r][3];
          }
        }
        for (int64_t e = 0; e < 16; ++e)
          std::copy(o + e * tw, o + (e + 1) * tw, v + e * cs + c * T_ + i * tw);
      }
    }
  });
}

template <typename T>
void winograd_f23_output(const T* m, int64_t M, int64_t th, int64_t tw, int64_t oH, int64_t oW,
                         const T* bias, T* y) {
  const int64_t T_ = th * tw, ms = M * T_;  // m: (16, M, tiles)
  parallel_chunks(M, min_items(16 * T_), [&](int64_t m0, int64_t m1) {
    std::vector<T> out(static_cast<size_t>(4 * tw));  // two output rows of 2*tw
    std::vector<T> blk(static_cast<size_t>(16 * tw));
    for (int64_t k = m0; k < m1; ++k) {
      const T b = bias ? bias[k] : T(0);
      T* yk = y + k * oH * oW;
      for (int64_t i = 0; i < th; ++i) {
        // Gather the 16 planes' rows locally first (see the input transform on L1 sets).
        for (int64_t e = 0; e < 16; ++e)
          std::copy(m + e * ms + k * T_ + i * tw, m + e * ms + k * T_ + (i + 1) * tw,
                    blk.data() + e * tw);
        const T* s = blk.data();
        T* y0 = out.data();
        T* y1 = y0 + 2 * tw;
        for (int64_t j = 0; j < tw; ++j) {
          T t[2][4];  // A^T e
          for (int q = 0; q < 4; ++q) {
            const T e0 = s[(0 + q) * tw + j], e1 = s[(4 + q) * tw + j];
            const T e2 = s[(8 + q) * tw + j], e3 = s[(12 + q) * tw + j];
            t[0][q] = e0 + e1 + e2;
            t[1][q] = e1 - e2 - e3;
          }
          y0[2 * j] = t[0][0] + t[0][1] + t[0][2] + b;
          y0[2 * j + 1] = t[0][1] - t[0][2] - t[0][3] + b;
          y1[2 * j] = t[1][0] + t[1][1] + t[1][2] + b;
          y1[2 * j + 1] = t[1][1] - t[1][2] - t[1][3] + b;
        }
        std::copy(y0, y0 + oW, yk + (2 * i) * oW);
        if (2 * i + 1 < oH) std::copy(y1, y1 + oW, yk + (2 * i + 1) * oW);
      }
    }
  });
}

template void winograd_f23_input<float>(const float*, int64_t, int64_t, int64_t, int64_t,
                                        int64_t, int64_t, int64_t, float*);
template void winograd_f23_input<double>(const double*, int64_t, int64_t, int64_t, int64_t,
                                         int64_t, int64_t, int64_t, double*);
template void winograd_f23_output<float>(const float*, int64_t, int64_t, int64_t, int64_t,
                                         int64_t, const float*, float*);
template void winograd_f23_output<double>(const double*, int64_t, int64_t, int64_t, int64_t,
                                          int64_t, const double*, double*);

}  // namespace nn
}  // namespace fastq
