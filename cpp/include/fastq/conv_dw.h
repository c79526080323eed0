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

}  // namespace fastq
