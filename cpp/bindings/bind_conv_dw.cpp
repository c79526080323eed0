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
    require_c_contiguous(x, "x");
    require_c_contiguous(w, "w");
    ConvShape s;
    s.N = x.shape(0);
    s.C = x.shape(1);
    s.H = x.shape(2);
    s.W = x.shape(3);
    s.OC = w.shape(0);
    s.KH = w.shape(2);
    s.KW = w.shape(3);
    s.group = s.C;
    s.stride_h = strides[0];
    s.stride_w = strides[1];
    s.pad_top = pads[0];
    s.pad_left = pads[1];
    s.pad_bottom = pads[2];
    s.pad_right = pads[3];
    s.dil_h = dil[0];
    s.dil_w = dil[1];
    if (w.shape(1) != 1 || s.C < 1 || s.OC % s.C)
      throw std::invalid_argument("w must be [OC, 1, KH, KW] with OC a multiple of C=" +
                                  std::to_string(s.C) + ", got " + shape_str(w));
    for (int64_t v : {s.stride_h, s.stride_w, s.dil_h, s.dil_w})
      if (v < 1) throw std::invalid_argument("strides and dilations must be >= 1");
    for (int64_t v : pads)
      if (v < 0) throw std::invalid_argument("pads must be >= 0");
    if (s.OH() <= 0 || s.OW() <= 0)
      throw std::invalid_argument("conv output would be empty for input " + shape_str(x));
    if (x_zp < 0 || x_zp > 255) throw std::invalid_argument("x_zero_point must be in [0, 255]");
    if (pairing != "per_tap" && pairing != "flat")
      throw std::invalid_argument("unknown pairing '" + pairing + "'; valid: per_tap, flat");
    const Pairing p = pairing == "flat" ? Pairing::Flat : Pairing::PerTap;
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
