// Direct depthwise int8 conv binding: conv_dw_u8s8 (raw s32 sums for Cg == 1, any impl),
// for tests that hold it to conv_u8s8_reference; conv_u8s8/qconv route to it by themselves.
// Geometry arrives resolved from Python: strides (2), pads (top, left, bottom, right), dilations.
#include <array>
#include <string>

#include <pybind11/stl.h>

#include "bindings.h"
#include "fastq/conv_dw.h"

namespace fastq {

void bind_conv_dw(py::module_& m) {
  m.def("conv_dw_u8s8", [](py::array x, py::array w, std::array<int64_t, 2> strides,
                           std::array<int64_t, 4> pads, std::array<int64_t, 2> dil, int x_zp,
                           const std::string& pairing, const std::string& arith,
                           const std::string& impl) {
    require_dtype<uint8_t>(x, "x", "uint8");
    require_dtype<int8_t>(w, "w", "int8");
    require_ndim(x, 4, "x");
    require_ndim(w, 4, "w");
    require_c_contiguous(w, "w");
    if (w.shape(1) != 1 || x.shape(1) < 1 || w.shape(0) % x.shape(1))
      throw std::invalid_argument("w must be [OC, 1, KH, KW] with OC a multiple of C=" +
                                  std::to_string(x.shape(1)) + ", got " + shape_str(w));
    const ConvShape s = make_shape(x, w.shape(0), w.shape(2), w.shape(3), x.shape(1), strides,
                                   pads, dil);
    require_u8_zero_point(x_zp);
    const Pairing p = parse_pairing(pairing);
    const Arith ar = parse_arith(arith);
    const Impl im = parse_impl(impl);
    py::array_t<int32_t> out({s.N, s.OC, s.OH(), s.OW()});
    const uint8_t* xp = static_cast<const uint8_t*>(x.data());
    const int8_t* wp = static_cast<const int8_t*>(w.data());
    int32_t* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      conv_dw_u8s8(xp, s, wp, p, static_cast<uint8_t>(x_zp), op, im, ar);
    }
    return out;
  }, py::arg("x"), py::arg("w"), py::arg("strides"), py::arg("pads"), py::arg("dilations"),
     py::arg("x_zero_point"), py::arg("pairing"), py::arg("arith"), py::arg("impl"));
}

}  // namespace fastq
