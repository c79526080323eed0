// int8 convolution bindings: PackedConvWeights, pack_conv_weights, conv_u8s8 (raw sums),
// conv_u8s8_reference (the scalar spec), qconv. Geometry arrives resolved from Python:
// strides (2), pads (top, left, bottom, right), dilations (2); 1-D convs come as H = 1.
#include <array>
#include <string>

#include <pybind11/stl.h>

#include "bindings.h"
#include "fastq/conv.h"

namespace fastq {

Pairing parse_pairing(const std::string& s) {
  if (s == "per_tap") return Pairing::PerTap;
  if (s == "flat") return Pairing::Flat;
  throw std::invalid_argument("unknown pairing '" + s + "'; valid: per_tap, flat");
}

void require_conv_channels(const ConvShape& s, const PackedConv& w) {
  if (s.C != w.Cg * w.group)
    throw std::invalid_argument("x has C=" + std::to_string(s.C) + " but the weights expect " +
                                std::to_string(w.Cg * w.group));
}

void require_u8_zero_point(int x_zp) {
  if (x_zp < 0 || x_zp > 255) throw std::invalid_argument("x_zero_point must be in [0, 255]");
}

ConvShape make_shape(const py::array& x, int64_t OC, int64_t KH, int64_t KW, int64_t group,
                     std::array<int64_t, 2> strides, std::array<int64_t, 4> pads,
                     std::array<int64_t, 2> dil) {
  require_ndim(x, 4, "x");
  require_c_contiguous(x, "x");
  return make_shape_dims({x.shape(0), x.shape(1), x.shape(2), x.shape(3)}, OC, KH, KW, group,
                         strides, pads, dil, shape_str(x));
}

ConvShape make_shape_dims(std::array<int64_t, 4> nchw, int64_t OC, int64_t KH, int64_t KW,
                          int64_t group, std::array<int64_t, 2> strides,
                          std::array<int64_t, 4> pads, std::array<int64_t, 2> dil,
                          const std::string& x_shape) {
  ConvShape s;
  s.N = nchw[0];
  s.C = nchw[1];
  s.H = nchw[2];
  s.W = nchw[3];
  s.OC = OC;
  s.KH = KH;
  s.KW = KW;
  s.group = group;
  s.stride_h = strides[0];
  s.stride_w = strides[1];
  s.pad_top = pads[0];
  s.pad_left = pads[1];
  s.pad_bottom = pads[2];
  s.pad_right = pads[3];
  s.dil_h = dil[0];
  s.dil_w = dil[1];
  for (int64_t v : {s.stride_h, s.stride_w, s.dil_h, s.dil_w})
    if (v < 1) throw std::invalid_argument("strides and dilations must be >= 1");
  for (int64_t v : pads)
    if (v < 0) throw std::invalid_argument("pads must be >= 0");
  if (group < 1 || s.C % group || OC % group)
    throw std::invalid_argument("group=" + std::to_string(group) + " must divide C=" +
                                std::to_string(s.C) + " and OC=" + std::to_string(OC));
  if (s.OH() <= 0 || s.OW() <= 0)
    throw std::invalid_argument("conv output would be empty for input " + x_shape);
  return s;
}

namespace {

py::array_t<int32_t> alloc_out_i32(const ConvShape& s) {
  return py::array_t<int32_t>({s.N, s.OC, s.OH(), s.OW()});
}

}  // namespace

void bind_conv(py::module_& m) {
  py::class_<PackedConv, std::shared_ptr<PackedConv>>(m, "PackedConvWeights",
      "int8 conv weights W[OC, C/group, KH, KW] packed per group in (kh, kw, c) order.")
      .def_property_readonly("shape", [](const PackedConv& w) {
        return py::make_tuple(w.OC, w.Cg, w.KH, w.KW);
      })
      .def_property_readonly("group", [](const PackedConv& w) { return w.group; })
      .def_property_readonly(
          "can_saturate",
          [](const PackedConv& w) {
            for (const auto& g : w.groups)
              if (g->can_saturate()) return true;
            return false;
          },
          "Whether sat16pair can differ from exact32 on some u8 input (per-tap depthwise "
          "convs never: each product stands beside a zero pad).")
      .def_property_readonly("pairing", [](const PackedConv& w) {
        return std::string(w.pairing == Pairing::PerTap ? "per_tap" : "flat");
      })
      .def_property_readonly("colsum", [](const PackedConv& w) {
        py::array_t<int32_t> r(static_cast<py::ssize_t>(w.colsum.size()));
        std::copy(w.colsum.begin(), w.colsum.end(), r.mutable_data());
        return r;
      });

  m.def("pack_conv_weights", [](py::array w, int64_t group, const std::string& pairing) {
    require_dtype<int8_t>(w, "w", "int8");
    require_ndim(w, 4, "w");
    require_c_contiguous(w, "w");
    if (group < 1 || w.shape(0) % group)
      throw std::invalid_argument("group=" + std::to_string(group) + " must divide OC=" +
                                  std::to_string(w.shape(0)));
    Pairing p = parse_pairing(pairing);
    const int8_t* wp = static_cast<const int8_t*>(w.data());
    const int64_t OC = w.shape(0), Cg = w.shape(1), KH = w.shape(2), KW = w.shape(3);
    py::gil_scoped_release nogil;
    return pack_conv(wp, OC, Cg, KH, KW, group, p);
  }, py::arg("w"), py::arg("group"), py::arg("pairing"));

  m.def("conv_u8s8", [](py::array x, const PackedConv& w, std::array<int64_t, 2> strides,
                        std::array<int64_t, 4> pads, std::array<int64_t, 2> dil, int x_zp,
                        const std::string& arith, const std::string& impl) {
    require_dtype<uint8_t>(x, "x", "uint8");
    ConvShape s = make_shape(x, w.OC, w.KH, w.KW, w.group, strides, pads, dil);
    require_conv_channels(s, w);
    require_u8_zero_point(x_zp);
    Arith ar = parse_arith(arith);
    Impl im = parse_impl(impl);
    auto out = alloc_out_i32(s);
    const uint8_t* xp = static_cast<const uint8_t*>(x.data());
    int32_t* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      conv_u8s8(xp, s, w, static_cast<uint8_t>(x_zp), op, im, ar);
    }
    return out;
  }, py::arg("x"), py::arg("w"), py::arg("strides"), py::arg("pads"), py::arg("dilations"),
     py::arg("x_zero_point"), py::arg("arith"), py::arg("impl"));

  m.def("conv_u8s8_reference", [](py::array x, py::array w, int64_t group,
                                  std::array<int64_t, 2> strides, std::array<int64_t, 4> pads,
                                  std::array<int64_t, 2> dil, int x_zp, const std::string& arith,
                                  const std::string& pairing) {
    require_dtype<uint8_t>(x, "x", "uint8");
    require_dtype<int8_t>(w, "w", "int8");
    require_ndim(w, 4, "w");
    require_c_contiguous(w, "w");
    ConvShape s = make_shape(x, w.shape(0), w.shape(2), w.shape(3), group, strides, pads, dil);
    if (w.shape(1) != s.Cg())
      throw std::invalid_argument("w has C/group=" + std::to_string(w.shape(1)) +
                                  ", expected " + std::to_string(s.Cg()));
    require_u8_zero_point(x_zp);
    Arith ar = parse_arith(arith);
    Pairing p = parse_pairing(pairing);
    auto out = alloc_out_i32(s);
    const uint8_t* xp = static_cast<const uint8_t*>(x.data());
    const int8_t* wp = static_cast<const int8_t*>(w.data());
    int32_t* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      conv_u8s8_ref(xp, s, wp, p, static_cast<uint8_t>(x_zp), op, ar);
    }
    return out;
  }, py::arg("x"), py::arg("w"), py::arg("group"), py::arg("strides"), py::arg("pads"),
     py::arg("dilations"), py::arg("x_zero_point"), py::arg("arith"), py::arg("pairing"));

  m.def("qconv", [](py::array x, const PackedConv& w, std::array<int64_t, 2> strides,
                    std::array<int64_t, 4> pads, std::array<int64_t, 2> dil, int32_t x_zp,
                    float x_scale, py::array w_scales, py::object bias, const std::string& arith,
                    const std::string& impl) {
    const bool is_signed = same_dtype(x.dtype(), py::dtype::of<int8_t>());
    if (!is_signed) require_dtype<uint8_t>(x, "x", "uint8 or int8");
    ConvShape s = make_shape(x, w.OC, w.KH, w.KW, w.group, strides, pads, dil);
    require_conv_channels(s, w);
    const int32_t lo = is_signed ? -128 : 0, hi = is_signed ? 127 : 255;
    if (x_zp < lo || x_zp > hi) throw std::invalid_argument("x_zero_point out of range");
    check_scales(w_scales, w.OC);
    py::array bias_arr;
    const float* bp = optional_bias(bias, w.OC, bias_arr);
    Arith ar = parse_arith(arith);
    Impl im = parse_impl(impl);
    py::array_t<float> out({s.N, s.OC, s.OH(), s.OW()});
    const void* xp = x.data();
    const float* ws = static_cast<const float*>(w_scales.data());
    const int64_t ns = w_scales.shape(0);
    float* op = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      qconv(xp, is_signed, s, w, x_zp, x_scale, ws, ns, bp, op, im, ar);
    }
    return out;
  }, py::arg("x"), py::arg("w"), py::arg("strides"), py::arg("pads"), py::arg("dilations"),
     py::arg("x_zero_point"), py::arg("x_scale"), py::arg("w_scales"), py::arg("bias"),
     py::arg("arith"), py::arg("impl"));
}

}  // namespace fastq
