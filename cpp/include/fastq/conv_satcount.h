// Saturation-analysis convolution: conv_u8s8's im2col rows ((kh, kw, c) order, the packed
// weights' pairing) feeding the satcount GEMM (satcount.h), so for u8 x s8 NCHW convs
//   c_sat   = conv_u8s8(..., Arith::Sat16Pair) bit for bit (the same pairing),
//   c_exact = conv_u8s8(..., Arith::Exact32),
//   limit[oc] = pair sums of output channel oc, over all outputs, at an int16 limit.
// Depthwise (one input channel per group) follows conv_dw.h's contract, computed directly:
// per-tap pairing pairs each tap with a zero pad (never at a limit: the exact sums, zero
// counts), flat pairing pairs taps (t, t+1) of one channel. Pairs per output: ceil(w.K() / 2).
#pragma once
#include <cstdint>
#include <vector>

#include "fastq/conv.h"
#include "fastq/gemm.h"
#include "fastq/satstats.h"

namespace fastq {

// Flat-pairing depthwise planes [p0, p1) (plane p = n * OC + oc): sums into c_sat / c_exact,
// the plane's int16-limit count into per_plane[p] (conv_satcount_body.h). The ref build is
// portable; the avx2 one (avx2/conv_satcount_avx2.cpp) serves Impl::Avx512Vnni.
struct DwSatArgs {
  const uint8_t* x;   // [N, C, H, W]
  const int8_t* w;    // [OC, KH * KW]
  ConvShape s;
  uint8_t x_zp;
  int32_t* c_sat;     // [N, OC, OH, OW]
  int32_t* c_exact;
};
void dw_flat_satcount_planes_ref(const DwSatArgs& a, int64_t p0, int64_t p1,
                                 int64_t* per_plane);
void dw_flat_satcount_planes_avx2(const DwSatArgs& a, int64_t p0, int64_t p1,
                                  int64_t* per_plane);

// The NHWC form (multiplier 1): one output row (n, oh) of all C channels, sat / exact [OW, C],
// lim[c] += the channel's pairs on a limit (conv_satcount_body.h; ref portable, avx2 for
// Impl::Avx512Vnni as above).
struct DwNhwcSatArgs {
  const uint8_t* x;     // [N, H, W, C]
  const int16_t* wt;    // [KH * KW, C]: the weights tap-major
  ConvShape s;
  const uint8_t* zrow;  // C bytes of x_zp (padding taps)
  // [ceil(KH * KW / 2), C]: tap pair p's weights of channel c as one int32 lane, w[2p] in the
  // low and w[2p + 1] (0 past the last tap) in the high 16 bits (dw_flat_pair_weights); the
  // AVX-512 row reads it, the others do not need it
  const int32_t* wpair = nullptr;
};
std::vector<int32_t> dw_flat_pair_weights(const int16_t* wt, int64_t taps, int64_t C);
void dw_flat_satcount_nhwc_row_ref(const DwNhwcSatArgs& a, int64_t n, int64_t oh, int32_t* sat,
                                   int32_t* exact, int64_t* lim);
void dw_flat_satcount_nhwc_row_avx2(const DwNhwcSatArgs& a, int64_t n, int64_t oh, int32_t* sat,
                                    int32_t* exact, int64_t* lim);
// AVX-512 (Impl::Avx512Vnni; needs wpair): per tap pair one vpmaddwd gives 16 channels' exact
// pair sums, clamped for sat16pair; the same sums and counts as the portable body.
void dw_flat_satcount_nhwc_row_avx512(const DwNhwcSatArgs& a, int64_t n, int64_t oh,
                                      int32_t* sat, int32_t* exact, int64_t* lim);

// c_sat, c_exact: [N, OC, OH, OW]; limit_counts: OC entries, overwritten. Impl as
// satcount_kernel(impl) accepts it (ref, avx512vnni).
void conv_u8s8_satcount(const uint8_t* x, const ConvShape& s, const PackedConv& w,
                        uint8_t x_zp, int32_t* c_sat, int32_t* c_exact, int64_t* limit_counts,
                        Impl impl);

// One pass over a layer's accumulators in both arithmetics, laid out [outer, C, inner]
// (conv NCHW: N, OC, OH*OW; GEMM rows: M, N, 1). With the per-channel real-value map
// y = (acc - zc[c]) * scale[c] + bias[c] (the layer's epilogue, in double):
struct AccErrorStats {
  int64_t changed = 0;   // outputs where target != base
  int64_t max_abs = 0;   // max |target - base|
  double sum_abs = 0;    // sum |target - base|
  double signal = 0;     // sum y(base)^2
  double noise = 0;      // sum (y(target) - y(base))^2 = sum ((target - base) * scale[c])^2
  void merge(const AccErrorStats& o) {
    changed += o.changed;
    max_abs = o.max_abs > max_abs ? o.max_abs : max_abs;
    sum_abs += o.sum_abs;
    signal += o.signal;
    noise += o.noise;
  }
};
// The figures of one SIMD row reduction (satstats.h) as an AccErrorStats.
AccErrorStats acc_error_stats_of(const RowStats& p);
AccErrorStats acc_error_stats(const int32_t* target, const int32_t* base, int64_t outer,
                              int64_t C, int64_t inner, const int64_t* zc, const double* scale,
                              const double* bias);

// The saturation analysis' per-layer pass without materializing the layer's outputs: the
// counting conv / GEMM, each group's (or the GEMM's) rows reduced as they are produced.
// Target vs base: sat16pair vs exact32 when base_is_exact, else the reverse. zc, scale, bias
// (nullable) per output channel; limit_counts overwritten (OC / N entries). base_out
// (nullable): also write the base arithmetic's sums there ([N, OC, OH, OW] / [M, N]), i.e.
// what conv_u8s8 / gemm_u8s8 in that arithmetic returns, so one pass serves as the layer.
struct SatStatsArgs {
  Impl impl;
  bool base_is_exact;
  const int64_t* zc;
  const double* scale;
  const double* bias;
  int64_t* limit_counts;
  int32_t* base_out = nullptr;
};
AccErrorStats conv_u8s8_satstats(const uint8_t* x, const ConvShape& s, const PackedConv& w,
                                 uint8_t x_zp, const SatStatsArgs& a);
AccErrorStats gemm_u8s8_satstats(const uint8_t* x, int64_t M, const PackedB& b,
                                 const SatStatsArgs& a);

// The same pass for a requantized conv layer in the int8 executor's layout
// (conv_satstats_nhwc.cpp): x u8 [N, H, W, C] when x_nhwc, else NCHW; out [N, OH, OW, OC] u8
// (s8 when y_signed) is what qconv_requant_nhwc returns in the base arithmetic, requantized
// from the base sums of the counting pass with zcomp / mult per output channel (requant.h).
// Stats: a.zc (usually zcomp), a.scale, a.bias as above (|zc| < 2^53); a.base_out unused.
// The float figures are summed in satstats.h's order (equal to the above up to rounding).
struct RequantOut {
  const int64_t* zcomp;
  const float* mult;
  int32_t y_zp;
  bool y_signed;
  void* out;
};
AccErrorStats qconv_requant_satstats_nhwc(const uint8_t* x, bool x_nhwc, const ConvShape& s,
                                          const PackedConv& w, uint8_t x_zp,
                                          const SatStatsArgs& a, const RequantOut& r);

// The quantized layers' float epilogue over raw sums laid out [outer, C, inner]:
//   out = float(int64(acc) - zc[c]) * scale[c] (+ bias[c])   (float32, in this order)
// the operations qconv / qlinear_epilogue perform (-ffp-contract=off), so a layer's float
// output can be formed from sums computed elsewhere (the saturation analysis' pass).
void acc_epilogue(const int32_t* acc, int64_t outer, int64_t C, int64_t inner,
                  const int64_t* zc, const float* scale, const float* bias, float* out);

}  // namespace fastq
