// Portable drivers of the element-wise float kernels (nn_eltwise.h): split the work over the
// thread pool in chunks whose results do not depend on the split, then run the impl's build
// of the shared body (nn_eltwise_body.h).
#include "fastq/nn_eltwise.h"

#include "fastq/nn_eltwise_body.h"
#include "fastq/nn_f32.h"

namespace fastq {
namespace nn {

template <typename T>
void bias_act(T* y, int64_t planes, int64_t C, int64_t inner, const T* bias, T lo, T hi,
              Impl impl) {
  parallel_chunks(planes, min_items(inner), [&](int64_t p0, int64_t p1) {
#if defined(FASTQ_HAVE_X86)
    if (impl != Impl::Ref) return bias_act_avx2(y, p0, p1, C, inner, bias, lo, hi);
#endif
    (void)impl;
    bias_act_body(y, p0, p1, C, inner, bias, lo, hi);
  });
}

void erf_f32(const float* x, int64_t n, float* y, Impl impl) {
  constexpr int64_t kChunk = 1 << 14;  // whole chunks: results never depend on the split
  parallel_chunks((n + kChunk - 1) / kChunk, 1, [&](int64_t c0, int64_t c1) {
    const int64_t b = c0 * kChunk, e = std::min(n, c1 * kChunk);
#if defined(FASTQ_HAVE_X86)
    if (impl != Impl::Ref) return erf_f32_avx2(x + b, e - b, y + b);
#endif
    (void)impl;
    erf_body(x + b, e - b, y + b);
  });
}

void gelu_erf_f32(const float* x, int64_t n, float c1, bool div, float c2, float c3, int form,
                  float* y, Impl impl) {
  constexpr int64_t kChunk = 1 << 14;  // whole chunks: results never depend on the split
  parallel_chunks((n + kChunk - 1) / kChunk, 1, [&](int64_t k0, int64_t k1) {
    const int64_t b = k0 * kChunk, e = std::min(n, k1 * kChunk);
#if defined(FASTQ_HAVE_X86)
    if (impl != Impl::Ref) return gelu_erf_f32_avx2(x + b, e - b, c1, div, c2, c3, form, y + b);
#endif
    (void)impl;
    gelu_erf_body(x + b, e - b, c1, div, c2, c3, form, y + b);
  });
}

void softmax_rows_f32(const float* x, int64_t rows, int64_t L, float* y, Impl impl) {
  parallel_chunks(rows, min_items(4 * L), [&](int64_t r0, int64_t r1) {
#if defined(FASTQ_HAVE_X86)
    if (impl != Impl::Ref) return softmax_rows_f32_avx2(x, r0, r1, L, y);
#endif
    (void)impl;
    softmax_rows_body(x, r0, r1, L, y);
  });
}

void layernorm_rows_f32(const float* x, int64_t rows, int64_t L, const float* scale,
                        const float* bias, float eps, float* y, float* mean_out,
                        float* inv_out, Impl impl) {
  parallel_chunks(rows, min_items(3 * L), [&](int64_t r0, int64_t r1) {
#if defined(FASTQ_HAVE_X86)
    if (impl != Impl::Ref)
      return layernorm_rows_f32_avx2(x, r0, r1, L, scale, bias, eps, y, mean_out, inv_out);
#endif
    (void)impl;
    layernorm_rows_body(x, r0, r1, L, scale, bias, eps, y, mean_out, inv_out);
  });
}

template void bias_act<float>(float*, int64_t, int64_t, int64_t, const float*, float, float,
                              Impl);
template void bias_act<double>(double*, int64_t, int64_t, int64_t, const double*, double,
                               double, Impl);

}  // namespace nn
}  // namespace fastq
