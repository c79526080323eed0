// CPU feature detection: cpuid + XGETBV, read once, exposed as named predicates.
// Contract: nothing else in fastq reads cpuid. A feature counts only when the CPU reports it
// AND the OS saves the register state it needs (XCR0 bits for YMM / ZMM / opmask).
#pragma once
#include <string>
#include <vector>
#include <utility>
#include "fastq/types.h"

namespace fastq {

struct CpuFeatures {
  bool x86 = false;
  bool sse41 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avx_vnni = false;
  bool os_avx = false;     // XCR0: XMM+YMM state enabled
  bool os_avx512 = false;  // XCR0: opmask + ZMM state enabled
};

const CpuFeatures& cpu_features();
std::vector<std::pair<std::string, bool>> cpu_feature_list();

// Empty string when `impl` can run here; otherwise the name of the first missing feature.
std::string impl_missing_feature(Impl impl);
inline bool impl_supported(Impl impl) { return impl_missing_feature(impl).empty(); }

}  // namespace fastq
