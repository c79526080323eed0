// NHWC int8 conv bindings (conv.h): conv_u8s8_nhwc (raw s32 sums [N, OH, OW, OC]) and
// qconv_requant_nhwc (the fused layer: sums requantized to u8/s8 [N, OH, OW, OC]) and
// qconv_dequant_nhwc (qconv's float32 output as [N, OH, OW, OC]). x is a
// C-contiguous u8 array, [N, H, W, C] when layout is "nhwc", [N, C, H, W] when "nchw".
#include <array>
#include <string>

#include <pybind11/stl.h>

#include "bindings.h"
#include "fastq/conv.h"

namespace fastq {

ConvShape nhwc_shape(const py::array& x, const std::string& layout, const PackedConv& w,
                     std::array<int64_t, 2> strides, std::array<int64_t, 4> pads,
                     std::array<int64_t, 2> dil, bool& x_nhwc) {
  require_dtype<uint8_t>(x, "x", "uint8");
  require_ndim(x, 4, "x");
  require_c_contiguous(x, "x");
  if (layout != "nhwc" && layout != "nchw")
    throw std::invalid_argument("unknown layout '" + layout + "'; valid: nhwc, nchw");
  x_nhwc = layout == "nhwc";
  const std::array<int64_t, 4> d =
      x_nhwc ? std::array<int64_t, 4>{x.shape(0), x.shape(3), x.shape(1), x.shape(2)}
             : std::array<int64_t, 4>{x.shape(0), x.shape(1), x.shape(2), x.shape(3)};
  ConvShape s = make_shape_dims(d, w.OC, w.KH, w.KW, w.group, strides, pads, dil,
                                shape_str(x));
  require_conv_channels(s, w);
  return s;
}

void bind_conv_nhwc(py::module_& m) {
  m.def("conv_u8s8_nhwc", [](py::array x, const PackedConv& w, std::array<int64_t, 2> strides,
                             std::array<int64_t, 4> pads, std::array<int64_t, 2> dil, int x_zp,
                             const std::string& layout, const std::string& arith,
                             const std::string& impl) {
    bool x_nhwc = true;
    const ConvShape s = nhwc_shape(x, layout, w, strides, pads, dil, x_nhwc);
    require_u8_zero_point(x_zp);
    const Arith ar = parse_arith(arith);
    const Impl im = parse_impl(impl);
    py::array_t<int32_t> out({s.N, s.OH(), s.OW(), s.OC});
    const uint8_t* xp = static_cast<const uint8_t*>(x.data());
    int32_t* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      conv_u8s8_nhwc(xp, x_nhwc, s, w, static_cast<uint8_t>(x_zp), op, im, ar);
    }
    return out;
  }, py::arg("x"), py::arg("w"), py::arg("strides"), py::arg("pads"), py::arg("dilations"),
     py::arg("x_zero_point"), py::arg("layout"), py::arg("arith"), py::arg("impl"));

  m.def("qconv_requant_nhwc", [](py::array x, const PackedConv& w,
                                 std::array<int64_t, 2> strides, std::array<int64_t, 4> pads,
                                 std::array<int64_t, 2> dil, int x_zp, const std::string& layout,
                                 py::array zcomp, py::array mult, int32_t y_zp, bool y_signed,
                                 const std::string& arith, const std::string& impl) {
    bool x_nhwc = true;
    const ConvShape s = nhwc_shape(x, layout, w, strides, pads, dil, x_nhwc);
    require_u8_zero_point(x_zp);
    require_dtype<int64_t>(zcomp, "zcomp", "int64");
    require_dtype<float>(mult, "mult", "float32");
    require_c_contiguous(zcomp, "zcomp");
    require_c_contiguous(mult, "mult");
    if (zcomp.size() != s.OC || mult.size() != s.OC)
      throw std::invalid_argument("zcomp and mult need one entry per output channel (" +
                                  std::to_string(s.OC) + ")");
    const int32_t lo = y_signed ? -128 : 0, hi = y_signed ? 127 : 255;
    if (y_zp < lo || y_zp > hi) throw std::invalid_argument("y_zero_point out of range");
    const Arith ar = parse_arith(arith);
    const Impl im = parse_impl(impl);
    const std::vector<py::ssize_t> shape{s.N, s.OH(), s.OW(), s.OC};
    py::array out = y_signed ? py::array(py::dtype::of<int8_t>(), shape)
                             : py::array(py::dtype::of<uint8_t>(), shape);
    const uint8_t* xp = static_cast<const uint8_t*>(x.data());
    const int64_t* zp = static_cast<const int64_t*>(zcomp.data());
    const float* mp = static_cast<const float*>(mult.data());
    void* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      qconv_requant_nhwc(xp, x_nhwc, s, w, static_cast<uint8_t>(x_zp), zp, mp, y_zp, y_signed,
                         op, im, ar);
    }
    return out;
  }, py::arg("x"), py::arg("w"), py::arg("strides"), py::arg("pads"), py::arg("dilations"),
     py::arg("x_zero_point"), py::arg("layout"), py::arg("zcomp"), py::arg("mult"),
     py::arg("y_zero_point"), py::arg("y_signed"), py::arg("arith"), py::arg("impl"));

  m.def("qconv_dequant_nhwc", [](py::array x, const PackedConv& w,
                                 std::array<int64_t, 2> strides, std::array<int64_t, 4> pads,
                                 std::array<int64_t, 2> dil, int x_zp, const std::string& layout,
                                 float x_scale, py::array w_scales, py::object bias,
                                 const std::string& arith, const std::string& impl) {
    bool x_nhwc = true;
    const ConvShape s = nhwc_shape(x, layout, w, strides, pads, dil, x_nhwc);
    require_u8_zero_point(x_zp);
    check_scales(w_scales, w.OC);
    py::array bias_arr;
    const float* bp = optional_bias(bias, w.OC, bias_arr);
    const Arith ar = parse_arith(arith);
    const Impl im = parse_impl(impl);
    py::array_t<float> out({s.N, s.OH(), s.OW(), s.OC});
    const uint8_t* xp = static_cast<const uint8_t*>(x.data());
    const float* ws = static_cast<const float*>(w_scales.data());
    const int64_t ns = w_scales.shape(0);
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      qconv_dequant_nhwc(xp, x_nhwc, s, w, static_cast<uint8_t>(x_zp), x_scale, ws, ns, bp, op,
                         im, ar);
    }
    return out;
  }, py::arg("x"), py::arg("w"), py::arg("strides"), py::arg("pads"), py::arg("dilations"),
     py::arg("x_zero_point"), py::arg("layout"), py::arg("x_scale"), py::arg("w_scales"),
     py::arg("bias"), py::arg("arith"), py::arg("impl"));
}

}  // namespace fastq
