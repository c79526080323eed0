// AVX-512 saturation-analysis kernel (satcount.h). Per k group and 16-column vector:
// vpdpbusd (exact32), vpmaddubsw + vpdpwssd (sat16pair, as gemm_avx512vnni), then
// the limit test -- t + 32769 wraps 32767 to 0 and -32768 to 1 and every other value to
// >= 2, so one vpaddw and one unsigned compare (<= 1) into a mask -- and a masked 16-bit
// increment. Per row and vector that is 3 multiplies (vs 2 in plain sat16pair) and 3
// other ops, which on Zen 4 compete for the same vector pipes: measured 2.0-2.2x the plain
// 512-bit sat16pair loop on a 4x32 tile, against 1.5x for the multiplies alone. Tried on
// uniform random weights (2.03-2.07x): without the group's class test, no change; a count
// without the mask compare (2 - u saturated at 0 by vpsubusw, halved up by vpavgw against
// zero, then a plain add: four ALU ops), 2.2x. The loop is bound by its vector op count.
// The 16-bit counters take at most kMR * kKc / 4 = 4096 increments per K block before they
// are widened (vpmaddwd with ones) and added to the int64 totals.
// Where few pairs reach a limit (the usual case: trained weights, ReLU activations) the
// "sparse" form drops the exact32 multiply: a row whose two limit masks are empty lost
// nothing to saturation, so its exact sums are its sat16pair sums; only a row with a limit
// hit adds its exact-minus-sat16pair difference into the excess accumulators (out of line,
// two multiplies per vector), and a group that cannot reach a limit takes one vpdpbusd into
// the sat16pair sums. exact32 = sat16pair + excess at the end: the same int32 sums either
// way. A call starts sparse and turns dense when more than one row in kDenseAbove meets a
// limit (uniform random weights: nearly every row), where the branches would cost more.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "fastq/satcount.h"
#include "fastq/unroll.h"

namespace fastq {
namespace {

constexpr int64_t kKc = 4096;
constexpr int kMR = 4;  // 4 rows x 2 vectors x (sat + exact) = 16 accumulators + 2 counters

// The 4-row tile's k loop as one asm block with fixed registers: compiled from intrinsics,
// GCC merged the masked counter adds by copying accumulators (about 20 extra zmm moves per k
// group), which measured 10-25% slower. Registers: zmm0-7 exact32 and zmm8-15 sat16pair
// accumulators (row r, vector v at 2r+v), zmm16/17 the 16-bit counters, zmm18/19 the B
// vectors, zmm20 ones, zmm21 the wrap shift, zmm22 the A broadcast, zmm23/24 pair sums.
// am: the tile's largest activation byte per k group (tile_group_max); t0/t1:
// PackedB::sat_threshold of the two panels, one byte per k group. A group whose largest
// activation is within both panels' thresholds cannot reach an int16 limit: it takes a
// second vpdpbusd for the sat16pair sums (equal to the exact ones there) instead of
// vpmaddubsw + vpdpwssd + the limit count. (Sorting the groups into per-panel class lists
// instead of branching measured slower.) With dst null the block spills its 8 exact32, 8
// sat16pair and 2 counter vectors to out; else it stores the sums straight into the tile's
// rows (a first K block of a full 4 x 32 tile) and adds its counts into dst->colcnt, which on
// short-K layers saves a third of the tile's instructions. ng >= 1.
struct DirectStore {
  int32_t* c;         // sat16pair sums, row stride ldc_bytes
  int32_t* ce;        // exact32 sums
  int64_t ldc_bytes;
  __m512i* colcnt;    // 2 vectors of per-column int32 counts
};

// The parts the dense and sparse forms share: zeroed accumulators and the group's class test
// (a group that cannot reach a limit jumps to 2, else falls through), the k loop's step (from
// 3), the epilogue (sums into the tile or out, counts into colcnt or out) and the operands.
#define FASTQ_SC_HEAD                                                                       \
  "vmovdqu64 %[ones], %%zmm20\n\t"                                                          \
  "vmovdqu64 %[shift], %%zmm21\n\t"                                                         \
  "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"                                                       \
  "vmovdqa64 %%zmm0, %%zmm1\n\t vmovdqa64 %%zmm0, %%zmm2\n\t vmovdqa64 %%zmm0, %%zmm3\n\t"  \
  "vmovdqa64 %%zmm0, %%zmm4\n\t vmovdqa64 %%zmm0, %%zmm5\n\t vmovdqa64 %%zmm0, %%zmm6\n\t"  \
  "vmovdqa64 %%zmm0, %%zmm7\n\t vmovdqa64 %%zmm0, %%zmm8\n\t vmovdqa64 %%zmm0, %%zmm9\n\t"  \
  "vmovdqa64 %%zmm0, %%zmm10\n\t vmovdqa64 %%zmm0, %%zmm11\n\t"                             \
  "vmovdqa64 %%zmm0, %%zmm12\n\t vmovdqa64 %%zmm0, %%zmm13\n\t"                             \
  "vmovdqa64 %%zmm0, %%zmm14\n\t vmovdqa64 %%zmm0, %%zmm15\n\t"                             \
  "vmovdqa64 %%zmm0, %%zmm16\n\t vmovdqa64 %%zmm0, %%zmm17\n\t"                             \
  ".p2align 4\n\t"                                                                          \
  "1:\n\t"                                                                                  \
  "vmovdqa64 (%[b]), %%zmm18\n\t"                                                           \
  "vmovdqa64 (%[b],%[ps]), %%zmm19\n\t"                                                     \
  "movzbl (%[am],%[g]), %%eax\n\t"                                                          \
  "cmpb (%[t0],%[g]), %%al\n\t"                                                             \
  "ja 4f\n\t"                                                                               \
  "cmpb (%[t1],%[g]), %%al\n\t"                                                             \
  "jbe 2f\n\t"                                                                              \
  "4:\n\t"
#define FASTQ_SC_STEP                                                                       \
  "3:\n\t"                                                                                  \
  "addq $64, %[b]\n\t"                                                                      \
  "addq $4, %[a]\n\t"                                                                       \
  "incq %[g]\n\t"                                                                           \
  "cmpq %[g], %[ng]\n\t"                                                                    \
  "jne 1b\n\t"
// One row of the tile into c (sat16pair) and ce (exact32), then the next row.
#define FASTQ_SC_STORE(S0, S1, E0, E1)                                                      \
  "vmovdqu64 %%" S0 ", (%[a])\n\t"                                                          \
  "vmovdqu64 %%" S1 ", 64(%[a])\n\t"                                                        \
  "vmovdqu64 %%" E0 ", (%[b])\n\t"                                                          \
  "vmovdqu64 %%" E1 ", 64(%[b])\n\t"                                                        \
  "addq %[g], %[a]\n\t"                                                                     \
  "addq %[g], %[b]\n\t"
#define FASTQ_SC_TAIL                                                                       \
  "testq %[dst], %[dst]\n\t"                                                                \
  "jz 5f\n\t"                                                                               \
  "movq 0(%[dst]), %[a]\n\t" /* the loop's registers are free from here */                  \
  "movq 8(%[dst]), %[b]\n\t"                                                                \
  "movq 16(%[dst]), %[g]\n\t"                                                               \
  FASTQ_SC_STORE("zmm8", "zmm9", "zmm0", "zmm1")                                            \
  FASTQ_SC_STORE("zmm10", "zmm11", "zmm2", "zmm3")                                          \
  FASTQ_SC_STORE("zmm12", "zmm13", "zmm4", "zmm5")                                          \
  FASTQ_SC_STORE("zmm14", "zmm15", "zmm6", "zmm7")                                          \
  "movq 24(%[dst]), %%rax\n\t"                                                              \
  "vpmaddwd %%zmm20, %%zmm16, %%zmm16\n\t"                                                  \
  "vpmaddwd %%zmm20, %%zmm17, %%zmm17\n\t"                                                  \
  "vpaddd (%%rax), %%zmm16, %%zmm16\n\t"                                                    \
  "vpaddd 64(%%rax), %%zmm17, %%zmm17\n\t"                                                  \
  "vmovdqu64 %%zmm16, (%%rax)\n\t"                                                          \
  "vmovdqu64 %%zmm17, 64(%%rax)\n\t"                                                        \
  "jmp 6f\n\t"                                                                              \
  "5:\n\t"                                                                                  \
  "vmovdqu64 %%zmm0, 0(%[out])\n\t vmovdqu64 %%zmm1, 64(%[out])\n\t"                        \
  "vmovdqu64 %%zmm2, 128(%[out])\n\t vmovdqu64 %%zmm3, 192(%[out])\n\t"                     \
  "vmovdqu64 %%zmm4, 256(%[out])\n\t vmovdqu64 %%zmm5, 320(%[out])\n\t"                     \
  "vmovdqu64 %%zmm6, 384(%[out])\n\t vmovdqu64 %%zmm7, 448(%[out])\n\t"                     \
  "vmovdqu64 %%zmm8, 512(%[out])\n\t vmovdqu64 %%zmm9, 576(%[out])\n\t"                     \
  "vmovdqu64 %%zmm10, 640(%[out])\n\t vmovdqu64 %%zmm11, 704(%[out])\n\t"                   \
  "vmovdqu64 %%zmm12, 768(%[out])\n\t vmovdqu64 %%zmm13, 832(%[out])\n\t"                   \
  "vmovdqu64 %%zmm14, 896(%[out])\n\t vmovdqu64 %%zmm15, 960(%[out])\n\t"                   \
  "vmovdqu64 %%zmm16, 1024(%[out])\n\t vmovdqu64 %%zmm17, 1088(%[out])\n\t"                 \
  "6:\n\t"
// The k loop's body: the four rows of a group that can reach a limit (ROW), else of one that
// cannot (LIGHT, from 2); both forms' row macros take (row address, exact32/excess vectors,
// sat16pair vectors, the row's out-of-line labels) and use what they need.
#define FASTQ_SC_BODY(ROW, LIGHT)                                                           \
  ROW("(%[a])", "zmm0", "zmm1", "zmm8", "zmm9", "20", "21")                                 \
  ROW("(%[a],%[lda],1)", "zmm2", "zmm3", "zmm10", "zmm11", "22", "23")                      \
  ROW("(%[a],%[lda],2)", "zmm4", "zmm5", "zmm12", "zmm13", "24", "25")                      \
  ROW("(%[a],%[lda3],1)", "zmm6", "zmm7", "zmm14", "zmm15", "26", "27")                     \
  "jmp 3f\n\t"                                                                             \
  "2:\n\t"                                                                                 \
  LIGHT("(%[a])", "zmm0", "zmm1", "zmm8", "zmm9", "", "")                                   \
  LIGHT("(%[a],%[lda],1)", "zmm2", "zmm3", "zmm10", "zmm11", "", "")                        \
  LIGHT("(%[a],%[lda],2)", "zmm4", "zmm5", "zmm12", "zmm13", "", "")                        \
  LIGHT("(%[a],%[lda3],1)", "zmm6", "zmm7", "zmm14", "zmm15", "", "")
#define FASTQ_SC_INPUTS                                                                     \
  [ng] "r"(ng), [am] "r"(am), [t0] "r"(t0), [t1] "r"(t1), [lda] "r"(lda),                   \
      [lda3] "r"(lda3), [ps] "r"(panel_stride), [out] "r"(out), [dst] "r"(dst),             \
      [ones] "m"(ones), [shift] "m"(shift)
#define FASTQ_SC_CLOBBERS                                                                   \
  "memory", "cc", "rax", "k1", "k2", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",  \
      "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16",  \
      "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24"

// The 4 x 32 tile's k loop (above); with hits, in the sparse form: zmm0-7 hold the excess
// (exact32 - sat16pair) instead of the exact32 sums until the end, zmm25/26 the limit tests
// (zmm23/24 keep the pair sums for the out-of-line blocks), and the rows that met a limit are
// added to *hits.
void micro4_asm(const uint8_t* ap, int64_t lda, const int8_t* b, int64_t panel_stride,
                int64_t ng, const uint8_t* am, const uint8_t* t0, const uint8_t* t1,
                __m512i* out, const DirectStore* dst, int64_t* hits) {
  const __m512i ones = _mm512_set1_epi16(1);
  const __m512i shift = _mm512_set1_epi16(static_cast<int16_t>(32769 - 65536));
  const int64_t lda3 = 3 * lda;
  int64_t g = 0;
  if (!hits) {  // dense
#define FASTQ_SC_ROW(AADDR, E0, E1, S0, S1, HIT, BACK) \
  "vpbroadcastd " AADDR ", %%zmm22\n\t"            \
  "vpdpbusd %%zmm18, %%zmm22, %%" E0 "\n\t"        \
  "vpdpbusd %%zmm19, %%zmm22, %%" E1 "\n\t"        \
  "vpmaddubsw %%zmm18, %%zmm22, %%zmm23\n\t"       \
  "vpmaddubsw %%zmm19, %%zmm22, %%zmm24\n\t"       \
  "vpdpwssd %%zmm20, %%zmm23, %%" S0 "\n\t"        \
  "vpdpwssd %%zmm20, %%zmm24, %%" S1 "\n\t"        \
  "vpaddw %%zmm21, %%zmm23, %%zmm23\n\t"           \
  "vpaddw %%zmm21, %%zmm24, %%zmm24\n\t"           \
  "vpcmpuw $2, %%zmm20, %%zmm23, %%k1\n\t"         \
  "vpcmpuw $2, %%zmm20, %%zmm24, %%k2\n\t"         \
  "vpaddw %%zmm20, %%zmm16, %%zmm16%{%%k1%}\n\t"   \
  "vpaddw %%zmm20, %%zmm17, %%zmm17%{%%k2%}\n\t"
  // A k group whose activations and weights cannot reach a limit: sat16pair sums equal
  // exact32 ones.
#define FASTQ_SC_LIGHT(AADDR, E0, E1, S0, S1, HIT, BACK) \
  "vpbroadcastd " AADDR ", %%zmm22\n\t"            \
  "vpdpbusd %%zmm18, %%zmm22, %%" E0 "\n\t"        \
  "vpdpbusd %%zmm19, %%zmm22, %%" E1 "\n\t"        \
  "vpdpbusd %%zmm18, %%zmm22, %%" S0 "\n\t"        \
  "vpdpbusd %%zmm19, %%zmm22, %%" S1 "\n\t"
  __asm__ volatile(
      FASTQ_SC_HEAD
      FASTQ_SC_BODY(FASTQ_SC_ROW, FASTQ_SC_LIGHT)
      FASTQ_SC_STEP
      FASTQ_SC_TAIL
      : [a] "+r"(ap), [b] "+r"(b), [g] "+r"(g)
      : FASTQ_SC_INPUTS
      : FASTQ_SC_CLOBBERS);
#undef FASTQ_SC_ROW
#undef FASTQ_SC_LIGHT
    return;
  }
  // One row: sat16pair sums and limit counts; a limit hit branches to the row's block.
#define FASTQ_SP_ROW(AADDR, X0, X1, S0, S1, HIT, BACK) \
  "vpbroadcastd " AADDR ", %%zmm22\n\t"             \
  "vpmaddubsw %%zmm18, %%zmm22, %%zmm23\n\t"        \
  "vpmaddubsw %%zmm19, %%zmm22, %%zmm24\n\t"        \
  "vpdpwssd %%zmm20, %%zmm23, %%" S0 "\n\t"         \
  "vpdpwssd %%zmm20, %%zmm24, %%" S1 "\n\t"         \
  "vpaddw %%zmm21, %%zmm23, %%zmm25\n\t"            \
  "vpaddw %%zmm21, %%zmm24, %%zmm26\n\t"            \
  "vpcmpuw $2, %%zmm20, %%zmm25, %%k1\n\t"          \
  "vpcmpuw $2, %%zmm20, %%zmm26, %%k2\n\t"          \
  "vpaddw %%zmm20, %%zmm16, %%zmm16%{%%k1%}\n\t"    \
  "vpaddw %%zmm20, %%zmm17, %%zmm17%{%%k2%}\n\t"    \
  "kortestd %%k1, %%k2\n\t"                         \
  "jnz " HIT "f\n\t"                                \
  BACK ":\n\t"
  // The row's excess: + exact32 - sat16pair of this group, per vector (zmm22 still holds the
  // row's activations, zmm23/24 its pair sums).
#define FASTQ_SP_HIT(HIT, BACK, X0, X1)              \
  HIT ":\n\t"                                        \
  "incq %[hits]\n\t"                                 \
  "vpdpbusd %%zmm18, %%zmm22, %%" X0 "\n\t"          \
  "vpdpbusd %%zmm19, %%zmm22, %%" X1 "\n\t"          \
  "vpxord %%zmm25, %%zmm25, %%zmm25\n\t"             \
  "vpxord %%zmm26, %%zmm26, %%zmm26\n\t"             \
  "vpdpwssd %%zmm20, %%zmm23, %%zmm25\n\t"           \
  "vpdpwssd %%zmm20, %%zmm24, %%zmm26\n\t"           \
  "vpsubd %%zmm25, %%" X0 ", %%" X0 "\n\t"           \
  "vpsubd %%zmm26, %%" X1 ", %%" X1 "\n\t"           \
  "jmp " BACK "b\n\t"
  // A group that cannot reach a limit: exact32 = sat16pair, no excess.
#define FASTQ_SP_LIGHT(AADDR, X0, X1, S0, S1, HIT, BACK) \
  "vpbroadcastd " AADDR ", %%zmm22\n\t"             \
  "vpdpbusd %%zmm18, %%zmm22, %%" S0 "\n\t"         \
  "vpdpbusd %%zmm19, %%zmm22, %%" S1 "\n\t"
  __asm__ volatile(
      FASTQ_SC_HEAD
      FASTQ_SC_BODY(FASTQ_SP_ROW, FASTQ_SP_LIGHT)
      FASTQ_SC_STEP
      "jmp 7f\n\t"
      FASTQ_SP_HIT("20", "21", "zmm0", "zmm1")
      FASTQ_SP_HIT("22", "23", "zmm2", "zmm3")
      FASTQ_SP_HIT("24", "25", "zmm4", "zmm5")
      FASTQ_SP_HIT("26", "27", "zmm6", "zmm7")
      "7:\n\t"
      // exact32 = sat16pair + excess
      "vpaddd %%zmm8, %%zmm0, %%zmm0\n\t vpaddd %%zmm9, %%zmm1, %%zmm1\n\t"
      "vpaddd %%zmm10, %%zmm2, %%zmm2\n\t vpaddd %%zmm11, %%zmm3, %%zmm3\n\t"
      "vpaddd %%zmm12, %%zmm4, %%zmm4\n\t vpaddd %%zmm13, %%zmm5, %%zmm5\n\t"
      "vpaddd %%zmm14, %%zmm6, %%zmm6\n\t vpaddd %%zmm15, %%zmm7, %%zmm7\n\t"
      FASTQ_SC_TAIL
      : [a] "+r"(ap), [b] "+r"(b), [g] "+r"(g), [hits] "+m"(*hits)
      : FASTQ_SC_INPUTS
      : FASTQ_SC_CLOBBERS, "xmm25", "xmm26");
#undef FASTQ_SP_ROW
#undef FASTQ_SP_HIT
#undef FASTQ_SP_LIGHT
}
#undef FASTQ_SC_HEAD
#undef FASTQ_SC_BODY
#undef FASTQ_SC_STEP
#undef FASTQ_SC_STORE
#undef FASTQ_SC_TAIL
#undef FASTQ_SC_INPUTS
#undef FASTQ_SC_CLOBBERS

// How a call of the counting GEMM runs its full 4 x 32 tiles: sparse until more than one row in
// kDenseAbove has met a limit (judged after every sparse tile), then dense. A call with the
// same packed weights as the thread's previous call (the next row block of a layer) starts
// in the mode that call ended in.
struct SatMode {
  bool sparse = true;
  int64_t rows = 0, hits = 0;
};
constexpr int64_t kDenseAbove = 8;

// NV: vectors (panels) of the tile, 2, or 1 for a lone last panel.
// One 16-column piece of a tile's rows: sat16pair sums s to cp, exact32 sums e to ep (added
// to what an earlier K block left there unless first), columns under m only.
inline void store_sums(int32_t* cp, int32_t* ep, __m512i s, __m512i e, __mmask16 m,
                       bool first) {
  if (!first) {
    s = _mm512_add_epi32(s, _mm512_maskz_loadu_epi32(m, cp));
    e = _mm512_add_epi32(e, _mm512_maskz_loadu_epi32(m, ep));
  }
  _mm512_mask_storeu_epi32(cp, m, s);
  _mm512_mask_storeu_epi32(ep, m, e);
}

// Whether no k group of the tile can reach a limit: every group's largest activation is
// within both panels' thresholds.
inline bool tile_light(const uint8_t* am, const uint8_t* t0, const uint8_t* t1, int64_t ng) {
  for (int64_t g0 = 0; g0 < ng; g0 += 64) {
    const int64_t n = std::min<int64_t>(64, ng - g0);
    const __mmask64 k = n == 64 ? ~__mmask64(0) : (__mmask64(1) << n) - 1;
    const __m512i a = _mm512_maskz_loadu_epi8(k, am + g0);
    const __m512i t = _mm512_min_epu8(_mm512_maskz_loadu_epi8(k, t0 + g0),
                                      _mm512_maskz_loadu_epi8(k, t1 + g0));
    if (_mm512_mask_cmpgt_epu8_mask(k, a, t) != 0) return false;
  }
  return true;
}

// A tile where no pair can reach a limit: one vpdpbusd per row and vector, as the plain
// exact32 kernel, and its sums go to both outputs (sat16pair equals exact32 there; no counts).
template <int MR, int NV>
void light_tile(const uint8_t* ap, int64_t lda, const int8_t* b, int64_t panel_stride,
                int64_t ng, int32_t* c, int32_t* ce, int64_t ldc, const __mmask16* mask,
                bool first) {
  __m512i acc[MR][NV];
  unroll<MR>([&](auto r) { unroll<NV>([&](auto v) { acc[r][v] = _mm512_setzero_si512(); }); });
  for (int64_t g = 0; g < ng; ++g) {
    __m512i bv[NV];
    unroll<NV>([&](auto v) {
      bv[v] = _mm512_load_si512(reinterpret_cast<const void*>(b + v * panel_stride + g * 64));
    });
    unroll<MR>([&](auto r) {
      int32_t a4;
      std::memcpy(&a4, ap + r * lda + g * 4, 4);
      const __m512i av = _mm512_set1_epi32(a4);
      unroll<NV>([&](auto v) { acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], av, bv[v]); });
    });
  }
  unroll<MR>([&](auto r) {
    unroll<NV>([&](auto v) {
      store_sums(c + r * ldc + v * 16, ce + r * ldc + v * 16, acc[r][v], acc[r][v], mask[v],
                 first);
    });
  });
}

template <int MR, int NV>
void micro(const uint8_t* ap, int64_t lda, const int8_t* b, int64_t panel_stride, int64_t ng,
           const uint8_t* am, const uint8_t* t0, const uint8_t* t1, int32_t* c, int32_t* ce,
           int64_t ldc, int64_t ncols, bool first, __m512i* colcnt, SatMode* mode) {
  if (tile_light(am, t0, t1, ng)) {
    __mmask16 m[2];
    unroll<NV>([&](auto v) {
      const int64_t cols = ncols - v * 16;
      m[v] = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (cols > 0 ? cols : 0)) - 1);
    });
    light_tile<MR, NV>(ap, lda, b, panel_stride, ng, c, ce, ldc, m, first);
    return;
  }
  __m512i sat[MR][2], ex[MR][2], cnt[2];
  __mmask16 mask[2];
  unroll<NV>([&](auto v) {
    const int64_t cols = ncols - v * 16;
    mask[v] = cols >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (cols > 0 ? cols : 0)) - 1);
    cnt[v] = _mm512_setzero_si512();
  });
  unroll<MR>([&](auto r) {
    unroll<NV>([&](auto v) { sat[r][v] = ex[r][v] = _mm512_setzero_si512(); });
  });
  const __m512i ones = _mm512_set1_epi16(1);
  const __m512i shift = _mm512_set1_epi16(static_cast<int16_t>(32769 - 65536));
  if constexpr (MR == 4 && NV == 2) {
    // the k loop in asm, sparse or dense (SatMode), straight into the tile or through outv
    auto tile = [&](__m512i* outv, const DirectStore* d) {
      if (!mode->sparse) {
        micro4_asm(ap, lda, b, panel_stride, ng, am, t0, t1, outv, d, nullptr);
        return;
      }
      micro4_asm(ap, lda, b, panel_stride, ng, am, t0, t1, outv, d, &mode->hits);
      mode->rows += MR * ng;
      if (mode->hits * kDenseAbove > mode->rows)
        mode->sparse = false;
    };
    if (ng > 0 && first && ncols == 32) {
      const DirectStore d{c, ce, ldc * 4, colcnt};
      tile(nullptr, &d);
      return;
    }
    if (ng > 0) {
      alignas(64) __m512i outv[18];
      tile(outv, nullptr);
      unroll<MR>([&](auto r) {
        unroll<NV>([&](auto v) {
          ex[r][v] = outv[2 * r + v];
          sat[r][v] = outv[8 + 2 * r + v];
        });
      });
      cnt[0] = outv[16];
      cnt[1] = outv[17];
    }
    ng = 0;  // the asm block ran the k loop
  }
  for (int64_t g = 0; g < ng; ++g) {
    __m512i bv[2];
    unroll<NV>([&](auto v) {
      bv[v] = _mm512_load_si512(reinterpret_cast<const void*>(b + v * panel_stride + g * 64));
    });
    const uint8_t* ag = ap + g * 4;
    // light: no pair of the group can reach a limit (micro4_asm), sat16pair = exact32
    const bool light = am[g] <= t0[g] && am[g] <= t1[g];
    unroll<MR>([&](auto r) {
      int32_t a4;
      std::memcpy(&a4, ag + r * lda, 4);
      const __m512i av = _mm512_set1_epi32(a4);
      unroll<NV>([&](auto v) {
        ex[r][v] = _mm512_dpbusd_epi32(ex[r][v], av, bv[v]);
        if (light) {
          sat[r][v] = _mm512_dpbusd_epi32(sat[r][v], av, bv[v]);
          return;
        }
        const __m512i t = _mm512_maddubs_epi16(av, bv[v]);
        sat[r][v] = _mm512_dpwssd_epi32(sat[r][v], t, ones);
        const __mmask32 hit = _mm512_cmple_epu16_mask(_mm512_add_epi16(t, shift), ones);
        cnt[v] = _mm512_mask_add_epi16(cnt[v], hit, cnt[v], ones);
      });
    });
  }
  unroll<MR>([&](auto r) {
    unroll<NV>([&](auto v) {
      store_sums(c + r * ldc + v * 16, ce + r * ldc + v * 16, sat[r][v], ex[r][v], mask[v],
                 first);
    });
  });
  // both pairs of a column into its int32 lane (the caller widens them to int64)
  unroll<NV>([&](auto v) {
    colcnt[v] = _mm512_add_epi32(colcnt[v], _mm512_madd_epi16(cnt[v], ones));
  });
}

using MicroFn = void (*)(const uint8_t*, int64_t, const int8_t*, int64_t, int64_t,
                         const uint8_t*, const uint8_t*, const uint8_t*, int32_t*, int32_t*,
                         int64_t, int64_t, bool, __m512i*, SatMode*);

// amax[g] = the largest byte of k group g (4 bytes from k0 + 4g) over rows [0, mr), g < ng.
void tile_group_max(const uint8_t* a, int64_t lda, int64_t mr, int64_t ng, uint8_t* amax) {
  for (int64_t g0 = 0; g0 < ng; g0 += 16) {
    const int64_t n = std::min<int64_t>(16, ng - g0);
    const __mmask64 lm = n == 16 ? ~__mmask64(0) : (__mmask64(1) << (4 * n)) - 1;
    __m512i m = _mm512_maskz_loadu_epi8(lm, a + g0 * 4);
    for (int64_t r = 1; r < mr; ++r)
      m = _mm512_max_epu8(m, _mm512_maskz_loadu_epi8(lm, a + r * lda + g0 * 4));
    m = _mm512_max_epu8(m, _mm512_srli_epi32(m, 16));
    m = _mm512_max_epu8(m, _mm512_srli_epi32(m, 8));  // byte 0 of each lane: the group's max
    _mm_mask_storeu_epi8(amax + g0, static_cast<__mmask16>((1u << n) - 1),
                         _mm512_cvtepi32_epi8(m));
  }
}

// A plain struct, not std::array<MicroFn, N>: MicroFn's __m512i* parameter carries vector
// attributes that GCC warns it drops from a template argument.
struct MicroTable {
  MicroFn fn[kMR];
  MicroFn operator[](int64_t i) const { return fn[i]; }
};

template <int NV, int... R>
constexpr MicroTable make_table(std::integer_sequence<int, R...>) {
  return {{&micro<R + 1, NV>...}};
}

}  // namespace

void gemm_u8s8_satcount_avx512vnni(const GemmTile& t, int32_t* c_exact, int64_t* counts) {
  static constexpr auto table2 = make_table<2>(std::make_integer_sequence<int, kMR>{});
  static constexpr auto table1 = make_table<1>(std::make_integer_sequence<int, kMR>{});
  const PackedB& b = *t.b;
  const int64_t Kp = b.Kp, panel_stride = Kp * kPanel, groups = Kp / kGroup;
  // The 4-row tile skips counting in k groups whose activations and weights cannot reach a
  // limit (gemm.h's sat_threshold against the tile's largest activation per group).
  std::vector<uint8_t> all;
  const uint8_t* thr = b.sat_threshold.data();
  if (b.sat_threshold.size() != static_cast<size_t>(b.Np / kPanel * groups)) {
    all.assign(static_cast<size_t>(b.Np / kPanel * groups), 0);
    thr = all.data();
  }
  const int64_t tiles = (t.m + kMR - 1) / kMR;
  thread_local std::vector<uint8_t> amax_buf;
  if (amax_buf.size() < static_cast<size_t>(tiles * std::min(kKc, Kp) / kGroup))
    amax_buf.resize(static_cast<size_t>(tiles * std::min(kKc, Kp) / kGroup));
  uint8_t* amax = amax_buf.data();
  // A lone last panel runs as a 1-vector tile.
  thread_local const PackedB* last_b = nullptr;
  thread_local bool last_sparse = true;
  SatMode mode;
  if (last_b == &b) mode.sparse = last_sparse;
  for (int64_t k0 = 0; k0 < Kp; k0 += kKc) {
    const int64_t ng = std::min(kKc, Kp - k0) / kGroup;
    for (int64_t i = 0; i < tiles; ++i)
      tile_group_max(t.a + i * kMR * t.lda + k0, t.lda, std::min<int64_t>(kMR, t.m - i * kMR),
                     ng, amax + i * ng);
    for (int64_t p = t.p0; p < t.p1; p += 2) {
      const bool two = p + 1 < t.p1;
      const int8_t* bp = b.panel(p) + k0 * kPanel;
      const int64_t ncols = std::min<int64_t>((two ? 2 : 1) * kPanel, b.N - p * kPanel);
      // per-column counts stay in int32 lanes over up to kFlush tiles (each adds at most
      // 2 * kMR * kKc / 4 = 8192 per lane), then widen into the int64 totals
      constexpr int64_t kFlush = 1024;
      __m512i colcnt[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
      auto flush = [&]() {
        alignas(64) int32_t per_col[2][16];
        _mm512_store_si512(per_col[0], colcnt[0]);
        _mm512_store_si512(per_col[1], colcnt[1]);
        for (int64_t j = 0; j < ncols; ++j) counts[p * kPanel + j] += per_col[j / 16][j % 16];
        colcnt[0] = colcnt[1] = _mm512_setzero_si512();
      };
      int64_t since_flush = 0;
      for (int64_t m = 0; m < t.m; m += kMR) {
        const int mr = static_cast<int>(std::min<int64_t>(kMR, t.m - m));
        const uint8_t* t0 = thr + p * groups + k0 / kGroup;
        (two ? table2 : table1)[mr - 1](t.a + m * t.lda + k0, t.lda, bp, two ? panel_stride : 0,
                                        ng, amax + (m / kMR) * ng, t0, two ? t0 + groups : t0,
                                        t.c + m * t.ldc + p * kPanel,
                                        c_exact + m * t.ldc + p * kPanel, t.ldc, ncols,
                                        k0 == 0, colcnt, &mode);
        if (++since_flush == kFlush) {
          flush();
          since_flush = 0;
        }
      }
      flush();
    }
  }
  last_b = &b;
  last_sparse = mode.sparse;
}

}  // namespace fastq
