// int8 convolution driver: NCHW -> NHWC once, im2col rows in (kh, kw, c) order (per-tap
// channel padding for Pairing::PerTap), one GEMM per group on the shared GEMM kernels, then
// the result (raw sums or the qlinear epilogue) scattered back to NCHW.
// Padded channels carry zero weights, so the value stored in them never matters (0 is used).
#include "fastq/conv.h"

#include <algorithm>
#include <cstring>
#include <functional>

#include "fastq/conv_dw.h"
#include "fastq/scratch.h"
#include "fastq/threads.h"
#include "fastq/transpose.h"

namespace fastq {

std::shared_ptr<PackedConv> pack_conv(const int8_t* w, int64_t OC, int64_t Cg, int64_t KH,
                                      int64_t KW, int64_t group, Pairing pairing) {
  auto pc = std::make_shared<PackedConv>();
  pc->OC = OC;
  pc->Cg = Cg;
  pc->KH = KH;
  pc->KW = KW;
  pc->group = group;
  pc->pairing = pairing;
  pc->Cpad = pairing == Pairing::PerTap ? round_up(Cg, 2) : Cg;
  const int64_t OCg = OC / group, K = pc->K();
  if (Cg == 1) pc->dw.assign(w, w + OC * KH * KW);  // [OC, 1, KH, KW] is already [OC, taps]
  if (Cg == 1 && group == OC) {
    pc->dw512.resize(static_cast<size_t>(dw_nhwc512_pairs_size(OC, KH * KW)));
    dw_nhwc512_pack_pairs(w, OC, KH * KW, pc->dw512.data());
    if (KH == 3 && KW == 3) {
      pc->dw512v.resize(static_cast<size_t>(dw_nhwc512_vert_size(OC)));
      dw_nhwc512_pack_vert(w, OC, pc->dw512v.data());
    }
  }
  std::vector<int8_t> b(static_cast<size_t>(K * OCg));
  for (int64_t g = 0; g < group; ++g) {
    std::fill(b.begin(), b.end(), 0);
    for (int64_t j = 0; j < OCg; ++j) {
      const int64_t oc = g * OCg + j;
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t kh = 0; kh < KH; ++kh)
          for (int64_t kw = 0; kw < KW; ++kw)
            b[((kh * KW + kw) * pc->Cpad + c) * OCg + j] = w[((oc * Cg + c) * KH + kh) * KW + kw];
    }
    pc->groups.push_back(pack_b(b.data(), K, OCg, OCg, 1));
    const auto& cs = pc->groups.back()->colsum;
    pc->colsum.insert(pc->colsum.end(), cs.begin(), cs.end());
  }
  return pc;
}

void im2col_nhwc(const uint8_t* nhwc, const ConvShape& s, const PackedConv& w, int64_t g,
                 uint8_t x_zp, int64_t row0, int64_t rows, uint8_t* cols, int64_t ld) {
  const int64_t OH = s.OH(), OW = s.OW(), Cg = w.Cg, Cp = w.Cpad;
  int64_t n = row0 / (OH * OW), oh = (row0 / OW) % OH, ow = row0 % OW - 1;
  for (int64_t r = 0; r < rows; ++r) {
    if (++ow == OW) {  // next output pixel without divisions
      ow = 0;
      if (++oh == OH) oh = 0, ++n;
    }
    uint8_t* dst = cols + r * ld;
    const int64_t iw0 = ow * s.stride_w - s.pad_left;
    // an ungrouped, undilated row of taps inside the input is one contiguous run
    const bool run = Cg == s.C && Cp == Cg && s.dil_w == 1 && iw0 >= 0 && iw0 + s.KW <= s.W;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      const int64_t ih = oh * s.stride_h - s.pad_top + kh * s.dil_h;
      if (run && ih >= 0 && ih < s.H) {
        std::memcpy(dst, nhwc + ((n * s.H + ih) * s.W + iw0) * s.C, s.KW * Cg);
        dst += s.KW * Cg;
        continue;
      }
      for (int64_t kw = 0; kw < s.KW; ++kw, dst += Cp) {
        const int64_t iw = ow * s.stride_w - s.pad_left + kw * s.dil_w;
        if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) {
          const uint8_t* src = nhwc + ((n * s.H + ih) * s.W + iw) * s.C + g * Cg;
          if (Cg < 16) {  // a call per few bytes costs more than the copy
            for (int64_t c = 0; c < Cg; ++c) dst[c] = src[c];
          } else {
            std::memcpy(dst, src, Cg);
          }
        } else {
          std::memset(dst, x_zp, Cg);
        }
        if (Cp > Cg) dst[Cg] = 0;
      }
    }
  }
}

namespace {

void check_shape(const ConvShape& s, const PackedConv& w) {
  if (s.group != w.group || s.C != w.Cg * w.group || s.OC != w.OC || s.KH != w.KH ||
      s.KW != w.KW)
    throw std::invalid_argument("conv input/weight shapes do not match the packed weights");
  if (s.OH() <= 0 || s.OW() <= 0)
    throw std::invalid_argument("conv output would be empty: kernel larger than padded input");
}

// Runs every group's GEMM and hands its [M = N*OH*OW, OC/group] s32 result to `sink`.
void run_groups(const uint8_t* x, const ConvShape& s, const PackedConv& w, uint8_t x_zp,
                Impl impl, Arith arith,
                const std::function<void(int64_t g, const int32_t* acc, int64_t M)>& sink) {
  check_shape(s, w);
  const int64_t OH = s.OH(), OW = s.OW(), Cg = w.Cg, Cp = w.Cpad, K = w.K();
  const int64_t HW = s.H * s.W, M = s.N * OH * OW;
  // NHWC copy of the input so every tap's channels are one contiguous run.
  uint8_t* nhwc = scratch_as<uint8_t>(Scratch::ConvNhwc, static_cast<size_t>(s.N * HW * s.C));
  parallel_for(s.N, [&](int64_t n) {
    transpose2d(x + n * s.C * HW, s.C, HW, HW, nhwc + n * HW * s.C, s.C);
  });
  // A 1x1, stride-1, unpadded, ungrouped conv over even (or flat-paired) channels reads the
  // NHWC input as its im2col matrix as is.
  const bool direct = s.group == 1 && s.KH == 1 && s.KW == 1 && s.stride_h == 1 &&
                      s.stride_w == 1 && s.pad_top == 0 && s.pad_left == 0 &&
                      s.pad_bottom == 0 && s.pad_right == 0 && Cp == Cg;
  uint8_t* cols = direct ? nullptr
                         : scratch_as<uint8_t>(Scratch::ConvCols, static_cast<size_t>(M * K));
  int32_t* acc = scratch_as<int32_t>(Scratch::ConvAcc, static_cast<size_t>(M * s.OCg()));
  for (int64_t g = 0; g < s.group; ++g) {
    if (direct) {
      gemm_u8s8(nhwc, M, K, *w.groups[g], acc, s.OCg(), impl, arith);
      sink(g, acc, M);
      continue;
    }
    parallel_for(s.N * OH, [&](int64_t row) {
      im2col_nhwc(nhwc, s, w, g, x_zp, row * OW, OW, cols + row * OW * K, K);
    });
    gemm_u8s8(cols, M, K, *w.groups[g], acc, s.OCg(), impl, arith);
    sink(g, acc, M);
  }
}

// [M, OCg] rows (m = (n*OH + oh)*OW + ow) -> out[n, g*OCg + j, oh, ow]
template <class T>
void scatter_nchw(const T* src, int64_t g, const ConvShape& s, T* out) {
  const int64_t OHW = s.OH() * s.OW(), OCg = s.OCg();
  parallel_for(s.N, [&](int64_t n) {
    transpose2d(src + n * OHW * OCg, OHW, OCg, OCg, out + (n * s.OC + g * OCg) * OHW, OHW);
  });
}

}  // namespace

void conv_u8s8(const uint8_t* x, const ConvShape& s, const PackedConv& w, uint8_t x_zp,
               int32_t* out, Impl impl, Arith arith) {
  if (!w.dw.empty()) {  // one input channel per group: direct kernel, same contract
    check_shape(s, w);
    conv_dw_u8s8(x, s, w.dw.data(), w.pairing, x_zp, out, impl, arith);
    return;
  }
  run_groups(x, s, w, x_zp, impl, arith, [&](int64_t g, const int32_t* acc, int64_t) {
    scatter_nchw(acc, g, s, out);
  });
}

void qconv(const void* x, bool x_signed, const ConvShape& s, const PackedConv& w, int32_t x_zp,
           float x_scale, const float* w_scales, int64_t n_scales, const float* bias,
           float* out, Impl impl, Arith arith) {
  const uint8_t* xu = static_cast<const uint8_t*>(x);
  const int64_t count = s.N * s.C * s.H * s.W;
  if (x_signed) {  // s8 -> u8 by +128; the zero point moves with it
    uint8_t* shifted = scratch_as<uint8_t>(Scratch::QlinearA, static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) shifted[i] = xu[i] ^ 0x80;
    xu = shifted;
    x_zp += 128;
  }
  const int64_t OCg = s.OCg(), OHW = s.OH() * s.OW();
  if (!w.dw.empty()) {  // direct depthwise sums, then the qlinear epilogue per plane
    check_shape(s, w);
    int32_t* acc = scratch_as<int32_t>(Scratch::ConvAcc, static_cast<size_t>(s.N * s.OC * OHW));
    conv_dw_u8s8(xu, s, w.dw.data(), w.pairing, static_cast<uint8_t>(x_zp), acc, impl, arith);
    parallel_for(s.N * s.OC, [&](int64_t p) {
      const int64_t oc = p % s.OC;
      // the operation order of qlinear_epilogue, so both paths give the same floats
      const float scale = x_scale * w_scales[n_scales == 1 ? 0 : oc];
      const int64_t zc = int64_t(x_zp) * w.colsum[oc];
      const int32_t* a = acc + p * OHW;
      float* o = out + p * OHW;
      for (int64_t i = 0; i < OHW; ++i) {
        const float v = static_cast<float>(int64_t(a[i]) - zc) * scale;
        o[i] = bias ? v + bias[oc] : v;
      }
    });
    return;
  }
  // The epilogue runs on blocks of output pixels into a small tile that is transposed into
  // the NCHW planes at once, so no layer-sized float buffer is written and read back.
  constexpr int64_t kRows = 64;
  std::vector<float> tile(static_cast<size_t>(kRows * OCg));
  run_groups(xu, s, w, static_cast<uint8_t>(x_zp), impl, arith,
             [&](int64_t g, const int32_t* acc, int64_t M) {
               const bool per_channel = n_scales != 1;
               for (int64_t m0 = 0; m0 < M; m0 += kRows) {
                 const int64_t n = m0 / OHW, p0 = m0 % OHW;
                 const int64_t rows = std::min(kRows, OHW - p0);  // stay inside one image
                 qlinear_epilogue(acc + m0 * OCg, rows, OCg, w.colsum.data() + g * OCg, x_zp,
                                  x_scale, per_channel ? w_scales + g * OCg : w_scales,
                                  per_channel ? OCg : 1, bias ? bias + g * OCg : nullptr,
                                  tile.data());
                 transpose2d(tile.data(), rows, OCg, OCg,
                             out + (n * s.OC + g * OCg) * OHW + p0, OHW);
                 m0 -= kRows - rows;  // next block starts right after this one
               }
             });
}

}  // namespace fastq
