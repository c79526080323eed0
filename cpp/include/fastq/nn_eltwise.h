// Float element-wise kernels of the executor's fused epilogues and transcendental ops.
// Contract: every impl (Ref, Avx2; Avx512Vnni runs the Avx2 build) compiles one shared body
// (nn_eltwise_body.h) with -ffp-contract=off and the same per-element operation order, so
// results are bit-identical across impls and thread counts. NaN propagates through the
// clamps (a comparison with NaN is false, so the value passes unchanged).
#pragma once
#include <cstdint>

#include "fastq/types.h"

namespace fastq {
namespace nn {

// In place over y (planes, inner), plane p in channel p % C:
// y = min(max(y + bias[p % C], lo), hi); bias may be nullptr (no add).
template <typename T>
void bias_act(T* y, int64_t planes, int64_t C, int64_t inner, const T* bias, T lo, T hi,
              Impl impl);

// y[i] = erf(x[i]) for n floats (y may alias x): x * P(x^2) / Q(x^2) on x clamped to
// [-4, 4], degree-5 polynomials fitted to relative error (max 4.5e-7, about 8 ulp, over all
// floats), result clamped to [-1, 1]. erf(+-0) = +-0, erf(+-inf) = +-1, erf(NaN) = NaN.
void erf_f32(const float* x, int64_t n, float* y, Impl impl);

// The exported erf GELU fused (nn_eltwise_body.h gelu_erf_body): y = the graph's
// Div|Mul(x, c1) -> Erf -> Add(c2) -> two Muls (x and c3, association by form) per element,
// bit for bit the unfused float32 ops (erf as erf_f32).
void gelu_erf_f32(const float* x, int64_t n, float c1, bool div, float c2, float c3, int form,
                  float* y, Impl impl);

// Softmax over the last axis of x (rows, L) into y (may alias x): max, exp(x - max) (a
// branch-free float32 exp, about 1 ulp), sum, divide; a NaN in a row makes the row NaN.
void softmax_rows_f32(const float* x, int64_t rows, int64_t L, float* y, Impl impl);

// LayerNormalization over the last axis of x (rows, L) into y (may alias x): scale (L,),
// bias (L,) or nullptr; mean_out / inv_out (rows,) or nullptr (nn_eltwise_body.h).
void layernorm_rows_f32(const float* x, int64_t rows, int64_t L, const float* scale,
                        const float* bias, float eps, float* y, float* mean_out,
                        float* inv_out, Impl impl);

#if defined(FASTQ_HAVE_X86)
void gelu_erf_f32_avx2(const float* x, int64_t n, float c1, bool div, float c2, float c3,
                       int form, float* y);
void softmax_rows_f32_avx2(const float* x, int64_t r0, int64_t r1, int64_t L, float* y);
void layernorm_rows_f32_avx2(const float* x, int64_t r0, int64_t r1, int64_t L,
                             const float* scale, const float* bias, float eps, float* y,
                             float* mean_out, float* inv_out);
template <typename T>
void bias_act_avx2(T* y, int64_t p0, int64_t p1, int64_t C, int64_t inner, const T* bias,
                   T lo, T hi);
void erf_f32_avx2(const float* x, int64_t n, float* y);
#endif

}  // namespace nn
}  // namespace fastq
