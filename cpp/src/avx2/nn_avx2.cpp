// AVX2 builds of the depthwise-conv and pooling bodies (nn_body.h): the same source compiled
// with -mavx2 -mfma so the compiler vectorizes 8 floats wide. -ffp-contract=off holds here
// too; only the depthwise conv fuses its multiply-adds explicitly (dw_madd), so pooling
// equals the portable build bit for bit and the depthwise conv equals it up to rounding.
#ifndef FASTQ_HAVE_X86
#define FASTQ_HAVE_X86 1  // this directory is only built on x86; expose the declarations
#endif
#define FASTQ_NN_VEC_BYTES 32  // one AVX2 register
#include "fastq/nn_body.h"
#include "fastq/nn_f32.h"

namespace fastq {
namespace nn {

template <typename T>
void depthwise_planes_avx2(const T* x, const T* w, const T* bias, T lo, T hi, int64_t p0,
                           int64_t p1, int64_t C, const Geom3& g, T* y) {
  dw_body(x, w, bias, lo, hi, p0, p1, C, g, y);
}

template <typename T>
void pool_planes_avx2(const T* x, int64_t p0, int64_t p1, const Geom3& g, const PoolArgs& a,
                      const AxisTaps& td, const AxisTaps& th, const AxisTaps& tw, T* y) {
  pool_body(x, p0, p1, g, a, td, th, tw, y);
}

template void depthwise_planes_avx2<float>(const float*, const float*, const float*, float,
    float, int64_t, int64_t, int64_t, const Geom3&, float*);
template void depthwise_planes_avx2<double>(const double*, const double*, const double*,
    double, double, int64_t, int64_t, int64_t, const Geom3&, double*);
#define FASTQ_POOL_AVX2(T)                                                                   \
  template void pool_planes_avx2<T>(const T*, int64_t, int64_t, const Geom3&, const PoolArgs&, \
                                    const AxisTaps&, const AxisTaps&, const AxisTaps&, T*);
FASTQ_POOL_AVX2(float)
FASTQ_POOL_AVX2(double)
FASTQ_POOL_AVX2(int8_t)
FASTQ_POOL_AVX2(uint8_t)
#undef FASTQ_POOL_AVX2

}  // namespace nn
}  // namespace fastq
