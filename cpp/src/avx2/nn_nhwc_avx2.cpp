// AVX2 + FMA build of the NHWC float32 conv bodies (nn_nhwc_body.h): 8-float vectors, GEMM
// tile 6 rows x 16 columns, fused multiply-adds (differs from the Ref build by rounding).
#ifndef FASTQ_HAVE_X86
#define FASTQ_HAVE_X86 1  // this directory is only built on x86; expose the declarations
#endif
#define FASTQ_NHWC_VEC_BYTES 32
#include "fastq/nn_nhwc_body.h"

namespace fastq {
namespace nn {
NhwcKernels nhwc_kernels_avx2() { return make_nhwc_kernels(); }
}  // namespace nn
}  // namespace fastq
