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

inline float erf_one(float x) {
  float y;
  erf_body(&x, 1, &y);
  return y;
}

// The erf GELU of an exported graph as one pass, each element through the graph's own float32
// operations in its order: t = x / c1 (div) or x * c1, a = erf(t) + c2, then form 0:
// (x * a) * c3, 1: (x * c3) * a, 2: (a * c3) * x -- the bits of the unfused ops.
inline void gelu_erf_body(const float* x, int64_t n, float c1, bool div, float c2, float c3,
                          int form, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float a = erf_one(div ? v / c1 : v * c1) + c2;
    y[i] = form == 0 ? (v * a) * c3 : form == 1 ? (v * c3) * a : (a * c3) * v;
  }
}

// ---- Row kernels: softmax and layer normalization over the last axis of (rows, L) ----
// Reductions run in kRowLanes lanes, lane j taking elements j, j + 16, ... in order (the
// compiler vectorizes the lane loops; no reassociation), then a fixed tree combines the
// lanes: every build returns the same bits.
constexpr int64_t kRowLanes = 16;

inline float lanes_sum(float* s) {
  for (int64_t w = kRowLanes / 2; w >= 1; w /= 2)
    for (int64_t j = 0; j < w; ++j) s[j] = s[j] + s[j + w];
  return s[0];
}

// max that keeps a NaN once seen (a NaN element makes the whole softmax row NaN, as numpy)
inline float nan_max(float m, float v) { return (v > m || v != v) ? v : m; }

inline float lanes_max(float* m) {
  for (int64_t w = kRowLanes / 2; w >= 1; w /= 2)
    for (int64_t j = 0; j < w; ++j) m[j] = nan_max(m[j], m[j + w]);
  return m[0];
}

// exp(x) for x <= 0 (softmax's shifted inputs), branch-free: x = n ln2 + r (n = rint(x
// log2 e) by the 1.5 * 2^23 trick, Cody-Waite split of ln2), e^r by its Taylor polynomial to
// r^7 (|r| <= 0.35: truncation < 6e-9 relative), times 2^n built in the exponent bits. x below
// -87 (e^x under the smallest normal float) gives 0, -inf included; NaN stays NaN.
inline float exp_nonpos(float x) {
  const float xc = x >= -87.0f ? (x <= 0.0f ? x : 0.0f) : -87.0f;
  const float t = xc * 1.44269504089f;
  const float nf = (t + 12582912.0f) - 12582912.0f;
  float r = xc - nf * 0.693359375f;
  r = r - nf * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(nf) + 127) << 23;   // n in [-126, 0]
  float scale;
  __builtin_memcpy(&scale, &bits, 4);
  const float e = p * scale;
  return x >= -87.0f ? e : (x != x ? x : 0.0f);
}

// The row kernels' scalar tails (elements [full, L) into lanes 0 ..) and the layer norm's
// 1/sqrt(var + eps) from its lane sums: one copy for every build.
inline void exp_tail(const float* xr, int64_t full, int64_t L, float mx, float* yr, float* s) {
  for (int64_t j = 0; j < L - full; ++j) {
    const float e = exp_nonpos(xr[full + j] - mx);
    yr[full + j] = e;
    s[j] = s[j] + e;
  }
}

inline void centered_tail(const float* xr, int64_t full, int64_t L, float mean, float* yr,
                          float* s) {
  for (int64_t j = 0; j < L - full; ++j) {
    const float d = xr[full + j] - mean;
    yr[full + j] = d;
    s[j] = s[j] + d * d;
  }
}

inline float inv_std(float* s, int64_t L, float eps) {
  const float var = lanes_sum(s) / static_cast<float>(L);
  return 1.0f / __builtin_sqrtf(var + eps);
}

// y[r] = exp(x[r] - max) / sum(exp(x[r] - max)) for rows [r0, r1) of length L.
inline void softmax_rows_body(const float* x, int64_t r0, int64_t r1, int64_t L, float* y) {
  const int64_t full = L - L % kRowLanes;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * L;
    float* yr = y + r * L;
    float m[kRowLanes], s[kRowLanes];
    for (int64_t j = 0; j < kRowLanes; ++j) m[j] = -__builtin_inff(), s[j] = 0.0f;
    for (int64_t i = 0; i < full; i += kRowLanes)
      for (int64_t j = 0; j < kRowLanes; ++j) m[j] = nan_max(m[j], xr[i + j]);
    for (int64_t j = 0; j < L - full; ++j) m[j] = nan_max(m[j], xr[full + j]);
    const float mx = lanes_max(m);
    for (int64_t i = 0; i < full; i += kRowLanes)
      for (int64_t j = 0; j < kRowLanes; ++j) {
        const float e = exp_nonpos(xr[i + j] - mx);
        yr[i + j] = e;
        s[j] = s[j] + e;
      }
    exp_tail(xr, full, L, mx, yr, s);
    const float sum = lanes_sum(s);
    for (int64_t i = 0; i < L; ++i) yr[i] = yr[i] / sum;
  }
}

// ONNX LayerNormalization over the last axis (stash type float): mean = sum(x) / L,
// d = x - mean, var = sum(d^2) / L, inv = 1 / sqrt(var + eps), y = d * inv * scale (+ bias);
// mean / inv per row into mean_out / inv_out when given.
inline void layernorm_rows_body(const float* x, int64_t r0, int64_t r1, int64_t L,
                                const float* scale, const float* bias, float eps, float* y,
                                float* mean_out, float* inv_out) {
  const int64_t full = L - L % kRowLanes;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * L;
    float* yr = y + r * L;
    float s[kRowLanes];
    for (int64_t j = 0; j < kRowLanes; ++j) s[j] = 0.0f;
    for (int64_t i = 0; i < full; i += kRowLanes)
      for (int64_t j = 0; j < kRowLanes; ++j) s[j] = s[j] + xr[i + j];
    for (int64_t j = 0; j < L - full; ++j) s[j] = s[j] + xr[full + j];
    const float mean = lanes_sum(s) / static_cast<float>(L);
    for (int64_t j = 0; j < kRowLanes; ++j) s[j] = 0.0f;
    for (int64_t i = 0; i < full; i += kRowLanes)
      for (int64_t j = 0; j < kRowLanes; ++j) {
        const float d = xr[i + j] - mean;
        yr[i + j] = d;
        s[j] = s[j] + d * d;
      }
    centered_tail(xr, full, L, mean, yr, s);
    const float inv = inv_std(s, L, eps);
    if (bias) {
      for (int64_t i = 0; i < L; ++i) yr[i] = yr[i] * inv * scale[i] + bias[i];
    } else {
      for (int64_t i = 0; i < L; ++i) yr[i] = yr[i] * inv * scale[i];
    }
    if (mean_out) mean_out[r] = mean;
    if (inv_out) inv_out[r] = inv;
  }
}

}  // namespace
}  // namespace nn
}  // namespace fastq
