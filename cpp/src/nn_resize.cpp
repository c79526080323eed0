// One separable Resize pass along one axis (see nn_f32.h). The Python side builds the
// per-output (index, weight) tap tables for every mode (nearest, linear, cubic, antialias,
// exclude_outside); this applies them. Inner rows are combined whole, so the loop over
// `inner` is unit-stride and vectorizes; the last axis (inner == 1) is a short dot per
// output, unrolled for the common tap counts (1 nearest, 2 linear, 4 cubic).
#include "fastq/nn_f32.h"

namespace fastq {
namespace nn {
namespace {

// Outputs [u0, u1) of the flattened (outer, n_out) grid, inner == 1. NT > 0 fixes the tap
// count at compile time; the sum order (t = 0, 1, ...) is the same either way.
template <typename T, int NT>
void last_axis(const T* x, int64_t n_in, const int64_t* idx, const T* w, int64_t n_out,
               int64_t taps_rt, int64_t u0, int64_t u1, T* y) {
  const int64_t taps = NT > 0 ? NT : taps_rt;
  int64_t o = u0 / n_out, j = u0 % n_out;
  const T* src = x + o * n_in;
  for (int64_t u = u0; u < u1; ++u) {
    const int64_t* ij = idx + j * taps;
    const T* wj = w + j * taps;
    T acc = wj[0] * src[ij[0]];
    for (int64_t t = 1; t < taps; ++t) acc += wj[t] * src[ij[t]];
    y[u] = acc;
    if (++j == n_out) {
      j = 0;
      src += n_in;
    }
  }
}

}  // namespace

template <typename T>
void resize_axis(const T* x, int64_t outer, int64_t n_in, int64_t inner, const int64_t* idx,
                 const T* w, int64_t n_out, int64_t taps, T* y) {
  if (inner == 1) {
    parallel_chunks(outer * n_out, min_items(taps), [&](int64_t u0, int64_t u1) {
      if (taps == 1) last_axis<T, 1>(x, n_in, idx, w, n_out, taps, u0, u1, y);
      else if (taps == 2) last_axis<T, 2>(x, n_in, idx, w, n_out, taps, u0, u1, y);
      else if (taps == 4) last_axis<T, 4>(x, n_in, idx, w, n_out, taps, u0, u1, y);
      else last_axis<T, 0>(x, n_in, idx, w, n_out, taps, u0, u1, y);
    });
    return;
  }
  parallel_chunks(outer * n_out, min_items(taps * inner), [&](int64_t u0, int64_t u1) {
    int64_t o = u0 / n_out, j = u0 % n_out;
    for (int64_t u = u0; u < u1; ++u) {
      const T* src = x + o * n_in * inner;
      const int64_t* ij = idx + j * taps;
      const T* wj = w + j * taps;
      T* dst = y + u * inner;
      const T w0 = wj[0];
      const T* s0 = src + ij[0] * inner;
      for (int64_t i = 0; i < inner; ++i) dst[i] = w0 * s0[i];
      for (int64_t t = 1; t < taps; ++t) {
        const T wt = wj[t];
        const T* st = src + ij[t] * inner;
        for (int64_t i = 0; i < inner; ++i) dst[i] += wt * st[i];
      }
      if (++j == n_out) {
        j = 0;
        ++o;
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
