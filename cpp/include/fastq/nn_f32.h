// Float sliding-window and resampling kernels for the executor's heavy ops (Conv,
// ConvTranspose, pooling, Resize). Contract: every kernel works on a canonical 3-D spatial
// geometry (1-D and 2-D callers prepend unit dims), reads C-contiguous NC(D)(H)W data, takes
// begin-pads only (the output extent fixes the end), and writes disjoint outputs from
// parallel_for tasks, so results never depend on the thread count. Sums run in T, in the
// order stated per kernel. T is float or double (max pooling also takes int8/uint8).
#pragma once
#include <algorithm>
#include <cstdint>

#include <vector>

#include "fastq/threads.h"
#include "fastq/types.h"

namespace fastq {
namespace nn {

// Work (elements touched) below which waking the pool costs more than it saves.
constexpr int64_t kMinTaskWork = 1 << 15;

// Chunk length so one chunk of items, each touching `work_per_item` elements, is worth a task.
inline int64_t min_items(int64_t work_per_item) {
  return std::max<int64_t>(1, kMinTaskWork / std::max<int64_t>(work_per_item, 1));
}

// Runs f(begin, end) over [0, n) in at most 4 chunks per thread, each at least min_chunk long.
template <class F>
void parallel_chunks(int64_t n, int64_t min_chunk, const F& f) {
  if (n <= 0) return;
  int64_t tasks = std::min<int64_t>(n / std::max<int64_t>(min_chunk, 1), 4 * num_threads());
  tasks = std::max<int64_t>(tasks, 1);
  const int64_t chunk = (n + tasks - 1) / tasks;
  parallel_for(tasks, [&](int64_t t) {
    const int64_t b = t * chunk, e = std::min(n, b + chunk);
    if (b < e) f(b, e);
  });
}

// [lo, hi): the indices o in [0, n) with 0 <= o*step + off < limit.
inline void valid_range(int64_t off, int64_t step, int64_t limit, int64_t n, int64_t* lo,
                        int64_t* hi) {
  int64_t l = off >= 0 ? 0 : (-off + step - 1) / step;
  const int64_t last = limit - 1 - off;
  int64_t h = last < 0 ? 0 : last / step + 1;
  h = std::min(h, n);
  l = std::min(l, h);
  *lo = l;
  *hi = h;
}

// Spatial geometry of one sliding window op, always 3-D (unit dims for lower ranks).
struct Geom3 {
  int64_t in[3];      // input (image) extent
  int64_t out[3];     // output (window grid) extent
  int64_t k[3];       // kernel extent
  int64_t stride[3];
  int64_t dil[3];
  int64_t pad[3];     // begin pads; input coordinate = o*stride - pad + k*dil
  int64_t in_vol() const { return in[0] * in[1] * in[2]; }
  int64_t out_vol() const { return out[0] * out[1] * out[2]; }
  int64_t k_vol() const { return k[0] * k[1] * k[2]; }
};

// col[(c*Kvol + kk), o] = x[c, o*stride - pad + kk*dil], or 0 outside the input.
// x: (C, in_vol), col: (C*Kvol, out_vol). Rows in (c, kd, kh, kw) order, like the weights.
template <typename T>
void im2col3(const T* x, int64_t C, const Geom3& g, T* col);

// The adjoint of im2col3: img[c, i] = sum over (kk, o) mapping to i of col[c*Kvol + kk, o],
// summed in (kd, kh, kw, o) order. img: (C, in_vol) is overwritten.
template <typename T>
void col2im3(const T* col, int64_t C, const Geom3& g, T* img);

// Depthwise conv (group == C_in == C_out): y[n,c,o] = bias[c] + sum_kk w[c,kk] * x[n,c,...],
// taps summed in (kd, kh, kw) order after the bias, then clamped: y = min(max(y, lo), hi)
// (a fused Relu/Clip; +-inf for none). x: (planes, in_vol) with channel plane % C,
// w: (C, Kvol), bias: C values or nullptr, y: (planes, out_vol). Every impl (Ref, Avx2,
// Avx512Vnni) builds the same source; the SIMD builds fuse multiply-adds (FMA), so they
// differ from Ref by rounding only.
template <typename T>
void depthwise_conv3(const T* x, const T* w, const T* bias, T lo, T hi, int64_t planes,
                     int64_t C, const Geom3& g, T* y, Impl impl);

enum class PoolKind { kMax, kAvg, kLp };

struct PoolArgs {
  PoolKind kind = PoolKind::kMax;
  int64_t pad_end[3] = {0, 0, 0};  // only for count_include_pad: padded extent is in+pads
  bool count_include_pad = false;  // average divisor counts taps inside the padded input
  int64_t p = 2;                   // Lp norm order
  bool col_major = false;          // MaxPool Indices storage_order = 1
};

// Winograd F(2x2, 3x3) for 3x3 stride-1 undilated 2-D conv (nn_winograd.cpp). Input:
// x (C, H, W) with begin pads (ph, pw) -> v (16, C, th*tw), tile (i, j) reading padded rows
// 2i..2i+3 and cols 2j..2j+3 (zeros outside the input). Output: m (16, M, th*tw) ->
// y (M, oH, oW) = A^T m A per 2x2 tile, cropped, plus bias[M] (or nullptr).
template <typename T>
void winograd_f23_input(const T* x, int64_t C, int64_t H, int64_t W, int64_t ph, int64_t pw,
                        int64_t th, int64_t tw, T* v);
template <typename T>
void winograd_f23_output(const T* m, int64_t M, int64_t th, int64_t tw, int64_t oH, int64_t oW,
                         const T* bias, T* y);

// Per-axis tap ranges of a pooling window: for output o, taps [lo, hi) fall inside the input;
// padded[o] counts the taps inside the input plus its pads (count_include_pad's divisor).
struct AxisTaps {
  std::vector<int64_t> lo, hi, padded;
};

inline AxisTaps axis_taps(const Geom3& g, const int64_t pad_end[3], int a) {
  AxisTaps t;
  const int64_t n = g.out[a];
  t.lo.resize(n);
  t.hi.resize(n);
  t.padded.resize(n);
  for (int64_t o = 0; o < n; ++o) {
    const int64_t start = o * g.stride[a] - g.pad[a];
    valid_range(start, g.dil[a], g.in[a], g.k[a], &t.lo[o], &t.hi[o]);
    int64_t plo, phi;
    valid_range(start + g.pad[a], g.dil[a], g.in[a] + g.pad[a] + pad_end[a], g.k[a], &plo,
                &phi);
    t.padded[o] = phi - plo;
  }
  return t;
}

// Pooling over each of `planes` planes. Taps outside the input are skipped (max, lp) or
// count toward the average's divisor only with count_include_pad. idx (max only, may be
// nullptr) gets the flat index plane*in_vol + spatial offset of the first maximum; that
// path is one generic kernel, the others are separable (rows, then columns) with AVX2 and
// AVX-512 builds of the same source (bit-identical).
template <typename T>
void pool3(const T* x, int64_t planes, const Geom3& g, const PoolArgs& a, T* y, int64_t* idx,
           Impl impl);

#if defined(FASTQ_HAVE_X86)
// AVX2 builds (cpp/src/avx2/nn_avx2.cpp) of the plane-range bodies in nn_body.h.
template <typename T>
void depthwise_planes_avx2(const T* x, const T* w, const T* bias, T lo, T hi, int64_t p0,
                           int64_t p1, int64_t C, const Geom3& g, T* y);
template <typename T>
void pool_planes_avx2(const T* x, int64_t p0, int64_t p1, const Geom3& g, const PoolArgs& a,
                      const AxisTaps& td, const AxisTaps& th, const AxisTaps& tw, T* y);
// AVX-512 builds (cpp/src/avx512vnni/nn_avx512.cpp), run for Impl::Avx512Vnni.
template <typename T>
void depthwise_planes_avx512(const T* x, const T* w, const T* bias, T lo, T hi, int64_t p0,
                             int64_t p1, int64_t C, const Geom3& g, T* y);
template <typename T>
void pool_planes_avx512(const T* x, int64_t p0, int64_t p1, const Geom3& g,
                        const PoolArgs& a, const AxisTaps& td, const AxisTaps& th,
                        const AxisTaps& tw, T* y);
#endif

// One separable resampling pass: y[o, j, i] = sum_t w[j, t] * x[o, idx[j, t], i], taps in
// t order. x: (outer, n_in, inner); idx, w: (n_out, taps) with 0 <= idx < n_in.
template <typename T>
void resize_axis(const T* x, int64_t outer, int64_t n_in, int64_t inner, const int64_t* idx,
                 const T* w, int64_t n_out, int64_t taps, T* y);

}  // namespace nn
}  // namespace fastq
