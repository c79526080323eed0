// int8 GEMM bindings: PackedWeights, pack_weights, gemm_u8s8, qlinear. `impl` here is always
// a concrete name; Python resolves "auto" and validates first so messages can be friendlier.
#include <string>

#include "bindings.h"
#include "fastq/gemm.h"
#include "fastq/satcount.h"

namespace fastq {
namespace {

void check_a(const py::array& a, const PackedB& b) {
  require_ndim(a, 2, "a");
  require_c_contiguous(a, "a");
  if (a.shape(1) != b.K)
    throw std::invalid_argument("a has K=" + std::to_string(a.shape(1)) + " (shape " +
                                shape_str(a) + ") but the packed weights have K=" +
                                std::to_string(b.K));
}

}  // namespace

void bind_gemm(py::module_& m) {
  py::class_<PackedB, std::shared_ptr<PackedB>>(m, "PackedWeights",
      "int8 weights B[K, N] packed once into the layout every impl reads (gemm.h).")
      .def_property_readonly("k", [](const PackedB& b) { return b.K; })
      .def_property_readonly("n", [](const PackedB& b) { return b.N; })
      .def_property_readonly("shape", [](const PackedB& b) { return py::make_tuple(b.K, b.N); })
      .def_property_readonly("nbytes", [](const PackedB& b) { return b.Kp * b.Np; })
      .def_property_readonly("can_saturate", &PackedB::can_saturate,
                             "Whether sat16pair can differ from exact32 on some u8 input.")
      .def_property_readonly("colsum", [](const PackedB& b) {
        py::array_t<int32_t> r(static_cast<py::ssize_t>(b.N));
        std::copy(b.colsum.begin(), b.colsum.end(), r.mutable_data());
        return r;
      })
      .def("__repr__", [](const PackedB& b) {
        return "PackedWeights(k=" + std::to_string(b.K) + ", n=" + std::to_string(b.N) + ")";
      });

  m.def("pack_weights", [](py::array b) {
    require_dtype<int8_t>(b, "b", "int8");
    require_ndim(b, 2, "b");
    const int8_t* p = static_cast<const int8_t*>(b.data());
    const int64_t K = b.shape(0), N = b.shape(1);
    const int64_t sk = b.strides(0), sn = b.strides(1);  // bytes == elements for int8
    py::gil_scoped_release nogil;
    return pack_b(p, K, N, sk, sn);
  }, py::arg("b"));

  m.def("gemm_u8s8", [](py::array a, const PackedB& b, const std::string& arith,
                        const std::string& impl) {
    require_dtype<uint8_t>(a, "a", "uint8");
    check_a(a, b);
    Arith ar = parse_arith(arith);
    Impl im = parse_impl(impl);
    const int64_t M = a.shape(0);
    py::array_t<int32_t> c({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(b.N)});
    const uint8_t* ap = static_cast<const uint8_t*>(a.data());
    int32_t* cp = c.mutable_data();
    {
      py::gil_scoped_release nogil;
      gemm_u8s8(ap, M, b.K, b, cp, b.N, im, ar);
    }
    return c;
  }, py::arg("a"), py::arg("b"), py::arg("arith"), py::arg("impl"));

  m.def("qlinear", [](py::array a, const PackedB& b, int32_t a_zero_point, float a_scale,
                      py::array w_scales, py::object bias, const std::string& arith,
                      const std::string& impl) {
    const bool is_signed = same_dtype(a.dtype(), py::dtype::of<int8_t>());
    if (!is_signed) require_dtype<uint8_t>(a, "a", "uint8 or int8");
    check_a(a, b);
    check_scales(w_scales, b.N);
    py::array bias_arr;
    const float* bp = optional_bias(bias, b.N, bias_arr);
    Arith ar = parse_arith(arith);
    Impl im = parse_impl(impl);
    const int64_t M = a.shape(0);
    py::array_t<float> out({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(b.N)});
    const void* ap = a.data();
    const float* ws = static_cast<const float*>(w_scales.data());
    const int64_t ns = w_scales.shape(0);
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      qlinear(ap, is_signed, M, b.K, b, a_zero_point, a_scale, ws, ns, bp, op, im, ar);
    }
    return out;
  }, py::arg("a"), py::arg("b"), py::arg("a_zero_point"), py::arg("a_scale"),
     py::arg("w_scales"), py::arg("bias"), py::arg("arith"), py::arg("impl"));

  m.def("gemm_u8s8_satcount", [](py::array a, const PackedB& b, const std::string& impl) {
    require_dtype<uint8_t>(a, "a", "uint8");
    check_a(a, b);
    Impl im = parse_impl(impl);
    const int64_t M = a.shape(0);
    py::array_t<int32_t> c_sat({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(b.N)});
    py::array_t<int32_t> c_exact({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(b.N)});
    py::array_t<int64_t> counts(static_cast<py::ssize_t>(b.N));
    const uint8_t* ap = static_cast<const uint8_t*>(a.data());
    int32_t* sp = c_sat.mutable_data();
    int32_t* ep = c_exact.mutable_data();
    int64_t* np_ = counts.mutable_data();
    {
      py::gil_scoped_release nogil;
      gemm_u8s8_satcount(ap, M, b.K, b, sp, ep, np_, im);
    }
    return py::make_tuple(c_sat, c_exact, counts);
  }, py::arg("a"), py::arg("b"), py::arg("impl"),
     "(sat16pair sums, exact32 sums, per-column count of pair sums at an int16 limit)");
}

}  // namespace fastq
