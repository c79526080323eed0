// Driver of the direct depthwise int8 conv (conv_dw.h): checks the shape, resolves the impl
// (an impl this host cannot run is an error naming the missing feature), splits the output
// planes across threads. Impl::Ref runs the scalar reference.
#include "fastq/conv_dw.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "fastq/cpu_features.h"
#include "fastq/threads.h"

namespace fastq {

void conv_dw_u8s8(const uint8_t* x, const ConvShape& s, const int8_t* w, Pairing pairing,
                  uint8_t x_zp, int32_t* out, Impl impl, Arith arith) {
  if (s.Cg() != 1 || s.group != s.C || s.OC % s.C)
    throw std::invalid_argument("direct depthwise conv needs one input channel per group");
  if (s.OH() <= 0 || s.OW() <= 0)
    throw std::invalid_argument("conv output would be empty: kernel larger than padded input");
  const std::string missing = impl_missing_feature(impl);
  if (!missing.empty())
    throw std::invalid_argument(std::string("impl '") + impl_name(impl) +
                                "' cannot run on this CPU: missing " + missing);
  DwArgs a{x, w, s, x_zp, arith == Arith::Sat16Pair && pairing == Pairing::Flat, out};
  void (*body)(const DwArgs&, int64_t, int64_t) = nullptr;
  switch (impl) {
    case Impl::Ref: conv_dw_u8s8_ref(a); return;
#if defined(FASTQ_HAVE_X86)
    case Impl::Avx2: body = conv_dw_planes_avx2; break;
    // the 256-bit build: at depthwise row lengths (tens of outputs) 512-bit blocks lose
    // more to row tails than they gain (measured 0.54 vs 0.32 ms on 64x56x56, 3x3)
    case Impl::Avx512Vnni: body = conv_dw_planes_avx2; break;
#else
    default:
      throw std::invalid_argument(std::string("impl '") + impl_name(impl) + "' is not built");
#endif
  }
  const int64_t planes = s.N * s.OC;
  const int64_t chunk = 8;  // planes per task: amortizes the padded-copy setup
  parallel_for((planes + chunk - 1) / chunk, [&](int64_t i) {
    body(a, i * chunk, std::min(planes, (i + 1) * chunk));
  });
}

}  // namespace fastq
