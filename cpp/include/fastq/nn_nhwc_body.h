// Bodies of the NHWC float32 conv kernels (nn_nhwc.h), built once per ISA: the portable
// build (Impl::Ref, 16-byte vectors, separate multiply and add), avx2/ (32-byte, FMA) and
// avx512vnni/ (64-byte, FMA) each include this with FASTQ_NHWC_VEC_BYTES set. GCC/Clang
// vector types, not intrinsics, except the fused multiply-add and the broadcast per width.
// Internal linkage (anonymous namespace) keeps the per-ISA copies apart (no ODR clash).
#pragma once
#include <algorithm>
#include <cstring>
#include <vector>

#include "fastq/nn_nhwc.h"

#if defined(__GNUC__) && (defined(__FMA__) || defined(__AVX512F__))
#include <immintrin.h>
#endif

#ifndef FASTQ_NHWC_VEC_BYTES
#define FASTQ_NHWC_VEC_BYTES 16
#endif

namespace fastq {
namespace nn {
namespace {  // NOLINT: deliberate, see above

typedef float VF __attribute__((vector_size(FASTQ_NHWC_VEC_BYTES)));
constexpr int kL = FASTQ_NHWC_VEC_BYTES / 4;  // floats per vector
// GEMM register tile: kMR rows (broadcast from X) x kNV vectors (kNR columns of a panel).
// 64-byte: 24 accumulators + 2 weights + 1 broadcast of 32 zmm; 32-byte: 12 + 2 + 1 of 16
// ymm; 16-byte (portable SSE2, no FMA): 8 + 4 + 1 of 16 xmm.
#if FASTQ_NHWC_VEC_BYTES == 64
constexpr int kMR = 12, kNV = 2;
#elif FASTQ_NHWC_VEC_BYTES == 32
constexpr int kMR = 6, kNV = 2;
#else
constexpr int kMR = 2, kNV = 4;
#endif
constexpr int kNR = kL * kNV;
constexpr int kMaxTaps = 64;  // kernel extent limit per axis (nn_nhwc.cpp checks it)

inline VF vload(const float* p) {
  VF v;
  std::memcpy(&v, p, sizeof(VF));
  return v;
}
inline void vstore(float* p, VF v) { std::memcpy(p, &v, sizeof(VF)); }
// Every lane v: one broadcast instruction (a generic lane loop compiles to insert chains;
// VF{} + v keeps an add of +0.0, which is no identity for -0.0).
inline VF vset1(float v) {
#if FASTQ_NHWC_VEC_BYTES == 64 && defined(__AVX512F__)
  return (VF)_mm512_set1_ps(v);
#elif FASTQ_NHWC_VEC_BYTES == 32 && defined(__FMA__)
  return (VF)_mm256_set1_ps(v);
#elif FASTQ_NHWC_VEC_BYTES == 16
  return VF{v, v, v, v};
#else
#error "FASTQ_NHWC_VEC_BYTES must be 16, 32 (AVX2+FMA build) or 64 (AVX-512 build)"
#endif
}

// acc + a * b, fused (one rounding) in the FMA builds.
inline VF vmadd(VF acc, VF a, VF b) {
#if FASTQ_NHWC_VEC_BYTES == 64 && defined(__AVX512F__)
  return (VF)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)acc);
#elif FASTQ_NHWC_VEC_BYTES == 32 && defined(__FMA__)
  return (VF)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)acc);
#else
  return acc + a * b;
#endif
}

inline float smadd(float acc, float a, float b) {
#if defined(__FMA__) || defined(__AVX512F__)
  return __builtin_fmaf(a, b, acc);
#else
  return acc + a * b;
#endif
}

inline VF vclamp(VF v, VF lo, VF hi) {
  v = v < lo ? lo : v;  // NaN passes through (compare false)
  return v > hi ? hi : v;
}
inline float sclamp(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// ---- GEMM ---------------------------------------------------------------------------------

// kMR rows of X times one packed panel (K + 1 rows of kNR, the last the bias), using the
// panel's first NV vectors: the first mr rows and ncols (<= NV*kL) columns go to y (row
// stride ldy). Row r's K = nseg*kseg reduction values are nseg runs of kseg floats, run s at
// x + r*ldx + s*ldseg (one run for a plain row; a conv's kernel rows for an im2col-free
// tile).
template <int NV>
void gemm_tile(const float* x, int64_t ldx, int64_t nseg, int64_t ldseg, int64_t kseg,
               const float* panel, float lo, float hi, float* y, int64_t ldy, int mr,
               int64_t ncols) {
  VF acc[kMR][NV];
  const float* bias = panel + nseg * kseg * kNR;
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = vload(bias + v * kL);
  const float* w = panel;
  for (int64_t sg = 0; sg < nseg; ++sg) {
    const float* xr[kMR];
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r) xr[r] = x + sg * ldseg + r * ldx;
    for (int64_t k = 0; k < kseg; ++k, w += kNR) {
      VF wv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) wv[v] = vload(w + v * kL);
#pragma GCC unroll 16
      for (int r = 0; r < kMR; ++r) {
        const VF xb = vset1(xr[r][k]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] = vmadd(acc[r][v], xb, wv[v]);
      }
    }
  }
  const VF lov = vset1(lo), hiv = vset1(hi);
  const bool full = ncols == NV * kL;
  float tmp[NV * kL];
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r) {
    if (r < mr) {
      float* d = full ? y + r * ldy : tmp;
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) vstore(d + v * kL, vclamp(acc[r][v], lov, hiv));
      if (!full) std::memcpy(y + r * ldy, tmp, sizeof(float) * ncols);
    }
  }
}

// One tile of kMR rows times every panel; a last panel with few columns runs only the
// vectors it needs (M = 24 on 16-wide panels: 8 columns, not 16).
inline void gemm_panels(const float* x, int64_t ldx, int64_t nseg, int64_t ldseg, int64_t kseg,
                        const float* packed, int64_t M, float lo, float hi, float* y, int mr) {
  const int64_t K = nseg * kseg, npanel = (M + kNR - 1) / kNR;
  for (int64_t j = 0; j < npanel; ++j) {
    const float* panel = packed + j * (K + 1) * kNR;
    const int64_t nc = std::min<int64_t>(kNR, M - j * kNR);
    float* yj = y + j * kNR;
    if (nc <= kL)
      gemm_tile<1>(x, ldx, nseg, ldseg, kseg, panel, lo, hi, yj, M, mr, nc);
    else if (kNV > 2 && nc <= 2 * kL)
      gemm_tile<(kNV > 2 ? 2 : kNV)>(x, ldx, nseg, ldseg, kseg, panel, lo, hi, yj, M, mr, nc);
    else
      gemm_tile<kNV>(x, ldx, nseg, ldseg, kseg, panel, lo, hi, yj, M, mr, nc);
  }
}

// Rows [p0, p1) of the output pixels (n, oh, ow) of a 1x1 (im2col false) or general conv
// on NHWC x: whole tiles of kMR pixels (p0 is a multiple of kMR). A tile whose input rows
// are one uniform stride apart (1x1: stride 1, or within one output row; general conv:
// within one output row with every tap inside the input and dilation 1 along W) is read in
// place; other tiles (borders, the last short tile) are first gathered into a buffer in
// (kh, kw, c) order, zeros outside the input.
void gemm_rows_body(const float* x, bool im2col, const NhwcGeom& g, const float* packed,
                    int64_t M, float lo, float hi, float* y, int64_t p0, int64_t p1) {
  const int64_t C = g.C, K = im2col ? g.KH * g.KW * C : C;
  const int64_t plane = g.OH * g.OW;
  std::vector<float> buf(static_cast<size_t>(kMR * K));
  for (int64_t p = p0; p < p1; p += kMR) {
    const int mr = static_cast<int>(std::min<int64_t>(kMR, p1 - p));
    const int64_t n = p / plane, oh = (p % plane) / g.OW, ow = p % g.OW;
    float* yp = y + p * M;
    const bool one_row = mr == kMR && ow + kMR <= g.OW;
    if (!im2col) {
      if (mr == kMR && ((g.SH == 1 && g.SW == 1) || one_row)) {
        // stride 1: every pixel's row follows the last (OW == W, OH == H)
        gemm_panels(x + ((n * g.H + oh * g.SH) * g.W + ow * g.SW) * C, g.SW * C, 1, 0, K,
                    packed, M, lo, hi, yp, mr);
        continue;
      }
    } else if (one_row && g.DW == 1) {
      const int64_t ih0 = oh * g.SH - g.PH, iw0 = ow * g.SW - g.PW;
      if (ih0 >= 0 && ih0 + (g.KH - 1) * g.DH < g.H && iw0 >= 0 &&
          iw0 + (kMR - 1) * g.SW + g.KW <= g.W) {
        gemm_panels(x + ((n * g.H + ih0) * g.W + iw0) * C, g.SW * C, g.KH, g.DH * g.W * C,
                    g.KW * C, packed, M, lo, hi, yp, mr);
        continue;
      }
    }
    for (int r = 0; r < kMR; ++r) {
      float* d = buf.data() + r * K;
      if (r >= mr) {
        std::fill(d, d + K, 0.0f);
        continue;
      }
      const int64_t q = p + r, qn = q / plane, qh = (q % plane) / g.OW, qw = q % g.OW;
      if (!im2col) {
        const float* s = x + ((qn * g.H + qh * g.SH) * g.W + qw * g.SW) * C;
        std::copy(s, s + C, d);
        continue;
      }
      for (int64_t kh = 0; kh < g.KH; ++kh) {
        const int64_t ih = qh * g.SH - g.PH + kh * g.DH;
        for (int64_t kw = 0; kw < g.KW; ++kw, d += C) {
          const int64_t iw = qw * g.SW - g.PW + kw * g.DW;
          if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) {
            std::fill(d, d + C, 0.0f);
          } else {
            const float* s = x + ((qn * g.H + ih) * g.W + iw) * C;
            std::copy(s, s + C, d);
          }
        }
      }
    }
    gemm_panels(buf.data(), K, 1, 0, K, packed, M, lo, hi, yp, mr);
  }
}

// ---- depthwise ----------------------------------------------------------------------------

// The depthwise accumulators of NP pixels x NV channel vectors: start at the bias (or 0);
// stored clamped, pixels C floats apart.
template <int NP, int NV>
inline void dw_acc_init(VF (&acc)[NP][NV], const float* bias) {
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const VF b = bias ? vload(bias + v * kL) : VF{};
#pragma GCC unroll 16
    for (int j = 0; j < NP; ++j) acc[j][v] = b;
  }
}

template <int NP, int NV>
inline void dw_acc_store(const VF (&acc)[NP][NV], int64_t C, VF lo, VF hi, float* y) {
#pragma GCC unroll 16
  for (int j = 0; j < NP; ++j)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) vstore(y + j * C + v * kL, vclamp(acc[j][v], lo, hi));
}

// NP output pixels (input columns `step` floats apart, tap row kh at xs[kh], tap 0 of
// pixel 0) x NV channel vectors: bias, taps kh in [kh0, kh1), kw in [kw0, kw1) in that
// order, clamp, store NP pixels C floats apart. xs, w, bias and y start at the block's
// first channel.
template <int NP, int NV>
inline void dw_vecs(const float* const* xs, int64_t kh0, int64_t kh1, int64_t kw0,
                    int64_t kw1, int64_t KW, int64_t dwc, int64_t step, const float* w,
                    int64_t C, const float* bias, VF lo, VF hi, float* y) {
  VF acc[NP][NV];
  dw_acc_init<NP, NV>(acc, bias);
  for (int64_t kh = kh0; kh < kh1; ++kh) {
    const float* xrow = xs[kh];
    const float* wrow = w + kh * KW * C;
    for (int64_t kw = kw0; kw < kw1; ++kw) {
      const float* xp = xrow + kw * dwc;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        const VF wv = vload(wrow + kw * C + v * kL);
#pragma GCC unroll 8
        for (int j = 0; j < NP; ++j)
          acc[j][v] = vmadd(acc[j][v], vload(xp + j * step + v * kL), wv);
      }
    }
  }
  dw_acc_store<NP, NV>(acc, C, lo, hi, y);
}

// The same for one pixel and the channels [c0, C) one at a time (the channel tail).
inline void dw_scalar(const float* const* xs, int64_t kh0, int64_t kh1, int64_t kw0,
                      int64_t kw1, int64_t KW, int64_t dwc, const float* w, int64_t C,
                      const float* bias, float lo, float hi, int64_t c0, float* y) {
  for (int64_t c = c0; c < C; ++c) {
    float acc = bias ? bias[c] : 0.0f;
    for (int64_t kh = kh0; kh < kh1; ++kh)
      for (int64_t kw = kw0; kw < kw1; ++kw)
        acc = smadd(acc, xs[kh][kw * dwc + c], w[(kh * KW + kw) * C + c]);
    y[c] = sclamp(acc, lo, hi);
  }
}

// dw_vecs for the common 3-wide kernel row (all three kw taps inside the input), unrolled.
// Undilated with stride S = 1 or 2, pixel j's tap kw is input column S*j + kw, so each
// input vector is loaded once and used by every pixel that reads it (stride 1: three,
// stride 2: tap 2 of pixel j is tap 0 of pixel j + 1); S = 0: any stride/dilation, no
// sharing. Same per-lane sequence (bias, taps in (kh, kw) order, clamp) as dw_vecs.
template <int NP, int NV, int S>
inline void dw_vecs_k3(const float* const* xs, int64_t kh0, int64_t kh1, int64_t dwc,
                       int64_t step, const float* w, int64_t C, const float* bias, VF lo,
                       VF hi, float* y) {
  VF acc[NP][NV];
  dw_acc_init<NP, NV>(acc, bias);
  for (int64_t kh = kh0; kh < kh1; ++kh) {
    const float* xrow = xs[kh];
    const float* wrow = w + kh * 3 * C;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const VF w0 = vload(wrow + v * kL), w1 = vload(wrow + C + v * kL),
               w2 = vload(wrow + 2 * C + v * kL);
      if constexpr (S == 1 || S == 2) {
#pragma GCC unroll 18
        for (int i = 0; i < S * (NP - 1) + 3; ++i) {  // input columns, in order
          const VF xv = vload(xrow + i * C + v * kL);
          if (i % S == 0 && i / S < NP) acc[i / S][v] = vmadd(acc[i / S][v], xv, w0);
          if (i >= 1 && (i - 1) % S == 0 && (i - 1) / S < NP)
            acc[(i - 1) / S][v] = vmadd(acc[(i - 1) / S][v], xv, w1);
          if (i >= 2 && (i - 2) % S == 0 && (i - 2) / S < NP)
            acc[(i - 2) / S][v] = vmadd(acc[(i - 2) / S][v], xv, w2);
        }
      } else {
#pragma GCC unroll 16
        for (int j = 0; j < NP; ++j) {
          const float* xp = xrow + j * step + v * kL;
          acc[j][v] = vmadd(acc[j][v], vload(xp), w0);
          acc[j][v] = vmadd(acc[j][v], vload(xp + dwc), w1);
          acc[j][v] = vmadd(acc[j][v], vload(xp + 2 * dwc), w2);
        }
      }
    }
  }
  dw_acc_store<NP, NV>(acc, C, lo, hi, y);
}

// Channel vectors per block of the 3-wide body: 8 pixels x kDwNV accumulators fit the
// register file (16 ymm/xmm: 8 + 3 weights + loads; 32 zmm: 16 + 6 + loads).
constexpr int kDwNV = FASTQ_NHWC_VEC_BYTES == 64 ? 2 : 1;

// All channels of NP pixels: blocks of vectors (the unrolled 3-wide body when the row is
// 3 taps), then single vectors, then the scalar channel tail.
template <int NP>
inline void dw_pixels(const float* const* xs, int64_t kh0, int64_t kh1, int64_t kw0,
                      int64_t kw1, int64_t KW, int64_t dwc, int64_t step, const float* w,
                      int64_t C, const float* bias, float lo, float hi, float* y) {
  const VF lov = vset1(lo), hiv = vset1(hi);
  const float* xsc[kMaxTaps];
  auto shifted = [&](int64_t off) {
    for (int64_t kh = kh0; kh < kh1; ++kh) xsc[kh] = xs[kh] + off;
    return static_cast<const float* const*>(xsc);
  };
  int64_t c = 0;
  if (KW == 3 && kw0 == 0 && kw1 == 3) {
    const int s = dwc != C ? 0 : step == C ? 1 : step == 2 * C ? 2 : 0;
    for (; c + kDwNV * kL <= C; c += kDwNV * kL) {
      const float* bc = bias ? bias + c : nullptr;
      if (s == 1)
        dw_vecs_k3<NP, kDwNV, 1>(shifted(c), kh0, kh1, dwc, step, w + c, C, bc, lov, hiv,
                                 y + c);
      else if (s == 2)
        dw_vecs_k3<NP, kDwNV, 2>(shifted(c), kh0, kh1, dwc, step, w + c, C, bc, lov, hiv,
                                 y + c);
      else
        dw_vecs_k3<NP, kDwNV, 0>(shifted(c), kh0, kh1, dwc, step, w + c, C, bc, lov, hiv,
                                 y + c);
    }
  }
  for (; c + 2 * kL <= C; c += 2 * kL)
    dw_vecs<NP, 2>(shifted(c), kh0, kh1, kw0, kw1, KW, dwc, step, w + c, C,
                   bias ? bias + c : nullptr, lov, hiv, y + c);
  for (; c + kL <= C; c += kL)
    dw_vecs<NP, 1>(shifted(c), kh0, kh1, kw0, kw1, KW, dwc, step, w + c, C,
                   bias ? bias + c : nullptr, lov, hiv, y + c);
  if (c < C)
    for (int j = 0; j < NP; ++j)
      dw_scalar(shifted(j * step), kh0, kh1, kw0, kw1, KW, dwc, w, C, bias, lo, hi, c,
                y + j * C);
}

// Two output rows (oh, oh + 1) of NP pixels x one channel vector of a 3x3 stride-1
// undilated depthwise conv, every tap of both rows inside the input: the four input rows'
// vectors are loaded once each and feed both rows (up to six multiply-adds per load; the
// loop is load-bound). x0: input row oh - PH at the column of pixel 0's tap 0; rows ldrow
// floats apart. Per lane the same sequence as dw_vecs: bias, taps in (kh, kw) order, clamp.
// Needs 2*NP accumulators + 9 weights in registers: the 32-register AVX-512 build only.
template <int NP>
inline void dw_2rows_k3s1(const float* x0, int64_t ldrow, const float* w, int64_t C,
                          const float* bias, VF lo, VF hi, float* y0, float* y1) {
  VF a0[NP], a1[NP], wk[9];
  const VF b = bias ? vload(bias) : VF{};
#pragma GCC unroll 16
  for (int j = 0; j < NP; ++j) a0[j] = a1[j] = b;
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t) wk[t] = vload(w + t * C);
#pragma GCC unroll 4
  for (int r = 0; r < 4; ++r) {
    const float* xr = x0 + r * ldrow;
#pragma GCC unroll 18
    for (int i = 0; i < NP + 2; ++i) {
      const VF xv = vload(xr + i * C);
#pragma GCC unroll 3
      for (int kw = 0; kw < 3; ++kw) {
        const int j = i - kw;
        if (j < 0 || j >= NP) continue;
        if (r < 3) a0[j] = vmadd(a0[j], xv, wk[r * 3 + kw]);
        if (r >= 1) a1[j] = vmadd(a1[j], xv, wk[(r - 1) * 3 + kw]);
      }
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NP; ++j) {
    vstore(y0 + j * C, vclamp(a0[j], lo, hi));
    vstore(y1 + j * C, vclamp(a1[j], lo, hi));
  }
}

// Output rows [r0, r1) (r = n*OH + oh) of the depthwise conv. Interior pixels (every kw tap
// inside the row) go 8 or 4 at a time; border pixels run only their in-bounds kw taps; tap
// rows outside the input are skipped for the whole row. In the AVX-512 build, pairs of
// 3x3 stride-1 rows with all tap rows inside run their interior through dw_2rows_k3s1.
void dw_rows_body(const float* x, const NhwcGeom& g, const float* w, const float* bias,
                  float lo, float hi, float* y, int64_t r0, int64_t r1) {
  const int64_t C = g.C, KW = g.KW, dwc = g.DW * C, step = g.SW * C;
  // interior: ow*SW - PW >= 0 and ow*SW - PW + (KW-1)*DW <= W - 1
  const int64_t lo_ow = std::min(g.OW, (g.PW + g.SW - 1) / g.SW);
  const int64_t last = g.W - 1 - (KW - 1) * g.DW + g.PW;  // ow*SW <= last
  const int64_t hi_ow = last < 0 ? lo_ow : std::max(lo_ow, std::min(g.OW, last / g.SW + 1));
  const float* xo[kMaxTaps];
  // row r with its first `done` interior pixels already computed
  auto one_row = [&](int64_t r, int64_t done) {
    const int64_t n = r / g.OH, oh = r % g.OH;
    int64_t kh0 = 0, kh1 = g.KH;
    while (kh0 < kh1 && oh * g.SH - g.PH + kh0 * g.DH < 0) ++kh0;
    while (kh1 > kh0 && oh * g.SH - g.PH + (kh1 - 1) * g.DH >= g.H) --kh1;
    // base[kh]: offset of tap row kh's input at column -PW (tap 0 of output 0), as an index
    // (a pointer before the row may not be formed)
    int64_t base[kMaxTaps];
    for (int64_t kh = kh0; kh < kh1; ++kh)
      base[kh] = ((n * g.H + oh * g.SH - g.PH + kh * g.DH) * g.W - g.PW) * C;
    float* yr = y + r * g.OW * C;
    auto at = [&](int64_t ow, int64_t kw0) {  // tap kw0 of pixel ow, per tap row
      for (int64_t kh = kh0; kh < kh1; ++kh) xo[kh] = x + (base[kh] + ow * step + kw0 * dwc);
      return static_cast<const float* const*>(xo);
    };
    auto border = [&](int64_t ow) {
      int64_t kw0 = 0, kw1 = KW;
      while (kw0 < kw1 && ow * g.SW - g.PW + kw0 * g.DW < 0) ++kw0;
      while (kw1 > kw0 && ow * g.SW - g.PW + (kw1 - 1) * g.DW >= g.W) --kw1;
      // pointers start at tap kw0 (in bounds); the weights shift with them
      dw_pixels<1>(at(ow, kw0), kh0, kh1, 0, kw1 - kw0, KW, dwc, step, w + kw0 * C, C, bias,
                   lo, hi, yr + ow * C);
    };
    for (int64_t ow = 0; ow < lo_ow; ++ow) border(ow);
    int64_t ow = lo_ow + done;
    for (; ow + 8 <= hi_ow; ow += 8)
      dw_pixels<8>(at(ow, 0), kh0, kh1, 0, KW, KW, dwc, step, w, C, bias, lo, hi, yr + ow * C);
    for (; ow + 4 <= hi_ow; ow += 4)
      dw_pixels<4>(at(ow, 0), kh0, kh1, 0, KW, KW, dwc, step, w, C, bias, lo, hi, yr + ow * C);
    for (; ow < hi_ow; ++ow)
      dw_pixels<1>(at(ow, 0), kh0, kh1, 0, KW, KW, dwc, step, w, C, bias, lo, hi, yr + ow * C);
    for (ow = hi_ow; ow < g.OW; ++ow) border(ow);
  };
  const bool pairs = FASTQ_NHWC_VEC_BYTES == 64 && g.KH == 3 && KW == 3 && g.SH == 1 &&
                     g.SW == 1 && g.DH == 1 && g.DW == 1 && C % kL == 0;
  const VF lov = vset1(lo), hiv = vset1(hi);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / g.OH, oh = r % g.OH;
    if (pairs && r + 1 < r1 && oh + 1 < g.OH && oh - g.PH >= 0 && oh + 3 - g.PH < g.H) {
      // stride 1: lo_ow == PW, so the interior starts at input column 0
      const float* x0 = x + ((n * g.H + oh - g.PH) * g.W + lo_ow - g.PW) * C;
      float* y0 = y + (r * g.OW + lo_ow) * C;
      const int64_t ldy = g.OW * C, ldx = g.W * C, width = hi_ow - lo_ow;
      int64_t done = 0;
      for (; done + 8 <= width; done += 8)
        for (int64_t c = 0; c < C; c += kL)
          dw_2rows_k3s1<8>(x0 + done * C + c, ldx, w + c, C, bias ? bias + c : nullptr, lov,
                           hiv, y0 + done * C + c, y0 + ldy + done * C + c);
      for (; done + 4 <= width; done += 4)
        for (int64_t c = 0; c < C; c += kL)
          dw_2rows_k3s1<4>(x0 + done * C + c, ldx, w + c, C, bias ? bias + c : nullptr, lov,
                           hiv, y0 + done * C + c, y0 + ldy + done * C + c);
      one_row(r, done);
      one_row(r + 1, done);
      ++r;
      continue;
    }
    one_row(r, 0);
  }
}

NhwcKernels make_nhwc_kernels() {
  return NhwcKernels{kNR, &gemm_rows_body, &dw_rows_body};
}

}  // namespace
}  // namespace nn
}  // namespace fastq
