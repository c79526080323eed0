// One separable Resize pass along one axis (see nn_f32.h). The Python side builds the
// per-output (index, weight) tap tables for every mode (nearest, linear, cubic, antialias,
// exclude_outside); this applies them. Inner rows are combined whole, so the loop over
// `inner` is unit-stride and vectorizes; the last axis (inner == 1) is a short dot per output.
#include "fastq/nn_f32.h"

namespace fastq {
namespace nn {

template <typename T>
void resize_axis(const T* x, int64_t outer, int64_t n_in, int64_t inner, const int64_t* idx,
                 const T* w, int64_t n_out, int64_t taps, T* y) {
  const int64_t min_chunk = inner >= 64 ? 1 : 256;
  parallel_chunks(outer * n_out, min_chunk, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t o = u / n_out, j = u % n_out;
      const T* src = x + o * n_in * inner;
      const int64_t* ij = idx + j * taps;
      const T* wj = w + j * taps;
      T* dst = y + u * inner;
      if (inner == 1) {
        T acc = 0;
        for (int64_t t = 0; t < taps; ++t) acc += wj[t] * src[ij[t]];
        *dst = acc;
        continue;
      }
      const T w0 = wj[0];
      const T* s0 = src + ij[0] * inner;
      for (int64_t i = 0; i < inner; ++i) dst[i] = w0 * s0[i];
      for (int64_t t = 1; t < taps; ++t) {
        const T wt = wj[t];
        const T* st = src + ij[t] * inner;
        for (int64_t i = 0; i < inner; ++i) dst[i] += wt * st[i];
      }
    }
  });
}

template void resize_axis<float>(const float*, int64_t, int64_t, int64_t, const int64_t*,
                                 const float*, int64_t, int64_t, float*);
template void resize_axis<double>(const double*, int64_t, int64_t, int64_t, const int64_t*,
                                  const double*, int64_t, int64_t, double*);

}  // namespace nn
}  // namespace fastq
