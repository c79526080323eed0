// CPU features, impl availability and the thread count.
#include "bindings.h"
#include "fastq/cpu_features.h"
#include "fastq/threads.h"

namespace fastq {

void bind_platform(py::module_& m) {
  m.def("cpu_features", [] {
    py::dict d;
    for (auto& kv : cpu_feature_list()) d[py::str(kv.first)] = kv.second;
    return d;
  }, "CPU flags fastq uses (cpuid, gated by OS register-state support).");
  m.def("impl_missing_feature", [](const std::string& impl) {
    return impl_missing_feature(parse_impl(impl));
  }, "Empty string if this CPU runs `impl`, else the first missing feature.");
  m.def("built_impls", [] {
    py::list l;
    l.append("ref");
#if defined(FASTQ_HAVE_X86)
    l.append("avx2");
    l.append("avx512vnni");
#endif
    return l;
  }, "Impls compiled into this build (whether or not this CPU can run them).");
  m.def("get_num_threads", &num_threads);
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("set_thread_local_num_threads", &set_thread_local_num_threads, py::arg("n"),
        "Cap the kernels called from this thread at n threads (n <= 0: no cap).");
}

}  // namespace fastq
