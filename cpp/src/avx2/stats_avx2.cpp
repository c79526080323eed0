// AVX2 statistics kernels (built with -mavx2 -mfma). Results equal ref/stats_ref.cpp exactly:
// FMA appears only in the histogram's bin guess, which is trusted only away from bin edges
// (HistParams::eps) and otherwise re-decided by edge comparisons. Same algorithms as the
// AVX-512 twin with 8 lanes; the quantile window's compress walks the movemask bits.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "fastq/stats.h"
#include "fastq/stats_rows_body.h"
#include "fastq/unroll.h"

namespace fastq {
namespace {

inline __m256 abs8(__m256 x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
inline __m256 nonfinite8(__m256 x) {  // all-ones lanes where !(|x| <= FLT_MAX)
  return _mm256_cmp_ps(abs8(x), _mm256_set1_ps(FLT_MAX), _CMP_NLE_UQ);
}
inline float hmin8(__m256 v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  float m = t[0];
  for (int j = 1; j < 8; ++j) m = t[j] < m ? t[j] : m;
  return m;
}
inline float hmax8(__m256 v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  float m = t[0];
  for (int j = 1; j < 8; ++j) m = t[j] > m ? t[j] : m;
  return m;
}
inline bool nonfinite1(float x) { return !(std::fabs(x) <= FLT_MAX); }

bool minmax_avx2(const float* p, int64_t n, float* mn, float* mx) {
  __m256 a0 = _mm256_set1_ps(*mn), a1 = a0, a2 = a0, a3 = a0;
  __m256 b0 = _mm256_set1_ps(*mx), b1 = b0, b2 = b0, b3 = b0;
  __m256 un = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 x0 = _mm256_loadu_ps(p + i), x1 = _mm256_loadu_ps(p + i + 8);
    const __m256 x2 = _mm256_loadu_ps(p + i + 16), x3 = _mm256_loadu_ps(p + i + 24);
    a0 = _mm256_min_ps(a0, x0); b0 = _mm256_max_ps(b0, x0);
    a1 = _mm256_min_ps(a1, x1); b1 = _mm256_max_ps(b1, x1);
    a2 = _mm256_min_ps(a2, x2); b2 = _mm256_max_ps(b2, x2);
    a3 = _mm256_min_ps(a3, x3); b3 = _mm256_max_ps(b3, x3);
    un = _mm256_or_ps(un, _mm256_or_ps(_mm256_cmp_ps(x0, x1, _CMP_UNORD_Q),
                                       _mm256_cmp_ps(x2, x3, _CMP_UNORD_Q)));
  }
  float lo = hmin8(_mm256_min_ps(_mm256_min_ps(a0, a1), _mm256_min_ps(a2, a3)));
  float hi = hmax8(_mm256_max_ps(_mm256_max_ps(b0, b1), _mm256_max_ps(b2, b3)));
  bool nf = _mm256_movemask_ps(un) != 0;
  for (; i < n; ++i) {
    const float x = p[i];
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
    nf |= x != x;
  }
  *mn = lo;
  *mx = hi;
  const float inf = std::numeric_limits<float>::infinity();
  return nf || lo == -inf || hi == inf;
}

bool absmax_avx2(const float* p, int64_t n, float* amax) {
  __m256 a0 = _mm256_set1_ps(*amax), a1 = a0, a2 = a0, a3 = a0;
  __m256 un = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256 x0 = _mm256_loadu_ps(p + i), x1 = _mm256_loadu_ps(p + i + 8);
    const __m256 x2 = _mm256_loadu_ps(p + i + 16), x3 = _mm256_loadu_ps(p + i + 24);
    a0 = _mm256_max_ps(a0, abs8(x0));
    a1 = _mm256_max_ps(a1, abs8(x1));
    a2 = _mm256_max_ps(a2, abs8(x2));
    a3 = _mm256_max_ps(a3, abs8(x3));
    un = _mm256_or_ps(un, _mm256_or_ps(_mm256_cmp_ps(x0, x1, _CMP_UNORD_Q),
                                       _mm256_cmp_ps(x2, x3, _CMP_UNORD_Q)));
  }
  float r = hmax8(_mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3)));
  bool nf = _mm256_movemask_ps(un) != 0;
  for (; i < n; ++i) {
    const float x = std::fabs(p[i]);
    r = x > r ? x : r;
    nf |= x != x;
  }
  *amax = r;
  return nf || r == std::numeric_limits<float>::infinity();
}

bool sum_avx2(const float* p, int64_t n, double* s) {
  __m256d d0 = _mm256_setzero_pd(), d1 = d0, d2 = d0, d3 = d0;  // lanes 0-3, 4-7, 8-11, 12-15
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    d0 = _mm256_add_pd(d0, _mm256_cvtps_pd(_mm_loadu_ps(p + i)));
    d1 = _mm256_add_pd(d1, _mm256_cvtps_pd(_mm_loadu_ps(p + i + 4)));
    d2 = _mm256_add_pd(d2, _mm256_cvtps_pd(_mm_loadu_ps(p + i + 8)));
    d3 = _mm256_add_pd(d3, _mm256_cvtps_pd(_mm_loadu_ps(p + i + 12)));
  }
  alignas(32) double lane[16];
  _mm256_store_pd(lane, d0);
  _mm256_store_pd(lane + 4, d1);
  _mm256_store_pd(lane + 8, d2);
  _mm256_store_pd(lane + 12, d3);
  for (; i < n; ++i) lane[i & 15] += static_cast<double>(p[i]);
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) lane[j] = lane[j] + lane[j + w];
  *s += lane[0];
  return !std::isfinite(lane[0]);
}

// The *_rows kernels: blocks of full vectors whose accumulators stay in registers over all
// rows, then the last (n mod width) columns one by one, each column in row order as stats.h
// orders the sums (min/max are order free). A float sum in double cannot overflow, so only
// NaN/Inf inputs leave a non-finite sum, checked once at the end; min/max flag NaN per row
// (min/max may drop a NaN) and +-Inf in the results.
template <int NV>
bool sum_cols(const float* p, int64_t rows, int64_t ld, double* s) {
  __m256d a[NV];
  unroll<NV>([&](auto v) { a[v] = _mm256_loadu_pd(s + 4 * v); });
  for (int64_t r = 0; r < rows; ++r, p += ld)
    unroll<NV>([&](auto v) { a[v] = _mm256_add_pd(a[v], _mm256_cvtps_pd(_mm_loadu_ps(p + 4 * v))); });
  const __m256d lim = _mm256_set1_pd(DBL_MAX), sign = _mm256_set1_pd(-0.0);
  __m256d nf = _mm256_setzero_pd();
  unroll<NV>([&](auto v) {
    _mm256_storeu_pd(s + 4 * v, a[v]);
    nf = _mm256_or_pd(nf, _mm256_cmp_pd(_mm256_andnot_pd(sign, a[v]), lim, _CMP_NLE_UQ));
  });
  return _mm256_movemask_pd(nf) != 0;
}

template <int NV, bool Abs>
bool max_cols(const float* p, int64_t rows, int64_t ld, float* mn, float* mx) {
  [[maybe_unused]] __m256 a[NV];
  __m256 b[NV];
  unroll<NV>([&](auto v) {
    if constexpr (!Abs) a[v] = _mm256_loadu_ps(mn + 8 * v);
    b[v] = _mm256_loadu_ps(mx + 8 * v);
  });
  __m256 un = _mm256_setzero_ps();
  for (int64_t r = 0; r < rows; ++r, p += ld)
    unroll<NV>([&](auto v) {
      const __m256 x = _mm256_loadu_ps(p + 8 * v);
      if constexpr (Abs) {
        b[v] = _mm256_max_ps(b[v], abs8(x));
      } else {
        a[v] = _mm256_min_ps(a[v], x);
        b[v] = _mm256_max_ps(b[v], x);
      }
      un = _mm256_or_ps(un, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    });
  const float f_inf = std::numeric_limits<float>::infinity();
  const __m256 inf = _mm256_set1_ps(f_inf), ninf = _mm256_set1_ps(-f_inf);
  unroll<NV>([&](auto v) {
    if constexpr (!Abs) {
      _mm256_storeu_ps(mn + 8 * v, a[v]);
      un = _mm256_or_ps(un, _mm256_cmp_ps(a[v], ninf, _CMP_EQ_OQ));
    }
    _mm256_storeu_ps(mx + 8 * v, b[v]);
    un = _mm256_or_ps(un, _mm256_cmp_ps(b[v], inf, _CMP_EQ_OQ));
  });
  return _mm256_movemask_ps(un) != 0;
}

template <int... I>
constexpr std::array<bool (*)(const float*, int64_t, int64_t, double*), sizeof...(I)>
sum_table(std::integer_sequence<int, I...>) {
  return {sum_cols<I + 1>...};
}
template <bool Abs, int... I>
constexpr std::array<bool (*)(const float*, int64_t, int64_t, float*, float*), sizeof...(I)>
max_table(std::integer_sequence<int, I...>) {
  return {max_cols<I + 1, Abs>...};
}
constexpr int kSumVec = 12, kMaxVec = 6;  // accumulators within the 16 ymm registers
constexpr auto kSumCols = sum_table(std::make_integer_sequence<int, kSumVec>{});
constexpr auto kMinMaxCols = max_table<false>(std::make_integer_sequence<int, kMaxVec>{});
constexpr auto kAbsMaxCols = max_table<true>(std::make_integer_sequence<int, kMaxVec>{});

bool sum_rows_avx2(const float* p, int64_t rows, int64_t n, double* s) {
  bool nf = false;
  const int64_t full = n - n % 4;
  for (int64_t c0 = 0; c0 < full; c0 += 4 * kSumVec) {
    const int64_t nv = std::min<int64_t>(kSumVec, (full - c0) / 4);
    nf |= kSumCols[nv - 1](p + c0, rows, n, s + c0);
  }
  return (full < n && sum_cols_scalar(p, rows, n, full, n, s)) || nf;
}

bool minmax_rows_avx2(const float* p, int64_t rows, int64_t n, float* mn, float* mx) {
  bool nf = false;
  const int64_t full = n - n % 8;
  for (int64_t c0 = 0; c0 < full; c0 += 8 * kMaxVec) {
    const int64_t nv = std::min<int64_t>(kMaxVec, (full - c0) / 8);
    nf |= kMinMaxCols[nv - 1](p + c0, rows, n, mn + c0, mx + c0);
  }
  return (full < n && max_cols_scalar<false>(p, rows, n, full, n, mn, mx)) || nf;
}

bool absmax_rows_avx2(const float* p, int64_t rows, int64_t n, float* amax) {
  bool nf = false;
  const int64_t full = n - n % 8;
  for (int64_t c0 = 0; c0 < full; c0 += 8 * kMaxVec) {
    const int64_t nv = std::min<int64_t>(kMaxVec, (full - c0) / 8);
    nf |= kAbsMaxCols[nv - 1](p + c0, rows, n, nullptr, amax + c0);
  }
  return (full < n && max_cols_scalar<true>(p, rows, n, full, n, nullptr, amax)) || nf;
}

inline int64_t exact_bin(float x, const HistParams& hp) {
  if (x < hp.edges[0]) return hp.bins;
  if (!(x <= hp.edges[hp.bins])) return hp.bins + 1;
  return hist_exact_bin(x, hp.edges, hp.bins, static_cast<int64_t>((x - hp.lo) * hp.scale));
}

template <typename Slot>
bool hist_avx2_impl(const float* p, int64_t n, const HistParams& hp, uint32_t* counts) {
  // Same scheme as hist_avx512: slots shifted by one (0 = below, bins+1 = above), 16-bit
  // slots when they fit, a software pipeline that computes block b+1's slots while block b's
  // are counted into 2 L1-resident tables; near-edge lanes and non-finite t decided exactly.
  const int64_t nb = hp.bins + 2;
  const int64_t st = (nb + 15) / 16 * 16 + 16;
  std::vector<uint32_t> sub(2 * st, 0u);
  uint32_t* h = sub.data();
  uint32_t* h2 = h + st;
  bool nf = false;
  int64_t i = 0;
  if (hp.eps < 0.5f) {
    const __m256 vscale = _mm256_set1_ps(hp.scale);
    const __m256 voff = _mm256_set1_ps(1.0f - hp.lo * hp.scale);
    const __m256 vtop = _mm256_set1_ps(static_cast<float>(hp.bins + 1));
    const __m256 veps = _mm256_set1_ps(hp.eps), v1eps = _mm256_set1_ps(1.0f - hp.eps);
    const __m256 zero = _mm256_setzero_ps();
    constexpr int64_t kBlock = 1024;
    alignas(32) Slot buf[2][kBlock];
    auto slots8 = [&](const float* q, Slot* out) {
      const __m256 x = _mm256_loadu_ps(q);
      const __m256 t = _mm256_fmadd_ps(x, vscale, voff);
      const __m256 fl = _mm256_floor_ps(t);
      const __m256 fr = _mm256_sub_ps(t, fl);
      const __m256 cl = _mm256_min_ps(_mm256_max_ps(fl, zero), vtop);  // NaN -> 0
      const __m256i vi = _mm256_cvttps_epi32(cl);
      if constexpr (sizeof(Slot) == 2) {
        // slots are <= 65535: pack with unsigned saturation is exact
        const __m128i lo = _mm256_castsi256_si128(vi), hi = _mm256_extracti128_si256(vi, 1);
        _mm_store_si128(reinterpret_cast<__m128i*>(out), _mm_packus_epi32(lo, hi));
      } else {
        _mm256_store_si256(reinterpret_cast<__m256i*>(out), vi);
      }
      const int slow = _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(fr, veps, _CMP_NGE_UQ),
                                                       _mm256_cmp_ps(fr, v1eps, _CMP_GT_OQ)));
      for (unsigned m = static_cast<unsigned>(slow); m; m &= m - 1) {
        const int j = __builtin_ctz(m);
        const float xj = q[j];
        nf |= nonfinite1(xj);
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
      for (int64_t k = 0; k < kBlock; k += 8) slots8(p + k, buf[0] + k);
      for (int64_t blk = 0; blk < nblk; ++blk) {
        const Slot* cur = buf[blk & 1];
        if (blk + 1 < nblk) {
          const float* pn = p + (blk + 1) * kBlock;
          Slot* nxt = buf[(blk + 1) & 1];
          for (int64_t k = 0; k < kBlock; k += 16) {
            if (blk + 3 < nblk)
              _mm_prefetch(reinterpret_cast<const char*>(pn + 2 * kBlock + k), _MM_HINT_T0);
            slots8(pn + k, nxt + k);
            slots8(pn + k + 8, nxt + k + 8);
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
    nf |= nonfinite1(p[i]);
    const int64_t b = exact_bin(p[i], hp);
    ++h[b == hp.bins ? 0 : (b == hp.bins + 1 ? b : b + 1)];
  }
  for (int64_t b = 0; b < hp.bins; ++b) counts[b] += h[b + 1] + h2[b + 1];
  counts[hp.bins] += h[0] + h2[0];
  counts[hp.bins + 1] += h[hp.bins + 1] + h2[hp.bins + 1];
  return nf;
}

bool hist_avx2(const float* p, int64_t n, const HistParams& hp, uint32_t* counts) {
  return hp.bins + 2 <= 65536 ? hist_avx2_impl<uint16_t>(p, n, hp, counts)
                              : hist_avx2_impl<int32_t>(p, n, hp, counts);
}

bool window_avx2(const float* p, int64_t n, bool absval, float lo, float hi, WindowCounts* c,
                 std::vector<float>* inside) {
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  __m256 nfv = _mm256_setzero_ps();
  int64_t lt = 0, gt = 0, el = 0, eh = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = _mm256_loadu_ps(p + i);
    if (absval) x = abs8(x);
    nfv = _mm256_or_ps(nfv, nonfinite8(x));
    const int mlt = _mm256_movemask_ps(_mm256_cmp_ps(x, vlo, _CMP_LT_OQ));
    const int mgt = _mm256_movemask_ps(_mm256_cmp_ps(x, vhi, _CMP_GT_OQ));
    const int mel = _mm256_movemask_ps(_mm256_cmp_ps(x, vlo, _CMP_EQ_OQ));
    const int meh = _mm256_movemask_ps(_mm256_cmp_ps(x, vhi, _CMP_EQ_OQ)) & ~mel;
    const unsigned in = static_cast<unsigned>(~(mlt | mgt | mel | meh)) & 0xFFu;
    lt += __builtin_popcount(mlt);
    gt += __builtin_popcount(mgt);
    el += __builtin_popcount(mel);
    eh += __builtin_popcount(meh);
    if (in) {
      alignas(32) float t[8];
      _mm256_store_ps(t, x);
      for (unsigned m = in; m; m &= m - 1) inside->push_back(t[__builtin_ctz(m)]);
    }
  }
  bool nf = _mm256_movemask_ps(nfv) != 0;
  for (; i < n; ++i) {
    const float x = absval ? std::fabs(p[i]) : p[i];
    nf |= nonfinite1(x);
    if (x < lo) ++lt;
    else if (x > hi) ++gt;
    else if (x == lo) ++el;
    else if (x == hi) ++eh;
    else inside->push_back(x);
  }
  c->lt += lt; c->gt += gt; c->eq_lo += el; c->eq_hi += eh;
  return nf;
}

}  // namespace

const StatsKernels& stats_kernels_avx2() {
  static const StatsKernels k = {minmax_avx2,      absmax_avx2,      sum_avx2,
                                 minmax_rows_avx2, absmax_rows_avx2, sum_rows_avx2,
                                 hist_avx2,        window_avx2};
  return k;
}

}  // namespace fastq
