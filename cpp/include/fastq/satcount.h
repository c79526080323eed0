// Saturation-analysis GEMM: one pass over A and packed B that computes, for u8 x s8,
//   c_sat[m][n]   = the sat16pair sum (bit-equal to gemm_u8s8 with Arith::Sat16Pair),
//   c_exact[m][n] = the exact32 sum,
//   limit[n]      = how many pair sums of column n, over all rows, vpmaddubsw returned at an
//                   int16 limit (32767 or -32768). Every clipped pair is counted; so is a pair
//                   whose exact sum equals a limit (it loses nothing), which is why the error
//                   itself is taken from c_exact - c_sat, never from the count.
// Pairing is the GEMM's: (k, k+1) for even k, an odd K padded with one zero.
#pragma once
#include <cstdint>

#include "fastq/gemm.h"

namespace fastq {

// A kernel adds its tile's per-column counts into counts[n] (columns of its panels only).
using SatCountKernel = void (*)(const GemmTile& t, int32_t* c_exact, int64_t* counts);

void gemm_u8s8_satcount_ref(const GemmTile& t, int32_t* c_exact, int64_t* counts);
void gemm_u8s8_satcount_avx512vnni(const GemmTile& t, int32_t* c_exact, int64_t* counts);

// Dispatch (dispatch.cpp): ref everywhere; avx512vnni where the CPU runs it. There is no
// avx2 variant: asking for it is an error, never a silent fallback.
SatCountKernel satcount_kernel(Impl impl);

// c_sat, c_exact: M x N (row stride N); limit_counts: N entries, overwritten.
void gemm_u8s8_satcount(const uint8_t* a, int64_t M, int64_t lda, const PackedB& b,
                        int32_t* c_sat, int32_t* c_exact, int64_t* limit_counts, Impl impl);

}  // namespace fastq
