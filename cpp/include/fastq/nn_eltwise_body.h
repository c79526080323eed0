// Kernel bodies shared by the portable and AVX2 builds of nn_eltwise.h (nn_eltwise.cpp,
// avx2/nn_eltwise_avx2.cpp). Plain C++, no intrinsics, branch-free inner loops the compiler
// vectorizes with each build's flags; -ffp-contract=off everywhere, so all builds compute the
// same operations in the same order and return identical bits. Internal linkage keeps the
// per-ISA copies apart (no ODR clash between object libraries).
#pragma once
#include <cstdint>

namespace fastq {
namespace nn {
namespace {  // NOLINT: deliberate, see above

// max/min written as selects that keep x when the comparison is false (x NaN stays NaN);
// this is exactly the semantics of x86 maxps/minps with x as the second operand.
template <typename T> inline T clamp_lo(T x, T lo) { return lo > x ? lo : x; }
template <typename T> inline T clamp_hi(T x, T hi) { return hi < x ? hi : x; }

template <typename T>
void bias_act_body(T* y, int64_t p0, int64_t p1, int64_t C, int64_t inner, const T* bias,
                   T lo, T hi) {
  for (int64_t p = p0; p < p1; ++p) {
    T* row = y + p * inner;
    const T b = bias ? bias[p % C] : T(0);
    if (bias) {
      for (int64_t i = 0; i < inner; ++i) row[i] = clamp_hi(clamp_lo(row[i] + b, lo), hi);
    } else {
      for (int64_t i = 0; i < inner; ++i) row[i] = clamp_hi(clamp_lo(row[i], lo), hi);
    }
  }
}

// erf(x) ~ x * P(t) / Q(t), t = x^2, |x| <= 4 (erf(4) rounds to 1 in float). Coefficients
// fitted for fastq by iteratively reweighted least squares on relative error.
constexpr float kErfP[6] = {1.12837915628e+00f, 1.91039005864e-01f, 5.27845951162e-02f,
                            3.78108293586e-03f, 2.83148694772e-04f, 2.01661388831e-06f};
constexpr float kErfQ[6] = {1.0f, 5.02636778173e-01f, 1.14327415445e-01f,
                            1.50000920366e-02f, 1.16252904820e-03f, 3.76575774781e-05f};

inline void erf_body(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = clamp_hi(clamp_lo(x[i], -4.0f), 4.0f);
    const float t = v * v;
    float p = kErfP[5];
    p = p * t + kErfP[4];
    p = p * t + kErfP[3];
    p = p * t + kErfP[2];
    p = p * t + kErfP[1];
    p = p * t + kErfP[0];
    float q = kErfQ[5];
    q = q * t + kErfQ[4];
    q = q * t + kErfQ[3];
    q = q * t + kErfQ[2];
    q = q * t + kErfQ[1];
    q = q * t + kErfQ[0];
    y[i] = clamp_hi(clamp_lo(v * p / q, -1.0f), 1.0f);
  }
}

}  // namespace
}  // namespace nn
}  // namespace fastq
