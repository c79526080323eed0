// int8 convolution: s32 raw sums of u8 activations x s8 weights under an Arith, computed as
// NHWC im2col + the GEMM core, so every GEMM impl serves convolution too.
//
// Reduction order (DESIGN.md section 3): k = (kh, kw, c), input channel innermost.
//   Pairing::PerTap (default): each tap's channels are padded to an even count with zero
//     weights, so a sat16pair pair is two adjacent channels at one tap and never spans two
//     taps (oneDNN / ONNX Runtime symmetric conv kernels).
//   Pairing::Flat: pairs run over the flat (kh, kw, c) index, crossing taps when the group's
//     channel count is odd (im2col-then-GEMM engines, ONNX Runtime's general QLinearConv).
// Spatial padding reads the activation zero point, so the padded taps contribute
// zp * w, which the zero-point correction removes with the weights' full column sums.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "fastq/gemm.h"

namespace fastq {

enum class Pairing : int { PerTap = 0, Flat = 1 };

struct ConvShape {
  int64_t N = 1, C = 0, H = 1, W = 1;   // input (1-D convs use H = 1)
  int64_t OC = 0, KH = 1, KW = 1, group = 1;
  int64_t stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int64_t pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int64_t OH() const { return (H + pad_top + pad_bottom - dil_h * (KH - 1) - 1) / stride_h + 1; }
  int64_t OW() const { return (W + pad_left + pad_right - dil_w * (KW - 1) - 1) / stride_w + 1; }
  int64_t Cg() const { return C / group; }
  int64_t OCg() const { return OC / group; }
};

// Weights W[OC, C/group, KH, KW] packed per group as GEMM B[K', OC/group] in reduction order.
struct PackedConv {
  int64_t OC = 0, Cg = 0, KH = 1, KW = 1, group = 1;
  Pairing pairing = Pairing::PerTap;
  int64_t Cpad = 0;  // channels per tap in the reduction (Cg, or Cg rounded up to even)
  std::vector<std::shared_ptr<PackedB>> groups;
  std::vector<int32_t> colsum;  // per output channel: sum of its real weights
  std::vector<int8_t> dw;       // Cg == 1 only: W[OC, KH*KW] for the direct path (conv_dw.h)
  std::vector<int16_t> dw512;   // Cg == 1, OC == group: the AVX-512 NHWC rows' tap pairs
                                // (dw_nhwc512_pack_pairs, conv_dw.h), packed once
  std::vector<int16_t> dw512v;  // the same for 3x3, vertical pairs (dw_nhwc512_pack_vert)
  int64_t K() const { return KH * KW * Cpad; }
};

std::shared_ptr<PackedConv> pack_conv(const int8_t* w, int64_t OC, int64_t Cg, int64_t KH,
                                      int64_t KW, int64_t group, Pairing pairing);

// Raw sums out[N, OC, OH, OW] (s32) of x (u8, NCHW) with spatial padding filled by x_zp.
void conv_u8s8(const uint8_t* x, const ConvShape& s, const PackedConv& w, uint8_t x_zp,
               int32_t* out, Impl impl, Arith arith);

// Scalar reference of the same contract, straight loops over (n, oc, oh, ow, kh, kw, c):
// the specification the im2col path is tested against.
void conv_u8s8_ref(const uint8_t* x, const ConvShape& s, const int8_t* w, Pairing pairing,
                   uint8_t x_zp, int32_t* out, Arith arith);

// im2col rows [row0, row0 + rows) (row m = (n*OH + oh)*OW + ow) of group g from an NHWC
// input, K = w.K() bytes each in the reduction order above (padding taps read x_zp, per-tap
// pad channels 0), row stride ld >= K; bytes [K, ld) are left as they are.
void im2col_nhwc(const uint8_t* nhwc, const ConvShape& s, const PackedConv& w, int64_t g,
                 uint8_t x_zp, int64_t row0, int64_t rows, uint8_t* cols, int64_t ld);

// The NHWC row drivers' geometry (conv_nhwc.cpp and the saturation pass share it): an
// unpadded, unstrided, ungrouped 1x1 conv reads its NHWC input rows as the GEMM's A directly;
// otherwise rows go through im2col blocks of about 128 KiB, which stay in L2 for their GEMM.
inline bool nhwc_direct_rows(const ConvShape& s, const PackedConv& w) {
  return s.group == 1 && s.KH == 1 && s.KW == 1 && s.stride_h == 1 && s.stride_w == 1 &&
         s.pad_top == 0 && s.pad_left == 0 && s.pad_bottom == 0 && s.pad_right == 0 &&
         w.Cpad == w.Cg && w.K() == w.groups[0]->Kp;
}
inline int64_t nhwc_row_block(int64_t Kp) {
  const int64_t b = round_up((int64_t(128) << 10) / (Kp > 1 ? Kp : 1), 16);
  return b < 32 ? 32 : (b > 512 ? 512 : b);
}

// NHWC variants (conv_nhwc.cpp): x is u8 [N, H, W, C] when x_nhwc, else NCHW; results are
// [N, OH, OW, OC] (channel innermost), no layout round trip. conv_u8s8_nhwc gives the raw
// sums of conv_u8s8; qconv_requant_nhwc requantizes them as requantize() does (requant.h,
// zcomp / mult per output channel) into u8 (or s8 when y_signed), row block by row block.
void conv_u8s8_nhwc(const uint8_t* x, bool x_nhwc, const ConvShape& s, const PackedConv& w,
                    uint8_t x_zp, int32_t* out, Impl impl, Arith arith);
void qconv_requant_nhwc(const uint8_t* x, bool x_nhwc, const ConvShape& s, const PackedConv& w,
                        uint8_t x_zp, const int64_t* zcomp, const float* mult, int32_t y_zp,
                        bool y_signed, void* out, Impl impl, Arith arith);
// qconv's float output (sums dequantized by x_scale * w_scales[c], plus bias[c]; the same
// float operations, so the same floats) as [N, OH, OW, OC] float32, row block by row block.
void qconv_dequant_nhwc(const uint8_t* x, bool x_nhwc, const ConvShape& s, const PackedConv& w,
                        uint8_t x_zp, float x_scale, const float* w_scales, int64_t n_scales,
                        const float* bias, float* out, Impl impl, Arith arith);

// The drivers behind both: sink(row0, rows, acc, lda, g) receives rows [row0, row0 + rows)
// (row m = (n*OH + oh)*OW + ow) of group g's sums, [rows, OCg] with row stride lda (depthwise:
// all OC channels, g = 0), possibly from several threads at once; which rows one call holds
// depends on the layer's shape only. Depthwise multiplier-1 convs hand one output row (n, oh)
// per call.
using ConvRowSink = std::function<void(int64_t, int64_t, const int32_t*, int64_t, int64_t)>;
void conv_u8s8_nhwc_rows(const uint8_t* x, bool x_nhwc, const ConvShape& s, const PackedConv& w,
                         uint8_t x_zp, Impl impl, Arith arith, const ConvRowSink& sink);

// Quantized conv layer: out = float(acc - zp * colsum[oc]) * (x_scale * w_scale[oc]) + bias,
// the same epilogue (and float operation order) as qlinear. A signed x runs shifted by +128.
void qconv(const void* x, bool x_signed, const ConvShape& s, const PackedConv& w, int32_t x_zp,
           float x_scale, const float* w_scales, int64_t n_scales, const float* bias,
           float* out, Impl impl, Arith arith);

}  // namespace fastq
