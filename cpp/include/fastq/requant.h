// int8 layer outputs straight from raw sums, and per-tensor float quantization.
//
// requantize: acc laid out [outer, C, inner] (NCHW conv output: outer = N, inner = OH*OW;
// GEMM rows: outer = M, inner = 1). Per element of channel c, as ONNX Runtime's QLinearConv /
// QLinearMatMul requantization (MLAS) computes it:
//   a = acc - zcomp[c]              (zero-point correction minus the int32 bias; s32 with
//                                    wrap-around, as ONNX Runtime's s32 accumulator does)
//   v = float(a) * mult[c]          (mult = x_scale * w_scale[c] / y_scale, float32)
//   y = nearbyint(clamp(v, lo - y_zp, hi - y_zp)) + y_zp      (round half to even)
// quantize: y = clamp(nearbyint(x / scale) + zp, lo, hi), the float32 division and rounding of
// ONNX QuantizeLinear (per tensor); NaN gives lo (ONNX leaves it unspecified).
// dequantize: y = (float(x) - float(zp)) * scale (DequantizeLinear, per tensor).
// [lo, hi] is [0, 255] for u8 output, [-128, 127] for s8.
#pragma once
#include <cstdint>

namespace fastq {

void requantize(const int32_t* acc, int64_t outer, int64_t C, int64_t inner,
                const int64_t* zcomp, const float* mult, int32_t y_zp, bool y_signed,
                void* out);

// The same per-element requantization over rows: acc[m * lda + c] -> out[m * ldo + c] for
// m < M, c < C (channel = column), unthreaded -- for drivers that requantize NHWC GEMM rows
// tile by tile (conv_requant_nhwc) while the sums are still in cache.
void requantize_rows(const int32_t* acc, int64_t M, int64_t C, int64_t lda,
                     const int64_t* zcomp, const float* mult, int32_t y_zp, bool y_signed,
                     void* out, int64_t ldo);

// QuantizeLinear(Add(DequantizeLinear(a), DequantizeLinear(b))) -- optionally with a Relu
// before the QuantizeLinear -- in one pass, per tensor, with the float32 steps of those ops:
//   v = (float(a) - float(a_zp)) * a_scale + (float(b) - float(b_zp)) * b_scale
//   v = relu ? max(v, 0) : v;   y = clamp(nearbyint(v / y_scale) + y_zp, lo, hi)
// a, b: n elements each, u8 (or s8 when *_signed); out likewise per y_signed.
void qdq_add(const void* a, bool a_signed, float a_scale, int32_t a_zp, const void* b,
             bool b_signed, float b_scale, int32_t b_zp, int64_t n, bool relu, float y_scale,
             int32_t y_zp, bool y_signed, void* out);

// DequantizeLinear then Add of a float32 row vector (a bias after an int8 layer) in one pass:
// out[r * N + c] = (float(x[r * N + c]) - float(zp)) * scale + bias[c], the two ops' steps.
void dequantize_add_f32(const void* x, bool x_signed, int64_t rows, int64_t N, float scale,
                        int32_t zp, const float* bias, float* out);

void quantize_f32(const float* x, int64_t n, float scale, int32_t zp, bool y_signed, void* out);

// dequantize: y = (float(x) - float(zp)) * scale, ONNX DequantizeLinear per tensor (u8/s8 x).
void dequantize_f32(const void* x, bool x_signed, int64_t n, float scale, int32_t zp,
                    float* out);

}  // namespace fastq
