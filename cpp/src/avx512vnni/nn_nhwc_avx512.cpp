// AVX-512 build of the NHWC float32 conv bodies (nn_nhwc_body.h): 16-float vectors, GEMM
// tile 12 rows x 32 columns, fused multiply-adds (differs from the Ref build by rounding).
// Uses AVX-512F only, but lives with (and needs the CPU of) the avx512vnni impl.
#ifndef FASTQ_HAVE_X86
#define FASTQ_HAVE_X86 1  // this directory is only built on x86; expose the declarations
#endif
#define FASTQ_NHWC_VEC_BYTES 64
#include "fastq/nn_nhwc_body.h"

namespace fastq {
namespace nn {
NhwcKernels nhwc_kernels_avx512() { return make_nhwc_kernels(); }
}  // namespace nn
}  // namespace fastq
