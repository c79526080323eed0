// Kernel bodies shared by the portable, AVX2 and AVX-512 builds of the depthwise conv and
// the pooling kernels (nn_window.cpp / nn_pool.cpp, avx2/nn_avx2.cpp,
// avx512vnni/nn_avx512.cpp). Plain C++: each build compiles the same source with its own
// flags (FASTQ_NN_VEC_BYTES sets the vector width). Pooling has no multiply-add, so all its
// builds return bit-identical results; the depthwise conv's multiply-adds are fused (one
// rounding) in the FMA builds (dw_madd), so its float results differ from the portable
// build's in the last bits only. Internal linkage (anonymous namespace) keeps the per-ISA
// copies apart, so including this from several object libraries breaks no ODR.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "fastq/nn_f32.h"

#if defined(__GNUC__) && (defined(__FMA__) || defined(__AVX512F__))
#include <immintrin.h>
#endif

namespace fastq {
namespace nn {
namespace {  // NOLINT: deliberate, see above

// Extent of a zero/identity-padded copy along one axis: room for every tap of every window.
inline int64_t padded_extent(const Geom3& g, int a) {
  const int64_t need = (g.out[a] - 1) * g.stride[a] + (g.k[a] - 1) * g.dil[a] + 1;
  return std::max(need, g.pad[a] + g.in[a]);
}

#ifndef FASTQ_NN_VEC_BYTES
#define FASTQ_NN_VEC_BYTES 16  // portable build: one SSE2 register
#endif
// Outputs per block: rows are computed in whole blocks (the output row is padded up to one),
// at least 8 and at least one vector register of T.
template <typename T>
constexpr int64_t dw_block() {
  return FASTQ_NN_VEC_BYTES / sizeof(T) > 8 ? FASTQ_NN_VEC_BYTES / sizeof(T) : 8;
}

// The fused activation's clamp min(max(v, lo), hi); NaN passes through.
template <typename T>
inline T dw_clamp(T v, T lo, T hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// One block of dw_block<T>() outputs, portable form: acc = b, then acc += w[t] * tap t,
// then the clamp.
template <typename T>
inline void dw_block_plain(const T* const* rows, const T* wts, int64_t K, T b, T lo, T hi,
                           int64_t o0, T* out) {
  constexpr int64_t n = dw_block<T>();
  T acc[n];
  for (int64_t j = 0; j < n; ++j) acc[j] = b;
  for (int64_t t = 0; t < K; ++t) {
    const T* s = rows[t] + o0;
    const T wt = wts[t];
    for (int64_t j = 0; j < n; ++j) acc[j] += wt * s[j];
  }
  for (int64_t j = 0; j < n; ++j) out[o0 + j] = dw_clamp(acc[j], lo, hi);
}

#if defined(__GNUC__)
// GCC/Clang vector types (not intrinsics; each build picks the width its registers hold):
// NR output rows x NV vectors of accumulators at once give independent add chains and stay
// in registers, where a plain array would spill. Row r's taps are rows[t] + r*drow.
// Lane-wise the sequence is dw_block_plain's (b, then += w*tap in t order, then the clamp),
// so within one build every block width and row pairing gives the same bits.
template <typename T, typename V>
inline V dw_madd(V acc, T w, V x) {
#if defined(__AVX512F__)
  if constexpr (sizeof(V) == 64 && std::is_same<T, float>::value)
    return (V)_mm512_fmadd_ps((__m512)x, _mm512_set1_ps(w), (__m512)acc);
  if constexpr (sizeof(V) == 64 && std::is_same<T, double>::value)
    return (V)_mm512_fmadd_pd((__m512d)x, _mm512_set1_pd(w), (__m512d)acc);
#endif
#if defined(__FMA__)
  if constexpr (sizeof(V) == 32 && std::is_same<T, float>::value)
    return (V)_mm256_fmadd_ps((__m256)x, _mm256_set1_ps(w), (__m256)acc);
  if constexpr (sizeof(V) == 32 && std::is_same<T, double>::value)
    return (V)_mm256_fmadd_pd((__m256d)x, _mm256_set1_pd(w), (__m256d)acc);
#endif
  return acc + w * x;
}

template <typename T, int NV, int NR>
inline void dw_vecs(const T* const* rows, int64_t drow, const T* wts, int64_t K, T b, T lo,
                    T hi, int64_t o0, T* const* outs) {
  typedef T V __attribute__((vector_size(FASTQ_NN_VEC_BYTES)));
  constexpr int64_t L = FASTQ_NN_VEC_BYTES / sizeof(T);
  const V lov = V{} + lo, hiv = V{} + hi;
  V acc[NR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v] = V{} + b;
  for (int64_t t = 0; t < K; ++t) {
    const T* s = rows[t] + o0;
    const T wt = wts[t];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        V x;
        __builtin_memcpy(&x, s + r * drow + v * L, sizeof(V));
        acc[r][v] = dw_madd(acc[r][v], wt, x);
      }
  }
#pragma GCC unroll 8
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      V a = acc[r][v] < lov ? lov : acc[r][v];
      a = a > hiv ? hiv : a;
      __builtin_memcpy(outs[r] + o0 + v * L, &a, sizeof(V));
    }
}
#endif

// NR (1 or 2) output rows of n_out (a multiple of dw_block<T>()) outputs each; rows[t]
// points at tap t's input for output 0 of the first row, the second row's inputs are drow
// further, and consecutive outputs read consecutive inputs.
template <typename T, int NR>
void dw_row(const T* const* rows, int64_t drow, const T* wts, int64_t K, T b, T lo, T hi,
            int64_t n_out, T* const* outs) {
#if defined(__GNUC__)
  // Groups of 4, then 2, then 1 vectors, stored from the last group to the first: a first
  // row's padding spill (< one vector, in its last group) lands on the second row's first
  // outputs, which its first group, stored last, then overwrites.
  constexpr int64_t L = FASTQ_NN_VEC_BYTES / sizeof(T);
  const int64_t n4 = n_out / (4 * L) * (4 * L);
  const bool has2 = n_out - n4 >= 2 * L;
  const int64_t o1 = n4 + (has2 ? 2 * L : 0);  // start of the single vectors
  for (int64_t o = n_out - L; o >= o1; o -= L) dw_vecs<T, 1, NR>(rows, drow, wts, K, b, lo, hi, o, outs);
  if (has2) dw_vecs<T, 2, NR>(rows, drow, wts, K, b, lo, hi, n4, outs);
  for (int64_t o = n4 - 4 * L; o >= 0; o -= 4 * L)
    dw_vecs<T, 4, NR>(rows, drow, wts, K, b, lo, hi, o, outs);
#else
  std::vector<const T*> shifted(rows, rows + K);
  for (int r = 0; r < NR; ++r) {
    for (int64_t o = 0; o < n_out; o += dw_block<T>())
      dw_block_plain(shifted.data(), wts, K, b, lo, hi, o, outs[r]);
    for (auto& p : shifted) p += drow;
  }
#endif
}

// Scatters input row s (n values) into stride phases: column iw + pad goes to phase
// (iw + pad) % sw at position (iw + pad) / sw. One unit-stride store stream per phase, and
// with SW fixed at compile time the strided loads vectorize.
template <typename T, int SW>
inline void split_phases(const T* s, int64_t n, int64_t pad, int64_t sw_rt, T* row,
                         int64_t phase_vol) {
  const int64_t sw = SW ? SW : sw_rt;
  for (int64_t ph = 0; ph < sw; ++ph) {
    const int64_t iw0 = ((ph - pad) % sw + sw) % sw;  // first column landing in phase ph
    if (iw0 >= n) continue;
    const int64_t cnt = (n - iw0 + sw - 1) / sw;
    T* d = row + ph * phase_vol + (iw0 + pad) / sw;
    const T* src = s + iw0;
    for (int64_t i = 0; i < cnt; ++i) d[i] = src[i * sw];
  }
}

// split_phases for stride 2 in one pass over the row: input pair (2i, 2i+1) lands at
// column 2i + pad (phase pad % 2, position i + pad / 2) and 2i + 1 + pad (the other phase,
// position i + (pad + 1) / 2), one loop for both phases (half the loop and tail overhead of
// two strided passes).
template <typename T>
inline void split_pairs(const T* __restrict s, int64_t n, int64_t pad, T* row,
                        int64_t phase_vol) {
  T* __restrict a = row + (pad % 2) * phase_vol + pad / 2;
  T* __restrict b = row + ((pad + 1) % 2) * phase_vol + (pad + 1) / 2;
  const int64_t half = n / 2;
  for (int64_t i = 0; i < half; ++i) {
    a[i] = s[2 * i];
    b[i] = s[2 * i + 1];
  }
  if (n % 2) a[half] = s[n - 1];
}

// 2-D (and 1-D) depthwise planes [p0, p1), "flat": the plane is copied into a zero-padded
// buffer split by (H, W) stride phase (padded (r, c) goes to phase plane (r % sh, c % sw) at
// (r / sh, c / sw)), Wq columns per row, so output (oh, ow)'s tap (kh, kw) sits at
// oh*Wq + ow + a per-tap offset into its phase plane: the whole plane is one long row of
// oH*Wq outputs (columns ow >= oW are discarded), computed as two halves side by side (twice
// the add chains) with no per-row setup, then its valid columns are copied out. Taps run in
// (kh, kw) order after the bias, then the clamp, as in the row-wise path.
template <typename T>
void dw_body_flat(const T* x, const T* w, const T* bias, T lo, T hi, int64_t p0, int64_t p1,
                  int64_t C, const Geom3& g, T* y) {
  constexpr int64_t kBlock = dw_block<T>();
  const int64_t oH = g.out[1], oW = g.out[2], dh = g.dil[1], dw = g.dil[2];
  const int64_t sh = g.stride[1], sw = g.stride[2];
  const int64_t Hq = (padded_extent(g, 1) + sh - 1) / sh;
  const int64_t Wq = (padded_extent(g, 2) + sw - 1) / sw;
  const int64_t plane = Hq * Wq;
  const int64_t n_half = ((oH * Wq + 1) / 2 + kBlock - 1) / kBlock * kBlock;
  const int64_t K = g.k[1] * g.k[2], V = g.in_vol(), P = g.out_vol();
  std::vector<const T*> rows(static_cast<size_t>(K));
  std::vector<int64_t> off(static_cast<size_t>(K));
  int64_t max_off = 0;
  for (int64_t kh = 0, t = 0; kh < g.k[1]; ++kh)
    for (int64_t kw = 0; kw < g.k[2]; ++kw, ++t) {
      const int64_t r = kh * dh, c = kw * dw;
      off[t] = ((r % sh) * sw + c % sw) * plane + (r / sh) * Wq + c / sw;
      max_off = std::max(max_off, off[t]);
    }
  // Discarded outputs of the last rows may read past their phase plane: keep that in bounds.
  std::vector<T> buf(static_cast<size_t>(std::max(sh * sw * plane, 2 * n_half + max_off)),
                     T(0));
  for (int64_t t = 0; t < K; ++t) rows[t] = buf.data() + off[t];
  std::vector<T> flat(static_cast<size_t>(2 * n_half));
  T* outs[2] = {flat.data(), flat.data() + n_half};
  // Where input row h starts in buf (divisions here, once, not per plane and row).
  std::vector<int64_t> row_at(static_cast<size_t>(g.in[1]));
  for (int64_t h = 0; h < g.in[1]; ++h) {
    const int64_t r = h + g.pad[1];
    row_at[h] = (r % sh) * sw * plane + (r / sh) * Wq;
  }
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t c = p % C;
    const T* src = x + p * V;
    for (int64_t h = 0; h < g.in[1]; ++h) {
      const T* s = src + h * g.in[2];
      T* row = buf.data() + row_at[h];
      if (sw == 1) std::copy(s, s + g.in[2], row + g.pad[2]);
      else if (sw == 2) split_pairs(s, g.in[2], g.pad[2], row, plane);
      else split_phases<T, 0>(s, g.in[2], g.pad[2], sw, row, plane);
    }
    dw_row<T, 2>(rows.data(), n_half, w + c * K, K, bias ? bias[c] : T(0), lo, hi, n_half,
                 outs);
    T* dst = y + p * P;
    for (int64_t oh = 0; oh < oH; ++oh)
      std::copy(flat.data() + oh * Wq, flat.data() + oh * Wq + oW, dst + oh * oW);
  }
}

// Depthwise conv of planes [p0, p1). Each plane is first copied into a zero-padded buffer
// split by W stride phase (padded column c at phase c % sw, position c / sw), so every tap
// reads unit-stride whatever the stride, with no bounds checks; rows are padded to whole
// blocks, so no scalar tail either: every output gets the same instruction sequence, taps
// in (kd, kh, kw) order, then the clamp to [lo, hi] (the fused Relu/Clip) on the store.
template <typename T>
void dw_body(const T* x, const T* w, const T* bias, T lo, T hi, int64_t p0, int64_t p1,
             int64_t C, const Geom3& g, T* y) {
  if (g.in[0] == 1 && g.k[0] == 1 && g.out[0] == 1)
    return dw_body_flat(x, w, bias, lo, hi, p0, p1, C, g, y);
  constexpr int64_t kBlock = dw_block<T>();
  const int64_t oD = g.out[0], oH = g.out[1], oW = g.out[2];
  const int64_t n_row = (oW + kBlock - 1) / kBlock * kBlock;
  const int64_t sw = g.stride[2], dw = g.dil[2];
  const int64_t Dp = padded_extent(g, 0), Hp = padded_extent(g, 1);
  const int64_t Wq = std::max(n_row + ((g.k[2] - 1) * dw) / sw,
                              (g.pad[2] + g.in[2] + sw - 1) / sw);
  const int64_t phase_vol = Dp * Hp * Wq;
  const int64_t K = g.k_vol(), V = g.in_vol(), P = g.out_vol();
  std::vector<T> buf(static_cast<size_t>(sw * phase_vol), T(0));
  std::vector<T> orow(static_cast<size_t>(2 * n_row));
  std::vector<const T*> rows(static_cast<size_t>(K));
  // Offset of tap t from output (od, oh, 0)'s window corner: its phase plane, row and
  // column (column kw*dw + ow*sw is phase (kw*dw) % sw, position (kw*dw) / sw + ow).
  std::vector<int64_t> tap_off(static_cast<size_t>(K));
  for (int64_t kd = 0, t = 0; kd < g.k[0]; ++kd)
    for (int64_t kh = 0; kh < g.k[1]; ++kh)
      for (int64_t kw = 0; kw < g.k[2]; ++kw, ++t) {
        const int64_t col = kw * dw;
        tap_off[t] = (col % sw) * phase_vol + (kd * g.dil[0] * Hp + kh * g.dil[1]) * Wq +
                     col / sw;
      }
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t c = p % C;
    const T* src = x + p * V;
    for (int64_t d = 0; d < g.in[0]; ++d)
      for (int64_t h = 0; h < g.in[1]; ++h) {
        const T* s = src + (d * g.in[1] + h) * g.in[2];
        T* row = buf.data() + ((d + g.pad[0]) * Hp + h + g.pad[1]) * Wq;
        if (sw == 1) std::copy(s, s + g.in[2], row + g.pad[2]);
        else if (sw == 2) split_phases<T, 2>(s, g.in[2], g.pad[2], sw, row, phase_vol);
        else split_phases<T, 0>(s, g.in[2], g.pad[2], sw, row, phase_vol);
      }
    const T* wc = w + c * K;
    const T b = bias ? bias[c] : T(0);
    T* dst = y + p * P;
    const int64_t drow = g.stride[1] * Wq;  // input offset between consecutive output rows
    for (int64_t od = 0; od < oD; ++od) {
      for (int64_t oh = 0; oh < oH; oh += 2) {
        const int nr = oh + 1 < oH ? 2 : 1;  // output rows in pairs: twice the add chains
        const T* base = buf.data() + (od * g.stride[0] * Hp + oh * g.stride[1]) * Wq;
        for (int64_t t = 0; t < K; ++t) rows[t] = base + tap_off[t];
        T* yrows[2];
        T* outs[2];
        for (int r = 0; r < nr; ++r) {
          const int64_t ro = od * oH + oh + r;
          yrows[r] = dst + ro * oW;
          // A padded row may spill past its end into the following output rows of this
          // plane: a pair's first row into the second (see dw_row), the second into the next
          // pair, computed later by this task. Rows near the plane's end use scratch rows.
          const bool direct = oW == n_row || ro * oW + n_row <= P;
          outs[r] = direct ? yrows[r] : orow.data() + r * n_row;
        }
        if (nr == 2) dw_row<T, 2>(rows.data(), drow, wc, K, b, lo, hi, n_row, outs);
        else dw_row<T, 1>(rows.data(), drow, wc, K, b, lo, hi, n_row, outs);
        for (int r = 0; r < nr; ++r)
          if (outs[r] != yrows[r]) std::copy(outs[r], outs[r] + oW, yrows[r]);
      }
    }
  }
}

template <typename T>
T max_identity() {
  return std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                              : std::numeric_limits<T>::lowest();
}

// Element-wise combinations for the pooling row pass: first(v) starts, step(acc, v) adds.
struct MaxOp {
  template <typename T> static T first(T v) { return v; }
  template <typename T> static T step(T acc, T v) { return v > acc ? v : acc; }
};
struct SumOp {
  template <typename T> static T first(T v) { return v; }
  template <typename T> static T step(T acc, T v) { return acc + v; }
};
struct AbsSumOp {
  template <typename T> static T first(T v) { return std::fabs(v); }
  template <typename T> static T step(T acc, T v) { return acc + std::fabs(v); }
};
struct SqSumOp {
  template <typename T> static T first(T v) { return v * v; }
  template <typename T> static T step(T acc, T v) { return acc + v * v; }
};

// out[i] = rows[0][i] (+) rows[1][i] (+) ... in row order, one pass over out; the common
// row counts are unrolled so the loop over i vectorizes. nr == 0 leaves out untouched.
template <typename T, class Op>
void combine_rows(const T* const* rows, int64_t nr, int64_t n, T* out) {
  if (nr == 0) return;
  const T* r0 = rows[0];
  if (nr == 1) {
    for (int64_t i = 0; i < n; ++i) out[i] = Op::first(r0[i]);
  } else if (nr == 2) {
    const T* r1 = rows[1];
    for (int64_t i = 0; i < n; ++i) out[i] = Op::step(Op::first(r0[i]), r1[i]);
  } else {
    const T* r1 = rows[1];
    const T* r2 = rows[2];
    for (int64_t i = 0; i < n; ++i) out[i] = Op::step(Op::step(Op::first(r0[i]), r1[i]), r2[i]);
    for (int64_t r = 3; r < nr; ++r) {
      const T* rr = rows[r];
      for (int64_t i = 0; i < n; ++i) out[i] = Op::step(out[i], rr[i]);
    }
  }
}

template <typename T>
void combine_rows_pow(const T* const* rows, int64_t nr, int64_t n, T p, T* out) {
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t i = 0; i < n; ++i) {
      const T v = std::pow(std::fabs(rows[r][i]), p);
      out[i] = r == 0 ? v : out[i] + v;
    }
}

// Max / average / Lp pooling (no Indices) of planes [p0, p1), separably: for each output
// row the valid input rows (over kd, kh) are first combined into one identity-padded row,
// then each output combines kW taps of that row. Max is order-free; sums run over rows in
// (kd, kh) order, then over kw; the average divides once by rows x columns counted.
template <typename T>
void pool_body(const T* x, int64_t p0, int64_t p1, const Geom3& g, const PoolArgs& a,
               const AxisTaps& td, const AxisTaps& th, const AxisTaps& tw, T* y) {
  const int64_t W = g.in[2], V = g.in_vol(), P = g.out_vol();
  const int64_t Wp = padded_extent(g, 2), pw = g.pad[2], sw = g.stride[2], dw = g.dil[2];
  const int64_t oW = g.out[2], kW = g.k[2];
  const bool is_max = a.kind == PoolKind::kMax;
  const T ident = is_max ? max_identity<T>() : T(0);
  std::vector<T> row(static_cast<size_t>(Wp), ident);
  T* rp = row.data();
  T* rin = rp + pw;  // input column iw lives at rin[iw]
  const int64_t Wq = std::max((Wp + sw - 1) / sw, oW + ((kW - 1) * dw) / sw);
  std::vector<T> phases(static_cast<size_t>(sw > 1 ? sw * Wq : 0), ident);
  std::vector<const T*> srows(static_cast<size_t>(g.k[0] * g.k[1]));
  std::vector<T> colcnt(static_cast<size_t>(oW));  // the average's column count per output
  for (int64_t ow = 0; ow < oW; ++ow)
    colcnt[ow] = T(std::max<int64_t>(a.count_include_pad ? tw.padded[ow]
                                                         : tw.hi[ow] - tw.lo[ow], 1));
  for (int64_t p = p0; p < p1; ++p) {
    const T* src = x + p * V;
    T* dst = y + p * P;
    for (int64_t od = 0; od < g.out[0]; ++od) {
      for (int64_t oh = 0; oh < g.out[1]; ++oh) {
        // Rows: the valid input rows of the window, combined element-wise in (kd, kh) order.
        int64_t nr = 0;
        for (int64_t kd = td.lo[od]; kd < td.hi[od]; ++kd) {
          const int64_t id = od * g.stride[0] - g.pad[0] + kd * g.dil[0];
          for (int64_t kh = th.lo[oh]; kh < th.hi[oh]; ++kh) {
            const int64_t ih = oh * g.stride[1] - g.pad[1] + kh * g.dil[1];
            srows[nr++] = src + (id * g.in[1] + ih) * W;
          }
        }
        if (is_max) {
          combine_rows<T, MaxOp>(srows.data(), nr, W, rin);
        } else if constexpr (std::is_floating_point<T>::value) {
          if (a.kind == PoolKind::kAvg) combine_rows<T, SumOp>(srows.data(), nr, W, rin);
          else if (a.p == 1) combine_rows<T, AbsSumOp>(srows.data(), nr, W, rin);
          else if (a.p == 2) combine_rows<T, SqSumOp>(srows.data(), nr, W, rin);
          else combine_rows_pow(srows.data(), nr, W, T(a.p), rin);
        }
        const bool first = nr == 0;
        if (first) std::fill(rin, rin + W, ident);  // window rows all in padding
        // Columns: stride phases make every kw tap a unit-stride read (see dw_body).
        const T* base = rp;
        int64_t pitch = 0;
        if (sw > 1) {
          if (sw == 2) split_phases<T, 2>(rp, Wp, 0, sw, phases.data(), Wq);
          else split_phases<T, 0>(rp, Wp, 0, sw, phases.data(), Wq);
          base = phases.data();
          pitch = Wq;
        }
        T* yrow = dst + (od * g.out[1] + oh) * oW;
        for (int64_t kw = 0; kw < kW; ++kw) {
          const int64_t col = kw * dw;
          const T* r = sw > 1 ? base + (col % sw) * pitch + col / sw : base + col;
          if (kw == 0) {
            for (int64_t ow = 0; ow < oW; ++ow) yrow[ow] = r[ow];
          } else if (is_max) {
            for (int64_t ow = 0; ow < oW; ++ow) yrow[ow] = r[ow] > yrow[ow] ? r[ow] : yrow[ow];
          } else {
            for (int64_t ow = 0; ow < oW; ++ow) yrow[ow] += r[ow];
          }
        }
        if constexpr (std::is_floating_point<T>::value) {
          if (a.kind == PoolKind::kAvg) {
            // Divisor = rows x columns in the window (never 0: an empty window sums to 0).
            const int64_t rows = a.count_include_pad ? td.padded[od] * th.padded[oh]
                                                     : (td.hi[od] - td.lo[od]) *
                                                           (th.hi[oh] - th.lo[oh]);
            const T rt = T(std::max<int64_t>(rows, 1));
            const T* cc = colcnt.data();
            for (int64_t ow = 0; ow < oW; ++ow) yrow[ow] = yrow[ow] / (rt * cc[ow]);
          } else if (a.kind == PoolKind::kLp && a.p != 1) {
            for (int64_t ow = 0; ow < oW; ++ow)
              yrow[ow] = a.p == 2 ? std::sqrt(yrow[ow]) : std::pow(yrow[ow], T(1) / T(a.p));
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace nn
}  // namespace fastq
