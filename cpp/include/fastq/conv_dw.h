// Direct int8 convolution for one input channel per group (Cg == 1: depthwise, group == C,
// with any channel multiplier OC / C): the tap count is far too short a reduction for the
// im2col + GEMM path, so each output plane is accumulated tap by tap from a zero-point-padded
// copy of its input plane. Same contract as conv_u8s8 (conv.h) for Cg == 1:
//   exact32, and sat16pair with Pairing::PerTap: each tap holds one real channel and one zero
//     pad, so every "pair" is a lone u8 x s8 product (|p| <= 32640) and never saturates:
//     both are the exact s32 sum.
//   sat16pair with Pairing::Flat: pairs over the flat tap index t = kh*KW + kw, (0,1), (2,3),
//     ...; each pair sum saturates to s16; an odd last tap stands alone.
// Spatial padding reads x_zp. conv.cpp routes Cg == 1 convs here, so callers see no change.
#pragma once
#include <cstdint>

#include "fastq/conv.h"

namespace fastq {

struct DwArgs {
  const uint8_t* x;   // [N, C, H, W]
  const int8_t* w;    // [OC, KH * KW]
  ConvShape s;
  uint8_t x_zp;
  bool flat_sat;      // sat16pair with flat pairing: pairs of taps saturate
  int32_t* out;       // [N, OC, OH, OW]
};

// Raw s32 sums, Cg == 1 only (throws std::invalid_argument otherwise).
void conv_dw_u8s8(const uint8_t* x, const ConvShape& s, const int8_t* w, Pairing pairing,
                  uint8_t x_zp, int32_t* out, Impl impl, Arith arith);

// Scalar reference of the same contract (plain loops, bounds-checked taps): Impl::Ref.
void conv_dw_u8s8_ref(const DwArgs& a);

// Output planes [p0, p1) (plane p = n * OC + oc) by the shared body (conv_dw_body.h),
// compiled with AVX2 flags; Impl::Avx2 and Impl::Avx512Vnni both run it.
void conv_dw_planes_avx2(const DwArgs& a, int64_t p0, int64_t p1);

// NHWC depthwise rows (channel multiplier 1: OC == C == group), the layout the fused int8
// layers keep between layers (conv_nhwc.cpp). Same sums as conv_dw_u8s8 (the flat-sat pairs
// are per channel over the flat tap index), computed for one output row (n, oh) into
// acc[OW * C] (channel innermost). `zrow` holds at least C + 16 bytes of x_zp: the row padding
// taps read. `wpairs` is the weights interleaved for the AVX2 body by dw_nhwc_pack_pairs.
struct DwNhwcArgs {
  const uint8_t* x;     // [N, H, W, C]
  const int8_t* w;      // [C, KH * KW]
  ConvShape s;
  const uint8_t* zrow;
  bool flat_sat;
};
void conv_dw_nhwc_row_ref(const DwNhwcArgs& a, int64_t n, int64_t oh, int32_t* acc);

// Per tap t of output row (n, oh): trow[t], the input row it reads (nullptr: a padding row),
// and tcol[t], the column offset of its pixel: output column ow reads input column
// ow * stride_w + tcol[t] (out of [0, W): padding).
inline void dw_nhwc_tap_rows(const DwNhwcArgs& a, int64_t n, int64_t oh, const uint8_t** trow,
                             int64_t* tcol) {
  const ConvShape& s = a.s;
  for (int64_t t = 0; t < s.KH * s.KW; ++t) {
    const int64_t ih = oh * s.stride_h - s.pad_top + (t / s.KW) * s.dil_h;
    trow[t] = ih >= 0 && ih < s.H ? a.x + (n * s.H + ih) * s.W * s.C : nullptr;
    tcol[t] = (t % s.KW) * s.dil_w - s.pad_left;
  }
}
// 16 channels per block, tap pairs (2q, 2q+1) as vpmaddwd operands: for block b and pair q,
// 32 int16 at ((q * (C / 16)) + b) * 32 (see conv_dw_nhwc_avx2.cpp for the lane order);
// channels past the last full block of 16 run the scalar loop.
void dw_nhwc_pack_pairs(const int8_t* w, int64_t C, int64_t T, int16_t* wpairs);
int64_t dw_nhwc_pairs_size(int64_t C, int64_t T);
void conv_dw_nhwc_row_avx2(const DwNhwcArgs& a, const int16_t* wpairs, int64_t n, int64_t oh,
                           int32_t* acc);

// AVX-512 rows (Impl::Avx512Vnni): 32 channels per block, every channel tail masked (no
// scalar loop); weights by dw_nhwc512_pack_pairs ((T + 1) / 2 pairs x ceil(C / 32) blocks x
// 64 int16, lane order in conv_dw_nhwc_avx512.cpp). With rq == nullptr it writes the raw sums
// to acc[OW * C] as conv_dw_nhwc_row_ref; with rq it writes the requantized row (requant.h:
// the requantize_rows formula per channel) to out[ow * rq->ldo + c] and leaves acc alone.
// rq->z32 / rq->mult are int32(zcomp) and mult in lane order (dw_nhwc512_lane_order,
// ceil(C / 32) * 32 entries each).
struct DwRequant {
  const int32_t* z32;
  const float* mult;
  int32_t y_zp;
  bool y_signed;
  int64_t ldo;
};
int64_t dw_nhwc512_pairs_size(int64_t C, int64_t T);
void dw_nhwc512_pack_pairs(const int8_t* w, int64_t C, int64_t T, int16_t* wpairs);
void dw_nhwc512_lane_order(const int64_t* zcomp, const float* mult, int64_t C, int32_t* z32,
                           float* mu);
// wvert (nullable): 3x3 weights by dw_nhwc512_pack_vert; used for 3x3 kernels with dilation
// 1 across and no pair saturation (exact sums: vertical tap pairs, each input column widened
// once per row instead of once per tap and pixel).
void conv_dw_nhwc_row_avx512(const DwNhwcArgs& a, const int16_t* wpairs, const int16_t* wvert,
                             int64_t n, int64_t oh, int32_t* acc, const DwRequant* rq,
                             uint8_t* out);
// 3x3 only: per 32-channel block, per kw: lo/hi of taps (0, kw) | (1, kw) in even | odd s16
// lanes, then lo/hi of tap (2, kw) | 0: ceil(C / 32) * 384 int16.
int64_t dw_nhwc512_vert_size(int64_t C);
void dw_nhwc512_pack_vert(const int8_t* w, int64_t C, int16_t* wvert);

}  // namespace fastq
