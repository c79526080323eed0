// AVX-512 saturation-analysis kernel (satcount.h). Per k group and 16-column vector:
// vpdpbusd (exact32), vpmaddubsw + vpdpwssd (sat16pair, as gemm_avx512vnni), then
// the limit test -- t + 32769 wraps 32767 to 0 and -32768 to 1 and every other value to
// >= 2, so one vpaddw and one unsigned compare (<= 1) into a mask -- and a masked 16-bit
// increment. The plain
// sat16pair loop is bound by the two multiply pipes; the count's abs/compare/add use the
// other vector pipes. The 16-bit counters take at most kMR * kKc / 4 = 512 increments per
// K block before they are widened (vpmaddwd with ones) and added to the int64 totals.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "fastq/satcount.h"
#include "fastq/unroll.h"

namespace fastq {
namespace {

constexpr int64_t kKc = 512;
constexpr int kMR = 4;  // 4 rows x 2 vectors x (sat + exact) = 16 accumulators + 2 counters

template <int MR>
void micro(const uint8_t* ap, int64_t lda, const int8_t* b, int64_t panel_stride, int64_t ng,
           int32_t* c, int32_t* ce, int64_t ldc, int64_t ncols, bool first, int64_t* counts) {
  __m512i sat[MR][2], ex[MR][2], cnt[2];
  __mmask16 mask[2];
  unroll<2>([&](auto v) {
    const int64_t cols = ncols - v * 16;
    mask[v] = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (cols > 0 ? cols : 0)) - 1);
    cnt[v] = _mm512_setzero_si512();
  });
  unroll<MR>([&](auto r) {
    unroll<2>([&](auto v) { sat[r][v] = ex[r][v] = _mm512_setzero_si512(); });
  });
  const __m512i ones = _mm512_set1_epi16(1);
  const __m512i shift = _mm512_set1_epi16(static_cast<int16_t>(32769 - 65536));
  for (int64_t g = 0; g < ng; ++g) {
    __m512i bv[2];
    unroll<2>([&](auto v) {
      bv[v] = _mm512_load_si512(reinterpret_cast<const void*>(b + v * panel_stride + g * 64));
    });
    const uint8_t* ag = ap + g * 4;
    unroll<MR>([&](auto r) {
      int32_t a4;
      std::memcpy(&a4, ag + r * lda, 4);
      const __m512i av = _mm512_set1_epi32(a4);
      unroll<2>([&](auto v) {
        ex[r][v] = _mm512_dpbusd_epi32(ex[r][v], av, bv[v]);
        const __m512i t = _mm512_maddubs_epi16(av, bv[v]);
        sat[r][v] = _mm512_dpwssd_epi32(sat[r][v], t, ones);
        const __mmask32 hit = _mm512_cmple_epu16_mask(_mm512_add_epi16(t, shift), ones);
        cnt[v] = _mm512_mask_add_epi16(cnt[v], hit, cnt[v], ones);
      });
    });
  }
  unroll<MR>([&](auto r) {
    unroll<2>([&](auto v) {
      int32_t* cp = c + r * ldc + v * 16;
      int32_t* ep = ce + r * ldc + v * 16;
      __m512i s = sat[r][v], e = ex[r][v];
      if (!first) {
        s = _mm512_add_epi32(s, _mm512_maskz_loadu_epi32(mask[v], cp));
        e = _mm512_add_epi32(e, _mm512_maskz_loadu_epi32(mask[v], ep));
      }
      _mm512_mask_storeu_epi32(cp, mask[v], s);
      _mm512_mask_storeu_epi32(ep, mask[v], e);
    });
  });
  unroll<2>([&](auto v) {
    alignas(64) int32_t per_col[16];
    _mm512_store_si512(per_col, _mm512_madd_epi16(cnt[v], ones));  // both pairs of a column
    const int64_t cols = std::min<int64_t>(16, ncols - v * 16);
    for (int64_t j = 0; j < cols; ++j) counts[v * 16 + j] += per_col[j];
  });
}

using MicroFn = void (*)(const uint8_t*, int64_t, const int8_t*, int64_t, int64_t, int32_t*,
                         int32_t*, int64_t, int64_t, bool, int64_t*);

template <int... R>
constexpr std::array<MicroFn, sizeof...(R)> make_table(std::integer_sequence<int, R...>) {
  return {{&micro<R + 1>...}};
}

}  // namespace

void gemm_u8s8_satcount_avx512vnni(const GemmTile& t, int32_t* c_exact, int64_t* counts) {
  static constexpr auto table = make_table(std::make_integer_sequence<int, kMR>{});
  const PackedB& b = *t.b;
  const int64_t Kp = b.Kp, panel_stride = Kp * kPanel;
  // A lone last panel runs as a 2-vector tile whose second vector re-reads the same panel
  // (stride 0) and has no columns: its stores are masked off and its count is not added.
  for (int64_t k0 = 0; k0 < Kp; k0 += kKc) {
    const int64_t ng = std::min(kKc, Kp - k0) / kGroup;
    for (int64_t p = t.p0; p < t.p1; p += 2) {
      const bool two = p + 1 < t.p1;
      const int8_t* bp = b.panel(p) + k0 * kPanel;
      const int64_t ncols = std::min<int64_t>((two ? 2 : 1) * kPanel, b.N - p * kPanel);
      for (int64_t m = 0; m < t.m; m += kMR) {
        const int mr = static_cast<int>(std::min<int64_t>(kMR, t.m - m));
        table[mr - 1](t.a + m * t.lda + k0, t.lda, bp, two ? panel_stride : 0, ng,
                      t.c + m * t.ldc + p * kPanel, c_exact + m * t.ldc + p * kPanel, t.ldc,
                      ncols, k0 == 0, counts + p * kPanel);
      }
    }
  }
}

}  // namespace fastq
