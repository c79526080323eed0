// Statistics collectors (filled in by the statistics engine).
#include "bindings.h"
namespace fastq {
void bind_stats(py::module_&) {}
}  // namespace fastq
