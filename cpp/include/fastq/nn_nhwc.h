// Channels-last (NHWC) float32 conv kernels for the float executor: depthwise, 1x1 (a GEMM
// Y[P, M] = X[P, C] @ W[C, M]) and general group-1 2-D conv (im2col rows in (kh, kw, c)
// order feeding the same GEMM). Contract: bias is added first, then the products in
// reduction order (taps (kh, kw) for depthwise, k = 0..K-1 for the GEMM), then the fused
// activation clamp y = min(max(y, lo), hi) (+-inf for none) in the store; taps outside the
// input contribute nothing (zero padding). Every impl builds one source (nn_nhwc_body.h);
// the AVX2/AVX-512 builds fuse multiply-adds, so they differ from Ref by rounding only.
#pragma once
#include <cstdint>

#include "fastq/types.h"

namespace fastq {
namespace nn {

// Column panel width of the packed GEMM weights for `impl` (Ref/Avx2: 16, Avx512Vnni: 32).
int64_t nhwc_panel_width(Impl impl);

// Packs W (K, M) row-major and bias (M values or nullptr -> 0) into ceil(M/nr) panels, each
// (K + 1, nr): rows 0..K-1 are W's columns [p*nr, p*nr + nr) (zeros past M), row K the bias.
void nhwc_pack_gemm(const float* w, const float* bias, int64_t K, int64_t M, int64_t nr,
                    float* packed);

// 2-D geometry of an NHWC conv: input (N, H, W, C), output (N, OH, OW, M).
struct NhwcGeom {
  int64_t N, H, W, C;
  int64_t OH, OW;
  int64_t KH, KW, SH, SW, DH, DW, PH, PW;  // kernel, strides, dilations, begin pads
};

// 1x1 unpadded conv (strides SH, SW; kernel/dilation/pads ignored): output pixel
// (n, oh, ow) reads input row x[n, oh*SH, ow*SW, :]. packed from nhwc_pack_gemm(K = C).
// y: (N, OH, OW, M).
void conv1x1_nhwc(const float* x, const NhwcGeom& g, const float* packed, int64_t M, float lo,
                  float hi, float* y, Impl impl);

// General group-1 conv: rows of K = KH*KW*C inputs in (kh, kw, c) order (zeros outside the
// input) times packed (nhwc_pack_gemm of W as (KH, KW, C, M)). x is (N, H, W, C), or
// (N, C, H, W) when x_nchw. y: (N, OH, OW, M).
void conv_nhwc(const float* x, bool x_nchw, const NhwcGeom& g, const float* packed, int64_t M,
               float lo, float hi, float* y, Impl impl);

// Depthwise conv, channel multiplier 1 (M == C): w (KH, KW, C), bias C values or nullptr.
// y[n, oh, ow, c] = clamp(bias[c] + sum over in-bounds taps (kh, kw) in order of
// w[kh, kw, c] * x[n, oh*SH - PH + kh*DH, ow*SW - PW + kw*DW, c]).
void depthwise_nhwc(const float* x, const NhwcGeom& g, const float* w, const float* bias,
                    float lo, float hi, float* y, Impl impl);

// One build's row-range bodies (nn_nhwc_body.h): rows are output rows n*OH + oh (depthwise)
// or output pixels (GEMM).
struct NhwcKernels {
  int64_t nr;  // GEMM panel width
  void (*gemm_rows)(const float* x, bool im2col, const NhwcGeom& g, const float* packed,
                    int64_t M, float lo, float hi, float* y, int64_t p0, int64_t p1);
  void (*dw_rows)(const float* x, const NhwcGeom& g, const float* w, const float* bias,
                  float lo, float hi, float* y, int64_t r0, int64_t r1);
};
NhwcKernels nhwc_kernels_ref();
#if defined(FASTQ_HAVE_X86)
NhwcKernels nhwc_kernels_avx2();
NhwcKernels nhwc_kernels_avx512();
#endif

}  // namespace nn
}  // namespace fastq
