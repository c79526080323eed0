// NHWC int8 conv drivers (conv.h): the fused int8 layers keep activations u8 NHWC between
// layers, so the input needs no transpose and the output is written channel-innermost. GEMM
// convs run per block of output rows: A for the block (the input itself for 1x1 stride-1
// unpadded convs; per-row tap pointers where the impl has an implicit-GEMM kernel, gemm.h;
// else an im2col copy), the GEMM kernel over all panels, then the sink (raw-sum copy or
// requantization; the AVX-512 kernels requantize in their own store) while the block is in
// cache; blocks are split across threads. Depthwise convs (multiplier 1) run the NHWC row
// kernels of conv_dw.h; with a channel multiplier, the NCHW driver plus a transpose. Every
// path computes the sums of conv_u8s8 exactly.
#include <algorithm>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastq/conv.h"
#include "fastq/conv_dw.h"
#include "fastq/cpu_features.h"
#include "fastq/requant.h"
#include "fastq/scratch.h"
#include "fastq/threads.h"
#include "fastq/transpose.h"

namespace fastq {

int64_t dw_nhwc_pairs_size(int64_t C, int64_t T) { return (T + 1) / 2 * (C / 16) * 32; }

void dw_nhwc_pack_pairs(const int8_t* w, int64_t C, int64_t T, int16_t* wp) {
  const int64_t CB = C / 16, P = (T + 1) / 2;
  for (int64_t q = 0; q < P; ++q)
    for (int64_t b = 0; b < CB; ++b)
      for (int64_t i = 0; i < 32; ++i) {
        const int64_t j = i % 16, h = j / 8, k = j % 8;
        const int64_t ch = b * 16 + h * 8 + (i >= 16 ? 4 : 0) + k / 2, t = 2 * q + k % 2;
        wp[(q * CB + b) * 32 + i] = t < T ? int16_t(w[ch * T + t]) : int16_t(0);
      }
}

// The AVX-512 depthwise layout (conv_dw_nhwc_avx512.cpp), packed here in portable code:
// unpacklo/hi_epi16 of two 32-channel rows widened to s16 put, in lane L of the lo (h = 0) /
// hi (h = 1) accumulator, channel 8 * (L / 4) + 4 * h + L % 4 (its two s16 weights: taps 2q
// and 2q + 1); packs_epi32(lo, hi) restores channel order, so zcomp / mult are laid out in
// lane order and the u8 store needs no shuffle.
namespace {
inline int64_t lane_channel(int64_t L, int64_t h) { return 8 * (L / 4) + 4 * h + L % 4; }
}  // namespace

int64_t dw_nhwc512_pairs_size(int64_t C, int64_t T) {
  return (T + 1) / 2 * ((C + 31) / 32) * 64;
}

void dw_nhwc512_pack_pairs(const int8_t* w, int64_t C, int64_t T, int16_t* wp) {
  const int64_t CB = (C + 31) / 32, P = (T + 1) / 2;
  for (int64_t q = 0; q < P; ++q)
    for (int64_t b = 0; b < CB; ++b)
      for (int64_t h = 0; h < 2; ++h)
        for (int64_t i = 0; i < 32; ++i) {
          const int64_t ch = b * 32 + lane_channel(i / 2, h), t = 2 * q + i % 2;
          wp[(q * CB + b) * 64 + h * 32 + i] = t < T && ch < C ? int16_t(w[ch * T + t]) : 0;
        }
}

int64_t dw_nhwc512_vert_size(int64_t C) { return (C + 31) / 32 * 384; }

void dw_nhwc512_pack_vert(const int8_t* w, int64_t C, int16_t* wv) {
  const int64_t CB = (C + 31) / 32;
  for (int64_t b = 0; b < CB; ++b)
    for (int64_t kw = 0; kw < 3; ++kw)
      for (int64_t v = 0; v < 4; ++v)  // 01 lo, 01 hi, 2 lo, 2 hi
        for (int64_t i = 0; i < 32; ++i) {
          const int64_t ch = b * 32 + lane_channel(i / 2, v % 2);
          const int64_t kh = v < 2 ? i % 2 : 2;
          const bool real = ch < C && (v < 2 || i % 2 == 0);
          wv[((b * 3 + kw) * 4 + v) * 32 + i] = real ? int16_t(w[ch * 9 + kh * 3 + kw]) : 0;
        }
}

void dw_nhwc512_lane_order(const int64_t* zcomp, const float* mult, int64_t C, int32_t* z32,
                           float* mu) {
  const int64_t CB = (C + 31) / 32;
  for (int64_t b = 0; b < CB; ++b)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t L = 0; L < 16; ++L) {
        const int64_t ch = b * 32 + lane_channel(L, h), i = b * 32 + h * 16 + L;
        z32[i] = ch < C ? int32_t(uint32_t(zcomp[ch])) : 0;
        mu[i] = ch < C ? mult[ch] : 0.0f;
      }
}

namespace {

using RowSink = ConvRowSink;

// The requantized output, for kernels that requantize in their own store (the sink is then
// not called for their rows): out[m * OC + c] per requant.h.
struct RequantOut {
  const int64_t* zcomp;
  const float* mult;
  int32_t y_zp;
  bool y_signed;
  uint8_t* out;
};

void check(const ConvShape& s, const PackedConv& w) {
  if (s.group != w.group || s.C != w.Cg * w.group || s.OC != w.OC || s.KH != w.KH ||
      s.KW != w.KW)
    throw std::invalid_argument("conv input/weight shapes do not match the packed weights");
  if (s.OH() <= 0 || s.OW() <= 0)
    throw std::invalid_argument("conv output would be empty: kernel larger than padded input");
}

const uint8_t* as_nhwc(const uint8_t* x, bool x_nhwc, const ConvShape& s) {
  if (x_nhwc) return x;
  const int64_t HW = s.H * s.W;
  uint8_t* nhwc = scratch_as<uint8_t>(Scratch::ConvNhwc, static_cast<size_t>(s.N * HW * s.C));
  parallel_for(s.N, [&](int64_t n) {
    transpose2d(x + n * s.C * HW, s.C, HW, HW, nhwc + n * HW * s.C, s.C);
  });
  return nhwc;
}

// Three NCHW planes -> 4-byte pixels (channels 0..2, then 0): the layout the implicit GEMM
// reads for a 3-channel input (per-tap pairing pads it to 4). Word arithmetic the compiler
// vectorizes (little-endian byte order is the channel order); the stem's input copy.
constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
void pack_c3_nchw(const uint8_t* __restrict x, int64_t HW, uint32_t* __restrict out) {
  const uint8_t* __restrict c0 = x;
  const uint8_t* __restrict c1 = x + HW;
  const uint8_t* __restrict c2 = x + 2 * HW;
  for (int64_t i = 0; i < HW; ++i)
    out[i] = uint32_t(c0[i]) | uint32_t(c1[i]) << 8 | uint32_t(c2[i]) << 16;
}

void gemm_rows(const uint8_t* x, bool x_nhwc, const ConvShape& s, const PackedConv& w,
               uint8_t x_zp, Impl impl, Arith arith, const RowSink& sink,
               const RequantOut* rq) {
  GemmKernel kernel = gemm_kernel(impl, arith);
  // the AVX-512 kernels requantize in their store (gemm.h RequantStore): no s32 round trip
  std::vector<int32_t> z32;
  RequantStore rs{};
  const bool fused = rq != nullptr && impl == Impl::Avx512Vnni;
  if (fused) {
    z32.resize(static_cast<size_t>(s.OC));
    for (int64_t c = 0; c < s.OC; ++c) z32[c] = int32_t(uint32_t(rq->zcomp[c]));
    rs = RequantStore{z32.data(), rq->mult, rq->y_zp, rq->y_signed, rq->out, s.OC};
  }
  // the store of rows [row0, row0 + rows) of group g: fused, or the sink's
  auto tile_rq = [&](int64_t row0, int64_t g) {
    RequantStore r = rs;
    r.z32 += g * s.OCg();
    r.mult += g * s.OCg();
    r.out += row0 * s.OC + g * s.OCg();
    return r;
  };
  const int64_t M = s.N * s.OH() * s.OW(), OCg = s.OCg(), K = w.K();
  const PackedB& b0 = *w.groups[0];
  const int64_t Kp = b0.Kp, panels = b0.Np / kPanel;
  const bool direct = nhwc_direct_rows(s, w);
  const int64_t block = nhwc_row_block(Kp);
  const int64_t blocks = (M + block - 1) / block;
  const double work = 2.0 * double(M) * double(s.OC) * double(K);
  // implicit GEMM (no im2col copy) when each tap is whole k groups of one pixel's channels;
  // per-tap channel padding (odd C: the stem's 3) gets a copy with that many channels
  const ImplicitKernel implicit = !direct && s.group == 1 && w.Cpad % kGroup == 0
                                      ? implicit_kernel(impl, arith)
                                      : nullptr;
  const int64_t T = s.KH * s.KW, OH = s.OH(), OW = s.OW(), HW = s.H * s.W;
  const int64_t cs = implicit ? w.Cpad : s.C;  // pixel stride of the buffer A reads
  const uint8_t* nhwc = nullptr;
  if (cs != s.C) {
    uint8_t* buf = scratch_as<uint8_t>(Scratch::ConvNhwc, static_cast<size_t>(s.N * HW * cs));
    if (kLittleEndian && cs == 4 && s.C == 3 && !x_nhwc) {  // the stem: a word per pixel
      for (int64_t n = 0; n < s.N; ++n)
        pack_c3_nchw(x + n * 3 * HW, HW, reinterpret_cast<uint32_t*>(buf + n * HW * 4));
    } else {
      std::memset(buf, 0, static_cast<size_t>(s.N * HW * cs));  // pad channels: zero weights
      for (int64_t n = 0; n < s.N; ++n)
        for (int64_t c = 0; c < s.C; ++c) {
          uint8_t* d = buf + n * HW * cs + c;
          if (x_nhwc) {
            const uint8_t* src = x + n * HW * s.C + c;
            for (int64_t i = 0; i < HW; ++i) d[i * cs] = src[i * s.C];
          } else {
            const uint8_t* src = x + (n * s.C + c) * HW;
            for (int64_t i = 0; i < HW; ++i) d[i * cs] = src[i];
          }
        }
    }
    nhwc = buf;
  } else {
    nhwc = as_nhwc(x, x_nhwc, s);
  }
  std::vector<uint8_t> zrow(implicit ? static_cast<size_t>(cs) : 0, x_zp);
  std::vector<int64_t> tap_h(static_cast<size_t>(T)), tap_w(static_cast<size_t>(T)),
      tap_off(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    tap_h[t] = (t / s.KW) * s.dil_h;
    tap_w[t] = (t % s.KW) * s.dil_w;
    tap_off[t] = (tap_h[t] * s.W + tap_w[t]) * cs;
  }
  const int64_t span_h = (s.KH - 1) * s.dil_h, span_w = (s.KW - 1) * s.dil_w;
  auto run = [&](int64_t i) {
    const int64_t row0 = i * block, rows = std::min(block, M - row0);
    int32_t* acc = scratch_as<int32_t>(Scratch::ConvAcc, size_t(block * OCg));
    if (implicit) {
      thread_local std::vector<const uint8_t*> ptr;
      ptr.resize(static_cast<size_t>(rows * T));
      int64_t n = row0 / (OH * OW), oh = (row0 / OW) % OH, ow = row0 % OW;
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* img = nhwc + n * HW * cs;
        const int64_t ih0 = oh * s.stride_h - s.pad_top, iw0 = ow * s.stride_w - s.pad_left;
        if (ih0 >= 0 && ih0 + span_h < s.H && iw0 >= 0 && iw0 + span_w < s.W) {
          const uint8_t* base = img + (ih0 * s.W + iw0) * cs;  // every tap inside
          for (int64_t t = 0; t < T; ++t) ptr[r * T + t] = base + tap_off[t];
        } else {
          for (int64_t t = 0; t < T; ++t) {
            const int64_t ih = ih0 + tap_h[t], iw = iw0 + tap_w[t];
            ptr[r * T + t] = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W
                                 ? img + (ih * s.W + iw) * cs
                                 : zrow.data();
          }
        }
        if (++ow == OW) {  // next output pixel without divisions
          ow = 0;
          if (++oh == OH) oh = 0, ++n;
        }
      }
      const RequantStore r = tile_rq(row0, 0);
      implicit(ImplicitTile{ptr.data(), T, cs, rows, w.groups[0].get(), 0, panels, acc, OCg,
                            fused ? &r : nullptr});
      if (!fused) sink(row0, rows, acc, OCg, 0);
      return;
    }
    uint8_t* cols = direct ? nullptr
                           : scratch_as<uint8_t>(Scratch::ConvCols, size_t(block * Kp));
    for (int64_t g = 0; g < s.group; ++g) {
      const uint8_t* a = nhwc + row0 * s.C;
      int64_t lda = s.C;
      if (!direct) {
        im2col_nhwc(nhwc, s, w, g, x_zp, row0, rows, cols, Kp);
        if (Kp > K)
          for (int64_t r = 0; r < rows; ++r) std::memset(cols + r * Kp + K, 0, Kp - K);
        a = cols;
        lda = Kp;
      }
      const RequantStore r = tile_rq(row0, g);
      kernel(GemmTile{a, lda, rows, w.groups[g].get(), 0, panels, acc, OCg,
                      fused ? &r : nullptr});
      if (!fused) sink(row0, rows, acc, OCg, g);
    }
  };
  if (num_threads() > 1 && blocks > 1 && work > 2e6)
    parallel_for(blocks, run);
  else
    for (int64_t i = 0; i < blocks; ++i) run(i);
}

// Depthwise, multiplier 1: output rows (n, oh), each [OW, C], handed to the sink whole.
void dw_rows(const uint8_t* nhwc, const ConvShape& s, const PackedConv& w, uint8_t x_zp,
             Impl impl, Arith arith, const RowSink& sink, const RequantOut* rq) {
  const std::string missing = impl_missing_feature(impl);
  if (!missing.empty())
    throw std::invalid_argument(std::string("impl '") + impl_name(impl) +
                                "' cannot run on this CPU: missing " + missing);
  const int64_t OH = s.OH(), OW = s.OW(), T = s.KH * s.KW, C = s.C;
  std::vector<uint8_t> zrow(static_cast<size_t>(C + 16), x_zp);
  DwNhwcArgs a{nhwc, w.dw.data(), s, zrow.data(),
               arith == Arith::Sat16Pair && w.pairing == Pairing::Flat};
  std::vector<int16_t> wp;
#if defined(FASTQ_HAVE_X86)
  const bool fast = impl != Impl::Ref;
#else
  const bool fast = false;
#endif
  const bool wide = fast && impl == Impl::Avx512Vnni;  // 32-channel blocks, fused requant
  std::vector<int32_t> z32;
  std::vector<float> mu;
  DwRequant drq{};
  if (wide) {
    if (w.dw512.empty()) {
      wp.resize(static_cast<size_t>(dw_nhwc512_pairs_size(C, T)));
      dw_nhwc512_pack_pairs(w.dw.data(), C, T, wp.data());
    }
    if (rq) {
      const int64_t CP = (C + 31) / 32 * 32;
      z32.resize(static_cast<size_t>(CP));
      mu.resize(static_cast<size_t>(CP));
      dw_nhwc512_lane_order(rq->zcomp, rq->mult, C, z32.data(), mu.data());
      drq = DwRequant{z32.data(), mu.data(), rq->y_zp, rq->y_signed, C};
    }
  } else if (fast) {
    wp.resize(static_cast<size_t>(dw_nhwc_pairs_size(C, T)));
    dw_nhwc_pack_pairs(w.dw.data(), C, T, wp.data());
  }
  const int16_t* w512 = w.dw512.empty() ? wp.data() : w.dw512.data();
  const int16_t* wv = w.dw512v.empty() ? nullptr : w.dw512v.data();
  auto row = [&](int64_t r) {
#if defined(FASTQ_HAVE_X86)
    if (wide && rq) {
      conv_dw_nhwc_row_avx512(a, w512, wv, r / OH, r % OH, nullptr, &drq,
                              rq->out + r * OW * C);
      return;
    }
#endif
    int32_t* acc = scratch_as<int32_t>(Scratch::ConvAcc, static_cast<size_t>(OW * C));
#if defined(FASTQ_HAVE_X86)
    if (wide)
      conv_dw_nhwc_row_avx512(a, w512, wv, r / OH, r % OH, acc, nullptr, nullptr);
    else if (fast)
      conv_dw_nhwc_row_avx2(a, wp.data(), r / OH, r % OH, acc);
    else
#endif
      conv_dw_nhwc_row_ref(a, r / OH, r % OH, acc);
    sink(r * OW, OW, acc, C, 0);
  };
  const int64_t rows = s.N * OH;
  if (num_threads() > 1 && rows * OW * C * T > (1 << 18))
    parallel_for(rows, row);
  else
    for (int64_t r = 0; r < rows; ++r) row(r);
}

void run_nhwc(const uint8_t* x, bool x_nhwc, const ConvShape& s, const PackedConv& w,
              uint8_t x_zp, Impl impl, Arith arith, const RowSink& sink,
              const RequantOut* rq = nullptr) {
  check(s, w);
  if (!w.dw.empty() && s.OC == s.C) {
    dw_rows(as_nhwc(x, x_nhwc, s), s, w, x_zp, impl, arith, sink, rq);
  } else if (!w.dw.empty()) {  // depthwise with a channel multiplier: the NCHW kernel
    const int64_t HW = s.H * s.W, OHW = s.OH() * s.OW();
    const uint8_t* xc = x;
    if (x_nhwc) {
      uint8_t* t = scratch_as<uint8_t>(Scratch::ConvNhwc, static_cast<size_t>(s.N * HW * s.C));
      for (int64_t n = 0; n < s.N; ++n)
        transpose2d(x + n * HW * s.C, HW, s.C, s.C, t + n * s.C * HW, HW);
      xc = t;
    }
    std::vector<int32_t> nchw(static_cast<size_t>(s.N * s.OC * OHW));
    conv_u8s8(xc, s, w, x_zp, nchw.data(), impl, arith);
    std::vector<int32_t> rows(static_cast<size_t>(OHW * s.OC));
    for (int64_t n = 0; n < s.N; ++n) {
      transpose2d(nchw.data() + n * s.OC * OHW, s.OC, OHW, OHW, rows.data(), s.OC);
      sink(n * OHW, OHW, rows.data(), s.OC, 0);
    }
  } else {
    gemm_rows(x, x_nhwc, s, w, x_zp, impl, arith, sink, rq);
  }
}

}  // namespace

void conv_u8s8_nhwc_rows(const uint8_t* x, bool x_nhwc, const ConvShape& s, const PackedConv& w,
                         uint8_t x_zp, Impl impl, Arith arith, const ConvRowSink& sink) {
  run_nhwc(x, x_nhwc, s, w, x_zp, impl, arith, sink);
}

void conv_u8s8_nhwc(const uint8_t* x, bool x_nhwc, const ConvShape& s, const PackedConv& w,
                    uint8_t x_zp, int32_t* out, Impl impl, Arith arith) {
  const int64_t OC = s.OC, OCg = s.OCg();
  run_nhwc(x, x_nhwc, s, w, x_zp, impl, arith,
           [&](int64_t row0, int64_t rows, const int32_t* acc, int64_t lda, int64_t g) {
             const int64_t width = w.dw.empty() ? OCg : OC;
             for (int64_t r = 0; r < rows; ++r)
               std::memcpy(out + (row0 + r) * OC + g * OCg, acc + r * lda,
                           static_cast<size_t>(width) * sizeof(int32_t));
           });
}

void qconv_requant_nhwc(const uint8_t* x, bool x_nhwc, const ConvShape& s, const PackedConv& w,
                        uint8_t x_zp, const int64_t* zcomp, const float* mult, int32_t y_zp,
                        bool y_signed, void* out, Impl impl, Arith arith) {
  const int64_t OC = s.OC, OCg = s.OCg();
  uint8_t* o = static_cast<uint8_t*>(out);  // 1-byte elements either way
  const RequantOut rq{zcomp, mult, y_zp, y_signed, o};
  run_nhwc(x, x_nhwc, s, w, x_zp, impl, arith,
           [&](int64_t row0, int64_t rows, const int32_t* acc, int64_t lda, int64_t g) {
             const int64_t c0 = w.dw.empty() ? g * OCg : 0;
             const int64_t width = w.dw.empty() ? OCg : OC;
             requantize_rows(acc, rows, width, lda, zcomp + c0, mult + c0, y_zp, y_signed,
                             o + row0 * OC + c0, OC);
           },
           &rq);
}

void qconv_dequant_nhwc(const uint8_t* x, bool x_nhwc, const ConvShape& s, const PackedConv& w,
                        uint8_t x_zp, float x_scale, const float* w_scales, int64_t n_scales,
                        const float* bias, float* out, Impl impl, Arith arith) {
  const int64_t OC = s.OC, OCg = s.OCg();
  const bool dw = !w.dw.empty();
  // qlinear_epilogue's terms per group of output channels (one group for depthwise: its
  // rows cover every channel)
  std::vector<QlinearEpilogue> epi;
  for (int64_t g = 0, groups = dw ? 1 : s.group; g < groups; ++g) {
    const int64_t c0 = g * OCg, width = dw ? OC : OCg;
    epi.emplace_back(w.colsum.data() + c0, width, x_zp, x_scale,
                     n_scales == 1 ? w_scales : w_scales + c0, n_scales,
                     bias ? bias + c0 : nullptr);
  }
  run_nhwc(x, x_nhwc, s, w, x_zp, impl, arith,
           [&](int64_t row0, int64_t rows, const int32_t* acc, int64_t lda, int64_t g) {
             const QlinearEpilogue& e = epi[static_cast<size_t>(dw ? 0 : g)];
             float* o = out + row0 * OC + (dw ? 0 : g * OCg);
             for (int64_t r = 0; r < rows; ++r) e.row(acc + r * lda, o + r * OC);
           });
}

}  // namespace fastq
