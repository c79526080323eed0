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

void check_scales(const py::array& w_scales, int64_t n) {
  require_dtype<float>(w_scales, "w_scales", "float32");
  require_ndim(w_scales, 1, "w_scales");
  require_c_contiguous(w_scales, "w_scales");
  if (w_scales.shape(0) != 1 && w_scales.shape(0) != n)
    throw std::invalid_argument("w_scales has " + std::to_string(w_scales.shape(0)) +
                                " entries; expected 1 or " + std::to_string(n));
}

const float* optional_bias(const py::object& bias, int64_t n, py::array& keep_alive) {
  if (bias.is_none()) return nullptr;
  keep_alive = py::array(bias);
  require_dtype<float>(keep_alive, "bias", "float32");
  require_ndim(keep_alive, 1, "bias");
  require_c_contiguous(keep_alive, "bias");
  if (keep_alive.shape(0) != n)
    throw std::invalid_argument("bias has " + std::to_string(keep_alive.shape(0)) +
                                " entries; expected " + std::to_string(n));
  return static_cast<const float*>(keep_alive.data());
}

}  // namespace fastq

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastq compiled core: int8 kernels, statistics, op kernels";
  fastq::bind_platform(m);
  fastq::bind_gemm(m);
  fastq::bind_conv(m);
  fastq::bind_conv_dw(m);
  fastq::bind_conv_nhwc(m);
  fastq::bind_requant(m);
  fastq::bind_stats(m);
  fastq::bind_runtime(m);
  fastq::bind_satcount(m);
  fastq::bind_nn_nhwc(m);
}
