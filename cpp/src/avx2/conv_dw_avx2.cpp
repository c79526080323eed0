// AVX2 build of the direct depthwise int8 body (conv_dw_body.h): the compiler vectorizes the
// u8 x s8 -> s32 row updates 8 lanes wide. Integer-only: bits equal conv_dw_u8s8_ref.
#include "fastq/conv_dw_body.h"

namespace fastq {
void conv_dw_planes_avx2(const DwArgs& a, int64_t p0, int64_t p1) { dw_planes_body(a, p0, p1); }
}  // namespace fastq
