// AVX-512F statistics kernels (this object library is built with AVX-512 F/BW/VL/DQ flags;
// stats only needs F + DQ, chosen through stats_kernels(Impl::Avx512Vnni)). Each kernel
// computes exactly what its twin in ref/stats_ref.cpp computes: min/max are order free,
// sums keep the 16-lane order of stats.h, histogram bins are trusted from floor(t) only
// away from edges (HistParams::eps) and otherwise decided by hist_exact_bin.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cstring>
#include <cmath>
#include <limits>
#include <vector>

#include "fastq/stats.h"
#include "fastq/unroll.h"

namespace fastq {
namespace {

inline __mmask16 tail_mask(int64_t r) { return static_cast<__mmask16>((1u << r) - 1u); }
inline __mmask16 nonfinite_mask(__m512 x) {  // NaN or +-Inf: !(|x| <= FLT_MAX)
  return _mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(FLT_MAX), _CMP_NLE_UQ);
}

bool minmax_avx512(const float* p, int64_t n, float* mn, float* mx) {
  __m512 a0 = _mm512_set1_ps(*mn), a1 = a0, a2 = a0, a3 = a0;
  __m512 b0 = _mm512_set1_ps(*mx), b1 = b0, b2 = b0, b3 = b0;
  __mmask16 un = 0;  // NaN lanes; +-Inf shows up in the results themselves
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512 x0 = _mm512_loadu_ps(p + i), x1 = _mm512_loadu_ps(p + i + 16);
    const __m512 x2 = _mm512_loadu_ps(p + i + 32), x3 = _mm512_loadu_ps(p + i + 48);
    a0 = _mm512_min_ps(a0, x0); b0 = _mm512_max_ps(b0, x0);
    a1 = _mm512_min_ps(a1, x1); b1 = _mm512_max_ps(b1, x1);
    a2 = _mm512_min_ps(a2, x2); b2 = _mm512_max_ps(b2, x2);
    a3 = _mm512_min_ps(a3, x3); b3 = _mm512_max_ps(b3, x3);
    un |= _mm512_cmp_ps_mask(x0, x1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(x2, x3, _CMP_UNORD_Q);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - i);
    const __m512 x = _mm512_maskz_loadu_ps(m, p + i);
    a0 = _mm512_mask_min_ps(a0, m, a0, x);
    b0 = _mm512_mask_max_ps(b0, m, b0, x);
    un |= _mm512_mask_cmp_ps_mask(m, x, x, _CMP_UNORD_Q);
  }
  const float lo = _mm512_reduce_min_ps(_mm512_min_ps(_mm512_min_ps(a0, a1), _mm512_min_ps(a2, a3)));
  const float hi = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(b0, b1), _mm512_max_ps(b2, b3)));
  *mn = lo;
  *mx = hi;
  const float inf = std::numeric_limits<float>::infinity();
  return un != 0 || lo == -inf || hi == inf;
}

bool absmax_avx512(const float* p, int64_t n, float* amax) {
  __m512 a0 = _mm512_set1_ps(*amax), a1 = a0, a2 = a0, a3 = a0;
  __mmask16 un = 0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512 x0 = _mm512_loadu_ps(p + i), x1 = _mm512_loadu_ps(p + i + 16);
    const __m512 x2 = _mm512_loadu_ps(p + i + 32), x3 = _mm512_loadu_ps(p + i + 48);
    a0 = _mm512_max_ps(a0, _mm512_abs_ps(x0));
    a1 = _mm512_max_ps(a1, _mm512_abs_ps(x1));
    a2 = _mm512_max_ps(a2, _mm512_abs_ps(x2));
    a3 = _mm512_max_ps(a3, _mm512_abs_ps(x3));
    un |= _mm512_cmp_ps_mask(x0, x1, _CMP_UNORD_Q) | _mm512_cmp_ps_mask(x2, x3, _CMP_UNORD_Q);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : tail_mask(n - i);
    const __m512 x = _mm512_maskz_loadu_ps(m, p + i);
    a0 = _mm512_mask_max_ps(a0, m, a0, _mm512_abs_ps(x));
    un |= _mm512_mask_cmp_ps_mask(m, x, x, _CMP_UNORD_Q);
  }
  const float r = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3)));
  *amax = r;
  return un != 0 || r == std::numeric_limits<float>::infinity();
}

bool sum_avx512(const float* p, int64_t n, double* s) {
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();  // lanes 0..7, 8..15
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 x = _mm512_loadu_ps(p + i);
    lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(x)));
    hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))));
  }
  alignas(64) double lane[16];
  _mm512_store_pd(lane, lo);
  _mm512_store_pd(lane + 8, hi);
  for (; i < n; ++i) lane[i & 15] += static_cast<double>(p[i]);
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) lane[j] = lane[j] + lane[j + w];
  *s += lane[0];
  return !std::isfinite(lane[0]);  // a float sum in double cannot overflow: only NaN/Inf do
}

// The *_rows kernels: blocks of up to 128 columns whose accumulators stay in registers over
// all rows (one load per element, no accumulator traffic); the block's last vector is masked
// to its width. Sums add row by row as stats.h orders them; a float sum in double cannot
// overflow, so only NaN/Inf inputs leave a non-finite sum, checked once at the end. Min/max:
// NaN lanes are flagged per row (min/max may drop a NaN), +-Inf shows up in the results.
template <int NV>
bool sum_cols(const float* p, int64_t rows, int64_t ld, double* s, __mmask8 last) {
  __m512d a[NV];
  unroll<NV>([&](auto v) {
    a[v] = _mm512_maskz_loadu_pd(v == NV - 1 ? last : __mmask8(0xFF), s + 8 * v);
  });
  for (int64_t r = 0; r < rows; ++r, p += ld)
    unroll<NV>([&](auto v) {
      const __m256 x = _mm256_maskz_loadu_ps(v == NV - 1 ? last : __mmask8(0xFF), p + 8 * v);
      a[v] = _mm512_add_pd(a[v], _mm512_cvtps_pd(x));
    });
  __mmask8 nf = 0;
  unroll<NV>([&](auto v) {
    const __mmask8 m = v == NV - 1 ? last : __mmask8(0xFF);
    _mm512_mask_storeu_pd(s + 8 * v, m, a[v]);
    nf |= _mm512_mask_cmp_pd_mask(m, _mm512_abs_pd(a[v]), _mm512_set1_pd(DBL_MAX), _CMP_NLE_UQ);
  });
  return nf != 0;
}

template <int NV, bool Abs>
bool max_cols(const float* p, int64_t rows, int64_t ld, float* mn, float* mx, __mmask16 last) {
  [[maybe_unused]] __m512 a[NV];
  __m512 b[NV];
  unroll<NV>([&](auto v) {
    const __mmask16 m = v == NV - 1 ? last : __mmask16(0xFFFF);
    if constexpr (!Abs) a[v] = _mm512_maskz_loadu_ps(m, mn + 16 * v);
    b[v] = _mm512_maskz_loadu_ps(m, mx + 16 * v);
  });
  __mmask16 un = 0;
  for (int64_t r = 0; r < rows; ++r, p += ld)
    unroll<NV>([&](auto v) {
      const __m512 x = _mm512_maskz_loadu_ps(v == NV - 1 ? last : __mmask16(0xFFFF), p + 16 * v);
      if constexpr (Abs) {
        b[v] = _mm512_max_ps(b[v], _mm512_abs_ps(x));
      } else {
        a[v] = _mm512_min_ps(a[v], x);
        b[v] = _mm512_max_ps(b[v], x);
      }
      un |= _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    });
  const float f_inf = std::numeric_limits<float>::infinity();
  const __m512 inf = _mm512_set1_ps(f_inf), ninf = _mm512_set1_ps(-f_inf);
  unroll<NV>([&](auto v) {
    const __mmask16 m = v == NV - 1 ? last : __mmask16(0xFFFF);
    if constexpr (!Abs) {
      _mm512_mask_storeu_ps(mn + 16 * v, m, a[v]);
      un |= _mm512_mask_cmp_ps_mask(m, a[v], ninf, _CMP_EQ_OQ);
    }
    _mm512_mask_storeu_ps(mx + 16 * v, m, b[v]);
    un |= _mm512_mask_cmp_ps_mask(m, b[v], inf, _CMP_EQ_OQ);
  });
  return un != 0;
}

template <int... I>
constexpr std::array<bool (*)(const float*, int64_t, int64_t, double*, __mmask8), sizeof...(I)>
sum_table(std::integer_sequence<int, I...>) {
  return {sum_cols<I + 1>...};
}
template <bool Abs, int... I>
constexpr std::array<bool (*)(const float*, int64_t, int64_t, float*, float*, __mmask16),
                     sizeof...(I)>
max_table(std::integer_sequence<int, I...>) {
  return {max_cols<I + 1, Abs>...};
}
constexpr auto kSumCols = sum_table(std::make_integer_sequence<int, 16>{});   // 8 per vector
constexpr auto kMinMaxCols = max_table<false>(std::make_integer_sequence<int, 8>{});  // 16
constexpr auto kAbsMaxCols = max_table<true>(std::make_integer_sequence<int, 8>{});

bool sum_rows_avx512(const float* p, int64_t rows, int64_t n, double* s) {
  bool nf = false;
  for (int64_t c0 = 0; c0 < n; c0 += 128) {
    const int64_t w = std::min<int64_t>(128, n - c0), nv = (w + 7) / 8;
    const __mmask8 last = static_cast<__mmask8>((1u << (w - 8 * (nv - 1))) - 1u);
    nf |= kSumCols[nv - 1](p + c0, rows, n, s + c0, last);
  }
  return nf;
}

bool minmax_rows_avx512(const float* p, int64_t rows, int64_t n, float* mn, float* mx) {
  bool nf = false;
  for (int64_t c0 = 0; c0 < n; c0 += 128) {
    const int64_t w = std::min<int64_t>(128, n - c0), nv = (w + 15) / 16;
    nf |= kMinMaxCols[nv - 1](p + c0, rows, n, mn + c0, mx + c0,
                              tail_mask(w - 16 * (nv - 1)));
  }
  return nf;
}

bool absmax_rows_avx512(const float* p, int64_t rows, int64_t n, float* amax) {
  bool nf = false;
  for (int64_t c0 = 0; c0 < n; c0 += 128) {
    const int64_t w = std::min<int64_t>(128, n - c0), nv = (w + 15) / 16;
    nf |= kAbsMaxCols[nv - 1](p + c0, rows, n, nullptr, amax + c0,
                              tail_mask(w - 16 * (nv - 1)));
  }
  return nf;
}

// Exact bin for one element (same as ref): used for the tail and for near-edge lanes.
inline int64_t exact_bin(float x, const HistParams& hp) {
  if (x < hp.edges[0]) return hp.bins;
  if (!(x <= hp.edges[hp.bins])) return hp.bins + 1;
  return hist_exact_bin(x, hp.edges, hp.bins, static_cast<int64_t>((x - hp.lo) * hp.scale));
}

// Index block type: 16-bit slots when they fit (one 64-bit load then yields four slots, so
// the counting loop issues 2.25 memory operations per element instead of 3), else 32-bit.
template <typename Slot>
bool hist_avx512_impl(const float* p, int64_t n, const HistParams& hp, uint32_t* counts) {
  // Internal slots are shifted by one: 0 = below e_0, 1..bins = the bins, bins+1 = above.
  // 2 tables (alternating elements) so repeated bins chain less through store forwarding,
  // while 2 x 2050 counters + the index block stay in a 32 KiB L1. The stride is offset by
  // 64 bytes from a 4 KiB multiple so the tables do not 4K-alias each other.
  const int64_t nb = hp.bins + 2;
  const int64_t st = (nb + 15) / 16 * 16 + 16;
  std::vector<uint32_t> sub(2 * st, 0u);
  uint32_t* h = sub.data();
  uint32_t* h2 = h + st;
  bool nf = false;
  int64_t i = 0;
  if (hp.eps < 0.5f) {
    // t1 = (x - lo) * scale + 1 as one FMA (its error is inside eps): floor(t1) is the slot.
    const __m512 vscale = _mm512_set1_ps(hp.scale);
    const __m512 voff = _mm512_set1_ps(1.0f - hp.lo * hp.scale);
    const __m512 vtop = _mm512_set1_ps(static_cast<float>(hp.bins + 1));
    const __m512 veps = _mm512_set1_ps(hp.eps), v1eps = _mm512_set1_ps(1.0f - hp.eps);
    const __m512 zero = _mm512_setzero_ps();
    // Software pipeline over blocks: while block b's slots are counted (scalar increments,
    // bound by one store per element), block b+1's slots are computed by the vector units
    // in the same loop, so the two overlap. Counting reads slots written a block earlier,
    // never waiting on store forwarding from the vector stores.
    constexpr int64_t kBlock = 1024;
    alignas(64) Slot buf[2][kBlock];
    auto slots16 = [&](const float* q, Slot* out) {
      const __m512 x = _mm512_loadu_ps(q);
      const __m512 t = _mm512_fmadd_ps(x, vscale, voff);
      const __m512 fl = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
      const __m512 fr = _mm512_sub_ps(t, fl);  // NaN exactly when t is NaN or +-Inf
      // max(fl, 0) returns 0 for NaN: NaN lands below the range and is fixed below.
      const __m512 cl = _mm512_min_ps(_mm512_max_ps(fl, zero), vtop);
      const __m512i vi = _mm512_cvttps_epi32(cl);
      const __mmask16 slow = _mm512_cmp_ps_mask(fr, veps, _CMP_NGE_UQ) |
                             _mm512_cmp_ps_mask(fr, v1eps, _CMP_GT_OQ);
      if constexpr (sizeof(Slot) == 2)
        _mm256_store_si256(reinterpret_cast<__m256i*>(out), _mm512_cvtepi32_epi16(vi));
      else
        _mm512_store_si512(out, vi);
      // Near an edge, or t not finite (x NaN/Inf, or a huge finite x): decide exactly.
      for (unsigned m = slow; m; m &= m - 1) {
        const int j = __builtin_ctz(m);
        const float xj = q[j];
        nf |= !(std::fabs(xj) <= FLT_MAX);
        const int64_t b = exact_bin(xj, hp);
        out[j] = static_cast<Slot>(b == hp.bins ? 0 : (b == hp.bins + 1 ? b : b + 1));
      }
    };
    auto count4 = [&](const Slot* s) {
      if constexpr (sizeof(Slot) == 2) {
        uint64_t q;
        std::memcpy(&q, s, sizeof(q));
        ++h[q & 0xFFFF]; ++h2[(q >> 16) & 0xFFFF]; ++h[(q >> 32) & 0xFFFF]; ++h2[q >> 48];
      } else {
        ++h[s[0]]; ++h2[s[1]]; ++h[s[2]]; ++h2[s[3]];
      }
    };
    const int64_t nblk = n / kBlock;
    if (nblk > 0) {
      for (int64_t k = 0; k < kBlock; k += 16) slots16(p + k, buf[0] + k);
      for (int64_t blk = 0; blk < nblk; ++blk) {
        const Slot* cur = buf[blk & 1];
        if (blk + 1 < nblk) {
          const float* pn = p + (blk + 1) * kBlock;
          Slot* nxt = buf[(blk + 1) & 1];
          for (int64_t k = 0; k < kBlock; k += 16) {
            if (blk + 3 < nblk)
              _mm_prefetch(reinterpret_cast<const char*>(pn + 2 * kBlock + k), _MM_HINT_T0);
            slots16(pn + k, nxt + k);
            count4(cur + k); count4(cur + k + 4); count4(cur + k + 8); count4(cur + k + 12);
          }
        } else {
          for (int64_t k = 0; k < kBlock; k += 4) count4(cur + k);
        }
      }
      i = nblk * kBlock;
    }
  }
  for (; i < n; ++i) {
    nf |= !(std::fabs(p[i]) <= FLT_MAX);
    const int64_t b = exact_bin(p[i], hp);
    ++h[b == hp.bins ? 0 : (b == hp.bins + 1 ? b : b + 1)];
  }
  for (int64_t b = 0; b < hp.bins; ++b) counts[b] += h[b + 1] + h2[b + 1];
  counts[hp.bins] += h[0] + h2[0];
  counts[hp.bins + 1] += h[hp.bins + 1] + h2[hp.bins + 1];
  return nf;
}

bool hist_avx512(const float* p, int64_t n, const HistParams& hp, uint32_t* counts) {
  return hp.bins + 2 <= 65536 ? hist_avx512_impl<uint16_t>(p, n, hp, counts)
                              : hist_avx512_impl<int32_t>(p, n, hp, counts);
}

bool window_avx512(const float* p, int64_t n, bool absval, float lo, float hi, WindowCounts* c,
                   std::vector<float>* inside) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  __mmask16 nf = 0;
  int64_t lt = 0, gt = 0, el = 0, eh = 0;
  size_t sz = inside->size();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 x = _mm512_loadu_ps(p + i);
    if (absval) x = _mm512_abs_ps(x);
    nf |= nonfinite_mask(x);
    const __mmask16 mlt = _mm512_cmp_ps_mask(x, vlo, _CMP_LT_OQ);
    const __mmask16 mgt = _mm512_cmp_ps_mask(x, vhi, _CMP_GT_OQ);
    const __mmask16 mel = _mm512_cmp_ps_mask(x, vlo, _CMP_EQ_OQ);
    const __mmask16 meh = _mm512_cmp_ps_mask(x, vhi, _CMP_EQ_OQ) & ~mel;
    const __mmask16 in = static_cast<__mmask16>(~(mlt | mgt | mel | meh));
    lt += __builtin_popcount(mlt);
    gt += __builtin_popcount(mgt);
    el += __builtin_popcount(mel);
    eh += __builtin_popcount(meh);
    if (in) {
      if (sz + 16 > inside->size()) inside->resize(std::max<size_t>(2 * inside->size(), sz + 1024));
      _mm512_mask_compressstoreu_ps(inside->data() + sz, in, x);
      sz += __builtin_popcount(in);
    }
  }
  inside->resize(sz);
  for (; i < n; ++i) {
    const float x = absval ? std::fabs(p[i]) : p[i];
    nf |= !(std::fabs(x) <= FLT_MAX);
    if (x < lo) ++lt;
    else if (x > hi) ++gt;
    else if (x == lo) ++el;
    else if (x == hi) ++eh;
    else inside->push_back(x);
  }
  c->lt += lt; c->gt += gt; c->eq_lo += el; c->eq_hi += eh;
  return nf != 0;
}

}  // namespace

const StatsKernels& stats_kernels_avx512() {
  static const StatsKernels k = {minmax_avx512,      absmax_avx512,   sum_avx512,
                                 minmax_rows_avx512, absmax_rows_avx512, sum_rows_avx512,
                                 hist_avx512,        window_avx512};
  return k;
}

}  // namespace fastq
