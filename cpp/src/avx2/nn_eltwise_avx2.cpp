// AVX2 build of the element-wise float bodies (nn_eltwise_body.h). bias_act is the shared
// source compiled with -mavx2 (the compiler vectorizes it); erf is written with intrinsics
// (gcc leaves the clamped rational unvectorized) performing the body's exact operation
// sequence: maxps/minps(bound, x) are the body's selects, and mul/add/div are never fused,
// so the results equal the portable build bit for bit.
#include <immintrin.h>

#ifndef FASTQ_HAVE_X86
#define FASTQ_HAVE_X86 1  // this directory is only built on x86; expose the declarations
#endif
#include "fastq/nn_eltwise.h"
#include "fastq/nn_eltwise_body.h"

namespace fastq {
namespace nn {

template <typename T>
void bias_act_avx2(T* y, int64_t p0, int64_t p1, int64_t C, int64_t inner, const T* bias,
                   T lo, T hi) {
  bias_act_body(y, p0, p1, C, inner, bias, lo, hi);
}

void erf_f32_avx2(const float* x, int64_t n, float* y) {
  const __m256 lo = _mm256_set1_ps(-4.0f), hi = _mm256_set1_ps(4.0f);
  const __m256 one = _mm256_set1_ps(1.0f), m_one = _mm256_set1_ps(-1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_loadu_ps(x + i)));
    const __m256 t = _mm256_mul_ps(v, v);
    __m256 p = _mm256_set1_ps(kErfP[5]);
    __m256 q = _mm256_set1_ps(kErfQ[5]);
    for (int k = 4; k >= 0; --k) {
      p = _mm256_add_ps(_mm256_mul_ps(p, t), _mm256_set1_ps(kErfP[k]));
      q = _mm256_add_ps(_mm256_mul_ps(q, t), _mm256_set1_ps(kErfQ[k]));
    }
    const __m256 r = _mm256_div_ps(_mm256_mul_ps(v, p), q);
    _mm256_storeu_ps(y + i, _mm256_min_ps(one, _mm256_max_ps(m_one, r)));
  }
  erf_body(x + i, n - i, y + i);
}

template void bias_act_avx2<float>(float*, int64_t, int64_t, int64_t, int64_t, const float*,
                                   float, float);
template void bias_act_avx2<double>(double*, int64_t, int64_t, int64_t, int64_t,
                                    const double*, double, double);

}  // namespace nn
}  // namespace fastq
