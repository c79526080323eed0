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

namespace {

// erf_body on 8 lanes: maxps/minps(bound, x) are the body's selects
inline __m256 erf8(__m256 x) {
  const __m256 v = _mm256_min_ps(_mm256_set1_ps(4.0f), _mm256_max_ps(_mm256_set1_ps(-4.0f), x));
  const __m256 t = _mm256_mul_ps(v, v);
  __m256 p = _mm256_set1_ps(kErfP[5]);
  __m256 q = _mm256_set1_ps(kErfQ[5]);
  for (int k = 4; k >= 0; --k) {
    p = _mm256_add_ps(_mm256_mul_ps(p, t), _mm256_set1_ps(kErfP[k]));
    q = _mm256_add_ps(_mm256_mul_ps(q, t), _mm256_set1_ps(kErfQ[k]));
  }
  const __m256 r = _mm256_div_ps(_mm256_mul_ps(v, p), q);
  return _mm256_min_ps(_mm256_set1_ps(1.0f), _mm256_max_ps(_mm256_set1_ps(-1.0f), r));
}

}  // namespace

void erf_f32_avx2(const float* x, int64_t n, float* y) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, erf8(_mm256_loadu_ps(x + i)));
  erf_body(x + i, n - i, y + i);
}

void gelu_erf_f32_avx2(const float* x, int64_t n, float c1, bool div, float c2, float c3,
                       int form, float* y) {
  const __m256 v1 = _mm256_set1_ps(c1), v2 = _mm256_set1_ps(c2), v3 = _mm256_set1_ps(c3);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256 a = _mm256_add_ps(erf8(div ? _mm256_div_ps(v, v1) : _mm256_mul_ps(v, v1)), v2);
    const __m256 r = form == 0 ? _mm256_mul_ps(_mm256_mul_ps(v, a), v3)
                   : form == 1 ? _mm256_mul_ps(_mm256_mul_ps(v, v3), a)
                               : _mm256_mul_ps(_mm256_mul_ps(a, v3), v);
    _mm256_storeu_ps(y + i, r);
  }
  gelu_erf_body(x + i, n - i, c1, div, c2, c3, form, y + i);
}

// The row kernels: the bodies' 16 lanes as two 8-float registers (lanes 0-7, 8-15), each
// operation the body's (selects as blends, no fused multiply-add), the tails and the lane
// trees run the body's scalar code: the same bits.
namespace {

inline __m256 nan_max8(__m256 m, __m256 v) {
  const __m256 take =
      _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  return _mm256_blendv_ps(m, v, take);
}

inline __m256 exp_nonpos8(__m256 x) {
  const __m256 ge = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ);
  const __m256 le = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LE_OQ);
  const __m256 xc = _mm256_blendv_ps(_mm256_set1_ps(-87.0f),
                                     _mm256_blendv_ps(_mm256_setzero_ps(), x, le), ge);
  const __m256 t = _mm256_mul_ps(xc, _mm256_set1_ps(1.44269504089f));
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  const __m256 nf = _mm256_sub_ps(_mm256_add_ps(t, magic), magic);
  __m256 r = _mm256_sub_ps(xc, _mm256_mul_ps(nf, _mm256_set1_ps(0.693359375f)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(nf, _mm256_set1_ps(-2.12194440e-4f)));
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(0.5f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
  p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvttps_epi32(nf), _mm256_set1_epi32(127)), 23);
  const __m256 e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  const __m256 alt = _mm256_blendv_ps(_mm256_setzero_ps(), x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  return _mm256_blendv_ps(alt, e, ge);
}

}  // namespace

void softmax_rows_f32_avx2(const float* x, int64_t r0, int64_t r1, int64_t L, float* y) {
  const int64_t full = L - L % kRowLanes;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * L;
    float* yr = y + r * L;
    __m256 m0 = _mm256_set1_ps(-__builtin_inff()), m1 = m0;
    for (int64_t i = 0; i < full; i += kRowLanes) {
      m0 = nan_max8(m0, _mm256_loadu_ps(xr + i));
      m1 = nan_max8(m1, _mm256_loadu_ps(xr + i + 8));
    }
    alignas(32) float m[kRowLanes], s[kRowLanes];
    _mm256_store_ps(m, m0);
    _mm256_store_ps(m + 8, m1);
    for (int64_t j = 0; j < L - full; ++j) m[j] = nan_max(m[j], xr[full + j]);
    const float mx = lanes_max(m);
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    for (int64_t i = 0; i < full; i += kRowLanes) {
      const __m256 e0 = exp_nonpos8(_mm256_sub_ps(_mm256_loadu_ps(xr + i), vm));
      const __m256 e1 = exp_nonpos8(_mm256_sub_ps(_mm256_loadu_ps(xr + i + 8), vm));
      _mm256_storeu_ps(yr + i, e0);
      _mm256_storeu_ps(yr + i + 8, e1);
      s0 = _mm256_add_ps(s0, e0);
      s1 = _mm256_add_ps(s1, e1);
    }
    _mm256_store_ps(s, s0);
    _mm256_store_ps(s + 8, s1);
    exp_tail(xr, full, L, mx, yr, s);
    const float sum = lanes_sum(s);
    const __m256 vs = _mm256_set1_ps(sum);
    int64_t i = 0;
    for (; i + 8 <= L; i += 8)
      _mm256_storeu_ps(yr + i, _mm256_div_ps(_mm256_loadu_ps(yr + i), vs));
    for (; i < L; ++i) yr[i] = yr[i] / sum;
  }
}

void layernorm_rows_f32_avx2(const float* x, int64_t r0, int64_t r1, int64_t L,
                             const float* scale, const float* bias, float eps, float* y,
                             float* mean_out, float* inv_out) {
  const int64_t full = L - L % kRowLanes;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * L;
    float* yr = y + r * L;
    alignas(32) float s[kRowLanes];
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    for (int64_t i = 0; i < full; i += kRowLanes) {
      s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + i));
      s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xr + i + 8));
    }
    _mm256_store_ps(s, s0);
    _mm256_store_ps(s + 8, s1);
    for (int64_t j = 0; j < L - full; ++j) s[j] = s[j] + xr[full + j];
    const float mean = lanes_sum(s) / static_cast<float>(L);
    const __m256 vmean = _mm256_set1_ps(mean);
    s0 = s1 = _mm256_setzero_ps();
    for (int64_t i = 0; i < full; i += kRowLanes) {
      const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(xr + i), vmean);
      const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(xr + i + 8), vmean);
      _mm256_storeu_ps(yr + i, d0);
      _mm256_storeu_ps(yr + i + 8, d1);
      s0 = _mm256_add_ps(s0, _mm256_mul_ps(d0, d0));
      s1 = _mm256_add_ps(s1, _mm256_mul_ps(d1, d1));
    }
    _mm256_store_ps(s, s0);
    _mm256_store_ps(s + 8, s1);
    centered_tail(xr, full, L, mean, yr, s);
    const float inv = inv_std(s, L, eps);
    const __m256 vinv = _mm256_set1_ps(inv);
    int64_t i = 0;
    for (; i + 8 <= L; i += 8) {
      __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(yr + i), vinv),
                               _mm256_loadu_ps(scale + i));
      if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + i));
      _mm256_storeu_ps(yr + i, v);
    }
    for (; i < L; ++i) yr[i] = bias ? yr[i] * inv * scale[i] + bias[i] : yr[i] * inv * scale[i];
    if (mean_out) mean_out[r] = mean;
    if (inv_out) inv_out[r] = inv;
  }
}

template void bias_act_avx2<float>(float*, int64_t, int64_t, int64_t, int64_t, const float*,
                                   float, float);
template void bias_act_avx2<double>(double*, int64_t, int64_t, int64_t, int64_t,
                                    const double*, double, double);

}  // namespace nn
}  // namespace fastq
