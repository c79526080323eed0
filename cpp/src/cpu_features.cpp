// cpuid and XGETBV, queried once (function-local static). The only reader of cpuid in fastq.
// XGETBV is emitted as raw bytes so this portable file needs no -mxsave flag.
#include "fastq/cpu_features.h"

#if defined(FASTQ_HAVE_X86)
#include <cpuid.h>
#endif

namespace fastq {
namespace {

#if defined(FASTQ_HAVE_X86)
uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if defined(FASTQ_HAVE_X86)
  f.x86 = true;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  f.sse41 = (c >> 19) & 1;
  f.fma = (c >> 12) & 1;
  f.f16c = (c >> 29) & 1;
  const bool osxsave = (c >> 27) & 1;
  const bool cpu_avx = (c >> 28) & 1;
  uint64_t xcr0 = osxsave ? read_xcr0() : 0;
  f.os_avx = osxsave && (xcr0 & 0x6) == 0x6;             // SSE + AVX state
  f.os_avx512 = f.os_avx && (xcr0 & 0xe0) == 0xe0;      // opmask, ZMM_Hi256, Hi16_ZMM
  f.avx = cpu_avx && f.os_avx;
  f.fma = f.fma && f.os_avx;
  f.f16c = f.f16c && f.os_avx;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = ((b >> 5) & 1) && f.os_avx;
    f.avx512f = ((b >> 16) & 1) && f.os_avx512;
    f.avx512dq = ((b >> 17) & 1) && f.os_avx512;
    f.avx512bw = ((b >> 30) & 1) && f.os_avx512;
    f.avx512vl = ((b >> 31) & 1) && f.os_avx512;
    f.avx512vnni = ((c >> 11) & 1) && f.os_avx512;
    __cpuid_count(7, 1, a, b, c, d);
    f.avx_vnni = ((a >> 4) & 1) && f.os_avx;
  }
#endif
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

std::vector<std::pair<std::string, bool>> cpu_feature_list() {
  const CpuFeatures& f = cpu_features();
  return {{"x86_64", f.x86},         {"sse4_1", f.sse41},        {"avx", f.avx},
          {"avx2", f.avx2},          {"fma", f.fma},             {"f16c", f.f16c},
          {"avx512f", f.avx512f},    {"avx512bw", f.avx512bw},   {"avx512vl", f.avx512vl},
          {"avx512dq", f.avx512dq},  {"avx512_vnni", f.avx512vnni}, {"avx_vnni", f.avx_vnni},
          {"os_avx", f.os_avx},      {"os_avx512", f.os_avx512}};
}

std::string impl_missing_feature(Impl impl) {
  const CpuFeatures& f = cpu_features();
  switch (impl) {
    case Impl::Ref: return "";
    case Impl::Avx2:
#if !defined(FASTQ_HAVE_X86)
      return "x86_64 (this build has reference kernels only)";
#endif
      if (!f.os_avx) return "OS support for AVX state (XCR0)";
      if (!f.avx2) return "avx2";
      if (!f.fma) return "fma";
      return "";
    case Impl::Avx512Vnni:
#if !defined(FASTQ_HAVE_X86)
      return "x86_64 (this build has reference kernels only)";
#endif
      if (!f.os_avx512) return "OS support for AVX-512 state (XCR0)";
      if (!f.avx512f) return "avx512f";
      if (!f.avx512bw) return "avx512bw";
      if (!f.avx512vl) return "avx512vl";
      if (!f.avx512dq) return "avx512dq";
      if (!f.avx512vnni) return "avx512_vnni";
      return "";
  }
  return "unknown impl";
}

}  // namespace fastq
