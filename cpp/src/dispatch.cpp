// The one dispatch table: (Impl, Arith) -> kernel. Nothing else chooses kernels by ISA.
// Asking for an impl the host cannot run is an error naming the missing feature, never a
// silent fallback.
#include "fastq/cpu_features.h"
#include "fastq/gemm.h"
#include "fastq/satcount.h"
#include "fastq/satstats.h"

namespace fastq {

namespace {
void require_runnable(Impl impl) {
  const std::string missing = impl_missing_feature(impl);
  if (!missing.empty())
    throw std::invalid_argument(std::string("impl '") + impl_name(impl) +
                                "' cannot run on this CPU: missing " + missing);
}
}  // namespace

SatCountKernel satcount_kernel(Impl impl) {
  require_runnable(impl);
  if (impl == Impl::Ref) return gemm_u8s8_satcount_ref;
#if defined(FASTQ_HAVE_X86)
  if (impl == Impl::Avx512Vnni) return gemm_u8s8_satcount_avx512vnni;
#endif
  throw std::invalid_argument(std::string("the saturation-counting GEMM has no '") +
                              impl_name(impl) + "' kernel; valid: ref, avx512vnni");
}

RowStatsFn row_stats_kernel(Impl impl) {
  require_runnable(impl);
  switch (impl) {
    case Impl::Ref: return row_stats_ref;
#if defined(FASTQ_HAVE_X86)
    case Impl::Avx2: return row_stats_avx2;
    case Impl::Avx512Vnni: return row_stats_avx512;
#else
    default: break;
#endif
  }
  throw std::invalid_argument(std::string("impl '") + impl_name(impl) + "' is not built");
}

ImplicitKernel implicit_kernel(Impl impl, Arith arith) {
  require_runnable(impl);
#if defined(FASTQ_HAVE_X86)
  if (impl == Impl::Avx512Vnni)
    return arith == Arith::Exact32 ? conv_implicit_exact32_avx512vnni
                                   : conv_implicit_sat16pair_avx512vnni;
#endif
  (void)arith;
  return nullptr;
}

GemmKernel gemm_kernel(Impl impl, Arith arith) {
  require_runnable(impl);
  const bool exact = arith == Arith::Exact32;
  switch (impl) {
    case Impl::Ref: return exact ? gemm_u8s8_exact32_ref : gemm_u8s8_sat16pair_ref;
#if defined(FASTQ_HAVE_X86)
    case Impl::Avx2: return exact ? gemm_u8s8_exact32_avx2 : gemm_u8s8_sat16pair_avx2;
    case Impl::Avx512Vnni:
      return exact ? gemm_u8s8_exact32_avx512vnni : gemm_u8s8_sat16pair_avx512vnni;
#else
    default: break;
#endif
  }
  throw std::invalid_argument(std::string("impl '") + impl_name(impl) + "' is not built");
}

}  // namespace fastq
