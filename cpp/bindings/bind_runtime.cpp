// Op kernels for the executor (filled in by the runtime).
#include "bindings.h"
namespace fastq {
void bind_runtime(py::module_&) {}
}  // namespace fastq
