// AVX2 build of the flat-pairing depthwise counting body (conv_satcount_body.h): the
// compiler vectorizes the per-row pair sums, clamps and limit counts 8 lanes wide (NCHW:
// over the output row; NHWC: over the channels).
// Integer-only: bits and counts equal the portable build's (Impl::Ref).
#include "fastq/conv_satcount_body.h"

namespace fastq {
void dw_flat_satcount_planes_avx2(const DwSatArgs& a, int64_t p0, int64_t p1,
                                  int64_t* per_plane) {
  dw_flat_satcount_body(a, p0, p1, per_plane);
}

void dw_flat_satcount_nhwc_row_avx2(const DwNhwcSatArgs& a, int64_t n, int64_t oh, int32_t* sat,
                                    int32_t* exact, int64_t* lim) {
  dw_flat_satcount_nhwc_row_body(a, n, oh, sat, exact, lim);
}
}  // namespace fastq
