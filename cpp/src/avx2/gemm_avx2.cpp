// TEMPORARY: forwards to ref until the avx2 kernels land.
#include "fastq/gemm.h"
namespace fastq {
void gemm_u8s8_exact32_avx2(const GemmTile& t) { gemm_u8s8_exact32_ref(t); }
void gemm_u8s8_sat16pair_avx2(const GemmTile& t) { gemm_u8s8_sat16pair_ref(t); }
}
