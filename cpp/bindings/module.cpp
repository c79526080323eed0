// fastq._core: the compiled core. See bindings.h for the rules every binding follows.
#include <string>

#include "bindings.h"

namespace fastq {

void require_ndim(const py::array& a, int ndim, const char* what) {
  if (a.ndim() != ndim)
    throw std::invalid_argument(std::string(what) + " must have " + std::to_string(ndim) +
                                " dimensions, got " + std::to_string(a.ndim()));
}

void require_c_contiguous(const py::array& a, const char* what) {
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(what) + " must be C-contiguous");
}

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + ")";
}

}  // namespace fastq

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastq compiled core: int8 kernels, statistics, op kernels";
  fastq::bind_platform(m);
  fastq::bind_gemm(m);
  fastq::bind_conv(m);
  fastq::bind_conv_dw(m);
  fastq::bind_requant(m);
  fastq::bind_stats(m);
  fastq::bind_runtime(m);
}
